/*
 * rpc_arena: the per-call memory pool (after h2o's request pool).
 *
 * Server side, handlers build response messages in it and the layer
 * unpacks request messages into it through a ProtobufCAllocator, so one
 * call's messages are released together by rpc_arena_reset (after each
 * message is packed) or rpc_arena_destroy (when the call ends).  Client
 * side, rpc_client unpacks each streamed response into its call's arena
 * and resets it at the next read.  The arena has a hard byte limit: past
 * it allocation returns NULL and the server's call fails with
 * RESOURCE_EXHAUSTED instead of growing without bound.  Not thread-safe: a
 * call's arena is used by one thread at a time.  Under AddressSanitizer a
 * reset poisons the memory it keeps, so reading a message after its reset
 * is reported wherever the memory was not handed out again.
 */
#ifndef FZIP_RPC_ARENA_H
#define FZIP_RPC_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct rpc_arena rpc_arena_t;

/* NULL on allocation failure.  `limit` bounds the bytes handed out between
 * two resets. */
rpc_arena_t *rpc_arena_new(size_t limit);
void rpc_arena_destroy(rpc_arena_t *arena); /* accepts NULL */

/* 16-byte aligned, uninitialised; NULL past the limit or on OOM. */
void *rpc_arena_alloc(rpc_arena_t *arena, size_t size);
/* Hands everything allocated so far back.  Keeps the first block warm and
 * the largest block of its own (a request bigger than a block) as a spare
 * for the next step; the spare can be up to `limit` bytes and stays for
 * the arena's life (freed by rpc_arena_destroy). */
void rpc_arena_reset(rpc_arena_t *arena);
/* True once an allocation was refused since the last reset. */
bool rpc_arena_exhausted(const rpc_arena_t *arena);
/* Borrowed allocator over the arena; its free is a no-op. */
ProtobufCAllocator *rpc_arena_allocator(rpc_arena_t *arena);

#endif
