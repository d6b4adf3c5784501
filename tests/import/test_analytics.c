/*
 * test_analytics: the analytics regenerated after an import (import/
 * analytics.c, analytics_table.c) on a real SQLite store in a temp file.
 * Crafted transactions with hand-computed expected values per type
 * (cash_flow, category_trends, payment_patterns, merchant_analysis), the
 * top-K cut with its "other" sums, determinism, unchanged records not
 * rewritten, the tag (a rollback takes the records away), records spread
 * over several write batches, the result's type list, merchant
 * normalisation and the table's limits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analytics.h"
#include "analytics_table.h"
#include "fzip_test.h"
#include "fzip_util.h"
#include "store.h"

#define USER "analytics-user"
#define CAT_COUNT (ANALYTICS_TOP_CATEGORIES + 5)

/* Noon UTC of the days the transactions fall on. */
#define D_2023_12_31 1704024000000LL /* Sunday */
#define D_2024_01_15 1705320000000LL /* Monday */
#define D_2024_01_20 1705752000000LL /* Saturday */
#define D_2024_01_31 1706702400000LL /* Wednesday */
#define D_2024_02_01 1706788800000LL /* Thursday */
#define D_2024_03_05 1709640000000LL /* Tuesday */
#define D_2024_05_10 1715342400000LL /* Friday */

static char g_db[256];

typedef struct {
  const char *id, *account, *amount, *currency, *category, *description;
  int64_t date;
} txn_spec_t;

static bson_t *txn_doc(const txn_spec_t *t) {
  bson_t *d = BCON_NEW("transactionId", BCON_UTF8(t->id), "accountId", BCON_UTF8(t->account),
                       "date", BCON_INT64(t->date), "amount", BCON_UTF8(t->amount),
                       "description", BCON_UTF8(t->description));
  if (t->currency)
    BSON_APPEND_UTF8(d, "currency", t->currency);
  if (t->category)
    BSON_APPEND_UTF8(d, "primaryCategoryId", t->category);
  return d;
}

static bool put_txns(store_t *s, const char *user, const txn_spec_t *t, size_t n,
                     fzip_error_t *err) {
  bson_t *docs[STORE_BATCH_MAX];
  bool ok;

  for (size_t i = 0; i < n; i++)
    docs[i] = txn_doc(&t[i]);
  ok = store_entity_put_batch(s, user, FZIP_KIND_TRANSACTION, (const bson_t *const *)docs, n,
                              STORE_WRITE_REPLACE, NULL, err);
  for (size_t i = 0; i < n; i++)
    bson_destroy(docs[i]);
  return ok;
}

/* Regenerates under import `tag` and commits it, as an import does. */
static bool regenerate(uint32_t *types, store_t *s, const char *user, const char *tag,
                       fzip_error_t *err) {
  uint64_t forgotten = 0;
  return store_import_begin(s, user, tag, err) && analytics_regenerate(types, s, user, tag, err) &&
         store_import_commit(&forgotten, s, user, tag, NULL, NULL, err);
}

/* The string at a dotted path ("data.categories.0.categoryId"), or NULL. */
static const char *str_at(const bson_t *doc, const char *path) {
  bson_iter_t it, sub;
  if (!bson_iter_init(&it, doc) || !bson_iter_find_descendant(&it, path, &sub) ||
      !BSON_ITER_HOLDS_UTF8(&sub))
    return NULL;
  return bson_iter_utf8(&sub, NULL);
}

/* The integer at a dotted path, or -12345 when absent. */
static int64_t int_at(const bson_t *doc, const char *path) {
  bson_iter_t it, sub;
  if (!bson_iter_init(&it, doc) || !bson_iter_find_descendant(&it, path, &sub))
    return -12345;
  if (BSON_ITER_HOLDS_INT64(&sub))
    return bson_iter_int64(&sub);
  if (BSON_ITER_HOLDS_INT32(&sub))
    return bson_iter_int32(&sub);
  return -12345;
}

static bool has(const bson_t *doc, const char *path) {
  bson_iter_t it, sub;
  return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &sub);
}

static bool str_is(const bson_t *doc, const char *path, const char *want) {
  const char *got = str_at(doc, path);
  if (got && strcmp(got, want) == 0)
    return true;
  fprintf(stderr, "  %s = %s, want %s\n", path, got ? got : "(absent)", want);
  return false;
}

/* inflow, outflow, net, transactionCount of the object at `path`. */
static bool sums_are(const bson_t *doc, const char *path, const char *in, const char *out,
                     const char *net, int64_t count) {
  char p[256];
  bool ok = true;
  snprintf(p, sizeof p, "%s.inflow", path);
  ok = str_is(doc, p, in) && ok;
  snprintf(p, sizeof p, "%s.outflow", path);
  ok = str_is(doc, p, out) && ok;
  snprintf(p, sizeof p, "%s.net", path);
  ok = str_is(doc, p, net) && ok;
  snprintf(p, sizeof p, "%s.transactionCount", path);
  if (int_at(doc, p) != count) {
    fprintf(stderr, "  %s = %lld, want %lld\n", p, (long long)int_at(doc, p), (long long)count);
    ok = false;
  }
  return ok;
}

static const txn_spec_t crafted[] = {
    {"t1", "acc-a", "-12.50", "USD", "cat-food", "Whole Foods Market #0001", D_2024_01_15},
    {"t2", "acc-a", "-7.25", "USD", "cat-food", "  WHOLE   FOODS market #0002 ", D_2024_01_20},
    {"t3", "acc-a", "2500.00", "USD", "cat-salary", "ACME Payroll", D_2024_01_31},
    {"t4", "acc-a", "-100.005", "USD", NULL, "Maple Street Apartments", D_2024_02_01},
    {"t5", "acc-b", "-3.10", "EUR", "cat-food", "Carrefour Market", D_2024_01_15},
    {"t6", "acc-a", "0.1", NULL, NULL, "Interest", D_2024_03_05},
    {"t7", "acc-a", "-1", "USD", "cat-food", "Tesco 12/31", D_2023_12_31},
};
#define CRAFTED (sizeof crafted / sizeof crafted[0])

static store_t *g_store;
static bson_t *g_rec; /* the record load() fetched last */

/* Fetches one analytics record of `user` into g_rec. */
static bool load(const char *user, const char *id) {
  fzip_error_t err;
  bson_destroy(g_rec);
  g_rec = NULL;
  fzip_error_clear(&err);
  if (store_entity_get(&g_rec, g_store, user, FZIP_KIND_ANALYTICS, id, &err))
    return true;
  fprintf(stderr, "  record %s: %s\n", id, err.message);
  return false;
}

static void test_regenerate_writes_every_derivable_type(void) {
  fzip_error_t err;
  uint32_t types = 0;

  fzip_error_clear(&err);
  CHECK_OK(put_txns(g_store, USER, crafted, CRAFTED, &err), err);
  CHECK_OK(regenerate(&types, g_store, USER, "imp-1", &err), err);
  CHECK(types == (1u << analytics_type_count()) - 1);
  CHECK(analytics_type_count() == 4);
  CHECK(strcmp(analytics_type_name(0), "cash_flow") == 0);
  CHECK(strcmp(analytics_type_name(1), "category_trends") == 0);
  CHECK(strcmp(analytics_type_name(2), "payment_patterns") == 0);
  CHECK(strcmp(analytics_type_name(3), "merchant_analysis") == 0);
  CHECK(analytics_type_name(4) == NULL);
}

static void test_cash_flow_is_per_account_and_month(void) {
  CHECK(load(USER, "cash_flow#2024-01#acc-a"));
  CHECK(str_is(g_rec, "analyticType", "cash_flow") && str_is(g_rec, "timePeriod", "2024-01") &&
        str_is(g_rec, "accountId", "acc-a") &&
        sums_are(g_rec, "data", "2500.00", "19.75", "2480.25", 3) &&
        int_at(g_rec, "dataThroughDate") == D_2024_01_31 && !has(g_rec, "data.currency"));
  CHECK(load(USER, "cash_flow#2024-03#acc-a"));
  CHECK(sums_are(g_rec, "data", "0.10", "0.00", "0.10", 1));
}

static void test_category_trends_rank_categories_per_month_and_currency(void) {
  CHECK(load(USER, "category_trends#2024-01#USD"));
  /* food spent more than salary (which only received): food first. */
  CHECK(str_is(g_rec, "timePeriod", "2024-01") && str_is(g_rec, "data.currency", "USD") &&
        !has(g_rec, "accountId") && str_is(g_rec, "data.categories.0.categoryId", "cat-food") &&
        sums_are(g_rec, "data.categories.0", "0.00", "19.75", "-19.75", 2) &&
        /* the trend: food spent 1.00 in December 2023 (t7) */
        str_is(g_rec, "data.categories.0.previousOutflow", "1.00") &&
        str_is(g_rec, "data.categories.1.previousOutflow", "0.00") &&
        str_is(g_rec, "data.categories.1.categoryId", "cat-salary") &&
        sums_are(g_rec, "data.categories.1", "2500.00", "0.00", "2500.00", 1) &&
        !has(g_rec, "data.categories.2") && int_at(g_rec, "data.categoryCount") == 2 &&
        !has(g_rec, "data.uncategorized") && !has(g_rec, "data.other") &&
        int_at(g_rec, "dataThroughDate") == D_2024_01_31);

  CHECK(load(USER, "category_trends#2024-01#EUR"));
  CHECK(str_is(g_rec, "data.currency", "EUR") &&
        sums_are(g_rec, "data.categories.0", "0.00", "3.10", "-3.10", 1));

  /* No primary category: "uncategorized", outside the list. */
  CHECK(load(USER, "category_trends#2024-02#USD"));
  CHECK(sums_are(g_rec, "data.uncategorized", "0.00", "100.005", "-100.005", 1) &&
        str_is(g_rec, "data.uncategorized.previousOutflow", "0.00") &&
        !has(g_rec, "data.categories.0") && int_at(g_rec, "data.categoryCount") == 0);

  /* No currency: the record has no currency in its id or data. */
  CHECK(load(USER, "category_trends#2024-03"));
  CHECK(!has(g_rec, "data.currency") && sums_are(g_rec, "data.uncategorized", "0.10", "0.00", "0.10", 1));
}

static void test_payment_patterns_by_weekday_and_day_of_month(void) {
  CHECK(load(USER, "payment_patterns#2024#USD"));
  CHECK(str_is(g_rec, "timePeriod", "2024") && str_is(g_rec, "data.byWeekday.0.weekday", "monday") &&
        sums_are(g_rec, "data.byWeekday.0", "0.00", "12.50", "-12.50", 1) &&
        sums_are(g_rec, "data.byWeekday.1", "0.00", "0.00", "0.00", 0) &&
        sums_are(g_rec, "data.byWeekday.2", "2500.00", "0.00", "2500.00", 1) &&
        sums_are(g_rec, "data.byWeekday.3", "0.00", "100.005", "-100.005", 1) &&
        sums_are(g_rec, "data.byWeekday.5", "0.00", "7.25", "-7.25", 1) &&
        str_is(g_rec, "data.byWeekday.6.weekday", "sunday") && !has(g_rec, "data.byWeekday.7") &&
        int_at(g_rec, "data.byDayOfMonth.0.day") == 1 &&
        sums_are(g_rec, "data.byDayOfMonth.0", "0.00", "100.005", "-100.005", 1) &&
        sums_are(g_rec, "data.byDayOfMonth.14", "0.00", "12.50", "-12.50", 1) &&
        sums_are(g_rec, "data.byDayOfMonth.19", "0.00", "7.25", "-7.25", 1) &&
        int_at(g_rec, "data.byDayOfMonth.30.day") == 31 &&
        sums_are(g_rec, "data.byDayOfMonth.30", "2500.00", "0.00", "2500.00", 1) &&
        !has(g_rec, "data.byDayOfMonth.31"));
  CHECK(load(USER, "payment_patterns#2023#USD"));
  CHECK(sums_are(g_rec, "data.byWeekday.6", "0.00", "1.00", "-1.00", 1) &&
        sums_are(g_rec, "data.byDayOfMonth.30", "0.00", "1.00", "-1.00", 1));
}

static void test_merchant_analysis_ranks_normalised_descriptions(void) {
  CHECK(load(USER, "merchant_analysis#overall#USD"));
  CHECK(str_is(g_rec, "timePeriod", "overall") &&
        str_is(g_rec, "data.merchants.0.merchant", "maple street apartments") &&
        str_is(g_rec, "data.merchants.1.merchant", "whole foods market") &&
        sums_are(g_rec, "data.merchants.1", "0.00", "19.75", "-19.75", 2) &&
        int_at(g_rec, "data.merchants.1.firstDate") == D_2024_01_15 &&
        int_at(g_rec, "data.merchants.1.lastDate") == D_2024_01_20 &&
        str_is(g_rec, "data.merchants.2.merchant", "tesco") &&
        str_is(g_rec, "data.merchants.3.merchant", "acme payroll") &&
        sums_are(g_rec, "data.merchants.3", "2500.00", "0.00", "2500.00", 1) &&
        !has(g_rec, "data.merchants.4") && int_at(g_rec, "data.merchantCount") == 4 &&
        int_at(g_rec, "dataThroughDate") == D_2024_02_01);
}

/* More categories in a month than a record lists: the top ones by the
 * documented rank, the rest summed as "other". */
static void test_category_trends_cut_at_top_k_with_other(void) {
  txn_spec_t t[CAT_COUNT];
  char ids[CAT_COUNT][16], cats[CAT_COUNT][16], amounts[CAT_COUNT][16];
  fzip_error_t err;
  uint32_t types = 0;
  const char *user = "analytics-topk";

  fzip_error_clear(&err);
  for (int i = 0; i < CAT_COUNT; i++) {
    snprintf(ids[i], sizeof ids[i], "k%03d", i);
    snprintf(cats[i], sizeof cats[i], "c%03d", i);
    /* Category i spends i+1 units: c104 ranks first, c000..c004 are cut. */
    snprintf(amounts[i], sizeof amounts[i], "-%d.00", i + 1);
    t[i] = (txn_spec_t){ids[i], "acc-k", amounts[i], "GBP", cats[i], "Shop", D_2024_05_10};
  }
  CHECK_OK(put_txns(g_store, user, t, CAT_COUNT, &err), err);
  CHECK_OK(regenerate(&types, g_store, user, "imp-topk", &err), err);
  CHECK(load(user, "category_trends#2024-05#GBP"));
  CHECK(str_is(g_rec, "data.categories.0.categoryId", "c104") &&
        str_is(g_rec, "data.categories.99.categoryId", "c005") &&
        !has(g_rec, "data.categories.100") && int_at(g_rec, "data.categoryCount") == CAT_COUNT &&
        int_at(g_rec, "data.other.categoryCount") == 5 &&
        /* 1+2+3+4+5 */
        sums_are(g_rec, "data.other", "0.00", "15.00", "-15.00", 5));
}

/* An account id long enough that "cash_flow#YYYY-MM#<id>" would pass
 * FZIP_ID_MAX: the record is named by the id's SHA-256 (the store refuses
 * longer ids, which would fail the whole import). */
static void test_long_account_id_names_cash_flow_by_digest(void) {
  char account[FZIP_ID_MAX + 1], hex[FZIP_SHA256_HEX_LEN + 1], id[FZIP_ID_MAX + 1];
  const char *user = "analytics-long-id";
  txn_spec_t t = {"l1", account, "-5", "USD", NULL, "Shop", D_2024_05_10};
  fzip_error_t err;
  uint32_t types = 0;

  fzip_error_clear(&err);
  memset(account, 'a', FZIP_ID_MAX);
  account[FZIP_ID_MAX] = '\0';
  fzip_sha256_hex(hex, account, FZIP_ID_MAX);
  snprintf(id, sizeof id, "cash_flow#2024-05#~%s", hex);
  CHECK_OK(put_txns(g_store, user, &t, 1, &err), err);
  CHECK_OK(regenerate(&types, g_store, user, "imp-long", &err), err);
  CHECK(types == 0xF);
  CHECK(load(user, id));
  CHECK(str_is(g_rec, "accountId", account) && sums_are(g_rec, "data", "0.00", "5.00", "-5.00", 1));
}

/* A date past year 9999 keeps its whole year in the period (the old
 * cash_flow cut it to four digits). */
static void test_year_past_9999_keeps_its_digits(void) {
  const char *user = "analytics-far";
  /* 12000-03-15 12:00 UTC */
  txn_spec_t t = {"f1", "acc-f", "7.5", "USD", NULL, "Shop", 316522641600000LL};
  fzip_error_t err;
  uint32_t types = 0;

  fzip_error_clear(&err);
  CHECK_OK(put_txns(g_store, user, &t, 1, &err), err);
  CHECK_OK(regenerate(&types, g_store, user, "imp-far", &err), err);
  CHECK(load(user, "cash_flow#12000-03#acc-f"));
  CHECK(str_is(g_rec, "timePeriod", "12000-03"));
  CHECK(load(user, "payment_patterns#12000#USD"));
  CHECK(sums_are(g_rec, "data.byDayOfMonth.14", "7.50", "0.00", "7.50", 1));
}

/* Same transactions, same records (but computedDate). */
static void test_regenerate_is_deterministic(void) {
  fzip_error_t err;
  uint32_t types = 0;
  const char *ids[] = {"category_trends#2024-01#USD", "payment_patterns#2024#USD",
                       "merchant_analysis#overall#USD", "cash_flow#2024-01#acc-a"};
  bson_t before[4], after;
  int n = 0;
  bool same = true;

  fzip_error_clear(&err);
  for (; n < 4 && load(USER, ids[n]); n++) {
    bson_init(&before[n]);
    bson_copy_to_excluding_noinit(g_rec, &before[n], "computedDate", NULL);
  }
  if (n == 4 && !regenerate(&types, g_store, USER, "imp-2", &err)) {
    fprintf(stderr, "  regenerate: %s\n", err.message);
    same = false;
  }
  for (int i = 0; i < n; i++) {
    if (same && load(USER, ids[i])) {
      bson_init(&after);
      bson_copy_to_excluding_noinit(g_rec, &after, "computedDate", NULL);
      if (!bson_equal(&after, &before[i])) {
        fprintf(stderr, "  %s changed between two runs\n", ids[i]);
        same = false;
      }
      bson_destroy(&after);
    }
    bson_destroy(&before[i]);
  }
  CHECK(n == 4 && same);
}

/* The analytics records of `user` carrying import `tag`, or -1. */
static int64_t tagged_records(const char *user, const char *tag) {
  store_import_marks_t m;
  fzip_error_t err;

  fzip_error_clear(&err);
  if (store_import_marks(&m, g_store, user, tag, &err))
    return (int64_t)m.tagged[FZIP_KIND_ANALYTICS];
  fprintf(stderr, "  marks of %s: %s\n", tag, err.message);
  return -1;
}

/* A record equal but for computedDate is not written again: a second run
 * over the same transactions writes nothing (the records keep the first
 * run's tag and computedDate), and a changed transaction rewrites only the
 * records it is part of (t6: the records without a currency, 4 of them). */
static void test_only_changed_records_are_written(void) {
  fzip_error_t err;
  uint32_t types = 0;
  int64_t first = tagged_records(USER, "imp-1"), computed;
  txn_spec_t t6 = crafted[5];

  fzip_error_clear(&err);
  CHECK(first > 4);
  CHECK(load(USER, "cash_flow#2024-01#acc-a"));
  computed = int_at(g_rec, "computedDate");
  CHECK_OK(regenerate(&types, g_store, USER, "imp-same", &err), err);
  CHECK(types == 0xF);
  CHECK(tagged_records(USER, "imp-same") == 0);
  CHECK(tagged_records(USER, "imp-1") == first);
  CHECK(load(USER, "cash_flow#2024-01#acc-a") && int_at(g_rec, "computedDate") == computed);

  CHECK(strcmp(t6.id, "t6") == 0);
  t6.amount = "0.3";
  CHECK_OK(put_txns(g_store, USER, &t6, 1, &err), err);
  CHECK_OK(regenerate(&types, g_store, USER, "imp-t6", &err), err);
  CHECK(tagged_records(USER, "imp-t6") == 4);
  CHECK(tagged_records(USER, "imp-1") == first - 4);
  CHECK(load(USER, "cash_flow#2024-03#acc-a"));
  CHECK(sums_are(g_rec, "data", "0.30", "0.00", "0.30", 1));
  CHECK(load(USER, "merchant_analysis#overall"));
  CHECK(sums_are(g_rec, "data.merchants.0", "0.30", "0.00", "0.30", 1));
  CHECK(load(USER, "cash_flow#2024-01#acc-a") && int_at(g_rec, "computedDate") == computed);
}

/* The records are the import's writes: a rollback takes them away. */
static void test_records_roll_back_with_the_import(void) {
  const char *user = "analytics-rollback";
  fzip_error_t err;
  uint32_t types = 0;
  store_rollback_stats_t st;
  bson_t *doc = NULL;

  fzip_error_clear(&err);
  memset(&st, 0, sizeof st);
  CHECK_OK(put_txns(g_store, user, crafted, CRAFTED, &err), err);
  CHECK_OK(store_import_begin(g_store, user, "imp-rb", &err), err);
  CHECK_OK(analytics_regenerate(&types, g_store, user, "imp-rb", &err), err);
  CHECK(types == 0xF);
  CHECK_OK(store_import_rollback(&st, g_store, user, "imp-rb", NULL, NULL, &err), err);
  CHECK_FAILS(store_entity_get(&doc, g_store, user, FZIP_KIND_ANALYTICS,
                               "merchant_analysis#overall#USD", &err),
              err, FZIP_ERR_NOT_FOUND);
  CHECK_FAILS(store_entity_get(&doc, g_store, user, FZIP_KIND_ANALYTICS,
                               "cash_flow#2024-01#acc-a", &err),
              err, FZIP_ERR_NOT_FOUND);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

#define SPREAD_MONTHS 120
#define SPREAD_CATS ANALYTICS_TOP_CATEGORIES

/* Ten years of months, each listing a full top-K of categories: the
 * category_trends records (~12 KiB each) pass ANALYTICS_BATCH_BYTES, so
 * they are written in more than one batch, and every one is there. */
static void test_records_past_one_write_batch_are_all_written(void) {
  enum { N = SPREAD_MONTHS * SPREAD_CATS };
  static txn_spec_t t[N];
  static char ids[N][16], cats[SPREAD_CATS][16];
  fzip_error_t err;
  uint32_t types = 0;
  size_t bytes = 0;
  const char *user = "analytics-spread";

  fzip_error_clear(&err);
  for (int c = 0; c < SPREAD_CATS; c++)
    snprintf(cats[c], sizeof cats[c], "c%03d", c);
  for (int m = 0; m < SPREAD_MONTHS; m++) {
    int64_t noon = (days_from_civil(2010 + m / 12, m % 12 + 1, 10) * 86400 + 43200) * 1000;
    for (int c = 0; c < SPREAD_CATS; c++) {
      int i = m * SPREAD_CATS + c;
      snprintf(ids[i], sizeof ids[i], "s%06d", i);
      t[i] = (txn_spec_t){ids[i], "acc-s", "-1.00", "USD", cats[c], "Shop", noon};
    }
  }
  for (size_t at = 0; at < N; at += STORE_BATCH_MAX)
    CHECK_OK(put_txns(g_store, user, t + at, N - at < STORE_BATCH_MAX ? N - at : STORE_BATCH_MAX,
                      &err),
             err);
  CHECK_OK(regenerate(&types, g_store, user, "imp-spread", &err), err);
  for (int m = 0; m < SPREAD_MONTHS; m++) {
    char id[64];
    snprintf(id, sizeof id, "category_trends#%04d-%02d#USD", 2010 + m / 12, m % 12 + 1);
    CHECK(load(user, id));
    if (!g_rec)
      return;
    CHECK(int_at(g_rec, "data.categoryCount") == SPREAD_CATS);
    bytes += g_rec->len;
  }
  /* Otherwise the test would not cross a batch border. */
  CHECK(bytes > ANALYTICS_BATCH_BYTES);
}

static void test_fill_result_lists_the_regenerated_types(void) {
  Fzip__V1__ImportResult res = FZIP__V1__IMPORT_RESULT__INIT;

  CHECK(analytics_fill_result(&res, 0xF));
  CHECK(res.analytics_regenerated && res.n_analytics_types == 4);
  CHECK(strcmp(res.analytics_types[3], "merchant_analysis") == 0);
  /* Replaces the list of an earlier run. */
  CHECK(analytics_fill_result(&res, 1u | 4u));
  CHECK(!res.analytics_regenerated && res.n_analytics_types == 2);
  CHECK(strcmp(res.analytics_types[0], "cash_flow") == 0);
  CHECK(strcmp(res.analytics_types[1], "payment_patterns") == 0);
  CHECK(analytics_fill_result(&res, 0));
  CHECK(!res.analytics_regenerated && res.n_analytics_types == 0 && !res.analytics_types);
}

static bool merchant_is(const char *description, const char *want) {
  char out[ANALYTICS_MERCHANT_MAX];
  size_t n = analytics_merchant_of(out, description);
  if (n == strlen(want) && strcmp(out, want) == 0)
    return true;
  fprintf(stderr, "  merchant of \"%s\" = \"%s\", want \"%s\"\n", description, out, want);
  return false;
}

static void test_merchant_of_normalises_descriptions(void) {
  char long_2byte[200] = "", long_3byte[200] = "", out[ANALYTICS_MERCHANT_MAX];

  CHECK(merchant_is("Whole Foods Market #1234", "whole foods market"));
  CHECK(merchant_is("  AMAZON\tMktp  12/03 ", "amazon mktp"));
  CHECK(merchant_is("7-Eleven 0042", "7-eleven"));
  CHECK(merchant_is("イオン 幕張店 #12", "イオン 幕張店"));
  CHECK(merchant_is("Żabka", "Żabka")); /* non-ASCII kept as written */
  CHECK(merchant_is("#0421 12.50", ""));
  CHECK(merchant_is("", ""));
  CHECK(analytics_merchant_of(out, NULL) == 0);
  /* 40 two-byte characters: 63 bytes would split the 32nd, so 31 stay. */
  for (int i = 0; i < 40; i++)
    strcat(long_2byte, "é");
  CHECK(analytics_merchant_of(out, long_2byte) == 62);
  /* 30 three-byte characters: exactly 21 fit in 63 bytes. */
  for (int i = 0; i < 30; i++)
    strcat(long_3byte, "幕");
  CHECK(analytics_merchant_of(out, long_3byte) == 63);
  /* A cut right after a word leaves no trailing space. */
  CHECK(analytics_merchant_of(out, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b") == 62);
}

static void test_decimals_round_trip_exactly(void) {
  int64_t u = 0;
  char s[48];

  CHECK(analytics_parse_decimal(&u, "-100.005") && u == -100005000);
  analytics_format_decimal(s, sizeof s, u);
  CHECK(strcmp(s, "-100.005") == 0);
  CHECK(analytics_parse_decimal(&u, "0.1") && u == 100000);
  analytics_format_decimal(s, sizeof s, u);
  CHECK(strcmp(s, "0.10") == 0);
  CHECK(!analytics_parse_decimal(&u, "1e5"));
  CHECK(!analytics_parse_decimal(&u, "99999999999999999"));
}

static void test_table_refuses_past_its_limits(void) {
  analytics_table_t *t = NULL;
  fzip_error_t err;
  const analytics_bucket_t **v = NULL;
  size_t n = 0;
  bool ok;

  fzip_error_clear(&err);
  CHECK_OK(analytics_table_new(&t, 2, &err), err);
  ok = analytics_table_tally(t, "b", 5, 10) == ANALYTICS_TALLY_OK &&
       analytics_table_tally(t, "a", -3, 20) == ANALYTICS_TALLY_OK &&
       analytics_table_tally(t, "a", 1, 5) == ANALYTICS_TALLY_OK &&
       /* a third key */
       analytics_table_tally(t, "c", 1, 5) == ANALYTICS_TALLY_LIMIT &&
       /* the absolute total past int64 */
       analytics_table_tally(t, "a", INT64_MAX - 5, 5) == ANALYTICS_TALLY_LIMIT &&
       analytics_table_size(t) == 2 && analytics_table_sorted(&v, &n, t, &err) && n == 2 &&
       strcmp(v[0]->key, "a") == 0 && v[0]->inflow == 1 && v[0]->outflow == 3 &&
       v[0]->count == 2 && v[0]->first_date == 5 && v[0]->last_date == 20 &&
       strcmp(v[1]->key, "b") == 0;
  free(v);
  analytics_table_destroy(t);
  CHECK(ok);
}

/* A store in a new temp file (g_db); NULL, said on stderr, on failure. */
static store_t *open_temp_store(void) {
  char uri[sizeof g_db + 8];
  store_options_t opts = {.uri = uri};
  store_t *s = NULL;
  fzip_error_t err;

  fzip_error_clear(&err);
  if (!fzip_test_temp_file(g_db, sizeof g_db, "analytics"))
    return NULL;
  snprintf(uri, sizeof uri, "sqlite:%s", g_db);
  if (!store_open(&s, &opts, &err))
    fprintf(stderr, "store: %s\n", err.message);
  return s;
}

int main(void) {
  if (!(g_store = open_temp_store()))
    return 2;
  RUN(test_regenerate_writes_every_derivable_type);
  RUN(test_cash_flow_is_per_account_and_month);
  RUN(test_category_trends_rank_categories_per_month_and_currency);
  RUN(test_payment_patterns_by_weekday_and_day_of_month);
  RUN(test_merchant_analysis_ranks_normalised_descriptions);
  RUN(test_category_trends_cut_at_top_k_with_other);
  RUN(test_long_account_id_names_cash_flow_by_digest);
  RUN(test_year_past_9999_keeps_its_digits);
  RUN(test_regenerate_is_deterministic);
  RUN(test_only_changed_records_are_written);
  RUN(test_records_roll_back_with_the_import);
  RUN(test_records_past_one_write_batch_are_all_written);
  RUN(test_fill_result_lists_the_regenerated_types);
  RUN(test_merchant_of_normalises_descriptions);
  RUN(test_decimals_round_trip_exactly);
  RUN(test_table_refuses_past_its_limits);
  bson_destroy(g_rec);
  store_destroy(g_store);
  fzip_test_remove_sqlite(g_db);
  return fzip_test_summary();
}
