/*
 * Tests of fzip_cron: parsing (fields, lists, ranges, steps, macros, the
 * limits and the error naming the field), the next due time in UTC, the
 * Vixie day-of-month / day-of-week rule, and daylight saving in
 * Europe/London (a wall time in the spring gap runs at the gap's end, one
 * in the autumn overlap runs once).  Times are epoch seconds worked out
 * with Python's calendar.timegm.
 */
#include "fzip_cron.h"

#include "fzip_test.h"

#define T_2026_12_01_0000 1796083200LL /* a Tuesday */
#define T_2026_12_01_0007 1796083620LL
#define T_2026_12_01_0015 1796084100LL
#define T_2026_12_01_0030 1796085000LL
#define T_2026_12_04_0000 1796342400LL /* Friday */
#define T_2026_12_04_1000 1796378400LL
#define T_2026_12_06_0000 1796515200LL /* Sunday */
#define T_2026_12_07_0900 1796634000LL /* Monday */
#define T_2026_12_11_0000 1796947200LL /* Friday */
#define T_2026_12_13_0000 1797120000LL
#define T_2027_01_01_0000 1798761600LL
#define T_2028_02_29_0000 1835395200LL
/* Europe/London: BST from 2027-03-28 01:00 UTC to 2027-10-31 01:00 UTC. */
#define T_2027_03_27_1200 1806148800LL
#define T_2027_03_28_0100 1806195600LL
#define T_2027_03_29_0030 1806280200LL
#define T_2027_10_30_1200 1824897600LL
#define T_2027_10_31_0030 1824942600LL
#define T_2027_10_31_0045 1824943500LL
#define T_2027_10_31_0200 1824948000LL
#define T_2027_11_01_0130 1825032600LL

/* The next due time (epoch s) of `spec` after `after_s` in `tz`; -1 on error. */
static int64_t next_of(const char *spec, const fzip_tz_t *tz, int64_t after_s) {
  fzip_cron_t c;
  fzip_error_t err;
  int64_t next = 0;
  fzip_error_clear(&err);
  if (!fzip_cron_parse(&c, spec, &err) || !fzip_cron_next(&next, &c, tz, after_s * 1000, &err)) {
    fprintf(stderr, "  %s: %s\n", spec, err.message);
    return -1;
  }
  return next / 1000;
}

/* True when `spec` is refused with INVALID_ARGUMENT and a message holding `word`. */
static bool refused(const char *spec, const char *word) {
  fzip_cron_t c;
  fzip_error_t err;
  fzip_error_clear(&err);
  if (fzip_cron_parse(&c, spec, &err))
    return false;
  if (err.code != FZIP_ERR_INVALID_ARGUMENT || !strstr(err.message, word)) {
    fprintf(stderr, "  %s: %s\n", spec, err.message);
    return false;
  }
  return true;
}

static void test_next_is_strictly_after_and_on_whole_minutes(void) {
  CHECK(next_of("*/15 * * * *", NULL, T_2026_12_01_0007) == T_2026_12_01_0015);
  CHECK(next_of("*/15 * * * *", NULL, T_2026_12_01_0015) == T_2026_12_01_0030);
  CHECK(next_of("*/15 * * * *", NULL, T_2026_12_01_0015 - 1) == T_2026_12_01_0015);
  CHECK(next_of("* * * * *", NULL, T_2026_12_01_0007 + 30) == T_2026_12_01_0007 + 60);
  /* Before 1970 in UTC: the wall clock is floored, not truncated toward 0. */
  CHECK(next_of("* * * * *", NULL, -90) == -60);
  CHECK(next_of("0 0 * * *", NULL, -1) == 0);
  CHECK(next_of("30 23 31 12 *", NULL, -86400) == -1800);
}

static void test_lists_ranges_and_steps(void) {
  CHECK(next_of("0 9 * * 1-5", NULL, T_2026_12_04_1000) == T_2026_12_07_0900);
  CHECK(next_of("7,15,30 0 * * *", NULL, T_2026_12_01_0007) == T_2026_12_01_0015);
  CHECK(next_of("10-40/10 0 * * *", NULL, T_2026_12_01_0015) == T_2026_12_01_0000 + 20 * 60);
  CHECK(next_of("5/25 0 * * *", NULL, T_2026_12_01_0007) == T_2026_12_01_0000 + 30 * 60);
}

static void test_day_of_month_or_day_of_week_as_vixie_cron(void) {
  /* Both restricted: either matches (Friday the 4th before the 13th). */
  CHECK(next_of("0 0 13 * 5", NULL, T_2026_12_01_0000) == T_2026_12_04_0000);
  CHECK(next_of("0 0 13 * *", NULL, T_2026_12_01_0000) == T_2026_12_13_0000);
  CHECK(next_of("0 0 * * 5", NULL, T_2026_12_01_0000) == T_2026_12_04_0000);
  /* A field starting with '*' counts as unrestricted: both must match
   * (an odd day that is a Friday: the 11th). */
  CHECK(next_of("0 0 */2 * 5", NULL, T_2026_12_01_0000) == T_2026_12_11_0000);
  CHECK(next_of("0 0 * * 7", NULL, T_2026_12_01_0000) == T_2026_12_06_0000);
  CHECK(next_of("0 0 * * 0", NULL, T_2026_12_01_0000) == T_2026_12_06_0000);
}

static void test_macros_and_leap_days(void) {
  CHECK(next_of("@monthly", NULL, T_2026_12_01_0000) == T_2027_01_01_0000);
  CHECK(next_of("@daily", NULL, T_2026_12_01_0007) == T_2026_12_01_0000 + 86400);
  CHECK(next_of("@hourly", NULL, T_2026_12_01_0007) == T_2026_12_01_0000 + 3600);
  CHECK(next_of("@weekly", NULL, T_2026_12_01_0000) == T_2026_12_06_0000);
  CHECK(next_of("0 0 29 2 *", NULL, T_2026_12_01_0000) == T_2028_02_29_0000);
}

static void test_bad_specs_name_the_field(void) {
  CHECK(refused("", "empty"));
  CHECK(refused("60 * * * *", "minute"));
  CHECK(refused("* 24 * * *", "hour"));
  CHECK(refused("* * 0 * *", "day-of-month"));
  CHECK(refused("* * * 13 *", "month"));
  CHECK(refused("* * * * 8", "day-of-week"));
  CHECK(refused("* * * *", "5 are needed"));
  CHECK(refused("* * * * * *", "more than 5"));
  CHECK(refused("1- * * * *", "minute"));
  CHECK(refused("*/0 * * * *", "step"));
  CHECK(refused("5-1 * * * *", "backwards"));
  CHECK(refused("1,,2 * * * *", "empty item"));
  CHECK(refused("a * * * *", "minute"));
  CHECK(refused("@yearly", "macro"));
  CHECK(refused("0 0 30 2 *", "no day"));
  CHECK(refused("0 0 31 4,6,9,11 *", "no day"));
}

static void test_limits_are_enforced(void) {
  char spec[FZIP_CRON_SPEC_MAX + 16];
  size_t n = 0;

  /* FZIP_CRON_ITEMS_MAX + 1 items in the minute field. */
  for (int i = 0; i <= FZIP_CRON_ITEMS_MAX; i++)
    n += (size_t)snprintf(spec + n, sizeof spec - n, "%d,", i % 10);
  spec[n - 1] = '\0';
  snprintf(spec + n - 1, sizeof spec - n + 1, " * * * *");
  CHECK(refused(spec, "items"));
  memset(spec, ' ', sizeof spec);
  memcpy(spec, "* * * * *", 9);
  spec[FZIP_CRON_SPEC_MAX + 1] = '\0';
  CHECK(refused(spec, "longer"));
  spec[FZIP_CRON_SPEC_MAX] = '\0'; /* exactly the limit: fine */
  CHECK(next_of(spec, NULL, T_2026_12_01_0007) == T_2026_12_01_0007 + 60);
}

static void test_spring_gap_runs_at_its_end_and_autumn_overlap_once(void) {
  fzip_tz_t *tz = NULL;
  fzip_error_t err;

  fzip_error_clear(&err);
  CHECK_OK(fzip_tz_load(&tz, "Europe/London", &err), err);
  /* 01:30 does not exist on 2027-03-28: run at 02:00 BST (01:00 UTC). */
  if (next_of("30 1 * * *", tz, T_2027_03_27_1200) != T_2027_03_28_0100 ||
      next_of("30 1 * * *", tz, T_2027_03_28_0100) != T_2027_03_29_0030) {
    fzip_tz_destroy(tz);
    CHECK(!"spring gap");
  }
  /* 01:30 happens twice on 2027-10-31: once, at the first (00:30 UTC). */
  if (next_of("30 1 * * *", tz, T_2027_10_30_1200) != T_2027_10_31_0030 ||
      next_of("30 1 * * *", tz, T_2027_10_31_0030) != T_2027_11_01_0130 ||
      next_of("*/30 * * * *", tz, T_2027_10_31_0045) != T_2027_10_31_0200) {
    fzip_tz_destroy(tz);
    CHECK(!"autumn overlap");
  }
  fzip_tz_destroy(tz);
}

int main(void) {
  RUN(test_next_is_strictly_after_and_on_whole_minutes);
  RUN(test_lists_ranges_and_steps);
  RUN(test_day_of_month_or_day_of_week_as_vixie_cron);
  RUN(test_macros_and_leap_days);
  RUN(test_bad_specs_name_the_field);
  RUN(test_limits_are_enforced);
  RUN(test_spring_gap_runs_at_its_end_and_autumn_overlap_once);
  return fzip_test_summary();
}
