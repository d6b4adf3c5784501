/*
 * Fuzz target for pkg_idrun, the validator's duplicate-id check: the
 * first byte picks the run size (1 to FUZZ_RUN_MAX ids, so that small
 * inputs span many runs in the temporary file), the rest is ids separated
 * by '\n' or NUL (empty and over-long ones skipped, at most FUZZ_IDS_MAX).
 * The check is differential: the AGAIN answers plus the duplicates
 * pkg_idrun_finish reports must equal the ids less the distinct ones (a
 * plain sort counts them), and each id reported must occur twice; a
 * disagreement aborts.  The ids go in as the validator gives them: added,
 * then the sorted prefix replayed from the start.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg_idrun.h"

#define FUZZ_RUN_MAX 16
/* Below PKG_IDRUN_RUNS_MAX even with runs of one id: never FULL. */
#define FUZZ_IDS_MAX 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
  char ids[FUZZ_IDS_MAX][FZIP_ID_MAX + 1];
  char sorted[FUZZ_IDS_MAX][FZIP_ID_MAX + 1];
  size_t n;
  uint64_t reported;
} fuzz_ids_t;

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

/* Occurrences of id in the sorted copy. */
static size_t occurrences(const fuzz_ids_t *f, const char *id) {
  size_t n = 0;
  for (size_t i = 0; i < f->n; i++)
    n += strcmp(f->sorted[i], id) == 0;
  return n;
}

static bool on_dup(void *ctx, const char *id, fzip_error_t *error) {
  fuzz_ids_t *f = ctx;
  if (occurrences(f, id) < 2)
    abort();
  f->reported++;
  return true;
}

static void split(fuzz_ids_t *f, const uint8_t *data, size_t size) {
  size_t start = 0;
  f->n = 0;
  for (size_t i = 0; i <= size && f->n < FUZZ_IDS_MAX; i++) {
    if (i < size && data[i] != '\n' && data[i] != '\0')
      continue;
    size_t len = i - start;
    if (len >= 1 && len <= FZIP_ID_MAX) {
      memcpy(f->ids[f->n], data + start, len);
      f->ids[f->n++][len] = '\0';
    }
    start = i + 1;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static fuzz_ids_t f;
  pkg_idrun_options_t o = {NULL, 0, 0};
  pkg_idrun_t *run = NULL;
  pkg_idrun_rc_t rc;
  fzip_error_t err = {0};
  uint64_t again = 0, distinct = 0;

  if (size < 1)
    return 0;
  o.run_max = 1 + data[0] % FUZZ_RUN_MAX;
  split(&f, data + 1, size - 1);
  memcpy(f.sorted, f.ids, f.n * sizeof f.ids[0]);
  qsort(f.sorted, f.n, sizeof f.sorted[0], cmp_id);
  for (size_t i = 0; i < f.n; i++)
    distinct += i == 0 || strcmp(f.sorted[i], f.sorted[i - 1]) != 0;
  f.reported = 0;
  if (!pkg_idrun_new(&run, &o, &err))
    return 0;
  for (size_t i = 0; i < f.n; i++) {
    if (!pkg_idrun_add(&rc, run, f.ids[i], &err))
      goto done; /* the temporary file: not the check's fault */
    if (rc == PKG_IDRUN_FULL)
      abort();
    again += rc == PKG_IDRUN_AGAIN;
  }
  for (size_t i = 0; pkg_idrun_replay_wanted(run); i++) {
    if (i >= f.n)
      abort(); /* more wanted than were added */
    if (!pkg_idrun_replay(run, f.ids[i], &err)) {
      if (err.domain == FZIP_DOMAIN_SYS)
        goto done;
      abort(); /* the prefix given again is the prefix added: never refused */
    }
  }
  if (!pkg_idrun_finish(NULL, run, on_dup, &f, &err))
    goto done;
  if (again + f.reported != f.n - distinct)
    abort();
done:
  pkg_idrun_destroy(run);
  return 0;
}
