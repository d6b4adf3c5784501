/*
 * rpc_payload: see rpc_payload.h.  Packing goes through protobuf-c's
 * pack_to_buffer, which hands a bytes field's data to `append` as the
 * pointer the message holds: a pointer into a lent buffer becomes a slice
 * of it, everything else (tags, lengths, small fields) is staged and
 * copied into a slice of its own.
 */
#include "rpc_payload.h"

#include <grpc/slice.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Staged pieces between payload slices, plus a last one. */
#define RPC_PAYLOAD_SLICES_MAX (2 * RPC_PAYLOAD_BUFFERS + 1)
#define RPC_PAYLOAD_STAGE_MIN 64

typedef struct {
  rpc_payload_pool_t *pool;
  uint8_t *data;
  size_t cap;
  bool lent;     /* handed to the current step */
  size_t slices; /* slices of it that gRPC still holds */
} payload_buf_t;

struct rpc_payload_pool {
  pthread_mutex_t mu;
  size_t refs; /* the call's, plus one per slice gRPC holds */
  payload_buf_t bufs[RPC_PAYLOAD_BUFFERS];
};

rpc_payload_pool_t *rpc_payload_pool_new(void) {
  rpc_payload_pool_t *pool = calloc(1, sizeof *pool);
  if (!pool)
    return NULL;
  pthread_mutex_init(&pool->mu, NULL);
  pool->refs = 1;
  for (size_t i = 0; i < RPC_PAYLOAD_BUFFERS; i++)
    pool->bufs[i].pool = pool;
  return pool;
}

static void pool_free(rpc_payload_pool_t *pool) {
  for (size_t i = 0; i < RPC_PAYLOAD_BUFFERS; i++)
    free(pool->bufs[i].data);
  pthread_mutex_destroy(&pool->mu);
  free(pool);
}

/* Drops one reference under the lock; frees the pool after the last. */
static void pool_unref_locked(rpc_payload_pool_t *pool) {
  bool last = --pool->refs == 0;
  pthread_mutex_unlock(&pool->mu);
  if (last)
    pool_free(pool);
}

void rpc_payload_pool_release(rpc_payload_pool_t *pool) {
  if (!pool)
    return;
  pthread_mutex_lock(&pool->mu);
  pool_unref_locked(pool);
}

/* gRPC dropped a slice of a lent buffer (any thread). */
static void slice_released(void *user_data) {
  payload_buf_t *b = user_data;
  rpc_payload_pool_t *pool = b->pool;
  pthread_mutex_lock(&pool->mu);
  b->slices--;
  pool_unref_locked(pool);
}

void *rpc_payload_lend(rpc_payload_pool_t *pool, size_t size) {
  payload_buf_t *pick = NULL;
  void *out = NULL;
  pthread_mutex_lock(&pool->mu);
  for (size_t i = 0; i < RPC_PAYLOAD_BUFFERS; i++) {
    payload_buf_t *b = &pool->bufs[i];
    if (b->lent || b->slices > 0)
      continue;
    if (!pick || (b->cap >= size && pick->cap < size))
      pick = b; /* prefer one that needs no growing */
  }
  if (pick && pick->cap < size) {
    /* Grown, never shrunk: a stream keeps asking for the same size. */
    uint8_t *grown = realloc(pick->data, size);
    if (grown) {
      pick->data = grown;
      pick->cap = size;
    }
  }
  if (pick && pick->cap >= size) {
    pick->lent = true;
    out = pick->data;
  }
  pthread_mutex_unlock(&pool->mu);
  return out;
}

bool rpc_payload_lent(rpc_payload_pool_t *pool) {
  bool lent = false;
  pthread_mutex_lock(&pool->mu);
  for (size_t i = 0; i < RPC_PAYLOAD_BUFFERS && !lent; i++)
    lent = pool->bufs[i].lent;
  pthread_mutex_unlock(&pool->mu);
  return lent;
}

void rpc_payload_end_step(rpc_payload_pool_t *pool) {
  if (!pool)
    return;
  pthread_mutex_lock(&pool->mu);
  for (size_t i = 0; i < RPC_PAYLOAD_BUFFERS; i++)
    pool->bufs[i].lent = false;
  pthread_mutex_unlock(&pool->mu);
}

/* ---- packing ------------------------------------------------------------ */

typedef struct {
  ProtobufCBuffer base;
  rpc_payload_pool_t *pool;
  grpc_slice slices[RPC_PAYLOAD_SLICES_MAX];
  size_t n;
  uint8_t *stage; /* copied pieces since the last slice */
  size_t stage_len;
  size_t stage_cap;
  bool failed;
} pack_buf_t;

/* The lent buffer that holds [p, p + len), if any. */
static payload_buf_t *lent_holding(rpc_payload_pool_t *pool, const uint8_t *p, size_t len) {
  for (size_t i = 0; i < RPC_PAYLOAD_BUFFERS; i++) {
    payload_buf_t *b = &pool->bufs[i];
    if (b->lent && p >= b->data && len <= b->cap && (size_t)(p - b->data) <= b->cap - len)
      return b;
  }
  return NULL;
}

static void flush_stage(pack_buf_t *pb) {
  if (pb->stage_len == 0)
    return;
  pb->slices[pb->n++] = grpc_slice_from_copied_buffer((const char *)pb->stage, pb->stage_len);
  pb->stage_len = 0;
}

static void stage(pack_buf_t *pb, size_t len, const uint8_t *data) {
  if (pb->stage_cap - pb->stage_len < len) {
    size_t cap = pb->stage_cap ? pb->stage_cap : RPC_PAYLOAD_STAGE_MIN;
    while (cap - pb->stage_len < len)
      cap *= 2;
    uint8_t *grown = realloc(pb->stage, cap);
    if (!grown) {
      pb->failed = true;
      return;
    }
    pb->stage = grown;
    pb->stage_cap = cap;
  }
  memcpy(pb->stage + pb->stage_len, data, len);
  pb->stage_len += len;
}

static void pack_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data) {
  pack_buf_t *pb = (pack_buf_t *)buffer;
  payload_buf_t *b = NULL;
  if (pb->failed || len == 0)
    return;
  /* Room for the staged bytes before and after this slice. */
  if (len >= RPC_PAYLOAD_ZERO_COPY_MIN && pb->n + 2 < RPC_PAYLOAD_SLICES_MAX) {
    pthread_mutex_lock(&pb->pool->mu);
    b = lent_holding(pb->pool, data, len);
    if (b) {
      b->slices++;
      pb->pool->refs++;
    }
    pthread_mutex_unlock(&pb->pool->mu);
  }
  if (!b) {
    stage(pb, len, data);
    return;
  }
  flush_stage(pb);
  pb->slices[pb->n++] = grpc_slice_new_with_user_data((void *)data, len, slice_released, b);
}

grpc_byte_buffer *rpc_payload_pack(rpc_payload_pool_t *pool, const ProtobufCMessage *msg,
                                   size_t size) {
  pack_buf_t pb = {.base.append = pack_append, .pool = pool};
  grpc_byte_buffer *out = NULL;
  size_t packed = protobuf_c_message_pack_to_buffer(msg, &pb.base);
  if (!pb.failed && packed == size) {
    flush_stage(&pb);
    out = grpc_raw_byte_buffer_create(pb.slices, pb.n);
  }
  /* The byte buffer took its own references (or the pack failed). */
  for (size_t i = 0; i < pb.n; i++)
    grpc_slice_unref(pb.slices[i]);
  free(pb.stage);
  return out;
}
