/*
 * analytics_table: the bounded tally behind every regenerated analytic
 * (analytics.c).  A hash table from a string key to sums of exact decimal
 * amounts (units of 10^-ANALYTICS_SCALE_DIGITS, see analytics.h): inflow,
 * outflow, a count and the first and last dates seen.
 *
 * A table holds at most the `max` keys given to analytics_table_new, and
 * the sum of the absolute amounts tallied into it must fit an int64: then
 * every sum of any of its buckets fits too, so the generators can add
 * buckets up without checking.  Past either limit analytics_table_tally
 * refuses and the generator gives its type up (never a wrong number).
 */
#ifndef FZIP_ANALYTICS_TABLE_H
#define FZIP_ANALYTICS_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"

typedef struct {
  char *key; /* owned by the table */
  int64_t inflow, outflow; /* sums of positive amounts, of negated negative ones */
  int64_t count;
  int64_t first_date, last_date; /* epoch ms of the earliest and latest tallied */
} analytics_bucket_t;

typedef struct analytics_table analytics_table_t;

/* *out is the caller's to destroy; `max` keys at most. */
bool analytics_table_new(analytics_table_t **out, size_t max, fzip_error_t *error);
void analytics_table_destroy(analytics_table_t *t); /* accepts NULL */

typedef enum {
  ANALYTICS_TALLY_OK = 0,
  ANALYTICS_TALLY_LIMIT, /* a new key past `max`, or the absolute total past int64 */
  ANALYTICS_TALLY_OOM,
} analytics_tally_t;

/* Adds one amount dated `date` to the bucket of `key` (created at zero). */
analytics_tally_t analytics_table_tally(analytics_table_t *t, const char *key, int64_t units,
                                        int64_t date);

size_t analytics_table_size(const analytics_table_t *t);

/* The bucket of key (borrowed), or NULL. */
const analytics_bucket_t *analytics_table_find(const analytics_table_t *t, const char *key);

/* *out: the buckets sorted by key (bytewise), borrowed from the table, in
 * an array that is the caller's to free(); NULL with *n = 0 when empty. */
bool analytics_table_sorted(const analytics_bucket_t ***out, size_t *n,
                            const analytics_table_t *t, fzip_error_t *error);

#endif
