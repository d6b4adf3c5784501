/*
 * Fuzz target for pkg_reader + pkg_validate: the input is written to a
 * temporary file as a package and validated without a store, which runs
 * the archive checks, the manifest, every entity stream, the references
 * and the files/ checksums.  The validator refuses an incremental package
 * before its entities (archive.incremental), so the reader alone then
 * streams its data/deletions.json (FORMAT.md 15), as `fzip package apply`
 * does.  Limits are reduced so that a short input can reach every limit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pkg_reader.h"
#include "pkg_validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An increment's deletions to their end and their checksum. */
static void read_deletions(const char *path, const pkgr_limits_t *lim) {
  pkgr_t *r = NULL;
  pkgr_deletions_t *d = NULL;
  fzip_error_t err = {0};
  fzip_kind_t kind;
  const char *id;
  if (!pkgr_open(&r, path, lim, NULL, NULL, &err))
    return;
  if (pkgr_info(r)->incremental && pkgr_deletions_open(&d, r, &err)) {
    while (pkgr_deletions_next(d, &kind, &id, &err)) {
    }
    if (!fzip_error_is_set(&err))
      pkgr_deletions_finish(NULL, d, &err);
  }
  pkgr_deletions_destroy(d);
  pkgr_destroy(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[] = "/tmp/fzip-fuzz-pkg-XXXXXX";
  pkgr_limits_t lim;
  pkgv_options_t opt = {0};
  pkgv_result_t *res = NULL;
  fzip_error_t err = {0};
  int fd = mkstemp(path);
  FILE *f;

  if (fd < 0)
    abort(); /* the harness itself is broken, not the input */
  if (!(f = fdopen(fd, "wb")) || fwrite(data, 1, size, f) != size || fclose(f) != 0)
    abort();
  pkgr_limits_default(&lim);
  lim.max_entries = 64;
  lim.max_data_entry = 1024 * 1024;
  lim.max_file_entry = 1024 * 1024;
  lim.max_manifest = 256 * 1024;
  lim.max_total = 4 * 1024 * 1024;
  lim.json.max_depth = 16;
  lim.json.max_string = 64 * 1024;
  opt.limits = &lim;
  if (pkgv_validate(&res, path, &opt, &err)) {
    /* Only an increment has deletions: opening every input a second time
     * would halve the throughput for nothing. */
    bool incremental = res->has_info && res->info.incremental;
    pkgv_result_destroy(res);
    if (incremental)
      read_deletions(path, &lim);
  }
  unlink(path);
  return 0;
}
