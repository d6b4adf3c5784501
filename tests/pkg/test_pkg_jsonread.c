/*
 * Tests for pkg_jsonread: the strict streaming JSON reader.  Inputs are
 * fed through a source that hands out a few bytes at a time, so every
 * token is also tested split across refills.
 */
#include <string.h>

#include "fzip_test.h"
#include "pkg_jsonread.h"

typedef struct {
  const char *data;
  size_t len, pos, chunk;
} src_t;

static bool src_read(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  src_t *s = ctx;
  size_t k = s->len - s->pos;
  if (k > s->chunk)
    k = s->chunk;
  if (k > cap)
    k = cap;
  memcpy(buf, s->data + s->pos, k);
  s->pos += k;
  *n = k;
  return true;
}

/* Parses `json` as one document with the given chunking and limits. */
static bool parse_doc(bson_t *doc, const char *json, size_t chunk, const pkgjr_limits_t *lim,
                      fzip_error_t *err) {
  src_t s = {json, strlen(json), 0, chunk};
  pkgjr_reader_t *r = pkgjr_reader_new(src_read, &s, lim);
  bool ok = r && pkgjr_read_document(doc, r, err);
  pkgjr_reader_destroy(r);
  return ok;
}

static void test_numbers_become_int64_or_double(void) {
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};
  bson_iter_t it;
  CHECK_OK(parse_doc(&doc,
                     "{\"a\": 1700000000000, \"b\": -5, \"c\": 1.5, \"d\": 1e3, "
                     "\"e\": 99999999999999999999, \"f\": -0.0, \"g\": 2.50E-1}",
                     3, NULL, &err),
           err);
  CHECK(bson_iter_init_find(&it, &doc, "a") && BSON_ITER_HOLDS_INT64(&it) &&
        bson_iter_int64(&it) == 1700000000000LL);
  CHECK(bson_iter_init_find(&it, &doc, "b") && bson_iter_int64(&it) == -5);
  CHECK(bson_iter_init_find(&it, &doc, "c") && BSON_ITER_HOLDS_DOUBLE(&it) &&
        bson_iter_double(&it) == 1.5);
  CHECK(bson_iter_init_find(&it, &doc, "d") && BSON_ITER_HOLDS_INT64(&it) &&
        bson_iter_int64(&it) == 1000);
  CHECK(bson_iter_init_find(&it, &doc, "e") && BSON_ITER_HOLDS_DOUBLE(&it));
  CHECK(bson_iter_init_find(&it, &doc, "g") && bson_iter_double(&it) == 0.25);
  bson_destroy(&doc);
}

static void test_strings_decode_escapes_and_surrogate_pairs(void) {
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};
  bson_iter_t it;
  uint32_t len;
  CHECK_OK(parse_doc(&doc, "{\"s\": \"a\\n\\\"\\u00e9\\ud83d\\ude00\xe2\x82\xac\\u0000z\"}", 1,
                     NULL, &err),
           err);
  CHECK(bson_iter_init_find(&it, &doc, "s"));
  const char *s = bson_iter_utf8(&it, &len);
  CHECK(len == 14);
  CHECK(memcmp(s, "a\n\"\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac\0z", 14) == 0);
  bson_destroy(&doc);
}

static void test_nested_values_keep_their_shape(void) {
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};
  bson_iter_t it;
  CHECK_OK(parse_doc(&doc, " {\"o\": {\"a\": [true, false, null, {}, []]}} \n", 2, NULL, &err),
           err);
  CHECK(bson_iter_init(&it, &doc) && bson_iter_find_descendant(&it, "o.a.3", &it) &&
        BSON_ITER_HOLDS_DOCUMENT(&it));
  CHECK(bson_iter_init(&it, &doc) && bson_iter_find_descendant(&it, "o.a.2", &it) &&
        BSON_ITER_HOLDS_NULL(&it));
  bson_destroy(&doc);
}

static void test_malformed_json_is_refused(void) {
  static const char *bad[] = {
      "{\"a\": 1,}",        "{\"a\": 01}",          "{\"a\": .5}",        "{\"a\": 1.}",
      "{\"a\": -}",         "{\"a\": NaN}",         "{\"a\": tru}",       "{a: 1}",
      "{\"a\" 1}",          "{\"a\": \"\x01\"}",    "{\"a\": \"\\x\"}",   "{\"a\": \"\\ud800\"}",
      "{\"a\": \"\\udc00\"}", "{\"a\": \"\xc0\xaf\"}", "{\"a\": \"\xed\xa0\x80\"}",
      "{\"a\": 1} x",       "{\"a\": 1, \"a\": 2}", "[1]",                "{\"a\": [1,]}",
      "{\"a\": 1e999}",     "{\"a\": \"unterminated", "",                 "{\"a\": \"\xf4\x90\x80\x80\"}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    bson_t doc = BSON_INITIALIZER;
    fzip_error_t err = {0};
    bool ok = parse_doc(&doc, bad[i], 4, NULL, &err);
    bson_destroy(&doc);
    if (ok)
      fprintf(stderr, "  accepted: %s\n", bad[i]);
    CHECK(!ok);
    CHECK(err.domain == FZIP_DOMAIN_PACKAGE);
  }
}

static void test_limits_stop_the_reader(void) {
  pkgjr_limits_t lim;
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};

  pkgjr_limits_default(&lim);
  lim.max_depth = 3;
  CHECK(parse_doc(&doc, "{\"a\": [[1]]}", 5, &lim, &err));
  CHECK_FAILS(parse_doc(&doc, "{\"a\": [[[1]]]}", 5, &lim, &err), err,
              FZIP_ERR_RESOURCE_EXHAUSTED);
  pkgjr_limits_default(&lim);
  lim.max_string = 8;
  CHECK_FAILS(parse_doc(&doc, "{\"a\": \"123456789\"}", 5, &lim, &err), err,
              FZIP_ERR_RESOURCE_EXHAUSTED);
  pkgjr_limits_default(&lim);
  lim.max_number = 5;
  CHECK_FAILS(parse_doc(&doc, "{\"a\": 123456}", 5, &lim, &err), err,
              FZIP_ERR_RESOURCE_EXHAUSTED);
  pkgjr_limits_default(&lim);
  lim.max_total = 10;
  CHECK_FAILS(parse_doc(&doc, "{\"a\": 12345678}", 5, &lim, &err), err,
              FZIP_ERR_RESOURCE_EXHAUSTED);
  pkgjr_limits_default(&lim);
  lim.max_members = 3;
  CHECK_FAILS(parse_doc(&doc, "{\"a\": [1,2,3,4]}", 5, &lim, &err), err,
              FZIP_ERR_RESOURCE_EXHAUSTED);
  pkgjr_limits_default(&lim);
  lim.max_doc = 64;
  CHECK_FAILS(parse_doc(&doc, "{\"a\": \"0123456789012345678901234567890123456789\", "
                              "\"b\": \"0123456789012345678901234567890123456789\"}",
                        5, &lim, &err),
              err, FZIP_ERR_RESOURCE_EXHAUSTED);
  bson_destroy(&doc);
}

static void test_large_objects_detect_duplicate_keys(void) {
  char json[8192];
  size_t n = 0;
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};
  n += (size_t)snprintf(json + n, sizeof json - n, "{");
  for (int i = 0; i < 200; i++)
    n += (size_t)snprintf(json + n, sizeof json - n, "\"k%d\": %d,", i, i);
  snprintf(json + n, sizeof json - n, "\"k150\": 0}");
  CHECK_FAILS(parse_doc(&doc, json, 64, NULL, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "duplicate key") != NULL);
  json[n - 1] = '}';
  json[n] = '\0';
  CHECK_OK(parse_doc(&doc, json, 64, NULL, &err), err);
  CHECK(bson_count_keys(&doc) == 200);
  bson_destroy(&doc);
}

/* Objects of up to KEYSET_LINEAR (16) members check keys through an
 * array of fingerprints: a repeat of any earlier key, at any position,
 * is still refused, and distinct keys are all kept. */
static void test_small_objects_detect_duplicate_keys_at_every_position(void) {
  for (int n = 1; n <= 17; n++) {
    for (int dup = 0; dup < n; dup++) {
      char json[1024];
      size_t len = (size_t)snprintf(json, sizeof json, "{");
      for (int i = 0; i < n; i++)
        len += (size_t)snprintf(json + len, sizeof json - len, "\"key%d\": %d,", i, i);
      snprintf(json + len, sizeof json - len, "\"key%d\": 0}", dup);
      bson_t doc = BSON_INITIALIZER;
      fzip_error_t err = {0};
      bool ok = parse_doc(&doc, json, 7, NULL, &err);
      bson_destroy(&doc);
      if (ok)
        fprintf(stderr, "  accepted: %s\n", json);
      CHECK(!ok && strstr(err.message, "duplicate key") != NULL);
    }
    char json[1024];
    size_t len = (size_t)snprintf(json, sizeof json, "{");
    for (int i = 0; i < n; i++)
      len += (size_t)snprintf(json + len, sizeof json - len, "%s\"key%d\": %d", i ? "," : "",
                              i, i);
    snprintf(json + len, sizeof json - len, "}");
    bson_t doc = BSON_INITIALIZER;
    fzip_error_t err = {0};
    bool ok = parse_doc(&doc, json, 7, NULL, &err) && bson_count_keys(&doc) == (uint32_t)n;
    bson_destroy(&doc);
    CHECK_OK(ok, err);
  }
}

static void test_array_stream_yields_each_element(void) {
  const char *json = "{\"accounts\" : [ {\"accountId\": \"a\"}, {\"accountId\": \"b\"} ] }\n";
  src_t s = {json, strlen(json), 0, 3};
  pkgjr_reader_t *r = pkgjr_reader_new(src_read, &s, NULL);
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};
  char key[32];
  bool more = false;
  int n = 0;

  CHECK(r != NULL);
  CHECK_OK(pkgjr_open_array(key, sizeof key, r, &err), err);
  CHECK(strcmp(key, "accounts") == 0);
  while (pkgjr_next_document(&more, &doc, r, &err) && more)
    n++;
  bool failed = fzip_error_is_set(&err);
  pkgjr_reader_destroy(r);
  bson_destroy(&doc);
  CHECK(!failed);
  CHECK(n == 2);
}

static void test_array_stream_refuses_non_object_elements(void) {
  const char *json = "{\"accounts\": [{}, 5]}";
  src_t s = {json, strlen(json), 0, 100};
  pkgjr_reader_t *r = pkgjr_reader_new(src_read, &s, NULL);
  bson_t doc = BSON_INITIALIZER;
  fzip_error_t err = {0};
  char key[32];
  bool more = false, ok;

  CHECK(r != NULL);
  CHECK_OK(pkgjr_open_array(key, sizeof key, r, &err), err);
  CHECK_OK(pkgjr_next_document(&more, &doc, r, &err), err);
  CHECK(more);
  ok = pkgjr_next_document(&more, &doc, r, &err);
  /* A spent reader keeps failing. */
  fzip_error_t again = {0};
  bool ok2 = pkgjr_next_document(&more, &doc, r, &again);
  pkgjr_reader_destroy(r);
  bson_destroy(&doc);
  CHECK(!ok && !more);
  CHECK(!ok2);
}

int main(void) {
  RUN(test_numbers_become_int64_or_double);
  RUN(test_strings_decode_escapes_and_surrogate_pairs);
  RUN(test_nested_values_keep_their_shape);
  RUN(test_malformed_json_is_refused);
  RUN(test_limits_stop_the_reader);
  RUN(test_large_objects_detect_duplicate_keys);
  RUN(test_small_objects_detect_duplicate_keys_at_every_position);
  RUN(test_array_stream_yields_each_element);
  RUN(test_array_stream_refuses_non_object_elements);
  return fzip_test_summary();
}
