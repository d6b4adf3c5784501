/*
 * Tests for pkg_json: the exact bytes written for each BSON type, the
 * errors for what JSON cannot carry, and the bounded buffer.
 */
#include <math.h>
#include <stdlib.h>

#include "fzip_test.h"
#include "pkg_json.h"

/* A growable in-memory sink that also records the largest chunk it got. */
typedef struct {
  char *data;
  size_t len;
  size_t cap;
  size_t max_chunk;
  size_t calls;
} mem_sink_t;

static bool mem_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  mem_sink_t *m = ctx;
  if (m->len + len + 1 > m->cap) {
    size_t cap = (m->len + len + 1) * 2;
    char *p = realloc(m->data, cap);
    if (!p)
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "oom");
    m->data = p;
    m->cap = cap;
  }
  memcpy(m->data + m->len, data, len);
  m->len += len;
  m->data[m->len] = '\0';
  m->calls++;
  if (len > m->max_chunk)
    m->max_chunk = len;
  return true;
}

/* Writes `doc` and returns the JSON text (caller frees), or NULL with err set. */
static char *to_json(const bson_t *doc, fzip_error_t *err) {
  mem_sink_t m = {0};
  pkgjson_writer_t *w = pkgjson_writer_new(mem_sink, &m);
  bool ok = w && pkgjson_write_document(w, doc, err) && pkgjson_flush(w, err);
  pkgjson_writer_destroy(w);
  if (!ok) {
    free(m.data);
    return NULL;
  }
  return m.data ? m.data : strdup("");
}

static void test_document_keeps_key_order_and_native_types(void) {
  fzip_error_t err = {0};
  bson_t *doc = BCON_NEW("z", BCON_UTF8("last-first"), "a", BCON_INT32(-7), "big",
                         BCON_INT64(INT64_MAX), "small", BCON_INT64(INT64_MIN), "t",
                         BCON_BOOL(true), "f", BCON_BOOL(false), "n", BCON_NULL, "arr", "[",
                         BCON_INT32(1), "{", "k", BCON_UTF8("v"), "}", "]", "empty", "{", "}");
  char *json = to_json(doc, &err);
  bson_destroy(doc);
  CHECK_OK(json != NULL, err);
  CHECK(strcmp(json, "{\"z\":\"last-first\",\"a\":-7,\"big\":9223372036854775807,"
                     "\"small\":-9223372036854775808,\"t\":true,\"f\":false,\"n\":null,"
                     "\"arr\":[1,{\"k\":\"v\"}],\"empty\":{}}") == 0);
  free(json);
}

static void test_strings_escape_quotes_backslashes_and_every_control_char(void) {
  fzip_error_t err = {0};
  const char raw[] = "q\"b\\ \b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xb0";
  bson_t doc = BSON_INITIALIZER;
  char *json;

  BSON_APPEND_UTF8(&doc, "s", raw);
  bson_append_utf8(&doc, "nul", -1, "a\0b", 3);
  json = to_json(&doc, &err);
  bson_destroy(&doc);
  CHECK_OK(json != NULL, err);
  CHECK(strcmp(json, "{\"s\":\"q\\\"b\\\\ \\b\\f\\n\\r\\t\\u0001\\u001f\x7f caf\xc3\xa9 "
                     "\xe2\x82\xac \xf0\x9f\x92\xb0\",\"nul\":\"a\\u0000b\"}") == 0);
  free(json);
}

static void test_invalid_utf8_is_an_error_naming_the_field(void) {
  static const char *bad[] = {
      "\xff",             /* never valid */
      "\xc0\xaf",         /* overlong '/' */
      "\xe0\x80\xaf",     /* overlong 3-byte */
      "\xed\xa0\x80",     /* UTF-16 surrogate */
      "\xf4\x90\x80\x80", /* above U+10FFFF */
      "ok\xc3",           /* truncated */
      "\x80",             /* lone continuation */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fzip_error_t err = {0};
    bson_t doc = BSON_INITIALIZER;
    bson_t child;
    char *json;
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "outer", &child);
    bson_append_utf8(&child, "memo", -1, bad[i], (int)strlen(bad[i]));
    bson_append_document_end(&doc, &child);
    json = to_json(&doc, &err);
    bson_destroy(&doc);
    CHECK(json == NULL);
    CHECK(err.code == FZIP_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "outer.memo") != NULL);
    CHECK(strstr(err.message, "UTF-8") != NULL);
  }
}

static void test_non_json_bson_types_are_errors_naming_the_field(void) {
  fzip_error_t err = {0};
  bson_t doc = BSON_INITIALIZER;
  bson_t arr;
  char *json;

  BSON_APPEND_UTF8(&doc, "transactionId", "t1");
  BSON_APPEND_ARRAY_BEGIN(&doc, "categories", &arr);
  BSON_APPEND_INT32(&arr, "0", 1);
  BSON_APPEND_DATE_TIME(&arr, "1", 1700000000000);
  bson_append_array_end(&doc, &arr);
  json = to_json(&doc, &err);
  bson_destroy(&doc);
  CHECK(json == NULL);
  CHECK(err.code == FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "categories.1") != NULL);
  CHECK(strstr(err.message, "not allowed") != NULL);
}

static void test_doubles_use_shortest_round_trip_form(void) {
  static const struct {
    double v;
    const char *want;
  } cases[] = {
      {0.1, "0.1"}, {1.0, "1.0"}, {-0.0, "-0.0"}, {85.5, "85.5"}, {1e300, "1e+300"},
      {5e-324, "5e-324"}, {0.30000000000000004, "0.30000000000000004"},
      {123456789012.0, "123456789012.0"}, {1e21, "1e+21"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char out[PKGJSON_DOUBLE_MAX];
    CHECK(pkgjson_format_double(out, cases[i].v));
    if (strcmp(out, cases[i].want) != 0)
      fprintf(stderr, "  %.17g -> %s want %s\n", cases[i].v, out, cases[i].want);
    CHECK(strcmp(out, cases[i].want) == 0);
    CHECK(strtod(out, NULL) == cases[i].v);
  }
}

static void test_nan_and_infinity_are_errors(void) {
  fzip_error_t err = {0};
  bson_t doc = BSON_INITIALIZER;
  char *json;
  BSON_APPEND_DOUBLE(&doc, "confidence", NAN);
  json = to_json(&doc, &err);
  bson_destroy(&doc);
  CHECK(json == NULL);
  CHECK(strstr(err.message, "confidence") != NULL);

  bson_init(&doc);
  BSON_APPEND_DOUBLE(&doc, "x", INFINITY);
  json = to_json(&doc, &err);
  bson_destroy(&doc);
  CHECK(json == NULL);
}

static void test_nesting_beyond_depth_max_is_an_error(void) {
  fzip_error_t err = {0};
  bson_t *inner = bson_new();
  char *json;
  BSON_APPEND_INT32(inner, "leaf", 1);
  for (int i = 0; i < PKGJSON_DEPTH_MAX + 2; i++) {
    bson_t *outer = bson_new();
    BSON_APPEND_DOCUMENT(outer, "d", inner);
    bson_destroy(inner);
    inner = outer;
  }
  json = to_json(inner, &err);
  bson_destroy(inner);
  CHECK(json == NULL);
  CHECK(err.code == FZIP_ERR_RESOURCE_EXHAUSTED);
}

static void test_sink_gets_bounded_chunks_for_a_large_string(void) {
  fzip_error_t err = {0};
  size_t big = 1024 * 1024;
  char *s = malloc(big + 1);
  mem_sink_t m = {0};
  pkgjson_writer_t *w = pkgjson_writer_new(mem_sink, &m);
  bool ok;

  CHECK(s && w);
  memset(s, 'x', big);
  s[big] = '\0';
  for (size_t i = 0; i < big; i += 4096)
    s[i] = '\n'; /* escapes mixed in */
  ok = pkgjson_write_string(w, s, big, &err) && pkgjson_flush(w, &err);
  free(s);
  CHECK_OK(ok, err);
  CHECK(pkgjson_bytes_written(w) == m.len);
  CHECK(m.len == big + big / 4096 + 2);
  CHECK(m.max_chunk <= PKGJSON_BUFFER_SIZE);
  CHECK(m.calls >= big / PKGJSON_BUFFER_SIZE);
  pkgjson_writer_destroy(w);
  free(m.data);
}

static bool failing_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_UNAVAILABLE, "disk full");
}

static void test_sink_failure_is_returned(void) {
  fzip_error_t err = {0};
  pkgjson_writer_t *w = pkgjson_writer_new(failing_sink, NULL);
  CHECK(w);
  CHECK(pkgjson_write_raw(w, "x", 1, &err)); /* buffered, sink not yet called */
  CHECK_FAILS(pkgjson_flush(w, &err), err, FZIP_ERR_UNAVAILABLE);
  pkgjson_writer_destroy(w);
}

int main(void) {
  RUN(test_document_keeps_key_order_and_native_types);
  RUN(test_strings_escape_quotes_backslashes_and_every_control_char);
  RUN(test_invalid_utf8_is_an_error_naming_the_field);
  RUN(test_non_json_bson_types_are_errors_naming_the_field);
  RUN(test_doubles_use_shortest_round_trip_form);
  RUN(test_nan_and_infinity_are_errors);
  RUN(test_nesting_beyond_depth_max_is_an_error);
  RUN(test_sink_gets_bounded_chunks_for_a_large_string);
  RUN(test_sink_failure_is_returned);
  return fzip_test_summary();
}
