/* analytics_table: see analytics_table.h.  Open addressing with linear
 * probing over 4-byte bucket numbers, kept under half full by doubling;
 * the buckets themselves sit in blocks that never move (find and sorted
 * hand out pointers to them), their keys copied into blocks of key bytes.
 * About 110 bytes per key instead of ~210 with buckets in the probed
 * array and a strdup per key: the tables were the largest allocation of
 * an import of 1M transactions (10 MiB, docs/BENCHMARKS.md run T). */
#include "analytics_table.h"

#include <stdlib.h>
#include <string.h>

#define TABLE_CAP_MIN 1024         /* slots of a new table (a power of two) */
#define BUCKETS_PER_BLOCK 4096     /* buckets allocated at a time */
#define KEY_BLOCK_BYTES (64 * 1024) /* key bytes allocated at a time (more for a longer key) */

typedef struct key_block {
  struct key_block *next;
  size_t used, cap;
  char data[];
} key_block_t;

struct analytics_table {
  uint32_t *slots; /* bucket number + 1; 0 = empty */
  size_t cap, used, max;
  analytics_bucket_t **blocks; /* bucket i is blocks[i / BUCKETS_PER_BLOCK][i % ...] */
  size_t n_blocks, blocks_cap;
  key_block_t *keys; /* the newest block first */
  int64_t abs_total; /* sum of |amount| over everything tallied */
};

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static analytics_bucket_t *bucket(const analytics_table_t *t, uint32_t slot) {
  size_t i = (size_t)slot - 1;
  return &t->blocks[i / BUCKETS_PER_BLOCK][i % BUCKETS_PER_BLOCK];
}

bool analytics_table_new(analytics_table_t **out, size_t max, fzip_error_t *error) {
  analytics_table_t *t = calloc(1, sizeof *t);

  *out = NULL;
  if (max > UINT32_MAX - 1)
    max = UINT32_MAX - 1; /* a slot holds a bucket number + 1 */
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
  for (size_t i = 0; i < t->n_blocks; i++)
    free(t->blocks[i]);
  free(t->blocks);
  while (t->keys) {
    key_block_t *next = t->keys->next;
    free(t->keys);
    t->keys = next;
  }
  free(t->slots);
  free(t);
}

/* The slot of key, or the empty slot where it would go. */
static uint32_t *probe(const analytics_table_t *t, const char *key) {
  size_t i = (size_t)(hash(key) & (t->cap - 1));
  while (t->slots[i] && strcmp(bucket(t, t->slots[i])->key, key) != 0)
    i = (i + 1) & (t->cap - 1);
  return &t->slots[i];
}

static bool grow(analytics_table_t *t) {
  size_t cap = t->cap * 2;
  uint32_t *slots = calloc(cap, sizeof *slots);

  if (!slots)
    return false;
  for (size_t i = 0; i < t->cap; i++) {
    if (!t->slots[i])
      continue;
    /* Keys are distinct: the first empty slot is the one. */
    size_t j = (size_t)(hash(bucket(t, t->slots[i])->key) & (cap - 1));
    while (slots[j])
      j = (j + 1) & (cap - 1);
    slots[j] = t->slots[i];
  }
  free(t->slots);
  t->slots = slots;
  t->cap = cap;
  return true;
}

/* A copy of key in the key blocks, or NULL when out of memory. */
static char *key_copy(analytics_table_t *t, const char *key) {
  size_t len = strlen(key) + 1;
  key_block_t *kb = t->keys;
  char *out;

  if (!kb || kb->cap - kb->used < len) {
    size_t cap = len > KEY_BLOCK_BYTES ? len : KEY_BLOCK_BYTES;
    if (!(kb = malloc(sizeof *kb + cap)))
      return NULL;
    kb->next = t->keys;
    kb->used = 0;
    kb->cap = cap;
    t->keys = kb;
  }
  out = kb->data + kb->used;
  memcpy(out, key, len);
  kb->used += len;
  return out;
}

/* Bucket number t->used, zeroed, its block allocated if it is the first
 * of one; NULL when out of memory. */
static analytics_bucket_t *bucket_new(analytics_table_t *t) {
  size_t block = t->used / BUCKETS_PER_BLOCK;
  if (block == t->n_blocks) {
    if (t->n_blocks == t->blocks_cap) {
      size_t cap = t->blocks_cap ? t->blocks_cap * 2 : 16;
      analytics_bucket_t **grown = realloc(t->blocks, cap * sizeof *grown);
      if (!grown)
        return NULL;
      t->blocks = grown;
      t->blocks_cap = cap;
    }
    if (!(t->blocks[t->n_blocks] = malloc(BUCKETS_PER_BLOCK * sizeof **t->blocks)))
      return NULL;
    t->n_blocks++;
  }
  analytics_bucket_t *b = &t->blocks[block][t->used % BUCKETS_PER_BLOCK];
  memset(b, 0, sizeof *b);
  return b;
}

analytics_tally_t analytics_table_tally(analytics_table_t *t, const char *key, int64_t units,
                                        int64_t date) {
  uint32_t *slot = probe(t, key);
  analytics_bucket_t *b;
  int64_t magnitude;

  if (units == INT64_MIN) /* has no magnitude; analytics_parse_decimal never yields it */
    return ANALYTICS_TALLY_LIMIT;
  magnitude = units < 0 ? -units : units;
  if (t->abs_total > INT64_MAX - magnitude)
    return ANALYTICS_TALLY_LIMIT;
  if (*slot) {
    b = bucket(t, *slot);
  } else {
    if (t->used >= t->max)
      return ANALYTICS_TALLY_LIMIT;
    if ((t->used + 1) * 2 > t->cap) {
      if (!grow(t))
        return ANALYTICS_TALLY_OOM;
      slot = probe(t, key);
    }
    if (!(b = bucket_new(t)) || !(b->key = key_copy(t, key)))
      return ANALYTICS_TALLY_OOM;
    b->first_date = b->last_date = date;
    *slot = (uint32_t)++t->used;
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
  const uint32_t *slot = probe(t, key);
  return *slot ? bucket(t, *slot) : NULL;
}

static int by_key(const void *a, const void *b) {
  const analytics_bucket_t *x = *(const analytics_bucket_t *const *)a;
  const analytics_bucket_t *y = *(const analytics_bucket_t *const *)b;
  return strcmp(x->key, y->key);
}

bool analytics_table_sorted(const analytics_bucket_t ***out, size_t *n,
                            const analytics_table_t *t, fzip_error_t *error) {
  const analytics_bucket_t **v = NULL;

  *out = NULL;
  *n = 0;
  if (!t->used)
    return true;
  if (!(v = malloc(t->used * sizeof *v)))
    return fzip_error_oom(error, "analytics table");
  for (size_t i = 0; i < t->used; i++)
    v[i] = bucket(t, (uint32_t)(i + 1));
  qsort(v, t->used, sizeof *v, by_key);
  *out = v;
  *n = t->used;
  return true;
}
