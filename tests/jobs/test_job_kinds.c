/*
 * test_job_kinds: the real job kinds' transition tables (export, import)
 * against what their workers write.  A worker whose status write is
 * refused stops without ending its job, so every status a worker path
 * writes must be allowed from every status that path can start from; and
 * a refused final status ends the job FAILED (job_ctx_end_job), so
 * failed_status must be allowed from every status a worker holds.
 */
#include <stdio.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_test.h"
#include "import_run.h"
#include "job_kind.h"
#include "svc_export.h"

#define EXP(name) FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_##name
#define IMP(name) FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_##name
#define FROM_MAX 4 /* statuses one worker path starts from */
#define TO_MAX 6   /* statuses it writes */

/* One worker path: the statuses it may find its job in, and the ones it
 * writes (any of them from any of those: a resumed job starts anywhere). */
typedef struct {
  const char *what;
  int from[FROM_MAX];
  int n_from;
  int to[TO_MAX];
  int n_to;
} worker_path_t;

/* export/svc_export.c run: a claimed export is INITIATED or, resumed, in a
 * running status; the build's progress moves it through the running
 * statuses; it ends COMPLETED, FAILED or CANCELLED. */
static const worker_path_t export_paths[] = {
    {"export first claim", {EXP(INITIATED)}, 1,
     {EXP(COLLECTING_DATA), EXP(FAILED), EXP(CANCELLED)}, 3},
    {"export build (or resumed)",
     {EXP(COLLECTING_DATA), EXP(BUILDING_PACKAGE), EXP(UPLOADING)}, 3,
     {EXP(COLLECTING_DATA), EXP(BUILDING_PACKAGE), EXP(UPLOADING), EXP(COMPLETED), EXP(FAILED),
      EXP(CANCELLED)},
     6},
};

/* import/import_run.c: StartImport makes it VALIDATING; validation saves
 * VALIDATING, ends it (passed, failed, FAILED, CANCELLED) or goes on to
 * PROCESSING, which saves PROCESSING and ends COMPLETED, FAILED or
 * CANCELLED, or VALIDATION_FAILED when the restore ran beside the
 * validation; a FAILED job whose cleanup is pending ends FAILED again. */
static const worker_path_t import_paths[] = {
    {"import validation", {IMP(VALIDATING)}, 1,
     {IMP(VALIDATING), IMP(VALIDATION_PASSED), IMP(VALIDATION_FAILED), IMP(PROCESSING),
      IMP(FAILED), IMP(CANCELLED)},
     6},
    {"import restore (or recovered)", {IMP(PROCESSING)}, 1,
     {IMP(PROCESSING), IMP(COMPLETED), IMP(FAILED), IMP(CANCELLED), IMP(VALIDATION_FAILED)}, 5},
    {"import cleanup retried", {IMP(FAILED)}, 1, {IMP(FAILED)}, 1},
    {"import undo", {IMP(UNDOING)}, 1, {IMP(UNDOING), IMP(UNDONE), IMP(COMPLETED)}, 3},
};

static void check_paths(const job_kind_t *kind, const worker_path_t *paths, size_t n) {
  for (size_t i = 0; i < n; i++) {
    for (int f = 0; f < paths[i].n_from; f++) {
      for (int t = 0; t < paths[i].n_to; t++) {
        int from = paths[i].from[f], to = paths[i].to[t];
        if (!job_status_allowed(kind, from, to)) {
          fprintf(stderr, "  %s: %s -> %s refused\n", paths[i].what,
                  job_status_name(kind, from), job_status_name(kind, to));
          CHECK(job_status_allowed(kind, from, to));
        }
      }
      /* The fallback of a refused end. */
      CHECK(job_status_allowed(kind, paths[i].from[f], kind->failed_status));
    }
  }
}

/* Every status that is not final may fail (creation's 0 aside, and an
 * import's UPLOADED, which no worker holds, is final to Watch). */
static void check_failable(const job_kind_t *kind) {
  for (int s = 1; s < kind->n_status; s++) {
    if (!kind->is_terminal(s) && !job_status_allowed(kind, s, kind->failed_status)) {
      fprintf(stderr, "  %s: %s cannot fail\n", kind->noun, job_status_name(kind, s));
      CHECK(job_status_allowed(kind, s, kind->failed_status));
    }
  }
}

static void test_export_worker_writes_are_allowed(void) {
  check_paths(&export_job_kind, export_paths, sizeof export_paths / sizeof export_paths[0]);
  check_failable(&export_job_kind);
  CHECK(export_job_kind.failed_status == EXP(FAILED));
}

static void test_import_worker_writes_are_allowed(void) {
  check_paths(&import_job_kind, import_paths, sizeof import_paths / sizeof import_paths[0]);
  check_failable(&import_job_kind);
  CHECK(import_job_kind.failed_status == IMP(FAILED));
}

/* A cancel may end a job no worker holds in any status its kind lets a
 * cancel end at once. */
static void test_cancel_now_statuses_may_be_cancelled(void) {
  const job_kind_t *kinds[] = {&export_job_kind, &import_job_kind};

  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    for (int s = 1; s < kinds[k]->n_status; s++) {
      if (!kinds[k]->is_terminal(s) && kinds[k]->cancel_now(s))
        CHECK(job_status_allowed(kinds[k], s, kinds[k]->cancelled_status));
    }
  }
}

int main(void) {
  RUN(test_export_worker_writes_are_allowed);
  RUN(test_import_worker_writes_are_allowed);
  RUN(test_cancel_now_statuses_may_be_cancelled);
  return fzip_test_summary();
}
