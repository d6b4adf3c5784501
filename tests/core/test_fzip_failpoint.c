/* core/fzip_failpoint: the FZIP_FAILPOINTS grammar (error@N, delay:MS,
 * hold:PATH@N, both on one name), what is ignored (malformed entries, names past the
 * table) and that unnamed points cost nothing.  The variable is read once
 * per process, so main() sets it before the first hit. */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_failpoint.h"
#include "fzip_test.h"
#include "fzip_util.h"

#define SLOW_MS 50
#define BOTH_MS 20
#define STILL_HELD_MS 100

/* FZIP_FAILPOINTS_MAX (8) names, then a ninth that must be ignored, and
 * malformed and overlong entries in between that must not take a slot
 * (had one, fp.f8 would be the ninth).  The first %s is OVERLONG_X 'x's,
 * the second fp.held's file. */
#define OVERLONG_X 600 /* past fzip_failpoint.c's FAILPOINT_SPEC_MAX (512) */
static const char spec_fmt[] =
    "fp.err=error@3,fp.slow=delay:50,fp.both=error@2,fp.both=delay:20,no-equals-sign,"
    "fp.toolong=error@1%s,fp.unknown=explode,fp.held=hold:%s@2,fp.f6=error@1,fp.f7=error@1,"
    "fp.f8=error@1,fp.ninth=error@1";

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

static char release_path[PATH_MAX]; /* fp.held's file, made by the test */

static void *hit_held(void *arg) {
  fzip_error_t err = {0};
  atomic_bool *returned = arg;
  bool ok = fzip_failpoint("fp.held", &err);
  atomic_store(returned, true);
  return ok ? arg : NULL;
}

static void test_hold_at_n_waits_from_the_nth_hit_until_the_file_exists(void) {
  fzip_error_t err = {0};
  atomic_bool returned = false;
  pthread_t t;
  void *rv = NULL;
  FILE *f;

  CHECK_OK(fzip_failpoint("fp.held", &err), err); /* hit 1 passes */
  CHECK(pthread_create(&t, NULL, hit_held, &returned) == 0);
  fzip_sleep_ms(STILL_HELD_MS);
  CHECK(!atomic_load(&returned)); /* hit 2 waits for the file... */
  f = fopen(release_path, "w");
  CHECK(f != NULL);
  if (f)
    fclose(f);
  CHECK(pthread_join(t, &rv) == 0);
  CHECK(rv == &returned); /* ...and goes on, without failing, once it exists */
  CHECK_OK(fzip_failpoint("fp.held", &err), err);
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
  char dir[] = "/tmp/fzip-failpoint-XXXXXX";
  char spec[sizeof spec_fmt + OVERLONG_X + PATH_MAX];
  char overlong[OVERLONG_X + 1];
  int rc;

  if (!mkdtemp(dir))
    return 1;
  snprintf(release_path, sizeof release_path, "%s/release", dir);
  memset(overlong, 'x', OVERLONG_X);
  overlong[OVERLONG_X] = '\0';
  snprintf(spec, sizeof spec, spec_fmt, overlong, release_path);
  /* Before the first fzip_failpoint(): the specification is parsed once. */
  if (setenv("FZIP_FAILPOINTS", spec, 1) != 0)
    return 1;
  RUN(test_error_at_n_fails_the_nth_and_every_later_hit_naming_point_and_hit);
  RUN(test_delay_sleeps_at_every_hit_and_never_fails);
  RUN(test_hold_at_n_waits_from_the_nth_hit_until_the_file_exists);
  RUN(test_error_and_delay_on_one_name_both_apply);
  RUN(test_unnamed_points_and_unknown_actions_pass);
  RUN(test_names_past_the_table_and_overlong_entries_are_ignored);
  rc = fzip_test_summary();
  unlink(release_path);
  rmdir(dir);
  return rc;
}
