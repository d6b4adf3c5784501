/*
 * import_feed: see import_feed.h.
 *
 * A chunk is a run of whole BSON documents of one kind (each its own
 * bytes, the first four saying its length).  Three places hold chunks: the
 * writer's `filling`, the queue of published ones (`ring`), and the
 * reader's `reading`, which it walks without the lock (no one else
 * touches a chunk once it left the queue).  Read chunks of the standard
 * size go back to `spare` for the writer to fill again.  One mutex and
 * one condition cover both directions: the queue is short and both sides
 * wait rarely (once per chunk at most).
 */
#include "import_feed.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_util.h"

#define FEED_WHAT "import feed" /* names the feed in its errors */

typedef struct {
  fzip_kind_t kind;
  size_t len, cap;
  uint8_t data[]; /* cap bytes */
} chunk_t;

struct import_feed {
  pthread_mutex_t mu;
  pthread_cond_t cond; /* a chunk published or read, or closed / halted / abandoned */
  chunk_t *ring[IMPORT_FEED_CHUNKS];
  size_t head, n;                          /* the queue: n chunks from ring[head] */
  chunk_t *spare[IMPORT_FEED_CHUNKS + 2]; /* read chunks of IMPORT_FEED_CHUNK bytes */
  size_t n_spare;
  bool closed, halted, abandoned;
  import_feed_wait_fn waiting;
  void *wait_ctx;
  /* The writer's own. */
  chunk_t *filling;
  int last_kind; /* -1 before the first put */
  bool ended;    /* close or halt was called */
  /* The reader's own. */
  chunk_t *reading;
  size_t pos;
  bson_t doc;
};

bool import_feed_new(import_feed_t **out, import_feed_wait_fn waiting, void *wait_ctx,
                     fzip_error_t *error) {
  import_feed_t *f = NULL;

  *out = NULL;
  /* The struct holds a bson_t, which libbson aligns beyond what calloc
   * promises (UBSan: misaligned member access). */
  if (posix_memalign((void **)&f, _Alignof(import_feed_t), sizeof *f) != 0)
    return fzip_error_oom(error, FEED_WHAT);
  memset(f, 0, sizeof *f);
  f->last_kind = -1;
  f->waiting = waiting;
  f->wait_ctx = wait_ctx;
  if (pthread_mutex_init(&f->mu, NULL) != 0) {
    free(f);
    return fzip_error_oom(error, FEED_WHAT);
  }
  if (fzip_cond_init_monotonic(&f->cond) != 0) { /* the waits' deadlines are monotonic */
    pthread_mutex_destroy(&f->mu);
    free(f);
    return fzip_error_oom(error, FEED_WHAT);
  }
  *out = f;
  return true;
}

void import_feed_destroy(import_feed_t *f) {
  if (!f)
    return;
  for (size_t i = 0; i < f->n; i++)
    free(f->ring[(f->head + i) % IMPORT_FEED_CHUNKS]);
  for (size_t i = 0; i < f->n_spare; i++)
    free(f->spare[i]);
  free(f->filling);
  free(f->reading);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->mu);
  free(f);
}

/* ---- the writer ---------------------------------------------------------- */

/* A chunk with room for `need` bytes: a spare one if it is big enough. */
static chunk_t *chunk_get(import_feed_t *f, fzip_kind_t kind, size_t need) {
  chunk_t *c = NULL;
  size_t cap = need > IMPORT_FEED_CHUNK ? need : IMPORT_FEED_CHUNK;

  if (cap == IMPORT_FEED_CHUNK) {
    pthread_mutex_lock(&f->mu);
    if (f->n_spare > 0)
      c = f->spare[--f->n_spare];
    pthread_mutex_unlock(&f->mu);
  }
  if (!c && (c = malloc(sizeof *c + cap)) != NULL)
    c->cap = cap;
  if (c) {
    c->kind = kind;
    c->len = 0;
  }
  return c;
}

/* Waits (the lock held) for the reader until `deadline`, then, unlocked,
 * asks the wait function whether to go on; false: give up. */
static bool wait_reader(import_feed_t *f, struct timespec *deadline) {
  bool go_on;

  if (!f->waiting) {
    pthread_cond_wait(&f->cond, &f->mu);
    return true;
  }
  if (pthread_cond_timedwait(&f->cond, &f->mu, deadline) != ETIMEDOUT)
    return true;
  pthread_mutex_unlock(&f->mu);
  go_on = f->waiting(f->wait_ctx);
  pthread_mutex_lock(&f->mu);
  *deadline = fzip_monotonic_deadline(IMPORT_FEED_TICK_MS);
  return go_on;
}

/* Puts `filling` on the queue, waiting for room; dropped if abandoned.
 * False (CANCELLED) when the wait function gave up. */
static bool publish(import_feed_t *f, fzip_error_t *error) {
  chunk_t *c = f->filling;
  struct timespec deadline;

  f->filling = NULL;
  if (!c)
    return true;
  deadline = fzip_monotonic_deadline(IMPORT_FEED_TICK_MS);
  pthread_mutex_lock(&f->mu);
  while (f->n == IMPORT_FEED_CHUNKS && !f->abandoned) {
    if (!wait_reader(f, &deadline)) {
      pthread_mutex_unlock(&f->mu);
      free(c);
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_CANCELLED,
                            FEED_WHAT ": stopped while waiting for the restore");
    }
  }
  if (f->abandoned) {
    pthread_mutex_unlock(&f->mu);
    free(c);
    return true;
  }
  f->ring[(f->head + f->n) % IMPORT_FEED_CHUNKS] = c;
  f->n++;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mu);
  return true;
}

bool import_feed_abandoned(import_feed_t *f) {
  bool a;
  pthread_mutex_lock(&f->mu);
  a = f->abandoned;
  pthread_mutex_unlock(&f->mu);
  return a;
}

bool import_feed_put(import_feed_t *f, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error) {
  if (f->ended || (unsigned)kind >= FZIP_KIND_COUNT || (int)kind < f->last_kind)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          FEED_WHAT ": %s put after %s",
                          (unsigned)kind < FZIP_KIND_COUNT ? fzip_kind_info(kind)->name : "?",
                          f->ended ? "its end" : "a later kind");
  f->last_kind = (int)kind;
  if (f->filling && (f->filling->kind != kind || f->filling->len + doc->len > f->filling->cap) &&
      !publish(f, error))
    return false;
  /* Checked once per chunk: a put between the reader's failure and the
   * next publish copies a document that is then dropped with its chunk. */
  if (!f->filling && import_feed_abandoned(f))
    return true;
  if (!f->filling && !(f->filling = chunk_get(f, kind, doc->len)))
    return fzip_error_oom(error, FEED_WHAT);
  memcpy(f->filling->data + f->filling->len, bson_get_data(doc), doc->len);
  f->filling->len += doc->len;
  return true;
}

/* A halt after a close still stops the reader: the validation closes the
 * feed when the package passed, and a cancel may come after. */
static bool end(import_feed_t *f, bool halt, fzip_error_t *error) {
  bool ok = true;

  if (!f->ended) {
    f->ended = true;
    if (!halt && !publish(f, error))
      ok = false, halt = true;
  }
  free(f->filling); /* a halt drops what was not published */
  f->filling = NULL;
  pthread_mutex_lock(&f->mu);
  f->closed = true;
  f->halted = f->halted || halt;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mu);
  return ok;
}

bool import_feed_close(import_feed_t *f, fzip_error_t *error) { return end(f, false, error); }

void import_feed_halt(import_feed_t *f) { end(f, true, NULL); }

/* ---- the reader ---------------------------------------------------------- */

/* Ends the reader's chunk (kept as a spare if it is of the standard size)
 * and waits for the next one; false when the feed ended first (or was
 * halted: *halted). */
static bool next_chunk(import_feed_t *f, bool *halted) {
  chunk_t *done = f->reading;

  f->reading = NULL;
  f->pos = 0;
  pthread_mutex_lock(&f->mu);
  if (done && done->cap == IMPORT_FEED_CHUNK && f->n_spare < sizeof f->spare / sizeof f->spare[0])
    f->spare[f->n_spare++] = done;
  else
    free(done);
  while (f->n == 0 && !f->closed)
    pthread_cond_wait(&f->cond, &f->mu);
  *halted = f->halted;
  if (f->n > 0 && !f->halted) {
    f->reading = f->ring[f->head];
    f->head = (f->head + 1) % IMPORT_FEED_CHUNKS;
    f->n--;
    pthread_cond_broadcast(&f->cond); /* room for the writer */
  }
  pthread_mutex_unlock(&f->mu);
  return f->reading != NULL;
}

/* The one error a halt gives the reader, from next and from halted. */
static bool halted_error(fzip_error_t *error) {
  return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                        FEED_WHAT ": the validation stopped the restore");
}

bool import_feed_next(import_feed_t *f, fzip_kind_t kind, const bson_t **doc,
                      fzip_error_t *error) {
  bool halted = false;
  uint32_t len;

  *doc = NULL;
  for (;;) {
    if (f->reading && f->pos < f->reading->len) {
      if (f->reading->kind > kind)
        return false; /* the kind's end: the chunk waits for its own kind */
      if (f->reading->kind == kind)
        break;
    }
    if (!next_chunk(f, &halted)) {
      if (halted)
        halted_error(error);
      return false;
    }
  }
  /* Whole documents the writer copied from valid bson_t's. */
  memcpy(&len, f->reading->data + f->pos, sizeof len);
  len = BSON_UINT32_FROM_LE(len);
  if (!bson_init_static(&f->doc, f->reading->data + f->pos, len))
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                          FEED_WHAT ": a broken document");
  f->pos += len;
  *doc = &f->doc;
  return true;
}

bool import_feed_ready(import_feed_t *f) {
  bool ready;

  if (f->reading && f->pos < f->reading->len)
    return true;
  pthread_mutex_lock(&f->mu);
  ready = f->n > 0 || f->closed;
  pthread_mutex_unlock(&f->mu);
  return ready;
}

void import_feed_abandon(import_feed_t *f) {
  pthread_mutex_lock(&f->mu);
  f->abandoned = true;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mu);
}

bool import_feed_halted(import_feed_t *f, fzip_error_t *error) {
  bool h;
  pthread_mutex_lock(&f->mu);
  h = f->halted;
  pthread_mutex_unlock(&f->mu);
  if (h)
    halted_error(error);
  return h;
}
