/*
 * analytics: regenerates a user's derived analytics from their
 * transactions after an import (issue: "derived analytics are regenerated
 * from the transactions whether or not the package carried them").
 *
 * It computes the cash_flow analytic per account and calendar month (UTC):
 * inflow, outflow, net and the number of transactions, as decimal strings
 * computed in exact fixed point (never floats).  Records are written with
 * the import's tag, so a rollback undoes them like any other import write.
 * Memory grows with accounts x months, capped at ANALYTICS_BUCKETS_MAX;
 * transactions are streamed.
 */
#ifndef FZIP_ANALYTICS_H
#define FZIP_ANALYTICS_H

#include <stdbool.h>

#include "fzip_error.h"
#include "store.h"

#define ANALYTICS_BUCKETS_MAX 200000 /* (account, month) pairs computed in one run */
#define ANALYTICS_SCALE_DIGITS 6     /* fraction digits kept when summing amounts */

/* *regenerated is false (and nothing written) when the user has more
 * (account, month) pairs than ANALYTICS_BUCKETS_MAX. */
bool analytics_regenerate(store_t *store, const char *user_id, const char *tag,
                          bool *regenerated, fzip_error_t *error);

/* Parses a decimal string ("-12.5") into units of 10^-ANALYTICS_SCALE_DIGITS;
 * false if it is not a decimal or does not fit. */
bool analytics_parse_decimal(int64_t *out, const char *s);
/* Formats units back as a decimal string with 2 to 6 fraction digits. */
void analytics_format_decimal(char *out, size_t cap, int64_t units);

#endif
