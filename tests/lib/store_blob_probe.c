/*
 * store_blob_probe: says whether a committed blob exists, through the
 * store API, so that end-to-end tests check blobs the same way on every
 * backend (Python has no MongoDB driver here).
 *
 *   store_blob_probe STORE_URI packages|files BLOB_ID
 *
 * Prints "present SIZE" or "absent" and exits 0; exits 2 on a usage or
 * store error (printed on stderr).  A MongoDB URI names its database in
 * its path, as the tests' fixture writes it.
 */
#include <stdio.h>
#include <string.h>

#include "fzip_error.h"
#include "store.h"

int main(int argc, char **argv) {
  fzip_error_t err = {0};
  store_t *store = NULL;
  store_blob_info_t info;
  store_bucket_t bucket;
  int rc = 2;

  if (argc != 4 || (strcmp(argv[2], "packages") != 0 && strcmp(argv[2], "files") != 0)) {
    fprintf(stderr, "usage: %s STORE_URI packages|files BLOB_ID\n", argv[0]);
    return 2;
  }
  bucket = strcmp(argv[2], "packages") == 0 ? STORE_BUCKET_PACKAGES : STORE_BUCKET_FILES;
  store_options_t so = {.uri = argv[1]};
  if (!store_open(&store, &so, &err))
    goto done;
  if (store_blob_stat(&info, store, bucket, argv[3], &err)) {
    printf("present %llu\n", (unsigned long long)info.size);
    rc = 0;
  } else if (err.code == FZIP_ERR_NOT_FOUND) {
    printf("absent\n");
    rc = 0;
  }
done:
  if (rc != 0)
    fprintf(stderr, "store_blob_probe: [%s] %s\n", fzip_code_name((fzip_code_t)err.code),
            err.message);
  store_destroy(store);
  return rc;
}
