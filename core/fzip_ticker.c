/* fzip_ticker: see fzip_ticker.h.  The thread holds mu except while it
 * calls fn; `stop` and `woken` are the two reasons to leave the timed
 * wait early, both set under mu and signalled on cv. */
#include "fzip_ticker.h"
#include "fzip_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct fzip_ticker {
  int64_t interval_ms;
  fzip_ticker_first_t first;
  fzip_ticker_fn fn;
  void *arg;
  pthread_t thread;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC */
  bool stop;         /* guarded by mu */
  bool woken;        /* guarded by mu: a wake not yet served */
};

/* Waits one interval, or less if stopped or woken; called with mu held. */
static void wait_interval(fzip_ticker_t *t) {
  struct timespec until = fzip_monotonic_deadline(t->interval_ms);

  while (!t->stop && !t->woken && pthread_cond_timedwait(&t->cv, &t->mu, &until) != ETIMEDOUT) {
  }
}

static void *ticker_main(void *arg) {
  fzip_ticker_t *t = arg;

  pthread_mutex_lock(&t->mu);
  if (t->first == FZIP_TICKER_FIRST_AFTER_INTERVAL)
    wait_interval(t);
  while (!t->stop) {
    t->woken = false;
    pthread_mutex_unlock(&t->mu);
    t->fn(t, t->arg);
    pthread_mutex_lock(&t->mu);
    wait_interval(t);
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

bool fzip_ticker_new(fzip_ticker_t **out, int64_t interval_ms, fzip_ticker_first_t first,
                     fzip_ticker_fn fn, void *arg, fzip_error_t *error) {
  fzip_ticker_t *t = NULL;

  *out = NULL;
  if (interval_ms <= 0 || !fn)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT,
                          "ticker needs a function and a positive interval, got %lld ms",
                          (long long)interval_ms);
  t = calloc(1, sizeof *t);
  if (!t)
    return fzip_error_oom(error, "ticker");
  t->interval_ms = interval_ms;
  t->first = first;
  t->fn = fn;
  t->arg = arg;
  pthread_mutex_init(&t->mu, NULL);
  fzip_cond_init_monotonic(&t->cv);
  if (pthread_create(&t->thread, NULL, ticker_main, t) != 0) {
    fzip_ticker_destroy(t);
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "cannot start a ticker thread");
  }
  t->started = true;
  *out = t;
  return true;
}

void fzip_ticker_wake(fzip_ticker_t *t) {
  pthread_mutex_lock(&t->mu);
  t->woken = true;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

void fzip_ticker_stop(fzip_ticker_t *t) {
  if (!t)
    return;
  pthread_mutex_lock(&t->mu);
  t->stop = true;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

bool fzip_ticker_stopping(fzip_ticker_t *t) {
  bool stop;

  pthread_mutex_lock(&t->mu);
  stop = t->stop;
  pthread_mutex_unlock(&t->mu);
  return stop;
}

void fzip_ticker_destroy(fzip_ticker_t *t) {
  if (!t)
    return;
  fzip_ticker_stop(t);
  if (t->started)
    pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
}
