/*
 * rpc_client: blocking gRPC calls without threads.  Each call owns a
 * completion queue (grpc_completion_queue_create_for_next), so calls on
 * different threads never see each other's events; every step is one
 * batch on it, waited for at once.
 *
 * RECV_INITIAL_METADATA and RECV_STATUS_ON_CLIENT are armed together, on
 * their own tag, as soon as the call is created (the core delivers no
 * status to a call that never asked for the initial metadata).  A server
 * that ends the call early (an upload over its size limit) stops reading,
 * so a blocked write would otherwise wait forever for flow-control credit:
 * every wait also watches for the status and, when it is an error,
 * cancels the call, so the pending step fails at once and reports the
 * server's message.  Reads never ask for the initial metadata again.
 *
 * A streamed response is unpacked into the call's arena (rpc_arena.h),
 * reset at the next read: a stream of 1 MiB chunks reuses one block
 * instead of a fresh malloc (and fresh page faults) per message, which is
 * why rpc_client_call_read lends its message rather than giving it.  The
 * single response of finish and unary outlives the call: malloc.
 * rpc_client_call_read_bytes goes one step further for chunks: it keeps
 * the received byte buffer (and its reader) until the next read and
 * lends the bytes field as the buffer's slices.
 */
#include "rpc_client.h"
#include "fzip_util.h"
#include "rpc_arena.h"
#include "rpc_details.h"
#include "rpc_join.h"
#include "rpc_status.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_CLIENT_DEFAULT_MAX_MESSAGE (4 * 1024 * 1024 + 64 * 1024)
#define RPC_CLIENT_PEM_MAX (1024 * 1024)
/* The call arena's byte limit: none of its own.  A response is bounded on
 * the wire by max_recv_message, and its unpacked form was never capped
 * (it was malloc'd) either; a cap here would only refuse messages of
 * many small items, whose structs outweigh their wire bytes. */
#define RPC_CLIENT_ARENA_LIMIT SIZE_MAX
/* rpc_client_message_copy packs into this much stack first (a job
 * snapshot fits), then into the heap. */
#define RPC_CLIENT_COPY_STACK 1024
/* A chunk message's head: its field's tag (a varint of at most 5 bytes
 * for a field number of 32 bits) and the bytes' length (at most 10). */
#define RPC_CLIENT_CHUNK_HEAD_MAX 15
#define RPC_CLIENT_VARINT_MAX 10
#define RPC_CLIENT_WIRE_LEN 2 /* protobuf wire type: length-delimited */

struct rpc_client {
  grpc_channel *channel;
  size_t max_send_message;
};

struct rpc_client_call {
  grpc_call *call;
  grpc_completion_queue *cq; /* a "next" queue: steps and the status share it */
  char step_tag;             /* address = tag of the step batches */
  char status_tag;           /* address = tag of the RECV_STATUS_ON_CLIENT batch */
  bool status_armed;
  const ProtobufCMessageDescriptor *resp_desc;
  size_t max_send_message;
  grpc_metadata_array initial_md;
  grpc_metadata_array trailing_md;
  bool initial_md_received;
  bool writes_done;
  bool status_received;
  bool end_of_stream; /* a read returned no message */
  grpc_status_code status;
  grpc_slice details;
  rpc_join_t *join;   /* a multi-slice response's bytes; NULL until the first */
  rpc_arena_t *arena; /* the read messages; NULL until the first read */
  /* The chunk rpc_client_call_read_bytes lent: the buffer and the reader
   * (whose buffer_out holds the bytes of a compressed message) live until
   * the next read.  iov: their slices, grown to the most a message had. */
  grpc_byte_buffer *lent_buf;
  grpc_byte_buffer_reader lent_reader;
  bool lent_reader_live;
  struct iovec *iov;
  size_t iov_cap;
};

/* ---- channel ------------------------------------------------------------- */

static bool read_pem(char **out, const char *path, fzip_error_t *error) {
  return fzip_read_small_file(out, NULL, path, RPC_CLIENT_PEM_MAX, error);
}

static bool make_credentials(grpc_channel_credentials **out, const rpc_client_options_t *o,
                             fzip_error_t *error) {
  bool ok = false;
  char *ca = NULL, *cert = NULL, *key = NULL;
  if (!o->tls_ca_file) {
    *out = grpc_insecure_credentials_create();
    return true;
  }
  if ((o->tls_cert_file != NULL) != (o->tls_key_file != NULL))
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "a client certificate needs both cert and key files");
  if (!read_pem(&ca, o->tls_ca_file, error) ||
      (o->tls_cert_file && (!read_pem(&cert, o->tls_cert_file, error) ||
                            !read_pem(&key, o->tls_key_file, error))))
    goto done;
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
  *out = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
  if (!*out) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "TLS channel credentials rejected");
    goto done;
  }
  ok = true;
done:
  free(ca);
  free(cert);
  free(key);
  return ok;
}

bool rpc_client_new(rpc_client_t **out, const rpc_client_options_t *options, fzip_error_t *error) {
  grpc_channel_credentials *creds = NULL;
  rpc_client_t *c = NULL;
  if (!options || !options->target)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "client options need a target");
  c = calloc(1, sizeof *c);
  if (!c)
    return fzip_error_oom(error, NULL);
  grpc_init();
  if (!make_credentials(&creds, options, error)) {
    free(c);
    grpc_shutdown();
    return false;
  }
  size_t max_recv = options->max_recv_message ? options->max_recv_message
                                              : RPC_CLIENT_DEFAULT_MAX_MESSAGE;
  c->max_send_message = options->max_send_message ? options->max_send_message
                                                  : RPC_CLIENT_DEFAULT_MAX_MESSAGE;
  /* The size limits always; the TLS name override, last, only when set. */
  grpc_arg args[] = {
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)max_recv}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = (int)c->max_send_message}},
      {GRPC_ARG_STRING, GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
       {.string = (char *)options->tls_server_name}},
  };
  size_t n_args = sizeof args / sizeof args[0] - (options->tls_server_name ? 0 : 1);
  grpc_channel_args channel_args = {n_args, args};
  c->channel = grpc_channel_create(options->target, creds, &channel_args);
  grpc_channel_credentials_release(creds);
  *out = c;
  return true;
}

void rpc_client_destroy(rpc_client_t *client) {
  if (!client)
    return;
  grpc_channel_destroy(client->channel);
  free(client);
  grpc_shutdown();
}

/* ---- calls --------------------------------------------------------------- */

/* Records the status batch's completion; an error status cancels the
 * call so that a step still waiting (a write stalled on flow control)
 * fails now instead of never. */
static void on_status_event(rpc_client_call_t *call, bool success) {
  if (!success) {
    call->status = GRPC_STATUS_INTERNAL;
    grpc_slice_unref(call->details);
    call->details = grpc_slice_from_static_string("cannot receive the call status");
  }
  call->status_received = true;
  if (call->status != GRPC_STATUS_OK)
    grpc_call_cancel(call->call, NULL);
}

/* Waits for the batch tagged `tag`, handling the status batch on the way;
 * the call's deadline bounds the wait. */
static bool wait_for(rpc_client_call_t *call, void *tag) {
  for (;;) {
    grpc_event ev =
        grpc_completion_queue_next(call->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
      return false; /* cannot happen before shutdown */
    if (ev.tag == &call->status_tag)
      on_status_event(call, ev.success);
    if (ev.tag == tag)
      return ev.success;
  }
}

/* Runs one step batch and waits for it. */
static bool run_batch(rpc_client_call_t *call, const grpc_op *ops, size_t n) {
  grpc_call_error rc = grpc_call_start_batch(call->call, ops, n, &call->step_tag, NULL);
  if (rc != GRPC_CALL_OK)
    return false;
  return wait_for(call, &call->step_tag);
}

/* Arms RECV_STATUS_ON_CLIENT; it completes when the call ends, whatever
 * step is running then. */
static bool arm_status(rpc_client_call_t *call) {
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[0].data.recv_initial_metadata.recv_initial_metadata = &call->initial_md;
  ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[1].data.recv_status_on_client.trailing_metadata = &call->trailing_md;
  ops[1].data.recv_status_on_client.status = &call->status;
  ops[1].data.recv_status_on_client.status_details = &call->details;
  if (grpc_call_start_batch(call->call, ops, sizeof ops / sizeof ops[0], &call->status_tag,
                            NULL) != GRPC_CALL_OK)
    return false;
  call->initial_md_received = true; /* asked for here, never with a read */
  call->status_armed = true;
  return true;
}

static void receive_status(rpc_client_call_t *call) {
  if (call->status_received)
    return;
  if (!call->status_armed || !wait_for(call, &call->status_tag)) {
    call->status = GRPC_STATUS_INTERNAL;
    grpc_slice_unref(call->details);
    call->details = grpc_slice_from_static_string("cannot receive the call status");
    call->status_received = true;
  }
}

/* What the server's google.rpc.Status (rpc_details.h) adds to `message`,
 * as " (reason R, request id X)": the reason when it says more than the
 * code's name, the request id when the message does not already carry it
 * (sanitised messages do).  "" without details. */
static void details_suffix(char *out, size_t size, const rpc_client_call_t *call,
                           fzip_code_t code, const char *message) {
  rpc_details_t d;
  bool reason, request_id;
  out[0] = '\0';
  for (size_t i = 0; i < call->trailing_md.count; i++) {
    const grpc_metadata *md = &call->trailing_md.metadata[i];
    if (grpc_slice_str_cmp(md->key, RPC_DETAILS_HEADER) != 0 ||
        !rpc_details_parse(&d, GRPC_SLICE_START_PTR(md->value), GRPC_SLICE_LENGTH(md->value)))
      continue;
    reason = d.reason[0] && strcmp(d.reason, fzip_code_name(code)) != 0;
    request_id = d.request_id[0] && !strstr(message, d.request_id);
    if (reason || request_id)
      snprintf(out, size, " (%s%s%s%s%s)", reason ? "reason " : "", reason ? d.reason : "",
               reason && request_id ? ", " : "", request_id ? "request id " : "",
               request_id ? d.request_id : "");
    return;
  }
}

/* The call's status as the result of a step: true for OK.  The message is
 * the server's, with what its status details add (details_suffix). */
static bool status_result(rpc_client_call_t *call, fzip_error_t *error) {
  char message[FZIP_ERROR_MESSAGE_MAX];
  char suffix[FZIP_ERROR_MESSAGE_MAX];
  fzip_code_t code;

  receive_status(call);
  if (call->status == GRPC_STATUS_OK)
    return true;
  code = rpc_status_to_code(call->status);
  snprintf(message, sizeof message, "%.*s", (int)GRPC_SLICE_LENGTH(call->details),
           (const char *)GRPC_SLICE_START_PTR(call->details));
  details_suffix(suffix, sizeof suffix, call, code, message);
  return fzip_error_set(error, FZIP_DOMAIN_RPC, code, "%s%s", message, suffix);
}

/* A step failed: the status says why (OK would mean we broke the call). */
static bool step_failed(rpc_client_call_t *call, const char *what, fzip_error_t *error) {
  if (!status_result(call, error))
    return false;
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "%s failed on a finished call",
                        what);
}

static gpr_timespec deadline_of(const rpc_call_options_t *o) {
  if (!o || o->timeout_ms <= 0)
    return gpr_inf_future(GPR_CLOCK_REALTIME);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(o->timeout_ms, GPR_TIMESPAN));
}

static bool send_initial_metadata(rpc_client_call_t *call, const rpc_call_options_t *o,
                                  fzip_error_t *error) {
  grpc_metadata md;
  grpc_op op;
  memset(&md, 0, sizeof md);
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_INITIAL_METADATA;
  if (o && o->authorization) {
    md.key = grpc_slice_from_static_string("authorization");
    md.value = grpc_slice_from_copied_string(o->authorization);
    op.data.send_initial_metadata.count = 1;
    op.data.send_initial_metadata.metadata = &md;
  }
  bool ok = run_batch(call, &op, 1);
  if (o && o->authorization)
    grpc_slice_unref(md.value);
  return ok || step_failed(call, "sending metadata", error);
}

bool rpc_client_call_open(rpc_client_call_t **out, rpc_client_t *client, const char *method,
                          const rpc_call_options_t *call_options,
                          const ProtobufCMessageDescriptor *resp_desc, fzip_error_t *error) {
  rpc_client_call_t *call = calloc(1, sizeof *call);
  if (!call)
    return fzip_error_oom(error, NULL);
  call->resp_desc = resp_desc;
  call->max_send_message = client->max_send_message;
  call->status = GRPC_STATUS_UNKNOWN;
  call->details = grpc_empty_slice();
  grpc_metadata_array_init(&call->initial_md);
  grpc_metadata_array_init(&call->trailing_md);
  call->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_slice method_slice = grpc_slice_from_copied_string(method);
  call->call = grpc_channel_create_call(client->channel, NULL, GRPC_PROPAGATE_DEFAULTS, call->cq,
                                        method_slice, NULL, deadline_of(call_options), NULL);
  grpc_slice_unref(method_slice);
  if (!call->call || !arm_status(call)) {
    rpc_client_call_destroy(call);
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "cannot create call %s",
                          method);
  }
  if (!send_initial_metadata(call, call_options, error)) {
    rpc_client_call_destroy(call);
    return false;
  }
  *out = call;
  return true;
}

bool rpc_client_call_open_with(rpc_client_call_t **out, rpc_client_t *client, const char *method,
                               const rpc_call_options_t *call_options, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc, fzip_error_t *error) {
  rpc_client_call_t *call = NULL;
  if (!rpc_client_call_open(&call, client, method, call_options, resp_desc, error))
    return false;
  if (!rpc_client_call_write(call, req, error) || !rpc_client_call_writes_done(call, error)) {
    rpc_client_call_destroy(call);
    return false;
  }
  *out = call;
  return true;
}

bool rpc_client_call_write(rpc_client_call_t *call, const ProtobufCMessage *msg,
                           fzip_error_t *error) {
  size_t size = protobuf_c_message_get_packed_size(msg);
  if (size > call->max_send_message)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "message of %zu bytes exceeds the send limit of %zu bytes", size,
                          call->max_send_message);
  grpc_slice slice = grpc_slice_malloc(size);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
  grpc_byte_buffer *buf = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_MESSAGE;
  op.data.send_message.send_message = buf;
  bool ok = run_batch(call, &op, 1);
  grpc_byte_buffer_destroy(buf);
  return ok || step_failed(call, "write", error);
}

bool rpc_client_call_writes_done(rpc_client_call_t *call, fzip_error_t *error) {
  if (call->writes_done)
    return true;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  call->writes_done = true;
  return run_batch(call, &op, 1) || step_failed(call, "half-close", error);
}

/* Unpacks `buf` into `arena`, or with malloc when NULL. */
static bool unpack(ProtobufCMessage **msg, rpc_client_call_t *call, grpc_byte_buffer *buf,
                   rpc_arena_t *arena, fzip_error_t *error) {
  const uint8_t *bytes = NULL;
  size_t len = 0;
  if (!rpc_join_bytes(&bytes, &len, &call->join, buf, FZIP_ERR_DATA_LOSS, "response", error))
    return false;
  *msg = protobuf_c_message_unpack(call->resp_desc, arena ? rpc_arena_allocator(arena) : NULL,
                                   len, bytes);
  if (*msg)
    return true;
  if (arena && rpc_arena_exhausted(arena))
    return fzip_error_oom(error, "a response message");
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_DATA_LOSS,
                        "response is not a valid %s message", call->resp_desc->name);
}

/* Ends the chunk the last read_bytes lent. */
static void release_lent(rpc_client_call_t *call) {
  if (call->lent_reader_live)
    grpc_byte_buffer_reader_destroy(&call->lent_reader);
  call->lent_reader_live = false;
  grpc_byte_buffer_destroy(call->lent_buf);
  call->lent_buf = NULL;
}

static bool push_piece(rpc_client_call_t *call, size_t *n, grpc_slice *s, fzip_error_t *error) {
  if (*n == call->iov_cap) {
    size_t cap = call->iov_cap ? call->iov_cap * 2 : 64;
    struct iovec *iov = realloc(call->iov, cap * sizeof *iov);
    if (!iov)
      return fzip_error_oom(error, "a chunk's piece list");
    call->iov = iov;
    call->iov_cap = cap;
  }
  call->iov[*n].iov_base = GRPC_SLICE_START_PTR(*s);
  call->iov[(*n)++].iov_len = GRPC_SLICE_LENGTH(*s);
  return true;
}

/* A protobuf varint at the start of p[0..n); false if it does not end
 * within n bytes (or RPC_CLIENT_VARINT_MAX). */
static bool read_varint(uint64_t *v, size_t *used, const uint8_t *p, size_t n) {
  uint64_t r = 0;
  for (size_t i = 0; i < n && i < RPC_CLIENT_VARINT_MAX; i++) {
    r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) {
      *v = r;
      *used = i + 1;
      return true;
    }
  }
  return false;
}

/* The length of the head (tag and length) when the pieces hold exactly
 * one `field` of wire type bytes and nothing else; 0 otherwise. */
static size_t chunk_head(const struct iovec *iov, size_t n, size_t total, uint32_t field) {
  uint8_t head[RPC_CLIENT_CHUNK_HEAD_MAX];
  size_t have = 0, tag_used = 0, len_used = 0;
  uint64_t tag = 0, len = 0;

  for (size_t i = 0; i < n && have < sizeof head; i++) {
    size_t take = iov[i].iov_len < sizeof head - have ? iov[i].iov_len : sizeof head - have;
    memcpy(head + have, iov[i].iov_base, take);
    have += take;
  }
  if (!read_varint(&tag, &tag_used, head, have) ||
      tag != ((uint64_t)field << 3 | RPC_CLIENT_WIRE_LEN) ||
      !read_varint(&len, &len_used, head + tag_used, have - tag_used) ||
      len != total - tag_used - len_used)
    return 0;
  return tag_used + len_used;
}

/* Lends `buf` as *bytes when it is a chunk of `field` (bytes->present; the
 * call keeps buf), else leaves it to be unpacked. */
static bool lend_chunk(rpc_client_bytes_t *bytes, rpc_client_call_t *call,
                       grpc_byte_buffer *buf, uint32_t field, fzip_error_t *error) {
  grpc_slice *s = NULL;
  size_t n = 0, head, first = 0;

  if (!grpc_byte_buffer_reader_init(&call->lent_reader, buf))
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_DATA_LOSS,
                          "cannot read the response message");
  call->lent_reader_live = true;
  size_t total = grpc_byte_buffer_length(call->lent_reader.buffer_out);
  while (grpc_byte_buffer_reader_peek(&call->lent_reader, &s)) {
    if (!push_piece(call, &n, s, error))
      return false;
  }
  if (!(head = chunk_head(call->iov, n, total, field))) {
    release_lent(call); /* buf is still the caller's */
    return true;
  }
  bytes->len = total - head;
  /* Drop the head from the front pieces. */
  while (head > 0 && first < n) {
    size_t cut = head < call->iov[first].iov_len ? head : call->iov[first].iov_len;
    call->iov[first].iov_base = (uint8_t *)call->iov[first].iov_base + cut;
    call->iov[first].iov_len -= cut;
    head -= cut;
    if (call->iov[first].iov_len == 0)
      first++;
  }
  bytes->present = true;
  bytes->count = n - first;
  bytes->iov = call->iov + first;
  call->lent_buf = buf;
  return true;
}

/* Reads the next message, unpacked into `arena` (NULL: malloc); with a
 * bytes_field, a chunk of that field is lent as *bytes instead. */
static bool read_message(ProtobufCMessage **msg, rpc_client_call_t *call, rpc_arena_t *arena,
                         uint32_t bytes_field, rpc_client_bytes_t *bytes, fzip_error_t *error) {
  grpc_byte_buffer *buf = NULL;
  grpc_op ops[2];
  size_t n = 0;
  *msg = NULL;
  /* An OK status can arrive before the last messages are read (the
   * status batch is armed early): only the end of the stream or an error
   * ends reading. */
  if (call->end_of_stream || (call->status_received && call->status != GRPC_STATUS_OK))
    return status_result(call, error);
  memset(ops, 0, sizeof ops);
  if (!call->initial_md_received) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &call->initial_md;
    call->initial_md_received = true;
  }
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n++].data.recv_message.recv_message = &buf;
  if (!run_batch(call, ops, n)) {
    grpc_byte_buffer_destroy(buf);
    return step_failed(call, "read", error);
  }
  if (!buf) {
    call->end_of_stream = true;
    return status_result(call, error);
  }
  if (bytes_field) {
    if (!lend_chunk(bytes, call, buf, bytes_field, error)) {
      release_lent(call);
      grpc_byte_buffer_destroy(buf);
      return false;
    }
    if (bytes->present)
      return true; /* buf is the call's until the next read */
  }
  bool ok = unpack(msg, call, buf, arena, error);
  grpc_byte_buffer_destroy(buf);
  return ok;
}

/* What the last read lent is handed back here (rpc_client.h). */
static bool end_lent(rpc_client_call_t *call, fzip_error_t *error) {
  release_lent(call);
  if (call->arena)
    rpc_arena_reset(call->arena);
  else if (!(call->arena = rpc_arena_new(RPC_CLIENT_ARENA_LIMIT)))
    return fzip_error_oom(error, "a response message");
  return true;
}

bool rpc_client_call_read(ProtobufCMessage **msg, rpc_client_call_t *call, fzip_error_t *error) {
  *msg = NULL;
  return end_lent(call, error) && read_message(msg, call, call->arena, 0, NULL, error);
}

bool rpc_client_call_read_bytes(ProtobufCMessage **msg, rpc_client_bytes_t *bytes,
                                rpc_client_call_t *call, uint32_t bytes_field,
                                fzip_error_t *error) {
  *msg = NULL;
  memset(bytes, 0, sizeof *bytes);
  if (bytes_field == 0)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "read_bytes needs a field number");
  return end_lent(call, error) &&
         read_message(msg, call, call->arena, bytes_field, bytes, error);
}

bool rpc_client_call_finish(ProtobufCMessage **resp, rpc_client_call_t *call, fzip_error_t *error) {
  ProtobufCMessage *msg = NULL;
  *resp = NULL;
  release_lent(call); /* ends a lent message or chunk, as a read does */
  if (call->arena)
    rpc_arena_reset(call->arena);
  if (!rpc_client_call_writes_done(call, error) || !read_message(&msg, call, NULL, 0, NULL, error))
    return false;
  if (!status_result(call, error)) {
    if (msg)
      protobuf_c_message_free_unpacked(msg, NULL);
    return false;
  }
  *resp = msg;
  return true;
}

bool rpc_client_unary(ProtobufCMessage **resp, rpc_client_t *client, const char *method,
                      const rpc_call_options_t *call_options, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, fzip_error_t *error) {
  rpc_client_call_t *call = NULL;
  bool ok = rpc_client_call_open_with(&call, client, method, call_options, req, resp_desc, error) &&
            rpc_client_call_finish(resp, call, error);
  if (ok && !*resp)
    ok = fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                        "%s ended OK without a response", method);
  rpc_client_call_destroy(call);
  return ok;
}

bool rpc_client_message_copy(ProtobufCMessage **out, const ProtobufCMessage *msg,
                             fzip_error_t *error) {
  uint8_t first[RPC_CLIENT_COPY_STACK];
  ProtobufCBufferSimple packed = PROTOBUF_C_BUFFER_SIMPLE_INIT(first);
  /* The simple buffer drops what it cannot allocate: a short pack means
   * out of memory.  What was packed whole unpacks, unless memory ran out. */
  bool whole = protobuf_c_message_pack_to_buffer(msg, &packed.base) == packed.len;
  *out = whole ? protobuf_c_message_unpack(msg->descriptor, NULL, packed.len, packed.data) : NULL;
  PROTOBUF_C_BUFFER_SIMPLE_CLEAR(&packed);
  return *out ? true : fzip_error_oom(error, "a message copy");
}

void rpc_client_call_cancel(rpc_client_call_t *call) { grpc_call_cancel(call->call, NULL); }

int rpc_client_call_status(const rpc_client_call_t *call) {
  return call->status_received ? (int)call->status : -1;
}

void rpc_client_call_destroy(rpc_client_call_t *call) {
  if (!call)
    return;
  if (call->call) {
    if (!call->status_received) {
      grpc_call_cancel(call->call, NULL);
      receive_status(call);
    }
    grpc_call_unref(call->call);
  }
  grpc_metadata_array_destroy(&call->initial_md);
  grpc_metadata_array_destroy(&call->trailing_md);
  grpc_slice_unref(call->details);
  release_lent(call);
  free(call->iov);
  rpc_join_destroy(call->join);
  rpc_arena_destroy(call->arena);
  grpc_completion_queue_shutdown(call->cq);
  while (grpc_completion_queue_next(call->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(call->cq);
  free(call);
}
