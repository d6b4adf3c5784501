/*
 * cli_select: the selection options shared by `fzip export create` and
 * `fzip data list`: --accounts ID,ID,... and --from/--to dates, parsed
 * into the fzip.v1 shapes (account id list, TimeRange).
 *
 * Dates are "YYYY-MM-DD" (UTC; --to means the end of that day, since
 * ranges are inclusive), "YYYY-MM-DDTHH:MM:SSZ", or epoch milliseconds.
 */
#ifndef CLI_SELECT_H
#define CLI_SELECT_H

#include <stdbool.h>
#include <stddef.h>

#include "cli_args.h"
#include "fzip/v1/jobs.pb-c.h"
#include "fzip_error.h"

#define CLI_SELECT_ACCOUNTS_MAX 1000 /* ids in one --accounts */

typedef struct {
  char *ids_text;                       /* owned copy of --accounts, split in place */
  char *ids[CLI_SELECT_ACCOUNTS_MAX];   /* point into ids_text */
  size_t n_ids;
  Fzip__V1__TimeRange range;            /* valid when has_range */
  bool has_range;
} cli_select_t;

/* Fills sel from the options; call cli_select_cleanup afterwards, also on
 * failure.  Usage errors are CONFIG/INVALID_ARGUMENT. */
bool cli_select_parse(cli_select_t *sel, const cli_args_t *args, fzip_error_t *error);
void cli_select_cleanup(cli_select_t *sel);

/* Parses one date; `end_of_day` for an inclusive upper bound. */
bool cli_select_date(int64_t *out_ms, const char *text, bool end_of_day, fzip_error_t *error);

#endif
