/*
 * import_run: the import worker: validate (pkg_validate), preview, and
 * restore a package all or nothing (docs/IMPORT.md).
 */
#ifndef FZIP_IMPORT_RUN_H
#define FZIP_IMPORT_RUN_H

#include <stdint.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_error.h"
#include "job_kind.h"
#include "jobs.h"
#include "store.h"

/* The import job kind: its status transitions, blob names ("import-<id>",
 * the resume prefix "import-<id>.part") and cancel/delete rules. */
extern const job_kind_t import_job_kind;

/* The phases whose names decide what happens next (the strings stay what
 * the API and the store show in current_phase).  Other phase names (the
 * ends, "completed", "failed"...; the restore's per-kind phases) read as
 * IMPORT_PHASE_OTHER. */
typedef enum {
  IMPORT_PHASE_OTHER = 0,
  IMPORT_PHASE_RECEIVING,       /* an upload is streaming in */
  IMPORT_PHASE_INTERRUPTED,     /* an upload broke: resumable */
  IMPORT_PHASE_UPLOADED,        /* stored, not started */
  IMPORT_PHASE_QUEUED,          /* started, waiting for a worker */
  IMPORT_PHASE_FETCHING,        /* package copied to a temp file */
  IMPORT_PHASE_VALIDATING,
  IMPORT_PHASE_RESTORING,
  IMPORT_PHASE_COMMITTING,      /* past the commit point: finish, never roll back */
  IMPORT_PHASE_ROLLING_BACK,
  IMPORT_PHASE_CLEANUP_PENDING, /* ended FAILED, rollback retried by later claims */
  IMPORT_PHASE_UNDOING,         /* UNDOING past its check: a rerun finishes the undo */
  IMPORT_PHASE_COUNT
} import_phase_t;

const char *import_phase_name(import_phase_t phase);
/* The phase a job's current_phase names. */
import_phase_t import_phase_of(const Fzip__V1__ImportJob *job);
/* Sets current_phase to the phase's name; false when out of memory. */
bool import_set_phase(Fzip__V1__ImportJob *job, import_phase_t phase);

#define IMPORT_BATCH_BYTES_DEFAULT (8 * 1024 * 1024) /* documents' bytes per restore batch */

typedef struct {
  store_t *store;
  int64_t retention_ms;
  int64_t undo_window_ms; /* a COMPLETED import can be undone this long; 0: never */
  size_t batch_bytes;     /* documents' bytes per restore batch; 0: IMPORT_BATCH_BYTES_DEFAULT */
  const char *temp_dir;
} import_env_t;

/* job_run_fn for STORE_JOB_IMPORT jobs; data is an import_env_t. */
bool import_run(job_ctx_t *ctx, void *data, fzip_error_t *error);

#endif
