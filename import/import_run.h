/*
 * import_run: the import worker: validate (pkg_validate), preview, and
 * restore a package all or nothing (docs/IMPORT.md).
 */
#ifndef FZIP_IMPORT_RUN_H
#define FZIP_IMPORT_RUN_H

#include <stdint.h>

#include "fzip_error.h"
#include "jobs.h"
#include "store.h"

#define IMPORT_BLOB_ID_MAX (FZIP_ID_MAX + 16)

typedef struct {
  store_t *store;
  int64_t retention_ms;
  const char *temp_dir;
} import_env_t;

/* job_run_fn for STORE_JOB_IMPORT jobs; data is an import_env_t. */
bool import_run(job_ctx_t *ctx, void *data, fzip_error_t *error);

/* The uploaded package's blob id: "import-<import id>". */
void import_blob_id(char out[IMPORT_BLOB_ID_MAX], const char *import_id);

#endif
