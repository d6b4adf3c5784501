/*
 * Store behaviour under a failpoint (core/fzip_failpoint.h), one case per
 * run: arguments STORE_URI CASE, with FZIP_FAILPOINTS set by CTest.
 *
 * blob_chunk (FZIP_FAILPOINTS=store.blob_chunk=error@2): a blob writer
 * whose chunk could not be stored refuses more bytes and the commit, and
 * destroying it leaves no blob; so does a blob small enough to be stored
 * whole by its commit, and store_blob_put_many stores none of its blobs
 * (the failpoint's later hits).
 *
 * claim_commit (FZIP_FAILPOINTS=store.sqlite_commit=error@1, SQLite only:
 * the failpoint is in its transaction wrapper, and every commit fails): a
 * job claim is retried and then refused, UNAVAILABLE, nothing claimed, and
 * under ASan no leak of the job each rolled-back attempt had read (sq_run
 * runs op_job_claim again after a failed COMMIT).
 */
#include <stdlib.h>
#include <string.h>

#include "fzip_test.h"
#include "fzip_util.h"
#include "store.h"

#define BLOB_ID "failure/blob"
/* claim_commit: short, so that the claim is retried a few times, not for 10 s. */
#define RETRY_BUDGET_MS 300
#define LEASE_MS 1000

static store_t *g_store;

static void test_a_failed_chunk_breaks_the_writer_and_nothing_is_committed(void) {
  fzip_error_t err = {0};
  store_blob_writer_t *w = NULL;
  store_blob_info_t info;
  /* A writer stores a full batch of chunks at once (the failpoint's hit),
   * when the next byte comes. */
  static uint8_t batch[STORE_BLOB_BATCH];

  memset(batch, 'x', sizeof batch);
  CHECK_OK(store_blob_writer_new(&w, g_store, STORE_BUCKET_FILES, BLOB_ID, &err), err);
  CHECK_OK(store_blob_writer_write(w, batch, sizeof batch, &err), err); /* buffered */
  CHECK_OK(store_blob_writer_write(w, batch, sizeof batch, &err), err); /* batch 1 stored */
  CHECK_FAILS(store_blob_writer_write(w, batch, 1, &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK_FAILS(store_blob_writer_write(w, batch, 1, &err), err, FZIP_ERR_FAILED_PRECONDITION);
  CHECK(strstr(err.message, "earlier write failed") != NULL);
  CHECK_FAILS(store_blob_writer_commit(w, &info, &err), err, FZIP_ERR_FAILED_PRECONDITION);
  store_blob_writer_destroy(w);
  CHECK_FAILS(store_blob_stat(&info, g_store, STORE_BUCKET_FILES, BLOB_ID, &err), err,
              FZIP_ERR_NOT_FOUND);
}

/* Runs after the test above: every later hit of the failpoint fails. */
static void test_a_small_blob_whose_write_fails_breaks_the_writer(void) {
  fzip_error_t err = {0};
  store_blob_writer_t *w = NULL;
  store_blob_info_t info;

  CHECK_OK(store_blob_writer_new(&w, g_store, STORE_BUCKET_FILES, BLOB_ID, &err), err);
  CHECK_OK(store_blob_writer_write(w, "small", 5, &err), err); /* buffered, not stored */
  CHECK_FAILS(store_blob_writer_commit(w, &info, &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK(strstr(err.message, "store.blob_chunk") != NULL);
  CHECK_FAILS(store_blob_writer_commit(w, &info, &err), err, FZIP_ERR_FAILED_PRECONDITION);
  store_blob_writer_destroy(w);
  CHECK_FAILS(store_blob_stat(&info, g_store, STORE_BUCKET_FILES, BLOB_ID, &err), err,
              FZIP_ERR_NOT_FOUND);
}

static void test_blobs_put_together_fail_and_store_nothing(void) {
  fzip_error_t err = {0};
  store_blob_info_t info;
  store_blob_part_t parts[] = {{BLOB_ID, "one", 3}, {BLOB_ID "-2", "two", 3}};

  CHECK_FAILS(store_blob_put_many(g_store, STORE_BUCKET_FILES, parts, 2, &err), err,
              FZIP_ERR_UNAVAILABLE);
  CHECK(strstr(err.message, "store.blob_chunk") != NULL);
  for (size_t i = 0; i < 2; i++)
    CHECK_FAILS(store_blob_stat(&info, g_store, STORE_BUCKET_FILES, parts[i].blob_id, &err), err,
                FZIP_ERR_NOT_FOUND);
}

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
  const char *which = argc > 2 ? argv[2] : "";
  bool claim = strcmp(which, "claim_commit") == 0;
  store_options_t opts = {.uri = argc > 1 ? argv[1] : NULL,
                          .retry_budget_ms = claim ? RETRY_BUDGET_MS : 0};

  if (!getenv("FZIP_FAILPOINTS") || (!claim && strcmp(which, "blob_chunk") != 0)) {
    fprintf(stderr, "usage: FZIP_FAILPOINTS=... %s STORE_URI blob_chunk|claim_commit\n", argv[0]);
    return 2;
  }
  if (!store_open(&g_store, &opts, &err)) {
    fprintf(stderr, "store_open: %s\n", err.message);
    return 1;
  }
  if (claim) {
    RUN(test_a_claim_whose_commit_fails_claims_nothing);
  } else {
    RUN(test_a_failed_chunk_breaks_the_writer_and_nothing_is_committed);
    RUN(test_a_small_blob_whose_write_fails_breaks_the_writer);
    RUN(test_blobs_put_together_fail_and_store_nothing);
  }
  store_destroy(g_store);
  return fzip_test_summary();
}
