/* core/fzip_metrics: the exposition text of a counter, a gauge and a
 * histogram (exact bytes, escaping, cumulative buckets, +Inf), the limits
 * (series per family, definitions refused), recording from many threads,
 * and the process registry's table. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_metrics.h"
#include "fzip_test.h"
#include "fzip_version.h"

#define THREADS 4
#define ADDS_PER_THREAD 10000

static const double BUCKETS[] = {0.1, 1, 2.5};

static const fzip_metric_def_t DEFS[] = {
    {"t_requests_total", "Calls.\nBy method \\ code.", FZIP_METRIC_COUNTER, {"method", "code"},
     NULL, 0},
    {"t_queued", "Queue depth.", FZIP_METRIC_GAUGE, {NULL, NULL}, NULL, 0},
    {"t_duration_seconds", "Durations.", FZIP_METRIC_HISTOGRAM, {"method", NULL}, BUCKETS, 3},
};

static const char WANT[] =
    "# HELP t_requests_total Calls.\\nBy method \\\\ code.\n"
    "# TYPE t_requests_total counter\n"
    "t_requests_total{method=\"/a.B/C\",code=\"OK\"} 3\n"
    "t_requests_total{method=\"q\\\"x\\\\y\\nz\",code=\"NOT_FOUND\"} 1\n"
    "# HELP t_queued Queue depth.\n"
    "# TYPE t_queued gauge\n"
    "t_queued 0.25\n"
    "# HELP t_duration_seconds Durations.\n"
    "# TYPE t_duration_seconds histogram\n"
    "t_duration_seconds_bucket{method=\"m\",le=\"0.1\"} 1\n"
    "t_duration_seconds_bucket{method=\"m\",le=\"1\"} 3\n"
    "t_duration_seconds_bucket{method=\"m\",le=\"2.5\"} 3\n"
    "t_duration_seconds_bucket{method=\"m\",le=\"+Inf\"} 4\n"
    "t_duration_seconds_sum{method=\"m\"} 12.1\n"
    "t_duration_seconds_count{method=\"m\"} 4\n";

static void test_render_counter_gauge_histogram_exactly_with_escaping(void) {
  fzip_metrics_t *m = NULL;
  fzip_error_t err = {0};
  char *text = NULL;
  size_t len = 0;

  CHECK_OK(fzip_metrics_new(&m, DEFS, 3, &err), err);
  fzip_metrics_add(m, 0, (const char *[]){"/a.B/C", "OK"}, 1);
  fzip_metrics_add(m, 0, (const char *[]){"q\"x\\y\nz", "NOT_FOUND"}, 1);
  fzip_metrics_add(m, 0, (const char *[]){"/a.B/C", "OK"}, 2);
  fzip_metrics_set(m, 1, NULL, 7);
  fzip_metrics_set(m, 1, NULL, 0.25);
  fzip_metrics_observe(m, 2, (const char *[]){"m"}, 0.1); /* le is inclusive */
  fzip_metrics_observe(m, 2, (const char *[]){"m"}, 0.5);
  fzip_metrics_observe(m, 2, (const char *[]){"m"}, 1);
  fzip_metrics_observe(m, 2, (const char *[]){"m"}, 10.5);
  /* Wrong operations for the type are ignored, not recorded. */
  fzip_metrics_observe(m, 0, (const char *[]){"/a.B/C", "OK"}, 100);
  fzip_metrics_set(m, 0, (const char *[]){"/a.B/C", "OK"}, 100);
  fzip_metrics_add(m, 2, (const char *[]){"m"}, 100);
  fzip_metrics_add(m, 0, (const char *[]){"/a.B/C", "OK"}, -1); /* counters only go up */
  fzip_metrics_add(m, 3, NULL, 1);
  CHECK_OK(fzip_metrics_render(&text, &len, m, &err), err);
  if (strcmp(text, WANT) != 0)
    fprintf(stderr, "got:\n%s\nwant:\n%s\n", text, WANT);
  CHECK(strcmp(text, WANT) == 0);
  CHECK(len == strlen(WANT));
  free(text);
  fzip_metrics_destroy(m);
}

static void test_empty_family_renders_help_and_type_only(void) {
  fzip_metrics_t *m = NULL;
  fzip_error_t err = {0};
  char *text = NULL;
  size_t len = 0;

  CHECK_OK(fzip_metrics_new(&m, &DEFS[1], 1, &err), err);
  CHECK_OK(fzip_metrics_render(&text, &len, m, &err), err);
  CHECK(strcmp(text, "# HELP t_queued Queue depth.\n# TYPE t_queued gauge\n") == 0);
  free(text);
  fzip_metrics_destroy(m);
}

static void test_series_beyond_the_cap_and_overlong_values_are_dropped(void) {
  fzip_metrics_t *m = NULL;
  fzip_error_t err = {0};
  char *text = NULL, value[32], longv[FZIP_METRICS_LABEL_VALUE_MAX + 2];
  size_t len = 0, lines = 0;

  CHECK_OK(fzip_metrics_new(&m, DEFS, 1, &err), err);
  for (int i = 0; i < FZIP_METRICS_SERIES_MAX + 10; i++) {
    snprintf(value, sizeof value, "m%d", i);
    fzip_metrics_add(m, 0, (const char *[]){value, "OK"}, 1);
  }
  memset(longv, 'x', sizeof longv - 1);
  longv[sizeof longv - 1] = '\0';
  fzip_metrics_add(m, 0, (const char *[]){"m0", longv}, 1);
  fzip_metrics_add(m, 0, (const char *[]){"m0", NULL}, 1);
  fzip_metrics_add(m, 0, NULL, 1);
  CHECK_OK(fzip_metrics_render(&text, &len, m, &err), err);
  for (const char *p = text; (p = strchr(p, '\n')); p++)
    lines++;
  CHECK(lines == 2 + FZIP_METRICS_SERIES_MAX);
  CHECK(strstr(text, "t_requests_total{method=\"m0\",code=\"OK\"} 1\n"));
  CHECK(!strstr(text, "xxxx"));
  free(text);
  fzip_metrics_destroy(m);
}

static void test_definitions_out_of_limits_are_refused(void) {
  static const double descending[] = {2, 1};
  const fzip_metric_def_t bad[] = {
      {"h", "no buckets", FZIP_METRIC_HISTOGRAM, {NULL, NULL}, NULL, 0},
      {"h", "descending", FZIP_METRIC_HISTOGRAM, {NULL, NULL}, descending, 2},
      {NULL, "no name", FZIP_METRIC_COUNTER, {NULL, NULL}, NULL, 0},
  };
  fzip_metrics_t *m = NULL;
  fzip_error_t err = {0};

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_FAILS(fzip_metrics_new(&m, &bad[i], 1, &err), err, FZIP_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);
  }
}

static void *add_many(void *m) {
  for (int i = 0; i < ADDS_PER_THREAD; i++)
    fzip_metrics_add(m, 0, (const char *[]){i % 2 ? "a" : "b", "OK"}, 1);
  return NULL;
}

static void test_concurrent_adds_are_all_counted(void) {
  fzip_metrics_t *m = NULL;
  fzip_error_t err = {0};
  pthread_t th[THREADS];
  char *text = NULL, want[128];
  size_t len = 0;

  CHECK_OK(fzip_metrics_new(&m, DEFS, 1, &err), err);
  for (int i = 0; i < THREADS; i++)
    CHECK(pthread_create(&th[i], NULL, add_many, m) == 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  CHECK_OK(fzip_metrics_render(&text, &len, m, &err), err);
  snprintf(want, sizeof want, "t_requests_total{method=\"a\",code=\"OK\"} %d\n",
           THREADS * ADDS_PER_THREAD / 2);
  CHECK(strstr(text, want));
  free(text);
  fzip_metrics_destroy(m);
}

static void test_process_registry_has_every_fzip_metric_and_build_info(void) {
  fzip_error_t err = {0};
  char *text = NULL, want[128];
  size_t len = 0;

  fzip_metric_add(FZIP_METRIC_EXPORT_BYTES, NULL, 123);
  CHECK_OK(fzip_metrics_render(&text, &len, fzip_metrics_process(), &err), err);
  snprintf(want, sizeof want, "fzip_build_info{version=\"%s\"} 1\n", fzip_version());
  CHECK(strstr(text, want));
  CHECK(strstr(text, "fzip_export_bytes_total 123\n"));
  CHECK(strstr(text, "# TYPE fzip_rpc_duration_seconds histogram\n"));
  CHECK(strstr(text, "# TYPE fzip_rpc_requests_total counter\n"));
  CHECK(strstr(text, "# TYPE fzip_jobs_queued gauge\n"));
  free(text);
}

int main(void) {
  RUN(test_render_counter_gauge_histogram_exactly_with_escaping);
  RUN(test_empty_family_renders_help_and_type_only);
  RUN(test_series_beyond_the_cap_and_overlong_values_are_dropped);
  RUN(test_definitions_out_of_limits_are_refused);
  RUN(test_concurrent_adds_are_all_counted);
  RUN(test_process_registry_has_every_fzip_metric_and_build_info);
  return fzip_test_summary();
}
