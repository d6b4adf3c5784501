/* core/fzip_log: every line is one JSON object whatever the values hold
 * (quotes, backslashes, control characters, values and pair counts larger
 * than a line), typed fields are JSON numbers and booleans, levels filter,
 * level names parse, and a thread's request id goes on its lines only
 * (once, the line's own request_id winning).  Lines are captured
 * by pointing stderr at a file and parsed back with libbson's JSON reader. */
#include <bson/bson.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_log.h"
#include "fzip_test.h"

#define CAPTURE_MAX (FZIP_LOG_LINE_MAX * 4)
/* More pairs of maximal values than one line holds. */
#define FLOOD_PAIRS 40

static char capture_path[] = "/tmp/fzip-core-log-XXXXXX";
static int saved_stderr = -1;
static char captured[CAPTURE_MAX];
static size_t captured_len;

static bool capture_begin(void) {
  int fd = open(capture_path, O_WRONLY | O_TRUNC);
  fflush(stderr);
  saved_stderr = dup(STDERR_FILENO);
  if (fd < 0 || saved_stderr < 0 || dup2(fd, STDERR_FILENO) < 0)
    return false;
  close(fd);
  return true;
}

/* Restores stderr and loads what was written into `captured`. */
static bool capture_end(void) {
  FILE *f;
  fflush(stderr);
  if (dup2(saved_stderr, STDERR_FILENO) < 0)
    return false;
  close(saved_stderr);
  f = fopen(capture_path, "rb");
  if (!f)
    return false;
  captured_len = fread(captured, 1, sizeof captured - 1, f);
  captured[captured_len] = '\0';
  fclose(f);
  return true;
}

/* The captured text is exactly one line that parses as a JSON object. */
static bson_t *one_json_line(void) {
  bson_error_t berr;
  if (captured_len == 0 || captured[captured_len - 1] != '\n' ||
      memchr(captured, '\n', captured_len - 1) != NULL)
    return NULL;
  return bson_new_from_json((const uint8_t *)captured, (ssize_t)captured_len - 1, &berr);
}

static bool has_string(const bson_t *doc, const char *key, const char *want) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it) &&
         strcmp(bson_iter_utf8(&it, NULL), want) == 0;
}

static void test_line_carries_level_component_message_and_pairs(void) {
  bson_t *doc;
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_WARN, "rpc", "call done", "method", "/fzip.v1.DataService/ListAccounts",
           "user", "alice", NULL);
  CHECK(capture_end());
  doc = one_json_line();
  CHECK(doc != NULL);
  bool ok = has_string(doc, "level", "warn") && has_string(doc, "component", "rpc") &&
            has_string(doc, "msg", "call done") &&
            has_string(doc, "method", "/fzip.v1.DataService/ListAccounts") &&
            has_string(doc, "user", "alice") && bson_has_field(doc, "ts");
  bson_destroy(doc);
  CHECK(ok);
}

static void test_hostile_values_round_trip_through_a_json_parser(void) {
  static const char hostile[] = "q\" b\\ nl\n cr\r tab\t bell\x07 esc\x1b del\x7f "
                                "caf\xc3\xa9 \",\"level\":\"error";
  bson_t *doc;
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_ERROR, "comp\"onent", hostile, "k\"ey\n", hostile, NULL);
  CHECK(capture_end());
  doc = one_json_line();
  CHECK(doc != NULL);
  bool ok = has_string(doc, "msg", hostile) && has_string(doc, "k\"ey\n", hostile) &&
            has_string(doc, "component", "comp\"onent") && has_string(doc, "level", "error");
  bson_destroy(doc);
  CHECK(ok);
}

static void test_null_values_log_as_empty_strings(void) {
  bson_t *doc;
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_INFO, NULL, NULL, "user", (const char *)NULL, NULL);
  CHECK(capture_end());
  doc = one_json_line();
  CHECK(doc != NULL);
  bool ok = has_string(doc, "msg", "") && has_string(doc, "user", "");
  bson_destroy(doc);
  CHECK(ok);
}

static void test_value_longer_than_a_line_is_cut_with_dots_and_the_line_stays_json(void) {
  static char big[FZIP_LOG_LINE_MAX * 2];
  bson_t *doc;
  bson_iter_t it;
  memset(big, '"', sizeof big - 1); /* every byte needs an escape */
  big[sizeof big - 1] = '\0';
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_INFO, "t", "big", "v", big, NULL);
  CHECK(capture_end());
  CHECK(captured_len <= FZIP_LOG_LINE_MAX);
  doc = one_json_line();
  CHECK(doc != NULL);
  bool ok = bson_iter_init_find(&it, doc, "v") && BSON_ITER_HOLDS_UTF8(&it);
  if (ok) {
    const char *v = bson_iter_utf8(&it, NULL);
    size_t n = strlen(v);
    ok = n > 3 && strcmp(v + n - 3, "...") == 0 && strspn(v, "\"") == n - 3;
  }
  bson_destroy(doc);
  CHECK(ok);
}

static void test_more_pairs_than_a_line_holds_still_make_one_json_line(void) {
  static char big[FZIP_LOG_LINE_MAX / 8];
  const char *v = big;
  bson_t *doc;
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  CHECK(capture_begin());
  /* FLOOD_PAIRS pairs: the line fills after a few of them. */
  fzip_log(FZIP_LOG_INFO, "t", "flood", "k00", v, "k01", v, "k02", v, "k03", v, "k04", v,
           "k05", v, "k06", v, "k07", v, "k08", v, "k09", v, "k10", v, "k11", v, "k12", v,
           "k13", v, "k14", v, "k15", v, "k16", v, "k17", v, "k18", v, "k19", v, "k20", v,
           "k21", v, "k22", v, "k23", v, "k24", v, "k25", v, "k26", v, "k27", v, "k28", v,
           "k29", v, "k30", v, "k31", v, "k32", v, "k33", v, "k34", v, "k35", v, "k36", v,
           "k37", v, "k38", v, "k39", v, NULL);
  CHECK(capture_end());
  CHECK(captured_len <= FZIP_LOG_LINE_MAX);
  doc = one_json_line();
  CHECK(doc != NULL);
  bool ok = has_string(doc, "k00", big) && !bson_has_field(doc, "k39");
  bson_destroy(doc);
  CHECK(ok);
  CHECK(FLOOD_PAIRS * sizeof big > FZIP_LOG_LINE_MAX);
}

static void test_typed_fields_are_json_numbers_and_booleans(void) {
  const fzip_log_field_t f[] = {
      fzip_log_str("method", "/m"),      fzip_log_int("zero", 0),
      fzip_log_int("neg", -42),          fzip_log_int("max", INT64_MAX),
      fzip_log_int("min", INT64_MIN),    fzip_log_bool("yes", true),
      fzip_log_bool("no", false),        fzip_log_str("null", NULL),
  };
  bson_t *doc;
  bson_iter_t it;
  bool ok;
  CHECK(capture_begin());
  fzip_log_fields(FZIP_LOG_INFO, "rpc", "typed", f, FZIP_LOG_COUNT(f));
  CHECK(capture_end());
  CHECK(strstr(captured, "\"neg\":-42,") != NULL);
  CHECK(strstr(captured, "\"yes\":true,\"no\":false,") != NULL);
  doc = one_json_line();
  CHECK(doc != NULL);
  ok = has_string(doc, "method", "/m") && has_string(doc, "null", "");
  ok = ok && bson_iter_init_find(&it, doc, "zero") && BSON_ITER_HOLDS_NUMBER(&it) &&
       bson_iter_as_int64(&it) == 0;
  ok = ok && bson_iter_init_find(&it, doc, "neg") && BSON_ITER_HOLDS_NUMBER(&it) &&
       bson_iter_as_int64(&it) == -42;
  ok = ok && bson_iter_init_find(&it, doc, "max") && BSON_ITER_HOLDS_INT64(&it) &&
       bson_iter_int64(&it) == INT64_MAX;
  ok = ok && bson_iter_init_find(&it, doc, "min") && BSON_ITER_HOLDS_INT64(&it) &&
       bson_iter_int64(&it) == INT64_MIN;
  ok = ok && bson_iter_init_find(&it, doc, "yes") && BSON_ITER_HOLDS_BOOL(&it) &&
       bson_iter_bool(&it);
  ok = ok && bson_iter_init_find(&it, doc, "no") && BSON_ITER_HOLDS_BOOL(&it) &&
       !bson_iter_bool(&it);
  bson_destroy(doc);
  CHECK(ok);
}

/* A full line drops typed fields whole: a cut number would not be JSON. */
static void test_typed_fields_after_a_full_line_are_dropped_whole(void) {
  static char big[FZIP_LOG_LINE_MAX - 64];
  fzip_log_field_t f[FLOOD_PAIRS];
  bson_t *doc;
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  f[0] = fzip_log_str("big", big);
  for (int i = 1; i < FLOOD_PAIRS; i++)
    f[i] = (i % 2) ? fzip_log_int("n", INT64_MIN) : fzip_log_bool("b", false);
  CHECK(capture_begin());
  fzip_log_fields(FZIP_LOG_INFO, "t", "full", f, FLOOD_PAIRS);
  CHECK(capture_end());
  CHECK(captured_len <= FZIP_LOG_LINE_MAX);
  doc = one_json_line();
  CHECK(doc != NULL);
  bson_destroy(doc);
}

static void test_lines_below_the_level_are_not_written(void) {
  fzip_log_set_level(FZIP_LOG_WARN);
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_INFO, "t", "hidden", NULL);
  fzip_log(FZIP_LOG_DEBUG, "t", "hidden", NULL);
  CHECK(capture_end());
  fzip_log_set_level(FZIP_LOG_INFO);
  CHECK(captured_len == 0);
  CHECK(!fzip_log_enabled(FZIP_LOG_DEBUG) && fzip_log_enabled(FZIP_LOG_INFO));
}

static void test_level_names_parse_and_others_are_refused(void) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  fzip_log_level_t got = FZIP_LOG_ERROR;
  for (int i = 0; i < 4; i++) {
    CHECK(fzip_log_level_parse(&got, names[i]));
    CHECK(got == (fzip_log_level_t)i);
  }
  got = FZIP_LOG_INFO;
  CHECK(!fzip_log_level_parse(&got, "WARN"));
  CHECK(!fzip_log_level_parse(&got, "warning"));
  CHECK(!fzip_log_level_parse(&got, ""));
  CHECK(!fzip_log_level_parse(&got, NULL));
  CHECK(got == FZIP_LOG_INFO);
}

/* How many times `key` appears as a key in the captured text. */
static int key_count(const char *key) {
  char quoted[64];
  int n = 0;
  snprintf(quoted, sizeof quoted, "\"%s\":", key);
  for (const char *p = strstr(captured, quoted); p; p = strstr(p + 1, quoted))
    n++;
  return n;
}

static void test_thread_request_id_goes_on_every_line_until_cleared(void) {
  bson_t *doc;
  bool ok;
  fzip_log_set_request_id("req-42");
  CHECK(strcmp(fzip_log_request_id(), "req-42") == 0);
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_WARN, "jobs", "claimed", "job", "j1", NULL);
  CHECK(capture_end());
  doc = one_json_line();
  CHECK(doc != NULL);
  ok = has_string(doc, "request_id", "req-42") && has_string(doc, "job", "j1");
  bson_destroy(doc);
  CHECK(ok);

  const fzip_log_field_t f[] = {fzip_log_int("n", 1)};
  CHECK(capture_begin());
  fzip_log_fields(FZIP_LOG_WARN, "jobs", "typed", f, FZIP_LOG_COUNT(f));
  CHECK(capture_end());
  doc = one_json_line();
  CHECK(doc != NULL);
  ok = has_string(doc, "request_id", "req-42");
  bson_destroy(doc);
  CHECK(ok);

  fzip_log_set_request_id(NULL);
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_WARN, "jobs", "after clear", NULL);
  CHECK(capture_end());
  CHECK(key_count("request_id") == 0);

  fzip_log_set_request_id("x");
  fzip_log_set_request_id("");
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_WARN, "jobs", "after empty", NULL);
  CHECK(capture_end());
  CHECK(key_count("request_id") == 0);
}

static void test_a_line_with_its_own_request_id_has_the_key_once(void) {
  bson_t *doc;
  bool ok;
  fzip_log_set_request_id("thread-id");
  CHECK(capture_begin());
  fzip_log(FZIP_LOG_WARN, "rpc", "call state", "method", "/m", "request_id", "own-id", NULL);
  const fzip_log_field_t f[] = {fzip_log_str("request_id", "own-id")};
  fzip_log_fields(FZIP_LOG_WARN, "rpc", "call done", f, FZIP_LOG_COUNT(f));
  fzip_log_set_request_id(NULL);
  CHECK(capture_end());
  CHECK(key_count("request_id") == 2); /* two lines, one key each */
  CHECK(strstr(captured, "thread-id") == NULL);
  char *second = strchr(captured, '\n');
  CHECK(second != NULL);
  captured_len = (size_t)(second - captured) + 1;
  captured[captured_len] = '\0';
  doc = one_json_line();
  CHECK(doc != NULL);
  ok = has_string(doc, "request_id", "own-id") && has_string(doc, "method", "/m");
  bson_destroy(doc);
  CHECK(ok);
}

static void test_a_request_id_longer_than_the_limit_is_cut(void) {
  char id[FZIP_LOG_REQUEST_ID_MAX + 10];
  memset(id, 'r', sizeof id - 1);
  id[sizeof id - 1] = '\0';
  fzip_log_set_request_id(id);
  CHECK(strlen(fzip_log_request_id()) == FZIP_LOG_REQUEST_ID_MAX - 1);
  fzip_log_set_request_id(NULL);
}

static void *log_from_other_thread(void *arg) {
  (void)arg;
  fzip_log(FZIP_LOG_WARN, "jobs", "other thread", NULL);
  return NULL;
}

static void test_another_threads_lines_do_not_carry_this_threads_id(void) {
  pthread_t t;
  fzip_log_set_request_id("mine-only");
  CHECK(capture_begin());
  CHECK(pthread_create(&t, NULL, log_from_other_thread, NULL) == 0);
  pthread_join(t, NULL);
  CHECK(capture_end());
  fzip_log_set_request_id(NULL);
  CHECK(strstr(captured, "other thread") != NULL);
  CHECK(key_count("request_id") == 0);
}

int main(void) {
  int fd = mkstemp(capture_path);
  int rc;
  if (fd < 0) {
    perror("mkstemp");
    return 1;
  }
  close(fd);
  RUN(test_line_carries_level_component_message_and_pairs);
  RUN(test_hostile_values_round_trip_through_a_json_parser);
  RUN(test_null_values_log_as_empty_strings);
  RUN(test_value_longer_than_a_line_is_cut_with_dots_and_the_line_stays_json);
  RUN(test_more_pairs_than_a_line_holds_still_make_one_json_line);
  RUN(test_typed_fields_are_json_numbers_and_booleans);
  RUN(test_typed_fields_after_a_full_line_are_dropped_whole);
  RUN(test_lines_below_the_level_are_not_written);
  RUN(test_level_names_parse_and_others_are_refused);
  RUN(test_thread_request_id_goes_on_every_line_until_cleared);
  RUN(test_a_line_with_its_own_request_id_has_the_key_once);
  RUN(test_a_request_id_longer_than_the_limit_is_cut);
  RUN(test_another_threads_lines_do_not_carry_this_threads_id);
  rc = fzip_test_summary();
  unlink(capture_path);
  return rc;
}
