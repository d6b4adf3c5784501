/*
 * rpc_call: the per-call state machine.
 *
 * A call struct is created when a call is requested from the core and is
 * the owner of every tag the completion queue returns for it.  Its CQ
 * thread is the only one that changes `state` and starts batches that
 * carry data; handler steps (auth, open/next/close, recv/finish, unary)
 * run as tasks on the worker pool, leave their result in the struct and
 * post an empty batch so that the CQ thread picks the result up.  Every
 * transition goes through call_set_state, which logs it at debug level.
 *
 * Lifetime: `refs` counts the batches in flight plus one "lifecycle"
 * reference held from the request until the final status batch completes;
 * the struct is freed when it reaches zero.  The close callback runs once
 * for every call whose handler was entered (auth passed), whatever the
 * outcome: the worker runs it right after a terminal step, and the CQ
 * thread queues it when the call ends from outside (cancel, deadline,
 * shutdown).  See docs/GRPC.md for the state/event table.
 */
#include "rpc_call.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_log.h"
#include "fzip_metrics.h"
#include "fzip_util.h"
#include "rpc_arena.h"
#include "rpc_details.h"
#include "rpc_join.h"
#include "rpc_payload.h"

#define RPC_USER_ID_MAX 256
#define RPC_PEER_MAX 128
#define RPC_AUTH_VALUE_MAX 8192
#define RPC_PATH_MAX 256

typedef enum {
  EV_REQUEST = 0, /* a client arrived (or the request failed at shutdown) */
  EV_CLOSE,       /* RECV_CLOSE_ON_SERVER: the call is over for the client */
  EV_RECV,        /* one request message read (NULL: client half-closed) */
  EV_SEND,        /* one response message sent */
  EV_WORK,        /* a worker finished a handler step */
  EV_STATUS,      /* the final status was sent */
  EV_COUNT
} call_event_t;

typedef enum {
  CALL_REQUESTED = 0, /* waiting for a client */
  CALL_WORKING,       /* a handler step is queued or running on the pool */
  CALL_RECEIVING,     /* RECV_MESSAGE in flight */
  CALL_SENDING,       /* SEND_MESSAGE in flight */
  CALL_FINISHING,     /* SEND_STATUS_FROM_SERVER in flight */
  CALL_DONE,          /* status sent; waiting for the last completions */
} call_state_t;

/* What a worker step left for the CQ thread. */
typedef enum {
  RES_CONTINUE = 0, /* read the next request message */
  RES_MESSAGE,      /* send out_msg, then continue */
  RES_END,          /* send the final status (end_error) with out_msg if any */
} call_result_t;

typedef struct rpc_call rpc_call_t;

/* Trailing metadata of a status: x-request-id, grpc-status-details-bin. */
#define TRAILING_MD_MAX 2

/* One rpc_ctx_add_violation, copied. */
typedef struct {
  char field[RPC_VIOLATION_FIELD_MAX];
  char description[FZIP_ERROR_MESSAGE_MAX];
} call_violation_t;

typedef struct {
  rpc_call_t *call;
  call_event_t ev;
} call_tag_t;

struct rpc_ctx {
  rpc_call_t *call;
  rpc_arena_t *arena;
  char user_id[RPC_USER_ID_MAX];
  char peer[RPC_PEER_MAX];
  char request_id[RPC_REQUEST_ID_MAX];
};

struct rpc_call {
  rpc_server_t *server;
  const rpc_method_t *method; /* &unknown_method for calls to unregistered paths */
  char path[RPC_PATH_MAX];    /* for logs: the method's path, or the unknown one */
  size_t method_index;
  int cq_index;
  call_tag_t tags[EV_COUNT];
  call_state_t state;
  atomic_int refs;
  atomic_bool cancelled; /* RECV_CLOSE said cancelled, or a batch failed */

  /* Filled by the core when a client arrives. */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array request_md;
  grpc_byte_buffer *request_payload;
  grpc_call_details details; /* unknown methods only */

  /* Batch storage: must live until the batch completes. */
  pthread_mutex_t batch_mu; /* the core wants start_batch serialised per call */
  int close_cancelled;
  grpc_byte_buffer *recv_buf;
  grpc_byte_buffer *send_buf;
  grpc_slice status_details;
  bool status_details_set;
  bool initial_md_sent;
  /* The request id (its slices point into ctx) and, for a failure, the
   * google.rpc.Status (details_bin). */
  grpc_metadata trailing_md[TRAILING_MD_MAX];
  grpc_slice details_bin;
  bool details_bin_set;

  /* Read-ahead and write-behind (CQ thread only): a streaming call's
   * worker step may run while its send or receive is in flight, so that
   * reading the next chunk (store, disk) overlaps moving the last one
   * (network); at most one message is produced ahead and one read ahead,
   * which keeps a slow peer's cost to two messages per call. */
  bool work_busy;               /* a handler step is queued or running */
  bool send_busy;               /* a SEND_MESSAGE batch is in flight */
  bool recv_busy;               /* a RECV_MESSAGE batch is in flight */
  bool half_closed;             /* the client half-closed (its NULL message was read) */
  grpc_byte_buffer *pending_in; /* a message read ahead, for the next recv step */

  /* Handler side, touched by one worker at a time. */
  rpc_task_t task;
  rpc_ctx_t ctx;
  rpc_payload_pool_t *payload; /* rpc_ctx_payload; NULL until the first */
  rpc_join_t *join;            /* a multi-slice request's bytes; NULL until the first */
  void *handler_state;
  bool handler_entered; /* auth passed: close must run once */
  bool closed;
  grpc_byte_buffer *in_msg;  /* request message for the next step */
  grpc_byte_buffer *out_msg; /* packed response from the last step */
  call_result_t result;
  fzip_error_t end_error; /* code FZIP_OK for success */
  call_violation_t *violations; /* rpc_ctx_add_violation; NULL until the first */
  size_t n_violations;

  int64_t start_ms;
};

/* Calls to paths nobody registered arrive through the core's generic
 * request; without one they would wait for their deadline.  This row
 * gives them a method to log and an UNIMPLEMENTED answer. */
static const rpc_method_t unknown_method = {.path = "(unknown)", .kind = RPC_CLIENT_STREAMING};

static const char *const state_names[] = {"requested", "working", "receiving",
                                          "sending",   "finishing", "done"};

static void call_set_state(rpc_call_t *c, call_state_t next, const char *why) {
  if (fzip_log_enabled(FZIP_LOG_DEBUG)) {
    fzip_log(FZIP_LOG_DEBUG, "rpc", "call state", "method", c->path, "request_id",
             c->ctx.request_id, "from", state_names[c->state], "to", state_names[next], "why",
             why, NULL);
  }
  c->state = next;
}

/* ---- lifetime ------------------------------------------------------------ */

static void call_free(rpc_call_t *c) {
  rpc_server_t *server = c->server;
  bool stream_end = c->handler_entered && c->method->kind != RPC_UNARY &&
                    server->opts.on_stream_end;
  if (c->call)
    grpc_call_unref(c->call);
  grpc_metadata_array_destroy(&c->request_md);
  if (c->method == &unknown_method)
    grpc_call_details_destroy(&c->details);
  grpc_byte_buffer_destroy(c->request_payload);
  grpc_byte_buffer_destroy(c->recv_buf);
  grpc_byte_buffer_destroy(c->send_buf);
  grpc_byte_buffer_destroy(c->in_msg);
  grpc_byte_buffer_destroy(c->out_msg);
  grpc_byte_buffer_destroy(c->pending_in);
  if (c->status_details_set)
    grpc_slice_unref(c->status_details);
  if (c->details_bin_set)
    grpc_slice_unref(c->details_bin);
  free(c->violations);
  rpc_payload_pool_release(c->payload);
  rpc_join_destroy(c->join);
  rpc_arena_destroy(c->ctx.arena);
  pthread_mutex_destroy(&c->batch_mu);
  free(c);
  /* Before the count drops: a shutdown waits for it to reach zero and may
   * then free the server (and what the hook's data points to). */
  if (stream_end)
    server->opts.on_stream_end(server->opts.on_stream_end_data);
  atomic_fetch_sub(&server->live_calls, 1);
}

static void call_unref(rpc_call_t *c) {
  if (atomic_fetch_sub(&c->refs, 1) == 1)
    call_free(c);
}

static bool call_start_batch(rpc_call_t *c, const grpc_op *ops, size_t n, call_event_t ev) {
  atomic_fetch_add(&c->refs, 1);
  pthread_mutex_lock(&c->batch_mu);
  grpc_call_error rc = grpc_call_start_batch(c->call, ops, n, &c->tags[ev], NULL);
  pthread_mutex_unlock(&c->batch_mu);
  if (rc != GRPC_CALL_OK) {
    const fzip_log_field_t f[] = {fzip_log_str("method", c->path),
                                  fzip_log_str("request_id", c->ctx.request_id),
                                  fzip_log_int("call_error", (int64_t)rc)};
    fzip_log_fields(FZIP_LOG_ERROR, "rpc", "grpc_call_start_batch failed", f, FZIP_LOG_COUNT(f));
    atomic_fetch_sub(&c->refs, 1); /* the lifecycle ref keeps c alive here */
    return false;
  }
  return true;
}

/* ---- handler-facing context ---------------------------------------------- */

const char *rpc_ctx_user_id(const rpc_ctx_t *ctx) { return ctx->user_id; }
const char *rpc_ctx_peer(const rpc_ctx_t *ctx) { return ctx->peer; }
const char *rpc_ctx_request_id(const rpc_ctx_t *ctx) { return ctx->request_id; }
const rpc_method_t *rpc_ctx_method(const rpc_ctx_t *ctx) { return ctx->call->method; }
void *rpc_ctx_method_data(const rpc_ctx_t *ctx) { return ctx->call->method->data; }

bool rpc_ctx_is_cancelled(const rpc_ctx_t *ctx) {
  return atomic_load(&ctx->call->cancelled) || atomic_load(&ctx->call->server->cancelling) ||
         rpc_ctx_remaining_ms(ctx) <= 0;
}

int64_t rpc_ctx_remaining_ms(const rpc_ctx_t *ctx) {
  gpr_timespec deadline = gpr_convert_clock_type(ctx->call->deadline, GPR_CLOCK_MONOTONIC);
  if (gpr_time_cmp(deadline, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
    return INT64_MAX;
  gpr_timespec left = gpr_time_sub(deadline, gpr_now(GPR_CLOCK_MONOTONIC));
  return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

void *rpc_ctx_alloc(rpc_ctx_t *ctx, size_t size) { return rpc_arena_alloc(ctx->arena, size); }

char *rpc_ctx_strdup(rpc_ctx_t *ctx, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = rpc_arena_alloc(ctx->arena, n);
  if (p)
    memcpy(p, s, n);
  return p;
}

ProtobufCAllocator *rpc_ctx_allocator(rpc_ctx_t *ctx) { return rpc_arena_allocator(ctx->arena); }

void *rpc_ctx_payload(rpc_ctx_t *ctx, size_t size) {
  rpc_call_t *c = ctx->call;
  if (size == 0 || size > c->server->opts.max_send_message)
    return NULL;
  if (!c->payload)
    c->payload = rpc_payload_pool_new();
  return c->payload ? rpc_payload_lend(c->payload, size) : NULL;
}

bool rpc_ctx_add_violation(rpc_ctx_t *ctx, const char *field, const char *description) {
  rpc_call_t *c = ctx->call;
  if (c->n_violations >= RPC_DETAILS_VIOLATIONS_MAX)
    return false;
  if (!c->violations) {
    c->violations = calloc(RPC_DETAILS_VIOLATIONS_MAX, sizeof *c->violations);
    if (!c->violations)
      return false;
  }
  call_violation_t *v = &c->violations[c->n_violations++];
  snprintf(v->field, sizeof v->field, "%s", field ? field : "");
  snprintf(v->description, sizeof v->description, "%s", description ? description : "");
  return true;
}

/* ---- messages ------------------------------------------------------------ */

/* Unpacks `buf` as a `desc` message into the call arena (whose spare
 * block a stream of upload chunks reuses): from its one slice as it lies
 * (no copy), else joined by rpc_join.  The join's buffer is not kept
 * between messages: on a 256 MiB upload of 1 MiB chunks (test_rpc,
 * Release, client + server CPU, medians of 5 and 6 rounds) a buffer kept
 * for the call cost 6-8% more than readall's fresh slice per message,
 * while a fresh buffer per message was within noise of readall (+3%).
 * Likely cause: a call's steps run on whichever worker is free, malloc
 * hands a thread memory it has just freed (warm in its core's cache), and
 * a kept buffer was last written on the other core. */
static bool unpack_message(ProtobufCMessage **out, rpc_call_t *c, grpc_byte_buffer *buf,
                           const ProtobufCMessageDescriptor *desc, fzip_error_t *error) {
  const uint8_t *bytes = NULL;
  size_t len = 0;
  if (!rpc_join_bytes(&bytes, &len, &c->join, buf, FZIP_ERR_INVALID_ARGUMENT, "request", error))
    return false;
  *out = protobuf_c_message_unpack(desc, rpc_arena_allocator(c->ctx.arena), len, bytes);
  rpc_join_trim(c->join);
  if (*out)
    return true;
  if (rpc_arena_exhausted(c->ctx.arena))
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "request message exceeds the per-call memory limit of %zu bytes",
                          c->server->opts.call_arena_limit);
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                        "request is not a valid %s message", desc->name);
}

/* Packs a handler's response into c->out_msg. */
static bool pack_message(rpc_call_t *c, const ProtobufCMessage *msg, fzip_error_t *error) {
  if (!msg || msg->descriptor != c->method->response)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                          "handler for %s returned %s instead of a %s message", c->path,
                          msg ? msg->descriptor->name : "nothing", c->method->response->name);
  size_t size = protobuf_c_message_get_packed_size(msg);
  if (size > c->server->opts.max_send_message)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "response of %zu bytes exceeds the send limit of %zu bytes", size,
                          c->server->opts.max_send_message);
  if (c->payload && rpc_payload_lent(c->payload)) {
    /* The handler used rpc_ctx_payload this step: its bytes go out
     * uncopied.  A step that fell back to its arena takes the plain path
     * below (one copy into one slice). */
    c->out_msg = rpc_payload_pack(c->payload, msg, size);
    return c->out_msg ? true : fzip_error_oom(error, "a response message");
  }
  grpc_slice slice = grpc_slice_malloc(size);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
  c->out_msg = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  return true;
}

/* A handler that returns false without filling the error is a bug; make
 * it visible instead of sending an empty OK-looking failure. */
static void ensure_error(rpc_call_t *c) {
  if (c->end_error.code == FZIP_OK)
    fzip_error_set(&c->end_error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                   "handler for %s failed without an error", c->path);
}

/* Why a call that stopped early ended, as the client must hear it: its
 * deadline passed (DEADLINE_EXCEEDED), the server's grace period ran out
 * (UNAVAILABLE), or it was cancelled (CANCELLED, with `why`). */
static void set_cancel_error(rpc_call_t *c, const char *why) {
  if (rpc_ctx_remaining_ms(&c->ctx) <= 0)
    fzip_error_set(&c->end_error, FZIP_DOMAIN_RPC, FZIP_ERR_DEADLINE_EXCEEDED,
                   "deadline exceeded: %s", why);
  else if (atomic_load(&c->server->cancelling))
    fzip_error_set(&c->end_error, FZIP_DOMAIN_RPC, FZIP_ERR_UNAVAILABLE,
                   "server shutting down: %s", why);
  else
    fzip_error_set(&c->end_error, FZIP_DOMAIN_RPC, FZIP_ERR_CANCELLED, "%s", why);
}

/* ---- worker side --------------------------------------------------------- */

/* A handler step is over: its arena memory and the payload buffers it
 * borrowed but no packed message refers to are free for the next step. */
static void step_reset(rpc_call_t *c) {
  rpc_arena_reset(c->ctx.arena);
  rpc_payload_end_step(c->payload);
}

static void post_work_done(rpc_call_t *c) {
  step_reset(c);
  if (!call_start_batch(c, NULL, 0, EV_WORK)) {
    /* Cannot happen with an empty batch short of a core bug; the call
     * would hang, so say so loudly. */
    fzip_log(FZIP_LOG_ERROR, "rpc", "cannot post work completion", "method", c->path,
             "request_id", c->ctx.request_id, NULL);
  }
}

static void run_close(rpc_call_t *c) {
  if (!c->handler_entered || c->closed)
    return;
  c->closed = true;
  const rpc_method_t *m = c->method;
  if (m->kind == RPC_SERVER_STREAMING && m->server_stream->close)
    m->server_stream->close(&c->ctx, c->handler_state);
  else if (m->kind == RPC_CLIENT_STREAMING && m->client_stream->close)
    m->client_stream->close(&c->ctx, c->handler_state);
  c->handler_state = NULL;
}

/* Ends the call from the worker: record the outcome, close, report. */
static void work_end(rpc_call_t *c, bool ok) {
  if (ok)
    fzip_error_clear(&c->end_error);
  else
    ensure_error(c);
  /* Handlers stop with CANCELLED when rpc_ctx_is_cancelled() (rpc.h), which
   * is also true once the deadline passes.  Our status then races the
   * core's own DEADLINE_EXCEEDED and, under load, got out first: the client
   * heard CANCELLED for a call that timed out.  Say why it stopped. */
  if (!ok && c->end_error.code == FZIP_ERR_CANCELLED) {
    char why[FZIP_ERROR_MESSAGE_MAX];
    snprintf(why, sizeof why, "%s", c->end_error.message);
    set_cancel_error(c, why);
  }
  c->result = RES_END;
  run_close(c);
  post_work_done(c);
}

_Static_assert(RPC_REQUEST_ID_MAX > FZIP_UUID_LEN, "a generated request id must fit");

/* True for 1 to RPC_REQUEST_ID_MAX - 1 bytes of printable ASCII: what
 * may go into a log line and back into a header as it came. */
static bool request_id_usable(grpc_slice value) {
  size_t n = GRPC_SLICE_LENGTH(value);
  const unsigned char *p = GRPC_SLICE_START_PTR(value);
  if (n == 0 || n >= RPC_REQUEST_ID_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < ' ' || p[i] > '~')
      return false;
  }
  return true;
}

/* The client's x-request-id if usable, else a fresh UUID (and if even
 * the random source fails, the call's start time and address, which are
 * unique enough to find its log lines). */
static void read_request_id(rpc_call_t *c) {
  fzip_error_t err = {0};
  for (size_t i = 0; i < c->request_md.count; i++) {
    const grpc_metadata *md = &c->request_md.metadata[i];
    if (grpc_slice_str_cmp(md->key, RPC_REQUEST_ID_HEADER) != 0)
      continue;
    if (request_id_usable(md->value)) {
      size_t n = GRPC_SLICE_LENGTH(md->value);
      memcpy(c->ctx.request_id, GRPC_SLICE_START_PTR(md->value), n);
      c->ctx.request_id[n] = '\0';
      return;
    }
    break; /* unusable: replaced below */
  }
  if (!fzip_uuid_v4(c->ctx.request_id, &err))
    snprintf(c->ctx.request_id, sizeof c->ctx.request_id, "%" PRId64 "-%p", c->start_ms,
             (void *)c);
}

static bool check_auth(rpc_call_t *c, fzip_error_t *error) {
  char value[RPC_AUTH_VALUE_MAX];
  const char *authorization = NULL;
  if (!c->method->requires_auth)
    return true;
  for (size_t i = 0; i < c->request_md.count; i++) {
    const grpc_metadata *md = &c->request_md.metadata[i];
    if (!grpc_slice_str_cmp(md->key, "authorization")) {
      size_t n = GRPC_SLICE_LENGTH(md->value);
      if (n >= sizeof value)
        return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                              "authorization metadata longer than %zu bytes", sizeof value - 1);
      memcpy(value, GRPC_SLICE_START_PTR(md->value), n);
      value[n] = '\0';
      authorization = value;
      break;
    }
  }
  if (!c->server->opts.auth)
    return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                          "server has no authentication configured");
  fzip_error_t auth_error = {0};
  if (!c->server->opts.auth(c->server->opts.auth_data, authorization, c->ctx.user_id,
                            sizeof c->ctx.user_id, &auth_error)) {
    /* Whatever the hook said, the client sees UNAUTHENTICATED. */
    fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED, "%s",
                   auth_error.message[0] ? auth_error.message : "not authenticated");
    c->ctx.user_id[0] = '\0';
    return false;
  }
  c->ctx.user_id[sizeof c->ctx.user_id - 1] = '\0';
  return true;
}

_Static_assert(RPC_REQUEST_ID_MAX <= FZIP_LOG_REQUEST_ID_MAX, "a log line must carry the whole id");

/* The call a pool task belongs to.  Every handler step starts here, so the
 * worker thread's log lines (the handler's, the store's) carry the call's
 * request id; the pool clears it when the task returns. */
static rpc_call_t *task_call(rpc_task_t *task) {
  rpc_call_t *c = (rpc_call_t *)((char *)task - offsetof(rpc_call_t, task));
  fzip_log_set_request_id(c->ctx.request_id);
  return c;
}

static void task_next(rpc_task_t *task);

/* One `next` of a server-streaming call. */
static void stream_next(rpc_call_t *c) {
  ProtobufCMessage *msg = NULL;
  bool done = false;
  int retry_after_ms = 0;
  if (rpc_ctx_is_cancelled(&c->ctx)) {
    atomic_store(&c->cancelled, true);
    c->result = RES_END;
    set_cancel_error(c, "call cancelled");
    run_close(c);
    post_work_done(c);
    return;
  }
  fzip_error_clear(&c->end_error);
  if (!c->method->server_stream->next(&c->ctx, c->handler_state, &msg, &done, &retry_after_ms,
                                      &c->end_error)) {
    work_end(c, false);
    return;
  }
  if (!msg && !done) {
    /* Nothing to send yet: come back later without holding a thread. */
    step_reset(c);
    rpc_pool_submit_after(c->server->pool, &c->task, task_next,
                          retry_after_ms > 0 ? retry_after_ms : 1);
    return;
  }
  if (msg && !pack_message(c, msg, &c->end_error)) {
    work_end(c, false);
    return;
  }
  if (done) {
    work_end(c, true);
    return;
  }
  c->result = RES_MESSAGE;
  post_work_done(c);
}

static void task_next(rpc_task_t *task) {
  rpc_call_t *c = task_call(task);
  stream_next(c);
}

/* The first step of every call: auth, then unary handler / stream open. */
static void task_first(rpc_task_t *task) {
  rpc_call_t *c = task_call(task);
  const rpc_method_t *m = c->method;
  ProtobufCMessage *req = NULL;
  ProtobufCMessage *resp = NULL;

  fzip_error_clear(&c->end_error);
  if (!check_auth(c, &c->end_error)) {
    work_end(c, false);
    return;
  }
  c->handler_entered = true;
  switch (m->kind) {
  case RPC_UNARY:
    if (!unpack_message(&req, c, c->in_msg, m->request, &c->end_error) ||
        !m->unary(&c->ctx, req, &resp, &c->end_error) ||
        !pack_message(c, resp, &c->end_error)) {
      work_end(c, false);
      return;
    }
    work_end(c, true);
    return;
  case RPC_SERVER_STREAMING:
    if (!unpack_message(&req, c, c->in_msg, m->request, &c->end_error) ||
        !m->server_stream->open(&c->ctx, req, &c->handler_state, &c->end_error)) {
      work_end(c, false);
      return;
    }
    rpc_arena_reset(c->ctx.arena); /* the request is not kept past open */
    stream_next(c);
    return;
  case RPC_CLIENT_STREAMING:
  case RPC_BIDI_ONE_REPLY:
    c->result = RES_CONTINUE;
    post_work_done(c);
    return;
  }
}

/* One request message of a client-streaming or bidi call. */
static void task_recv(rpc_task_t *task) {
  rpc_call_t *c = task_call(task);
  const rpc_method_t *m = c->method;
  ProtobufCMessage *req = NULL;
  ProtobufCMessage *resp = NULL;
  bool ok;

  fzip_error_clear(&c->end_error);
  ok = unpack_message(&req, c, c->in_msg, m->request, &c->end_error);
  grpc_byte_buffer_destroy(c->in_msg);
  c->in_msg = NULL;
  if (ok && m->kind == RPC_CLIENT_STREAMING) {
    ok = m->client_stream->recv(&c->ctx, &c->handler_state, req, &c->end_error);
    c->result = RES_CONTINUE;
  } else if (ok) {
    ok = m->bidi(&c->ctx, req, &resp, &c->end_error) && pack_message(c, resp, &c->end_error);
    c->result = RES_MESSAGE;
  }
  if (!ok) {
    work_end(c, false);
    return;
  }
  post_work_done(c);
}

/* Client half-closed: the single response of a client-streaming call, or
 * the OK end of a bidi call. */
static void task_finish(rpc_task_t *task) {
  rpc_call_t *c = task_call(task);
  ProtobufCMessage *resp = NULL;
  fzip_error_clear(&c->end_error);
  if (c->method->kind == RPC_CLIENT_STREAMING &&
      (!c->method->client_stream->finish(&c->ctx, c->handler_state, &resp, &c->end_error) ||
       !pack_message(c, resp, &c->end_error))) {
    work_end(c, false);
    return;
  }
  work_end(c, true);
}

/* The call ended from outside while no step ran: only close is left.
 * end_error was set by the CQ thread. */
static void task_close(rpc_task_t *task) {
  rpc_call_t *c = task_call(task);
  c->result = RES_END;
  run_close(c);
  post_work_done(c);
}

/* ---- CQ-thread side ------------------------------------------------------ */

/* Ops of the biggest send batch: initial metadata, a message, the status. */
#define SEND_BATCH_OPS_MAX 3

/* Fills ops with what goes before anything else the call sends: the
 * initial metadata the first time, then the pending message if any (its
 * buffer is in send_buf until the batch completes).  Returns the count. */
static size_t add_send_ops(rpc_call_t *c, grpc_op *ops) {
  size_t n = 0;
  if (!c->initial_md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->initial_md_sent = true;
  }
  if (c->out_msg) {
    c->send_buf = c->out_msg;
    c->out_msg = NULL;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_buf;
  }
  return n;
}

/* For a failed call: the client's message (sanitised when the error may
 * name internal addresses or paths; rpc_details.h) in status_details, and
 * the google.rpc.Status in details_bin.  Returns the trailing metadata
 * count: the request id, plus the details when they could be packed. */
static size_t prepare_error_status(rpc_call_t *c, int grpc_code) {
  char message[FZIP_ERROR_MESSAGE_MAX];
  rpc_violation_t v[RPC_DETAILS_VIOLATIONS_MAX];
  uint8_t *packed = NULL;
  size_t packed_len = 0;
  fzip_error_t err = {0};

  rpc_details_client_message(message, sizeof message, &c->end_error, c->ctx.request_id);
  c->status_details = grpc_slice_from_copied_string(message);
  c->status_details_set = true;
  for (size_t i = 0; i < c->n_violations; i++)
    v[i] = (rpc_violation_t){c->violations[i].field, c->violations[i].description};
  if (!rpc_details_pack(&packed, &packed_len, &c->end_error, grpc_code, message,
                        c->ctx.request_id, v, c->n_violations, &err)) {
    fzip_log(FZIP_LOG_ERROR, "rpc", "status sent without details", "method", c->path,
             "request_id", c->ctx.request_id, "error", err.message, NULL);
    return 1;
  }
  c->details_bin = grpc_slice_new(packed, packed_len, free);
  c->details_bin_set = true;
  c->trailing_md[1].key = grpc_slice_from_static_string(RPC_DETAILS_HEADER);
  c->trailing_md[1].value = c->details_bin;
  return 2;
}

static void call_send_status(rpc_call_t *c) {
  grpc_op ops[SEND_BATCH_OPS_MAX];
  size_t n;
  size_t n_md = 1;
  int grpc_code = rpc_status_code((fzip_code_t)c->end_error.code);
  memset(ops, 0, sizeof ops);
  n = add_send_ops(c, ops);
  c->trailing_md[0].key = grpc_slice_from_static_string(RPC_REQUEST_ID_HEADER);
  c->trailing_md[0].value = grpc_slice_from_static_buffer(c->ctx.request_id,
                                                          strlen(c->ctx.request_id));
  if (c->end_error.code != FZIP_OK)
    n_md = prepare_error_status(c, grpc_code);
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)grpc_code;
  ops[n].data.send_status_from_server.status_details =
      c->end_error.code == FZIP_OK ? NULL : &c->status_details;
  ops[n].data.send_status_from_server.trailing_metadata_count = n_md;
  ops[n++].data.send_status_from_server.trailing_metadata = c->trailing_md;
  call_set_state(c, CALL_FINISHING, "sending status");
  if (!call_start_batch(c, ops, n, EV_STATUS)) {
    call_set_state(c, CALL_DONE, "status batch refused");
    call_unref(c); /* the lifecycle ref */
  }
}

static void call_fail(rpc_call_t *c, fzip_code_t code, const char *message) {
  fzip_error_set(&c->end_error, FZIP_DOMAIN_RPC, code, "%s", message);
  grpc_byte_buffer_destroy(c->out_msg);
  c->out_msg = NULL;
  call_send_status(c);
}

/* Queues a handler step; the call was admitted, so the pool takes it. */
static void call_submit(rpc_call_t *c, rpc_task_fn fn, const char *why) {
  c->work_busy = true;
  call_set_state(c, CALL_WORKING, why);
  rpc_pool_submit_always(c->server->pool, &c->task, fn);
}

static void call_advance(rpc_call_t *c);

/* The call ended from outside (client cancel, deadline, server shutdown,
 * failed batch): run close on the pool if the handler was entered, then
 * send a status nobody may hear, to end the call the one regular way.
 * Only while no handler step is in flight (call_advance sees to it). */
static void call_abort(rpc_call_t *c, const char *why) {
  atomic_store(&c->cancelled, true);
  if (c->work_busy)
    return; /* the step's completion comes back through call_advance */
  grpc_byte_buffer_destroy(c->out_msg);
  c->out_msg = NULL;
  set_cancel_error(c, why);
  c->result = RES_END;
  if (c->handler_entered && !c->closed) {
    call_submit(c, task_close, why);
    return;
  }
  call_advance(c);
}

static void call_start_recv(rpc_call_t *c) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &c->recv_buf;
  if (!c->work_busy)
    call_set_state(c, CALL_RECEIVING, "reading a message");
  c->recv_busy = true;
  if (call_start_batch(c, &op, 1, EV_RECV))
    return;
  c->recv_busy = false;
  call_abort(c, "cannot read");
}

/* A handler's message (RES_MESSAGE: out_msg is set).  `next`, if not
 * NULL, is the step that produces the message after it: it is queued
 * once the message is in send_buf and before the batch starts, because
 * the core writes the message to the socket inside start_batch, on this
 * thread; queued after, the next read would wait for that write instead
 * of running beside it. */
static bool call_send_message(rpc_call_t *c, rpc_task_fn next) {
  grpc_op ops[SEND_BATCH_OPS_MAX];
  size_t n;
  memset(ops, 0, sizeof ops);
  n = add_send_ops(c, ops);
  call_set_state(c, CALL_SENDING, "sending a message");
  c->send_busy = true;
  if (next)
    call_submit(c, next, "producing the next message");
  if (call_start_batch(c, ops, n, EV_SEND))
    return true;
  c->send_busy = false;
  call_abort(c, "cannot send");
  return false;
}

static bool streams_in(const rpc_call_t *c) {
  return c->method->kind == RPC_CLIENT_STREAMING || c->method->kind == RPC_BIDI_ONE_REPLY;
}

/* Acts on the last handler step's result once nothing it needs is in
 * flight; called after every completion.  A server-streaming call asks
 * for its next message as soon as the previous one is being sent, and a
 * call that reads a stream reads its next message while the previous one
 * is handled: one message ahead each way, never more (rpc.h). */
static void call_advance(rpc_call_t *c) {
  if (c->work_busy || c->state == CALL_FINISHING || c->state == CALL_DONE)
    return;
  if (c->result == RES_END) {
    if (!c->send_busy)
      call_send_status(c); /* a read still in flight ends with the call */
    return;
  }
  if (atomic_load(&c->cancelled) || atomic_load(&c->server->cancelling)) {
    call_abort(c, "call cancelled");
    return;
  }
  if (c->result == RES_MESSAGE) {
    if (c->send_busy)
      return;
    if (c->method->kind == RPC_SERVER_STREAMING) {
      call_send_message(c, task_next);
      return;
    }
    if (!call_send_message(c, NULL))
      return;
    c->result = RES_CONTINUE; /* a bidi reply is on its way: read on */
  }
  if (c->pending_in) {
    c->in_msg = c->pending_in;
    c->pending_in = NULL;
    call_submit(c, task_recv, "message received");
  } else if (c->half_closed) {
    call_submit(c, task_finish, "client half-closed");
    return;
  }
  if (streams_in(c) && !c->recv_busy && !c->half_closed)
    call_start_recv(c);
}

static void on_request(rpc_call_t *c, bool ok) {
  rpc_server_t *s = c->server;
  if (!ok) {
    /* The server is shutting down: this request will never be a call. */
    call_unref(c);
    return;
  }
  bool unknown = c->method == &unknown_method;
  if (!atomic_load(&s->stopping)) {
    if (unknown)
      rpc_call_request_unknown(s, c->cq_index);
    else
      rpc_call_request(s, c->method_index, c->cq_index);
  }
  if (unknown) {
    snprintf(c->path, sizeof c->path, "%.*s", (int)GRPC_SLICE_LENGTH(c->details.method),
             (const char *)GRPC_SLICE_START_PTR(c->details.method));
    c->deadline = c->details.deadline;
  }

  c->start_ms = fzip_monotonic_ms();
  read_request_id(c);
  char *peer = grpc_call_get_peer(c->call);
  snprintf(c->ctx.peer, sizeof c->ctx.peer, "%s", peer ? peer : "");
  gpr_free(peer);

  /* Armed first: its `cancelled` is how we learn of client cancels and
   * deadlines while we are not reading or writing. */
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->close_cancelled;
  if (!call_start_batch(c, &op, 1, EV_CLOSE)) {
    call_fail(c, FZIP_ERR_INTERNAL, "cannot watch the call for cancellation");
    return;
  }
  if (unknown) {
    char message[sizeof "unknown method " + RPC_PATH_MAX];
    snprintf(message, sizeof message, "unknown method %s", c->path);
    call_fail(c, FZIP_ERR_UNIMPLEMENTED, message);
    return;
  }
  c->in_msg = c->request_payload;
  c->request_payload = NULL;
  if (!streams_in(c) && !c->in_msg) {
    call_fail(c, FZIP_ERR_INVALID_ARGUMENT, "request message missing");
    return;
  }
  call_set_state(c, CALL_WORKING, "call arrived");
  c->work_busy = true;
  if (!rpc_pool_submit(s->pool, &c->task, task_first)) {
    c->work_busy = false;
    call_fail(c, FZIP_ERR_RESOURCE_EXHAUSTED, "server busy: handler queue full, retry later");
  }
}

static void on_work(rpc_call_t *c) {
  c->work_busy = false;
  call_advance(c);
}

static void on_send(rpc_call_t *c, bool ok) {
  grpc_byte_buffer_destroy(c->send_buf);
  c->send_buf = NULL;
  c->send_busy = false;
  if (!ok)
    atomic_store(&c->cancelled, true); /* the peer is gone: call_advance aborts */
  call_advance(c);
}

static void on_recv(rpc_call_t *c, bool ok) {
  c->recv_busy = false;
  if (!ok || c->state == CALL_FINISHING || c->state == CALL_DONE) {
    /* Failed, or a read ahead that the call's end overtook. */
    grpc_byte_buffer_destroy(c->recv_buf);
    c->recv_buf = NULL;
    if (!ok)
      atomic_store(&c->cancelled, true);
    call_advance(c);
    return;
  }
  if (c->recv_buf)
    c->pending_in = c->recv_buf;
  else
    c->half_closed = true;
  c->recv_buf = NULL;
  call_advance(c);
}

/* Health probes and reflection come every few seconds from every prober:
 * their lines go at debug, so that info shows the calls that matter. */
static void log_call_done(rpc_call_t *c, bool status_sent) {
  fzip_log_level_t level = c->method->quiet ? FZIP_LOG_DEBUG : FZIP_LOG_INFO;
  if (!fzip_log_enabled(level))
    return;
  fzip_code_t fc = (fzip_code_t)c->end_error.code;
  const fzip_log_field_t f[] = {
      fzip_log_str("method", c->path),
      fzip_log_str("request_id", c->ctx.request_id),
      fzip_log_str("user", c->ctx.user_id),
      fzip_log_str("status", fc == FZIP_OK ? "OK" : fzip_code_name(fc)),
      fzip_log_int("grpc_code", rpc_status_code(fc)),
      fzip_log_int("duration_ms", fzip_monotonic_ms() - c->start_ms),
      fzip_log_str("peer", c->ctx.peer),
      fzip_log_bool("delivered", status_sent),
      fzip_log_str("error", c->end_error.message),
  };
  fzip_log_fields(level, "rpc", "call done", f, FZIP_LOG_COUNT(f));
}

/* Labels from the method table (unknown paths share "(unknown)") and the
 * code table only, so the series stay few whatever clients send. */
static void record_call_metrics(const rpc_call_t *c) {
  const char *code = fzip_code_name((fzip_code_t)c->end_error.code);
  double seconds = (double)(fzip_monotonic_ms() - c->start_ms) / 1000.0;

  fzip_metric_add(FZIP_METRIC_RPC_REQUESTS, (const char *[]){c->method->path, code}, 1);
  fzip_metric_observe(FZIP_METRIC_RPC_DURATION, (const char *[]){c->method->path}, seconds);
}

static void on_status(rpc_call_t *c, bool ok) {
  grpc_byte_buffer_destroy(c->send_buf);
  c->send_buf = NULL;
  call_set_state(c, CALL_DONE, ok ? "status sent" : "status not delivered");
  log_call_done(c, ok);
  record_call_metrics(c);
  call_unref(c); /* the lifecycle ref */
}

void rpc_call_on_event(void *tag, bool ok) {
  call_tag_t *t = tag;
  rpc_call_t *c = t->call;
  switch (t->ev) {
  case EV_REQUEST:
    on_request(c, ok); /* keeps the request's ref as the lifecycle ref */
    return;
  case EV_CLOSE:
    if (!ok || c->close_cancelled)
      atomic_store(&c->cancelled, true);
    break;
  case EV_RECV:
    on_recv(c, ok);
    break;
  case EV_SEND:
    on_send(c, ok);
    break;
  case EV_WORK:
    on_work(c);
    break;
  case EV_STATUS:
    on_status(c, ok);
    break;
  case EV_COUNT:
    break;
  }
  call_unref(c); /* the batch that completed */
}

static rpc_call_t *call_new(rpc_server_t *server, const rpc_method_t *method,
                           size_t method_index, int cq_index) {
  rpc_call_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->ctx.arena = rpc_arena_new(server->opts.call_arena_limit);
  if (!c->ctx.arena) {
    free(c);
    return NULL;
  }
  c->server = server;
  c->method = method;
  snprintf(c->path, sizeof c->path, "%s", method->path);
  c->method_index = method_index;
  c->cq_index = cq_index;
  c->ctx.call = c;
  for (int i = 0; i < EV_COUNT; i++) {
    c->tags[i].call = c;
    c->tags[i].ev = (call_event_t)i;
  }
  pthread_mutex_init(&c->batch_mu, NULL);
  grpc_metadata_array_init(&c->request_md);
  atomic_init(&c->refs, 1);
  atomic_fetch_add(&server->live_calls, 1);
  return c;
}

bool rpc_call_request(rpc_server_t *server, size_t method_index, int cq_index) {
  rpc_call_t *c = call_new(server, server->methods[method_index], method_index, cq_index);
  if (!c)
    return false;
  grpc_completion_queue *cq = server->cqs[cq_index];
  /* A single request arrives with the call; a stream's messages are read
   * one by one (call_start_recv). */
  grpc_call_error rc = grpc_server_request_registered_call(
      server->server, server->registered[method_index], &c->call, &c->deadline, &c->request_md,
      streams_in(c) ? NULL : &c->request_payload, cq, cq, &c->tags[EV_REQUEST]);
  if (rc != GRPC_CALL_OK) {
    call_free(c);
    return false;
  }
  return true;
}

bool rpc_call_request_unknown(rpc_server_t *server, int cq_index) {
  rpc_call_t *c = call_new(server, &unknown_method, SIZE_MAX, cq_index);
  if (!c)
    return false;
  grpc_call_details_init(&c->details);
  grpc_completion_queue *cq = server->cqs[cq_index];
  grpc_call_error rc = grpc_server_request_call(server->server, &c->call, &c->details,
                                                &c->request_md, cq, cq, &c->tags[EV_REQUEST]);
  if (rc != GRPC_CALL_OK) {
    call_free(c);
    return false;
  }
  return true;
}
