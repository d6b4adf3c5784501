/*
 * Fuzz target for pkg_jsonread: the same bytes are read both as a data
 * file (`{"<kind>": [objects]}`, streamed element by element) and as a
 * single document (the manifest), through a source that hands out odd-sized
 * chunks so that refills land inside tokens.  Limits are small so that the
 * limit paths are reached by short inputs too.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_source.h"
#include "pkg_jsonread.h"

#define FUZZ_CHUNK 7 /* bytes per source read: splits tokens across refills */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void small_limits(pkgjr_limits_t *lim) {
  pkgjr_limits_default(lim);
  lim->max_depth = 16;
  lim->max_string = 4096;
  lim->max_members = 256;
  lim->max_elements = 1000;
  lim->max_doc = 64 * 1024;
}

static void as_array(const uint8_t *data, size_t size, const pkgjr_limits_t *lim) {
  fuzz_source_t s = {data, size, 0, FUZZ_CHUNK};
  pkgjr_reader_t *r = pkgjr_reader_new(fuzz_source_read, &s, lim);
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};
  char key[64];
  bool more = false;

  if (r && pkgjr_open_array(key, sizeof key, r, &err)) {
    while (pkgjr_next_document(&more, &doc, r, &err) && more)
      (void)bson_count_keys(&doc);
  }
  bson_destroy(&doc);
  pkgjr_reader_destroy(r);
}

static void as_document(const uint8_t *data, size_t size, const pkgjr_limits_t *lim) {
  fuzz_source_t s = {data, size, 0, FUZZ_CHUNK};
  pkgjr_reader_t *r = pkgjr_reader_new(fuzz_source_read, &s, lim);
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};

  if (r && pkgjr_read_document(&doc, r, &err)) {
    char *json = bson_as_canonical_extended_json(&doc, NULL);
    bson_free(json);
  }
  bson_destroy(&doc);
  pkgjr_reader_destroy(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pkgjr_limits_t lim;
  small_limits(&lim);
  as_array(data, size, &lim);
  as_document(data, size, &lim);
  return 0;
}
