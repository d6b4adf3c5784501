/*
 * rpc_join (internal): a received message's bytes in one piece, because
 * protobuf-c unpacks from one contiguous buffer while gRPC hands a message
 * over as a byte buffer of slices (a 1 MiB chunk usually arrives in
 * several).
 *
 * A message that lies in one slice is used where it lies.  One in several
 * slices is copied into the join's buffer, which grows to the largest
 * message seen and is kept, so a stream of chunks allocates (and
 * page-faults in) its buffer once instead of once per message, as
 * grpc_byte_buffer_reader_readall would.  Both sides use it: rpc_call for
 * request messages, rpc_client for responses.  The server trims it after
 * each message (rpc_join_trim; rpc_call.c says why).  Not thread-safe:
 * one join per call, used by one thread at a time.
 */
#ifndef FZIP_RPC_JOIN_H
#define FZIP_RPC_JOIN_H

#include <grpc/byte_buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"

typedef struct rpc_join rpc_join_t;

void rpc_join_destroy(rpc_join_t *join); /* accepts NULL */

/* The bytes of `buf` in *out (*len of them; a 0-byte message gives ""):
 * the buffer's only slice, valid while `buf` lives, or the join's buffer,
 * valid until the next rpc_join_bytes on this join, its trim or its
 * destroy.  *join is made here when a message first needs it (start with
 * NULL: a call whose messages arrive in one slice never has one); the
 * caller destroys it.  A
 * compressed buffer is inflated by gRPC's reader first.  A buffer that
 * cannot be read (a bad compressed message: the peer's fault) fails with
 * `bad_code`; `what` ("request", "response") names the message in errors. */
bool rpc_join_bytes(const uint8_t **out, size_t *len, rpc_join_t **join, grpc_byte_buffer *buf,
                    fzip_code_t bad_code, const char *what, fzip_error_t *error);
/* Frees the join's buffer (the next multi-slice message allocates one
 * again); the join stays usable.  Accepts NULL. */
void rpc_join_trim(rpc_join_t *join);

#endif
