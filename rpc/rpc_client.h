/*
 * rpc_client: blocking gRPC calls on the C core, for tests and the fzip
 * CLI.
 *
 * A client is one channel (plaintext, or TLS with an optional client
 * certificate) with explicit message size limits.  A call is opened with
 * per-call options (bearer token, deadline) and then driven by generic
 * steps that cover every RPC kind:
 *
 *   unary            rpc_client_unary (one shot)
 *   server streaming rpc_client_call_open_with(req) -> read ... until *msg == NULL
 *   client streaming rpc_client_call_open -> write ... -> finish(&resp)
 *   bidi             open -> write/read pairs -> writes_done -> read NULL
 *
 * Every failing function fills an fzip_error_t whose code is the gRPC
 * status turned back into an fzip_code_t (rpc_status_to_code) and
 * whose message is the status details the server sent, followed by what
 * its google.rpc.Status adds (rpc_details.h): " (reason R, request id X)",
 * the reason when it is more than the code's name, the request id unless
 * the message names it already; rpc_client_call_status gives the raw gRPC
 * status code.  A call handle is
 * used by one thread at a time; different calls on one client may run on
 * different threads at once.
 *
 * Ownership of received messages: the single response of
 * rpc_client_unary and rpc_client_call_finish is the caller's (free it
 * with protobuf_c_message_free_unpacked(msg, NULL)).  A message from
 * rpc_client_call_read is lent: it lives in the call's memory, which the
 * next read reuses, so that a stream of large chunks costs no allocation
 * per message.  Do not free it; copy what must outlive it
 * (rpc_client_message_copy).
 */
#ifndef FZIP_RPC_CLIENT_H
#define FZIP_RPC_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "fzip_error.h"

typedef struct rpc_client rpc_client_t;
typedef struct rpc_client_call rpc_client_call_t;

typedef struct {
  const char *target;            /* "127.0.0.1:50051" */
  size_t max_recv_message;       /* 0: 4 MiB + 64 KiB */
  size_t max_send_message;       /* 0: 4 MiB + 64 KiB */
  /* TLS when tls_ca_file is set: the server's certificate must chain to it. */
  const char *tls_ca_file;
  const char *tls_cert_file;     /* optional client certificate ... */
  const char *tls_key_file;      /* ... and its key */
  const char *tls_server_name;   /* optional: name to verify instead of the target host */
} rpc_client_options_t;

typedef struct {
  const char *authorization; /* full metadata value, "Bearer <token>"; NULL: none */
  int64_t timeout_ms;        /* 0: no deadline */
} rpc_call_options_t;

/* *out is the caller's to destroy. */
bool rpc_client_new(rpc_client_t **out, const rpc_client_options_t *options, fzip_error_t *error);
void rpc_client_destroy(rpc_client_t *client); /* accepts NULL; calls must be destroyed first */

/* One unary call.  *resp is the caller's. */
bool rpc_client_unary(ProtobufCMessage **resp, rpc_client_t *client, const char *method,
                      const rpc_call_options_t *call_options, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, fzip_error_t *error);

/* Starts a call (sends the metadata).  Responses are unpacked as
 * resp_desc.  *out is the caller's to destroy. */
bool rpc_client_call_open(rpc_client_call_t **out, rpc_client_t *client, const char *method,
                          const rpc_call_options_t *call_options,
                          const ProtobufCMessageDescriptor *resp_desc, fzip_error_t *error);
/* Server streaming: open, send the single request and half-close. */
bool rpc_client_call_open_with(rpc_client_call_t **out, rpc_client_t *client, const char *method,
                               const rpc_call_options_t *call_options, const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc, fzip_error_t *error);
/* Sends one message; waits until the transport took it (flow control). */
bool rpc_client_call_write(rpc_client_call_t *call, const ProtobufCMessage *msg,
                           fzip_error_t *error);
bool rpc_client_call_writes_done(rpc_client_call_t *call, fzip_error_t *error);
/* Reads the next message.  At the end of the stream *msg is NULL and the
 * result is the call's status (true for OK).  *msg is lent by the call:
 * valid until the next rpc_client_call_read or rpc_client_call_finish on
 * this call (whatever they return) or rpc_client_call_destroy; never
 * free it. */
bool rpc_client_call_read(ProtobufCMessage **msg, rpc_client_call_t *call, fzip_error_t *error);
/* The bytes of a chunk message, where gRPC received them: `count`
 * pieces (most a few KiB to 64 KiB, as they came off the socket) adding
 * up to `len`.  Lent like a read message. */
typedef struct {
  bool present;             /* the message was such a chunk */
  size_t len;
  size_t count;
  const struct iovec *iov;
} rpc_client_bytes_t;

/* rpc_client_call_read for a stream of large bytes chunks (a download):
 * a message whose whole content is the bytes field number `bytes_field`
 * (DownloadExportResponse.chunk) is not unpacked; *bytes lends its bytes
 * in place, neither joined into one buffer nor copied by protobuf-c
 * (two copies of every byte the plain read makes), and *msg is NULL.  Any
 * other message (an info message, a chunk beside other fields or repeated)
 * is unpacked into *msg as rpc_client_call_read does, bytes->present
 * false.  At the end of the stream both are empty and the result is the
 * status.  Both are valid until the next read, finish or destroy. */
bool rpc_client_call_read_bytes(ProtobufCMessage **msg, rpc_client_bytes_t *bytes,
                                rpc_client_call_t *call, uint32_t bytes_field,
                                fzip_error_t *error);
/* Client streaming: half-close, read the single response, then the status.
 * *resp is the caller's (NULL if the server sent none); a message an
 * earlier read lent is no longer valid. */
bool rpc_client_call_finish(ProtobufCMessage **resp, rpc_client_call_t *call, fzip_error_t *error);
/* A copy of `msg` (e.g. a lent one) that is the caller's: free it with
 * protobuf_c_message_free_unpacked(*out, NULL). */
bool rpc_client_message_copy(ProtobufCMessage **out, const ProtobufCMessage *msg,
                             fzip_error_t *error);
/* Cancels the call; later steps fail with CANCELLED. */
void rpc_client_call_cancel(rpc_client_call_t *call);
/* gRPC status code once the call ended (-1 before). */
int rpc_client_call_status(const rpc_client_call_t *call);
/* Cancels an unfinished call and releases it; accepts NULL. */
void rpc_client_call_destroy(rpc_client_call_t *call);

#endif
