/*
 * A blob writer whose chunk could not be stored (failpoint store.blob_chunk,
 * set by CTest: FZIP_FAILPOINTS=store.blob_chunk=error@2) refuses more bytes
 * and the commit, and destroying it leaves no blob.  Argument: the store URI.
 */
#include <stdlib.h>
#include <string.h>

#include "fzip_test.h"
#include "store.h"

#define BLOB_ID "failure/blob"

static store_t *g_store;

static void test_a_failed_chunk_breaks_the_writer_and_nothing_is_committed(void) {
  fzip_error_t err = {0};
  store_blob_writer_t *w = NULL;
  store_blob_info_t info;
  static uint8_t chunk[STORE_BLOB_CHUNK];

  memset(chunk, 'x', sizeof chunk);
  CHECK_OK(store_blob_writer_new(&w, g_store, STORE_BUCKET_FILES, BLOB_ID, &err), err);
  CHECK_OK(store_blob_writer_write(w, chunk, sizeof chunk, &err), err); /* chunk 0 stored */
  CHECK_FAILS(store_blob_writer_write(w, chunk, sizeof chunk, &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK_FAILS(store_blob_writer_write(w, chunk, 1, &err), err, FZIP_ERR_FAILED_PRECONDITION);
  CHECK(strstr(err.message, "earlier write failed") != NULL);
  CHECK_FAILS(store_blob_writer_commit(w, &info, &err), err, FZIP_ERR_FAILED_PRECONDITION);
  store_blob_writer_destroy(w);
  CHECK_FAILS(store_blob_stat(&info, g_store, STORE_BUCKET_FILES, BLOB_ID, &err), err,
              FZIP_ERR_NOT_FOUND);
}

int main(int argc, char **argv) {
  fzip_error_t err = {0};
  store_options_t opts = {.uri = argc > 1 ? argv[1] : NULL};

  if (!getenv("FZIP_FAILPOINTS")) {
    fprintf(stderr, "run with FZIP_FAILPOINTS=store.blob_chunk=error@2\n");
    return 2;
  }
  if (!store_open(&g_store, &opts, &err)) {
    fprintf(stderr, "store_open: %s\n", err.message);
    return 1;
  }
  RUN(test_a_failed_chunk_breaks_the_writer_and_nothing_is_committed);
  store_destroy(g_store);
  return fzip_test_summary();
}
