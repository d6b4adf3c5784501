/*
 * svc_jobs: what ExportService and ImportService share, written once over
 * the job kind table (job_kind.h): the service base (its seven method
 * rows and its job runner), the job RPCs Get, List, Watch, Cancel and
 * Delete, and the reaper's expiry hook.  A service keeps only what
 * differs: its job body, its create/upload/start and download calls.
 *
 * Requests and responses are reached through their protobuf-c
 * descriptors by field name (the id field, page_size/page_token,
 * job/jobs/next_page_token), so the only per-kind code is the table row.
 */
#ifndef FZIP_SVC_JOBS_H
#define FZIP_SVC_JOBS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "fzip_error.h"
#include "job_kind.h"
#include "jobs.h"
#include "rpc.h"
#include "store.h"

#define SVC_JOBS_PAGE_DEFAULT 20
#define SVC_JOBS_PAGE_MAX 100
#define SVC_JOBS_WATCH_POLL_MS 250
#define SVC_JOBS_ROWS 8          /* most methods a job service has */
#define SVC_JOBS_OWN 3           /* most of them the service answers itself (rows
                                  * past a service's own have name NULL) */
#define SVC_JOBS_PATH_MAX 96     /* "/fzip.v1.ExportService/DownloadExport" */

/* The service object handlers find in rpc_method_t.data must start with
 * this base so the shared handlers can find the kind, the store and the
 * runner. */
typedef struct {
  const job_kind_t *kind;
  store_t *store;
  int64_t retention_ms; /* ended jobs are reaped this long after they end */
  job_runner_t *runner;
  int64_t max_queued;   /* runnable jobs a user may have before creates are refused; 0: no cap */
  size_t n_rows;                /* the service's methods, at most SVC_JOBS_ROWS */
  rpc_method_t rows[SVC_JOBS_ROWS];
  const rpc_method_t *row_ptrs[SVC_JOBS_ROWS];
  char paths[SVC_JOBS_ROWS][SVC_JOBS_PATH_MAX];
} svc_jobs_base_t;

/* A method the service answers itself (create/upload/start/download):
 * its name in the service and its handler. */
typedef struct {
  const char *name; /* "CreateExport" */
  rpc_kind_t kind;
  rpc_unary_fn unary;
  const rpc_server_stream_ops_t *server_stream;
  const rpc_client_stream_ops_t *client_stream;
} svc_jobs_own_t;

/* Fills the base of a service (whose first member it is): one row per
 * method of `service` (path, request and response from its descriptor,
 * auth required, the service as data), answered by the shared handler
 * of its verb (Get, List, Cancel, Delete, Watch) or by the `own` method
 * of its name; then starts the runner (`runner` gives workers, lease,
 * poll, owner, run and data; kind and name come from `kind`). */
bool svc_jobs_base_init(svc_jobs_base_t *base, const job_kind_t *kind, store_t *store,
                        int64_t retention_ms, const ProtobufCServiceDescriptor *service,
                        const svc_jobs_own_t own[SVC_JOBS_OWN],
                        const job_runner_options_t *runner, fzip_error_t *error);
/* Stops the runner (interrupted jobs are released for takeover). */
void svc_jobs_base_fini(svc_jobs_base_t *base);

/* A store_reap_hook_fn: `ctx` is the service (its base first).  Expires
 * jobs of the base's kind (job_expire) and sets *handled for them. */
bool svc_jobs_expire(void *ctx, store_job_t *job, int64_t now_ms, bool *handled,
                     fzip_error_t *error);

/* Reads the caller's job `id` into the call's arena (viewed).  *rec (may
 * be NULL) receives the record, the caller's to destroy.  NOT_FOUND for
 * absent or foreign jobs, INVALID_ARGUMENT for malformed ids. */
bool svc_jobs_load(ProtobufCMessage **job, store_job_t **rec, svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                   const char *id, fzip_error_t *error);
/* Unpacks a record's job into the arena (viewed), with the record's
 * request_id in the job's request_id field. */
bool svc_jobs_unpack(ProtobufCMessage **job, const svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                     const store_job_t *rec, fzip_error_t *error);
/* Builds a response `desc` whose "job" field is `job`. */
bool svc_jobs_reply(ProtobufCMessage **resp, rpc_ctx_t *ctx, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage *job, fzip_error_t *error);
/* The string field `name` of a message ("" if unset). */
const char *svc_jobs_string_field(const ProtobufCMessage *msg, const char *name);

/* ---- idempotent creates and the per-user queue cap ------------------- */

/* A request_id names one logical create for this long (docs/GRPC.md). */
#define SVC_JOBS_REQUEST_WINDOW_MS (24LL * 3600 * 1000)
/* Longest request_id: 1 to this many bytes of printable ASCII, no space. */
#define SVC_JOBS_REQUEST_ID_MAX STORE_REQUEST_ID_MAX
/* Default of --max-queued-jobs-per-user: runnable (queued or running)
 * jobs of one user, both kinds together. */
#define SVC_JOBS_MAX_QUEUED_DEFAULT 16

typedef struct {
  const char *request_id; /* borrowed; "" when the call has none */
  char digest[FZIP_SHA256_HEX_LEN + 1]; /* of the request's parameters */
  const char *user_id;  /* whose job (borrowed): the call's user, or an internal creator's */
  const char *trace_id; /* the call's x-request-id (borrowed); "" for an internal create */
} svc_jobs_request_t;

/* Checks request_id (NULL or "": none) and digests `params`: the
 * creating request, normalised (defaults filled in), with its request_id
 * cleared, so that only its parameters count.  INVALID_ARGUMENT (reason
 * INVALID_REQUEST_ID, violation on field request_id) for a malformed
 * request_id. */
bool svc_jobs_request_init(svc_jobs_request_t *req, rpc_ctx_t *ctx, const char *request_id,
                           const ProtobufCMessage *params, fzip_error_t *error);
/* The same for a create that no call asked for (the scheduler): the job
 * is `user_id`'s; svc_jobs_admit and svc_jobs_create then take ctx NULL. */
bool svc_jobs_request_init_user(svc_jobs_request_t *req, const char *user_id,
                                const char *request_id, const ProtobufCMessage *params,
                                fzip_error_t *error);
/* Before a create.  A request_id the caller used within the window gives
 * *existing (the caller's to destroy): that job, to answer with, nothing
 * else done; ALREADY_EXISTS (reason REQUEST_ID_REUSED) when its
 * parameters differ.  Otherwise, when the new job will be runnable
 * (`adds_runnable`), RESOURCE_EXHAUSTED (reason QUEUED_JOBS_LIMIT) if the
 * user already has svc->max_queued runnable jobs. */
bool svc_jobs_admit(store_job_t **existing, svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                    const svc_jobs_request_t *req, bool adds_runnable, fzip_error_t *error);
/* Creates `rec` with the request's id and digest and the call's
 * x-request-id (the job's log lines carry it).  *existing as in
 * svc_jobs_admit when a simultaneous call with the same request_id
 * created its job first (then `rec` was not written). */
bool svc_jobs_create(store_job_t **existing, svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                     store_job_t *rec, const svc_jobs_request_t *req, fzip_error_t *error);

/* Shared handlers for rows of kind Get, List, Cancel, Delete (unary) and
 * Watch (server streaming). */
bool svc_jobs_cancel(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     fzip_error_t *error);
bool svc_jobs_delete(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     fzip_error_t *error);
bool svc_jobs_get(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                  fzip_error_t *error);
bool svc_jobs_list(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                   fzip_error_t *error);
extern const rpc_server_stream_ops_t svc_jobs_watch_ops;

#endif
