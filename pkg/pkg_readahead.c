/*
 * pkg_readahead: see pkg_readahead.h.
 *
 * A ring of blocks: [head, head + count) are full and the reader's, the
 * one at head + count is being filled by the thread (not counted yet, so
 * the reader never looks at it), the rest are free.  A block is handed
 * over whole: full, or shorter when the function ended, failed, or the
 * thread was asked to stop; `last` marks the block after which the thread
 * reads nothing more.  The reader copies out of a block without the lock:
 * the thread does not touch counted blocks.
 */
#include "pkg_readahead.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t *data;
  size_t len;
  bool last;   /* nothing follows: the function's end, or its error */
  bool failed; /* the function failed after these bytes: error */
  fzip_error_t error;
} block_t;

struct pkgra {
  pthread_mutex_t mu;
  pthread_cond_t filled; /* a block was counted, or the thread ended */
  pthread_cond_t freed;  /* a block was given back, or stop */
  pkgjr_read_fn read;
  void *ctx;
  size_t block, n_blocks;
  block_t *ring;
  size_t head, count;
  size_t at;       /* bytes of ring[head] already given out */
  bool stop;       /* asked to stop */
  bool running;    /* the thread has not ended */
  bool joined;     /* read and ctx are the caller's */
  bool ended;      /* the reader reached the end */
  bool failed;     /* the reader reached an error: error */
  fzip_error_t error;
  pthread_t thread;
};

static bool stop_asked(pkgra_t *ra) {
  bool stop;
  pthread_mutex_lock(&ra->mu);
  stop = ra->stop;
  pthread_mutex_unlock(&ra->mu);
  return stop;
}

/* Fills b until it is full, the function ends or fails, or a stop. */
static void fill(pkgra_t *ra, block_t *b) {
  b->len = 0;
  b->last = b->failed = false;
  while (b->len < ra->block) {
    size_t n = 0;
    fzip_error_clear(&b->error);
    if (!ra->read(ra->ctx, b->data + b->len, ra->block - b->len, &n, &b->error)) {
      b->failed = b->last = true;
      return;
    }
    if (n == 0) {
      b->last = true;
      return;
    }
    b->len += n;
    if (stop_asked(ra))
      return;
  }
}

static void *run(void *arg) {
  pkgra_t *ra = arg;
  pthread_mutex_lock(&ra->mu);
  for (;;) {
    block_t *b;
    while (!ra->stop && ra->count == ra->n_blocks)
      pthread_cond_wait(&ra->freed, &ra->mu);
    if (ra->stop)
      break;
    b = &ra->ring[(ra->head + ra->count) % ra->n_blocks];
    pthread_mutex_unlock(&ra->mu);
    fill(ra, b);
    pthread_mutex_lock(&ra->mu);
    if (b->len > 0 || b->last) {
      ra->count++;
      pthread_cond_signal(&ra->filled);
    }
    if (b->last)
      break;
  }
  ra->running = false;
  pthread_cond_signal(&ra->filled);
  pthread_mutex_unlock(&ra->mu);
  return NULL;
}

bool pkgra_new(pkgra_t **out, pkgjr_read_fn read, void *ctx, size_t block, size_t blocks,
               fzip_error_t *error) {
  pkgra_t *ra = NULL;

  *out = NULL;
  if (!read || block == 0 || block > PKGRA_BLOCK_MAX || blocks < 2 || blocks > PKGRA_BLOCKS_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "read-ahead: %zu blocks of %zu bytes (want 2..%d of 1..%d)", blocks,
                          block, PKGRA_BLOCKS_MAX, PKGRA_BLOCK_MAX);
  if (!(ra = calloc(1, sizeof *ra)) || !(ra->ring = calloc(blocks, sizeof *ra->ring)))
    goto oom;
  ra->read = read;
  ra->ctx = ctx;
  ra->block = block;
  ra->n_blocks = blocks;
  for (size_t i = 0; i < blocks; i++) {
    if (!(ra->ring[i].data = malloc(block)))
      goto oom;
  }
  pthread_mutex_init(&ra->mu, NULL);
  pthread_cond_init(&ra->filled, NULL);
  pthread_cond_init(&ra->freed, NULL);
  ra->running = true;
  if (pthread_create(&ra->thread, NULL, run, ra) != 0) {
    ra->running = false;
    ra->joined = true;
    pkgra_destroy(ra);
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "read-ahead: cannot start a thread");
  }
  *out = ra;
  return true;
oom:
  if (ra) {
    for (size_t i = 0; ra->ring && i < blocks; i++)
      free(ra->ring[i].data);
    free(ra->ring);
    free(ra);
  }
  return fzip_error_oom(error, "a read-ahead");
}

/* Gives ring[head] back once it is out; a last block sets ended or
 * failed.  Under the lock. */
static void consumed(pkgra_t *ra) {
  block_t *b = &ra->ring[ra->head];
  if (ra->at < b->len)
    return;
  if (b->failed) {
    ra->failed = true;
    ra->error = b->error;
  } else if (b->last) {
    ra->ended = true;
  }
  ra->head = (ra->head + 1) % ra->n_blocks;
  ra->count--;
  ra->at = 0;
  pthread_cond_signal(&ra->freed);
}

/* After a stop, with nothing read ahead left: the function, here. */
static bool read_here(pkgra_t *ra, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  if (!ra->read(ra->ctx, buf, cap, n, error)) {
    ra->failed = true;
    ra->error = *error;
    return false;
  }
  ra->ended = *n == 0;
  return true;
}

bool pkgra_read(pkgra_t *ra, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  *n = 0;
  pthread_mutex_lock(&ra->mu);
  for (;;) {
    if (ra->count > 0) {
      block_t *b = &ra->ring[ra->head];
      size_t take = b->len - ra->at < cap ? b->len - ra->at : cap;
      if (take > 0) {
        pthread_mutex_unlock(&ra->mu);
        memcpy(buf, b->data + ra->at, take);
        pthread_mutex_lock(&ra->mu);
        ra->at += take;
        *n = take;
      }
      consumed(ra);
      if (take > 0 || cap == 0)
        break;
      continue;
    }
    if (ra->failed) {
      *error = ra->error;
      pthread_mutex_unlock(&ra->mu);
      return false;
    }
    if (ra->ended || cap == 0)
      break;
    if (!ra->running) {
      pthread_mutex_unlock(&ra->mu);
      pkgra_stop(ra); /* joins a thread that ended on a stop */
      return read_here(ra, buf, cap, n, error);
    }
    pthread_cond_wait(&ra->filled, &ra->mu);
  }
  pthread_mutex_unlock(&ra->mu);
  return true;
}

void pkgra_stop(pkgra_t *ra) {
  if (!ra || ra->joined)
    return;
  pthread_mutex_lock(&ra->mu);
  ra->stop = true;
  pthread_cond_signal(&ra->freed);
  pthread_mutex_unlock(&ra->mu);
  pthread_join(ra->thread, NULL);
  ra->joined = true;
}

void pkgra_destroy(pkgra_t *ra) {
  if (!ra)
    return;
  pkgra_stop(ra);
  for (size_t i = 0; i < ra->n_blocks; i++)
    free(ra->ring[i].data);
  free(ra->ring);
  pthread_mutex_destroy(&ra->mu);
  pthread_cond_destroy(&ra->filled);
  pthread_cond_destroy(&ra->freed);
  free(ra);
}
