/* core/fzip_failpoint: the FZIP_FAILPOINTS grammar (error@N, delay:MS,
 * delay:MS@N, both on one name), what is ignored (malformed entries, names past the
 * table) and that unnamed points cost nothing.  The variable is read once
 * per process, so main() sets it before the first hit. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "fzip_failpoint.h"
#include "fzip_test.h"
#include "fzip_util.h"

#define SLOW_MS 50
#define BOTH_MS 20
#define LATER_MS 400 /* long enough that a hit without it never takes as long */

/* FZIP_FAILPOINTS_MAX (8) names, then a ninth that must be ignored, and
 * malformed entries in between that must not take a slot. */
static const char spec[] =
    "fp.err=error@3,fp.slow=delay:50,fp.both=error@2,fp.both=delay:20,no-equals-sign,"
    "fp.unknown=explode,fp.later=delay:400@3,fp.f6=error@1,fp.f7=error@1,fp.f8=error@1,"
    "fp.ninth=error@1,"
    "fp.toolong=error@1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

static void test_error_at_n_fails_the_nth_and_every_later_hit_naming_point_and_hit(void) {
  fzip_error_t err = {0};
  CHECK_OK(fzip_failpoint("fp.err", &err), err);
  CHECK_OK(fzip_failpoint("fp.err", &err), err);
  CHECK_FAILS(fzip_failpoint("fp.err", &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK(strstr(err.message, "fp.err") != NULL && strstr(err.message, "hit 3") != NULL);
  CHECK_FAILS(fzip_failpoint("fp.err", &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK(strstr(err.message, "hit 4") != NULL);
}

static void test_delay_sleeps_at_every_hit_and_never_fails(void) {
  fzip_error_t err = {0};
  for (int i = 0; i < 2; i++) {
    int64_t t0 = fzip_monotonic_ms();
    CHECK_OK(fzip_failpoint("fp.slow", &err), err);
    CHECK(fzip_monotonic_ms() - t0 >= SLOW_MS);
  }
}

static void test_delay_at_n_sleeps_from_the_nth_hit_on(void) {
  fzip_error_t err = {0};
  for (int hit = 1; hit <= 4; hit++) {
    int64_t t0 = fzip_monotonic_ms();
    CHECK_OK(fzip_failpoint("fp.later", &err), err);
    if (hit >= 3)
      CHECK(fzip_monotonic_ms() - t0 >= LATER_MS);
    else
      CHECK(fzip_monotonic_ms() - t0 < LATER_MS);
  }
}

static void test_error_and_delay_on_one_name_both_apply(void) {
  fzip_error_t err = {0};
  int64_t t0 = fzip_monotonic_ms();
  CHECK_OK(fzip_failpoint("fp.both", &err), err);
  CHECK(fzip_monotonic_ms() - t0 >= BOTH_MS);
  t0 = fzip_monotonic_ms();
  CHECK_FAILS(fzip_failpoint("fp.both", &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK(fzip_monotonic_ms() - t0 >= BOTH_MS);
}

static void test_unnamed_points_and_unknown_actions_pass(void) {
  fzip_error_t err = {0};
  CHECK_OK(fzip_failpoint("store.put_tagged", &err), err);
  CHECK_OK(fzip_failpoint("fp.unknown", &err), err);
  CHECK_OK(fzip_failpoint("no-equals-sign", &err), err);
  CHECK_OK(fzip_failpoint("fp", &err), err); /* a prefix of a name is not the name */
  CHECK(!fzip_error_is_set(&err));
}

static void test_names_past_the_table_and_overlong_entries_are_ignored(void) {
  fzip_error_t err = {0};
  CHECK_FAILS(fzip_failpoint("fp.f8", &err), err, FZIP_ERR_UNAVAILABLE); /* the 8th fits */
  CHECK_OK(fzip_failpoint("fp.ninth", &err), err);
  CHECK_OK(fzip_failpoint("fp.toolong", &err), err);
}

int main(void) {
  /* Before the first fzip_failpoint(): the specification is parsed once. */
  if (setenv("FZIP_FAILPOINTS", spec, 1) != 0)
    return 1;
  RUN(test_error_at_n_fails_the_nth_and_every_later_hit_naming_point_and_hit);
  RUN(test_delay_sleeps_at_every_hit_and_never_fails);
  RUN(test_delay_at_n_sleeps_from_the_nth_hit_on);
  RUN(test_error_and_delay_on_one_name_both_apply);
  RUN(test_unnamed_points_and_unknown_actions_pass);
  RUN(test_names_past_the_table_and_overlong_entries_are_ignored);
  return fzip_test_summary();
}
