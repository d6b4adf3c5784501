/*
 * A job claim whose COMMIT fails (failpoint store.sqlite_commit, set by
 * CTest: FZIP_FAILPOINTS=store.sqlite_commit=error@1, so every commit
 * fails) is retried and then refused: UNAVAILABLE, nothing claimed, and
 * under ASan no leak of the job each rolled-back attempt had read (sq_run
 * runs op_job_claim again after a failed COMMIT).  Argument: the store URI
 * (SQLite only: the failpoint is in its transaction wrapper).
 */
#include <stdlib.h>
#include <string.h>

#include "fzip_test.h"
#include "fzip_util.h"
#include "store.h"

/* Short, so that the claim is retried a few times, not for 10 s. */
#define RETRY_BUDGET_MS 300
#define LEASE_MS 1000

static store_t *g_store;

static void test_a_claim_whose_commit_fails_claims_nothing(void) {
  fzip_error_t err = {0};
  int64_t now = fzip_now_ms();
  store_job_t *job = store_job_new(), *got = NULL;

  snprintf(job->job_id, sizeof job->job_id, "%s", "claim-commit-1");
  snprintf(job->user_id, sizeof job->user_id, "%s", "u1");
  job->kind = STORE_JOB_EXPORT;
  job->created_at = job->updated_at = now;
  job->runnable = true;
  BSON_APPEND_UTF8(job->body, "status", "PENDING");
  CHECK_OK(store_job_create(g_store, job, &err), err); /* no transaction: no failpoint */
  CHECK_FAILS(store_job_claim(&got, g_store, STORE_JOB_EXPORT, "w1", now + 1, LEASE_MS, &err),
              err, FZIP_ERR_UNAVAILABLE);
  CHECK(strstr(err.message, "store.sqlite_commit") != NULL);
  CHECK(got == NULL);
  /* Rolled back: the job still names no owner. */
  CHECK_OK(store_job_get(&got, g_store, STORE_JOB_EXPORT, "u1", "claim-commit-1", &err), err);
  CHECK(got && got->lease_owner[0] == '\0');
  store_job_destroy(got);
  store_job_destroy(job);
}

int main(int argc, char **argv) {
  fzip_error_t err = {0};
  store_options_t opts = {.uri = argc > 1 ? argv[1] : NULL, .retry_budget_ms = RETRY_BUDGET_MS};

  if (!getenv("FZIP_FAILPOINTS")) {
    fprintf(stderr, "run with FZIP_FAILPOINTS=store.sqlite_commit=error@1\n");
    return 2;
  }
  if (!store_open(&g_store, &opts, &err)) {
    fprintf(stderr, "store_open: %s\n", err.message);
    return 1;
  }
  RUN(test_a_claim_whose_commit_fails_claims_nothing);
  store_destroy(g_store);
  return fzip_test_summary();
}
