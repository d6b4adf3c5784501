/* svc_jobs: see svc_jobs.h. */
#include "svc_jobs.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_entity.h"
#include "fzip_log.h"
#include "fzip_util.h"
#include "job_body.h"

static bool oom(fzip_error_t *error) {
  return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                        "response exceeds the call's memory limit");
}

static void *field_ptr(const ProtobufCMessage *msg, const char *name,
                       const ProtobufCFieldDescriptor **fd_out) {
  const ProtobufCFieldDescriptor *fd =
      protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
  if (fd_out)
    *fd_out = fd;
  return fd ? (char *)msg + fd->offset : NULL;
}

const char *svc_jobs_string_field(const ProtobufCMessage *msg, const char *name) {
  const ProtobufCFieldDescriptor *fd = NULL;
  char **p = field_ptr(msg, name, &fd);
  return (p && fd->type == PROTOBUF_C_TYPE_STRING && *p) ? *p : "";
}

static int32_t int_field(const ProtobufCMessage *msg, const char *name) {
  const ProtobufCFieldDescriptor *fd = NULL;
  int32_t *p = field_ptr(msg, name, &fd);
  return (p && (fd->type == PROTOBUF_C_TYPE_INT32 || fd->type == PROTOBUF_C_TYPE_ENUM)) ? *p : 0;
}

static ProtobufCMessage *new_message(rpc_ctx_t *ctx, const ProtobufCMessageDescriptor *desc) {
  ProtobufCMessage *m = rpc_ctx_alloc(ctx, desc->sizeof_message);
  if (m)
    desc->message_init(m);
  return m;
}

bool svc_jobs_unpack(ProtobufCMessage **job, const svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                     const store_job_t *rec, fzip_error_t *error) {
  const ProtobufCFieldDescriptor *fd = NULL;
  char **request_id;

  if (!job_body_unpack(job, rec->body, svc->kind->job, rpc_ctx_allocator(ctx), error))
    return false;
  /* The record keeps the idempotency key; the body never holds it. */
  request_id = field_ptr(*job, "request_id", &fd);
  if (request_id && fd->type == PROTOBUF_C_TYPE_STRING && rec->request_id[0] &&
      !(*request_id = rpc_ctx_strdup(ctx, rec->request_id)))
    return oom(error);
  if (svc->kind->view)
    svc->kind->view(*job, fzip_now_ms());
  return true;
}

bool svc_jobs_load(ProtobufCMessage **job, store_job_t **rec_out, svc_jobs_base_t *svc,
                   rpc_ctx_t *ctx, const char *id, fzip_error_t *error) {
  store_job_t *rec = NULL;
  bool ok = false;

  if (!fzip_id_is_valid(id)) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                   "%s is missing or not a valid id", svc->kind->id_field);
    rpc_ctx_add_violation(ctx, svc->kind->id_field, error->message);
    return fzip_error_set_reason(error, "INVALID_JOB_ID");
  }
  if (!store_job_get(&rec, svc->store, svc->kind->kind, rpc_ctx_user_id(ctx), id, error)) {
    if (error->code == FZIP_ERR_NOT_FOUND) {
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_NOT_FOUND, "%s %s not found",
                     svc->kind->noun, id);
      fzip_error_set_reason(error, "JOB_NOT_FOUND");
    }
    return false;
  }
  if (!svc_jobs_unpack(job, svc, ctx, rec, error))
    goto done;
  if (rec_out) {
    *rec_out = rec;
    rec = NULL;
  }
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

bool svc_jobs_reply(ProtobufCMessage **resp, rpc_ctx_t *ctx, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage *job, fzip_error_t *error) {
  ProtobufCMessage *out = new_message(ctx, desc);
  ProtobufCMessage **slot = NULL;

  if (!out)
    return oom(error);
  slot = field_ptr(out, "job", NULL);
  if (!slot)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "%s has no job field",
                          desc->name);
  *slot = job;
  *resp = out;
  return true;
}

bool svc_jobs_get(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                  fzip_error_t *error) {
  svc_jobs_base_t *svc = rpc_ctx_method_data(ctx);
  ProtobufCMessage *job = NULL;

  if (!svc_jobs_load(&job, NULL, svc, ctx, svc_jobs_string_field(req, svc->kind->id_field),
                     error))
    return false;
  return svc_jobs_reply(resp, ctx, rpc_ctx_method(ctx)->response, job, error);
}

bool svc_jobs_list(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                   fzip_error_t *error) {
  svc_jobs_base_t *svc = rpc_ctx_method_data(ctx);
  ProtobufCMessage *out = new_message(ctx, rpc_ctx_method(ctx)->response);
  const ProtobufCFieldDescriptor *jobs_fd = NULL;
  void *jobs_slot = NULL;
  char **token_slot = NULL;
  ProtobufCMessage **jobs = NULL;
  store_job_t **recs = NULL;
  size_t n = 0;
  char *next = NULL;
  int32_t page = int_field(req, "page_size");
  bool ok = false;

  if (!out)
    return oom(error);
  jobs_slot = field_ptr(out, "jobs", &jobs_fd);
  token_slot = field_ptr(out, "next_page_token", NULL);
  if (!jobs_slot || !token_slot || jobs_fd->label != PROTOBUF_C_LABEL_REPEATED)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "bad list response shape");
  if (page < 0 || page > SVC_JOBS_PAGE_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "page_size must be between 0 and %d", SVC_JOBS_PAGE_MAX);
  if (!store_job_list(&recs, &n, &next, svc->store, svc->kind->kind, rpc_ctx_user_id(ctx),
                      (size_t)(page ? page : SVC_JOBS_PAGE_DEFAULT),
                      svc_jobs_string_field(req, "page_token"), error)) {
    if (error->code == FZIP_ERR_INVALID_ARGUMENT)
      fzip_error_prefix(error, "page_token");
    goto done;
  }
  jobs = rpc_ctx_alloc(ctx, (n ? n : 1) * sizeof *jobs);
  if (!jobs) {
    oom(error);
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    if (!svc_jobs_unpack(&jobs[i], svc, ctx, recs[i], error))
      goto done;
  }
  /* protobuf-c lays a repeated field out as (size_t n_x; T *x) with the
   * count at quantifier_offset. */
  *(size_t *)((char *)out + jobs_fd->quantifier_offset) = n;
  *(ProtobufCMessage ***)jobs_slot = jobs;
  *token_slot = rpc_ctx_strdup(ctx, next ? next : "");
  if (!*token_slot) {
    oom(error);
    goto done;
  }
  *resp = out;
  ok = true;
done:
  store_job_list_free(recs, n);
  bson_free(next);
  return ok;
}

/* ---- Watch ------------------------------------------------------------ */

typedef struct {
  char id[FZIP_ID_MAX + 1];
  int64_t last_version;
  int last_status;
  bool finished;
} watch_state_t;

static bool watch_open(rpc_ctx_t *ctx, const ProtobufCMessage *req, void **state,
                       fzip_error_t *error) {
  svc_jobs_base_t *svc = rpc_ctx_method_data(ctx);
  const char *id = svc_jobs_string_field(req, svc->kind->id_field);
  ProtobufCMessage *job = NULL;
  watch_state_t *st = NULL;

  if (!svc_jobs_load(&job, NULL, svc, ctx, id, error))
    return false;
  st = calloc(1, sizeof *st);
  if (!st)
    return fzip_error_oom(error, "watch state");
  snprintf(st->id, sizeof st->id, "%s", id);
  st->last_version = -1;
  st->last_status = -1;
  *state = st;
  return true;
}

/* Sends a snapshot whenever the record changed (or its viewed status did,
 * e.g. on expiry); polls the store in between without holding a thread,
 * since another replica may be the one running the job. */
static bool watch_next(rpc_ctx_t *ctx, void *state, ProtobufCMessage **msg, bool *done,
                       int *retry_after_ms, fzip_error_t *error) {
  svc_jobs_base_t *svc = rpc_ctx_method_data(ctx);
  watch_state_t *st = state;
  store_job_t *rec = NULL;
  ProtobufCMessage *job = NULL;
  int status;
  bool ok = false;

  if (st->finished) {
    *done = true;
    return true;
  }
  if (!svc_jobs_load(&job, &rec, svc, ctx, st->id, error))
    return false;
  status = job_status_of(job);
  if (rec->version == st->last_version && status == st->last_status) {
    *retry_after_ms = SVC_JOBS_WATCH_POLL_MS;
    ok = true;
    goto done;
  }
  if (!svc_jobs_reply(msg, ctx, rpc_ctx_method(ctx)->response, job, error))
    goto done;
  st->last_version = rec->version;
  st->last_status = status;
  st->finished = svc->kind->is_terminal(status);
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

static void watch_close(rpc_ctx_t *ctx, void *state) { free(state); }

const rpc_server_stream_ops_t svc_jobs_watch_ops = {watch_open, watch_next, watch_close};

/* ---- Cancel / Delete -------------------------------------------------- */

/* job_cancel (job_kind.h) answered with the job as it is stored after:
 * the load first checks the id and names a missing job for the caller. */
bool svc_jobs_cancel(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     fzip_error_t *error) {
  svc_jobs_base_t *svc = rpc_ctx_method_data(ctx);
  const job_kind_t *kind = svc->kind;
  const char *id = svc_jobs_string_field(req, kind->id_field);
  store_job_t *rec = NULL;
  ProtobufCMessage *view = NULL;
  bool flagged = false;
  bool ok = false;

  if (!svc_jobs_load(&view, NULL, svc, ctx, id, error))
    return false;
  if (!job_cancel(&rec, &flagged, svc->store, kind, rpc_ctx_user_id(ctx), id, svc->retention_ms,
                  error)) {
    if (error->code == FZIP_ERR_NOT_FOUND) /* deleted meanwhile */
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_NOT_FOUND, "%s %s not found", kind->noun,
                     id);
    goto done;
  }
  if (flagged)
    job_runner_notify(svc->runner);
  if (!svc_jobs_unpack(&view, svc, ctx, rec, error))
    goto done;
  ok = svc_jobs_reply(resp, ctx, rpc_ctx_method(ctx)->response, view, error);
done:
  store_job_destroy(rec);
  return ok;
}

/* job_delete.  A worker still running (where the kind allows it) finds
 * its job gone at its next save and removes what it wrote. */
bool svc_jobs_delete(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     fzip_error_t *error) {
  svc_jobs_base_t *svc = rpc_ctx_method_data(ctx);
  const job_kind_t *kind = svc->kind;
  ProtobufCMessage *out = new_message(ctx, rpc_ctx_method(ctx)->response);
  store_job_t *rec = NULL;
  ProtobufCMessage *view = NULL;
  bool ok = false;

  if (!out)
    return oom(error);
  if (!svc_jobs_load(&view, &rec, svc, ctx, svc_jobs_string_field(req, kind->id_field), error))
    goto done;
  if (rec->runnable && !kind->delete_running) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION, "%s %s is %s: %s",
                   kind->noun, rec->job_id, job_status_name(kind, job_status_of(view)),
                   kind->delete_refused);
    goto done;
  }
  if (!job_delete(svc->store, kind, rec, error))
    goto done;
  fzip_log(FZIP_LOG_INFO, kind->noun, "job deleted", kind->noun, rec->job_id, "user",
           rec->user_id, NULL);
  *resp = out;
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

/* ---- expiry ----------------------------------------------------------- */

bool svc_jobs_expire(void *ctx, store_job_t *job, int64_t now_ms, bool *handled,
                     fzip_error_t *error) {
  svc_jobs_base_t *svc = ctx;

  *handled = false;
  if (job->kind != svc->kind->kind)
    return true;
  *handled = true;
  return job_expire(svc->store, svc->kind, job, now_ms, svc->retention_ms, error);
}

/* ---- the service base ------------------------------------------------- */

/* The methods every job service shares: a verb (the row's name) and the
 * service's noun, capitalised, with `suffix` ("ListExports"). */
static const struct {
  svc_jobs_own_t row;
  const char *suffix;
} shared_methods[] = {
    {{"Get", RPC_UNARY, svc_jobs_get, NULL, NULL}, ""},
    {{"List", RPC_UNARY, svc_jobs_list, NULL, NULL}, "s"},
    {{"Cancel", RPC_UNARY, svc_jobs_cancel, NULL, NULL}, ""},
    {{"Delete", RPC_UNARY, svc_jobs_delete, NULL, NULL}, ""},
    {{"Watch", RPC_SERVER_STREAMING, NULL, &svc_jobs_watch_ops, NULL}, ""},
};

/* Whether `method` is exactly verb + Noun + suffix: a future
 * "ListExportIssues" is not "ListExports". */
static bool is_shared(const char *method, const char *verb, const char *noun,
                      const char *suffix) {
  char name[SVC_JOBS_PATH_MAX];
  int len = snprintf(name, sizeof name, "%s%c%s%s", verb, toupper((unsigned char)noun[0]),
                     noun[0] ? noun + 1 : "", suffix);
  return len > 0 && (size_t)len < sizeof name && strcmp(method, name) == 0;
}

static const svc_jobs_own_t *handler_of(const char *method, const char *noun,
                                        const svc_jobs_own_t own[SVC_JOBS_OWN]) {
  for (size_t i = 0; i < SVC_JOBS_OWN; i++) {
    if (own[i].name && strcmp(method, own[i].name) == 0)
      return &own[i];
  }
  for (size_t i = 0; i < sizeof shared_methods / sizeof shared_methods[0]; i++) {
    if (is_shared(method, shared_methods[i].row.name, noun, shared_methods[i].suffix))
      return &shared_methods[i].row;
  }
  return NULL;
}

static bool fill_rows(svc_jobs_base_t *base, const ProtobufCServiceDescriptor *service,
                      const svc_jobs_own_t own[SVC_JOBS_OWN], fzip_error_t *error) {
  if (service->n_methods > SVC_JOBS_ROWS)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                          "%s has %u methods, a job service at most %d", service->name,
                          service->n_methods, SVC_JOBS_ROWS);
  base->n_rows = service->n_methods;
  for (size_t i = 0; i < base->n_rows; i++) {
    const ProtobufCMethodDescriptor *m = &service->methods[i];
    const svc_jobs_own_t *h = handler_of(m->name, base->kind->noun, own);
    rpc_method_t *row = &base->rows[i];
    int len;

    if (!h)
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "no handler for %s.%s",
                            service->name, m->name);
    len = snprintf(base->paths[i], sizeof base->paths[i], "/%s/%s", service->name, m->name);
    if (len < 0 || (size_t)len >= sizeof base->paths[i])
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                            "path of %s.%s exceeds SVC_JOBS_PATH_MAX", service->name, m->name);
    *row = (rpc_method_t){.path = base->paths[i],
                          .kind = h->kind,
                          .request = m->input,
                          .response = m->output,
                          .requires_auth = true,
                          .unary = h->unary,
                          .server_stream = h->server_stream,
                          .client_stream = h->client_stream,
                          .data = base};
    base->row_ptrs[i] = row;
  }
  return true;
}

bool svc_jobs_base_init(svc_jobs_base_t *base, const job_kind_t *kind, store_t *store,
                        int64_t retention_ms, const ProtobufCServiceDescriptor *service,
                        const svc_jobs_own_t own[SVC_JOBS_OWN],
                        const job_runner_options_t *runner, fzip_error_t *error) {
  job_runner_options_t ro = *runner;

  base->kind = kind;
  base->store = store;
  base->retention_ms = retention_ms;
  if (!fill_rows(base, service, own, error))
    return false;
  ro.kind = kind->kind;
  ro.name = kind->noun;
  return job_runner_new(&base->runner, store, &ro, error);
}

void svc_jobs_base_fini(svc_jobs_base_t *base) {
  job_runner_destroy(base->runner);
  base->runner = NULL;
}

/* ---- idempotent creates and the per-user queue cap ------------------- */

static bool check_request_id(const char *id, fzip_error_t *error) {
  size_t n = strlen(id);
  if (n > SVC_JOBS_REQUEST_ID_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "request_id is %zu bytes; the limit is %d", n, SVC_JOBS_REQUEST_ID_MAX);
  for (size_t i = 0; i < n; i++) {
    if (id[i] <= ' ' || id[i] > '~')
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                            "request_id must be printable ASCII without spaces (byte %zu is not)",
                            i);
  }
  return true;
}

bool svc_jobs_request_init_user(svc_jobs_request_t *req, const char *user_id,
                                const char *request_id, const ProtobufCMessage *params,
                                fzip_error_t *error) {
  size_t n = protobuf_c_message_get_packed_size(params);
  uint8_t *packed = NULL;

  req->request_id = request_id ? request_id : "";
  req->user_id = user_id;
  req->trace_id = "";
  if (!check_request_id(req->request_id, error))
    return fzip_error_set_reason(error, "INVALID_REQUEST_ID");
  /* protobuf-c packs fields in number order: one message, one digest. */
  packed = malloc(n > 0 ? n : 1);
  if (!packed)
    return fzip_error_oom(error, "request digest");
  protobuf_c_message_pack(params, packed);
  fzip_sha256_hex(req->digest, packed, n);
  free(packed);
  return true;
}

bool svc_jobs_request_init(svc_jobs_request_t *req, rpc_ctx_t *ctx, const char *request_id,
                           const ProtobufCMessage *params, fzip_error_t *error) {
  if (!svc_jobs_request_init_user(req, rpc_ctx_user_id(ctx), request_id, params, error)) {
    if (error->code == FZIP_ERR_INVALID_ARGUMENT) /* the request_id, not memory */
      rpc_ctx_add_violation(ctx, "request_id", error->message);
    return false;
  }
  req->trace_id = rpc_ctx_request_id(ctx);
  return true;
}

/* The job that holds the caller's request_id, if created within the window. */
static bool find_replay(store_job_t **existing, svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                        const svc_jobs_request_t *req, fzip_error_t *error) {
  store_job_t *rec = NULL;
  fzip_error_t ferr;

  *existing = NULL;
  if (!req->request_id[0])
    return true;
  fzip_error_clear(&ferr);
  (void)ctx; /* the request says whose job it is */
  if (!store_job_find_request(&rec, svc->store, svc->kind->kind, req->user_id,
                              req->request_id, &ferr)) {
    if (ferr.code == FZIP_ERR_NOT_FOUND)
      return true;
    *error = ferr;
    return false;
  }
  if (rec->created_at <= fzip_now_ms() - SVC_JOBS_REQUEST_WINDOW_MS) {
    store_job_destroy(rec); /* too old: the create gives its key up */
    return true;
  }
  *existing = rec;
  return true;
}

/* A replay must be the same request: same parameters, same digest. */
static bool check_same_request(store_job_t **existing, svc_jobs_base_t *svc,
                               const svc_jobs_request_t *req, fzip_error_t *error) {
  if (strcmp((*existing)->request_digest, req->digest) == 0)
    return true;
  fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ALREADY_EXISTS,
                 "request_id %s was used for a different request (%s %s); send a new "
                 "request_id for new parameters",
                 req->request_id, svc->kind->noun, (*existing)->job_id);
  store_job_destroy(*existing);
  *existing = NULL;
  return fzip_error_set_reason(error, "REQUEST_ID_REUSED");
}

static bool check_queue_cap(svc_jobs_base_t *svc, const svc_jobs_request_t *req,
                            fzip_error_t *error) {
  uint64_t queued = 0;

  if (svc->max_queued <= 0)
    return true;
  if (!store_job_count_runnable(&queued, svc->store, req->user_id, error))
    return false;
  if (queued < (uint64_t)svc->max_queued)
    return true;
  fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_RESOURCE_EXHAUSTED,
                 "%" PRIu64 " of your jobs are queued or running; the limit is %" PRId64
                 " (--max-queued-jobs-per-user): wait for one to finish",
                 queued, svc->max_queued);
  return fzip_error_set_reason(error, "QUEUED_JOBS_LIMIT");
}

bool svc_jobs_admit(store_job_t **existing, svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                    const svc_jobs_request_t *req, bool adds_runnable, fzip_error_t *error) {
  if (!find_replay(existing, svc, ctx, req, error))
    return false;
  if (*existing)
    return check_same_request(existing, svc, req, error);
  return !adds_runnable || check_queue_cap(svc, req, error);
}

bool svc_jobs_create(store_job_t **existing, svc_jobs_base_t *svc, rpc_ctx_t *ctx,
                     store_job_t *rec, const svc_jobs_request_t *req, fzip_error_t *error) {
  snprintf(rec->request_id, sizeof rec->request_id, "%s", req->request_id);
  snprintf(rec->request_digest, sizeof rec->request_digest, "%s", req->digest);
  (void)ctx;
  snprintf(rec->trace_id, sizeof rec->trace_id, "%s", req->trace_id);
  if (!store_job_create_once(existing, svc->store, rec, SVC_JOBS_REQUEST_WINDOW_MS, error))
    return false;
  return !*existing || check_same_request(existing, svc, req, error);
}
