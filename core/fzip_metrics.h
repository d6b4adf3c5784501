/*
 * fzip_metrics: counters, gauges and histograms, rendered in the Prometheus
 * text exposition format 0.0.4 (docs/DEPLOY.md, "Metrics and alerts").
 *
 * A registry is made from a table of metric definitions (name, help, type,
 * label names, histogram buckets) and families are addressed by their
 * index in that table, so recording is a lookup, never a registration:
 *
 *   fzip_metric_add(FZIP_METRIC_RPC_REQUESTS, (const char *[]){path, "OK"}, 1);
 *
 * fzip's own metrics are the table FZIP_METRIC_* below, in one process-wide
 * registry (fzip_metrics_process) that every layer records into and fzipd's
 * HTTP endpoint renders.  Other registries (fzip_metrics_new) are for tests.
 *
 * Cardinality is bounded by construction: callers pass label values from
 * fixed tables only (method paths from the method table, status codes from
 * the code table, job kinds and states from their enums), never user or
 * request ids; and a family holds at most FZIP_METRICS_SERIES_MAX label
 * combinations, past which new ones are dropped (logged once at warn).
 *
 * Threads: every call may come from any thread.  A family has one mutex
 * held for a lookup among its few series and an add, so recording costs a
 * short critical section and no allocation after a series' first sample.
 */
#ifndef FZIP_METRICS_H
#define FZIP_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "fzip_error.h"

#define FZIP_METRICS_LABELS_MAX 2       /* label names per family */
#define FZIP_METRICS_BUCKETS_MAX 16     /* histogram upper bounds, +Inf not counted */
#define FZIP_METRICS_SERIES_MAX 512     /* label combinations per family */
#define FZIP_METRICS_LABEL_VALUE_MAX 128 /* bytes of a label value; longer ones are dropped */
#define FZIP_METRICS_TEXT_MAX (4 * 1024 * 1024) /* bytes of one rendering */

typedef enum {
  FZIP_METRIC_COUNTER = 0,
  FZIP_METRIC_GAUGE,
  FZIP_METRIC_HISTOGRAM
} fzip_metric_type_t;

typedef struct {
  const char *name; /* with its unit and _total for counters: fzip_rpc_requests_total */
  const char *help;
  fzip_metric_type_t type;
  const char *labels[FZIP_METRICS_LABELS_MAX]; /* label names; unused ones NULL */
  const double *buckets;                       /* histograms: ascending upper bounds */
  size_t n_buckets;                            /* at most FZIP_METRICS_BUCKETS_MAX */
} fzip_metric_def_t;

typedef struct fzip_metrics fzip_metrics_t;

/* A registry of n families; `defs` is borrowed and must outlive it (a
 * static table).  INVALID_ARGUMENT for a definition out of the limits. */
bool fzip_metrics_new(fzip_metrics_t **out, const fzip_metric_def_t *defs, size_t n,
                      fzip_error_t *error);
void fzip_metrics_destroy(fzip_metrics_t *m); /* accepts NULL */

/* Recording: `labels` holds one value per label name of the family (NULL
 * when it has none); values are copied.  A NULL registry, an index out of
 * range, a wrong type or a negative add to a counter does nothing: metrics
 * never fail a request. */
void fzip_metrics_add(fzip_metrics_t *m, size_t family, const char *const *labels, double delta);
void fzip_metrics_set(fzip_metrics_t *m, size_t family, const char *const *labels, double value);
void fzip_metrics_observe(fzip_metrics_t *m, size_t family, const char *const *labels,
                          double value);

/* The whole registry as exposition text: families in table order, each
 * with HELP and TYPE lines, series in the order they first appeared.
 * *out (NUL-terminated, *len bytes) is the caller's to free().
 * RESOURCE_EXHAUSTED past FZIP_METRICS_TEXT_MAX. */
bool fzip_metrics_render(char **out, size_t *len, fzip_metrics_t *m, fzip_error_t *error);

/* ---- fzip's metrics ------------------------------------------------------ */

typedef enum {
  FZIP_METRIC_RPC_REQUESTS = 0, /* counter {method, code} */
  FZIP_METRIC_RPC_DURATION,     /* histogram {method}, seconds */
  FZIP_METRIC_JOB_TRANSITIONS,  /* counter {kind, state} */
  FZIP_METRIC_JOB_DURATION,     /* histogram {kind, outcome}, seconds from creation */
  FZIP_METRIC_JOBS_QUEUED,      /* gauge {kind}, set by fzipd's queue_gauge thread */
  FZIP_METRIC_EXPORT_BYTES,     /* counter */
  FZIP_METRIC_IMPORT_BYTES,     /* counter */
  FZIP_METRIC_STORE_ERRORS,     /* counter {backend, op} */
  FZIP_METRIC_LEASE_TAKEOVERS,  /* counter {kind} */
  FZIP_METRIC_BUILD_INFO,       /* gauge {version} = 1 */
  FZIP_METRIC_COUNT
} fzip_metric_id_t;

/* The process registry over fzip's table, made on first use (and
 * fzip_build_info set); NULL only if that allocation failed, in which case
 * recording does nothing.  Lives until the process exits. */
fzip_metrics_t *fzip_metrics_process(void);

/* Recording into the process registry. */
void fzip_metric_add(fzip_metric_id_t id, const char *const *labels, double delta);
void fzip_metric_set(fzip_metric_id_t id, const char *const *labels, double value);
void fzip_metric_observe(fzip_metric_id_t id, const char *const *labels, double value);

#endif
