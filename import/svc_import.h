/*
 * svc_import: fzip.v1.ImportService: uploads (client streaming, straight
 * into the blob store), import jobs (start, get, list, watch, cancel,
 * delete) and the worker that validates, previews and restores a package
 * all or nothing (import_run.c, docs/IMPORT.md).
 *
 * Status machine: UPLOADED when the bytes are stored; StartImport (or
 * options.start) makes it VALIDATING and runnable; a worker validates:
 * VALIDATION_FAILED (nothing written), or VALIDATION_PASSED (validate-only
 * stops here with the preview in `result`), then PROCESSING (restore with
 * tags + stash) to COMPLETED, or FAILED after a rollback, or CANCELLED
 * after a rollback.
 */
#ifndef FZIP_SVC_IMPORT_H
#define FZIP_SVC_IMPORT_H

#include <stdint.h>

#include "fzip_error.h"
#include "job_kind.h"
#include "rpc.h"
#include "store.h"

typedef struct svc_import svc_import_t;

typedef struct {
  int workers;              /* concurrent import jobs on this replica; 0: 1 */
  int64_t max_upload_bytes; /* 0: 4 GiB */
  int64_t retention_ms;     /* how long ended jobs (and their uploads) stay; 0: 7 days */
  int64_t undo_window_ms;   /* a COMPLETED import can be undone this long; 0: never */
  int64_t batch_bytes;      /* documents' bytes per restore batch; 0: import_run's default */
  int64_t upload_timeout_ms; /* an upload not finished by then is reaped; 0: 6 h */
  int64_t lease_ms;         /* 0: jobs.h default */
  int poll_ms;              /* 0: jobs.h default */
  const char *temp_dir;     /* NULL: $TMPDIR or /tmp */
  int64_t max_queued_per_user; /* runnable jobs of one user (both kinds) before a
                                * create is refused; 0: no cap (svc_jobs.h) */
  const char *owner;        /* replica id; NULL: generated */
} svc_import_options_t;

#define SVC_IMPORT_FILE_NAME_MAX 255
#define SVC_IMPORT_DEFAULT_MAX_UPLOAD (4LL * 1024 * 1024 * 1024)

bool svc_import_new(svc_import_t **out, store_t *store, const svc_import_options_t *options,
                    fzip_error_t *error);
void svc_import_destroy(svc_import_t *svc);
/* The ImportService rows (borrowed from svc). */
const rpc_method_t *const *svc_import_methods(svc_import_t *svc, size_t *n);

/* The reaper's hook for import jobs (a store_reap_hook_fn; ctx is the
 * service): a COMPLETED import whose undo window ended has the window
 * closed and its stash forgotten (import_undo_expire); everything else
 * goes through svc_jobs_expire: an ended or abandoned import past its
 * expiry is deleted with its uploaded package; a running one is left
 * alone and its expiry cleared. */
bool svc_import_expire(void *ctx, store_job_t *job, int64_t now_ms, bool *handled,
                       fzip_error_t *error);

#endif
