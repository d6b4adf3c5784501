/*
 * rpc: fzip's gRPC server layer on the gRPC C core.
 *
 * There is no service code generator for C, so this layer is ours: a table
 * of methods (rpc_method_t rows), one explicit state machine per call, and
 * generic drivers for unary, server-streaming, client-streaming and
 * one-reply-per-request bidi calls.  Handlers never see completion-queue
 * plumbing: they are plain functions called on a bounded worker pool (never
 * on a CQ thread), and may block on the store.  See docs/GRPC.md.
 *
 * Flow control: a server-streaming handler's `next` is called for the
 * next message while the previous one is being sent, and a stream's next
 * request message is read while `recv` handles the previous one (docs/GRPC.md
 * "Flow control"): one message ahead each way, never more, so a slow peer
 * costs two messages.  Steps of one call never run concurrently.
 *
 * Memory: build response messages (and every string/array they point to)
 * with rpc_ctx_alloc / rpc_ctx_strdup: a call-scoped arena with a hard
 * limit.  The layer packs each returned message at once and then resets
 * the arena, so never free them yourself, and keep state that must outlive
 * one message (the `state` of a streaming call) in malloc'd memory that
 * `close` frees.  Request messages are unpacked by the layer and stay
 * valid only during the handler call that receives them.
 *
 * Errors: a handler returns false with an fzip_error_t; the layer maps it
 * to a gRPC status in one place (rpc_status_code) and sends the message,
 * with a google.rpc.Status in the trailing metadata, generic wording for
 * errors that may name internal addresses or paths (rpc_details.h).
 */
#ifndef FZIP_RPC_H
#define FZIP_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"
#include "rpc_status.h"

typedef struct rpc_server rpc_server_t;

#define RPC_REQUEST_ID_HEADER "x-request-id"
/* Longest request id kept, plus its NUL; a longer one is replaced. */
#define RPC_REQUEST_ID_MAX 129
typedef struct rpc_ctx rpc_ctx_t; /* per-call context handed to handlers */

typedef enum {
  RPC_UNARY = 0,
  RPC_SERVER_STREAMING,
  RPC_CLIENT_STREAMING,
  RPC_BIDI_ONE_REPLY, /* each request message gets exactly one reply (reflection) */
} rpc_kind_t;

/* Unary: *resp is an unpacked message of method->response built in the ctx arena. */
typedef bool (*rpc_unary_fn)(rpc_ctx_t *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **resp, fzip_error_t *error);

/* Server streaming: `open` runs once with the request and may set a state
 * pointer; `next` produces one message per call (set *msg), or sets *done
 * (with *msg NULL or a last message), or asks to be called again later by
 * setting *retry_after_ms > 0 with no message (e.g. Watch waiting for a
 * change: no thread is held meanwhile).  `close` always runs once at the
 * end, success or not, to release the state: for every call whose auth
 * passed, even if `open` failed (state may then be NULL). */
typedef struct {
  bool (*open)(rpc_ctx_t *ctx, const ProtobufCMessage *req, void **state, fzip_error_t *error);
  bool (*next)(rpc_ctx_t *ctx, void *state, ProtobufCMessage **msg, bool *done,
               int *retry_after_ms, fzip_error_t *error);
  void (*close)(rpc_ctx_t *ctx, void *state);
} rpc_server_stream_ops_t;

/* Client streaming: `recv` is called for every request message in order
 * (the first one included); `finish` after the client half-closes, and
 * produces the single response; `close` always runs once at the end (e.g.
 * to abort an unfinished upload), for every call whose auth passed; state
 * is NULL if no message ever arrived. */
typedef struct {
  bool (*recv)(rpc_ctx_t *ctx, void **state, const ProtobufCMessage *msg, fzip_error_t *error);
  bool (*finish)(rpc_ctx_t *ctx, void *state, ProtobufCMessage **resp, fzip_error_t *error);
  void (*close)(rpc_ctx_t *ctx, void *state);
} rpc_client_stream_ops_t;

/* Bidi with one reply per request. */
typedef bool (*rpc_bidi_reply_fn)(rpc_ctx_t *ctx, const ProtobufCMessage *req,
                                  ProtobufCMessage **resp, fzip_error_t *error);

typedef struct {
  const char *path; /* "/fzip.v1.DataService/GetDataSummary" */
  rpc_kind_t kind;
  const ProtobufCMessageDescriptor *request;
  const ProtobufCMessageDescriptor *response;
  bool requires_auth; /* fzip.v1 methods: true; health/reflection: false */
  bool quiet;         /* health/reflection: "call done" logged at debug, not info */
  rpc_unary_fn unary;
  const rpc_server_stream_ops_t *server_stream;
  const rpc_client_stream_ops_t *client_stream;
  rpc_bidi_reply_fn bidi;
  /* Handler-specific context (e.g. the service struct); rpc_ctx_method_data. */
  void *data;
} rpc_method_t;

/* Authentication hook: given the call's "authorization" metadata value
 * (NULL if absent), write the user id into user_id (NUL-terminated, at
 * most user_id_size - 1 bytes) or fail with UNAUTHENTICATED and a message
 * that says why. */
typedef bool (*rpc_auth_fn)(void *auth_data, const char *authorization, char *user_id,
                            size_t user_id_size, fzip_error_t *error);

typedef struct {
  const char *listen;            /* "127.0.0.1:50051"; port 0 picks a free one */
  int cq_threads;                /* 0: 2 */
  int workers;                   /* handler threads; 0: 8 */
  int max_pending;               /* queued handler tasks before RESOURCE_EXHAUSTED; 0: 256 */
  size_t max_recv_message;       /* bytes; 0: 4 MiB + 64 KiB */
  size_t max_send_message;       /* bytes; 0: 4 MiB + 64 KiB */
  int shutdown_grace_ms;         /* 0: 5000 */
  size_t call_arena_limit;       /* per-call message memory; 0: 64 MiB */
  rpc_auth_fn auth;              /* required if any method requires auth */
  void *auth_data;
  /* Called (on any thread) when a streaming call whose handler ran has
   * been freed, e.g. to give memory back after a download or an upload;
   * NULL: nothing. */
  void (*on_stream_end)(void *data);
  void *on_stream_end_data;
  /* TLS: when cert and key are set the port serves TLS only. */
  const char *tls_cert_file;
  const char *tls_key_file;
  const char *tls_client_ca_file; /* set: client certificates are required */
} rpc_server_options_t;

/* Creates a server with the given method table (the rows are borrowed and
 * must outlive the server). */
bool rpc_server_new(rpc_server_t **out, const rpc_server_options_t *options,
                    const rpc_method_t *const *methods, size_t n_methods, fzip_error_t *error);
/* Binds and starts serving; *bound_port is the actual port. */
bool rpc_server_start(rpc_server_t *server, int *bound_port, fzip_error_t *error);
/* Graceful shutdown: stop accepting calls, let in-flight ones finish for
 * the grace period, cancel the rest (their `close` callbacks still run),
 * join all threads.  Idempotent.  Call it from a thread that is not a
 * handler (main, after sigwait). */
void rpc_server_shutdown(rpc_server_t *server);
void rpc_server_destroy(rpc_server_t *server); /* shuts down first; accepts NULL */

/* ---- what handlers may ask of their call ----------------------------- */

const char *rpc_ctx_user_id(const rpc_ctx_t *ctx);  /* authenticated `sub`; "" if no auth */
/* The call's request id: the client's RPC_REQUEST_ID_HEADER metadata when
 * it is 1 to RPC_REQUEST_ID_MAX - 1 printable ASCII bytes, else a fresh
 * UUID.  It is in every log line the layer writes for the call and goes
 * back to the client in the trailing metadata, so one id ties a client's
 * report to fzipd's logs. */
const char *rpc_ctx_request_id(const rpc_ctx_t *ctx);
const char *rpc_ctx_peer(const rpc_ctx_t *ctx);
const rpc_method_t *rpc_ctx_method(const rpc_ctx_t *ctx);
void *rpc_ctx_method_data(const rpc_ctx_t *ctx);
/* True once the client cancelled, the deadline passed, or the server's
 * shutdown grace period ran out: long handlers poll it and stop with
 * CANCELLED (the client is told DEADLINE_EXCEEDED or UNAVAILABLE instead
 * when that is why). */
bool rpc_ctx_is_cancelled(const rpc_ctx_t *ctx);
/* Milliseconds until the call's deadline (INT64_MAX if none). */
int64_t rpc_ctx_remaining_ms(const rpc_ctx_t *ctx);
/* Call-scoped memory for response messages; NULL on exhaustion of the
 * arena limit (the layer then fails the call with RESOURCE_EXHAUSTED). */
void *rpc_ctx_alloc(rpc_ctx_t *ctx, size_t size);
char *rpc_ctx_strdup(rpc_ctx_t *ctx, const char *s);
/* Memory for the bytes field of the message this step returns (a
 * download chunk), which the layer sends without copying and reuses for a
 * later message once gRPC has written it (rpc/internal/rpc_payload.h): no
 * allocation and no copy per chunk.  Valid during the step only, like
 * rpc_ctx_alloc.  NULL when the call's RPC_PAYLOAD_BUFFERS buffers are all
 * still held by gRPC, size is 0 or over the send limit, or memory is
 * short: use rpc_ctx_alloc then. */
void *rpc_ctx_payload(rpc_ctx_t *ctx, size_t size);
/* Allocator for protobuf_c_message_unpack into the arena. */
ProtobufCAllocator *rpc_ctx_allocator(rpc_ctx_t *ctx);

/* Longest violation field path kept, NUL included (longer ones are cut). */
#define RPC_VIOLATION_FIELD_MAX 128
/* Records one problem with the request (field path, "" for the request as
 * a whole; what is wrong), for a handler that is about to fail the call
 * with INVALID_ARGUMENT having found several: the client gets the first
 * RPC_DETAILS_VIOLATIONS_MAX as a google.rpc.BadRequest (rpc_details.h).
 * Without any, an INVALID_ARGUMENT carries one, the error's message.  The
 * strings are copied (the description cut at FZIP_ERROR_MESSAGE_MAX - 1
 * bytes); false when the cap is reached or memory is short, which loses
 * that detail only. */
bool rpc_ctx_add_violation(rpc_ctx_t *ctx, const char *field, const char *description);

#endif
