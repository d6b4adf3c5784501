/*
 * queue_gauge: keeps fzip_jobs_queued{kind} (fzip_metrics.h) current from
 * a background thread, so that a scrape only renders and never waits on
 * the store.  Queue depth is read from the store rather than kept by the
 * runners: jobs are created and claimed on every replica, so no process
 * could count them alone, and one count over the claim index is cheap.
 * Every replica reports the same store-wide value (alert on max()).
 *
 * A count that fails (store unreachable: it can take the store's whole
 * retry budget) sets the kind's sample to NaN instead of keeping the last
 * value, so an outage never reads as a steady queue (docs/DEPLOY.md).
 */
#ifndef QUEUE_GAUGE_H
#define QUEUE_GAUGE_H

#include <stdbool.h>

#include "fzip_error.h"
#include "store.h"

#define QUEUE_GAUGE_INTERVAL_MS 5000 /* between two refreshes; a scrape sees a value this old */

typedef struct queue_gauge queue_gauge_t;

/* Starts the thread; the first refresh happens at once.  `store` is
 * borrowed and must outlive the gauge. */
bool queue_gauge_start(queue_gauge_t **out, store_t *store, fzip_error_t *error);
/* Asks the thread to stop without waiting (it ends after a count in
 * progress), so that stopping can overlap other shutdown work; accepts NULL. */
void queue_gauge_stop(queue_gauge_t *gauge);
/* Stops, joins and frees; accepts NULL. */
void queue_gauge_destroy(queue_gauge_t *gauge);

#endif
