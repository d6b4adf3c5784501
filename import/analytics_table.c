/* analytics_table: see analytics_table.h.  Open addressing with linear
 * probing, kept under half full by doubling; keys are copied in. */
#include "analytics_table.h"

#include <stdlib.h>
#include <string.h>

#define TABLE_CAP_MIN 1024 /* slots of a new table (a power of two) */

struct analytics_table {
  analytics_bucket_t *slots; /* key NULL = empty */
  size_t cap, used, max;
  int64_t abs_total; /* sum of |amount| over everything tallied */
};

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

bool analytics_table_new(analytics_table_t **out, size_t max, fzip_error_t *error) {
  analytics_table_t *t = calloc(1, sizeof *t);

  *out = NULL;
  if (!t || !(t->slots = calloc(TABLE_CAP_MIN, sizeof *t->slots))) {
    free(t);
    return fzip_error_oom(error, "analytics table");
  }
  t->cap = TABLE_CAP_MIN;
  t->max = max;
  *out = t;
  return true;
}

void analytics_table_destroy(analytics_table_t *t) {
  if (!t)
    return;
  for (size_t i = 0; i < t->cap; i++)
    free(t->slots[i].key);
  free(t->slots);
  free(t);
}

/* The slot of key, or the empty slot where it would go. */
static analytics_bucket_t *probe(analytics_bucket_t *slots, size_t cap, const char *key) {
  size_t i = (size_t)(hash(key) & (cap - 1));
  while (slots[i].key && strcmp(slots[i].key, key) != 0)
    i = (i + 1) & (cap - 1);
  return &slots[i];
}

static bool grow(analytics_table_t *t) {
  size_t cap = t->cap * 2;
  analytics_bucket_t *slots = calloc(cap, sizeof *slots);

  if (!slots)
    return false;
  for (size_t i = 0; i < t->cap; i++) {
    if (t->slots[i].key)
      *probe(slots, cap, t->slots[i].key) = t->slots[i];
  }
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
  return true;
}

analytics_tally_t analytics_table_tally(analytics_table_t *t, const char *key, int64_t units,
                                        int64_t date) {
  analytics_bucket_t *b = probe(t->slots, t->cap, key);
  int64_t magnitude;

  if (units == INT64_MIN) /* has no magnitude; analytics_parse_decimal never yields it */
    return ANALYTICS_TALLY_LIMIT;
  magnitude = units < 0 ? -units : units;
  if (t->abs_total > INT64_MAX - magnitude)
    return ANALYTICS_TALLY_LIMIT;
  if (!b->key) {
    if (t->used >= t->max)
      return ANALYTICS_TALLY_LIMIT;
    if ((t->used + 1) * 2 > t->cap) {
      if (!grow(t))
        return ANALYTICS_TALLY_OOM;
      b = probe(t->slots, t->cap, key);
    }
    if (!(b->key = strdup(key)))
      return ANALYTICS_TALLY_OOM;
    b->first_date = b->last_date = date;
    t->used++;
  }
  t->abs_total += magnitude;
  if (units >= 0)
    b->inflow += units;
  else
    b->outflow += magnitude;
  b->count++;
  if (date < b->first_date)
    b->first_date = date;
  if (date > b->last_date)
    b->last_date = date;
  return ANALYTICS_TALLY_OK;
}

size_t analytics_table_size(const analytics_table_t *t) { return t->used; }

const analytics_bucket_t *analytics_table_find(const analytics_table_t *t, const char *key) {
  const analytics_bucket_t *b = probe(t->slots, t->cap, key);
  return b->key ? b : NULL;
}

static int by_key(const void *a, const void *b) {
  const analytics_bucket_t *x = *(const analytics_bucket_t *const *)a;
  const analytics_bucket_t *y = *(const analytics_bucket_t *const *)b;
  return strcmp(x->key, y->key);
}

bool analytics_table_sorted(const analytics_bucket_t ***out, size_t *n,
                            const analytics_table_t *t, fzip_error_t *error) {
  const analytics_bucket_t **v = NULL;
  size_t k = 0;

  *out = NULL;
  *n = 0;
  if (!t->used)
    return true;
  if (!(v = malloc(t->used * sizeof *v)))
    return fzip_error_oom(error, "analytics table");
  for (size_t i = 0; i < t->cap; i++) {
    if (t->slots[i].key)
      v[k++] = &t->slots[i];
  }
  qsort(v, k, sizeof *v, by_key);
  *out = v;
  *n = k;
  return true;
}
