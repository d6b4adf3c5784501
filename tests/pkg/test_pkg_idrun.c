/*
 * Tests for pkg_idrun, the duplicate-id check of the validator: the
 * sorted path (nothing kept, no file), the external path with runs small
 * enough that a few hundred ids span many of them in a real temporary
 * file, the replay of the sorted prefix, the limits, a temporary
 * directory that cannot be written, and random streams checked against
 * a plain count.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_test.h"
#include "pkg_idrun.h"

#define IDS_MAX_TEST 4096 /* ids in one test stream */
#define DUPS_MAX_TEST 64  /* duplicates a test keeps to look at */

static char tmp_dir[256];

/* ---- helpers ---------------------------------------------------------- */

typedef struct {
  uint64_t n;
  char ids[DUPS_MAX_TEST][FZIP_ID_MAX + 1];
} dups_t;

static bool keep_dup(void *ctx, const char *id, fzip_error_t *error) {
  dups_t *d = ctx;
  if (d->n < DUPS_MAX_TEST)
    snprintf(d->ids[d->n], sizeof d->ids[d->n], "%s", id);
  d->n++;
  return true;
}

static bool new_run(pkg_idrun_t **run, size_t run_max, uint64_t ids_max, fzip_error_t *err) {
  pkg_idrun_options_t o = {tmp_dir, run_max, ids_max};
  return pkg_idrun_new(run, &o, err);
}

/* "t-" + n in 8 digits: ascending n gives ascending ids. */
static void id_of(char out[FZIP_ID_MAX + 1], unsigned n) {
  snprintf(out, FZIP_ID_MAX + 1, "t-%08u", n);
}

/* A permutation of 0..n-1 from a fixed seed (xorshift, Fisher-Yates). */
static void shuffle(unsigned *v, size_t n, uint32_t seed) {
  uint32_t x = seed ? seed : 1;
  for (size_t i = 0; i < n; i++)
    v[i] = (unsigned)i;
  for (size_t i = n; i > 1; i--) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    size_t j = x % i;
    unsigned t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}

/* Adds ids[0..n), then replays the prefix it is asked for (the same ids,
 * from the start) and finishes; *again counts the AGAIN answers. */
static bool run_stream(uint64_t *again, dups_t *dups, pkg_idrun_t *run, char (*ids)[FZIP_ID_MAX + 1],
                       size_t n, fzip_error_t *err) {
  pkg_idrun_rc_t rc;
  *again = 0;
  for (size_t i = 0; i < n; i++) {
    if (!pkg_idrun_add(&rc, run, ids[i], err))
      return false;
    *again += rc == PKG_IDRUN_AGAIN;
  }
  for (size_t i = 0; pkg_idrun_replay_wanted(run); i++) {
    if (!pkg_idrun_replay(run, ids[i], err))
      return false;
  }
  return pkg_idrun_finish(NULL, run, keep_dup, dups, err);
}

static char (*ids_buf(void))[FZIP_ID_MAX + 1] {
  static char ids[IDS_MAX_TEST + 8][FZIP_ID_MAX + 1];
  return ids;
}

/* ---- tests ------------------------------------------------------------ */

static void test_ascending_ids_keep_nothing_and_write_no_file(void) {
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  pkg_idrun_rc_t rc;
  char id[FZIP_ID_MAX + 1];
  uint64_t dups = 1;
  int not_new = 0;

  CHECK_OK(new_run(&run, 4, 0, &err), err);
  for (unsigned i = 0; i < 100000; i++) {
    id_of(id, i);
    if (!pkg_idrun_add(&rc, run, id, &err))
      break;
    not_new += rc != PKG_IDRUN_NEW;
  }
  bool external = pkg_idrun_external(run);
  size_t runs = pkg_idrun_runs(run);
  uint64_t wanted = pkg_idrun_replay_wanted(run);
  bool ok = pkg_idrun_finish(&dups, run, NULL, NULL, &err);
  pkg_idrun_destroy(run);
  CHECK(!fzip_error_is_set(&err));
  CHECK(ok && not_new == 0 && dups == 0);
  CHECK(!external && runs == 0 && wanted == 0);
}

static void test_adjacent_duplicate_in_ascending_ids_is_answered_at_once(void) {
  static const char *const ids[] = {"a-1", "a-2", "a-2", "a-2", "a-3"};
  static const pkg_idrun_rc_t want[] = {PKG_IDRUN_NEW, PKG_IDRUN_NEW, PKG_IDRUN_AGAIN,
                                        PKG_IDRUN_AGAIN, PKG_IDRUN_NEW};
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  pkg_idrun_rc_t rc;
  dups_t d = {0};
  int wrong = 0;

  CHECK_OK(new_run(&run, 0, 0, &err), err);
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    if (!pkg_idrun_add(&rc, run, ids[i], &err) || rc != want[i])
      wrong++;
  }
  bool external = pkg_idrun_external(run);
  bool ok = pkg_idrun_finish(NULL, run, keep_dup, &d, &err);
  pkg_idrun_destroy(run);
  CHECK(ok && wrong == 0 && !external && d.n == 0);
}

/* 1000 ids in a shuffled order and the first again at the very end: 125
 * runs of 8 in the file, and the one duplicate found, by its id. */
static void test_far_duplicate_out_of_order_found_across_runs(void) {
  char (*ids)[FZIP_ID_MAX + 1] = ids_buf();
  static unsigned perm[1000];
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  dups_t d = {0};
  uint64_t again;

  shuffle(perm, 1000, 7);
  for (size_t i = 0; i < 1000; i++)
    id_of(ids[i], perm[i]);
  memcpy(ids[1000], ids[0], sizeof ids[0]);
  CHECK_OK(new_run(&run, 8, 0, &err), err);
  bool ok = run_stream(&again, &d, run, ids, 1001, &err);
  size_t runs = pkg_idrun_runs(run);
  pkg_idrun_destroy(run);
  CHECK_OK(ok, err);
  fprintf(stderr, "  %zu runs, %llu duplicate(s): %s\n", runs, (unsigned long long)d.n, d.ids[0]);
  CHECK(runs >= 100);
  CHECK(again == 0 && d.n == 1 && strcmp(d.ids[0], ids[0]) == 0);
}

static void test_unique_ids_out_of_order_over_many_runs_are_no_duplicates(void) {
  char (*ids)[FZIP_ID_MAX + 1] = ids_buf();
  static unsigned perm[IDS_MAX_TEST];
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  dups_t d = {0};
  uint64_t again;

  shuffle(perm, IDS_MAX_TEST, 99);
  /* Long ids (about 120 bytes), so that a run is several read buffers. */
  for (size_t i = 0; i < IDS_MAX_TEST; i++)
    snprintf(ids[i], sizeof ids[i], "%0110u-%08u", perm[i] % 7, perm[i]);
  CHECK_OK(new_run(&run, 100, 0, &err), err);
  bool ok = run_stream(&again, &d, run, ids, IDS_MAX_TEST, &err);
  size_t runs = pkg_idrun_runs(run);
  pkg_idrun_destroy(run);
  CHECK_OK(ok, err);
  CHECK(runs == IDS_MAX_TEST / 100 && again == 0 && d.n == 0);
}

/* 500 ascending ids, then the 250th again (out of order: the run turns
 * external), then more: the prefix must be replayed, 500 ids, and the
 * duplicate of one of them is found only with it. */
static void test_duplicate_of_the_sorted_prefix_found_after_replay(void) {
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  pkg_idrun_rc_t rc;
  char id[FZIP_ID_MAX + 1];
  dups_t d = {0};
  bool ok = true;

  CHECK_OK(new_run(&run, 16, 0, &err), err);
  for (unsigned i = 0; ok && i < 500; i++) {
    id_of(id, i);
    ok = pkg_idrun_add(&rc, run, id, &err);
  }
  id_of(id, 250);
  ok = ok && pkg_idrun_add(&rc, run, id, &err) && rc == PKG_IDRUN_NEW;
  for (unsigned i = 500; ok && i < 600; i++) {
    id_of(id, i);
    ok = pkg_idrun_add(&rc, run, id, &err) && rc == PKG_IDRUN_NEW;
  }
  uint64_t wanted = pkg_idrun_replay_wanted(run);
  /* Finishing before the replay is refused; so is a prefix replayed out
   * of order. */
  fzip_error_t early = {0}, wrong = {0};
  bool finished_early = pkg_idrun_finish(NULL, run, keep_dup, &d, &early);
  id_of(id, 5);
  ok = ok && pkg_idrun_replay(run, id, &err);
  id_of(id, 3);
  bool replayed_backwards = pkg_idrun_replay(run, id, &wrong);
  pkg_idrun_destroy(run);
  CHECK_OK(ok, err);
  CHECK(wanted == 500 && !finished_early && early.code == FZIP_ERR_FAILED_PRECONDITION);
  CHECK(!replayed_backwards && wrong.code == FZIP_ERR_INVALID_ARGUMENT);

  /* The same stream, replayed right. */
  char (*ids)[FZIP_ID_MAX + 1] = ids_buf();
  uint64_t again;
  size_t n = 0;
  for (unsigned i = 0; i < 500; i++)
    id_of(ids[n++], i);
  id_of(ids[n++], 250);
  for (unsigned i = 500; i < 600; i++)
    id_of(ids[n++], i);
  memset(&d, 0, sizeof d);
  CHECK_OK(new_run(&run, 16, 0, &err), err);
  ok = run_stream(&again, &d, run, ids, n, &err);
  pkg_idrun_destroy(run);
  CHECK_OK(ok, err);
  CHECK(again == 0 && d.n == 1 && strcmp(d.ids[0], "t-00000250") == 0);
}

/* An id three times, apart: two duplicates (every occurrence after the
 * first), as the validator reports one issue per extra entity. */
static void test_every_extra_occurrence_is_a_duplicate(void) {
  static const char *const in[] = {"x", "y", "x", "z", "x", "w", "y"};
  char (*ids)[FZIP_ID_MAX + 1] = ids_buf();
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  dups_t d = {0};
  uint64_t again;
  size_t n = sizeof in / sizeof in[0];

  for (size_t i = 0; i < n; i++)
    snprintf(ids[i], sizeof ids[i], "%s", in[i]);
  CHECK_OK(new_run(&run, 2, 0, &err), err);
  bool ok = run_stream(&again, &d, run, ids, n, &err);
  pkg_idrun_destroy(run);
  CHECK_OK(ok, err);
  CHECK(again == 0 && d.n == 3);
  CHECK(strcmp(d.ids[0], "x") == 0 && strcmp(d.ids[1], "x") == 0 && strcmp(d.ids[2], "y") == 0);
}

static void test_ids_past_ids_max_are_full_in_either_mode(void) {
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  pkg_idrun_rc_t rc;
  char id[FZIP_ID_MAX + 1];
  int full = 0, added = 0;

  CHECK_OK(new_run(&run, 2, 5, &err), err);
  for (unsigned i = 0; i < 10; i++) {
    id_of(id, i % 2 ? 100 - i : i); /* out of order from the second id */
    if (!pkg_idrun_add(&rc, run, id, &err))
      break;
    full += rc == PKG_IDRUN_FULL;
    added += rc == PKG_IDRUN_NEW;
  }
  for (unsigned i = 0; pkg_idrun_replay_wanted(run) && i < 10; i++) {
    id_of(id, i % 2 ? 100 - i : i);
    if (!pkg_idrun_replay(run, id, &err))
      break;
  }
  uint64_t dups = 1;
  bool ok = !fzip_error_is_set(&err) && pkg_idrun_finish(&dups, run, NULL, NULL, &err);
  pkg_idrun_destroy(run);
  CHECK_OK(ok, err);
  CHECK(added == 5 && full == 5 && dups == 0);
}

static void test_ids_that_are_empty_or_too_long_are_refused(void) {
  char long_id[FZIP_ID_MAX + 2];
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  pkg_idrun_rc_t rc;

  memset(long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  CHECK_OK(new_run(&run, 0, 0, &err), err);
  bool empty_ok = pkg_idrun_add(&rc, run, "", &err);
  uint32_t empty_code = err.code;
  fzip_error_clear(&err);
  bool long_ok = pkg_idrun_add(&rc, run, long_id, &err);
  uint32_t long_code = err.code;
  long_id[FZIP_ID_MAX] = '\0'; /* FZIP_ID_MAX bytes: fine */
  bool max_ok = pkg_idrun_add(&rc, run, long_id, &err) && rc == PKG_IDRUN_NEW;
  pkg_idrun_destroy(run);
  CHECK(!empty_ok && empty_code == FZIP_ERR_INVALID_ARGUMENT);
  CHECK(!long_ok && long_code == FZIP_ERR_INVALID_ARGUMENT);
  CHECK(max_ok);
}

/* The first spill needs the directory: an error naming it, not a pass. */
static void test_unwritable_temp_dir_is_an_error_naming_it(void) {
  static const char missing[] = "/nonexistent/fzip-idrun-test";
  pkg_idrun_options_t o = {missing, 2, 0};
  fzip_error_t err = {0};
  pkg_idrun_t *run = NULL;
  pkg_idrun_rc_t rc;
  char id[FZIP_ID_MAX + 1];
  bool ok = true;

  CHECK_OK(pkg_idrun_new(&run, &o, &err), err);
  for (unsigned i = 0; ok && i < 10; i++) {
    id_of(id, 10 - i);
    ok = pkg_idrun_add(&rc, run, id, &err);
  }
  pkg_idrun_destroy(run);
  CHECK(!ok && err.domain == FZIP_DOMAIN_SYS && err.code == FZIP_ERR_INTERNAL);
  CHECK(strstr(err.message, missing) != NULL);
}

/* Random streams over a small alphabet of ids of random lengths, random
 * run sizes: AGAIN answers plus reported duplicates equal the ids less
 * the distinct ones, and every reported id does occur twice or more. */
static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

static void test_random_streams_agree_with_a_plain_count(void) {
  char (*ids)[FZIP_ID_MAX + 1] = ids_buf();
  static char sorted[IDS_MAX_TEST][FZIP_ID_MAX + 1];
  uint32_t x = 12345;
  int wrong = 0;

  for (int round = 0; round < 60; round++) {
    fzip_error_t err = {0};
    pkg_idrun_t *run = NULL;
    dups_t d = {0};
    uint64_t again = 0, distinct = 0;
    size_t n, alphabet, run_max;
#define NEXT() (x ^= x << 13, x ^= x >> 17, x ^= x << 5, x)
    n = 1 + NEXT() % (round < 50 ? 600 : IDS_MAX_TEST);
    alphabet = 1 + NEXT() % (2 * n);
    run_max = 1 + NEXT() % 50;
    if (run_max * (PKG_IDRUN_RUNS_MAX - 1) < n) /* past the cap on runs, ids are FULL */
      run_max = n / (PKG_IDRUN_RUNS_MAX - 1) + 1;
    /* Sometimes ascending for a while first, to make replays. */
    size_t ascending = NEXT() % 2 ? NEXT() % n : 0;
    for (size_t i = 0; i < n; i++) {
      unsigned v = (unsigned)(NEXT() % alphabet);
      snprintf(ids[i], sizeof ids[i], "%0*u", (int)(v % 97) + 8, v);
    }
#undef NEXT
    qsort(ids, ascending, sizeof ids[0], cmp_str);
    memcpy(sorted, ids, n * sizeof ids[0]);
    qsort(sorted, n, sizeof sorted[0], cmp_str);
    for (size_t i = 0; i < n; i++)
      distinct += i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0;
    if (!new_run(&run, run_max, 0, &err) || !run_stream(&again, &d, run, ids, n, &err)) {
      fprintf(stderr, "  round %d: %s\n", round, err.message);
      wrong++;
      pkg_idrun_destroy(run);
      continue;
    }
    pkg_idrun_destroy(run);
    if (again + d.n != n - distinct) {
      fprintf(stderr, "  round %d: %zu ids, %llu distinct, %llu again + %llu found\n", round, n,
              (unsigned long long)distinct, (unsigned long long)again,
              (unsigned long long)d.n);
      wrong++;
    }
    for (size_t k = 0; k < d.n && k < DUPS_MAX_TEST; k++) {
      char *hit = bsearch(d.ids[k], sorted, n, sizeof sorted[0], cmp_str);
      size_t at = hit ? (size_t)(hit - sorted[0]) / sizeof sorted[0] : n;
      bool twice = hit && ((at > 0 && strcmp(sorted[at - 1], d.ids[k]) == 0) ||
                           (at + 1 < n && strcmp(sorted[at + 1], d.ids[k]) == 0));
      if (!twice) {
        fprintf(stderr, "  round %d: %s reported, not twice in the stream\n", round, d.ids[k]);
        wrong++;
      }
    }
  }
  CHECK(wrong == 0);
}

/* ---- main ------------------------------------------------------------- */

int main(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmp_dir, sizeof tmp_dir, "%s/fzip-idrun-test-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  RUN(test_ascending_ids_keep_nothing_and_write_no_file);
  RUN(test_adjacent_duplicate_in_ascending_ids_is_answered_at_once);
  RUN(test_far_duplicate_out_of_order_found_across_runs);
  RUN(test_unique_ids_out_of_order_over_many_runs_are_no_duplicates);
  RUN(test_duplicate_of_the_sorted_prefix_found_after_replay);
  RUN(test_every_extra_occurrence_is_a_duplicate);
  RUN(test_ids_past_ids_max_are_full_in_either_mode);
  RUN(test_ids_that_are_empty_or_too_long_are_refused);
  RUN(test_unwritable_temp_dir_is_an_error_naming_it);
  RUN(test_random_streams_agree_with_a_plain_count);
  /* The temporary files are unlinked as they are made: the directory is
   * empty, and rmdir says so. */
  if (rmdir(tmp_dir) != 0) {
    fprintf(stderr, "FAIL %s is not empty: a temporary file was left behind\n", tmp_dir);
    return 1;
  }
  return fzip_test_summary();
}
