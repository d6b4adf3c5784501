/* queue_gauge: see queue_gauge.h.  One thread sleeping on a condition
 * variable (monotonic clock) so that stop wakes it at once. */
#include "queue_gauge.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "fzip_log.h"
#include "fzip_metrics.h"
#include "fzip_util.h"
#include "import_run.h"
#include "svc_export.h"

#define NS_PER_S 1000000000L
#define NS_PER_MS 1000000L

struct queue_gauge {
  store_t *store;
  pthread_t thread;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping; /* guarded by mu */
};

static bool stopping(queue_gauge_t *g) {
  pthread_mutex_lock(&g->mu);
  bool stop = g->stopping;
  pthread_mutex_unlock(&g->mu);
  return stop;
}

static void refresh(queue_gauge_t *g) {
  static const job_kind_t *const kinds[] = {&export_job_kind, &import_job_kind};
  fzip_error_t err;
  uint64_t n = 0;

  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0] && !stopping(g); i++) {
    const char *labels[] = {kinds[i]->noun};
    if (store_job_count_queued(&n, g->store, kinds[i]->kind, fzip_now_ms(), &err)) {
      fzip_metric_set(FZIP_METRIC_JOBS_QUEUED, labels, (double)n);
      continue;
    }
    fzip_metric_set(FZIP_METRIC_JOBS_QUEUED, labels, NAN); /* unknown, not the last value */
    fzip_log(FZIP_LOG_WARN, "metrics", "cannot count queued jobs", "kind", kinds[i]->noun, "error",
             err.message, NULL);
  }
}

/* Sleeps QUEUE_GAUGE_INTERVAL_MS or until stopped; called with mu held. */
static void wait_interval(queue_gauge_t *g) {
  struct timespec until;

  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += QUEUE_GAUGE_INTERVAL_MS / 1000;
  until.tv_nsec += (long)(QUEUE_GAUGE_INTERVAL_MS % 1000) * NS_PER_MS;
  if (until.tv_nsec >= NS_PER_S) {
    until.tv_sec++;
    until.tv_nsec -= NS_PER_S;
  }
  while (!g->stopping && pthread_cond_timedwait(&g->cv, &g->mu, &until) != ETIMEDOUT) {
  }
}

static void *gauge_main(void *arg) {
  queue_gauge_t *g = arg;

  pthread_mutex_lock(&g->mu);
  while (!g->stopping) {
    pthread_mutex_unlock(&g->mu);
    refresh(g);
    pthread_mutex_lock(&g->mu);
    wait_interval(g);
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

bool queue_gauge_start(queue_gauge_t **out, store_t *store, fzip_error_t *error) {
  queue_gauge_t *g = calloc(1, sizeof *g);
  pthread_condattr_t attr;

  *out = NULL;
  if (!g)
    return fzip_error_oom(error, "queue gauge");
  g->store = store;
  pthread_mutex_init(&g->mu, NULL);
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&g->cv, &attr);
  pthread_condattr_destroy(&attr);
  if (pthread_create(&g->thread, NULL, gauge_main, g) != 0) {
    queue_gauge_destroy(g);
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "cannot start the queue gauge thread");
  }
  g->started = true;
  *out = g;
  return true;
}

void queue_gauge_stop(queue_gauge_t *g) {
  if (!g)
    return;
  pthread_mutex_lock(&g->mu);
  g->stopping = true;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

void queue_gauge_destroy(queue_gauge_t *g) {
  if (!g)
    return;
  queue_gauge_stop(g);
  if (g->started)
    pthread_join(g->thread, NULL);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g);
}
