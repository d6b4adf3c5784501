/* analytics: see analytics.h.
 *
 * Keys.  Each generator tallies into its own analytics_table under keys
 * "<period>\x1f<qualifier>\x1f<member>": the period ("YYYY-MM", "YYYY" or
 * "overall"), the qualifier (the account for cash_flow, the currency for
 * the others, "" for a transaction without a currency) and the member
 * within a record (a category id, a weekday or day-of-month slot, a
 * merchant; "" for cash_flow).  One record is one (period, qualifier): its
 * buckets are contiguous once sorted by key, so every type is written by
 * the same loop over one sorted array, and lists inside a record are
 * ranked by a total order (rank_cmp), never by table order.
 */
#include "analytics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analytics_table.h"
#include "fzip_entity.h"
#include "fzip_failpoint.h"
#include "fzip_log.h"
#include "fzip_util.h"
#include "import_feed.h"
#include "pkg_diff.h"

#define SEP '\x1f'
#define PERIOD_MAX 16 /* "YYYY-MM" (any int year gmtime gives), "overall", and the NUL */
#define OVERALL "overall"
/* period, qualifier and member with their separators and NUL. */
#define KEY_MAX (PERIOD_MAX + FZIP_ID_MAX + FZIP_ID_MAX + 3)
/* "<type>#<period>#<qualifier>". */
#define TYPE_MAX 24
#define RECORD_ID_MAX (TYPE_MAX + PERIOD_MAX + FZIP_ID_MAX + 3)
/* A decimal amount: an int64 of minor units with sign and point. */
#define DECIMAL_MAX 48
#define MEMBER_MAX 8 /* "w1".."w7", "d01".."d31" */
#define WEEKDAYS 7
#define MONTH_DAYS 31

/* ---- decimals ------------------------------------------------------------ */

bool analytics_parse_decimal(int64_t *out, const char *s) {
  int64_t whole = 0, frac = 0;
  int digits = 0, frac_digits = 0;
  bool neg = false;

  if (!s || !*s)
    return false;
  if (*s == '-' || *s == '+')
    neg = *s++ == '-';
  for (; *s >= '0' && *s <= '9'; s++, digits++) {
    if (whole > (INT64_MAX / 10 - 9) / 1000000)
      return false;
    whole = whole * 10 + (*s - '0');
  }
  if (*s == '.') {
    for (s++; *s >= '0' && *s <= '9'; s++) {
      if (frac_digits < ANALYTICS_SCALE_DIGITS) {
        frac = frac * 10 + (*s - '0');
        frac_digits++;
      }
      digits++;
    }
  }
  if (*s || digits == 0)
    return false;
  for (; frac_digits < ANALYTICS_SCALE_DIGITS; frac_digits++)
    frac *= 10;
  *out = (whole * 1000000 + frac) * (neg ? -1 : 1);
  return true;
}

void analytics_format_decimal(char *out, size_t cap, int64_t units) {
  uint64_t a = units < 0 ? (uint64_t)(-(units + 1)) + 1 : (uint64_t)units;
  uint64_t frac = a % 1000000;
  int keep = 6;

  while (keep > 2 && frac % 10 == 0) {
    frac /= 10;
    keep--;
  }
  snprintf(out, cap, "%s%" PRIu64 ".%0*" PRIu64, units < 0 ? "-" : "", a / 1000000, keep, frac);
}

/* ---- merchants ----------------------------------------------------------- */

static bool is_space(unsigned char c) { return c <= ' ' || c == 0x7f; }

/* A token names something when it has a letter or a non-ASCII byte. */
static bool names_something(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
      return true;
  }
  return false;
}

/* The length of s[0..len) without a last UTF-8 sequence cut short. */
static size_t utf8_whole(const char *s, size_t len) {
  size_t lead = len;
  unsigned char c;
  size_t want;

  while (lead && ((unsigned char)s[lead - 1] & 0xC0) == 0x80)
    lead--;
  if (!lead || (c = (unsigned char)s[lead - 1]) < 0xC0)
    return len;
  want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  return len - (lead - 1) < want ? lead - 1 : len;
}

size_t analytics_merchant_of(char out[ANALYTICS_MERCHANT_MAX], const char *description) {
  const char *s = description ? description : "";
  size_t len = 0, cap = ANALYTICS_MERCHANT_MAX - 1;

  while (*s && len < cap) {
    const char *tok;
    size_t n;
    while (*s && is_space((unsigned char)*s))
      s++;
    for (tok = s; *s && !is_space((unsigned char)*s); s++)
      ;
    n = (size_t)(s - tok);
    if (!n || !names_something(tok, n))
      continue;
    if (len)
      out[len++] = ' ';
    for (size_t i = 0; i < n && len < cap; i++) {
      char c = tok[i];
      out[len++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
  }
  len = utf8_whole(out, len); /* the cap may have cut the last character */
  while (len && out[len - 1] == ' ')
    len--;
  out[len] = '\0';
  return len;
}

/* ---- one transaction ------------------------------------------------------- */

typedef struct {
  const char *account, *category, *description; /* borrowed from the document */
  char currency[ANALYTICS_CURRENCY_MAX];        /* "" when the transaction has none */
  bool currency_ok;                             /* "" or a short printable code */
  int64_t units, date;
  char month[PERIOD_MAX], year[PERIOD_MAX];
  int weekday; /* 1 Monday .. 7 Sunday (ISO 8601) */
  int mday;    /* 1..31 */
} txn_t;

static const char *utf8_field(const bson_t *doc, const char *name) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, name) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

/* A code fit for a key and a record id: printable ASCII without '#'. */
static bool currency_of(char out[ANALYTICS_CURRENCY_MAX], const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n >= ANALYTICS_CURRENCY_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    if (s[i] <= ' ' || s[i] > '~' || s[i] == '#')
      return false;
  }
  memcpy(out, s ? s : "", n + 1);
  return true;
}

/* The members txn_of reads, found in one pass over the document (one
 * bson_iter_init_find per member scanned it six times, about a fifth of
 * the analytics' CPU at 1M transactions).  As bson_iter_init_find, the
 * first member of a name counts, whatever its type. */
typedef enum {
  F_AMOUNT,
  F_ACCOUNT,
  F_CATEGORY,
  F_DESCRIPTION,
  F_CURRENCY,
  F_DATE,
  F_COUNT
} txn_field_t;

static const char *const field_names[F_COUNT] = {
    [F_AMOUNT] = "amount",           [F_ACCOUNT] = "accountId",
    [F_CATEGORY] = "primaryCategoryId", [F_DESCRIPTION] = "description",
    [F_CURRENCY] = "currency",       [F_DATE] = "date",
};

/* What txn_of reads of a document: a member's string (NULL when absent
 * or not a string) and the date (has_date: present and an int64). */
typedef struct {
  const char *str[F_COUNT];
  bool has_date;
  int64_t date;
} fields_t;

static void read_fields(fields_t *out, const bson_t *doc) {
  bson_iter_t it;
  bool seen[F_COUNT] = {0};
  int left = F_COUNT;
  memset(out, 0, sizeof *out);
  if (!bson_iter_init(&it, doc))
    return;
  while (left > 0 && bson_iter_next(&it)) {
    const char *key = bson_iter_key(&it);
    for (int f = 0; f < F_COUNT; f++) {
      if (seen[f] || strcmp(key, field_names[f]) != 0)
        continue;
      seen[f] = true;
      left--;
      if (f == F_DATE && BSON_ITER_HOLDS_INT64(&it)) {
        out->has_date = true;
        out->date = bson_iter_int64(&it);
      } else if (f != F_DATE && BSON_ITER_HOLDS_UTF8(&it)) {
        out->str[f] = bson_iter_utf8(&it, NULL);
      }
      break;
    }
  }
}

/* "YYYY" and "YYYY-MM" as "%04d" and "%s-%02d" print them, without
 * printf for the years a date has (0..9999). */
static void periods_of(txn_t *x, int year, int month) {
  if (year < 0 || year > 9999) {
    snprintf(x->year, sizeof x->year, "%04d", year);
    snprintf(x->month, sizeof x->month, "%s-%02d", x->year, month);
    return;
  }
  for (int i = 3; i >= 0; i--, year /= 10)
    x->year[i] = (char)('0' + year % 10);
  x->year[4] = '\0';
  memcpy(x->month, x->year, 4);
  x->month[4] = '-';
  x->month[5] = (char)('0' + month / 10);
  x->month[6] = (char)('0' + month % 10);
  x->month[7] = '\0';
}

/* False when the transaction cannot be counted (no account, amount or
 * date): skipped, as the validator vouched for imported data. */
static bool txn_of(txn_t *x, const bson_t *doc) {
  fields_t f;
  const char *amount;
  struct tm tm;
  time_t secs;

  memset(x, 0, sizeof *x);
  read_fields(&f, doc);
  amount = f.str[F_AMOUNT];
  x->account = f.str[F_ACCOUNT];
  x->category = f.str[F_CATEGORY];
  x->description = f.str[F_DESCRIPTION];
  x->currency_ok = currency_of(x->currency, f.str[F_CURRENCY]);
  if (!f.has_date)
    return false;
  x->date = f.date;
  secs = (time_t)(x->date / 1000);
  if (!x->account || !amount || !analytics_parse_decimal(&x->units, amount) ||
      !gmtime_r(&secs, &tm))
    return false;
  periods_of(x, tm.tm_year + 1900, tm.tm_mon + 1);
  x->weekday = tm.tm_wday == 0 ? 7 : tm.tm_wday;
  x->mday = tm.tm_mday;
  return true;
}

/* Tallies x under "<period>\x1f<qualifier>\x1f<member>"; a key too long
 * for the store's ids is not counted (ids are validated; never seen).
 * Joined by hand: a snprintf per tally was a tenth of the analytics' CPU. */
static analytics_tally_t tally(analytics_table_t *t, const txn_t *x, const char *period,
                               const char *qualifier, const char *member) {
  char key[KEY_MAX];
  size_t np = strlen(period), nq = strlen(qualifier), nm = strlen(member);
  if (np + nq + nm + 3 > sizeof key)
    return ANALYTICS_TALLY_OK;
  memcpy(key, period, np);
  key[np] = SEP;
  memcpy(key + np + 1, qualifier, nq);
  key[np + 1 + nq] = SEP;
  memcpy(key + np + nq + 2, member, nm + 1);
  return analytics_table_tally(t, key, x->units, x->date);
}

/* ---- the generators ---------------------------------------------------------- */

typedef analytics_tally_t (*add_fn)(analytics_table_t *t, const txn_t *x);
/* Fills `data` from one record's buckets (which it may reorder). */
typedef void (*data_fn)(bson_t *data, const analytics_bucket_t **group, size_t n,
                        const analytics_table_t *t);

typedef struct {
  const char *type; /* analyticType */
  size_t max;       /* keys of its table */
  bool by_account;  /* the qualifier is the accountId (else the currency) */
  add_fn add;
  data_fn data;
} generator_t;

static const char *member_of(const char *key) {
  const char *q = strchr(key, SEP);
  return strchr(q + 1, SEP) + 1;
}

static void append_decimal(bson_t *doc, const char *name, int64_t units) {
  char dec[DECIMAL_MAX];
  analytics_format_decimal(dec, sizeof dec, units);
  bson_append_utf8(doc, name, -1, dec, -1);
}

/* inflow, outflow, net, transactionCount: the sums every type reports. */
static void append_sums(bson_t *doc, int64_t inflow, int64_t outflow, int64_t count) {
  append_decimal(doc, "inflow", inflow);
  append_decimal(doc, "outflow", outflow);
  append_decimal(doc, "net", inflow - outflow);
  BSON_APPEND_INT64(doc, "transactionCount", count);
}

static analytics_tally_t cash_flow_add(analytics_table_t *t, const txn_t *x) {
  return tally(t, x, x->month, x->account, "");
}

static void cash_flow_data(bson_t *data, const analytics_bucket_t **group, size_t n,
                           const analytics_table_t *t) {
  (void)n; /* one bucket per (month, account) */
  append_sums(data, group[0]->inflow, group[0]->outflow, group[0]->count);
}

/* The ranking of categories and merchants in a record: most spent first,
 * then most received, then most transactions, then by key (bytewise). */
static int rank_cmp(const void *a, const void *b) {
  const analytics_bucket_t *x = *(const analytics_bucket_t *const *)a;
  const analytics_bucket_t *y = *(const analytics_bucket_t *const *)b;
  if (x->outflow != y->outflow)
    return x->outflow > y->outflow ? -1 : 1;
  if (x->inflow != y->inflow)
    return x->inflow > y->inflow ? -1 : 1;
  if (x->count != y->count)
    return x->count > y->count ? -1 : 1;
  return strcmp(x->key, y->key);
}

typedef struct {
  const char *list, *member, *count; /* field names */
  size_t top;
  bool dates;    /* firstDate and lastDate in each entry */
  bool previous; /* previousOutflow in each entry (periods are months) */
} ranked_t;

/* The outflow of the same (qualifier, member) in the month before the
 * bucket's ("YYYY-MM"), 0 when there was none: what makes a trend. */
static int64_t previous_outflow(const analytics_table_t *t, const analytics_bucket_t *b) {
  char key[KEY_MAX];
  int year = 0, month = 0;
  const analytics_bucket_t *p;

  if (sscanf(b->key, "%d-%d", &year, &month) != 2)
    return 0;
  if (--month == 0) {
    month = 12;
    year--;
  }
  snprintf(key, sizeof key, "%04d-%02d%s", year, month, strchr(b->key, SEP));
  p = analytics_table_find(t, key);
  return p ? p->outflow : 0;
}

/* The first `top` of group by rank_cmp as a list, the rest summed up as
 * "other", and how many there were. */
static void append_ranked(bson_t *data, const ranked_t *r, const analytics_bucket_t **group,
                          size_t n, const analytics_table_t *t) {
  bson_t list, entry, other;
  char idx[16];
  int64_t in = 0, out = 0, count = 0;

  qsort(group, n, sizeof *group, rank_cmp);
  BSON_APPEND_ARRAY_BEGIN(data, r->list, &list);
  for (size_t i = 0; i < n && i < r->top; i++) {
    snprintf(idx, sizeof idx, "%zu", i);
    BSON_APPEND_DOCUMENT_BEGIN(&list, idx, &entry);
    BSON_APPEND_UTF8(&entry, r->member, member_of(group[i]->key));
    append_sums(&entry, group[i]->inflow, group[i]->outflow, group[i]->count);
    if (r->dates) {
      BSON_APPEND_INT64(&entry, "firstDate", group[i]->first_date);
      BSON_APPEND_INT64(&entry, "lastDate", group[i]->last_date);
    }
    if (r->previous)
      append_decimal(&entry, "previousOutflow", previous_outflow(t, group[i]));
    bson_append_document_end(&list, &entry);
  }
  bson_append_array_end(data, &list);
  BSON_APPEND_INT64(data, r->count, (int64_t)n);
  if (n <= r->top)
    return;
  for (size_t i = r->top; i < n; i++) {
    in += group[i]->inflow;
    out += group[i]->outflow;
    count += group[i]->count;
  }
  BSON_APPEND_DOCUMENT_BEGIN(data, "other", &other);
  BSON_APPEND_INT64(&other, r->count, (int64_t)(n - r->top));
  append_sums(&other, in, out, count);
  bson_append_document_end(data, &other);
}

static analytics_tally_t category_add(analytics_table_t *t, const txn_t *x) {
  if (!x->currency_ok)
    return ANALYTICS_TALLY_OK;
  return tally(t, x, x->month, x->currency, x->category ? x->category : "");
}

static void category_data(bson_t *data, const analytics_bucket_t **group, size_t n,
                          const analytics_table_t *t) {
  static const ranked_t categories = {"categories", "categoryId", "categoryCount",
                                      ANALYTICS_TOP_CATEGORIES, false, true};
  /* Member "" (no primary category) sorts first in its record. */
  if (n && !*member_of(group[0]->key)) {
    bson_t u;
    BSON_APPEND_DOCUMENT_BEGIN(data, "uncategorized", &u);
    append_sums(&u, group[0]->inflow, group[0]->outflow, group[0]->count);
    append_decimal(&u, "previousOutflow", previous_outflow(t, group[0]));
    bson_append_document_end(data, &u);
    group++;
    n--;
  }
  append_ranked(data, &categories, group, n, t);
}

static analytics_tally_t patterns_add(analytics_table_t *t, const txn_t *x) {
  char weekday[MEMBER_MAX], day[MEMBER_MAX];
  analytics_tally_t r;

  if (!x->currency_ok)
    return ANALYTICS_TALLY_OK;
  weekday[0] = 'w'; /* "w%d" and "d%02d" */
  weekday[1] = (char)('0' + x->weekday);
  weekday[2] = '\0';
  day[0] = 'd';
  day[1] = (char)('0' + x->mday / 10);
  day[2] = (char)('0' + x->mday % 10);
  day[3] = '\0';
  r = tally(t, x, x->year, x->currency, weekday);
  return r != ANALYTICS_TALLY_OK ? r : tally(t, x, x->year, x->currency, day);
}

static void append_slots(bson_t *data, const char *list_name, const char *slot_name,
                         const char *const *names, const analytics_bucket_t *const *slots,
                         int n) {
  bson_t list, entry;
  char idx[16];

  BSON_APPEND_ARRAY_BEGIN(data, list_name, &list);
  for (int i = 0; i < n; i++) {
    const analytics_bucket_t *b = slots[i];
    snprintf(idx, sizeof idx, "%d", i);
    BSON_APPEND_DOCUMENT_BEGIN(&list, idx, &entry);
    if (names)
      BSON_APPEND_UTF8(&entry, slot_name, names[i]);
    else
      BSON_APPEND_INT32(&entry, slot_name, i + 1);
    append_sums(&entry, b ? b->inflow : 0, b ? b->outflow : 0, b ? b->count : 0);
    bson_append_document_end(&list, &entry);
  }
  bson_append_array_end(data, &list);
}

/* Every weekday (Monday first) and every day of the month, zero or not:
 * a fixed shape. */
static void patterns_data(bson_t *data, const analytics_bucket_t **group, size_t n,
                          const analytics_table_t *t) {
  static const char *const weekdays[WEEKDAYS] = {"monday", "tuesday",  "wednesday", "thursday",
                                                 "friday", "saturday", "sunday"};
  const analytics_bucket_t *by_weekday[WEEKDAYS] = {0}, *by_day[MONTH_DAYS] = {0};

  for (size_t i = 0; i < n; i++) {
    const char *m = member_of(group[i]->key);
    int v = atoi(m + 1);
    if (m[0] == 'w' && v >= 1 && v <= WEEKDAYS)
      by_weekday[v - 1] = group[i];
    else if (m[0] == 'd' && v >= 1 && v <= MONTH_DAYS)
      by_day[v - 1] = group[i];
  }
  append_slots(data, "byWeekday", "weekday", weekdays, by_weekday, WEEKDAYS);
  append_slots(data, "byDayOfMonth", "day", NULL, by_day, MONTH_DAYS);
}

static analytics_tally_t merchant_add(analytics_table_t *t, const txn_t *x) {
  char merchant[ANALYTICS_MERCHANT_MAX];
  if (!x->currency_ok || !analytics_merchant_of(merchant, x->description))
    return ANALYTICS_TALLY_OK;
  return tally(t, x, OVERALL, x->currency, merchant);
}

static void merchant_data(bson_t *data, const analytics_bucket_t **group, size_t n,
                          const analytics_table_t *t) {
  static const ranked_t merchants = {"merchants", "merchant", "merchantCount",
                                     ANALYTICS_TOP_MERCHANTS, true, false};
  append_ranked(data, &merchants, group, n, t);
}

/* The types fzip regenerates.  The app's other types are not derivable
 * from what a package holds (docs/IMPORT.md "Regenerated analytics"). */
static const generator_t generators[] = {
    {"cash_flow", ANALYTICS_BUCKETS_MAX, true, cash_flow_add, cash_flow_data},
    {"category_trends", ANALYTICS_BUCKETS_MAX, false, category_add, category_data},
    {"payment_patterns", ANALYTICS_BUCKETS_MAX, false, patterns_add, patterns_data},
    {"merchant_analysis", ANALYTICS_MERCHANTS_MAX, false, merchant_add, merchant_data},
};
#define GENERATORS (sizeof generators / sizeof generators[0])

size_t analytics_type_count(void) { return GENERATORS; }

const char *analytics_type_name(size_t i) { return i < GENERATORS ? generators[i].type : NULL; }

/* ---- records ------------------------------------------------------------------ */

/* Bytes of "<period>\x1f<qualifier>\x1f", the key prefix of a record. */
static size_t record_prefix(const char *key) { return (size_t)(member_of(key) - key); }

static bson_t *record_of(const generator_t *g, const analytics_table_t *t,
                         const analytics_bucket_t **group, size_t n, int64_t now) {
  bson_t *doc = bson_new();
  bson_t data;
  char period[PERIOD_MAX], qualifier[FZIP_ID_MAX + 1], id[RECORD_ID_MAX];
  const char *key = group[0]->key, *q = strchr(key, SEP);
  size_t plen = (size_t)(q - key), qlen = record_prefix(key) - plen - 2;
  int64_t through = group[0]->last_date;

  for (size_t i = 1; i < n; i++)
    through = group[i]->last_date > through ? group[i]->last_date : through;
  snprintf(period, sizeof period, "%.*s", (int)plen, key);
  snprintf(qualifier, sizeof qualifier, "%.*s", (int)qlen, q + 1);
  snprintf(id, sizeof id, "%s#%s%s%s", g->type, period, *qualifier ? "#" : "", qualifier);
  if (strlen(id) > FZIP_ID_MAX) {
    /* A long accountId: the record is named by its digest instead, or the
     * store would refuse the id and fail the import. */
    char hex[FZIP_SHA256_HEX_LEN + 1];
    fzip_sha256_hex(hex, qualifier, strlen(qualifier));
    snprintf(id, sizeof id, "%s#%s#~%s", g->type, period, hex);
  }
  BSON_APPEND_UTF8(doc, "analyticsId", id);
  BSON_APPEND_UTF8(doc, "analyticType", g->type);
  BSON_APPEND_UTF8(doc, "timePeriod", period);
  if (g->by_account)
    BSON_APPEND_UTF8(doc, "accountId", qualifier);
  BSON_APPEND_DOCUMENT_BEGIN(doc, "data", &data);
  if (!g->by_account && *qualifier)
    BSON_APPEND_UTF8(&data, "currency", qualifier);
  g->data(&data, group, n, t);
  bson_append_document_end(doc, &data);
  BSON_APPEND_INT64(doc, "computedDate", now);
  BSON_APPEND_INT64(doc, "dataThroughDate", through);
  return doc;
}

/* Whether `fresh` says nothing `stored` does not, computedDate (the time
 * of a run) aside: pkg_diff's comparison of two versions of a record. */
static bool unchanged(bool *same, const bson_t *fresh, const bson_t *stored,
                      fzip_error_t *error) {
  bson_t a = BSON_INITIALIZER, b = BSON_INITIALIZER;
  pkgd_verdict_t v;
  bool ok;

  bson_copy_to_excluding_noinit(fresh, &a, "computedDate", NULL);
  bson_copy_to_excluding_noinit(stored, &b, "computedDate", NULL);
  ok = pkgd_judge(&v, NULL, FZIP_KIND_ANALYTICS, PKGV_OVERWRITE, &a, &b, error);
  *same = ok && v.identical;
  bson_destroy(&a);
  bson_destroy(&b);
  return ok;
}

/* Leaves out of docs[0..*n) (destroying them) the records the user has
 * already, equal but for computedDate: an unchanged record keeps its
 * version and tag, and a re-import of the same data writes no analytics
 * (each replace costs a stash and, on FerretDB, table scans). */
static bool drop_unchanged(store_t *store, const char *user, const char *tag, bson_t **docs,
                           size_t *n, fzip_error_t *error) {
  const char *ids[STORE_BATCH_MAX];
  bson_t *stored[STORE_BATCH_MAX];
  size_t kept = 0;
  bool ok = true;

  for (size_t i = 0; i < *n; i++)
    ids[i] = utf8_field(docs[i], "analyticsId");
  /* see_tag: a record this import restored or wrote counts as stored. */
  if (!store_entity_get_many(stored, store, user, FZIP_KIND_ANALYTICS, ids, *n, tag, error))
    return false;
  for (size_t i = 0; i < *n; i++) {
    bool same = false;
    if (ok && stored[i])
      ok = unchanged(&same, docs[i], stored[i], error);
    bson_destroy(stored[i]);
    if (ok && same)
      bson_destroy(docs[i]);
    else
      docs[kept++] = docs[i];
  }
  *n = kept;
  return ok;
}

/* Writes the changed records of docs[0..*n) and destroys them all. */
static bool put(store_t *store, const char *user, const char *tag, bson_t **docs, size_t *n,
                fzip_error_t *error) {
  bool ok = drop_unchanged(store, user, tag, docs, n, error);
  if (ok && *n)
    ok = store_entity_put_batch_tagged(store, user, FZIP_KIND_ANALYTICS,
                                       (const bson_t *const *)docs, *n, STORE_WRITE_REPLACE, tag,
                                       NULL, error);
  while (*n)
    bson_destroy(docs[--*n]);
  return ok;
}

/* One record per (period, qualifier), in key order, in batches of
 * STORE_BATCH_MAX records or ANALYTICS_BATCH_BYTES. */
static bool write_type(store_t *store, const char *user, const char *tag, const generator_t *g,
                       const analytics_table_t *t, fzip_error_t *error) {
  const analytics_bucket_t **v = NULL;
  bson_t *docs[STORE_BATCH_MAX];
  size_t total = 0, n = 0, i = 0, bytes = 0;
  int64_t now = fzip_now_ms();
  bool ok = true;

  if (!analytics_table_sorted(&v, &total, t, error))
    return false;
  while (ok && i < total) {
    size_t plen = record_prefix(v[i]->key), j = i + 1;
    while (j < total && strncmp(v[j]->key, v[i]->key, plen) == 0)
      j++;
    docs[n] = record_of(g, t, v + i, j - i, now);
    bytes += docs[n++]->len;
    i = j;
    if (n == STORE_BATCH_MAX || bytes >= ANALYTICS_BATCH_BYTES) {
      ok = put(store, user, tag, docs, &n, error);
      bytes = 0;
    }
  }
  if (ok && n)
    ok = put(store, user, tag, docs, &n, error);
  while (n)
    bson_destroy(docs[--n]);
  free(v);
  return ok;
}

/* ---- the run ------------------------------------------------------------------ */

/* Feeds x to every generator still going; one that reaches a limit gives
 * its type up and frees its table.  False only when out of memory. */
static bool tally_all(analytics_table_t *tables[], const txn_t *x, fzip_error_t *error) {
  for (size_t i = 0; i < GENERATORS; i++) {
    analytics_tally_t r;
    if (!tables[i])
      continue;
    r = generators[i].add(tables[i], x);
    if (r == ANALYTICS_TALLY_OOM)
      return fzip_error_oom(error, "analytics");
    if (r == ANALYTICS_TALLY_LIMIT) {
      fzip_log(FZIP_LOG_WARN, "analytics", "analytic type not regenerated: over its limits",
               "type", generators[i].type, NULL);
      analytics_table_destroy(tables[i]);
      tables[i] = NULL;
    }
  }
  return true;
}

/* The tallying half of a regeneration (analytics_regenerate): a thread
 * of its own that takes the transactions from the feed and tallies them;
 * on an error it abandons the feed (the reader's puts then drop what
 * they put) and keeps the error for the join. */
typedef struct {
  import_feed_t *feed;
  analytics_table_t **tables;
  fzip_error_t error; /* set when the thread failed */
} tally_run_t;

static void *tally_main(void *arg) {
  tally_run_t *t = arg;
  const bson_t *doc = NULL;
  fzip_error_t err;

  fzip_error_clear(&err);
  while (import_feed_next(t->feed, FZIP_KIND_TRANSACTION, &doc, &err)) {
    txn_t x;
    /* Failpoint analytics.tally: a tally that fails (out of memory). */
    if (!fzip_failpoint("analytics.tally", &t->error) ||
        (txn_of(&x, doc) && !tally_all(t->tables, &x, &t->error))) {
      import_feed_abandon(t->feed);
      return NULL;
    }
  }
  if (fzip_error_is_set(&err))
    t->error = err; /* halted: the reader failed and says why itself */
  return NULL;
}

/* Documents the read-back puts between two looks at whether the tally
 * thread gave up. */
#define FEED_CHECK_EVERY 64

/* Reads the import's transactions into the feed (the reader half, on the
 * caller's thread): closes it at the end, halts it on a store error.
 * Once the tally thread failed (it abandoned the feed) the rest of the
 * cursor would only be dropped: reading stops, the feed is closed, and
 * the tally's error is what the caller reports.  Looked at every
 * FEED_CHECK_EVERY documents, as the look takes the feed's lock. */
static bool feed_transactions(import_feed_t *feed, store_t *store, const char *user_id,
                              const char *tag, fzip_error_t *error) {
  store_cursor_t *cur = NULL;
  const bson_t *doc = NULL;
  fzip_error_t err;
  /* The import's own uncommitted writes are what the analytics are of. */
  store_filter_t mine = {.see_tag = tag};
  uint64_t n = 0;
  bool ok = false;

  if (!store_cursor_new(&cur, store, user_id, FZIP_KIND_TRANSACTION, &mine, error))
    goto done;
  fzip_error_clear(&err);
  while (store_cursor_next(cur, &doc, &err)) {
    if (!fzip_failpoint("analytics.read", error) ||
        !import_feed_put(feed, FZIP_KIND_TRANSACTION, doc, error))
      goto done;
    if (++n % FEED_CHECK_EVERY == 0 && import_feed_abandoned(feed))
      break;
  }
  if (fzip_error_is_set(&err)) {
    *error = err;
    goto done;
  }
  ok = import_feed_close(feed, error);
done:
  if (!ok)
    import_feed_halt(feed);
  /* Closed before anything is written: FerretDB serialises a write behind
   * an open cursor of the same connection pool (seen as a hang). */
  store_cursor_destroy(cur);
  return ok;
}

/* Two threads: reading the transactions back from the store (SQL, page
 * copies, BSON) and tallying them (parsing, hashing, probing) each took
 * about half of the ~2.6 s that the regeneration of 1M transactions
 * took on one thread, at the end of an import, with the second core
 * idle (docs/BENCHMARKS.md run AE).  They meet in an import_feed (640 KiB
 * at most), so memory stays what it was plus that. */
bool analytics_regenerate(uint32_t *types, store_t *store, const char *user_id, const char *tag,
                          fzip_error_t *error) {
  analytics_table_t *tables[GENERATORS] = {0};
  tally_run_t run = {.tables = tables};
  pthread_t thread;
  bool ok = false, fed;
  int rc;

  *types = 0;
  fzip_error_clear(&run.error);
  for (size_t i = 0; i < GENERATORS; i++) {
    if (!analytics_table_new(&tables[i], generators[i].max, error))
      goto done;
  }
  if (!import_feed_new(&run.feed, NULL, NULL, error))
    goto done;
  if ((rc = pthread_create(&thread, NULL, tally_main, &run)) != 0) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                   "starting the analytics thread: %s", strerror(rc));
    goto done;
  }
  /* The feed ends either way (closed, or halted on a failure), so the
   * thread always comes back. */
  fed = feed_transactions(run.feed, store, user_id, tag, error);
  pthread_join(thread, NULL);
  if (!fed)
    goto done;
  if (fzip_error_is_set(&run.error)) {
    *error = run.error;
    goto done;
  }
  for (size_t i = 0; i < GENERATORS; i++) {
    if (!tables[i])
      continue;
    if (!write_type(store, user_id, tag, &generators[i], tables[i], error))
      goto done;
    *types |= 1u << i;
  }
  ok = true;
done:
  import_feed_destroy(run.feed);
  for (size_t i = 0; i < GENERATORS; i++)
    analytics_table_destroy(tables[i]);
  return ok;
}

bool analytics_fill_result(Fzip__V1__ImportResult *res, uint32_t types) {
  char **names = calloc(GENERATORS, sizeof *names);
  size_t k = 0;

  if (!names)
    return false;
  for (size_t i = 0; i < GENERATORS; i++) {
    if (!(types & (1u << i)))
      continue;
    if (!(names[k] = strdup(generators[i].type))) {
      while (k)
        free(names[--k]);
      free(names);
      return false;
    }
    k++;
  }
  for (size_t i = 0; i < res->n_analytics_types; i++)
    free(res->analytics_types[i]);
  free(res->analytics_types);
  if (!k) {
    free(names);
    names = NULL;
  }
  res->analytics_types = names;
  res->n_analytics_types = k;
  res->analytics_regenerated = k == GENERATORS;
  return true;
}
