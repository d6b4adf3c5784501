/*
 * job_kind: what the job engine knows about one kind of job (export,
 * import), as data: its store kind, its protobuf message and status enum,
 * which status may follow which, how its package blob is named, and the
 * few rules that differ between kinds.  Everything that is the same for
 * both kinds is written once over this table: every status change
 * (job_set_status), a job record's body, the end of a job no worker holds
 * (cancel, expiry), deletion, and the job RPCs in svc_jobs.h.
 *
 * Transition table: `next[s]` has bit t set when status s may become t.
 * A refused transition is an error (FAILED_PRECONDITION), never written.
 * A new job starts from status 0 (UNSPECIFIED), so creation is a
 * transition too.
 */
#ifndef FZIP_JOB_KIND_H
#define FZIP_JOB_KIND_H

#include <bson/bson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "jobs.h"
#include "store.h"

/* Job kinds (store_job_kind_t values: export, import): sizes per-kind
 * tables such as the reaper's hooks. */
#define JOB_KIND_COUNT 2
_Static_assert(JOB_KIND_COUNT == STORE_JOB_IMPORT + 1,
               "JOB_KIND_COUNT must count store_job_kind_t's kinds (the last is STORE_JOB_IMPORT)");
/* A job blob id: a short prefix ("export-"), a job id of at most
 * FZIP_ID_MAX bytes and a short suffix (".part"), with room to spare. */
#define JOB_BLOB_AFFIX_MAX 15
#define JOB_BLOB_ID_MAX (FZIP_ID_MAX + JOB_BLOB_AFFIX_MAX + 1)
/* Status values a transition table can hold: the bits of next[s]. */
#define JOB_STATUS_MAX 32
#define JOB_STATUS_BIT(s) (UINT32_C(1) << (s))
/* Events kept in a job's history (later ones are dropped). */
#define JOB_EVENTS_MAX 32

typedef struct {
  store_job_kind_t kind;
  const char *noun;                         /* "export": messages and logs */
  const char *id_field;                     /* request field naming the job: "export_id" */
  const ProtobufCMessageDescriptor *job;    /* fzip.v1.ExportJob */
  const ProtobufCEnumDescriptor *status;    /* fzip.v1.ExportStatus */
  const uint32_t *next;                     /* transition table, n_status rows */
  int n_status;                             /* at most JOB_STATUS_MAX */
  const char *blob_prefix;                  /* package blob: "<prefix><job id>" */
  const char *part_suffix;                  /* resume prefix blob "<blob><suffix>"; NULL: none */
  int blob_status;                          /* body names the blob only in this status; 0: always */
  int cancelled_status;                     /* what a cancel ends in */
  int failed_status;                        /* a failure; allowed from every status a
                                               worker holds (job_ctx_end_job) */
  int expired_status;                       /* what expiry turns expired_from into; 0: none */
  int expired_from;                         /* the status that expires into expired_status */
  /* Cancel: a job no worker holds in a status `cancel_now` accepts is
   * ended at once (with this event message); any other running job is
   * flagged and its worker stops at its next save.  A job that is not
   * runnable cannot be cancelled: "<noun> <id> <cancel_refused> (<status>)". */
  bool (*cancel_now)(int status);
  const char *cancel_now_message;
  const char *cancel_refused;
  /* Delete: false when a running job cannot be deleted (it still needs its
   * record to roll back): "<noun> <id> is <status>: <delete_refused>". */
  bool delete_running;
  const char *delete_refused;
  /* Adjusts a job just read for the caller (e.g. COMPLETED past expiry
   * reads EXPIRED); may be NULL. */
  void (*view)(ProtobufCMessage *job, int64_t now_ms);
  /* Whether a status value is final (Watch ends after sending it). */
  bool (*is_terminal)(int status);
  /* Run by Delete before it removes a job no worker holds (e.g. an
   * import forgets what it kept for an undo); may be NULL.  ABORTED: the
   * record changed meanwhile, the delete is refused (try again). */
  bool (*before_delete)(store_t *store, store_job_t *rec, fzip_error_t *error);
} job_kind_t;

/* Moves `job` (a message of kind->job) to status `to` if the table allows
 * it; else FAILED_PRECONDITION and the job is unchanged.  A change is
 * counted in fzip_job_transitions_total, except a new job's first status
 * (from 0): see job_count_created. */
bool job_set_status(ProtobufCMessage *job, const job_kind_t *kind, int to, fzip_error_t *error);
/* Counts a new job's first status in fzip_job_transitions_total; called
 * once its record is created in the store (not for a replay, a lost
 * same-request_id race or a failed insert). */
void job_count_created(const ProtobufCMessage *job, const job_kind_t *kind);
/* Whether the table lets `from` become `to`. */
bool job_status_allowed(const job_kind_t *kind, int from, int to);
/* The job's status (its "status" enum field). */
int job_status_of(const ProtobufCMessage *job);
/* Name of a status value ("EXPORT_STATUS_COMPLETED"), or "UNKNOWN". */
const char *job_status_name(const job_kind_t *kind, int status);

/* The package blob's id: "<prefix><job id>". */
void job_blob_id(char out[JOB_BLOB_ID_MAX], const job_kind_t *kind, const char *job_id);
/* Where a resumed upload keeps the bytes received before: "<blob><suffix>". */
void job_part_blob_id(char out[JOB_BLOB_ID_MAX], const job_kind_t *kind, const char *job_id);
/* Deletes a job's package blob and resume prefix (missing ones are fine). */
bool job_delete_blobs(store_t *store, const job_kind_t *kind, const char *job_id,
                      fzip_error_t *error);
/* Deletes the job `rec` (of rec->user_id) as DeleteExport/DeleteImport
 * do, for them and for retention: kind->before_delete, its blobs, then
 * the record.  Blobs first: a crash in between leaves a job to delete
 * again, never an orphan package.  NOT_FOUND when it is gone already. */
bool job_delete(store_t *store, const job_kind_t *kind, store_job_t *rec, fzip_error_t *error);

/* Builds the record body of `job` into `out` (initialised by the caller):
 * the message, its status name and progress, the blob id when the kind
 * names it in this status, and the cancel flag if `cancel_requested`. */
bool job_kind_body(bson_t *out, const job_kind_t *kind, const ProtobufCMessage *job,
                   bool cancel_requested, fzip_error_t *error);

/* Ends `job` in memory: status `status` (checked), updated_at (and
 * completed_at if `set_completed`) `now`, phase and event `event` with
 * `message`. */
bool job_end(ProtobufCMessage *job, const job_kind_t *kind, int status, const char *event,
             const char *message, int64_t now, bool set_completed, fzip_error_t *error);

/* A worker's save of its job message, the body built for the kind:
 * job_ctx_tick (every save when `force`). */
bool job_ctx_save_job(job_ctx_t *ctx, const job_kind_t *kind, const ProtobufCMessage *job,
                      bool force, fzip_error_t *error);
/* A worker's final save of its job message: job_ctx_finish, the record
 * expiring at `expires_at`. */
bool job_ctx_finish_job(job_ctx_t *ctx, const job_kind_t *kind, const ProtobufCMessage *job,
                        int64_t expires_at, fzip_error_t *error);
/* A worker's end of its job: job_end (completed_at `now`), then
 * job_ctx_finish_job.  A final status the table refuses is a bug: it is
 * logged at error and the job ends failed_status instead (or, refused
 * that too, keeps its status), never left runnable to be claimed again
 * after every lease. */
bool job_ctx_end_job(job_ctx_t *ctx, const job_kind_t *kind, ProtobufCMessage *job, int status,
                     const char *event, const char *message, int64_t now, int64_t expires_at,
                     fzip_error_t *error);

/* Saves `job` into `rec` outside a worker: body rebuilt, record
 * updated_at `now`, version-checked, no owner (ABORTED if the record
 * changed meanwhile).  The stored cancel flag is kept if `keep_cancel`,
 * else cleared: a job made runnable again (StartImport) must not inherit
 * the cancel of its previous run. */
bool job_store_unowned(store_t *store, const job_kind_t *kind, store_job_t *rec,
                       const ProtobufCMessage *job, int64_t now, bool keep_cancel,
                       fzip_error_t *error);

/* Ends a job no worker holds (cancel before a claim, expiry): job_end,
 * then not runnable, reaped `retention_ms` after `now`; saved as
 * job_store_unowned with the cancel flag cleared (an ended job keeps
 * none). */
bool job_end_unowned(store_t *store, const job_kind_t *kind, store_job_t *rec,
                     ProtobufCMessage *job, int status, const char *event, const char *message,
                     int64_t now, bool set_completed, int64_t retention_ms, fzip_error_t *error);

/* Cancels the job `job_id` of `user_id` (NULL: any user).  One no worker
 * holds, in a status kind->cancel_now accepts, ends at once
 * (cancelled_status, reaped `retention_ms` later); a running one is
 * flagged (job_request_cancel) and *flagged set, for the caller to wake
 * its runner: its worker stops at its next save.  *out receives the
 * record as stored afterwards.  FAILED_PRECONDITION for a job that is not
 * runnable; ABORTED when every one of JOB_UPDATE_RETRIES attempts lost a
 * race (never a stale, uncancelled record). */
bool job_cancel(store_job_t **out, bool *flagged, store_t *store, const job_kind_t *kind,
                const char *user_id, const char *job_id, int64_t retention_ms,
                fzip_error_t *error);

/* The reaper's step for one expired job of this kind: a runnable job is
 * left alone (its expiry cleared: its run sets a new one when it ends);
 * otherwise its blobs go, and a job in expired_from becomes expired_status
 * (kept retention_ms more) while any other is deleted. */
bool job_expire(store_t *store, const job_kind_t *kind, store_job_t *rec, int64_t now_ms,
                int64_t retention_ms, fzip_error_t *error);

#endif
