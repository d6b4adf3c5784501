/*
 * fzip_metrics: see fzip_metrics.h.  A family is an array of series, each
 * its copied label values and either one value (counter, gauge) or its
 * bucket counts, sum and count (histogram).  Families have a handful of
 * series, so a linear search under the family's mutex is the cheapest
 * lookup there is; the array grows by doubling up to FZIP_METRICS_SERIES_MAX.
 * Bucket counts are kept per bucket and made cumulative when rendered.
 */
#include "fzip_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_log.h"
#include "fzip_version.h"

#define SERIES_INITIAL 8
#define NUMBER_TEXT_MAX 32      /* a double as text, NUL included */
#define RENDER_INITIAL 4096     /* first size of the rendering buffer */
#define SHORTEST_DIGITS 15      /* first precision tried when printing a double */
#define EXACT_DIGITS 17         /* enough for any double to read back the same */
#define INTEGER_EXACT 1e15      /* below this an integral double prints as an integer */

typedef struct {
  char labels[FZIP_METRICS_LABELS_MAX][FZIP_METRICS_LABEL_VALUE_MAX + 1];
  double value;                                 /* counter, gauge; histogram sum */
  uint64_t count;                               /* histogram */
  uint64_t buckets[FZIP_METRICS_BUCKETS_MAX + 1]; /* per bucket; the last is +Inf */
} series_t;

typedef struct {
  const fzip_metric_def_t *def;
  size_t n_labels;
  pthread_mutex_t lock;
  series_t *series;
  size_t n_series, cap_series;
  bool overflow_logged;
} family_t;

struct fzip_metrics {
  family_t *families;
  size_t n;
};

/* ---- the registry --------------------------------------------------------- */

static bool check_def(const fzip_metric_def_t *d, fzip_error_t *error) {
  if (!d->name || !d->help || (unsigned)d->type > FZIP_METRIC_HISTOGRAM)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT,
                          "metrics: definition without name, help or a known type");
  if (d->type == FZIP_METRIC_HISTOGRAM &&
      (!d->buckets || d->n_buckets == 0 || d->n_buckets > FZIP_METRICS_BUCKETS_MAX))
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT,
                          "metrics: %s needs 1..FZIP_METRICS_BUCKETS_MAX buckets", d->name);
  for (size_t i = 1; d->type == FZIP_METRIC_HISTOGRAM && i < d->n_buckets; i++)
    if (!(d->buckets[i - 1] < d->buckets[i]))
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT,
                            "metrics: %s buckets are not ascending", d->name);
  return true;
}

bool fzip_metrics_new(fzip_metrics_t **out, const fzip_metric_def_t *defs, size_t n,
                      fzip_error_t *error) {
  fzip_metrics_t *m = NULL;

  *out = NULL;
  for (size_t i = 0; i < n; i++)
    if (!check_def(&defs[i], error))
      return false;
  m = calloc(1, sizeof *m);
  if (!m || !(m->families = calloc(n ? n : 1, sizeof *m->families))) {
    free(m);
    return fzip_error_oom(error, "metrics registry");
  }
  m->n = n;
  for (size_t i = 0; i < n; i++) {
    family_t *f = &m->families[i];
    f->def = &defs[i];
    while (f->n_labels < FZIP_METRICS_LABELS_MAX && defs[i].labels[f->n_labels])
      f->n_labels++;
    pthread_mutex_init(&f->lock, NULL);
  }
  *out = m;
  return true;
}

void fzip_metrics_destroy(fzip_metrics_t *m) {
  if (!m)
    return;
  for (size_t i = 0; i < m->n; i++) {
    pthread_mutex_destroy(&m->families[i].lock);
    free(m->families[i].series);
  }
  free(m->families);
  free(m);
}

/* ---- recording ------------------------------------------------------------ */

static bool labels_fit(const family_t *f, const char *const *labels) {
  for (size_t i = 0; i < f->n_labels; i++)
    if (!labels || !labels[i] || strlen(labels[i]) > FZIP_METRICS_LABEL_VALUE_MAX)
      return false;
  return true;
}

static bool series_matches(const family_t *f, const series_t *s, const char *const *labels) {
  for (size_t i = 0; i < f->n_labels; i++)
    if (strcmp(s->labels[i], labels[i]) != 0)
      return false;
  return true;
}

/* The series for `labels`, made if new; NULL when the family is full or
 * out of memory (the sample is dropped: metrics never fail a request).
 * Called with f->lock held. */
static series_t *series_get(family_t *f, const char *const *labels) {
  for (size_t i = 0; i < f->n_series; i++)
    if (series_matches(f, &f->series[i], labels))
      return &f->series[i];
  if (f->n_series == f->cap_series) {
    size_t cap = f->cap_series ? f->cap_series * 2 : SERIES_INITIAL;
    series_t *grown = NULL;
    if (cap > FZIP_METRICS_SERIES_MAX)
      cap = FZIP_METRICS_SERIES_MAX;
    if (cap > f->cap_series)
      grown = realloc(f->series, cap * sizeof *grown);
    if (!grown) {
      if (!f->overflow_logged)
        fzip_log(FZIP_LOG_WARN, "metrics", "series dropped: family full or out of memory",
                 "metric", f->def->name, NULL);
      f->overflow_logged = true;
      return NULL;
    }
    f->series = grown;
    f->cap_series = cap;
  }
  series_t *s = &f->series[f->n_series++];
  memset(s, 0, sizeof *s);
  for (size_t i = 0; i < f->n_labels; i++)
    memcpy(s->labels[i], labels[i], strlen(labels[i]) + 1);
  return s;
}

typedef enum { OP_ADD = 0, OP_SET, OP_OBSERVE } op_t;

static void record(fzip_metrics_t *m, size_t family, const char *const *labels, op_t op,
                   double v) {
  family_t *f = NULL;
  series_t *s = NULL;

  if (!m || family >= m->n)
    return;
  f = &m->families[family];
  /* A counter only goes up (Prometheus reads a decrease as a restart). */
  if ((op == OP_OBSERVE) != (f->def->type == FZIP_METRIC_HISTOGRAM) ||
      (op == OP_SET && f->def->type != FZIP_METRIC_GAUGE) ||
      (op == OP_ADD && f->def->type == FZIP_METRIC_COUNTER && !(v >= 0)) ||
      !labels_fit(f, labels))
    return;
  pthread_mutex_lock(&f->lock);
  s = series_get(f, labels);
  if (s && op == OP_ADD) {
    s->value += v;
  } else if (s && op == OP_SET) {
    s->value = v;
  } else if (s) {
    size_t b = 0;
    while (b < f->def->n_buckets && v > f->def->buckets[b])
      b++;
    s->buckets[b]++;
    s->count++;
    s->value += v;
  }
  pthread_mutex_unlock(&f->lock);
}

void fzip_metrics_add(fzip_metrics_t *m, size_t family, const char *const *labels, double delta) {
  record(m, family, labels, OP_ADD, delta);
}

void fzip_metrics_set(fzip_metrics_t *m, size_t family, const char *const *labels, double value) {
  record(m, family, labels, OP_SET, value);
}

void fzip_metrics_observe(fzip_metrics_t *m, size_t family, const char *const *labels,
                          double value) {
  record(m, family, labels, OP_OBSERVE, value);
}

/* ---- rendering ------------------------------------------------------------ */

typedef struct {
  char *data;
  size_t len, cap;
  bool failed;  /* out of memory or past FZIP_METRICS_TEXT_MAX: stop adding */
  bool too_big; /* the latter */
} text_t;

static void put(text_t *t, const char *s, size_t n) {
  if (t->failed)
    return;
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : RENDER_INITIAL;
    char *grown = NULL;
    while (cap < t->len + n + 1)
      cap *= 2;
    if (cap > FZIP_METRICS_TEXT_MAX)
      cap = FZIP_METRICS_TEXT_MAX;
    t->too_big = t->len + n + 1 > cap;
    if (t->too_big || !(grown = realloc(t->data, cap))) {
      t->failed = true;
      return;
    }
    t->data = grown;
    t->cap = cap;
  }
  memcpy(t->data + t->len, s, n);
  t->len += n;
  t->data[t->len] = '\0';
}

static void put_str(text_t *t, const char *s) { put(t, s, strlen(s)); }

/* HELP text escapes backslash and newline; label values also '"'. */
static void put_escaped(text_t *t, const char *s, bool quote) {
  for (; *s; s++) {
    if (*s == '\\')
      put_str(t, "\\\\");
    else if (*s == '\n')
      put_str(t, "\\n");
    else if (quote && *s == '"')
      put_str(t, "\\\"");
    else
      put(t, s, 1);
  }
}

/* Integers as integers, other values in the fewest digits that read back
 * as the same double; infinities and NaN as the format spells them. */
static void number_text(char out[NUMBER_TEXT_MAX], double v) {
  if (isnan(v)) {
    snprintf(out, NUMBER_TEXT_MAX, "NaN");
  } else if (isinf(v)) {
    snprintf(out, NUMBER_TEXT_MAX, "%s", v > 0 ? "+Inf" : "-Inf");
  } else if (v == trunc(v) && fabs(v) < INTEGER_EXACT) {
    snprintf(out, NUMBER_TEXT_MAX, "%.0f", v);
  } else {
    for (int digits = SHORTEST_DIGITS; digits <= EXACT_DIGITS; digits++) {
      snprintf(out, NUMBER_TEXT_MAX, "%.*g", digits, v);
      if (strtod(out, NULL) == v)
        break;
    }
  }
}

static void put_number(text_t *t, double v) {
  char buf[NUMBER_TEXT_MAX];
  number_text(buf, v);
  put_str(t, buf);
}

/* name{l1="v1",l2="v2",le="x"} value\n; `le` NULL when none. */
static void put_sample(text_t *t, const family_t *f, const char *suffix, const series_t *s,
                       const char *le, double value) {
  bool any = f->n_labels > 0 || le;

  put_str(t, f->def->name);
  put_str(t, suffix);
  if (any)
    put_str(t, "{");
  for (size_t i = 0; i < f->n_labels; i++) {
    if (i)
      put_str(t, ",");
    put_str(t, f->def->labels[i]);
    put_str(t, "=\"");
    put_escaped(t, s->labels[i], true);
    put_str(t, "\"");
  }
  if (le) {
    put_str(t, f->n_labels ? ",le=\"" : "le=\"");
    put_str(t, le);
    put_str(t, "\"");
  }
  if (any)
    put_str(t, "}");
  put_str(t, " ");
  put_number(t, value);
  put_str(t, "\n");
}

static void put_histogram(text_t *t, const family_t *f, const series_t *s) {
  char le[NUMBER_TEXT_MAX];
  uint64_t cumulative = 0;

  for (size_t b = 0; b < f->def->n_buckets; b++) {
    cumulative += s->buckets[b];
    number_text(le, f->def->buckets[b]);
    put_sample(t, f, "_bucket", s, le, (double)cumulative);
  }
  put_sample(t, f, "_bucket", s, "+Inf", (double)s->count);
  put_sample(t, f, "_sum", s, NULL, s->value);
  put_sample(t, f, "_count", s, NULL, (double)s->count);
}

static const char *type_name(fzip_metric_type_t type) {
  static const char *const names[] = {"counter", "gauge", "histogram"};
  return names[type];
}

static void put_family(text_t *t, family_t *f) {
  put_str(t, "# HELP ");
  put_str(t, f->def->name);
  put_str(t, " ");
  put_escaped(t, f->def->help, false);
  put_str(t, "\n# TYPE ");
  put_str(t, f->def->name);
  put_str(t, " ");
  put_str(t, type_name(f->def->type));
  put_str(t, "\n");
  pthread_mutex_lock(&f->lock);
  for (size_t i = 0; i < f->n_series; i++) {
    if (f->def->type == FZIP_METRIC_HISTOGRAM)
      put_histogram(t, f, &f->series[i]);
    else
      put_sample(t, f, "", &f->series[i], NULL, f->series[i].value);
  }
  pthread_mutex_unlock(&f->lock);
}

bool fzip_metrics_render(char **out, size_t *len, fzip_metrics_t *m, fzip_error_t *error) {
  text_t t = {0};

  *out = NULL;
  *len = 0;
  for (size_t i = 0; m && i < m->n; i++)
    put_family(&t, &m->families[i]);
  put_str(&t, ""); /* an empty registry still renders as "" */
  if (t.failed) {
    free(t.data);
    if (t.too_big)
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                            "metrics: rendering exceeds FZIP_METRICS_TEXT_MAX (%d bytes)",
                            FZIP_METRICS_TEXT_MAX);
    return fzip_error_oom(error, "metrics text");
  }
  *out = t.data;
  *len = t.len;
  return true;
}

/* ---- fzip's metrics ------------------------------------------------------- */

/* Calls last from milliseconds (unary) to minutes (Watch streams, large
 * uploads); jobs from a second to hours. */
static const double RPC_BUCKETS_S[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                       1,     2.5,  5,     10,   30,  60,   300};
static const double JOB_BUCKETS_S[] = {0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const fzip_metric_def_t FZIP_METRICS[FZIP_METRIC_COUNT] = {
    [FZIP_METRIC_RPC_REQUESTS] = {"fzip_rpc_requests_total",
                                  "gRPC calls ended, by full method path and status code.",
                                  FZIP_METRIC_COUNTER, {"method", "code"}, NULL, 0},
    [FZIP_METRIC_RPC_DURATION] = {"fzip_rpc_duration_seconds",
                                  "Time from a call's arrival to its status, by method.",
                                  FZIP_METRIC_HISTOGRAM, {"method", NULL}, RPC_BUCKETS_S,
                                  N_OF(RPC_BUCKETS_S)},
    [FZIP_METRIC_JOB_TRANSITIONS] = {"fzip_job_transitions_total",
                                     "Job status changes made by this process, by job kind "
                                     "and the status entered.",
                                     FZIP_METRIC_COUNTER, {"kind", "state"}, NULL, 0},
    [FZIP_METRIC_JOB_DURATION] = {"fzip_job_duration_seconds",
                                  "Time from a job's creation to its final status, by kind "
                                  "and final status.",
                                  FZIP_METRIC_HISTOGRAM, {"kind", "outcome"}, JOB_BUCKETS_S,
                                  N_OF(JOB_BUCKETS_S)},
    [FZIP_METRIC_JOBS_QUEUED] = {"fzip_jobs_queued",
                                 "Jobs waiting for a worker in the whole store (all replicas), "
                                 "counted every few seconds; NaN while the count fails.",
                                 FZIP_METRIC_GAUGE, {"kind", NULL}, NULL, 0},
    [FZIP_METRIC_EXPORT_BYTES] = {"fzip_export_bytes_total",
                                  "Bytes of export packages written by this process.",
                                  FZIP_METRIC_COUNTER, {NULL, NULL}, NULL, 0},
    [FZIP_METRIC_IMPORT_BYTES] = {"fzip_import_bytes_total",
                                  "Bytes of import packages received by this process.",
                                  FZIP_METRIC_COUNTER, {NULL, NULL}, NULL, 0},
    [FZIP_METRIC_STORE_ERRORS] = {"fzip_store_errors_total",
                                  "Store calls that failed for a reason other than an "
                                  "expected outcome (not found, exists, lost race, bad input).",
                                  FZIP_METRIC_COUNTER, {"backend", "op"}, NULL, 0},
    [FZIP_METRIC_LEASE_TAKEOVERS] = {"fzip_job_lease_takeovers_total",
                                     "Jobs this process took over after another owner's "
                                     "lease lapsed.",
                                     FZIP_METRIC_COUNTER, {"kind", NULL}, NULL, 0},
    [FZIP_METRIC_BUILD_INFO] = {"fzip_build_info", "Always 1; the fzip version as a label.",
                                FZIP_METRIC_GAUGE, {"version", NULL}, NULL, 0},
};

static fzip_metrics_t *process_registry;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

static void process_init(void) {
  fzip_error_t err;
  if (!fzip_metrics_new(&process_registry, FZIP_METRICS, FZIP_METRIC_COUNT, &err)) {
    fzip_log(FZIP_LOG_WARN, "metrics", "no metrics registry", "error", err.message, NULL);
    return;
  }
  fzip_metrics_set(process_registry, FZIP_METRIC_BUILD_INFO, (const char *[]){fzip_version()}, 1);
}

fzip_metrics_t *fzip_metrics_process(void) {
  pthread_once(&process_once, process_init);
  return process_registry;
}

void fzip_metric_add(fzip_metric_id_t id, const char *const *labels, double delta) {
  fzip_metrics_add(fzip_metrics_process(), id, labels, delta);
}

void fzip_metric_set(fzip_metric_id_t id, const char *const *labels, double value) {
  fzip_metrics_set(fzip_metrics_process(), id, labels, value);
}

void fzip_metric_observe(fzip_metric_id_t id, const char *const *labels, double value) {
  fzip_metrics_observe(fzip_metrics_process(), id, labels, value);
}
