/*
 * rpc_payload (internal): per-call buffers for the bytes of outgoing
 * messages (download chunks), sent without a copy and reused.
 *
 * A handler step borrows a buffer (rpc_ctx_payload), fills it and points a
 * bytes field of its message at it.  Packing that message gives gRPC a
 * slice that refers to the buffer instead of copying it; when gRPC drops
 * the slice (the bytes are on the wire) the buffer is free for a later
 * step.  So a stream of chunks costs no allocation, no page faults and no
 * copy per message.  A call owns at most RPC_PAYLOAD_BUFFERS buffers; when
 * all are still held by gRPC the handler falls back to its arena.
 *
 * Threads: lend/pack/end_step run on the call's worker; the slice release
 * runs on whatever gRPC thread drops the last reference, hence the lock.
 * The pool lives until the call released it and gRPC returned every
 * buffer.
 */
#ifndef FZIP_RPC_PAYLOAD_H
#define FZIP_RPC_PAYLOAD_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* One being produced, one being sent, one still referenced by the
 * transport after its send completed. */
#define RPC_PAYLOAD_BUFFERS 3
/* A bytes field shorter than this is copied: a slice of its own would
 * cost more than the copy. */
#define RPC_PAYLOAD_ZERO_COPY_MIN (16 * 1024)

typedef struct rpc_payload_pool rpc_payload_pool_t;

rpc_payload_pool_t *rpc_payload_pool_new(void); /* NULL: out of memory */
/* Drops the call's reference; buffers gRPC still holds keep the pool
 * alive until they come back.  Accepts NULL. */
void rpc_payload_pool_release(rpc_payload_pool_t *pool);

/* A buffer of at least `size` bytes for this step, or NULL (none free, or
 * out of memory). */
void *rpc_payload_lend(rpc_payload_pool_t *pool, size_t size);

/* Whether a buffer is lent for this step, i.e. whether the step's message
 * can point into one.  When none is (the handler took the arena fallback,
 * or no buffer at all), pack with a plain single slice: rpc_payload_pack
 * would only stage and copy the bytes twice. */
bool rpc_payload_lent(rpc_payload_pool_t *pool);

/* Packs `msg` (packed size `size`) into a new byte buffer: bytes fields
 * that lie in a buffer lent for this step go in as slices referring to
 * it, the rest is copied.  NULL: out of memory. */
grpc_byte_buffer *rpc_payload_pack(rpc_payload_pool_t *pool, const ProtobufCMessage *msg,
                                   size_t size);

/* The step is over: buffers lent to it that no packed message refers to
 * are free again. */
void rpc_payload_end_step(rpc_payload_pool_t *pool);

#endif
