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

/* The exact bytes for the edge cases, pinned: every control character,
 * U+2028/2029 and U+10FFFF copied as UTF-8, DEL unescaped, keys that need
 * escapes, the empty key and string, the int32/int64 extremes, doubles,
 * nested and empty containers.  The writer must keep these bytes
 * (package checksums depend on them). */
static void test_edge_cases_are_pinned_byte_for_byte(void) {
  fzip_error_t err = {0};
  bson_t doc = BSON_INITIALIZER, a, b, c, d;
  char ctl[32];
  char *json;

  for (int i = 0; i < 32; i++)
    ctl[i] = (char)i;
  BSON_APPEND_UTF8(&doc, "", "");
  bson_append_utf8(&doc, "ctl", -1, ctl, (int)sizeof ctl);
  BSON_APPEND_UTF8(&doc, "q\"k\\\n\x01", "x");
  BSON_APPEND_UTF8(&doc, "ls", "\xe2\x80\xa8\xe2\x80\xa9");
  BSON_APPEND_UTF8(&doc, "del", "\x7f");
  BSON_APPEND_UTF8(&doc, "max", "\xf4\x8f\xbf\xbf\xef\xbf\xbf");
  BSON_APPEND_UTF8(&doc, "\xc3\xa9t\xc3\xa9", "\"\\\"\\");
  BSON_APPEND_INT32(&doc, "i32min", INT32_MIN);
  BSON_APPEND_INT32(&doc, "i32max", INT32_MAX);
  BSON_APPEND_INT32(&doc, "zero", 0);
  BSON_APPEND_INT64(&doc, "i64min", INT64_MIN);
  BSON_APPEND_INT64(&doc, "i64max", INT64_MAX);
  BSON_APPEND_INT64(&doc, "m10", -10);
  BSON_APPEND_INT64(&doc, "ms", 1700000000000);
  BSON_APPEND_DOUBLE(&doc, "half", 0.5);
  BSON_APPEND_DOUBLE(&doc, "two", -2.0);
  BSON_APPEND_DOUBLE(&doc, "tiny", 1e-7);
  BSON_APPEND_ARRAY_BEGIN(&doc, "nest", &a);
  BSON_APPEND_ARRAY_BEGIN(&a, "0", &b);
  bson_append_array_end(&a, &b);
  BSON_APPEND_DOCUMENT_BEGIN(&a, "1", &b);
  bson_append_document_end(&a, &b);
  BSON_APPEND_ARRAY_BEGIN(&a, "2", &b);
  BSON_APPEND_DOCUMENT_BEGIN(&b, "0", &c);
  BSON_APPEND_ARRAY_BEGIN(&c, "b", &d);
  BSON_APPEND_NULL(&d, "0");
  BSON_APPEND_BOOL(&d, "1", true);
  BSON_APPEND_BOOL(&d, "2", false);
  BSON_APPEND_UTF8(&d, "3", "");
  bson_append_array_end(&c, &d);
  bson_append_document_end(&b, &c);
  bson_append_array_end(&a, &b);
  bson_append_array_end(&doc, &a);
  json = to_json(&doc, &err);
  bson_destroy(&doc);
  CHECK_OK(json != NULL, err);
  static const char want[] =
      "{\"\":\"\","
      "\"ctl\":\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r"
      "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019"
      "\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\","
      "\"q\\\"k\\\\\\n\\u0001\":\"x\","
      "\"ls\":\"\xe2\x80\xa8\xe2\x80\xa9\","
      "\"del\":\"\x7f\","
      "\"max\":\"\xf4\x8f\xbf\xbf\xef\xbf\xbf\","
      "\"\xc3\xa9t\xc3\xa9\":\"\\\"\\\\\\\"\\\\\","
      "\"i32min\":-2147483648,\"i32max\":2147483647,\"zero\":0,"
      "\"i64min\":-9223372036854775808,\"i64max\":9223372036854775807,\"m10\":-10,"
      "\"ms\":1700000000000,"
      "\"half\":0.5,\"two\":-2.0,\"tiny\":1e-07,"
      "\"nest\":[[],{},[{\"b\":[null,true,false,\"\"]}]]}";
  if (strcmp(json, want) != 0)
    fprintf(stderr, "  got  %s\n  want %s\n", json, want);
  CHECK(strcmp(json, want) == 0);
  free(json);
}

/* ---- the writer against a plain reference encoder ------------------- */

typedef struct {
  char *data;
  size_t len, cap;
} text_t;

static void text_add(text_t *t, const char *s, size_t len) {
  if (t->len + len + 1 > t->cap) {
    t->cap = (t->len + len + 1) * 2;
    t->data = realloc(t->data, t->cap);
    if (!t->data)
      abort();
  }
  memcpy(t->data + t->len, s, len);
  t->len += len;
  t->data[t->len] = '\0';
}

/* RFC 8259 escaping one byte at a time, spelled out with snprintf: what
 * the writer's table-driven scan must give. */
static void ref_string(text_t *t, const char *s, size_t len) {
  text_add(t, "\"", 1);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    const char *e = NULL;
    switch (c) {
    case '"': e = "\\\""; break;
    case '\\': e = "\\\\"; break;
    case '\b': e = "\\b"; break;
    case '\f': e = "\\f"; break;
    case '\n': e = "\\n"; break;
    case '\r': e = "\\r"; break;
    case '\t': e = "\\t"; break;
    default:
      if (c < 0x20) {
        snprintf(esc, sizeof esc, "\\u%04x", c);
        e = esc;
      }
    }
    if (e)
      text_add(t, e, strlen(e));
    else
      text_add(t, (const char *)&c, 1);
  }
  text_add(t, "\"", 1);
}

static void ref_int(text_t *t, long long v) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%lld", v);
  text_add(t, tmp, (size_t)n);
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Pieces random strings are made of: plain runs, every kind of escape,
 * multi-byte UTF-8 of each length, U+2028. */
static const char *const pieces[] = {
    "a",  "Zy0", " ",    "\"",       "\\",       "\n",           "\t", "\x01", "\x1f",
    "\0", "\x7f", "/", "\xc3\xa9", "\xe2\x82\xac", "\xe2\x80\xa8", "\xf0\x9f\x92\xb0",
    "0123456789abcdef0123456789abcdef",
};

static size_t piece_len(size_t i) {
  return pieces[i][0] ? strlen(pieces[i]) : 1; /* "\0" is one NUL byte */
}

static void random_text(text_t *t, uint64_t *rng, size_t max_pieces) {
  size_t n = (size_t)(rng_next(rng) % (max_pieces + 1));
  t->len = 0;
  text_add(t, "", 0);
  for (size_t i = 0; i < n; i++) {
    size_t p = (size_t)(rng_next(rng) % (sizeof pieces / sizeof pieces[0]));
    text_add(t, pieces[p], piece_len(p));
  }
}

/* Appends `n` random members to doc and their JSON to ref. */
static void random_members(bson_t *doc, text_t *ref, uint64_t *rng, bool is_array, int depth) {
  static const int64_t ints[] = {INT64_MIN, INT64_MAX, 0, -1, 9, 10, -10, 99, 100};
  size_t n = (size_t)(rng_next(rng) % 8);
  text_t key = {0}, val = {0};

  text_add(ref, is_array ? "[" : "{", 1);
  for (size_t i = 0; i < n; i++) {
    char idx[PKGJSON_INDEX_KEY_SIZE];
    const char *k = idx;
    bson_t child;
    unsigned kind = (unsigned)(rng_next(rng) % (depth < 3 ? 8 : 6));

    if (i)
      text_add(ref, ",", 1);
    if (is_array) {
      bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
    } else {
      do /* BSON keys cannot hold NUL */
        random_text(&key, rng, 4);
      while (memchr(key.data, '\0', key.len));
      k = key.data;
      ref_string(ref, key.data, key.len);
      text_add(ref, ":", 1);
    }
    switch (kind) {
    case 0:
    case 1:
      random_text(&val, rng, 40);
      bson_append_utf8(doc, k, -1, val.data, (int)val.len);
      ref_string(ref, val.data, val.len);
      break;
    case 2: {
      int32_t v = (int32_t)(uint32_t)rng_next(rng);
      bson_append_int32(doc, k, -1, v);
      ref_int(ref, v);
      break;
    }
    case 3: {
      int64_t v = rng_next(rng) % 2 ? (int64_t)rng_next(rng)
                                    : ints[rng_next(rng) % (sizeof ints / sizeof ints[0])];
      bson_append_int64(doc, k, -1, v);
      ref_int(ref, v);
      break;
    }
    case 4:
    {
      bool v = rng_next(rng) % 2;
      bson_append_bool(doc, k, -1, v);
      text_add(ref, v ? "true" : "false", v ? 4 : 5);
      break;
    }
    case 5:
      bson_append_null(doc, k, -1);
      text_add(ref, "null", 4);
      break;
    default:
      if (kind == 6) {
        bson_append_document_begin(doc, k, -1, &child);
        random_members(&child, ref, rng, false, depth + 1);
        bson_append_document_end(doc, &child);
      } else {
        bson_append_array_begin(doc, k, -1, &child);
        random_members(&child, ref, rng, true, depth + 1);
        bson_append_array_end(doc, &child);
      }
    }
  }
  text_add(ref, is_array ? "]" : "}", 1);
  free(key.data);
  free(val.data);
}

/* Thousands of random documents through one writer, so that the buffer
 * fills at every kind of place (inside a run, an escape, a number): the
 * output equals the reference encoder's, and the sink gets full buffers
 * only, but for the last. */
static void test_random_documents_match_a_reference_encoder(void) {
  fzip_error_t err = {0};
  mem_sink_t m = {0};
  pkgjson_writer_t *w = pkgjson_writer_new(mem_sink, &m);
  text_t ref = {0};
  uint64_t rng = 0x9e3779b97f4a7c15ULL;
  bool ok = w != NULL;

  for (int i = 0; ok && i < 4000; i++) {
    bson_t doc = BSON_INITIALIZER;
    if (i) {
      ok = pkgjson_write_raw(w, ",\n", 2, &err);
      text_add(&ref, ",\n", 2);
    }
    random_members(&doc, &ref, &rng, false, 0);
    ok = ok && pkgjson_write_document(w, &doc, &err);
    bson_destroy(&doc);
  }
  ok = ok && pkgjson_flush(w, &err);
  CHECK_OK(ok, err);
  CHECK(ref.len > 4 * PKGJSON_BUFFER_SIZE);
  CHECK(pkgjson_bytes_written(w) == ref.len);
  CHECK(m.len == ref.len);
  CHECK(memcmp(m.data, ref.data, ref.len) == 0);
  CHECK(m.calls == (ref.len + PKGJSON_BUFFER_SIZE - 1) / PKGJSON_BUFFER_SIZE);
  CHECK(m.max_chunk == PKGJSON_BUFFER_SIZE);
  pkgjson_writer_destroy(w);
  free(m.data);
  free(ref.data);
}

/* The error names the field by its path, cut at PKGJSON_PATH_MAX - 1
 * bytes; array indexes are path elements; an empty key adds no dot. */
static void test_error_paths_are_exact(void) {
  fzip_error_t err = {0};
  bson_t *inner = bson_new();
  char want[FZIP_ERROR_MESSAGE_MAX], path[1024] = "";
  char *json;

  BSON_APPEND_DATE_TIME(inner, "when", 1);
  for (int i = 9; i >= 0; i--) {
    char key[41];
    bson_t *outer = bson_new();
    memset(key, 'a' + i, 40);
    key[40] = '\0';
    BSON_APPEND_DOCUMENT(outer, key, inner);
    bson_destroy(inner);
    inner = outer;
  }
  for (int i = 0; i < 10; i++) {
    char key[42];
    memset(key, 'a' + i, 40);
    key[40] = '.';
    key[41] = '\0';
    strcat(path, key);
  }
  strcat(path, "when");
  path[PKGJSON_PATH_MAX - 1] = '\0';
  snprintf(want, sizeof want,
           "field \"%s\": BSON type 0x09 is not allowed in a package (not JSON-native)", path);
  json = to_json(inner, &err);
  bson_destroy(inner);
  CHECK(json == NULL);
  CHECK(strcmp(err.message, want) == 0);

  inner = BCON_NEW("", "{", "x", BCON_DATE_TIME(1), "}");
  json = to_json(inner, &err);
  bson_destroy(inner);
  CHECK(json == NULL);
  CHECK(strcmp(err.message,
               "field \"x\": BSON type 0x09 is not allowed in a package (not JSON-native)") == 0);

  inner = BCON_NEW("a", "[", BCON_INT32(1), "{", "b", BCON_DOUBLE(NAN), "}", "]");
  json = to_json(inner, &err);
  bson_destroy(inner);
  CHECK(json == NULL);
  CHECK(strcmp(err.message, "field \"a.1.b\": NaN or infinity has no JSON form") == 0);

  inner = bson_new();
  bson_append_int32(inner, "ok", -1, 1);
  bson_append_int32(inner, "k\xff", -1, 1);
  json = to_json(inner, &err);
  bson_destroy(inner);
  CHECK(json == NULL);
  CHECK(strcmp(err.message, "field \"k\xff\": key is not valid UTF-8") == 0);
}

/* A string that is refused leaves nothing behind in the output. */
static void test_refused_string_writes_nothing(void) {
  fzip_error_t err = {0};
  mem_sink_t m = {0};
  pkgjson_writer_t *w = pkgjson_writer_new(mem_sink, &m);
  CHECK(w);
  CHECK_OK(pkgjson_write_string(w, "a\n", 2, &err), err);
  CHECK_FAILS(pkgjson_write_string(w, "b\n\xc3", 3, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_OK(pkgjson_flush(w, &err), err);
  CHECK(pkgjson_bytes_written(w) == 5);
  CHECK(m.len == 5 && memcmp(m.data, "\"a\\n\"", 5) == 0);
  pkgjson_writer_destroy(w);
  free(m.data);
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
  RUN(test_edge_cases_are_pinned_byte_for_byte);
  RUN(test_random_documents_match_a_reference_encoder);
  RUN(test_error_paths_are_exact);
  RUN(test_refused_string_writes_nothing);
  return fzip_test_summary();
}
