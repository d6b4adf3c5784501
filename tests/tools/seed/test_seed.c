/*
 * Tests of the synthetic-dataset generator (tools/seed/seed.c) against a real
 * store: by default fresh SQLite files in a temporary directory; with
 * FZIP_TEST_MONGODB_URI=mongodb://... (set by the `ferretdb` fixture) the
 * same checks run on MongoDB, each store in a database of its own.
 *
 * They check what other tests and benchmarks rely on: the same seed gives
 * the same documents and bytes, a different seed does not, counts are
 * exact, every reference resolves, file bytes match their recorded
 * sha256 and list their transactions, and the category tree and rules
 * cover what they claim to.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_test.h"
#include "seed.h"
#include "store.h"

/* Enough for 15 files, extra categories and every account type; FerretDB
 * is an order of magnitude slower than SQLite, so the MongoDB run uses a
 * third of it (still several files of every format). */
#define TEST_N (getenv("FZIP_TEST_MONGODB_URI") ? 400 : 3000)
#define PATH_MAX_LEN 512
#define BLOB_MAX (4 * 1024 * 1024)
#define DEPTH_MAX 64

static char tmp_dir[PATH_MAX_LEN];
static int store_serial;

/* A fresh, empty store: a new SQLite file, or a new MongoDB database. */
static bool open_fresh(store_t **out, fzip_error_t *err) {
  char uri[PATH_MAX_LEN + 32], db[64];
  const char *mongo = getenv("FZIP_TEST_MONGODB_URI");
  store_options_t opt = {0};
  store_serial++;
  if (mongo && *mongo) {
    snprintf(db, sizeof db, "seed_%d_%d", (int)getpid(), store_serial);
    opt.uri = mongo;
    opt.database = db;
  } else {
    snprintf(uri, sizeof uri, "sqlite:%s/store%d.db", tmp_dir, store_serial);
    opt.uri = uri;
  }
  return store_open(out, &opt, err);
}

static const char *str_field(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

static int64_t int_field(const bson_t *doc, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_INT64(&it))
    return bson_iter_int64(&it);
  if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_INT32(&it))
    return bson_iter_int32(&it);
  return -1;
}

/* All documents of a kind copied into one bson_t keyed by entity id. */
static bool load_kind(bson_t *out, store_t *s, const char *user, fzip_kind_t kind,
                      fzip_error_t *err) {
  store_cursor_t *cur = NULL;
  const bson_t *doc;
  const char *id_field = fzip_kind_info(kind)->id_field;
  bson_init(out);
  if (!store_cursor_new(&cur, s, user, kind, NULL, err))
    return false;
  while (store_cursor_next(cur, &doc, err))
    BSON_APPEND_DOCUMENT(out, str_field(doc, id_field), doc);
  store_cursor_destroy(cur);
  return !fzip_error_is_set(err);
}

static bool lookup(bson_t *out, const bson_t *set, const char *id) {
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;
  if (!id || !bson_iter_init_find(&it, set, id) || !BSON_ITER_HOLDS_DOCUMENT(&it))
    return false;
  bson_iter_document(&it, &len, &data);
  return bson_init_static(out, data, len);
}

/* Compares every document of every kind and every file blob's digest. */
static bool same_dataset(bool *same, store_t *a, store_t *b, const char *user,
                         fzip_error_t *err) {
  *same = true;
  for (int k = 0; k < FZIP_KIND_COUNT && *same; k++) {
    store_cursor_t *ca = NULL, *cb = NULL;
    const bson_t *da, *db;
    if (!store_cursor_new(&ca, a, user, (fzip_kind_t)k, NULL, err) ||
        !store_cursor_new(&cb, b, user, (fzip_kind_t)k, NULL, err)) {
      store_cursor_destroy(ca);
      return false;
    }
    for (;;) {
      bool ha = store_cursor_next(ca, &da, err);
      bool hb = ha || !fzip_error_is_set(err) ? store_cursor_next(cb, &db, err) : false;
      if (fzip_error_is_set(err))
        break;
      if (ha && !bson_validate(da, BSON_VALIDATE_UTF8, NULL))
        *same = false; /* every string must be valid UTF-8 */
      if (ha != hb || (ha && !bson_equal(da, db)))
        *same = false;
      if (!ha || !hb || !*same)
        break;
      const char *key = k == FZIP_KIND_TRANSACTION_FILE ? str_field(da, "s3Key") : NULL;
      store_blob_info_t ia, ib;
      if (key && (!store_blob_stat(&ia, a, STORE_BUCKET_FILES, key, err) ||
                  !store_blob_stat(&ib, b, STORE_BUCKET_FILES, key, err)))
        break;
      if (key && (ia.size != ib.size || strcmp(ia.sha256, ib.sha256) != 0))
        *same = false;
    }
    store_cursor_destroy(ca);
    store_cursor_destroy(cb);
    if (fzip_error_is_set(err))
      return false;
  }
  return true;
}

static void test_same_seed_gives_identical_documents_and_blobs(void) {
  store_t *a = NULL, *b = NULL;
  fzip_error_t err = {0};
  seed_options_t opt = {.seed = 42, .transactions = TEST_N, .analytics = true};
  seed_stats_t sa, sb;
  bool same = false;
  CHECK_OK(open_fresh(&a, &err), err);
  CHECK_OK(open_fresh(&b, &err), err);
  CHECK_OK(seed_generate(&sa, a, "alice", &opt, &err), err);
  CHECK_OK(seed_generate(&sb, b, "alice", &opt, &err), err);
  CHECK(sa.file_bytes == sb.file_bytes && sa.files == sb.files);
  CHECK_OK(same_dataset(&same, a, b, "alice", &err), err);
  CHECK(same);
  store_destroy(a);
  store_destroy(b);
}

static void test_different_seed_gives_different_data(void) {
  store_t *a = NULL, *b = NULL;
  fzip_error_t err = {0};
  seed_options_t opt = {.seed = 42, .transactions = 500};
  bool same = true;
  CHECK_OK(open_fresh(&a, &err), err);
  CHECK_OK(open_fresh(&b, &err), err);
  CHECK_OK(seed_generate(NULL, a, "alice", &opt, &err), err);
  opt.seed = 43;
  CHECK_OK(seed_generate(NULL, b, "alice", &opt, &err), err);
  CHECK_OK(same_dataset(&same, a, b, "alice", &err), err);
  CHECK(!same);
  store_destroy(a);
  store_destroy(b);
}

static void test_counts_equal_requested_transactions(void) {
  static const uint64_t sizes[] = {0, 1, 7, 1234};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    store_t *s = NULL;
    fzip_error_t err = {0};
    seed_options_t opt = {.seed = 7, .transactions = sizes[i]};
    seed_stats_t st;
    uint64_t n = 0;
    CHECK_OK(open_fresh(&s, &err), err);
    CHECK_OK(seed_generate(&st, s, "bob", &opt, &err), err);
    CHECK(st.transactions == sizes[i]);
    CHECK_OK(store_entity_count(&n, s, "bob", FZIP_KIND_TRANSACTION, NULL, &err), err);
    CHECK(n == sizes[i]);
    CHECK_OK(store_entity_count(&n, s, "bob", FZIP_KIND_TRANSACTION_FILE, NULL, &err), err);
    CHECK(n == st.files);
    CHECK(sizes[i] == 0 || st.files >= 1);
    CHECK_OK(store_entity_count(&n, s, "bob", FZIP_KIND_ACCOUNT, NULL, &err), err);
    CHECK(n == st.accounts && n >= 6);
    CHECK_OK(store_entity_count(&n, s, "bob", FZIP_KIND_CATEGORY, NULL, &err), err);
    CHECK(n == st.categories);
    CHECK_OK(store_entity_count(&n, s, "bob", FZIP_KIND_ANALYTICS, NULL, &err), err);
    CHECK(n == 0);
    store_destroy(s);
  }
}

/* Every assignment names an existing category, and a rule-suggested one a
 * rule of that category. */
static bool assignments_resolve(const bson_t *txn, const bson_t *cats) {
  bson_iter_t it, arr, rules;
  bson_t c, a;
  bool primary_seen = false;
  const char *primary = str_field(txn, "primaryCategoryId");
  if (!bson_iter_init_find(&it, txn, "categories") || !bson_iter_recurse(&it, &arr))
    return false;
  while (bson_iter_next(&arr)) {
    const uint8_t *data;
    uint32_t len;
    bson_iter_document(&arr, &len, &data);
    if (!bson_init_static(&a, data, len) || !lookup(&c, cats, str_field(&a, "categoryId")))
      return false;
    primary_seen = primary_seen || strcmp(primary, str_field(&a, "categoryId")) == 0;
    int64_t conf = int_field(&a, "confidence");
    if (conf < 0 || conf > 100)
      return false;
    const char *rule = str_field(&a, "ruleId");
    bool found = rule == NULL;
    if (rule && bson_iter_init_find(&it, &c, "rules") && bson_iter_recurse(&it, &rules)) {
      while (bson_iter_next(&rules) && !found) {
        bson_t r;
        bson_iter_document(&rules, &len, &data);
        found = bson_init_static(&r, data, len) && strcmp(str_field(&r, "ruleId"), rule) == 0;
      }
    }
    if (!found)
      return false;
  }
  return primary_seen;
}

static void test_every_reference_resolves(void) {
  store_t *s = NULL;
  fzip_error_t err = {0};
  seed_options_t opt = {.seed = 9, .transactions = TEST_N, .analytics = true};
  bson_t accounts, cats, files, maps, f, acc;
  store_cursor_t *cur = NULL;
  const bson_t *doc;
  bson_iter_t it;
  uint64_t n = 0;
  CHECK_OK(open_fresh(&s, &err), err);
  CHECK_OK(seed_generate(NULL, s, "carol", &opt, &err), err);
  CHECK_OK(load_kind(&accounts, s, "carol", FZIP_KIND_ACCOUNT, &err), err);
  CHECK_OK(load_kind(&cats, s, "carol", FZIP_KIND_CATEGORY, &err), err);
  CHECK_OK(load_kind(&files, s, "carol", FZIP_KIND_TRANSACTION_FILE, &err), err);
  CHECK_OK(load_kind(&maps, s, "carol", FZIP_KIND_FILE_MAP, &err), err);
  /* accounts: default file map exists and is the account's own */
  CHECK(bson_iter_init(&it, &accounts));
  while (bson_iter_next(&it)) {
    bson_t a, m;
    CHECK(lookup(&a, &accounts, bson_iter_key(&it)));
    CHECK(lookup(&m, &maps, str_field(&a, "defaultFileMapId")));
    CHECK(strcmp(str_field(&m, "accountId"), bson_iter_key(&it)) == 0);
    CHECK(int_field(&a, "firstTransactionDate") <= int_field(&a, "lastTransactionDate"));
  }
  CHECK_OK(store_cursor_new(&cur, s, "carol", FZIP_KIND_TRANSACTION, NULL, &err), err);
  while (store_cursor_next(cur, &doc, &err)) {
    const char *account_id = str_field(doc, "accountId");
    int64_t date = int_field(doc, "date");
    CHECK(lookup(&acc, &accounts, account_id));
    CHECK(lookup(&f, &files, str_field(doc, "fileId")));
    CHECK(strcmp(str_field(&f, "accountId"), account_id) == 0);
    CHECK(strcmp(str_field(&f, "currency"), str_field(doc, "currency")) == 0);
    CHECK(date >= int_field(&acc, "firstTransactionDate"));
    CHECK(date <= int_field(&acc, "lastTransactionDate"));
    CHECK(assignments_resolve(doc, &cats));
    CHECK(seed_transaction_hash(account_id, date, str_field(doc, "amount"),
                                str_field(doc, "description")) ==
          int_field(doc, "transactionHash"));
    /* JPY has no minor unit */
    CHECK((strcmp(str_field(doc, "currency"), "JPY") == 0) ==
          (strchr(str_field(doc, "amount"), '.') == NULL));
    n++;
  }
  CHECK(!fzip_error_is_set(&err));
  CHECK(n == TEST_N);
  store_cursor_destroy(cur);
  CHECK_OK(store_cursor_new(&cur, s, "carol", FZIP_KIND_ANALYTICS, NULL, &err), err);
  for (n = 0; store_cursor_next(cur, &doc, &err); n++) {
    const char *a_id = str_field(doc, "accountId");
    CHECK(a_id == NULL || lookup(&acc, &accounts, a_id));
  }
  CHECK(n > 0 && !fzip_error_is_set(&err));
  store_cursor_destroy(cur);
  bson_destroy(&accounts);
  bson_destroy(&cats);
  bson_destroy(&files);
  bson_destroy(&maps);
  store_destroy(s);
}

static bool read_blob(char *buf, size_t cap, size_t *len, store_t *s, const char *id,
                      fzip_error_t *err) {
  store_blob_reader_t *r = NULL;
  size_t n = 0;
  *len = 0;
  if (!store_blob_reader_new(&r, s, STORE_BUCKET_FILES, id, 0, err))
    return false;
  do {
    if (!store_blob_reader_read(r, buf + *len, cap - *len, &n, err)) {
      store_blob_reader_destroy(r);
      return false;
    }
    *len += n;
  } while (n > 0 && *len < cap);
  store_blob_reader_destroy(r);
  return true;
}

static void test_file_bytes_match_their_digest_and_list_their_transactions(void) {
  store_t *s = NULL;
  fzip_error_t err = {0};
  seed_options_t opt = {.seed = 11, .transactions = TEST_N};
  seed_stats_t st;
  store_cursor_t *cur = NULL;
  const bson_t *doc;
  char *buf = malloc(BLOB_MAX + 1);
  char hex[FZIP_SHA256_HEX_LEN + 1];
  uint64_t total = 0, formats = 0;
  CHECK(buf);
  CHECK_OK(open_fresh(&s, &err), err);
  CHECK_OK(seed_generate(&st, s, "dave", &opt, &err), err);
  CHECK_OK(store_cursor_new(&cur, s, "dave", FZIP_KIND_TRANSACTION_FILE, NULL, &err), err);
  while (store_cursor_next(cur, &doc, &err)) {
    size_t len = 0;
    char key[PATH_MAX_LEN];
    const char *fmt = str_field(doc, "fileFormat");
    snprintf(key, sizeof key, "dave/%s", str_field(doc, "fileId"));
    CHECK(strcmp(str_field(doc, "s3Key"), key) == 0);
    CHECK_OK(read_blob(buf, BLOB_MAX, &len, s, key, &err), err);
    buf[len] = '\0';
    fzip_sha256_hex(hex, buf, len);
    CHECK(strcmp(hex, str_field(doc, "sha256")) == 0);
    CHECK((int64_t)len == int_field(doc, "fileSize"));
    total += len;
    formats |= strcmp(fmt, "csv") == 0 ? 1 : strcmp(fmt, "ofx") == 0 ? 2 : 4;
    if (strcmp(fmt, "ofx") == 0)
      CHECK(strncmp(buf, "OFXHEADER:100", 13) == 0 && strstr(buf, "</OFX>"));
    if (strcmp(fmt, "qif") == 0)
      CHECK(strncmp(buf, "!Type:", 6) == 0);
    /* each of the file's transactions appears in its bytes, by fitId */
    store_cursor_t *tc = NULL;
    const bson_t *t;
    int64_t listed = 0;
    CHECK_OK(store_cursor_new(&tc, s, "dave", FZIP_KIND_TRANSACTION, NULL, &err), err);
    while (store_cursor_next(tc, &t, &err)) {
      if (strcmp(str_field(t, "fileId"), str_field(doc, "fileId")) != 0)
        continue;
      /* QIF has no FITID field: look for its payee line instead */
      char needle[PATH_MAX_LEN * 2];
      if (strcmp(fmt, "qif") == 0)
        snprintf(needle, sizeof needle, "\nP%s\n", str_field(t, "description"));
      else
        snprintf(needle, sizeof needle, "%s", str_field(t, "fitId"));
      listed++;
      if (!strstr(buf, needle))
        listed = -1000000;
    }
    store_cursor_destroy(tc);
    CHECK(!fzip_error_is_set(&err));
    CHECK(listed == int_field(doc, "recordCount"));
  }
  CHECK(!fzip_error_is_set(&err));
  CHECK(total == st.file_bytes && total > 0);
  CHECK(formats == 7);
  store_cursor_destroy(cur);
  store_destroy(s);
  free(buf);
}

static void test_categories_form_deep_acyclic_tree_with_every_rule_kind(void) {
  static const char *const fields[] = {"description", "payee", "memo", "amount"};
  static const char *const conds[] = {"contains", "starts_with", "ends_with", "equals", "regex",
                                      "amount_greater", "amount_less", "amount_between"};
  store_t *s = NULL;
  fzip_error_t err = {0};
  seed_options_t opt = {.seed = 5, .transactions = TEST_N};
  bson_t cats, accounts;
  bson_iter_t it;
  int max_depth = 0, seen_fields = 0, seen_conds = 0, seen_types = 0;
  CHECK_OK(open_fresh(&s, &err), err);
  CHECK_OK(seed_generate(NULL, s, "erin", &opt, &err), err);
  CHECK_OK(load_kind(&cats, s, "erin", FZIP_KIND_CATEGORY, &err), err);
  CHECK(bson_iter_init(&it, &cats));
  while (bson_iter_next(&it)) {
    bson_t c, p;
    bson_iter_t rit, rules;
    int depth = 1;
    CHECK(lookup(&c, &cats, bson_iter_key(&it)));
    const char *parent = str_field(&c, "parentCategoryId");
    while (parent && depth <= DEPTH_MAX) {
      CHECK(lookup(&p, &cats, parent));
      CHECK(strcmp(str_field(&p, "type"), str_field(&c, "type")) == 0);
      parent = str_field(&p, "parentCategoryId");
      depth++;
    }
    CHECK(depth <= DEPTH_MAX); /* no cycle */
    if (depth > max_depth)
      max_depth = depth;
    CHECK(bson_iter_init_find(&rit, &c, "rules") && bson_iter_recurse(&rit, &rules));
    int n_rules = 0;
    char ids[8][32] = {{0}};
    while (bson_iter_next(&rules)) {
      const uint8_t *data;
      uint32_t len;
      bson_t r;
      bson_iter_document(&rules, &len, &data);
      CHECK(bson_init_static(&r, data, len));
      const char *rid = str_field(&r, "ruleId");
      CHECK(strlen(rid) == 13 && strncmp(rid, "rule_", 5) == 0);
      for (int k = 0; k < n_rules; k++)
        CHECK(strcmp(ids[k], rid) != 0);
      CHECK(n_rules < 8);
      snprintf(ids[n_rules++], sizeof ids[0], "%s", rid);
      for (int k = 0; k < 4; k++)
        if (strcmp(str_field(&r, "fieldToMatch"), fields[k]) == 0)
          seen_fields |= 1 << k;
      for (int k = 0; k < 8; k++)
        if (strcmp(str_field(&r, "condition"), conds[k]) == 0)
          seen_conds |= 1 << k;
      if (strcmp(str_field(&r, "condition"), "amount_between") == 0)
        CHECK(str_field(&r, "amountMin") && str_field(&r, "amountMax"));
    }
    CHECK(n_rules >= 1);
  }
  CHECK(max_depth >= 4);
  CHECK(seen_fields == 0xf);
  CHECK(seen_conds == 0xff);
  bson_destroy(&cats);
  CHECK_OK(load_kind(&accounts, s, "erin", FZIP_KIND_ACCOUNT, &err), err);
  CHECK(bson_iter_init(&it, &accounts));
  while (bson_iter_next(&it)) {
    static const char *const types[] = {"checking", "savings", "credit_card",
                                        "investment", "loan", "other"};
    bson_t a;
    CHECK(lookup(&a, &accounts, bson_iter_key(&it)));
    for (int k = 0; k < 6; k++)
      if (strcmp(str_field(&a, "accountType"), types[k]) == 0)
        seen_types |= 1 << k;
    CHECK(str_field(&a, "balance") && str_field(&a, "currency"));
  }
  CHECK(seen_types == 0x3f);
  bson_destroy(&accounts);
  store_destroy(s);
}

static void test_rerun_replaces_and_clean_removes_the_old_dataset(void) {
  store_t *s = NULL;
  fzip_error_t err = {0};
  seed_options_t opt = {.seed = 3, .transactions = 1500};
  uint64_t n = 0;
  CHECK_OK(open_fresh(&s, &err), err);
  CHECK_OK(seed_generate(NULL, s, "frank", &opt, &err), err);
  CHECK_OK(seed_generate(NULL, s, "frank", &opt, &err), err);
  CHECK_OK(store_entity_count(&n, s, "frank", FZIP_KIND_TRANSACTION, NULL, &err), err);
  CHECK(n == 1500);
  opt.seed = 4;
  opt.transactions = 300;
  opt.clean = true;
  CHECK_OK(seed_generate(NULL, s, "frank", &opt, &err), err);
  CHECK_OK(store_entity_count(&n, s, "frank", FZIP_KIND_TRANSACTION, NULL, &err), err);
  CHECK(n == 300);
  CHECK_OK(store_entity_count(&n, s, "frank", FZIP_KIND_TRANSACTION_FILE, NULL, &err), err);
  CHECK(n == 6);
  store_destroy(s);
}

/* --mutate reads every transaction across pages (more than one batch)
 * and rewrites exactly the ones it counts, memo only. */
static void test_mutate_pages_through_and_rewrites_what_it_counts(void) {
  store_t *s = NULL;
  fzip_error_t err = {0};
  seed_options_t opt = {.seed = 12, .transactions = STORE_BATCH_MAX + 500};
  seed_stats_t st;
  bson_t before, after;
  bson_iter_t it;
  uint64_t edited = 0, n = 0;
  CHECK_OK(open_fresh(&s, &err), err);
  CHECK_OK(seed_generate(NULL, s, "mia", &opt, &err), err);
  CHECK_OK(load_kind(&before, s, "mia", FZIP_KIND_TRANSACTION, &err), err);
  CHECK_OK(seed_mutate(&st, s, "mia", 5, 30.0, &err), err);
  CHECK(st.transactions_read == opt.transactions);
  CHECK(st.transactions > 0 && st.transactions < opt.transactions);
  CHECK_OK(load_kind(&after, s, "mia", FZIP_KIND_TRANSACTION, &err), err);
  bson_iter_init(&it, &after);
  while (bson_iter_next(&it)) {
    bson_t doc, old;
    const uint8_t *data;
    uint32_t len;
    bson_iter_document(&it, &len, &data);
    CHECK(bson_init_static(&doc, data, len));
    CHECK(lookup(&old, &before, bson_iter_key(&it)));
    n++;
    const char *memo = str_field(&doc, "memo"), *old_memo = str_field(&old, "memo");
    CHECK(memo != NULL);
    if (memo && strcmp(memo, old_memo ? old_memo : "") != 0) {
      edited++;
      CHECK(strncmp(memo, "edited ", 7) == 0);
      CHECK(int_field(&doc, "amount") == int_field(&old, "amount"));
    }
  }
  CHECK(n == opt.transactions && edited == st.transactions);
  bson_destroy(&before);
  bson_destroy(&after);
  store_destroy(s);
}

static void test_cli_seeds_a_store_and_rejects_bad_usage(void) {
  char uri[PATH_MAX_LEN + 32];
  char *help[] = {"seed", "--help", NULL};
  char *missing[] = {"seed", "--user", "gina", NULL};
  char *negative[] = {"seed", "--user", "gina", "--transactions", "-5", NULL};
  snprintf(uri, sizeof uri, "sqlite:%s/cli.db", tmp_dir);
  char *run[] = {"seed", "--store", uri, "--user=gina", "--transactions", "250",
                 "--seed", "99", "--quiet", NULL};
  store_t *s = NULL;
  store_options_t sopt = {.uri = uri};
  fzip_error_t err = {0};
  uint64_t n = 0;
  CHECK(seed_main(2, help) == 0);
  CHECK(seed_main(3, missing) == 2);
  CHECK(seed_main(5, negative) == 2);
  CHECK(seed_main(9, run) == 0);
  CHECK_OK(store_open(&s, &sopt, &err), err);
  CHECK_OK(store_entity_count(&n, s, "gina", FZIP_KIND_TRANSACTION, NULL, &err), err);
  CHECK(n == 250);
  store_destroy(s);
}

int main(int argc, char **argv) {
  const char *base = getenv("TMPDIR");
  snprintf(tmp_dir, sizeof tmp_dir, "%s/fzip-seed-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  RUN(test_same_seed_gives_identical_documents_and_blobs);
  RUN(test_different_seed_gives_different_data);
  RUN(test_counts_equal_requested_transactions);
  RUN(test_every_reference_resolves);
  RUN(test_file_bytes_match_their_digest_and_list_their_transactions);
  RUN(test_categories_form_deep_acyclic_tree_with_every_rule_kind);
  RUN(test_rerun_replaces_and_clean_removes_the_old_dataset);
  RUN(test_mutate_pages_through_and_rewrites_what_it_counts);
  if (!getenv("FZIP_TEST_MONGODB_URI"))
    RUN(test_cli_seeds_a_store_and_rejects_bad_usage);
  int rc = fzip_test_summary();
  char cmd[PATH_MAX_LEN + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  if (rc == 0 && system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmp_dir);
  return rc;
}
