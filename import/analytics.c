/* analytics: see analytics.h. */
#include "analytics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_util.h"

#define ANALYTICS_MONTH_SIZE 8 /* "YYYY-MM" and its NUL */
/* A bucket key: an account id, a separator and "YYYY-MM", with room to spare. */
#define KEY_MONTH_MAX 16
#define KEY_MAX (FZIP_ID_MAX + KEY_MONTH_MAX)
/* A record id: "cash_flow#<YYYY-MM>#<accountId>". */
#define RECORD_ID_MAX (KEY_MAX + KEY_MONTH_MAX)
/* A decimal amount: an int64 of minor units with sign and point. */
#define DECIMAL_MAX 48

typedef struct {
  char key[KEY_MAX]; /* "<accountId>\x1f<YYYY-MM>", "" = empty slot */
  int64_t inflow, outflow, count, last_date;
} bucket_t;

typedef struct {
  bucket_t *slots;
  size_t cap, used;
} table_t;

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

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* Finds or adds the bucket for key; NULL when the table is full. */
static bucket_t *lookup(table_t *t, const char *key) {
  size_t i = (size_t)(hash(key) % t->cap);
  for (;;) {
    bucket_t *b = &t->slots[i];
    if (!b->key[0]) {
      if (t->used >= ANALYTICS_BUCKETS_MAX)
        return NULL;
      snprintf(b->key, sizeof b->key, "%s", key);
      t->used++;
      return b;
    }
    if (strcmp(b->key, key) == 0)
      return b;
    i = (i + 1) % t->cap;
  }
}

static bool month_of(char out[ANALYTICS_MONTH_SIZE], int64_t ms) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&secs, &tm))
    return false;
  snprintf(out, ANALYTICS_MONTH_SIZE, "%04d-%02d", (tm.tm_year + 1900) % 10000, tm.tm_mon + 1);
  return true;
}

static bool accumulate(table_t *t, const bson_t *doc, bool *full) {
  bson_iter_t it;
  const char *account = NULL, *amount = NULL;
  int64_t date = 0, units = 0;
  char month[ANALYTICS_MONTH_SIZE], key[KEY_MAX];
  bucket_t *b;

  if (bson_iter_init_find(&it, doc, "accountId") && BSON_ITER_HOLDS_UTF8(&it))
    account = bson_iter_utf8(&it, NULL);
  if (bson_iter_init_find(&it, doc, "amount") && BSON_ITER_HOLDS_UTF8(&it))
    amount = bson_iter_utf8(&it, NULL);
  if (bson_iter_init_find(&it, doc, "date") && BSON_ITER_HOLDS_INT64(&it))
    date = bson_iter_int64(&it);
  if (!account || !amount || !analytics_parse_decimal(&units, amount) || !month_of(month, date))
    return true; /* not countable: skip, the validator vouched for imported data */
  snprintf(key, sizeof key, "%s\x1f%s", account, month);
  b = lookup(t, key);
  if (!b) {
    *full = true;
    return false;
  }
  if (units >= 0)
    b->inflow += units;
  else
    b->outflow -= units;
  b->count++;
  if (date > b->last_date)
    b->last_date = date;
  return true;
}

static bson_t *record_of(const bucket_t *b, int64_t now) {
  bson_t *doc = bson_new();
  bson_t data;
  char id[RECORD_ID_MAX], account[KEY_MAX], dec[DECIMAL_MAX];
  const char *sep = strchr(b->key, '\x1f');
  size_t alen = (size_t)(sep - b->key);

  memcpy(account, b->key, alen);
  account[alen] = '\0';
  snprintf(id, sizeof id, "cash_flow#%s#%s", sep + 1, account);
  BSON_APPEND_UTF8(doc, "analyticsId", id);
  BSON_APPEND_UTF8(doc, "analyticType", "cash_flow");
  BSON_APPEND_UTF8(doc, "timePeriod", sep + 1);
  BSON_APPEND_UTF8(doc, "accountId", account);
  BSON_APPEND_DOCUMENT_BEGIN(doc, "data", &data);
  analytics_format_decimal(dec, sizeof dec, b->inflow);
  BSON_APPEND_UTF8(&data, "inflow", dec);
  analytics_format_decimal(dec, sizeof dec, b->outflow);
  BSON_APPEND_UTF8(&data, "outflow", dec);
  analytics_format_decimal(dec, sizeof dec, b->inflow - b->outflow);
  BSON_APPEND_UTF8(&data, "net", dec);
  BSON_APPEND_INT64(&data, "transactionCount", b->count);
  bson_append_document_end(doc, &data);
  BSON_APPEND_INT64(doc, "computedDate", now);
  BSON_APPEND_INT64(doc, "dataThroughDate", b->last_date);
  return doc;
}

static bool write_records(store_t *store, const char *user, const char *tag, const table_t *t,
                          fzip_error_t *error) {
  bson_t *docs[STORE_BATCH_MAX];
  size_t n = 0;
  int64_t now = fzip_now_ms();
  bool ok = true;

  for (size_t i = 0; i < t->cap && ok; i++) {
    if (!t->slots[i].key[0])
      continue;
    docs[n++] = record_of(&t->slots[i], now);
    if (n == STORE_BATCH_MAX) {
      ok = store_entity_put_batch_tagged(store, user, FZIP_KIND_ANALYTICS,
                                         (const bson_t *const *)docs, n, STORE_WRITE_REPLACE, tag,
                                         NULL, error);
      while (n)
        bson_destroy(docs[--n]);
    }
  }
  if (ok && n)
    ok = store_entity_put_batch_tagged(store, user, FZIP_KIND_ANALYTICS,
                                       (const bson_t *const *)docs, n, STORE_WRITE_REPLACE, tag,
                                       NULL, error);
  while (n)
    bson_destroy(docs[--n]);
  return ok;
}

bool analytics_regenerate(store_t *store, const char *user_id, const char *tag,
                          bool *regenerated, fzip_error_t *error) {
  table_t t = {0};
  store_cursor_t *cur = NULL;
  const bson_t *doc = NULL;
  fzip_error_t err;
  bool full = false, ok = false;

  /* The import's own uncommitted writes are what the analytics are of. */
  store_filter_t mine = {.see_tag = tag};

  *regenerated = false;
  t.cap = 1024;
  {
    uint64_t accounts = 0;
    if (!store_entity_count(&accounts, store, user_id, FZIP_KIND_ACCOUNT, &mine, error))
      return false;
    /* Room for a decade of months per account at a load factor under 1/2,
     * within the hard cap. */
    while (t.cap < accounts * 240 && t.cap < 2 * ANALYTICS_BUCKETS_MAX)
      t.cap *= 2;
  }
  t.slots = calloc(t.cap, sizeof *t.slots);
  if (!t.slots)
    return fzip_error_oom(error, NULL);
  if (!store_cursor_new(&cur, store, user_id, FZIP_KIND_TRANSACTION, &mine, error))
    goto done;
  fzip_error_clear(&err);
  while (store_cursor_next(cur, &doc, &err)) {
    if (t.used * 2 >= t.cap && t.cap < 2 * ANALYTICS_BUCKETS_MAX) {
      /* Grow: rehash into a table twice the size. */
      table_t g = {calloc(t.cap * 2, sizeof *t.slots), t.cap * 2, 0};
      if (!g.slots) {
        fzip_error_oom(error, NULL);
        goto done;
      }
      for (size_t i = 0; i < t.cap; i++) {
        if (t.slots[i].key[0]) {
          bucket_t *b = lookup(&g, t.slots[i].key);
          *b = t.slots[i];
        }
      }
      free(t.slots);
      t = g;
    }
    if (!accumulate(&t, doc, &full))
      break;
  }
  if (fzip_error_is_set(&err)) {
    *error = err;
    goto done;
  }
  /* Close the read before writing: FerretDB serialises a write behind an
   * open cursor of the same connection pool (seen as a hang). */
  store_cursor_destroy(cur);
  cur = NULL;
  if (!full) {
    if (!write_records(store, user_id, tag, &t, error))
      goto done;
    *regenerated = true;
  }
  ok = true;
done:
  store_cursor_destroy(cur);
  free(t.slots);
  return ok;
}
