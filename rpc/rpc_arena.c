/*
 * rpc_arena: bump allocation in a chain of blocks.  Small requests share
 * RPC_ARENA_BLOCK-sized blocks; a request larger than a block gets a block
 * of its own, so a 1 MiB chunk costs one malloc, not a pile of wasted
 * tails.  The first block survives resets because nearly every call
 * needs it again for the next message, and so does the largest of the
 * blocks of their own (the spare): a stream of 1 MiB chunks then unpacks
 * each message into one reused block instead of allocating and
 * page-faulting in a fresh one per message (server requests, rpc_call;
 * client responses, rpc_client).
 *
 * Reuse turns a stale pointer into silently wrong bytes, so under
 * AddressSanitizer the blocks a reset keeps are poisoned and each
 * allocation unpoisons just its bytes: a message used after its reset is
 * a use-after-poison report, as it would be a use-after-free with malloc.
 */
#include "rpc_arena.h"

#include <stdint.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define RPC_ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RPC_ARENA_ASAN 1
#endif
#endif
#ifdef RPC_ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define RPC_ARENA_BLOCK (16 * 1024)
#define RPC_ARENA_ALIGN 16

typedef struct arena_block {
  struct arena_block *next;
  size_t size; /* usable bytes after the header */
  size_t used;
  _Alignas(RPC_ARENA_ALIGN) unsigned char data[];
} arena_block_t;

struct rpc_arena {
  arena_block_t *head; /* most recent block first; the last one is kept on reset */
  arena_block_t *spare; /* the largest own-block freed by a reset, for the next */
  size_t limit;
  size_t total; /* bytes handed out since the last reset */
  bool exhausted;
  ProtobufCAllocator allocator;
};

static void *arena_pb_alloc(void *data, size_t size) { return rpc_arena_alloc(data, size); }

static void arena_pb_free(void *data, void *ptr) {
  /* Freed wholesale at reset/destroy. */
  (void)data;
  (void)ptr;
}

static arena_block_t *block_new(size_t size) {
  arena_block_t *b = malloc(sizeof *b + size);
  if (!b)
    return NULL;
  b->next = NULL;
  b->size = size;
  b->used = 0;
  ARENA_POISON(b->data, size);
  return b;
}

rpc_arena_t *rpc_arena_new(size_t limit) {
  rpc_arena_t *a = calloc(1, sizeof *a);
  if (!a)
    return NULL;
  a->head = block_new(RPC_ARENA_BLOCK);
  if (!a->head) {
    free(a);
    return NULL;
  }
  a->limit = limit;
  a->allocator.alloc = arena_pb_alloc;
  a->allocator.free = arena_pb_free;
  a->allocator.allocator_data = a;
  return a;
}

static void free_blocks_until(rpc_arena_t *a, arena_block_t *keep) {
  while (a->head && a->head != keep) {
    arena_block_t *next = a->head->next;
    free(a->head);
    a->head = next;
  }
}

void rpc_arena_destroy(rpc_arena_t *arena) {
  if (!arena)
    return;
  free(arena->spare);
  free_blocks_until(arena, NULL);
  free(arena);
}

void *rpc_arena_alloc(rpc_arena_t *arena, size_t size) {
  size_t rounded = (size + RPC_ARENA_ALIGN - 1) & ~(size_t)(RPC_ARENA_ALIGN - 1);
  if (rounded < size || rounded > arena->limit - arena->total || arena->total > arena->limit) {
    arena->exhausted = true;
    return NULL;
  }
  arena_block_t *b = arena->head;
  if (b->size - b->used < rounded && arena->spare && arena->spare->size >= rounded) {
    b = arena->spare;
    arena->spare = NULL;
    b->used = 0;
    b->next = arena->head;
    arena->head = b;
  } else if (b->size - b->used < rounded) {
    b = block_new(rounded > RPC_ARENA_BLOCK ? rounded : RPC_ARENA_BLOCK);
    if (!b) {
      arena->exhausted = true;
      return NULL;
    }
    b->next = arena->head;
    arena->head = b;
  }
  void *p = b->data + b->used;
  b->used += rounded;
  arena->total += rounded;
  ARENA_UNPOISON(p, size);
  return p;
}

void rpc_arena_reset(rpc_arena_t *arena) {
  arena_block_t *first = arena->head;
  while (first->next)
    first = first->next;
  /* Keep the largest own block as the spare (blocks of RPC_ARENA_BLOCK
   * are cheap to make again). */
  for (arena_block_t *b = arena->head; b != first;) {
    arena_block_t *next = b->next;
    if (b->size > RPC_ARENA_BLOCK && (!arena->spare || b->size > arena->spare->size)) {
      free(arena->spare);
      arena->spare = b;
      ARENA_POISON(b->data, b->size);
    } else {
      free(b);
    }
    b = next;
  }
  arena->head = first;
  first->used = 0;
  ARENA_POISON(first->data, first->size);
  arena->total = 0;
  arena->exhausted = false;
}

bool rpc_arena_exhausted(const rpc_arena_t *arena) { return arena->exhausted; }

ProtobufCAllocator *rpc_arena_allocator(rpc_arena_t *arena) { return &arena->allocator; }
