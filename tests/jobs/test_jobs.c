/*
 * test_jobs: the job engine (jobs/) on a real SQLite store in a temp
 * file: the status transition table, the runner's claim -> save ->
 * finish, the cancel flag seen by the next save, a job deleted or taken
 * while it runs, expiry, and shutdown releasing the lease.
 *
 * The jobs are of a test kind that borrows fzip.v1.ExportJob and its
 * status enum, with a table of its own, so these tests check the engine,
 * not the export service.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_metrics.h"
#include "fzip_test.h"
#include "fzip_util.h"
#include "job_body.h"
#include "job_kind.h"
#include "jobs.h"
#include "store.h"
#include "store_backend.h"
#include "svc_jobs.h"

#define S(name) FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_##name
#define TO(name) JOB_STATUS_BIT(S(name))
#define USER "jobs-test-user"
#define POLL_MS 20
#define LEASE_MS 5000
#define WAIT_MS 10000 /* the longest a test waits for a worker */
#define RETENTION_MS 60000

static const uint32_t test_next[] = {
    [S(UNSPECIFIED)] = TO(INITIATED),
    [S(INITIATED)] = TO(COLLECTING_DATA) | TO(CANCELLED),
    [S(COLLECTING_DATA)] = TO(COLLECTING_DATA) | TO(COMPLETED) | TO(FAILED) | TO(CANCELLED),
    [S(BUILDING_PACKAGE)] = 0,
    [S(UPLOADING)] = 0,
    [S(COMPLETED)] = TO(EXPIRED),
    [S(FAILED)] = 0,
    [S(EXPIRED)] = 0,
    [S(CANCELLED)] = 0,
};

static bool always(int status) {
  (void)status;
  return true;
}

static bool terminal(int status) { return status >= S(COMPLETED); }

static const job_kind_t test_kind = {
    .kind = STORE_JOB_EXPORT,
    .noun = "export",
    .id_field = "export_id",
    .job = &fzip__v1__export_job__descriptor,
    .status = &fzip__v1__export_status__descriptor,
    .next = test_next,
    .n_status = (int)(sizeof test_next / sizeof test_next[0]),
    .blob_prefix = "test-",
    .part_suffix = NULL,
    .blob_status = S(COMPLETED),
    .cancelled_status = S(CANCELLED),
    .failed_status = S(FAILED),
    .expired_status = S(EXPIRED),
    .expired_from = S(COMPLETED),
    .cancel_now = always,
    .cancel_now_message = "cancelled",
    .cancel_refused = "already ended",
    .delete_running = true,
    .is_terminal = terminal,
};

static char g_db[256];

static bool open_store(store_t **s, fzip_error_t *err) {
  char uri[300];
  store_options_t opts = {0};

  snprintf(uri, sizeof uri, "sqlite:%s", g_db);
  opts.uri = uri;
  return store_open(s, &opts, err);
}

/* A new runnable job of the test kind in status INITIATED. */
static bool create_job(char id[FZIP_UUID_LEN + 1], store_t *s, fzip_error_t *err) {
  Fzip__V1__ExportJob job = FZIP__V1__EXPORT_JOB__INIT;
  store_job_t *rec = store_job_new();
  bool ok = false;

  if (!rec || !fzip_uuid_v4(id, err))
    goto done;
  job.export_id = id;
  job.current_phase = "queued";
  if (!job_set_status(&job.base, &test_kind, S(INITIATED), err))
    goto done;
  snprintf(rec->job_id, sizeof rec->job_id, "%s", id);
  snprintf(rec->user_id, sizeof rec->user_id, "%s", USER);
  rec->kind = test_kind.kind;
  rec->created_at = rec->updated_at = fzip_now_ms();
  rec->runnable = true;
  ok = job_kind_body(rec->body, &test_kind, &job.base, false, err) &&
       store_job_create(s, rec, err);
done:
  store_job_destroy(rec);
  return ok;
}

/* A store with a new job of the test kind, its record and message. */
static bool open_with_job(store_t **s, char id[FZIP_UUID_LEN + 1], store_job_t **rec,
                          ProtobufCMessage **msg, fzip_error_t *err) {
  return open_store(s, err) && create_job(id, *s, err) &&
         store_job_get(rec, *s, test_kind.kind, NULL, id, err) &&
         job_body_unpack(msg, (*rec)->body, test_kind.job, NULL, err);
}

static int stored_status(store_t *s, const char *id, store_job_t **rec_out) {
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  fzip_error_t err;
  int status = -1;

  if (!store_job_get(&rec, s, test_kind.kind, NULL, id, &err))
    return -1;
  if (job_body_unpack(&msg, rec->body, test_kind.job, NULL, &err)) {
    status = job_status_of(msg);
    protobuf_c_message_free_unpacked(msg, NULL);
  }
  if (rec_out)
    *rec_out = rec;
  else
    store_job_destroy(rec);
  return status;
}

/* ---- the handler the runner runs -------------------------------------- */

typedef enum {
  RUN_FINISH,     /* save once, finish COMPLETED */
  RUN_UNTIL_STOP, /* save until a save fails, then act on why */
  RUN_OWN_ERROR,  /* save once, then the job's own work fails with own_code */
  RUN_BAD_END,    /* save once, then end in a status the table refuses */
  RUN_KEEP_LEASE, /* save once, wait for `go`, keep the lease, end CANCELLED */
} run_mode_t;

typedef struct {
  run_mode_t mode;
  fzip_code_t own_code;   /* RUN_OWN_ERROR's failure */
  atomic_int saves;       /* successful saves */
  atomic_int stop_code;   /* fzip_code_t of the failed save, -1: none yet */
  atomic_int stop_reason; /* job_stop_t, -1: none yet */
  atomic_bool ended;
  atomic_bool go;         /* RUN_KEEP_LEASE: the test changed the record */
  atomic_int keep_code;   /* RUN_KEEP_LEASE: fzip_code_t of keep_lease, -1: none */
  atomic_bool keep_saw_cancel; /* RUN_KEEP_LEASE: the cancel seen after it */
} run_probe_t;

static bool save_status(job_ctx_t *ctx, Fzip__V1__ExportJob *job, int status, bool final,
                        fzip_error_t *error) {
  if (!job_set_status(&job->base, &test_kind, status, error))
    return false;
  return final ? job_ctx_finish_job(ctx, &test_kind, &job->base, fzip_now_ms() + RETENTION_MS,
                                    error)
               : job_ctx_save_job(ctx, &test_kind, &job->base, true, error);
}

static bool wait_for(atomic_bool *flag);

static bool run_test_job(job_ctx_t *ctx, void *data, fzip_error_t *error) {
  run_probe_t *p = data;
  ProtobufCMessage *msg = NULL;
  Fzip__V1__ExportJob *job = NULL;
  fzip_error_t err;
  bool ok = false;

  if (!job_body_unpack(&msg, job_ctx_record(ctx)->body, test_kind.job, NULL, error))
    return false;
  job = (Fzip__V1__ExportJob *)msg;
  fzip_error_clear(&err);
  while (save_status(ctx, job, S(COLLECTING_DATA), false, &err)) {
    atomic_fetch_add(&p->saves, 1);
    if (p->mode != RUN_UNTIL_STOP)
      break;
    fzip_sleep_ms(POLL_MS);
  }
  if (p->mode == RUN_FINISH && fzip_error_is_set(&err) == false) {
    ok = save_status(ctx, job, S(COMPLETED), true, error);
    goto done;
  }
  if (p->mode == RUN_BAD_END && fzip_error_is_set(&err) == false) {
    ok = job_ctx_end_job(ctx, &test_kind, &job->base, S(EXPIRED), "expired", "bad end",
                         fzip_now_ms(), fzip_now_ms() + RETENTION_MS, error);
    goto done;
  }
  if (p->mode == RUN_KEEP_LEASE && fzip_error_is_set(&err) == false) {
    /* As a rollback does after a cancel: renew only, once an interval passed. */
    if (wait_for(&p->go)) {
      fzip_sleep_ms(JOB_SAVE_INTERVAL_MS + POLL_MS);
      fzip_error_clear(&err);
      atomic_store(&p->keep_code,
                   job_ctx_keep_lease(ctx, &err) ? (int)FZIP_OK : (int)err.code);
      atomic_store(&p->keep_saw_cancel, job_ctx_cancel_requested(ctx));
    }
    ok = save_status(ctx, job, S(CANCELLED), true, error);
    goto done;
  }
  if (p->mode == RUN_OWN_ERROR && fzip_error_is_set(&err) == false)
    fzip_error_set(&err, FZIP_DOMAIN_STORE, p->own_code, "the job's own work failed");
  atomic_store(&p->stop_code, (int)err.code);
  atomic_store(&p->stop_reason, (int)job_ctx_stop_reason(ctx, &err));
  switch (job_ctx_stop_reason(ctx, &err)) {
  case JOB_STOP_CANCEL:
    ok = save_status(ctx, job, S(CANCELLED), true, error);
    break;
  case JOB_STOP_FAIL:
    ok = save_status(ctx, job, S(FAILED), true, error);
    break;
  case JOB_STOP_LEAVE:
    *error = err;
    break;
  }
done:
  atomic_store(&p->ended, true);
  protobuf_c_message_free_unpacked(msg, NULL);
  return ok;
}

static bool start_runner(job_runner_t **r, store_t *s, run_probe_t *p, const char *owner,
                         fzip_error_t *err) {
  job_runner_options_t o = {0};

  atomic_init(&p->saves, 0);
  atomic_init(&p->stop_code, -1);
  atomic_init(&p->stop_reason, -1);
  atomic_init(&p->ended, false);
  atomic_init(&p->go, false);
  atomic_init(&p->keep_code, -1);
  atomic_init(&p->keep_saw_cancel, false);
  o.kind = test_kind.kind;
  o.name = "test";
  o.workers = 1;
  o.lease_ms = LEASE_MS;
  o.poll_ms = POLL_MS;
  o.owner = owner;
  o.run = run_test_job;
  o.data = p;
  return job_runner_new(r, s, &o, err);
}

static bool wait_for(atomic_bool *flag) {
  for (int waited = 0; waited < WAIT_MS; waited += POLL_MS) {
    if (atomic_load(flag))
      return true;
    fzip_sleep_ms(POLL_MS);
  }
  return atomic_load(flag);
}

static bool wait_for_saves(run_probe_t *p, int n) {
  for (int waited = 0; waited < WAIT_MS; waited += POLL_MS) {
    if (atomic_load(&p->saves) >= n)
      return true;
    fzip_sleep_ms(POLL_MS);
  }
  return false;
}

/* ---- the transition table --------------------------------------------- */

static void test_status_table_allows_listed_transitions(void) {
  Fzip__V1__ExportJob job = FZIP__V1__EXPORT_JOB__INIT;
  fzip_error_t err;

  CHECK_OK(job_set_status(&job.base, &test_kind, S(INITIATED), &err), err);
  CHECK_OK(job_set_status(&job.base, &test_kind, S(COLLECTING_DATA), &err), err);
  CHECK_OK(job_set_status(&job.base, &test_kind, S(COLLECTING_DATA), &err), err);
  CHECK_OK(job_set_status(&job.base, &test_kind, S(COMPLETED), &err), err);
  CHECK_OK(job_set_status(&job.base, &test_kind, S(EXPIRED), &err), err);
  CHECK(job.status == S(EXPIRED));
}

static void test_status_table_refuses_unlisted_transitions_and_leaves_the_status(void) {
  Fzip__V1__ExportJob job = FZIP__V1__EXPORT_JOB__INIT;
  fzip_error_t err;

  CHECK_FAILS(job_set_status(&job.base, &test_kind, S(COMPLETED), &err), err,
              FZIP_ERR_FAILED_PRECONDITION);
  CHECK(job.status == S(UNSPECIFIED));
  job.status = S(COMPLETED);
  CHECK_FAILS(job_set_status(&job.base, &test_kind, S(COLLECTING_DATA), &err), err,
              FZIP_ERR_FAILED_PRECONDITION);
  CHECK(strstr(err.message, "EXPORT_STATUS_COMPLETED") != NULL);
  CHECK(strstr(err.message, "EXPORT_STATUS_COLLECTING_DATA") != NULL);
  CHECK(job.status == S(COMPLETED));
  job.status = S(CANCELLED);
  CHECK_FAILS(job_set_status(&job.base, &test_kind, S(INITIATED), &err), err,
              FZIP_ERR_FAILED_PRECONDITION);
  /* Out of the table's range, either way. */
  CHECK(!job_status_allowed(&test_kind, S(CANCELLED) + 1, S(CANCELLED)));
  CHECK(!job_status_allowed(&test_kind, S(INITIATED), JOB_STATUS_MAX));
  CHECK(!job_status_allowed(&test_kind, -1, S(INITIATED)));
}

static void test_status_of_another_message_is_refused(void) {
  Fzip__V1__ImportJob job = FZIP__V1__IMPORT_JOB__INIT;
  fzip_error_t err;

  CHECK_FAILS(job_set_status(&job.base, &test_kind, S(INITIATED), &err), err, FZIP_ERR_INTERNAL);
}

/* ---- blobs and bodies --------------------------------------------------- */

static void test_blob_ids_fit_the_longest_job_id(void) {
  char id[FZIP_ID_MAX + 1];
  char blob[JOB_BLOB_ID_MAX];
  job_kind_t with_part = test_kind;

  memset(id, 'a', FZIP_ID_MAX);
  id[FZIP_ID_MAX] = '\0';
  with_part.part_suffix = ".part";
  job_part_blob_id(blob, &with_part, id);
  CHECK(strlen(blob) == strlen("test-") + FZIP_ID_MAX + strlen(".part"));
  CHECK(strncmp(blob, "test-aaa", 8) == 0);
  CHECK(strcmp(blob + strlen(blob) - 5, ".part") == 0);
}

static void test_body_names_the_blob_only_in_the_blob_status(void) {
  Fzip__V1__ExportJob job = FZIP__V1__EXPORT_JOB__INIT;
  bson_t body = BSON_INITIALIZER;
  fzip_error_t err;

  job.export_id = "job1";
  job.status = S(COLLECTING_DATA);
  CHECK_OK(job_kind_body(&body, &test_kind, &job.base, false, &err), err);
  CHECK(job_body_blob_id(&body) == NULL);
  bson_reinit(&body);
  job.status = S(COMPLETED);
  CHECK_OK(job_kind_body(&body, &test_kind, &job.base, true, &err), err);
  CHECK(job_body_blob_id(&body) && strcmp(job_body_blob_id(&body), "test-job1") == 0);
  CHECK(job_body_cancel_requested(&body));
  bson_destroy(&body);
}

/* ---- the runner ----------------------------------------------------------- */

/* Sets the cancel flag in a record's body (as an older fzipd left it). */
static void set_cancel_flag(store_job_t *rec) {
  bson_t *copy = bson_copy(rec->body);
  BSON_APPEND_BOOL(copy, JOB_CANCEL_FIELD, true);
  bson_destroy(rec->body);
  rec->body = copy;
}

/* A job of the test kind run by a one-worker runner of `owner`. */
typedef struct {
  store_t *s;
  job_runner_t *r;
  run_probe_t p;
  char id[FZIP_UUID_LEN + 1];
} running_t;

/* Starts the job and, in RUN_UNTIL_STOP mode, waits for its first save. */
static bool run_job(running_t *f, run_mode_t mode, const char *owner, fzip_error_t *err) {
  f->p.mode = mode;
  if (!open_store(&f->s, err) || !create_job(f->id, f->s, err) ||
      !start_runner(&f->r, f->s, &f->p, owner, err))
    return false;
  if (mode == RUN_UNTIL_STOP && !wait_for_saves(&f->p, 1))
    return fzip_error_set(err, FZIP_DOMAIN_JOB, FZIP_ERR_DEADLINE_EXCEEDED, "no save");
  return true;
}

/* Waits for the handler to end, stops the runner (if still running);
 * true if the handler's save failed with `code` read as `reason`. */
static bool ended_with(running_t *f, fzip_code_t code, job_stop_t reason) {
  bool ended = wait_for(&f->p.ended);
  job_runner_destroy(f->r);
  f->r = NULL;
  return ended && atomic_load(&f->p.stop_code) == (int)code &&
         atomic_load(&f->p.stop_reason) == (int)reason;
}

static void test_runner_claims_saves_and_finishes_a_job(void) {
  running_t f = {0};
  store_job_t *rec = NULL;
  fzip_error_t err;

  CHECK_OK(run_job(&f, RUN_FINISH, "owner-a", &err), err);
  CHECK(wait_for(&f.p.ended));
  job_runner_destroy(f.r);
  CHECK(atomic_load(&f.p.saves) == 1);
  CHECK(stored_status(f.s, f.id, &rec) == S(COMPLETED));
  CHECK(!rec->runnable);
  CHECK(rec->lease_owner[0] == '\0' && rec->lease_until == 0);
  CHECK(rec->expires_at > fzip_now_ms());
  CHECK(job_body_blob_id(rec->body) != NULL);
  store_job_destroy(rec);
  store_destroy(f.s);
}

static void test_cancel_request_is_seen_by_the_next_save(void) {
  running_t f = {0};
  fzip_error_t err;

  CHECK_OK(run_job(&f, RUN_UNTIL_STOP, "owner-b", &err), err);
  CHECK_OK(job_request_cancel(NULL, f.s, test_kind.kind, USER, f.id, &err), err);
  CHECK(ended_with(&f, FZIP_ERR_CANCELLED, JOB_STOP_CANCEL));
  CHECK(stored_status(f.s, f.id, NULL) == S(CANCELLED));
  store_destroy(f.s);
}

/* A user's cancel bumps the record's version: the lease is still kept (on
 * SQLite the renew is version-checked, and used to fail ABORTED from then
 * on, taking the cancel for a lost lease). */
static void test_keep_lease_renews_after_a_cancel_request(void) {
  running_t f = {0};
  fzip_error_t err;

  CHECK_OK(run_job(&f, RUN_KEEP_LEASE, "owner-keep", &err), err);
  CHECK(wait_for_saves(&f.p, 1));
  CHECK_OK(job_request_cancel(NULL, f.s, test_kind.kind, USER, f.id, &err), err);
  atomic_store(&f.p.go, true);
  CHECK(wait_for(&f.p.ended));
  job_runner_destroy(f.r);
  CHECK(atomic_load(&f.p.keep_code) == (int)FZIP_OK);
  CHECK(atomic_load(&f.p.keep_saw_cancel));
  /* Not lost: the final save went through as the owner. */
  CHECK(stored_status(f.s, f.id, NULL) == S(CANCELLED));
  store_destroy(f.s);
}

/* The job ended FAILED for good (not runnable, no lease, reaped later),
 * its error naming `why` (NULL: any); then closes the store. */
static void check_ended_failed(running_t *f, const char *why) {
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  fzip_error_t err;

  CHECK(stored_status(f->s, f->id, &rec) == S(FAILED));
  CHECK(rec && !rec->runnable && rec->lease_owner[0] == '\0' && rec->expires_at > 0);
  if (rec && job_body_unpack(&msg, rec->body, test_kind.job, NULL, &err)) {
    Fzip__V1__ExportJob *job = (Fzip__V1__ExportJob *)msg;
    /* Ended through job_end (which the test handler's own FAILED is not). */
    CHECK(!why || job->completed_at > 0);
    CHECK(!why || (job->error && strstr(job->error->message, why) != NULL));
    protobuf_c_message_free_unpacked(msg, NULL);
  }
  store_job_destroy(rec);
  store_destroy(f->s);
}

/* The job's own ABORTED or NOT_FOUND (a package read that found no
 * consistent snapshot, an upload the store reaped) is its failure: only a
 * lease really lost or a record really deleted lets the worker walk away. */
static void test_own_aborted_or_not_found_ends_the_job_failed(void) {
  static const fzip_code_t codes[] = {FZIP_ERR_ABORTED, FZIP_ERR_NOT_FOUND};

  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    running_t f = {0};
    fzip_error_t err;

    f.p.own_code = codes[i];
    CHECK_OK(run_job(&f, RUN_OWN_ERROR, "owner-own-error", &err), err);
    CHECK(ended_with(&f, codes[i], JOB_STOP_FAIL));
    check_ended_failed(&f, NULL);
  }
}

/* A final status the table refuses (a bug) still ends the job: FAILED,
 * not left runnable to be claimed again after every lease. */
static void test_a_refused_final_status_ends_the_job_failed(void) {
  running_t f = {0};
  fzip_error_t err;

  CHECK_OK(run_job(&f, RUN_BAD_END, "owner-bad-end", &err), err);
  CHECK(wait_for(&f.p.ended));
  job_runner_destroy(f.r);
  check_ended_failed(&f, "EXPORT_STATUS_EXPIRED");
}

/* A cancelled job made runnable again (as StartImport does) runs: the
 * cancel of its first run is not inherited. */
static void test_a_cancelled_job_restarted_runs_to_its_end(void) {
  running_t f = {0};
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  fzip_error_t err;

  CHECK_OK(run_job(&f, RUN_UNTIL_STOP, "owner-restart", &err), err);
  CHECK_OK(job_request_cancel(NULL, f.s, test_kind.kind, USER, f.id, &err), err);
  CHECK(ended_with(&f, FZIP_ERR_CANCELLED, JOB_STOP_CANCEL));
  CHECK(stored_status(f.s, f.id, &rec) == S(CANCELLED));
  /* An ended job keeps no cancel flag. */
  CHECK(rec && !job_body_cancel_requested(rec->body));
  /* Restart it: status back to INITIATED (the test table has no such
   * edge; the restart is what is tested here), runnable, a flag left by
   * an older fzipd dropped by the new run's save. */
  CHECK_OK(job_body_unpack(&msg, rec->body, test_kind.job, NULL, &err), err);
  ((Fzip__V1__ExportJob *)msg)->status = S(INITIATED);
  set_cancel_flag(rec);
  rec->runnable = true;
  rec->expires_at = 0;
  CHECK_OK(job_store_unowned(f.s, &test_kind, rec, msg, fzip_now_ms(), false, &err), err);
  protobuf_c_message_free_unpacked(msg, NULL);
  store_job_destroy(rec);
  rec = NULL;
  f.p.mode = RUN_FINISH;
  CHECK_OK(start_runner(&f.r, f.s, &f.p, "owner-restart", &err), err);
  CHECK(wait_for(&f.p.ended));
  job_runner_destroy(f.r);
  CHECK(atomic_load(&f.p.stop_code) == -1);
  CHECK(stored_status(f.s, f.id, NULL) == S(COMPLETED));
  store_destroy(f.s);
}

/* Saving outside a worker keeps the stored cancel flag only when asked. */
static void test_unowned_save_keeps_the_cancel_flag_only_when_asked(void) {
  store_t *s = NULL;
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  char id[FZIP_UUID_LEN + 1];
  fzip_error_t err;

  CHECK_OK(open_with_job(&s, id, &rec, &msg, &err), err);
  store_job_destroy(rec);
  rec = NULL;
  CHECK_OK(job_request_cancel(&rec, s, test_kind.kind, USER, id, &err), err);
  CHECK(job_body_cancel_requested(rec->body));
  CHECK_OK(job_store_unowned(s, &test_kind, rec, msg, fzip_now_ms(), true, &err), err);
  CHECK(job_body_cancel_requested(rec->body));
  CHECK_OK(job_store_unowned(s, &test_kind, rec, msg, fzip_now_ms(), false, &err), err);
  CHECK(!job_body_cancel_requested(rec->body));
  protobuf_c_message_free_unpacked(msg, NULL);
  store_job_destroy(rec);
  rec = NULL;
  CHECK(stored_status(s, id, &rec) == S(INITIATED));
  CHECK(rec && !job_body_cancel_requested(rec->body));
  store_job_destroy(rec);
  /* Not left runnable for the next test's runner. */
  CHECK_OK(store_job_delete(s, test_kind.kind, USER, id, &err), err);
  store_destroy(s);
}

static void test_job_deleted_while_running_fails_the_next_save_with_not_found(void) {
  running_t f = {0};
  fzip_error_t err;

  CHECK_OK(run_job(&f, RUN_UNTIL_STOP, "owner-c", &err), err);
  CHECK_OK(store_job_delete(f.s, test_kind.kind, USER, f.id, &err), err);
  CHECK(ended_with(&f, FZIP_ERR_NOT_FOUND, JOB_STOP_LEAVE));
  CHECK(stored_status(f.s, f.id, NULL) == -1);
  store_destroy(f.s);
}

/* Another replica takes the job over (as after a lapsed lease): a
 * version-checked update, read again when the running worker's own save
 * got in between (its saves bump the version every tick). */
#define TAKEOVER_ATTEMPTS 100
static bool take_over_lease(store_t *s, const char *id, const char *owner, fzip_error_t *err) {
  for (int i = 0; i < TAKEOVER_ATTEMPTS; i++) {
    store_job_t *rec = NULL;
    bool ok;
    if (!store_job_get(&rec, s, test_kind.kind, NULL, id, err))
      return false;
    snprintf(rec->lease_owner, sizeof rec->lease_owner, "%s", owner);
    ok = store_job_update(s, rec, NULL, err);
    store_job_destroy(rec);
    if (ok || err->code != FZIP_ERR_ABORTED)
      return ok;
  }
  return false;
}

static void test_lease_taken_by_another_replica_fails_the_next_save_with_aborted(void) {
  running_t f = {0};
  store_job_t *rec = NULL;
  fzip_error_t err;

  CHECK_OK(run_job(&f, RUN_UNTIL_STOP, "owner-d", &err), err);
  CHECK_OK(take_over_lease(f.s, f.id, "owner-elsewhere", &err), err);
  CHECK(ended_with(&f, FZIP_ERR_ABORTED, JOB_STOP_LEAVE));
  /* The loser wrote nothing after it lost. */
  CHECK(stored_status(f.s, f.id, &rec) == S(COLLECTING_DATA));
  CHECK(strcmp(rec->lease_owner, "owner-elsewhere") == 0);
  store_job_destroy(rec);
  /* Not left for the next test's runner to take over. */
  CHECK_OK(store_job_delete(f.s, test_kind.kind, USER, f.id, &err), err);
  store_destroy(f.s);
}

/* Two workers of one replica: one stalls past its lease (a slow store),
 * the other claims the job.  The claim holds the lease as "<replica>#<n>",
 * so the stalled worker's next save is fenced out as a loss, exactly as for
 * another replica.  (Fenced by the replica id alone, its save found "its
 * own" owner, reloaded and overwrote the sibling's progress.) */
static void test_lease_taken_by_a_sibling_worker_of_the_same_replica_fences_the_first(void) {
  running_t f = {0};
  store_job_t *rec = NULL;
  fzip_error_t err;
  char sibling[STORE_OWNER_MAX + 1];

  CHECK_OK(run_job(&f, RUN_UNTIL_STOP, "owner-f", &err), err);
  CHECK(stored_status(f.s, f.id, &rec) == S(COLLECTING_DATA));
  CHECK(strncmp(rec->lease_owner, "owner-f#", 8) == 0);
  /* What a sibling's claim writes: the same replica, its own number. */
  snprintf(sibling, sizeof sibling, "owner-f#%d", 1000);
  store_job_destroy(rec);
  rec = NULL;
  CHECK_OK(take_over_lease(f.s, f.id, sibling, &err), err);
  CHECK(ended_with(&f, FZIP_ERR_ABORTED, JOB_STOP_LEAVE));
  CHECK(stored_status(f.s, f.id, &rec) == S(COLLECTING_DATA));
  CHECK(strcmp(rec->lease_owner, sibling) == 0);
  store_job_destroy(rec);
  CHECK_OK(store_job_delete(f.s, test_kind.kind, USER, f.id, &err), err);
  store_destroy(f.s);
}

/* fzip_job_lease_takeovers_total{kind="test"} in the process registry. */
static double takeovers(void) {
  static const char series[] = "fzip_job_lease_takeovers_total{kind=\"test\"} ";
  fzip_error_t err;
  char *text = NULL;
  size_t len = 0;
  double n = 0;

  if (fzip_metrics_render(&text, &len, fzip_metrics_process(), &err)) {
    const char *line = strstr(text, series);
    n = line ? strtod(line + sizeof series - 1, NULL) : 0;
  }
  free(text);
  return n;
}

/* A job whose lease still names an owner but lapsed (the owner died) is
 * taken over by the next claim, and counted; new jobs (every other test)
 * and released ones are not takeovers. */
static void test_lapsed_lease_is_taken_over_and_counted(void) {
  running_t f = {0};
  store_job_t *rec = NULL;
  fzip_error_t err;
  double before = takeovers();

  f.p.mode = RUN_FINISH;
  CHECK_OK(open_store(&f.s, &err), err);
  CHECK_OK(create_job(f.id, f.s, &err), err);
  CHECK_OK(store_job_get(&rec, f.s, test_kind.kind, NULL, f.id, &err), err);
  snprintf(rec->lease_owner, sizeof rec->lease_owner, "dead-replica");
  rec->lease_until = fzip_now_ms() - 1;
  CHECK_OK(store_job_update(f.s, rec, NULL, &err), err);
  store_job_destroy(rec);
  rec = NULL;
  CHECK_OK(start_runner(&f.r, f.s, &f.p, "owner-takeover", &err), err);
  CHECK(wait_for(&f.p.ended));
  job_runner_destroy(f.r);
  CHECK(stored_status(f.s, f.id, &rec) == S(COMPLETED));
  store_job_destroy(rec);
  CHECK(takeovers() == before + 1);
  store_destroy(f.s);
}

static void test_shutdown_releases_the_lease_and_keeps_the_job_runnable(void) {
  running_t f = {0};
  store_job_t *rec = NULL;
  fzip_error_t err;

  CHECK_OK(run_job(&f, RUN_UNTIL_STOP, "owner-e", &err), err);
  /* The runner's destroy is the shutdown: the handler's next save fails,
   * and destroy joins it. */
  job_runner_destroy(f.r);
  f.r = NULL;
  CHECK(ended_with(&f, FZIP_ERR_CANCELLED, JOB_STOP_LEAVE));
  CHECK(stored_status(f.s, f.id, &rec) == S(COLLECTING_DATA));
  CHECK(rec->runnable);
  CHECK(rec->lease_owner[0] == '\0');
  CHECK(rec->lease_until == 0);
  store_job_destroy(rec);
  store_destroy(f.s);
}

/* ---- outside a worker: end, expiry ------------------------------------------ */

static void test_expiry_turns_a_completed_job_expired_and_deletes_its_blob(void) {
  store_t *s = NULL;
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  store_blob_writer_t *w = NULL;
  store_blob_info_t info;
  char id[FZIP_UUID_LEN + 1], blob[JOB_BLOB_ID_MAX];
  int64_t now = fzip_now_ms();
  fzip_error_t err;

  CHECK_OK(open_store(&s, &err), err);
  CHECK_OK(create_job(id, s, &err), err);
  job_blob_id(blob, &test_kind, id);
  CHECK_OK(store_blob_writer_new(&w, s, STORE_BUCKET_PACKAGES, blob, &err), err);
  CHECK_OK(store_blob_writer_write(w, "pkg", 3, &err), err);
  CHECK_OK(store_blob_writer_commit(w, NULL, &err), err);
  store_blob_writer_destroy(w);
  /* Completed (not runnable), then expired. */
  CHECK_OK(store_job_get(&rec, s, test_kind.kind, NULL, id, &err), err);
  CHECK_OK(job_body_unpack(&msg, rec->body, test_kind.job, NULL, &err), err);
  CHECK_OK(job_set_status(msg, &test_kind, S(COLLECTING_DATA), &err), err);
  CHECK_OK(job_end_unowned(s, &test_kind, rec, msg, S(COMPLETED), "completed", "done", now, true,
                           0, &err),
           err);
  protobuf_c_message_free_unpacked(msg, NULL);
  CHECK_OK(job_expire(s, &test_kind, rec, now, RETENTION_MS, &err), err);
  store_job_destroy(rec);
  rec = NULL;
  CHECK(stored_status(s, id, &rec) == S(EXPIRED));
  CHECK(!rec->runnable);
  CHECK(rec->expires_at == now + RETENTION_MS);
  CHECK_FAILS(store_blob_stat(&info, s, STORE_BUCKET_PACKAGES, blob, &err), err,
              FZIP_ERR_NOT_FOUND);
  /* An expired EXPIRED job is deleted. */
  CHECK_OK(job_expire(s, &test_kind, rec, now, RETENTION_MS, &err), err);
  CHECK(stored_status(s, id, NULL) == -1);
  store_job_destroy(rec);
  store_destroy(s);
}

static void test_expiry_leaves_a_runnable_job_and_clears_its_expiry(void) {
  store_t *s = NULL;
  store_job_t *rec = NULL;
  char id[FZIP_UUID_LEN + 1];
  fzip_error_t err;

  CHECK_OK(open_store(&s, &err), err);
  CHECK_OK(create_job(id, s, &err), err);
  CHECK_OK(store_job_get(&rec, s, test_kind.kind, NULL, id, &err), err);
  rec->expires_at = 1;
  CHECK_OK(store_job_update(s, rec, NULL, &err), err);
  CHECK_OK(job_expire(s, &test_kind, rec, fzip_now_ms(), RETENTION_MS, &err), err);
  store_job_destroy(rec);
  rec = NULL;
  CHECK(stored_status(s, id, &rec) == S(INITIATED));
  CHECK(rec->runnable && rec->expires_at == 0);
  store_job_destroy(rec);
  store_destroy(s);
}

static void test_ending_an_unowned_job_refuses_a_transition_the_table_lacks(void) {
  store_t *s = NULL;
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  char id[FZIP_UUID_LEN + 1];
  fzip_error_t err;

  CHECK_OK(open_with_job(&s, id, &rec, &msg, &err), err);
  /* INITIATED may be cancelled but not expire. */
  CHECK_FAILS(job_end_unowned(s, &test_kind, rec, msg, S(EXPIRED), "expired", "x", fzip_now_ms(),
                              false, RETENTION_MS, &err),
              err, FZIP_ERR_FAILED_PRECONDITION);
  CHECK_OK(job_end_unowned(s, &test_kind, rec, msg, S(CANCELLED), "cancelled", "stop",
                           fzip_now_ms(), true, RETENTION_MS, &err),
           err);
  protobuf_c_message_free_unpacked(msg, NULL);
  store_job_destroy(rec);
  rec = NULL;
  CHECK(stored_status(s, id, &rec) == S(CANCELLED));
  CHECK(!rec->runnable && rec->expires_at > 0);
  store_job_destroy(rec);
  store_destroy(s);
}

/* ---- cancel ------------------------------------------------------------ */

static bool always_conflicts(store_t *store, store_job_t *job, const char *owner,
                             fzip_error_t *error) {
  (void)store, (void)owner;
  return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED, "job %s changed",
                        job->job_id);
}

/* A job no worker holds is cancelled at once; one whose every update
 * loses a race is not answered as if it were (the stale record). */
static void test_cancel_ends_an_unheld_job_or_says_it_could_not(void) {
  store_t *s = NULL;
  store_job_t *rec = NULL;
  store_vtable_t racing;
  const store_vtable_t *real = NULL;
  char id[FZIP_UUID_LEN + 1], other[FZIP_UUID_LEN + 1];
  bool flagged = true;
  fzip_error_t err;

  CHECK_OK(open_store(&s, &err), err);
  CHECK_OK(create_job(id, s, &err), err);
  CHECK_OK(create_job(other, s, &err), err);
  CHECK_OK(job_cancel(&rec, &flagged, s, &test_kind, USER, id, RETENTION_MS, &err), err);
  CHECK(!flagged && rec && !rec->runnable);
  store_job_destroy(rec);
  rec = NULL;
  CHECK(stored_status(s, id, NULL) == S(CANCELLED));
  CHECK_FAILS(job_cancel(&rec, &flagged, s, &test_kind, USER, id, RETENTION_MS, &err), err,
              FZIP_ERR_FAILED_PRECONDITION);
  /* Every update conflicts (as when workers keep saving). */
  real = s->vt;
  racing = *real;
  racing.job_update = always_conflicts;
  s->vt = &racing;
  CHECK_FAILS(job_cancel(&rec, &flagged, s, &test_kind, USER, other, RETENTION_MS, &err), err,
              FZIP_ERR_ABORTED);
  CHECK(rec == NULL && strstr(err.message, "changed too often") != NULL);
  s->vt = real;
  CHECK(stored_status(s, other, NULL) == S(INITIATED));
  CHECK_OK(store_job_delete(s, test_kind.kind, USER, other, &err), err);
  store_destroy(s);
}

/* ---- the service rows ---------------------------------------------------- */

static bool no_call(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                    fzip_error_t *error) {
  (void)ctx, (void)req, (void)resp;
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "not called");
}

/* Builds the rows of a seven-method service whose list method is named
 * `list` (the runner then refuses the NULL store: rows come first). */
static bool init_rows(svc_jobs_base_t *base, const char *list, fzip_error_t *err) {
  const ProtobufCMessageDescriptor *m = &fzip__v1__export_job__descriptor;
  const ProtobufCMethodDescriptor methods[7] = {
      {"CreateExport", m, m}, {"GetExport", m, m},    {list, m, m},
      {"DownloadExport", m, m}, {"DeleteExport", m, m}, {"CancelExport", m, m},
      {"WatchExport", m, m},
  };
  const ProtobufCServiceDescriptor service = {
      .name = "test.ExportService", .n_methods = 7, .methods = methods};
  const svc_jobs_own_t own[SVC_JOBS_OWN] = {{"CreateExport", RPC_UNARY, no_call, NULL, NULL},
                                            {"DownloadExport", RPC_UNARY, no_call, NULL, NULL}};
  job_runner_options_t ro = {.run = run_test_job};

  return svc_jobs_base_init(base, &test_kind, NULL, RETENTION_MS, &service, own, &ro, err);
}

/* A shared method is its verb and the service's noun exactly: a method
 * that only starts with a verb ("ListExportIssues") binds to nothing. */
static void test_shared_rows_match_verb_and_noun_exactly(void) {
  svc_jobs_base_t base;
  fzip_error_t err;

  memset(&base, 0, sizeof base);
  CHECK_FAILS(init_rows(&base, "ListExports", &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(base.rows[2].unary == svc_jobs_list);
  CHECK(strcmp(base.rows[2].path, "/test.ExportService/ListExports") == 0);
  CHECK(base.rows[6].server_stream == &svc_jobs_watch_ops);
  memset(&base, 0, sizeof base);
  CHECK_FAILS(init_rows(&base, "ListExportIssues", &err), err, FZIP_ERR_INTERNAL);
  CHECK(strstr(err.message, "no handler for test.ExportService.ListExportIssues") != NULL);
}

int main(void) {

  if (!fzip_test_temp_file(g_db, sizeof g_db, "jobs"))
    return 1;
  RUN(test_status_table_allows_listed_transitions);
  RUN(test_status_table_refuses_unlisted_transitions_and_leaves_the_status);
  RUN(test_status_of_another_message_is_refused);
  RUN(test_shared_rows_match_verb_and_noun_exactly);
  RUN(test_blob_ids_fit_the_longest_job_id);
  RUN(test_body_names_the_blob_only_in_the_blob_status);
  RUN(test_runner_claims_saves_and_finishes_a_job);
  RUN(test_cancel_request_is_seen_by_the_next_save);
  RUN(test_keep_lease_renews_after_a_cancel_request);
  RUN(test_own_aborted_or_not_found_ends_the_job_failed);
  RUN(test_a_cancelled_job_restarted_runs_to_its_end);
  RUN(test_a_refused_final_status_ends_the_job_failed);
  RUN(test_unowned_save_keeps_the_cancel_flag_only_when_asked);
  RUN(test_job_deleted_while_running_fails_the_next_save_with_not_found);
  RUN(test_lease_taken_by_another_replica_fails_the_next_save_with_aborted);
  RUN(test_lease_taken_by_a_sibling_worker_of_the_same_replica_fences_the_first);
  RUN(test_shutdown_releases_the_lease_and_keeps_the_job_runnable);
  RUN(test_lapsed_lease_is_taken_over_and_counted);
  RUN(test_cancel_ends_an_unheld_job_or_says_it_could_not);
  RUN(test_expiry_turns_a_completed_job_expired_and_deletes_its_blob);
  RUN(test_expiry_leaves_a_runnable_job_and_clears_its_expiry);
  RUN(test_ending_an_unowned_job_refuses_a_transition_the_table_lacks);
  fzip_test_remove_sqlite(g_db);
  return fzip_test_summary();
}
