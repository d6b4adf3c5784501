/* reaper: see reaper.h.  A ticker (fzip_ticker.h) runs the passes, so
 * that destroy never waits out an interval. */
#include "reaper.h"

#include <stdio.h>
#include <stdlib.h>

#include "fzip_log.h"
#include "fzip_ticker.h"
#include "fzip_util.h"
#include "tempdir.h"

#define DEFAULT_INTERVAL_MS 60000
#define DEFAULT_UNCOMMITTED_AGE_MS (24LL * 3600 * 1000)

struct reaper {
  store_t *store;
  reaper_options_t opts;
  fzip_ticker_t *ticker;
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

static void reaper_tick(fzip_ticker_t *ticker, void *arg) {
  reaper_t *r = arg;
  store_reap_stats_t stats = {0};
  fzip_error_t err;

  (void)ticker;
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
  if (!fzip_ticker_new(&r->ticker, r->opts.interval_ms, FZIP_TICKER_FIRST_NOW, reaper_tick, r,
                       error)) {
    reaper_destroy(r);
    return false;
  }
  *out = r;
  return true;
}

void reaper_destroy(reaper_t *r) {
  if (!r)
    return;
  fzip_ticker_destroy(r->ticker);
  free(r);
}
