/*
 * svc_jobs: the job RPCs that ExportService and ImportService share --
 * Get, List, Watch -- written once over a small description of the job
 * kind (svc_jobs_kind_t) instead of once per service.
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
#include "rpc.h"
#include "store.h"

#define SVC_JOBS_PAGE_DEFAULT 20
#define SVC_JOBS_PAGE_MAX 100
#define SVC_JOBS_WATCH_POLL_MS 250

typedef struct {
  store_job_kind_t kind;
  const char *noun;                       /* "export" (for messages) */
  const char *id_field;                   /* request field: "export_id" */
  const ProtobufCMessageDescriptor *job;  /* fzip.v1.ExportJob */
  /* Adjusts a job just read for the caller (e.g. COMPLETED past expiry
   * reads EXPIRED); may be NULL. */
  void (*view)(ProtobufCMessage *job, int64_t now_ms);
  /* Whether a status value is final (Watch ends after sending it). */
  bool (*is_terminal)(int status);
} svc_jobs_kind_t;

/* The service object handlers find in rpc_method_t.data must start with
 * this header so the shared handlers can find the kind and the store. */
typedef struct {
  const svc_jobs_kind_t *kind;
  store_t *store;
} svc_jobs_base_t;

/* Reads the caller's job `id` into the call's arena (viewed).  *rec (may
 * be NULL) receives the record, the caller's to destroy.  NOT_FOUND for
 * absent or foreign jobs, INVALID_ARGUMENT for malformed ids. */
bool svc_jobs_load(ProtobufCMessage **job, store_job_t **rec, svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                   const char *id, fzip_error_t *error);
/* Unpacks a record's job into the arena (viewed). */
bool svc_jobs_unpack(ProtobufCMessage **job, const svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                     const store_job_t *rec, fzip_error_t *error);
/* The job's status (its "status" enum field). */
int svc_jobs_status(const ProtobufCMessage *job);

/* Builds a response `desc` whose "job" field is `job`. */
bool svc_jobs_reply(ProtobufCMessage **resp, rpc_ctx_t *ctx, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage *job, fzip_error_t *error);
/* The string field `name` of a message ("" if unset). */
const char *svc_jobs_string_field(const ProtobufCMessage *msg, const char *name);

/* Shared handlers for rows of kind Get (unary), List (unary) and Watch
 * (server streaming). */
bool svc_jobs_get(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                  fzip_error_t *error);
bool svc_jobs_list(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                   fzip_error_t *error);
extern const rpc_server_stream_ops_t svc_jobs_watch_ops;

#endif
