/*
 * Tests for the HouseF3 flavour (pkg_housef3 through pkg_reader and
 * pkg_validate): packages written exactly as the real app writes them, by
 * make_housef3_packages.py (camelCase manifest, gzipped bare arrays, the
 * exporters' derived fields), must validate, report flavour "housef3" and
 * the absent checksums, and stream format 1.0 entities equal to the ones
 * the generator says the mapping gives (<name>.expected.json); hostile
 * variants must be refused with the rule its index names.  Also the pieces
 * alone: the bare-array JSON mode, 64-bit hashes, ISO times, gzip bounds.
 *
 *   test_pkg_housef3                 the suite
 *   test_pkg_housef3 --dump FILE     print what the validator says of FILE
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "fzip_test.h"
#include "fzip_test_bson.h"
#include "pkg_housef3.h"
#include "pkg_jsonread.h"
#include "pkg_reader.h"
#include "pkg_validate.h"

#define PATH_LEN 512

static char tmp_dir[256];

static void path_of(char out[PATH_LEN], const char *name, const char *ext) {
  snprintf(out, PATH_LEN, "%s/%s%s", tmp_dir, name, ext);
}

static const pkgv_issue_t *first_error(const pkgv_result_t *res) {
  for (size_t i = 0; i < res->n_issues; i++) {
    if (res->issues[i].severity == PKGR_SEVERITY_ERROR)
      return &res->issues[i];
  }
  return NULL;
}

static bool has_issue(const pkgv_result_t *res, const char *rule, pkgr_severity_t sev) {
  for (size_t i = 0; i < res->n_issues; i++) {
    if (res->issues[i].severity == sev && strcmp(res->issues[i].rule, rule) == 0)
      return true;
  }
  return false;
}

static void dump(const pkgv_result_t *res) {
  for (size_t i = 0; i < res->n_issues && i < 20; i++)
    fprintf(stderr, "    %s %s entry=%s id=%s field=%s: %s\n",
            res->issues[i].severity == PKGR_SEVERITY_ERROR ? "ERROR" : "warn", res->issues[i].rule,
            res->issues[i].entry, res->issues[i].entity_id, res->issues[i].field,
            res->issues[i].reason);
}

/* ---- a file or a string as a JSON source ------------------------------- */

static bool file_read(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  *n = fread(buf, 1, cap, ctx);
  return !ferror((FILE *)ctx) ||
         fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "read failed");
}

typedef struct {
  const unsigned char *p;
  size_t len, pos;
} mem_t;

static bool mem_read(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  mem_t *m = ctx;
  *n = m->len - m->pos < cap ? m->len - m->pos : cap;
  memcpy(buf, m->p + m->pos, *n);
  m->pos += *n;
  return true;
}

/* The expected entities of a good package: {"<kind>": [...], ...}. */
static bool read_expected(bson_t *out, const char *name) {
  char path[PATH_LEN];
  fzip_error_t err = {0};
  path_of(path, name, ".expected.json");
  FILE *f = fopen(path, "rb");
  pkgjr_limits_t lim;
  pkgjr_limits_default(&lim);
  pkgjr_reader_t *r = f ? pkgjr_reader_new(file_read, f, &lim) : NULL;
  bool ok = r && pkgjr_read_document(out, r, &err);
  pkgjr_reader_destroy(r);
  if (f)
    fclose(f);
  return ok;
}

/* Every entity the reader streams equals the expected one, in order. */
static bool entities_match(pkgr_t *r, const bson_t *expected, fzip_kind_t kind) {
  bson_iter_t it, arr;
  pkgr_entities_t *es = NULL;
  const bson_t *doc;
  fzip_error_t err = {0};
  bool ok = false;
  bool has = bson_iter_init_find(&it, expected, fzip_kind_info(kind)->name) &&
             bson_iter_recurse(&it, &arr);
  if (!pkgr_entities_open(&es, r, kind, &err))
    return false;
  while (pkgr_entities_next(es, &doc, &err)) {
    bson_t want;
    const uint8_t *p;
    uint32_t len;
    if (!has || !bson_iter_next(&arr))
      goto done;
    bson_iter_document(&arr, &len, &p);
    if (!bson_init_static(&want, p, len) || !fzip_test_same_doc(doc, &want)) {
      char *j = bson_as_relaxed_extended_json(doc, NULL);
      fprintf(stderr, "    %s: got %s\n", fzip_kind_info(kind)->name, j);
      bson_free(j);
      goto done;
    }
  }
  ok = !fzip_error_is_set(&err) && (!has || !bson_iter_next(&arr)) &&
       pkgr_entities_finish(NULL, es, &err);
done:
  if (fzip_error_is_set(&err))
    fprintf(stderr, "    %s: %s\n", fzip_kind_info(kind)->name, err.message);
  pkgr_entities_destroy(es);
  return ok;
}

/* ---- the generator's packages ----------------------------------------- */

static void check_good(const char *name) {
  char path[PATH_LEN];
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  pkgr_t *r = NULL;
  bson_t *expected = bson_new();
  pkgv_options_t opt = {0};
  bool ok;

  path_of(path, name, ".fzip");
  CHECK(read_expected(expected, name));
  CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
  ok = res->passed && strcmp(res->info.flavour, PKGR_FLAVOUR_HOUSEF3) == 0 &&
       (has_issue(res, "checksum.absent", PKGR_SEVERITY_WARNING) ||
        strcmp(name, "hf_good_empty") == 0) &&
       !has_issue(res, "schema.unknown_field", PKGR_SEVERITY_WARNING) &&
       res->info.export_timestamp_ms == 1741064767123LL &&
       strcmp(res->info.application_version, "2.5.0") == 0 &&
       strcmp(res->info.export_type, "complete") == 0 &&
       has_issue(res, "file.bytes_missing", PKGR_SEVERITY_WARNING) ==
           (strcmp(name, "hf_good_file_bytes_missing") == 0);
  if (!ok) {
    fprintf(stderr, "  %s: passed=%d flavour=%s ts=%lld\n", name, res->passed, res->info.flavour,
            (long long)res->info.export_timestamp_ms);
    dump(res);
  }
  pkgv_result_destroy(res);
  if (!ok)
    bson_destroy(expected);
  CHECK(ok);
  ok = pkgr_open(&r, path, NULL, NULL, NULL, &err);
  for (int k = 0; ok && k < FZIP_KIND_COUNT; k++)
    ok = entities_match(r, expected, (fzip_kind_t)k);
  pkgr_destroy(r);
  bson_destroy(expected);
  if (!ok)
    fprintf(stderr, "  %s: the mapped entities differ from the expected ones\n", name);
  CHECK(ok);
}

static void test_app_packages_validate_and_map_to_format_1_0(void) {
  static const char *const good[] = {"hf_good_complete", "hf_good_no_analytics",
                                     "hf_good_plain_json", "hf_good_empty", "hf_good_lzma",
                                     "hf_good_file_bytes_missing", "hf_good_big_numbers"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    int before = fzip_test_current_failed;
    check_good(good[i]);
    CHECK(fzip_test_current_failed == before);
  }
}

typedef struct {
  const char *name, *rule;
  fzip_code_t code; /* pkgv_result_error_code: limits RESOURCE_EXHAUSTED */
} bad_t;

static void test_hostile_app_packages_are_refused_with_their_rule(void) {
  static const bad_t bad[] = {
      {"hf_bad_gzip_bomb", "limit.json", FZIP_ERR_RESOURCE_EXHAUSTED},
      {"hf_bad_gzip_truncated", "archive.corrupt", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_gzip_crc", "archive.corrupt", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_gzip_not_gzip", "archive.corrupt", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_gzip_trailing", "archive.corrupt", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_not_array", "json", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_both_plain_and_gz", "archive.duplicate_data", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_mixed_flavours", "archive.flavour", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_count_mismatch", "manifest.count", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_version", "manifest.version", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_file_size", "file.size", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_dangling_account", "reference.dangling", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_import_order_u64", "schema.type", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_impossible_date", "schema.type", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_lzma_crc", "archive.corrupt", FZIP_ERR_FAILED_PRECONDITION},
      {"hf_bad_lzma_in_fzip", "archive.compression", FZIP_ERR_FAILED_PRECONDITION},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char path[PATH_LEN];
    fzip_error_t err = {0};
    pkgv_result_t *res = NULL;
    pkgv_options_t opt = {0};
    path_of(path, bad[i].name, ".fzip");
    CHECK_OK(pkgv_validate(&res, path, &opt, &err), err);
    const pkgv_issue_t *is = first_error(res);
    bool ok = !res->passed && is && strcmp(is->rule, bad[i].rule) == 0 &&
              pkgv_result_error_code(res) == bad[i].code;
    if (!ok) {
      fprintf(stderr, "  %s: want %s/%s, got code %s\n", bad[i].name, bad[i].rule,
              fzip_code_name(bad[i].code), fzip_code_name(pkgv_result_error_code(res)));
      dump(res);
    }
    pkgv_result_destroy(res);
    CHECK(ok);
  }
}

/* ---- the pieces -------------------------------------------------------- */

static void test_bare_array_reads_objects_and_refuses_the_keyed_form(void) {
  static const char good[] = " [ {\"a\": 1}, {\"h\": 18446744073709551615} ]\n";
  static const char keyed[] = "{\"accounts\": []}";
  static const char trailing[] = "[{}] x";
  mem_t m = {(const unsigned char *)good, sizeof good - 1, 0};
  fzip_error_t err = {0};
  bson_t *doc = bson_new();
  bool more = false;
  bson_iter_t it;
  pkgjr_reader_t *r = pkgjr_reader_new(mem_read, &m, NULL);
  pkgjr_wrap_uint64(r, "h");
  bool ok = pkgjr_open_bare_array(r, &err) && pkgjr_next_document(&more, doc, r, &err) && more &&
            pkgjr_next_document(&more, doc, r, &err) && more &&
            bson_iter_init_find(&it, doc, "h") && BSON_ITER_HOLDS_INT64(&it) &&
            bson_iter_int64(&it) == -1 && pkgjr_next_document(&more, doc, r, &err) && !more;
  pkgjr_reader_destroy(r);
  if (!ok) {
    bson_destroy(doc);
    fprintf(stderr, "  %s\n", err.message);
  }
  CHECK(ok);

  /* Without the wrap, the same literal is a double, as before. */
  m.pos = 0;
  r = pkgjr_reader_new(mem_read, &m, NULL);
  ok = pkgjr_open_bare_array(r, &err) && pkgjr_next_document(&more, doc, r, &err) &&
       pkgjr_next_document(&more, doc, r, &err) && bson_iter_init_find(&it, doc, "h") &&
       BSON_ITER_HOLDS_DOUBLE(&it);
  pkgjr_reader_destroy(r);
  const char *inputs[] = {keyed, trailing};
  for (int i = 0; ok && i < 2; i++) {
    mem_t mm = {(const unsigned char *)inputs[i], strlen(inputs[i]), 0};
    fzip_error_clear(&err);
    r = pkgjr_reader_new(mem_read, &mm, NULL);
    ok = !(pkgjr_open_bare_array(r, &err) && pkgjr_next_document(&more, doc, r, &err) &&
           pkgjr_next_document(&more, doc, r, &err)) &&
         err.code == FZIP_ERR_INVALID_ARGUMENT;
    pkgjr_reader_destroy(r);
  }
  bson_destroy(doc);
  CHECK(ok);
}

/* Only transactionHash wraps (FORMAT.md, the HouseF3 flavour): any other
 * integer above INT64_MAX, at the top or nested, stays a double as in a
 * 1.0 package. */
static void test_only_transaction_hash_wraps_to_int64(void) {
  static const char in[] = "[{\"transactionHash\": 18446744073709551615,"
                           " \"importOrder\": 18446744073709551615,"
                           " \"data\": {\"n\": 9223372036854775808, \"s\": [18446744073709551615]}}]";
  mem_t m = {(const unsigned char *)in, sizeof in - 1, 0};
  fzip_error_t err = {0};
  bson_t *doc = bson_new();
  bool more = false;
  bson_iter_t it, sub;
  pkgjr_reader_t *r = pkgjr_reader_new(mem_read, &m, NULL);
  pkgjr_wrap_uint64(r, "transactionHash");
  bool ok = pkgjr_open_bare_array(r, &err) && pkgjr_next_document(&more, doc, r, &err) && more;
  pkgjr_reader_destroy(r);
  if (!ok)
    fprintf(stderr, "  %s\n", err.message);
  ok = ok && bson_iter_init_find(&it, doc, "transactionHash") && BSON_ITER_HOLDS_INT64(&it) &&
       bson_iter_int64(&it) == -1;
  ok = ok && bson_iter_init_find(&it, doc, "importOrder") && BSON_ITER_HOLDS_DOUBLE(&it) &&
       bson_iter_double(&it) == 18446744073709551615.0;
  ok = ok && bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, "data.n", &sub) &&
       BSON_ITER_HOLDS_DOUBLE(&sub) && bson_iter_double(&sub) == 9223372036854775808.0;
  ok = ok && bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, "data.s.0", &sub) &&
       BSON_ITER_HOLDS_DOUBLE(&sub);
  bson_destroy(doc);
  CHECK(ok);
}

static void test_iso_times_parse_to_epoch_ms(void) {
  int64_t ms = 0;
  CHECK(pkghf_parse_time(&ms, "2025-03-04T05:06:07.123456+00:00") && ms == 1741064767123LL);
  CHECK(pkghf_parse_time(&ms, "2025-03-04 06:06:07+01:00") && ms == 1741064767000LL);
  CHECK(pkghf_parse_time(&ms, "2025-03-04T05:06:07Z") && ms == 1741064767000LL);
  CHECK(pkghf_parse_time(&ms, "1970-01-02") && ms == 86400000LL);
  CHECK(pkghf_parse_time(&ms, "1969-12-31T23:59:59") && ms == -1000LL);
  CHECK(!pkghf_parse_time(&ms, "2025-13-04"));
  /* Leap years, and no day past its month's end (not the next month's). */
  CHECK(pkghf_parse_time(&ms, "2024-02-29") && ms == 1709164800000LL);
  CHECK(pkghf_parse_time(&ms, "2000-02-29T00:00:00Z") && ms == 951782400000LL);
  CHECK(pkghf_parse_time(&ms, "2024-12-31T23:59:59.999+00:00") && ms == 1735689599999LL);
  CHECK(pkghf_parse_time(&ms, "2023-04-30"));
  CHECK(!pkghf_parse_time(&ms, "2024-02-31"));
  CHECK(!pkghf_parse_time(&ms, "2024-02-30"));
  CHECK(!pkghf_parse_time(&ms, "2023-02-29"));
  CHECK(!pkghf_parse_time(&ms, "1900-02-29"));
  CHECK(!pkghf_parse_time(&ms, "2100-02-29T00:00:00Z"));
  CHECK(!pkghf_parse_time(&ms, "2023-04-31"));
  CHECK(!pkghf_parse_time(&ms, "2023-11-31 10:00:00"));
  CHECK(!pkghf_parse_time(&ms, "2023-00-10"));
  CHECK(!pkghf_parse_time(&ms, "2023-01-00"));
  CHECK(!pkghf_parse_time(&ms, "2023-01-32"));
  CHECK(!pkghf_parse_time(&ms, "2023-01-10T24:00:00"));
  CHECK(!pkghf_parse_time(&ms, "2023-01-10T23:60:00"));
  CHECK(!pkghf_parse_time(&ms, "2023-01-10T23:59:60Z"));
  CHECK(!pkghf_parse_time(&ms, "2023-01-10T23:59:59+24:00"));
  CHECK(!pkghf_parse_time(&ms, "2025-03-04T05:06"));
  CHECK(!pkghf_parse_time(&ms, "2025-03-04T05:06:07+0"));
  CHECK(!pkghf_parse_time(&ms, "yesterday"));
}

/* gzip of `n` bytes of 'a' */
static unsigned char *gzip_of(size_t n, size_t *out_len) {
  unsigned char *in = malloc(n), *out = malloc(n + 1024);
  z_stream z = {0};
  memset(in, 'a', n);
  deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  z.next_in = in;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = (uInt)(n + 1024);
  deflate(&z, Z_FINISH);
  *out_len = z.total_out;
  deflateEnd(&z);
  free(in);
  return out;
}

static bool drain(pkghf_gunzip_t *gz, fzip_error_t *err) {
  char buf[4096];
  size_t n;
  do {
    if (!pkghf_gunzip_read(gz, buf, sizeof buf, &n, err))
      return false;
  } while (n);
  return true;
}

static void test_gunzip_bounds_output_and_ratio(void) {
  size_t len;
  unsigned char *z = gzip_of(100000, &len);
  fzip_error_t err = {0};
  mem_t m = {z, len, 0};
  pkghf_gunzip_t *gz = pkghf_gunzip_new(mem_read, &m, "x.gz", 100000, 1000, 1);
  bool ok = drain(gz, &err) && pkghf_gunzip_bytes_out(gz) == 100000;
  pkghf_gunzip_destroy(gz);
  /* one byte less than it inflates to */
  m.pos = 0;
  gz = pkghf_gunzip_new(mem_read, &m, "x.gz", 99999, 1000, 1);
  ok = ok && !drain(gz, &err) && err.code == FZIP_ERR_RESOURCE_EXHAUSTED;
  pkghf_gunzip_destroy(gz);
  /* 100000 'a' deflate to ~150 bytes: above a ratio of 20 */
  m.pos = 0;
  fzip_error_clear(&err);
  gz = pkghf_gunzip_new(mem_read, &m, "x.gz", 100000, 20, 1024);
  ok = ok && !drain(gz, &err) && err.code == FZIP_ERR_RESOURCE_EXHAUSTED &&
       strstr(err.message, "x.gz") != NULL;
  pkghf_gunzip_destroy(gz);
  /* the length in the trailer (ISIZE) is checked */
  z[len - 1] ^= 1;
  m.pos = 0;
  fzip_error_clear(&err);
  gz = pkghf_gunzip_new(mem_read, &m, "x.gz", 200000, 1000, 1);
  ok = ok && !drain(gz, &err) && err.code == FZIP_ERR_DATA_LOSS;
  pkghf_gunzip_destroy(gz);
  free(z);
  CHECK(ok);
}

/* test_pkg_housef3 --dump FILE: what the validator says of FILE. */
static int dump_file(const char *path) {
  fzip_error_t err = {0};
  pkgv_result_t *res = NULL;
  pkgv_options_t opt = {0};
  if (!pkgv_validate(&res, path, &opt, &err)) {
    fprintf(stderr, "%s\n", err.message);
    return 1;
  }
  printf("passed=%d flavour=%s\n", res->passed, res->info.flavour);
  dump(res);
  pkgv_result_destroy(res);
  return 0;
}

int main(int argc, char **argv) {
  char cmd[1024];
  if (argc == 3 && strcmp(argv[1], "--dump") == 0)
    return dump_file(argv[2]);
  snprintf(tmp_dir, sizeof tmp_dir, "%s/fzip-hf-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(tmp_dir))
    return 1;
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/make_housef3_packages.py %s > /dev/null",
           FZIP_PKG_TEST_DIR, tmp_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "make_housef3_packages.py failed\n");
    return 1;
  }
  RUN(test_bare_array_reads_objects_and_refuses_the_keyed_form);
  RUN(test_only_transaction_hash_wraps_to_int64);
  RUN(test_iso_times_parse_to_epoch_ms);
  RUN(test_gunzip_bounds_output_and_ratio);
  RUN(test_app_packages_validate_and_map_to_format_1_0);
  RUN(test_hostile_app_packages_are_refused_with_their_rule);
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
  if (system(cmd) != 0)
    return 1;
  return fzip_test_summary();
}
