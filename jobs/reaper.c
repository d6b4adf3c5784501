/* reaper: see reaper.h.  One thread sleeping on a condition variable so
 * that destroy wakes it at once. */
#include "reaper.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fzip_log.h"
#include "fzip_util.h"
#include "tempdir.h"

#define DEFAULT_INTERVAL_MS 60000
#define DEFAULT_UNCOMMITTED_AGE_MS (24LL * 3600 * 1000)

struct reaper {
  store_t *store;
  reaper_options_t opts;
  pthread_t thread;
  bool started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping; /* guarded by mu */
};

/* Dispatches to the hook of the job's kind. */
static bool kind_hook(void *ctx, store_job_t *job, int64_t now_ms, bool *handled,
                      fzip_error_t *error) {
  reaper_t *r = ctx;
  unsigned k = (unsigned)job->kind;

  *handled = false;
  if (k >= JOB_KIND_COUNT || !r->opts.hooks[k])
    return true;
  return r->opts.hooks[k](r->opts.hook_ctx[k], job, now_ms, handled, error);
}

/* Temp files of crashed processes (possibly other replicas sharing the
 * temp dir): a failure only costs a log line, the store pass still runs. */
static void sweep_temp(reaper_t *r) {
  tempdir_sweep_stats_t ts;
  fzip_error_t err;

  if (!r->opts.temp_root)
    return;
  if (!tempdir_sweep(&ts, r->opts.temp_root, TEMPDIR_LEGACY_AGE_MS, &err))
    fzip_log(FZIP_LOG_WARN, "reaper", "temp dir sweep failed", "error", err.message, NULL);
}

bool reaper_run_once(reaper_t *r, store_reap_stats_t *stats, fzip_error_t *error) {
  sweep_temp(r);
  return store_reap(stats, r->store, fzip_now_ms(), r->opts.uncommitted_age_ms, kind_hook, r,
                    error);
}

static void *reaper_main(void *arg) {
  reaper_t *r = arg;

  pthread_mutex_lock(&r->mu);
  while (!r->stopping) {
    store_reap_stats_t stats = {0};
    fzip_error_t err;
    struct timespec deadline;

    pthread_mutex_unlock(&r->mu);
    if (!reaper_run_once(r, &stats, &err))
      fzip_log(FZIP_LOG_WARN, "reaper", "reaper pass failed; retrying next interval", "error",
               err.message, NULL);
    else if (stats.jobs || stats.package_blobs || stats.uncommitted_blobs || stats.hooked) {
      const fzip_log_field_t f[] = {
          fzip_log_int("jobs", (int64_t)stats.jobs),
          fzip_log_int("packages", (int64_t)stats.package_blobs),
          fzip_log_int("uncommitted", (int64_t)stats.uncommitted_blobs),
          fzip_log_int("expired", (int64_t)stats.hooked),
      };
      fzip_log_fields(FZIP_LOG_INFO, "reaper", "reaped", f, FZIP_LOG_COUNT(f));
    }
    pthread_mutex_lock(&r->mu);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)(r->opts.interval_ms / 1000);
    deadline.tv_nsec += (long)(r->opts.interval_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
    while (!r->stopping && pthread_cond_timedwait(&r->cv, &r->mu, &deadline) != ETIMEDOUT) {
    }
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

bool reaper_new(reaper_t **out, store_t *store, const reaper_options_t *options,
                fzip_error_t *error) {
  reaper_t *r = calloc(1, sizeof *r);

  *out = NULL;
  if (!r)
    return fzip_error_oom(error, NULL);
  r->store = store;
  if (options)
    r->opts = *options;
  if (r->opts.interval_ms <= 0)
    r->opts.interval_ms = DEFAULT_INTERVAL_MS;
  if (r->opts.uncommitted_age_ms <= 0)
    r->opts.uncommitted_age_ms = DEFAULT_UNCOMMITTED_AGE_MS;
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  if (pthread_create(&r->thread, NULL, reaper_main, r) != 0) {
    reaper_destroy(r);
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "cannot start the reaper thread");
  }
  r->started = true;
  *out = r;
  return true;
}

void reaper_destroy(reaper_t *r) {
  if (!r)
    return;
  pthread_mutex_lock(&r->mu);
  r->stopping = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  if (r->started)
    pthread_join(r->thread, NULL);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
}
