/* queue_gauge: see queue_gauge.h.  A ticker (fzip_ticker.h) runs the
 * refreshes, so that stop wakes it at once. */
#include "queue_gauge.h"

#include <math.h>
#include <stdlib.h>

#include "fzip_log.h"
#include "fzip_metrics.h"
#include "fzip_ticker.h"
#include "fzip_util.h"
#include "import_run.h"
#include "svc_export.h"

struct queue_gauge {
  store_t *store;
  fzip_ticker_t *ticker;
};

/* A stop between two kinds skips the rest: each count can take the
 * store's whole retry budget while it is down. */
static void refresh(fzip_ticker_t *ticker, void *arg) {
  queue_gauge_t *g = arg;
  static const job_kind_t *const kinds[] = {&export_job_kind, &import_job_kind};
  fzip_error_t err;
  uint64_t n = 0;

  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0] && !fzip_ticker_stopping(ticker); i++) {
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

bool queue_gauge_start(queue_gauge_t **out, store_t *store, fzip_error_t *error) {
  queue_gauge_t *g = calloc(1, sizeof *g);

  *out = NULL;
  if (!g)
    return fzip_error_oom(error, "queue gauge");
  g->store = store;
  if (fzip_ticker_new(&g->ticker, QUEUE_GAUGE_INTERVAL_MS, FZIP_TICKER_FIRST_NOW, refresh, g,
                      error)) {
    *out = g;
    return true;
  }
  free(g); /* no ticker: fzip_ticker_new never called refresh */
  return false;
}

void queue_gauge_stop(queue_gauge_t *g) {
  if (!g)
    return;
  fzip_ticker_stop(g->ticker);
}

void queue_gauge_destroy(queue_gauge_t *g) {
  if (!g)
    return;
  fzip_ticker_destroy(g->ticker);
  free(g);
}
