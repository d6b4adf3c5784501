/*
 * pkg_deflate: see pkg_deflate.h.
 *
 * A stream is a ring of PKG_DEFLATE_IN_FLIGHT slots, oldest first: the
 * newest may be filling (the writer copies input into it), the others are
 * queued on the pool, being compressed, or done and waiting to be written
 * out in order.  A full block is submitted only when more input arrives,
 * so the last block is known when _finish comes and gets Z_FINISH.  The
 * last block is compressed on the writer's thread (it would only wait
 * otherwise), which also spares a single-block entry (a small file, the
 * manifest) the round trip through the queue.
 */
#include "pkg_deflate.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define DEFLATE_WINDOW_BITS (-15) /* raw deflate, 32 KiB window: zip method 8 */
#define DEFLATE_MEM_LEVEL 8       /* zlib's default */

typedef enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_QUEUED, SLOT_DONE } slot_state_t;

typedef struct slot {
  unsigned char *in, *dict, *out;
  size_t in_len, dict_len, out_len;
  bool final;
  bool failed;         /* zlib refused; set with state DONE */
  uint32_t crc;
  slot_state_t state;  /* QUEUED -> DONE under the pool's mutex */
  struct slot *next;   /* the pool's queue */
} slot_t;

struct pkg_deflate_pool {
  pthread_mutex_t mu;
  pthread_cond_t work; /* a block was queued, or stop */
  pthread_cond_t done; /* a block was compressed */
  slot_t *head, *tail;
  bool stop;
  int level;
  size_t out_cap; /* output buffer of one block: deflateBound + slack */
  unsigned n_threads;
  pthread_t threads[PKG_DEFLATE_THREADS_MAX];
};

struct pkg_deflate {
  pkg_deflate_pool_t *pool;
  slot_t slots[PKG_DEFLATE_IN_FLIGHT];
  size_t first, count; /* slots in use: first .. first+count-1 (mod), oldest first */
  unsigned char dict[PKG_DEFLATE_DICT];
  size_t dict_len;
  z_stream own; /* the writer thread's, for blocks compressed in place */
  bool own_ready;
  pkgjson_sink_fn sink;
  void *sink_ctx;
  uint32_t crc;
  uint64_t size, comp_size;
  bool ended; /* pkg_deflate_end_input queued the last block */
};

static bool zerr(fzip_error_t *error, const char *what) {
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INTERNAL, "deflate: %s", what);
}

static bool zs_init(z_stream *zs, int level) {
  memset(zs, 0, sizeof *zs);
  return deflateInit2(zs, level, Z_DEFLATED, DEFLATE_WINDOW_BITS, DEFLATE_MEM_LEVEL,
                      Z_DEFAULT_STRATEGY) == Z_OK;
}

/* One block, a pure function of its input, dictionary and finality. */
static bool compress_block(z_stream *zs, slot_t *s, size_t out_cap) {
  int rc;

  if (deflateReset(zs) != Z_OK)
    return false;
  if (s->dict_len && deflateSetDictionary(zs, s->dict, (uInt)s->dict_len) != Z_OK)
    return false;
  zs->next_in = s->in;
  zs->avail_in = (uInt)s->in_len;
  zs->next_out = s->out;
  zs->avail_out = (uInt)out_cap;
  rc = deflate(zs, s->final ? Z_FINISH : Z_SYNC_FLUSH);
  /* avail_out == 0 after a sync flush could mean output is pending: the
   * buffer is sized so that it never happens, and if it did the block
   * would be cut, so it is an error. */
  if (s->final ? rc != Z_STREAM_END : (rc != Z_OK || zs->avail_in != 0 || zs->avail_out == 0))
    return false;
  s->out_len = out_cap - zs->avail_out;
  s->crc = (uint32_t)crc32(0L, s->in, (uInt)s->in_len);
  return true;
}

/* ---- the pool --------------------------------------------------------- */

/* The oldest queued block, taken off the queue, or NULL; under p->mu. */
static slot_t *pool_pop(pkg_deflate_pool_t *p) {
  slot_t *s = p->head;
  if (s) {
    p->head = s->next;
    if (!p->head)
      p->tail = NULL;
  }
  return s;
}

/* Compresses s (popped) with zs and marks it done: entered and left with
 * p->mu held, released while compressing. */
static void compress_popped(pkg_deflate_pool_t *p, z_stream *zs, bool ready, slot_t *s) {
  bool ok;
  pthread_mutex_unlock(&p->mu);
  ok = ready && compress_block(zs, s, p->out_cap);
  pthread_mutex_lock(&p->mu);
  s->failed = !ok;
  s->state = SLOT_DONE;
  pthread_cond_broadcast(&p->done);
}

static void *worker_main(void *arg) {
  pkg_deflate_pool_t *p = arg;
  z_stream zs;
  bool ready = zs_init(&zs, p->level);

  pthread_mutex_lock(&p->mu);
  for (;;) {
    slot_t *s;
    while (!p->head && !p->stop)
      pthread_cond_wait(&p->work, &p->mu);
    if (!(s = pool_pop(p)))
      break;
    compress_popped(p, &zs, ready, s);
  }
  pthread_mutex_unlock(&p->mu);
  if (ready)
    deflateEnd(&zs);
  return NULL;
}

unsigned pkg_deflate_threads_auto(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1)
    return 1;
  return n > PKG_DEFLATE_THREADS_MAX ? PKG_DEFLATE_THREADS_MAX : (unsigned)n;
}

static bool out_cap_for(size_t *cap, int level) {
  z_stream zs;
  if (!zs_init(&zs, level))
    return false;
  *cap = (size_t)deflateBound(&zs, PKG_DEFLATE_BLOCK) + PKG_DEFLATE_FLUSH_SLACK;
  deflateEnd(&zs);
  return true;
}

static void pool_stop(pkg_deflate_pool_t *p) {
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  for (unsigned i = 0; i < p->n_threads; i++)
    pthread_join(p->threads[i], NULL);
  p->n_threads = 0;
}

bool pkg_deflate_pool_new(pkg_deflate_pool_t **out, unsigned threads, int level,
                          fzip_error_t *error) {
  pkg_deflate_pool_t *p;

  *out = NULL;
  if (threads == 0)
    threads = pkg_deflate_threads_auto();
  if (threads > PKG_DEFLATE_THREADS_MAX || level < 0 || level > 9)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "deflate: %u threads (at most PKG_DEFLATE_THREADS_MAX %d), level %d",
                          threads, PKG_DEFLATE_THREADS_MAX, level);
  if (!(p = calloc(1, sizeof *p)))
    return fzip_error_oom(error, "deflate pool");
  p->level = level;
  if (!out_cap_for(&p->out_cap, level)) {
    free(p);
    return zerr(error, "deflateInit2");
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->done, NULL);
  /* The writer is one of the `threads` (it compresses while it waits,
   * wait_done), so one thread means no worker at all. */
  for (unsigned i = 0; i + 1 < threads; i++) {
    if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
      pkg_deflate_pool_destroy(p);
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                            "deflate: starting worker thread %u failed", i);
    }
    p->n_threads++;
  }
  *out = p;
  return true;
}

void pkg_deflate_pool_destroy(pkg_deflate_pool_t *p) {
  if (!p)
    return;
  pool_stop(p);
  pthread_cond_destroy(&p->done);
  pthread_cond_destroy(&p->work);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

/* ---- a stream --------------------------------------------------------- */

bool pkg_deflate_new(pkg_deflate_t **out, pkg_deflate_pool_t *pool, fzip_error_t *error) {
  pkg_deflate_t *z = calloc(1, sizeof *z);
  *out = NULL;
  if (!z)
    return fzip_error_oom(error, "deflate stream");
  z->pool = pool;
  *out = z;
  return true;
}

static slot_t *slot_at(pkg_deflate_t *z, size_t i) {
  return &z->slots[(z->first + i) % PKG_DEFLATE_IN_FLIGHT];
}

/* Waits for s to be compressed, compressing queued blocks (s itself or
 * any other, of any stream) on this thread meanwhile.  The writer is thus
 * one of the pool's threads, and a pool has one worker fewer than the
 * threads it was asked for: with as many workers as cores, three threads
 * shared two cores, the worker holding the oldest block was often the one
 * descheduled, and the writer and the other worker then waited for it
 * (the export's data phase used 1.8 of 2 cores: writer 0.52, workers 0.63
 * each; with one worker and the writer helping, 1.97;
 * docs/BENCHMARKS.md, run W). */
static void wait_done(pkg_deflate_t *z, slot_t *s) {
  pkg_deflate_pool_t *p = z->pool;
  pthread_mutex_lock(&p->mu);
  while (s->state == SLOT_QUEUED) {
    slot_t *q = pool_pop(p);
    if (!q) {
      pthread_cond_wait(&p->done, &p->mu);
      continue;
    }
    if (!z->own_ready)
      z->own_ready = zs_init(&z->own, p->level);
    compress_popped(p, &z->own, z->own_ready, q);
  }
  pthread_mutex_unlock(&p->mu);
}

/* Drops every pending block (after a failure): none may stay queued on
 * the pool once the caller's entry is gone. */
static void discard(pkg_deflate_t *z) {
  for (size_t i = 0; i < z->count; i++) {
    slot_t *s = slot_at(z, i);
    wait_done(z, s);
    s->state = SLOT_FREE;
  }
  z->first = z->count = 0;
  z->ended = false;
}

void pkg_deflate_destroy(pkg_deflate_t *z) {
  if (!z)
    return;
  discard(z);
  for (size_t i = 0; i < PKG_DEFLATE_IN_FLIGHT; i++) {
    free(z->slots[i].in);
    free(z->slots[i].dict);
    free(z->slots[i].out);
  }
  if (z->own_ready)
    deflateEnd(&z->own);
  free(z);
}

void pkg_deflate_begin(pkg_deflate_t *z, pkgjson_sink_fn sink, void *sink_ctx) {
  discard(z);
  z->sink = sink;
  z->sink_ctx = sink_ctx;
  z->dict_len = 0;
  z->crc = (uint32_t)crc32(0L, Z_NULL, 0);
  z->size = z->comp_size = 0;
  z->ended = false;
}

/* Writes the oldest slot's output once it is compressed, and frees it. */
static bool retire_oldest(pkg_deflate_t *z, fzip_error_t *error) {
  slot_t *s = slot_at(z, 0);

  wait_done(z, s);
  if (s->failed)
    return zerr(error, "compressing a block failed");
  if (!z->sink(z->sink_ctx, s->out, s->out_len, error))
    return false;
  z->crc = (uint32_t)crc32_combine(z->crc, s->crc, (z_off_t)s->in_len);
  z->comp_size += s->out_len;
  s->state = SLOT_FREE;
  z->first = (z->first + 1) % PKG_DEFLATE_IN_FLIGHT;
  z->count--;
  return true;
}

/* A slot to fill: the ring's next, retiring the oldest when it is full. */
static bool acquire(slot_t **out, pkg_deflate_t *z, fzip_error_t *error) {
  slot_t *s;

  if (z->count == PKG_DEFLATE_IN_FLIGHT && !retire_oldest(z, error))
    return false;
  s = slot_at(z, z->count);
  /* Each buffer on its own: after a partial failure the stream may be
   * begun again (pkg_deflate.h) and reuse this slot. */
  if (!s->in)
    s->in = malloc(PKG_DEFLATE_BLOCK);
  if (!s->dict)
    s->dict = malloc(PKG_DEFLATE_DICT);
  if (!s->out)
    s->out = malloc(z->pool->out_cap);
  if (!s->in || !s->dict || !s->out)
    return fzip_error_oom(error, "deflate block");
  s->in_len = 0;
  s->state = SLOT_FILLING;
  z->count++;
  *out = s;
  return true;
}

/* The last PKG_DEFLATE_DICT bytes of input so far: the next block's
 * dictionary. */
static void dict_push(pkg_deflate_t *z, const unsigned char *in, size_t len) {
  if (len >= PKG_DEFLATE_DICT) {
    memcpy(z->dict, in + len - PKG_DEFLATE_DICT, PKG_DEFLATE_DICT);
    z->dict_len = PKG_DEFLATE_DICT;
    return;
  }
  if (z->dict_len + len > PKG_DEFLATE_DICT) {
    size_t drop = z->dict_len + len - PKG_DEFLATE_DICT;
    memmove(z->dict, z->dict + drop, z->dict_len - drop);
    z->dict_len -= drop;
  }
  memcpy(z->dict + z->dict_len, in, len);
  z->dict_len += len;
}

/* Queues s for the pool, or compresses it here when `in_place` (the
 * caller would only wait for it) or there is no worker. */
static bool submit(pkg_deflate_t *z, slot_t *s, bool final, bool in_place, fzip_error_t *error) {
  pkg_deflate_pool_t *p = z->pool;

  memcpy(s->dict, z->dict, z->dict_len);
  s->dict_len = z->dict_len;
  s->final = final;
  dict_push(z, s->in, s->in_len);
  if (in_place || p->n_threads == 0) {
    if (!z->own_ready && !(z->own_ready = zs_init(&z->own, p->level)))
      return zerr(error, "deflateInit2");
    s->failed = !compress_block(&z->own, s, p->out_cap);
    s->state = SLOT_DONE;
    return true;
  }
  pthread_mutex_lock(&p->mu);
  s->state = SLOT_QUEUED;
  s->next = NULL;
  if (p->tail)
    p->tail->next = s;
  else
    p->head = s;
  p->tail = s;
  pthread_cond_signal(&p->work);
  pthread_mutex_unlock(&p->mu);
  return true;
}

static slot_t *filling(pkg_deflate_t *z) {
  slot_t *s = z->count ? slot_at(z, z->count - 1) : NULL;
  return s && s->state == SLOT_FILLING ? s : NULL;
}

static bool write_some(pkg_deflate_t *z, const unsigned char *data, size_t len,
                       fzip_error_t *error) {
  while (len > 0) {
    slot_t *s = filling(z);
    size_t n;
    if (s && s->in_len == PKG_DEFLATE_BLOCK) {
      if (!submit(z, s, false, false, error))
        return false;
      s = NULL;
    }
    if (!s && !acquire(&s, z, error))
      return false;
    n = PKG_DEFLATE_BLOCK - s->in_len;
    n = n < len ? n : len;
    memcpy(s->in + s->in_len, data, n);
    s->in_len += n;
    z->size += n;
    data += n;
    len -= n;
  }
  return true;
}

bool pkg_deflate_write(pkg_deflate_t *z, const void *data, size_t len, fzip_error_t *error) {
  if (write_some(z, data, len, error))
    return true;
  discard(z);
  return false;
}

/* The last block: on the pool when the caller goes on with other work
 * meanwhile (end_input), here when it is about to wait (finish). */
static bool submit_last(pkg_deflate_t *z, bool in_place, fzip_error_t *error) {
  slot_t *s = filling(z);

  if ((!s && !acquire(&s, z, error)) || !submit(z, s, true, in_place, error))
    return false;
  z->ended = true;
  return true;
}

bool pkg_deflate_end_input(pkg_deflate_t *z, fzip_error_t *error) {
  if (z->ended)
    return true;
  if (submit_last(z, false, error))
    return true;
  discard(z);
  return false;
}

bool pkg_deflate_finish(pkg_deflate_t *z, uint32_t *crc, uint64_t *size, uint64_t *comp_size,
                        fzip_error_t *error) {
  if (!z->ended && !submit_last(z, true, error))
    goto fail;
  while (z->count > 0) {
    if (!retire_oldest(z, error))
      goto fail;
  }
  *crc = z->crc;
  *size = z->size;
  *comp_size = z->comp_size;
  z->ended = false;
  return true;
fail:
  discard(z);
  return false;
}
