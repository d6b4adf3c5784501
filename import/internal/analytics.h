/*
 * analytics: regenerates a user's derived analytics from their
 * transactions after an import (issue: "derived analytics are regenerated
 * from the transactions whether or not the package carried them").
 *
 * One pass over the user's transactions (as the import sees them) feeds a
 * table of generators, one per analyticType that can be derived from what
 * fzip holds (docs/IMPORT.md "Regenerated analytics"):
 *   cash_flow          per account and calendar month (UTC);
 *   category_trends    per month and currency: per primary category,
 *                      with its outflow of the month before;
 *   payment_patterns   per year and currency: by weekday, by day of month;
 *   merchant_analysis  per currency, over all time: per normalised
 *                      description.
 * Every sum is exact fixed point (never floats) written as a decimal
 * string; every record is written with the import's tag, so a rollback
 * undoes it like any other import write, but only when it changed: a
 * record equal to the stored one but for computedDate is not written.  Transactions are streamed;
 * each generator's memory is a bounded analytics_table, and a generator
 * whose table would pass its limit gives its type up (nothing of that
 * type written, the type missing from the result) while the others go on.
 * Output is deterministic: the same transactions give the same records
 * (but computedDate, the time of the run).
 */
#ifndef FZIP_ANALYTICS_H
#define FZIP_ANALYTICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_error.h"
#include "store.h"

#define ANALYTICS_BUCKETS_MAX 200000 /* (account or currency, period, member) keys per type */
#define ANALYTICS_MERCHANTS_MAX 100000 /* distinct (currency, merchant) pairs tracked */
#define ANALYTICS_TOP_CATEGORIES 100 /* categories listed in one category_trends record */
#define ANALYTICS_TOP_MERCHANTS 100  /* merchants listed in one merchant_analysis record */
#define ANALYTICS_MERCHANT_MAX 64    /* bytes of a normalised merchant name, with its NUL */
#define ANALYTICS_CURRENCY_MAX 16    /* bytes of a currency code, with its NUL */
#define ANALYTICS_SCALE_DIGITS 6     /* fraction digits kept when summing amounts */
/* Records' BSON bytes written per batch (and STORE_BATCH_MAX records at
 * most): a record lists up to 100 members, ~10 KiB, so 1,000 of them were
 * the import's largest allocation at 1M transactions (13 MiB). */
#define ANALYTICS_BATCH_BYTES (1024 * 1024)

/* *types: bit i set when generator i's records were written (see
 * analytics_type_name).  False only on a store error, out of memory or
 * when its tallying thread cannot start (then nothing of the run is left
 * to the caller: the import rolls back).  Reads the transactions on the
 * caller's thread and tallies them on a thread of its own. */
bool analytics_regenerate(uint32_t *types, store_t *store, const char *user_id, const char *tag,
                          fzip_error_t *error);

/* The generators' analyticType names, in table order. */
size_t analytics_type_count(void);
const char *analytics_type_name(size_t i);

/* Sets res->analytics_types to the names of `types` (replacing any list
 * there) and res->analytics_regenerated to whether every type was.  False
 * when out of memory. */
bool analytics_fill_result(Fzip__V1__ImportResult *res, uint32_t types);

/* Parses a decimal string ("-12.5") into units of 10^-ANALYTICS_SCALE_DIGITS;
 * false if it is not a decimal or does not fit. */
bool analytics_parse_decimal(int64_t *out, const char *s);
/* Formats units back as a decimal string with 2 to 6 fraction digits. */
void analytics_format_decimal(char *out, size_t cap, int64_t units);

/* The merchant a description names: ASCII letters lowercased, tokens
 * (split on ASCII spaces and control characters) without any letter or
 * non-ASCII byte dropped (store numbers such as "#0421", dates, amounts),
 * the rest joined by one space and cut to ANALYTICS_MERCHANT_MAX - 1 bytes
 * on a UTF-8 character boundary.  Returns its length; 0: no merchant. */
size_t analytics_merchant_of(char out[ANALYTICS_MERCHANT_MAX], const char *description);

#endif
