/*
 * cli_select: see cli_select.h.  Dates are scanned with sscanf (exact
 * field counts, nothing trailing) and timegm() turns a UTC calendar date into
 * epoch seconds without consulting the local time zone.
 */
#include "cli_select.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_MS (24LL * 3600 * 1000)

static bool bad_date(fzip_error_t *error, const char *text) {
  return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                        "'%s' is not a date (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or epoch ms)",
                        text);
}

bool cli_select_date(int64_t *out_ms, const char *text, bool end_of_day, fzip_error_t *error) {
  struct tm tm;
  int y, mo, d, h = 0, mi = 0, sec = 0, used = 0;
  char *end = NULL;
  memset(&tm, 0, sizeof tm);
  if (strlen(text) > 4 && text[4] == '-') {
    bool date_only = strlen(text) == 10;
    int want = date_only ? 3 : 6;
    int got = date_only ? sscanf(text, "%4d-%2d-%2d%n", &y, &mo, &d, &used)
                        : sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &sec,
                                 &used);
    if (got != want || text[used] != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || sec > 60)
      return bad_date(error, text);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out_ms = (int64_t)timegm(&tm) * 1000 + (date_only && end_of_day ? DAY_MS - 1 : 0);
    return true;
  }
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end != '\0' || v < 0)
    return bad_date(error, text);
  *out_ms = v;
  return true;
}

static bool split_ids(cli_select_t *sel, const char *text, fzip_error_t *error) {
  sel->ids_text = strdup(text);
  if (!sel->ids_text)
    return fzip_error_oom(error, NULL);
  char *save = NULL;
  for (char *id = strtok_r(sel->ids_text, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
    if (sel->n_ids >= CLI_SELECT_ACCOUNTS_MAX)
      return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                            "--accounts: more than %d ids", CLI_SELECT_ACCOUNTS_MAX);
    sel->ids[sel->n_ids++] = id;
  }
  if (sel->n_ids == 0)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--accounts needs at least one id");
  return true;
}

bool cli_select_parse(cli_select_t *sel, const cli_args_t *args, fzip_error_t *error) {
  const char *ids = cli_args_get(args, "--accounts");
  const char *from = cli_args_get(args, "--from");
  const char *to = cli_args_get(args, "--to");
  Fzip__V1__TimeRange init = FZIP__V1__TIME_RANGE__INIT;
  memset(sel, 0, sizeof *sel);
  sel->range = init;
  if (ids && !split_ids(sel, ids, error))
    return false;
  if (from) {
    if (!cli_select_date(&sel->range.from, from, false, error))
      return fzip_error_prefix(error, "--from: ");
    sel->range.has_from = true;
  }
  if (to) {
    if (!cli_select_date(&sel->range.to, to, true, error))
      return fzip_error_prefix(error, "--to: ");
    sel->range.has_to = true;
  }
  sel->has_range = from || to;
  if (from && to && sel->range.from > sel->range.to)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--from is after --to");
  return true;
}

void cli_select_cleanup(cli_select_t *sel) {
  free(sel->ids_text);
  sel->ids_text = NULL;
  sel->n_ids = 0;
}
