/*
 * Tests for pkg_writer against a real SQLite store in a temporary
 * directory (through export/export_source), and through a source of the
 * test's own that serves the same fixture from memory.  Each package is
 * checked by tools that share no code with the writer: `unzip -tq` for
 * the zip structure and tests/pkg/check_package.py
 * (Python zipfile + hashlib + json + jsonschema) for order, entry metadata,
 * checksums, counts, schemas and content, against an "expected" file this
 * test writes from the documents it put into the store.
 */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "export_source.h"
#include "fzip_test.h"
#include "pkg_deflate.h"
#include "pkg_json.h"
#include "pkg_reader.h"
#include "pkg_writer.h"
#include "store.h"

#define USER "user-1"
#define OTHER_USER "user-2"
#define PINNED_MS 1718000000000LL /* 2024-06-10T06:13:20Z */

static int count_temp_leftovers(void);

static char tmpdir[256];
static store_t *store;

/* ---- fixture ---------------------------------------------------------- */

typedef struct {
  fzip_kind_t kind;
  bson_t *doc;
} fixture_doc_t;

#define FIXTURE_MAX 32
static fixture_doc_t fixture[FIXTURE_MAX];
static size_t n_fixture;

static const char *file_bytes_1 = "date,amount\n2024-01-10,-12.50\n2024-02-10,-3.20\n";
static const char *file_bytes_2 = "OFXHEADER:100\nDATA:OFXSGML\n<OFX></OFX>\n";
static const char *file_bytes_4 = "!Type:Bank\nD03/01/2024\nT-1.00\n^\n";

static void add(fzip_kind_t kind, bson_t *doc) { fixture[n_fixture++] = (fixture_doc_t){kind, doc}; }

static void build_fixture(void) {
  add(FZIP_KIND_ACCOUNT,
      BCON_NEW("accountId", "acc-a", "accountName", "Everyday", "accountType", "checking",
               "institution", "Bank \"One\"", "balance", "1234.56", "currency", "USD", "isActive",
               BCON_BOOL(true), "defaultFileMapId", "fm-1", "createdAt",
               BCON_INT64(1700000000000), "updatedAt", BCON_INT64(1700000000001)));
  add(FZIP_KIND_ACCOUNT, BCON_NEW("accountId", "acc-b", "accountName", "Savings \xe2\x82\xac",
                                  "accountType", "savings", "currency", "EUR", "isActive",
                                  BCON_BOOL(false), "createdAt", BCON_INT64(1700000000000),
                                  "updatedAt", BCON_INT64(1700000000000)));
  add(FZIP_KIND_ACCOUNT, BCON_NEW("accountId", "acc-c", "accountName", "Card", "accountType",
                                  "credit_card", "notes", "tab\there\nnewline", "isActive",
                                  BCON_BOOL(true), "createdAt", BCON_INT64(1),
                                  "updatedAt", BCON_INT64(2)));
  add(FZIP_KIND_CATEGORY,
      BCON_NEW("categoryId", "cat-food", "name", "Food", "type", "EXPENSE", "inheritParentRules",
               BCON_BOOL(true), "ruleInheritanceMode", "additive", "rules", "[", "{", "ruleId",
               "rule_0a1b2c3d", "fieldToMatch", "description", "condition", "contains", "value",
               "MARKET", "caseSensitive", BCON_BOOL(false), "priority", BCON_INT32(10),
               "enabled", BCON_BOOL(true), "confidence", BCON_INT32(90), "allowMultipleMatches",
               BCON_BOOL(true), "autoSuggest", BCON_BOOL(true), "}", "]", "createdAt",
               BCON_INT64(1), "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_CATEGORY,
      BCON_NEW("categoryId", "cat-groceries", "name", "Groceries", "type", "EXPENSE",
               "parentCategoryId", "cat-food", "inheritParentRules", BCON_BOOL(true),
               "ruleInheritanceMode", "override", "rules", "[", "]", "createdAt", BCON_INT64(1),
               "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_FILE_MAP,
      BCON_NEW("fileMapId", "fm-1", "name", "Bank CSV", "mappings", "[", "{", "sourceField",
               "date", "targetField", "date", "}", "]", "accountId", "acc-a", "reverseAmounts",
               BCON_BOOL(false), "createdAt", BCON_INT64(1), "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_FILE_MAP,
      BCON_NEW("fileMapId", "fm-2", "name", "Generic", "mappings", "[", "{", "sourceField",
               "amt", "targetField", "amount", "transformation", "negate", "}", "]",
               "reverseAmounts", BCON_BOOL(true), "createdAt", BCON_INT64(1), "updatedAt",
               BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION_FILE,
      BCON_NEW("fileId", "file-1", "fileName", "../../etc/passwd", "uploadDate",
               BCON_INT64(1704844800000), "fileSize", BCON_INT64((int64_t)strlen(file_bytes_1)),
               "s3Key", USER "/file-1", "processingStatus", "processed", "fileFormat", "csv",
               "accountId", "acc-a", "fileMapId", "fm-1", "createdAt", BCON_INT64(1),
               "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION_FILE,
      BCON_NEW("fileId", "file-2", "fileName", "C:\\evil\\na\x01me.ofx", "uploadDate",
               BCON_INT64(1705276800000), "fileSize", BCON_INT64((int64_t)strlen(file_bytes_2)),
               "s3Key", USER "/file-2", "processingStatus", "processed", "fileFormat", "ofx",
               "accountId", "acc-b", "createdAt", BCON_INT64(1), "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION_FILE,
      BCON_NEW("fileId", "file-3", "fileName", "statement.ofx", "uploadDate", BCON_INT64(1),
               "fileSize", BCON_INT64(10), "s3Key", USER "/file-3-never-stored",
               "processingStatus", "error", "accountId", "acc-a", "createdAt", BCON_INT64(1),
               "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION_FILE,
      BCON_NEW("fileId", "file-4", "fileName", "r\xc3\xa9sum\xc3\xa9 \xe2\x9c\x93.qif",
               "uploadDate", BCON_INT64(1709251200000), "fileSize",
               BCON_INT64((int64_t)strlen(file_bytes_4)), "s3Key", USER "/file-4",
               "processingStatus", "processed", "fileFormat", "qif", "accountId", "acc-c",
               "dateRange", "{", "startDate", BCON_INT64(1709251200000), "endDate",
               BCON_INT64(1709251200000), "}", "createdAt", BCON_INT64(1), "updatedAt",
               BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION,
      BCON_NEW("transactionId", "t-01", "accountId", "acc-a", "fileId", "file-1", "date",
               BCON_INT64(1704844800000), "description", "MARKET", "amount", "-12.50",
               "currency", "USD", "importOrder", BCON_INT64(1), "transactionHash",
               BCON_INT64(-1234567890123456789LL), "categories", "[", "{", "categoryId",
               "cat-food", "status", "confirmed", "confidence", BCON_INT32(100), "isManual",
               BCON_BOOL(true), "assignedAt", BCON_INT64(1), "}", "]", "primaryCategoryId",
               "cat-food", "createdAt", BCON_INT64(1), "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION,
      BCON_NEW("transactionId", "t-02", "accountId", "acc-a", "fileId", "file-1", "date",
               BCON_INT64(1707523200000), "description", "CAFE", "amount", "-3.20", "categories",
               "[", "{", "categoryId", "cat-groceries", "status", "suggested", "confidence",
               BCON_DOUBLE(85.5), "isManual", BCON_BOOL(false), "assignedAt", BCON_INT64(2),
               "ruleId", "rule_0a1b2c3d", "}", "]", "createdAt", BCON_INT64(1), "updatedAt",
               BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION,
      BCON_NEW("transactionId", "t-03", "accountId", "acc-b", "fileId", "file-2", "date",
               BCON_INT64(1705276800000), "description", "Interest", "amount", "0.42",
               "categories", "[", "]", "primaryCategoryId", "cat-gone", "createdAt",
               BCON_INT64(1), "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION,
      BCON_NEW("transactionId", "t-04", "accountId", "acc-c", "fileId", "file-4", "date",
               BCON_INT64(1709251200000), "description", "Fee", "amount", "-1.00", "categories",
               "[", "]", "createdAt", BCON_INT64(1), "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_TRANSACTION,
      BCON_NEW("transactionId", "t-05", "accountId", "acc-b", "fileId", "file-2", "date",
               BCON_INT64(1708387200000), "description", "Transfer \"in\"", "amount", "100.00",
               "memo", "line1\nline2\t\x1f", "categories", "[", "]", "createdAt", BCON_INT64(1),
               "updatedAt", BCON_INT64(1)));
  add(FZIP_KIND_ANALYTICS,
      BCON_NEW("analyticsId", "cash_flow#2024-01#acc-a", "analyticType", "cash_flow",
               "timePeriod", "2024-01", "accountId", "acc-a", "data", "{", "in", "0.00", "out",
               "12.50", "}", "computedDate", BCON_INT64(1706745600000)));
  add(FZIP_KIND_ANALYTICS,
      BCON_NEW("analyticsId", "financial_health#2024-01", "analyticType", "financial_health",
               "timePeriod", "2024-01", "data", "{", "score", BCON_DOUBLE(0.75), "}",
               "computedDate", BCON_INT64(1706745600000)));
}

static bool put_blob(const char *user_blob_id, const char *bytes, fzip_error_t *err) {
  store_blob_writer_t *w = NULL;
  bool ok = store_blob_writer_new(&w, store, STORE_BUCKET_FILES, user_blob_id, err) &&
            store_blob_writer_write(w, bytes, strlen(bytes), err) &&
            store_blob_writer_commit(w, NULL, err);
  store_blob_writer_destroy(w);
  return ok;
}

static bool fill_store(fzip_error_t *err) {
  for (size_t i = 0; i < n_fixture; i++) {
    const bson_t *one[1] = {fixture[i].doc};
    if (!store_entity_put_batch(store, USER, fixture[i].kind, one, 1, STORE_WRITE_REPLACE, NULL,
                                err))
      return false;
  }
  {
    /* Another user's data must never leak into user-1's package. */
    bson_t *other = BCON_NEW("accountId", "acc-other", "accountName", "Not yours",
                             "accountType", "other", "isActive", BCON_BOOL(true), "createdAt",
                             BCON_INT64(1), "updatedAt", BCON_INT64(1));
    const bson_t *one[1] = {other};
    bool ok = store_entity_put_batch(store, OTHER_USER, FZIP_KIND_ACCOUNT, one, 1,
                                     STORE_WRITE_REPLACE, NULL, err);
    bson_destroy(other);
    if (!ok)
      return false;
  }
  return put_blob(USER "/file-1", file_bytes_1, err) && put_blob(USER "/file-2", file_bytes_2, err) &&
         put_blob(USER "/file-4", file_bytes_4, err);
}

/* ---- expectations ----------------------------------------------------- */

static const bson_t *fixture_doc(fzip_kind_t kind, const char *id) {
  for (size_t i = 0; i < n_fixture; i++) {
    bson_iter_t it;
    if (fixture[i].kind == kind &&
        bson_iter_init_find(&it, fixture[i].doc, fzip_kind_info(kind)->id_field) &&
        strcmp(bson_iter_utf8(&it, NULL), id) == 0)
      return fixture[i].doc;
  }
  return NULL;
}

static void append_str_array(bson_t *parent, const char *key, const char *const *ids) {
  bson_t arr;
  char idx[16];
  const char *k;
  bson_append_array_begin(parent, key, -1, &arr);
  for (uint32_t i = 0; ids && ids[i]; i++) {
    bson_uint32_to_string(i, &k, idx, sizeof idx);
    bson_append_utf8(&arr, k, -1, ids[i], -1);
  }
  bson_append_array_end(parent, &arr);
}

/* What one export must contain: per kind the ids (NULL: kind absent),
 * file entries with the bytes they came from, external references. */
typedef struct {
  const char *const *ids[FZIP_KIND_COUNT];
  const char *file_names[4];
  const char *file_bytes[4];
  const char *const *ext[FZIP_KIND_COUNT];
  const char *const *missing;
  const char *export_type;
} expect_t;

static bool write_expected(const char *path, const expect_t *e) {
  bson_t *doc = bson_new();
  bson_t ents, files, refs;
  char *json;
  FILE *f;
  static const fzip_kind_t ref_kinds[] = {FZIP_KIND_ACCOUNT, FZIP_KIND_CATEGORY,
                                          FZIP_KIND_FILE_MAP, FZIP_KIND_TRANSACTION_FILE};

  bson_append_document_begin(doc, "entities", -1, &ents);
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    bson_t arr;
    char idx[16];
    const char *key;
    if (!e->ids[k])
      continue;
    bson_append_array_begin(&ents, fzip_kind_info((fzip_kind_t)k)->name, -1, &arr);
    for (uint32_t i = 0; e->ids[k][i]; i++) {
      bson_uint32_to_string(i, &key, idx, sizeof idx);
      bson_append_document(&arr, key, -1, fixture_doc((fzip_kind_t)k, e->ids[k][i]));
    }
    bson_append_array_end(&ents, &arr);
  }
  bson_append_document_end(doc, &ents);
  bson_append_document_begin(doc, "files", -1, &files);
  for (int i = 0; i < 4 && e->file_names[i]; i++) {
    char hex[FZIP_SHA256_HEX_LEN + 1];
    fzip_sha256_hex(hex, e->file_bytes[i], strlen(e->file_bytes[i]));
    bson_append_utf8(&files, e->file_names[i], -1, hex, -1);
  }
  bson_append_document_end(doc, &files);
  bson_append_document_begin(doc, "external_references", -1, &refs);
  for (size_t i = 0; i < sizeof ref_kinds / sizeof ref_kinds[0]; i++)
    append_str_array(&refs, fzip_kind_info(ref_kinds[i])->name, e->ext[ref_kinds[i]]);
  bson_append_document_end(doc, &refs);
  append_str_array(doc, "files_missing", e->missing);
  BSON_APPEND_UTF8(doc, "export_type", e->export_type);
  json = bson_as_relaxed_extended_json(doc, NULL);
  bson_destroy(doc);
  f = fopen(path, "w");
  if (!f || !json) {
    bson_free(json);
    return false;
  }
  fputs(json, f);
  bson_free(json);
  return fclose(f) == 0;
}

/* Runs unzip -t and the Python checker on `pkg`; true if both pass. */
static bool package_checks_out(const char *pkg, const char *expected) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "unzip -tq '%s' >/dev/null", pkg);
  if (system(cmd) != 0) {
    fprintf(stderr, "  unzip -t failed on %s\n", pkg);
    return false;
  }
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/check_package.py --schemas %s %s%s '%s' >&2",
           FZIP_PKG_TEST_DIR, FZIP_SCHEMA_DIR, expected ? "--expected " : "",
           expected ? expected : "", pkg);
  return system(cmd) == 0;
}

static bool export_and_check(const pkg_selection_t *sel, const expect_t *e, pkg_result_t *res,
                             fzip_error_t *err) {
  char pkg[512], exp[512];
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .temp_dir = tmpdir};
  snprintf(pkg, sizeof pkg, "%s/%s.fzip", tmpdir, e->export_type);
  snprintf(exp, sizeof exp, "%s/%s.expected.json", tmpdir, e->export_type);
  if (!export_source_write_file(res, store, USER, sel, &opt, pkg, err))
    return false;
  if (!write_expected(exp, e))
    return fzip_error_set(err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "writing %s", exp);
  if (!package_checks_out(pkg, exp))
    return fzip_error_set(err, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS, "%s failed checks", pkg);
  return true;
}

#define IDS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_IDS ((const char *const[]){NULL})

static const char *const *all_accounts = IDS("acc-a", "acc-b", "acc-c");
static const char *const *all_categories = IDS("cat-food", "cat-groceries");
static const char *const *all_file_maps = IDS("fm-1", "fm-2");
static const char *const *all_files = IDS("file-1", "file-2", "file-3", "file-4");
static const char *const *all_txns = IDS("t-01", "t-02", "t-03", "t-04", "t-05");

#define NAME_1 "files/file-1/_.._etc_passwd"
#define NAME_2 "files/file-2/C__evil_na_me.ofx"
#define NAME_4 "files/file-4/r\xc3\xa9sum\xc3\xa9 \xe2\x9c\x93.qif"

/* ---- tests ------------------------------------------------------------ */

static const char *const *external_categories = IDS("cat-gone");
static const char *const *missing_files = IDS("file-3");

/* What a complete export holds; analytics NULL: none included. */
static expect_t complete_expect(const char *const *analytics) {
  expect_t e = {.ids = {all_accounts, all_categories, all_file_maps, all_files, all_txns,
                        analytics},
                .file_names = {NAME_1, NAME_2, NAME_4},
                .file_bytes = {file_bytes_1, file_bytes_2, file_bytes_4},
                .ext = {[FZIP_KIND_CATEGORY] = external_categories},
                .missing = missing_files,
                .export_type = "complete"};
  return e;
}

static void test_complete_export_holds_every_entity_and_file_byte(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE};
  pkg_result_t res;
  expect_t e = complete_expect(NULL);
  CHECK_OK(export_and_check(&sel, &e, &res, &err), err);
  CHECK(res.counts[FZIP_KIND_TRANSACTION] == 5 && res.files_count == 3);
  CHECK(res.files_missing == 1 && res.external_refs == 1 && res.entries == 1 + 5 + 3);
  CHECK(!res.included[FZIP_KIND_ANALYTICS]);
  CHECK(res.files_bytes == strlen(file_bytes_1) + strlen(file_bytes_2) + strlen(file_bytes_4));
}

static void test_complete_export_with_analytics_adds_analytics_file(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE, .include_analytics = true};
  pkg_result_t res;
  expect_t e = complete_expect(IDS("cash_flow#2024-01#acc-a", "financial_health#2024-01"));
  CHECK_OK(export_and_check(&sel, &e, &res, &err), err);
  CHECK(res.included[FZIP_KIND_ANALYTICS] && res.counts[FZIP_KIND_ANALYTICS] == 2);
}

static void test_selective_export_filters_by_account_and_date(void) {
  fzip_error_t err = {0};
  const char *accounts[] = {"acc-b"};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_SELECTIVE, .account_ids = accounts,
                         .n_account_ids = 1, .has_date_from = true,
                         .date_from = 1706745600000 /* 2024-02-01 */, .has_date_to = true,
                         .date_to = 1735689599999};
  pkg_result_t res;
  expect_t e = {.ids = {IDS("acc-b"), all_categories, all_file_maps, IDS("file-2"), IDS("t-05"),
                        NULL},
                .file_names = {NAME_2},
                .file_bytes = {file_bytes_2},
                .ext = {[FZIP_KIND_ACCOUNT] = IDS("acc-a")}, /* fm-1 names acc-a */
                .export_type = "selective"};
  CHECK_OK(export_and_check(&sel, &e, &res, &err), err);
  CHECK(res.counts[FZIP_KIND_TRANSACTION] == 1 && res.files_count == 1);
}

static void test_accounts_only_export_holds_accounts_and_names_their_file_maps(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_ACCOUNTS_ONLY};
  pkg_result_t res;
  expect_t e = {.ids = {[FZIP_KIND_ACCOUNT] = all_accounts},
                .ext = {[FZIP_KIND_FILE_MAP] = IDS("fm-1")},
                .export_type = "accounts_only"};
  CHECK_OK(export_and_check(&sel, &e, &res, &err), err);
  CHECK(res.files_count == 0 && res.entries == 2);
}

static void test_transactions_only_export_holds_transactions_accounts_and_categories(void) {
  fzip_error_t err = {0};
  const char *accounts[] = {"acc-a"};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_TRANSACTIONS_ONLY, .account_ids = accounts,
                         .n_account_ids = 1};
  pkg_result_t res;
  expect_t e = {.ids = {[FZIP_KIND_ACCOUNT] = IDS("acc-a"),
                        [FZIP_KIND_CATEGORY] = all_categories,
                        [FZIP_KIND_TRANSACTION] = IDS("t-01", "t-02")},
                .ext = {[FZIP_KIND_FILE_MAP] = IDS("fm-1"),
                        [FZIP_KIND_TRANSACTION_FILE] = IDS("file-1")},
                .export_type = "transactions_only"};
  CHECK_OK(export_and_check(&sel, &e, &res, &err), err);
}

static void test_categories_only_export_holds_only_categories(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_CATEGORIES_ONLY};
  pkg_result_t res;
  expect_t e = {.ids = {[FZIP_KIND_CATEGORY] = all_categories}, .export_type = "categories_only"};
  CHECK_OK(export_and_check(&sel, &e, &res, &err), err);
}

static bool read_file(char **out, size_t *len, const char *path) {
  FILE *f = fopen(path, "rb");
  long n;
  if (!f)
    return false;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  rewind(f);
  *out = malloc((size_t)n + 1);
  *len = *out ? fread(*out, 1, (size_t)n, f) : 0;
  fclose(f);
  return *out && *len == (size_t)n;
}

static bool entry_bytes(char **out, zip_uint64_t *len, zip_t *za, zip_uint64_t i) {
  zip_stat_t st;
  zip_file_t *zf;
  bool ok;
  if (zip_stat_index(za, i, 0, &st) != 0 || !(zf = zip_fopen_index(za, i, 0)))
    return false;
  *len = st.size;
  *out = malloc(st.size + 1);
  ok = *out && zip_fread(zf, *out, st.size) == (zip_int64_t)st.size;
  zip_fclose(zf);
  return ok;
}

static void test_two_runs_give_identical_data_entries_whatever_the_time(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE, .include_analytics = true};
  pkg_options_t o1 = {.export_timestamp_ms = 1, .temp_dir = tmpdir};
  pkg_options_t o2 = {.export_timestamp_ms = 0, .temp_dir = tmpdir}; /* now */
  char p1[512], p2[512];
  zip_t *z1 = NULL, *z2 = NULL;
  pkg_result_t r1, r2;

  snprintf(p1, sizeof p1, "%s/run1.fzip", tmpdir);
  snprintf(p2, sizeof p2, "%s/run2.fzip", tmpdir);
  CHECK_OK(export_source_write_file(&r1, store, USER, &sel, &o1, p1, &err), err);
  CHECK_OK(export_source_write_file(&r2, store, USER, &sel, &o2, p2, &err), err);
  CHECK(r2.export_timestamp_ms > 1);
  CHECK(strcmp(r1.package_sha256, r2.package_sha256) != 0); /* the manifests differ */
  CHECK((z1 = zip_open(p1, ZIP_RDONLY, NULL)) && (z2 = zip_open(p2, ZIP_RDONLY, NULL)));
  CHECK(zip_get_num_entries(z1, 0) == zip_get_num_entries(z2, 0));
  for (zip_int64_t i = 1; i < zip_get_num_entries(z1, 0); i++) {
    char *a = NULL, *b = NULL;
    zip_uint64_t la = 0, lb = 0;
    bool same = entry_bytes(&a, &la, z1, (zip_uint64_t)i) &&
                entry_bytes(&b, &lb, z2, (zip_uint64_t)i) && la == lb && memcmp(a, b, la) == 0 &&
                strcmp(zip_get_name(z1, (zip_uint64_t)i, 0), zip_get_name(z2, (zip_uint64_t)i, 0)) == 0;
    free(a);
    free(b);
    CHECK(same);
  }
  zip_close(z1);
  zip_close(z2);
}

static void test_pinned_timestamp_gives_byte_identical_package(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE, .include_analytics = true};
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .temp_dir = tmpdir};
  char p1[512], p2[512], *a = NULL, *b = NULL;
  size_t la = 0, lb = 0;
  pkg_result_t r1, r2;
  bool same;

  snprintf(p1, sizeof p1, "%s/pin1.fzip", tmpdir);
  snprintf(p2, sizeof p2, "%s/pin2.fzip", tmpdir);
  CHECK_OK(export_source_write_file(&r1, store, USER, &sel, &opt, p1, &err), err);
  CHECK_OK(export_source_write_file(&r2, store, USER, &sel, &opt, p2, &err), err);
  same = read_file(&a, &la, p1) && read_file(&b, &lb, p2) && la == lb && memcmp(a, b, la) == 0;
  free(a);
  free(b);
  CHECK(same);
  CHECK(strcmp(r1.package_sha256, r2.package_sha256) == 0 && r1.package_size == la);
}

/* ---- a source of the test's own ---------------------------------------- */

/* The fixture served from memory: no store at all, which proves the
 * source interface is all the writer needs.  Only unfiltered reads (the
 * complete export); fixture documents are already in id order per kind.
 * `aborts` read_end calls say the read was not consistent. */
typedef struct {
  int aborts;
  int begins, ends;
} mem_source_t;

typedef struct {
  fzip_kind_t kind;
  size_t next;
} mem_cursor_t;

typedef struct {
  const char *bytes;
  size_t off;
} mem_file_t;

static bool mem_read_begin(void *ctx, fzip_error_t *error) {
  ((mem_source_t *)ctx)->begins++;
  return true;
}

static bool mem_read_end(void *ctx, fzip_error_t *error) {
  mem_source_t *m = ctx;
  m->ends++;
  if (m->aborts <= 0)
    return true;
  m->aborts--;
  return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED, "an import committed");
}

static bool mem_unfiltered(const pkg_filter_t *f, fzip_error_t *error) {
  if (f->n_account_ids || f->has_date_from || f->has_date_to)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNIMPLEMENTED, "filtered read");
  return true;
}

static bool mem_count(void *ctx, uint64_t *n, fzip_kind_t kind, const pkg_filter_t *filter,
                      fzip_error_t *error) {
  *n = 0;
  for (size_t i = 0; i < n_fixture; i++)
    *n += fixture[i].kind == kind;
  return mem_unfiltered(filter, error);
}

static bool mem_cursor_open(void *ctx, void **cursor, fzip_kind_t kind,
                            const pkg_filter_t *filter, fzip_error_t *error) {
  mem_cursor_t *c;
  if (!mem_unfiltered(filter, error))
    return false;
  if (!(c = calloc(1, sizeof *c)))
    return fzip_error_oom(error, "test cursor");
  c->kind = kind;
  *cursor = c;
  return true;
}

static bool mem_cursor_next(void *cursor, const bson_t **doc, fzip_error_t *error) {
  mem_cursor_t *c = cursor;
  while (c->next < n_fixture && fixture[c->next].kind != c->kind)
    c->next++;
  if (c->next == n_fixture)
    return false;
  *doc = fixture[c->next++].doc;
  return true;
}

static void mem_close(void *handle) {
  free(handle);
}

static bool mem_file_open(void *ctx, void **file, const char *location, fzip_error_t *error) {
  static const struct {
    const char *location, **bytes;
  } blobs[] = {{USER "/file-1", &file_bytes_1}, {USER "/file-2", &file_bytes_2},
               {USER "/file-4", &file_bytes_4}};
  mem_file_t *f;
  *file = NULL;
  for (size_t i = 0; i < sizeof blobs / sizeof blobs[0]; i++) {
    if (strcmp(blobs[i].location, location) != 0)
      continue;
    if (!(f = calloc(1, sizeof *f)))
      return fzip_error_oom(error, "test file");
    f->bytes = *blobs[i].bytes;
    *file = f;
  }
  return true; /* file-3's bytes were never stored: missing */
}

/* One byte at a time: the writer must loop until the end. */
static bool mem_file_read(void *file, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  mem_file_t *f = file;
  *n = f->bytes[f->off] && cap ? 1 : 0;
  memcpy(buf, f->bytes + f->off, *n);
  f->off += *n;
  return true;
}

static const pkg_source_ops_t mem_ops = {
    .read_begin = mem_read_begin,
    .read_end = mem_read_end,
    .count = mem_count,
    .cursor_open = mem_cursor_open,
    .cursor_next = mem_cursor_next,
    .cursor_close = mem_close,
    .file_open = mem_file_open,
    .file_read = mem_file_read,
    .file_close = mem_close,
};

static void test_writer_through_a_memory_source_gives_the_store_package(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE, .include_analytics = true};
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .temp_dir = tmpdir};
  mem_source_t m = {0};
  pkg_source_t src = {&mem_ops, &m};
  char p1[512], p2[512], *a = NULL, *b = NULL;
  size_t la = 0, lb = 0;
  uint64_t total = 0;
  pkg_result_t r1, r2;
  bool same;

  snprintf(p1, sizeof p1, "%s/mem.fzip", tmpdir);
  snprintf(p2, sizeof p2, "%s/store.fzip", tmpdir);
  CHECK_OK(pkg_count(&total, &src, &sel, &err), err);
  CHECK(total == 3 + 2 + 2 + 4 + 5 + 2 + 4); /* entities + one item per transaction file */
  CHECK_OK(pkg_write_file(&r1, &src, USER, &sel, &opt, p1, &err), err);
  CHECK(m.begins == 1 && m.ends == 1);
  CHECK(r1.files_count == 3 && r1.files_missing == 1);
  CHECK_OK(export_source_write_file(&r2, store, USER, &sel, &opt, p2, &err), err);
  same = read_file(&a, &la, p1) && read_file(&b, &lb, p2) && la == lb && memcmp(a, b, la) == 0;
  free(a);
  free(b);
  CHECK(same && strcmp(r1.package_sha256, r2.package_sha256) == 0);
}

static void test_an_inconsistent_read_starts_the_build_over(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE};
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .temp_dir = tmpdir};
  mem_source_t once = {.aborts = 1}, always = {.aborts = PKG_READ_ATTEMPTS};
  pkg_source_t src = {&mem_ops, &once};
  pkg_result_t res;
  char p[512];

  snprintf(p, sizeof p, "%s/retried.fzip", tmpdir);
  CHECK_OK(pkg_write_file(&res, &src, USER, &sel, &opt, p, &err), err);
  CHECK(once.begins == 2 && once.ends == 2);
  CHECK(res.counts[FZIP_KIND_TRANSACTION] == 5 && res.files_count == 3); /* counted once */
  unlink(p);
  src.ctx = &always;
  CHECK_FAILS(pkg_write_file(NULL, &src, USER, &sel, &opt, p, &err), err, FZIP_ERR_ABORTED);
  CHECK(always.begins == PKG_READ_ATTEMPTS && strstr(err.message, "no consistent read"));
  CHECK(access(p, F_OK) != 0 && count_temp_leftovers() == 0);
}

/* ---- an increment's deletions, through a source with change tracking --- */

/* One user's entities with the change seq of their last write, and the
 * store's deletions with theirs (FORMAT.md 15): what a selective
 * increment on a base at INC_BASE_SEQ, read up to the mark INC_MARK_SEQ,
 * sees. */
#define INC_BASE_SEQ 10
#define INC_MARK_SEQ 20

typedef struct {
  fzip_kind_t kind;
  const char *id, *account;
  uint64_t seq;
} inc_entity_t;

typedef struct {
  const char *id;
  uint64_t seq;
} inc_deletion_t;

static const inc_entity_t inc_entities[] = {
    {FZIP_KIND_ACCOUNT, "acc-a", "acc-a", 5},
    {FZIP_KIND_TRANSACTION, "t-1", "acc-a", 12}, /* changed, still selected */
    {FZIP_KIND_TRANSACTION, "t-2", "acc-b", 15}, /* moved out of the selection */
    /* Deleted at 14, then written again into acc-b at 25 by an import that
     * committed while an older one was pending: after the mark, so the
     * store still lists its deletion, and the snapshot sees it leave. */
    {FZIP_KIND_TRANSACTION, "t-3", "acc-b", 25},
};
static const inc_deletion_t inc_deletions[] = {
    {"t-0", 13}, {"t-3", 14}, {"t-4", 18}, {"t-5", 21} /* after the mark */};

typedef struct {
  const pkg_filter_t *f;
  fzip_kind_t kind;
  size_t next;
  bson_t *doc; /* the last one given (a bson_t inside a calloc'd struct would be misaligned) */
} inc_cursor_t;

static bool inc_matches(const inc_entity_t *e, fzip_kind_t kind, const pkg_filter_t *f) {
  bool in_accounts = f->n_account_ids == 0;
  for (size_t i = 0; i < f->n_account_ids; i++)
    in_accounts = in_accounts || strcmp(f->account_ids[i], e->account) == 0;
  return e->kind == kind && e->seq > f->changed_after && in_accounts;
}

static bool inc_count(void *ctx, uint64_t *n, fzip_kind_t kind, const pkg_filter_t *filter,
                      fzip_error_t *error) {
  *n = 0;
  for (size_t i = 0; i < sizeof inc_entities / sizeof inc_entities[0]; i++)
    *n += inc_matches(&inc_entities[i], kind, filter);
  return true;
}

static bool inc_cursor_open(void *ctx, void **cursor, fzip_kind_t kind,
                            const pkg_filter_t *filter, fzip_error_t *error) {
  inc_cursor_t *c = calloc(1, sizeof *c);
  pkg_filter_t *f = malloc(sizeof *f);
  if (!c || !f) {
    free(c);
    free(f);
    return fzip_error_oom(error, "test cursor");
  }
  *f = *filter; /* the account ids stay the selection's */
  c->f = f;
  c->kind = kind;
  *cursor = c;
  return true;
}

static bool inc_cursor_next(void *cursor, const bson_t **doc, fzip_error_t *error) {
  inc_cursor_t *c = cursor;
  const fzip_kind_info_t *info = fzip_kind_info(c->kind);
  for (; c->next < sizeof inc_entities / sizeof inc_entities[0]; c->next++) {
    const inc_entity_t *e = &inc_entities[c->next];
    if (!inc_matches(e, c->kind, c->f))
      continue;
    c->next++;
    bson_destroy(c->doc); /* accepts NULL */
    c->doc = bson_new();
    BSON_APPEND_UTF8(c->doc, info->id_field, e->id);
    if (c->kind != FZIP_KIND_ACCOUNT)
      BSON_APPEND_UTF8(c->doc, "accountId", e->account);
    *doc = c->doc;
    return true;
  }
  return false;
}

static void inc_cursor_close(void *cursor) {
  inc_cursor_t *c = cursor;
  bson_destroy(c->doc);
  free((void *)c->f);
  free(c);
}

static bool inc_file_open(void *ctx, void **file, const char *location, fzip_error_t *error) {
  *file = NULL;
  return true;
}

static bool inc_changes(void *ctx, uint64_t *seq, uint64_t *wiped, fzip_error_t *error) {
  *seq = INC_MARK_SEQ;
  *wiped = 0;
  return true;
}

/* The source's ctx: NULL, or how many deletions to make up instead of
 * inc_deletions ("g-00000", ...). */
typedef struct {
  fzip_kind_t kind;
  uint64_t after, upto;
  size_t next;
  const size_t *made_up;
  char id[16];
} inc_del_cursor_t;

static bool inc_deletions_open(void *ctx, void **cursor, fzip_kind_t kind, uint64_t after_seq,
                               uint64_t upto_seq, fzip_error_t *error) {
  inc_del_cursor_t *c = calloc(1, sizeof *c);
  if (!c)
    return fzip_error_oom(error, "test deletions");
  *c = (inc_del_cursor_t){kind, after_seq, upto_seq, 0, ctx, ""};
  *cursor = c;
  return true;
}

static bool inc_deletions_next(void *cursor, const char **id, fzip_error_t *error) {
  inc_del_cursor_t *c = cursor;
  if (c->kind != FZIP_KIND_TRANSACTION)
    return false;
  if (c->made_up) {
    if (c->next == *c->made_up)
      return false;
    snprintf(c->id, sizeof c->id, "g-%05zu", c->next++);
    *id = c->id;
    return true;
  }
  for (; c->next < sizeof inc_deletions / sizeof inc_deletions[0]; c->next++) {
    const inc_deletion_t *d = &inc_deletions[c->next];
    if (d->seq > c->after && d->seq <= c->upto) {
      c->next++;
      *id = d->id;
      return true;
    }
  }
  return false;
}

static const pkg_source_ops_t inc_ops = {
    .count = inc_count,
    .cursor_open = inc_cursor_open,
    .cursor_next = inc_cursor_next,
    .cursor_close = inc_cursor_close,
    .file_open = inc_file_open,
    .file_read = mem_file_read,
    .file_close = mem_close,
    .changes = inc_changes,
    .deletions_open = inc_deletions_open,
    .deletions_next = inc_deletions_next,
    .deletions_close = mem_close,
};

/* The ids in a package's data/deletions.json as the reader gives them
 * ("kind:id,..."); false with *error set when the reader refuses it. */
static bool read_deletions(char *out, size_t cap, const char *path, fzip_error_t *error) {
  pkgr_limits_t lim;
  pkgr_t *r = NULL;
  pkgr_deletions_t *it = NULL;
  fzip_kind_t kind;
  const char *id;
  size_t len = 0;
  bool ok = false;

  out[0] = '\0';
  pkgr_limits_default(&lim);
  if (!pkgr_open(&r, path, &lim, NULL, NULL, error) || !pkgr_deletions_open(&it, r, error))
    goto done;
  while (pkgr_deletions_next(it, &kind, &id, error))
    len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s:%s", len ? "," : "",
                            fzip_kind_info(kind)->name, id);
  ok = !fzip_error_is_set(error) && pkgr_deletions_finish(NULL, it, error);
done:
  pkgr_deletions_destroy(it);
  pkgr_destroy(r);
  return ok;
}

/* An id the store lists as deleted may also have left the selection: it
 * was written again after the mark (storage/store.h, deletions_open), and
 * the snapshot saw that write.  The writer lists it once, so the reader
 * (ids strictly ascending) takes the increment. */
static const pkg_incremental_t inc_on_base = {
    .base_export_id = "exp-base",
    .base_package_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    .base_change_seq = INC_BASE_SEQ,
    .chain_length = 1};

static void test_an_increment_lists_a_deleted_id_that_also_left_the_selection_once(void) {
  fzip_error_t err = {0};
  const char *accounts[] = {"acc-a"};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_SELECTIVE, .account_ids = accounts,
                         .n_account_ids = 1, .incremental = &inc_on_base};
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .temp_dir = tmpdir};
  pkg_source_t src = {&inc_ops, NULL};
  pkg_result_t res;
  char p[512], listed[512];

  snprintf(p, sizeof p, "%s/increment.fzip", tmpdir);
  CHECK_OK(pkg_write_file(&res, &src, USER, &sel, &opt, p, &err), err);
  CHECK(res.change_seq == INC_MARK_SEQ && res.counts[FZIP_KIND_TRANSACTION] == 1);
  CHECK_OK(read_deletions(listed, sizeof listed, p, &err), err);
  CHECK(strcmp(listed, "transactions:t-0,transactions:t-2,transactions:t-3,transactions:t-4") ==
        0);
  CHECK(res.deletions == 4);
}

/* Progress seen while data/deletions.json is written. */
typedef struct {
  int reports;
  int cancel_after; /* 0: never */
} deletions_watch_t;

static void on_deletions_progress(void *ctx, const pkg_progress_t *p) {
  deletions_watch_t *w = ctx;
  w->reports += p->entry && strcmp(p->entry, PKG_DELETIONS_ENTRY) == 0;
}

static bool cancel_in_deletions(void *ctx) {
  deletions_watch_t *w = ctx;
  return w->cancel_after > 0 && w->reports >= w->cancel_after;
}

/* No entity moves items_done while deletions are written: they report
 * and poll for cancel on their own, every PKG_PROGRESS_EVERY_ITEMS. */
static void test_many_deletions_report_progress_and_can_be_cancelled(void) {
  fzip_error_t err = {0};
  size_t n = 3 * PKG_PROGRESS_EVERY_ITEMS + 1;
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE, .incremental = &inc_on_base};
  deletions_watch_t seen = {0}, stop = {.cancel_after = 2};
  pkg_options_t opt = {.temp_dir = tmpdir, .progress = on_deletions_progress,
                       .progress_ctx = &seen, .cancelled = cancel_in_deletions,
                       .cancel_ctx = &seen};
  pkg_source_t src = {&inc_ops, &n};
  pkg_result_t res;
  char p[512];

  snprintf(p, sizeof p, "%s/deletions.fzip", tmpdir);
  CHECK_OK(pkg_write_file(&res, &src, USER, &sel, &opt, p, &err), err);
  CHECK(res.deletions == n && seen.reports >= 3);
  opt.progress_ctx = opt.cancel_ctx = &stop;
  CHECK_FAILS(pkg_write_file(NULL, &src, USER, &sel, &opt, p, &err), err, FZIP_ERR_CANCELLED);
  CHECK(stop.reports == 2 && count_temp_leftovers() == 0);
}

/* A sink that keeps what it is given. */
typedef struct {
  char *data;
  size_t len;
} mem_sink_t;

static bool mem_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  mem_sink_t *s = ctx;
  char *p = realloc(s->data, s->len + len);
  if (!p)
    return fzip_error_oom(error, "test sink");
  memcpy(p + s->len, data, len);
  s->data = p;
  s->len += len;
  return true;
}

/* The sink gets the very bytes pkg_write_file writes; the stream leaves
 * the hashing to the sink's owner (the store's blob writer). */
static void test_write_stream_hands_the_sink_the_whole_package(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE};
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .temp_dir = tmpdir};
  mem_source_t m = {0};
  pkg_source_t src = {&mem_ops, &m};
  mem_sink_t sink = {0};
  char hex[FZIP_SHA256_HEX_LEN + 1], p[512], *file = NULL;
  size_t file_len = 0;
  pkg_result_t res, fres;

  CHECK_OK(pkg_write_stream(&res, &src, USER, &sel, &opt, mem_sink, &sink, "memory", &err), err);
  CHECK(sink.len == res.package_size && res.package_sha256[0] == '\0');
  snprintf(p, sizeof p, "%s/stream-twin.fzip", tmpdir);
  CHECK_OK(pkg_write_file(&fres, &src, USER, &sel, &opt, p, &err), err);
  CHECK(read_file(&file, &file_len, p));
  CHECK(file_len == sink.len && memcmp(file, sink.data, sink.len) == 0);
  fzip_sha256_hex(hex, sink.data, sink.len);
  CHECK(strcmp(hex, fres.package_sha256) == 0);
  free(sink.data);
  free(file);
  unlink(p);
  CHECK(count_temp_leftovers() == 0);
}

typedef struct {
  int calls;
  int cancel_at;
  uint64_t last_items;
  uint64_t total;
  bool went_backwards;
  pkg_phase_t last_phase;
} watch_t;

static void on_progress(void *ctx, const pkg_progress_t *p) {
  watch_t *w = ctx;
  w->calls++;
  if (p->items_done < w->last_items)
    w->went_backwards = true;
  w->last_items = p->items_done;
  w->total = p->items_total;
  w->last_phase = p->phase;
}

static bool on_cancel(void *ctx) {
  watch_t *w = ctx;
  return w->cancel_at > 0 && w->calls >= w->cancel_at;
}

static void test_progress_counts_up_to_the_counted_total(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE};
  watch_t w = {0};
  pkg_options_t opt = {.temp_dir = tmpdir, .progress = on_progress, .progress_ctx = &w,
                       .cancelled = on_cancel, .cancel_ctx = &w};
  uint64_t total = 0;
  char p[512];

  snprintf(p, sizeof p, "%s/progress.fzip", tmpdir);
  CHECK_OK(export_source_count(&total, store, USER, &sel, &err), err);
  CHECK(total == 3 + 2 + 2 + 4 + 5 + 4); /* entities + one item per transaction file */
  CHECK_OK(export_source_write_file(NULL, store, USER, &sel, &opt, p, &err), err);
  CHECK(w.calls >= 6 && !w.went_backwards);
  CHECK(w.last_phase == PKG_PHASE_DONE && w.last_items == total && w.total == total);
}

static int count_temp_leftovers(void) {
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  int n = 0;
  while (d && (e = readdir(d)))
    n += strncmp(e->d_name, "fzip-pkg-", 9) == 0 || strncmp(e->d_name, "fzip-package-", 13) == 0;
  if (d)
    closedir(d);
  return n;
}

/* Files in the build's private temp dir (tmpdir/fzip-pkg-*), at most. */
static void on_progress_count_files(void *ctx, const pkg_progress_t *p) {
  int *most = ctx;
  DIR *d = opendir(tmpdir);
  struct dirent *e;

  (void)p;
  while (d && (e = readdir(d))) {
    char sub[768];
    DIR *b;
    struct dirent *f;
    int n = 0;
    if (strncmp(e->d_name, "fzip-pkg-", 9) != 0)
      continue;
    snprintf(sub, sizeof sub, "%s/%s", tmpdir, e->d_name);
    for (b = opendir(sub); b && (f = readdir(b));)
      n += strcmp(f->d_name, ".") != 0 && strcmp(f->d_name, "..") != 0;
    if (b)
      closedir(b);
    if (n > *most)
      *most = n;
  }
  if (d)
    closedir(d);
}

/* Every entry (6 data entries, 3 files, the manifest; the CSV tables)
 * goes to one of a few spool files, not to a file of its own: creating a
 * file per entry cost more CPU than writing the bytes.  The transaction
 * files go round the spools (as many in flight), so the three files make
 * three spools, with CSV tables or without, and the tables add none. */
static void test_entries_share_a_few_spool_files(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE, .include_analytics = true};
  int most = 0;
  pkg_options_t opt = {.temp_dir = tmpdir, .progress = on_progress_count_files,
                       .progress_ctx = &most};
  pkg_result_t res;
  char p[512];

  snprintf(p, sizeof p, "%s/spool.fzip", tmpdir);
  CHECK_OK(export_source_write_file(&res, store, USER, &sel, &opt, p, &err), err);
  CHECK(res.entries >= 10);
  CHECK(most == 3);
  sel.include_csv = true;
  most = 0;
  CHECK_OK(export_source_write_file(&res, store, USER, &sel, &opt, p, &err), err);
  CHECK(most == 3);
  CHECK(count_temp_leftovers() == 0);
  unlink(p);
}

static void test_cancel_stops_with_cancelled_and_leaves_nothing(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE};
  char p[512];

  /* Every poll of a whole write, the last (after the zip's last byte)
   * included. */
  watch_t all = {0};
  pkg_options_t counted = {.temp_dir = tmpdir, .progress = on_progress, .progress_ctx = &all};
  snprintf(p, sizeof p, "%s/cancelled.fzip", tmpdir);
  CHECK_OK(export_source_write_file(NULL, store, USER, &sel, &counted, p, &err), err);
  unlink(p);
  CHECK(all.calls >= 4);
  for (int at = 1; at <= all.calls; at++) {
    watch_t w = {.cancel_at = at};
    pkg_options_t opt = {.temp_dir = tmpdir, .progress = on_progress, .progress_ctx = &w,
                         .cancelled = on_cancel, .cancel_ctx = &w};
    CHECK_FAILS(export_source_write_file(NULL, store, USER, &sel, &opt, p, &err), err,
                FZIP_ERR_CANCELLED);
    CHECK(access(p, F_OK) != 0);
    CHECK(count_temp_leftovers() == 0);
  }
}

static void test_write_blob_stores_the_package_with_its_size_and_sha256(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE};
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .temp_dir = tmpdir};
  store_blob_info_t info;
  pkg_result_t res;
  char p[512], *a = NULL;
  size_t la = 0;
  char hex[FZIP_SHA256_HEX_LEN + 1];
  bool ok;

  snprintf(p, sizeof p, "%s/complete-again.fzip", tmpdir);
  CHECK_OK(export_source_write_blob(&res, store, USER, &sel, &opt, NULL, USER "/export-1", &err),
           err);
  CHECK_OK(store_blob_stat(&info, store, STORE_BUCKET_PACKAGES, USER "/export-1", &err), err);
  CHECK(info.size == res.package_size && strcmp(info.sha256, res.package_sha256) == 0);
  CHECK_OK(export_source_write_file(NULL, store, USER, &sel, &opt, p, &err), err);
  ok = read_file(&a, &la, p);
  if (ok)
    fzip_sha256_hex(hex, a, la);
  free(a);
  CHECK(ok && la == info.size && strcmp(hex, info.sha256) == 0);
  CHECK(count_temp_leftovers() == 0);
  CHECK_FAILS(export_source_write_blob(NULL, store, USER, &sel, &opt, NULL, USER "/export-1",
                                       &err),
              err, FZIP_ERR_ALREADY_EXISTS);
}

static void test_bad_selection_is_invalid_argument(void) {
  fzip_error_t err = {0};
  const char *bad_ids[] = {"../x"};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_SELECTIVE, .account_ids = bad_ids,
                         .n_account_ids = 1};
  pkg_selection_t range = {.export_type = PKG_EXPORT_SELECTIVE, .has_date_from = true,
                           .date_from = 10, .has_date_to = true, .date_to = 5};
  char p[512];
  snprintf(p, sizeof p, "%s/bad.fzip", tmpdir);
  CHECK_FAILS(export_source_write_file(NULL, store, USER, &sel, NULL, p, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(export_source_write_file(NULL, store, USER, &range, NULL, p, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
}

/* An increment's manifest object as the reader wants it, or no package;
 * a count needs no base id or sha256 (the server counts before it has them). */
static void test_an_increment_without_a_proper_base_is_invalid_argument(void) {
  fzip_error_t err = {0};
  pkg_incremental_t inc = inc_on_base;
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE, .incremental = &inc};
  pkg_options_t opt = {.temp_dir = tmpdir};
  pkg_source_t src = {&inc_ops, NULL};
  char upper[FZIP_SHA256_HEX_LEN + 1], p[512];
  uint64_t total = 0;

  snprintf(p, sizeof p, "%s/no-base.fzip", tmpdir);
  inc.base_export_id = NULL;
  inc.base_package_sha256 = NULL;
  CHECK_OK(pkg_count(&total, &src, &sel, &err), err);
  CHECK_FAILS(pkg_write_file(NULL, &src, USER, &sel, &opt, p, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "base_export_id"));
  inc.base_export_id = "../base";
  CHECK_FAILS(pkg_write_file(NULL, &src, USER, &sel, &opt, p, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "base_export_id"));
  inc.base_export_id = inc_on_base.base_export_id;
  CHECK_FAILS(pkg_write_file(NULL, &src, USER, &sel, &opt, p, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "base_package_sha256"));
  snprintf(upper, sizeof upper, "%s", inc_on_base.base_package_sha256);
  upper[10] = 'A';
  inc.base_package_sha256 = upper;
  CHECK_FAILS(pkg_write_file(NULL, &src, USER, &sel, &opt, p, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  inc.base_package_sha256 = "0123";
  CHECK_FAILS(pkg_write_file(NULL, &src, USER, &sel, &opt, p, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  inc = inc_on_base;
  inc.chain_length = 0;
  CHECK_FAILS(pkg_write_file(NULL, &src, USER, &sel, &opt, p, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(access(p, F_OK) != 0 && count_temp_leftovers() == 0);
}

static void test_hostile_file_names_are_sanitised(void) {
  static const struct {
    const char *in;
    const char *want;
  } cases[] = {
      {"../../etc/passwd", "_.._etc_passwd"},
      {"/abs/path.csv", "_abs_path.csv"},
      {"..", "file"},
      {".", "file"},
      {"", "file"},
      {"  . hidden.csv . ", "hidden.csv"},
      {"a\\b:c*d?e\"f<g>h|i", "a_b_c_d_e_f_g_h_i"},
      {"ctl\x01\x1f\x7fz", "ctl___z"},
      {"bad\xff\xfeutf8.csv", "bad__utf8.csv"},
      {"\xc3\xa9t\xc3\xa9.csv", "\xc3\xa9t\xc3\xa9.csv"},
  };
  char out[PKG_FILE_NAME_MAX + 1];
  char longname[1200];

  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pkg_sanitize_file_name(out, cases[i].in, strlen(cases[i].in));
    if (strcmp(out, cases[i].want) != 0)
      fprintf(stderr, "  '%s' -> '%s', want '%s'\n", cases[i].in, out, cases[i].want);
    CHECK(strcmp(out, cases[i].want) == 0);
  }
  /* 300 two-byte characters then ".csv": cut on a character boundary,
   * extension kept. */
  longname[0] = '\0';
  for (int i = 0; i < 300; i++)
    strcat(longname, "\xc3\xa9");
  strcat(longname, ".csv");
  pkg_sanitize_file_name(out, longname, strlen(longname));
  CHECK(strlen(out) <= PKG_FILE_NAME_MAX);
  CHECK(strcmp(out + strlen(out) - 4, ".csv") == 0);
  CHECK(pkgjson_utf8_valid(out, strlen(out)));
}

/* ---- parallel compression ------------------------------------------- */

#define BIG_USER "user-big"
#define BIG_TXNS 3000                        /* ~700 KB of data/transactions.json */
#define BIG_FILE_BYTES (9 * PKG_DEFLATE_BLOCK + 4321) /* several blocks, the last one short */

/* A user of its own whose transactions and one file span several deflate
 * blocks; *file_hex is the file's sha256. */
static bool fill_big_user(char file_hex[FZIP_SHA256_HEX_LEN + 1], fzip_error_t *err) {
  char *bytes = malloc(BIG_FILE_BYTES + 1);
  bson_t *acc = BCON_NEW("accountId", "acc-big", "accountName", "Big", "accountType", "checking",
                         "isActive", BCON_BOOL(true), "createdAt", BCON_INT64(1), "updatedAt",
                         BCON_INT64(1));
  bson_t *file = BCON_NEW("fileId", "file-big", "fileName", "big.csv", "uploadDate",
                          BCON_INT64(1), "fileSize", BCON_INT64(BIG_FILE_BYTES), "s3Key",
                          BIG_USER "/file-big", "processingStatus", "processed",
                          "fileFormat", "csv", "accountId", "acc-big", "createdAt",
                          BCON_INT64(1), "updatedAt", BCON_INT64(1));
  const bson_t *one[1];
  uint32_t x = 7;
  bool ok = bytes != NULL;

  for (size_t i = 0; ok && i < BIG_FILE_BYTES; i++) {
    x = x * 1103515245u + 12345u; /* digits and separators: compressible, not trivially */
    bytes[i] = i % 64 == 63 ? '\n' : (char)("0123456789,.-"[(x >> 16) % 13]);
  }
  if (ok) {
    bytes[BIG_FILE_BYTES] = '\0';
    fzip_sha256_hex(file_hex, bytes, BIG_FILE_BYTES);
  }
  one[0] = acc;
  ok = ok && store_entity_put_batch(store, BIG_USER, FZIP_KIND_ACCOUNT, one, 1,
                                    STORE_WRITE_REPLACE, NULL, err);
  one[0] = file;
  ok = ok && store_entity_put_batch(store, BIG_USER, FZIP_KIND_TRANSACTION_FILE, one, 1,
                                    STORE_WRITE_REPLACE, NULL, err);
  for (int i = 0; ok && i < BIG_TXNS; i++) {
    char id[32], desc[64], amount[32];
    bson_t *t;
    snprintf(id, sizeof id, "t-big-%05d", i);
    snprintf(desc, sizeof desc, "Payee %d ref %u", i % 97, (unsigned)(i * 2654435761u));
    snprintf(amount, sizeof amount, "-%d.%02d", i % 500, i % 100);
    t = BCON_NEW("transactionId", id, "accountId", "acc-big", "fileId", "file-big", "date",
                 BCON_INT64(1704844800000 + (int64_t)i * 86400000), "description", desc,
                 "amount", amount, "categories", "[", "]", "createdAt", BCON_INT64(1),
                 "updatedAt", BCON_INT64(1));
    one[0] = t;
    ok = store_entity_put_batch(store, BIG_USER, FZIP_KIND_TRANSACTION, one, 1,
                                STORE_WRITE_REPLACE, NULL, err);
    bson_destroy(t);
  }
  if (ok) {
    store_blob_writer_t *w = NULL;
    ok = store_blob_writer_new(&w, store, STORE_BUCKET_FILES, BIG_USER "/file-big", err) &&
         store_blob_writer_write(w, bytes, BIG_FILE_BYTES, err) &&
         store_blob_writer_commit(w, NULL, err);
    store_blob_writer_destroy(w);
  }
  bson_destroy(acc);
  bson_destroy(file);
  free(bytes);
  return ok;
}

static void test_compression_threads_give_the_same_bytes_and_big_entries_open_anywhere(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE};
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .temp_dir = tmpdir};
  char hex[FZIP_SHA256_HEX_LEN + 1], p[3][512], cmd[2048];
  const unsigned threads[3] = {1, 2, 3};
  pkg_result_t res[3];
  char *a = NULL, *b = NULL;
  size_t la = 0, lb = 0;

  CHECK_OK(fill_big_user(hex, &err), err);
  for (int i = 0; i < 3; i++) {
    snprintf(p[i], sizeof p[i], "%s/big-%u.fzip", tmpdir, threads[i]);
    opt.compress_threads = threads[i];
    CHECK_OK(export_source_write_file(&res[i], store, BIG_USER, &sel, &opt, p[i], &err), err);
  }
  CHECK(res[0].counts[FZIP_KIND_TRANSACTION] == BIG_TXNS && res[0].files_bytes == BIG_FILE_BYTES);
  for (int i = 1; i < 3; i++) {
    bool same = read_file(&a, &la, p[0]) && read_file(&b, &lb, p[i]) && la == lb &&
                memcmp(a, b, la) == 0;
    free(a);
    free(b);
    a = b = NULL;
    CHECK(same);
    CHECK(strcmp(res[0].package_sha256, res[i].package_sha256) == 0);
  }
  /* unzip -t and Python's zipfile (every checksum of the manifest). */
  CHECK(package_checks_out(p[0], NULL));
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c 'import hashlib,sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); "
           "i=z.getinfo(\"files/file-big/big.csv\"); "
           "sys.exit(0 if i.compress_type==8 and i.compress_size<i.file_size and "
           "hashlib.sha256(z.read(i)).hexdigest()==sys.argv[2] else 1)' '%s' %s",
           p[0], hex);
  CHECK(system(cmd) == 0);
}

static void test_example_package_is_reproducible(void) {
  fzip_error_t err = {0};
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE, .include_analytics = true};
  pkg_options_t opt = {.export_timestamp_ms = PINNED_MS, .application_version = "example",
                       .temp_dir = tmpdir};
  const char *out = getenv("FZIP_EXAMPLE_OUT");
  char p[512], *a = NULL, *b = NULL;
  size_t la = 0, lb = 0;
  bool same;

  snprintf(p, sizeof p, "%s/example.fzip", tmpdir);
  CHECK_OK(export_source_write_file(NULL, store, USER, &sel, &opt, out && *out ? out : p, &err),
           err);
  CHECK(package_checks_out(out && *out ? out : p, NULL));
  if (out && *out)
    return; /* regenerating examples/example.fzip */
  /* The committed example was made by this very test: same bytes again. */
  if (!read_file(&a, &la, FZIP_EXAMPLE_PATH))
    return;
  same = read_file(&b, &lb, p) && la == lb && memcmp(a, b, la) == 0;
  free(a);
  free(b);
  CHECK(same);
}

int main(void) {
  fzip_error_t err = {0};
  char uri[512];
  store_options_t so = {0};
  int rc;

  snprintf(tmpdir, sizeof tmpdir, "%s/fzip-pkg-test-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(tmpdir))
    return 2;
  snprintf(uri, sizeof uri, "sqlite:%s/store.db", tmpdir);
  so.uri = uri;
  build_fixture();
  if (!store_open(&store, &so, &err) || !fill_store(&err)) {
    fprintf(stderr, "store set-up: %s\n", err.message);
    return 2;
  }
  RUN(test_complete_export_holds_every_entity_and_file_byte);
  RUN(test_complete_export_with_analytics_adds_analytics_file);
  RUN(test_selective_export_filters_by_account_and_date);
  RUN(test_accounts_only_export_holds_accounts_and_names_their_file_maps);
  RUN(test_transactions_only_export_holds_transactions_accounts_and_categories);
  RUN(test_categories_only_export_holds_only_categories);
  RUN(test_two_runs_give_identical_data_entries_whatever_the_time);
  RUN(test_pinned_timestamp_gives_byte_identical_package);
  RUN(test_writer_through_a_memory_source_gives_the_store_package);
  RUN(test_an_inconsistent_read_starts_the_build_over);
  RUN(test_write_stream_hands_the_sink_the_whole_package);
  RUN(test_an_increment_lists_a_deleted_id_that_also_left_the_selection_once);
  RUN(test_many_deletions_report_progress_and_can_be_cancelled);
  RUN(test_progress_counts_up_to_the_counted_total);
  RUN(test_entries_share_a_few_spool_files);
  RUN(test_cancel_stops_with_cancelled_and_leaves_nothing);
  RUN(test_write_blob_stores_the_package_with_its_size_and_sha256);
  RUN(test_bad_selection_is_invalid_argument);
  RUN(test_an_increment_without_a_proper_base_is_invalid_argument);
  RUN(test_hostile_file_names_are_sanitised);
  RUN(test_compression_threads_give_the_same_bytes_and_big_entries_open_anywhere);
  RUN(test_example_package_is_reproducible);
  rc = fzip_test_summary();
  store_destroy(store);
  for (size_t i = 0; i < n_fixture; i++)
    bson_destroy(fixture[i].doc);
  if (rc == 0 && !getenv("FZIP_TEST_KEEP")) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
      return 1;
  }
  return rc;
}
