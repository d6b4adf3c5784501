/*
 * jobs: the runner that executes export and import jobs, shared by every
 * fzipd replica through the store's claim + lease protocol
 * (docs/STORAGE.md, "Job leases").
 *
 * A runner owns `workers` threads for one job kind.  Each thread claims the
 * oldest runnable job whose lease is free, runs the kind's handler, and
 * claims again; when nothing is runnable it sleeps until notified (a job
 * was created on this replica) or the poll interval passes (a job was
 * created on another replica, or a dead replica's lease lapsed).
 *
 * The handler reports progress through job_ctx_save, which also extends the
 * lease (so a live worker never loses its job) and fences writes: if the
 * record changed under it (a user cancelled, deleted it, or the lease went
 * to another replica) the save fails and the handler stops.
 *
 * Cancellation protocol: whoever wants a running job to stop sets the
 * boolean "cancelRequested" in its body (job_request_cancel).  The worker's
 * next save sees the version change, reloads, finds the flag and returns
 * FZIP_ERR_CANCELLED; the handler then cleans up and finishes the job as
 * cancelled with job_ctx_finish.
 *
 * Shutdown: job_runner_destroy asks handlers to stop (job_ctx_should_stop),
 * then releases the leases of interrupted jobs (runnable stays true) so
 * another replica, or this one after a restart, takes them over at once.
 */
#ifndef FZIP_JOBS_H
#define FZIP_JOBS_H

#include <stdbool.h>
#include <stdint.h>

#include "fzip_error.h"
#include "store.h"

typedef struct job_runner job_runner_t;
typedef struct job_ctx job_ctx_t;

#define JOB_CANCEL_FIELD "cancelRequested"
#define JOB_DEFAULT_LEASE_MS 60000
#define JOB_DEFAULT_POLL_MS 1000
#define JOB_SAVE_INTERVAL_MS 500 /* job_ctx_tick saves at most this often */
/* Version conflicts a job update retries (a save, a cancel, a start)
 * before it gives up with ABORTED. */
#define JOB_UPDATE_RETRIES 8
/* The wait before retrying such an update: JOB_UPDATE_BACKOFF_MS, doubled
 * with each attempt, at most JOB_UPDATE_BACKOFF_MAX_MS (the seven waits
 * between eight attempts: about a quarter of a second). */
#define JOB_UPDATE_BACKOFF_MS 2
#define JOB_UPDATE_BACKOFF_MAX_MS 128

/* Runs one claimed job to its end.  Returns true when the handler finished
 * the job (job_ctx_finish); false with an error when it stopped early: the
 * runner then logs it and, if the runner is shutting down, releases the
 * lease so the job is resumed elsewhere. */
typedef bool (*job_run_fn)(job_ctx_t *ctx, void *data, fzip_error_t *error);

typedef struct {
  store_job_kind_t kind;
  const char *name;     /* for logs: "export" */
  int workers;          /* concurrent jobs on this replica; 0: 2 */
  int64_t lease_ms;     /* 0: JOB_DEFAULT_LEASE_MS */
  int poll_ms;          /* 0: JOB_DEFAULT_POLL_MS */
  /* This replica's id; NULL: hostname-pid-random.  Each claim holds its
   * lease as "<owner>#<n>" (n counts this runner's claims), so that a
   * worker whose lease lapsed is fenced out even by a sibling worker of the
   * same replica that took the job over. */
  const char *owner;
  job_run_fn run;
  void *data;
} job_runner_options_t;

/* Starts the worker threads.  `store` is borrowed and must outlive the runner. */
bool job_runner_new(job_runner_t **out, store_t *store, const job_runner_options_t *options,
                    fzip_error_t *error);
/* Wakes an idle worker: a job was just created or made runnable here. */
void job_runner_notify(job_runner_t *runner);
/* Stops: interrupts running handlers, releases their leases, joins. */
void job_runner_destroy(job_runner_t *runner);
const char *job_runner_owner(const job_runner_t *runner);

/* ---- inside a handler ------------------------------------------------- */

store_t *job_ctx_store(job_ctx_t *ctx);
/* This replica's owner id (for events and logs). */
const char *job_ctx_owner(const job_ctx_t *ctx);
/* The claimed record (borrowed).  Its body is the state the job started
 * from; a handler keeps its own state and passes a new body to save. */
const store_job_t *job_ctx_record(const job_ctx_t *ctx);
/* True when the runner is shutting down: stop at the next safe point and
 * return false with FZIP_ERR_CANCELLED (the job stays runnable). */
bool job_ctx_should_stop(const job_ctx_t *ctx);
bool job_ctx_is_shutdown_error(const job_ctx_t *ctx, const fzip_error_t *error);

/* What a handler does with the error that stopped its work ("stop here?"). */
typedef enum {
  JOB_STOP_FAIL = 0, /* the job's own failure: end it FAILED */
  JOB_STOP_CANCEL,   /* the user cancelled: clean up, end it CANCELLED */
  JOB_STOP_LEAVE,    /* not this worker's to end: shutdown (it resumes elsewhere),
                        lease lost to another replica, or the job was deleted */
} job_stop_t;
job_stop_t job_ctx_stop_reason(const job_ctx_t *ctx, const fzip_error_t *error);

/* Persists `body` (copied) and extends the lease.  Fails with
 *   CANCELLED  - a cancel was requested, or the runner is stopping;
 *   ABORTED    - the lease went to another owner: stop without writing;
 *   NOT_FOUND  - the job was deleted: stop and clean up.
 * On CANCELLED for a user cancel, the handler cleans up and calls
 * job_ctx_finish with its cancelled body. */
bool job_ctx_save(job_ctx_t *ctx, const bson_t *body, fzip_error_t *error);
/* job_ctx_save, but only if JOB_SAVE_INTERVAL_MS passed since the last one
 * (or `force`); cheap enough to call per item. */
bool job_ctx_tick(job_ctx_t *ctx, const bson_t *body, bool force, fzip_error_t *error);
/* Extends the lease without saving the body, at most every
 * JOB_SAVE_INTERVAL_MS (cheap enough per item), for clean-up work that must
 * run to its end even after a cancel or a failure: a rollback on a slow
 * store can outlast the lease, and another replica would then take the job
 * over mid-way.  Ignores cancel requests and shutdown; ABORTED when the
 * lease was lost (idempotent clean-up may go on regardless).  A change to
 * the record meanwhile (a cancel request) is reloaded, not taken for a loss;
 * after a failure the next try still waits the interval. */
bool job_ctx_keep_lease(job_ctx_t *ctx, fzip_error_t *error);
/* Final save: runnable=false, lease released, expires_at as given (0:
 * never).  A cancel request arriving meanwhile does not block it. */
bool job_ctx_finish(job_ctx_t *ctx, const bson_t *body, int64_t expires_at, fzip_error_t *error);
/* True if the user asked for this job to stop (the flag in the latest body). */
bool job_ctx_cancel_requested(const job_ctx_t *ctx);

/* ---- outside a handler ------------------------------------------------ */

/* Sleeps before attempt `attempt + 1` of an update that lost a version
 * race (JOB_UPDATE_BACKOFF_MS doubling): retried at once, a request can
 * meet the same writer again and again on a busy store (CancelExport lost
 * all eight attempts on FerretDB under load).  No wait after the last of
 * JOB_UPDATE_RETRIES attempts.  Every loop that retries a
 * job or schedule record after ABORTED waits this way (jobs, job_kind,
 * svc_import, retention, svc_schedule, schedule_run). */
void job_update_backoff(int attempt);

/* Sets the cancel flag on a job (retrying version conflicts a few times).
 * *out (may be NULL) receives the record as stored afterwards. */
bool job_request_cancel(store_job_t **out, store_t *store, store_job_kind_t kind,
                        const char *user_id, const char *job_id, fzip_error_t *error);

/* True if the record's body carries the cancel flag. */
bool job_body_cancel_requested(const bson_t *body);

#endif
