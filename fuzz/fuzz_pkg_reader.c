/*
 * Fuzz target for pkg_reader + pkg_validate: the input is written to a
 * temporary file as a package and validated without a store, which runs
 * the archive checks, the manifest, every entity stream, the references
 * and the files/ checksums.  Limits are reduced so that a short input can
 * reach every limit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pkg_validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
  if (pkgv_validate(&res, path, &opt, &err))
    pkgv_result_destroy(res);
  unlink(path);
  return 0;
}
