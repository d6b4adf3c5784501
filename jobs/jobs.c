/*
 * jobs: see jobs.h.  Worker threads loop claim -> run -> claim; an idle
 * worker waits on a condition variable with the poll interval as timeout.
 * The record a handler works on is the one its claim returned; every save
 * goes through store_job_update with this replica as the fencing owner.
 */
#include "jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fzip_log.h"
#include "fzip_metrics.h"
#include "fzip_util.h"

#define JOB_MAX_WORKERS 64
#define JOB_RUNNER_NAME_MAX 32       /* "jobs.<kind name>" for logs */
#define JOB_HOST_NAME_MAX 64         /* the host part of a default owner id */
#define JOB_CLAIM_BACKOFF_MIN_MS 100 /* after a failed claim, doubling... */
#define JOB_CLAIM_BACKOFF_MAX_MS 10000 /* ...up to this */
#define JOB_CLAIM_SUFFIX_MAX 21 /* "#" and a uint64_t */
#define JOB_RENEW_TRIES 2 /* keep_lease: a renew, and one more after a reload */

struct job_runner {
  store_t *store;
  job_runner_options_t opts;
  char owner[STORE_OWNER_MAX + 1];
  char name[JOB_RUNNER_NAME_MAX];
  pthread_t threads[JOB_MAX_WORKERS];
  int n_threads;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int pending_notifies; /* guarded by mu */
  atomic_bool stopping;
  atomic_uint_fast64_t claims; /* numbers each claim's holder id */
};

struct job_ctx {
  job_runner_t *runner;
  store_job_t *job; /* owned */
  /* The lease holder this claim writes and fences with: the replica's
   * owner id plus a claim number.  Fencing by the replica id alone let a
   * worker whose lease lapsed while it stalled (a slow store) overwrite the
   * job a sibling worker of the same replica had claimed meanwhile: its
   * save found "its own" owner and went on. */
  char holder[STORE_OWNER_MAX + 1];
  int64_t last_save_ms;
  bool cancel_requested;
  /* Why a save found the record changed, recorded where it was found out:
   * the job's own errors may carry the same codes (ABORTED, NOT_FOUND). */
  bool lost;    /* the lease went to another replica */
  bool deleted; /* the job's record is gone */
};

/* ---- handler side ----------------------------------------------------- */

store_t *job_ctx_store(job_ctx_t *ctx) { return ctx->runner->store; }

const char *job_ctx_owner(const job_ctx_t *ctx) { return ctx->runner->owner; }

const store_job_t *job_ctx_record(const job_ctx_t *ctx) { return ctx->job; }

bool job_ctx_should_stop(const job_ctx_t *ctx) { return atomic_load(&ctx->runner->stopping); }

bool job_ctx_is_shutdown_error(const job_ctx_t *ctx, const fzip_error_t *error) {
  return job_ctx_should_stop(ctx) && error && error->code == FZIP_ERR_CANCELLED &&
         !ctx->cancel_requested;
}

job_stop_t job_ctx_stop_reason(const job_ctx_t *ctx, const fzip_error_t *error) {
  if (job_ctx_is_shutdown_error(ctx, error) || ctx->lost || ctx->deleted)
    return JOB_STOP_LEAVE;
  if (error->code == FZIP_ERR_CANCELLED && job_ctx_cancel_requested(ctx))
    return JOB_STOP_CANCEL;
  return JOB_STOP_FAIL;
}

bool job_ctx_cancel_requested(const job_ctx_t *ctx) {
  return ctx->cancel_requested || job_body_cancel_requested(ctx->job->body);
}

bool job_body_cancel_requested(const bson_t *body) {
  bson_iter_t it;
  return body && bson_iter_init_find(&it, body, JOB_CANCEL_FIELD) && BSON_ITER_HOLDS_BOOL(&it) &&
         bson_iter_bool(&it);
}

/* Copies `body` into the record, keeping the cancel flag if the stored
 * record has it (a handler's body never clears a user's cancel). */
static void set_body(store_job_t *job, const bson_t *body, bool keep_cancel) {
  bson_t *copy = bson_new();
  bson_iter_t it;

  if (bson_iter_init(&it, body)) {
    while (bson_iter_next(&it)) {
      if (strcmp(bson_iter_key(&it), JOB_CANCEL_FIELD) != 0)
        bson_append_iter(copy, NULL, 0, &it);
    }
  }
  if (keep_cancel)
    BSON_APPEND_BOOL(copy, JOB_CANCEL_FIELD, true);
  bson_destroy(job->body);
  job->body = copy;
}

/* After an ABORTED save: find out why from the stored record. */
static bool reload_after_conflict(job_ctx_t *ctx, fzip_error_t *error) {
  store_job_t *fresh = NULL;
  fzip_error_t err;

  if (!store_job_get(&fresh, ctx->runner->store, ctx->job->kind, NULL, ctx->job->job_id, &err)) {
    if (err.code == FZIP_ERR_NOT_FOUND) {
      ctx->deleted = true;
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_NOT_FOUND,
                            "job %s was deleted while running", ctx->job->job_id);
    }
    *error = err;
    return false;
  }
  if (strcmp(fresh->lease_owner, ctx->holder) != 0) {
    ctx->lost = true;
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                   "job %s: lease lost to another claim (now held by \"%s\")", ctx->job->job_id,
                   fresh->lease_owner);
    store_job_destroy(fresh);
    return false;
  }
  store_job_destroy(ctx->job);
  ctx->job = fresh;
  if (job_body_cancel_requested(fresh->body))
    ctx->cancel_requested = true;
  return true;
}

static bool save(job_ctx_t *ctx, const bson_t *body, bool final, int64_t expires_at,
                 fzip_error_t *error) {
  for (int attempt = 0; attempt < JOB_UPDATE_RETRIES; attempt++) {
    int64_t now = fzip_now_ms();
    fzip_error_t err;

    if (!final && ctx->cancel_requested)
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_CANCELLED, "cancelled by the user");
    if (!final && job_ctx_should_stop(ctx))
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_CANCELLED,
                            "server is shutting down; the job will resume");
    /* The final save drops the flag: the job has ended, and a restarted
     * run (StartImport) must not be cancelled by the previous one's. */
    set_body(ctx->job, body, !final && ctx->cancel_requested);
    ctx->job->updated_at = now;
    if (final) {
      ctx->job->runnable = false;
      ctx->job->lease_owner[0] = '\0';
      ctx->job->lease_until = 0;
      ctx->job->expires_at = expires_at;
    } else {
      ctx->job->lease_until = now + ctx->runner->opts.lease_ms;
    }
    if (store_job_update(ctx->runner->store, ctx->job, ctx->holder, &err)) {
      ctx->last_save_ms = fzip_monotonic_ms();
      return true;
    }
    if (err.code != FZIP_ERR_ABORTED) {
      /* The update names the record's absence NOT_FOUND itself. */
      ctx->deleted = err.code == FZIP_ERR_NOT_FOUND;
      *error = err;
      return false;
    }
    if (!reload_after_conflict(ctx, error))
      return false;
    job_update_backoff(attempt);
  }
  return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                        "job %s: too many concurrent updates", ctx->job->job_id);
}

bool job_ctx_save(job_ctx_t *ctx, const bson_t *body, fzip_error_t *error) {
  return save(ctx, body, false, 0, error);
}

bool job_ctx_tick(job_ctx_t *ctx, const bson_t *body, bool force, fzip_error_t *error) {
  if (!force && fzip_monotonic_ms() - ctx->last_save_ms < JOB_SAVE_INTERVAL_MS) {
    if (job_ctx_should_stop(ctx))
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_CANCELLED,
                            "server is shutting down; the job will resume");
    return true;
  }
  return save(ctx, body, false, 0, error);
}

bool job_ctx_keep_lease(job_ctx_t *ctx, fzip_error_t *error) {
  if (fzip_monotonic_ms() - ctx->last_save_ms < JOB_SAVE_INTERVAL_MS)
    return true;
  /* Set before trying: after a failure (lost lease, store hiccup) the next
   * try still waits an interval, rather than every visited item paying a
   * failed write. */
  ctx->last_save_ms = fzip_monotonic_ms();
  for (int attempt = 0; attempt < JOB_RENEW_TRIES; attempt++) {
    if (store_job_renew(ctx->runner->store, ctx->job, ctx->holder, fzip_now_ms(),
                        ctx->runner->opts.lease_ms, error))
      return true;
    if (error->code != FZIP_ERR_ABORTED)
      return false;
    /* A backend that renews by version (SQLite) refuses after any change
     * to the record, a user's cancel included: reload it (this sets `lost`
     * only if the owner changed, and picks up the cancel) and try again. */
    if (!reload_after_conflict(ctx, error))
      return false;
  }
  return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                        "job %s: too many concurrent updates while renewing the lease",
                        ctx->job->job_id);
}

bool job_ctx_finish(job_ctx_t *ctx, const bson_t *body, int64_t expires_at, fzip_error_t *error) {
  return save(ctx, body, true, expires_at, error);
}

/* ---- outside a handler ------------------------------------------------ */

bool job_request_cancel(store_job_t **out, store_t *store, store_job_kind_t kind,
                        const char *user_id, const char *job_id, fzip_error_t *error) {
  for (int attempt = 0; attempt < JOB_UPDATE_RETRIES; attempt++) {
    store_job_t *job = NULL;
    fzip_error_t err;

    if (!store_job_get(&job, store, kind, user_id, job_id, error))
      return false;
    if (job_body_cancel_requested(job->body) || !job->runnable) {
      if (out)
        *out = job;
      else
        store_job_destroy(job);
      return true;
    }
    set_body(job, job->body, true);
    job->updated_at = fzip_now_ms();
    if (store_job_update(store, job, NULL, &err)) {
      if (out)
        *out = job;
      else
        store_job_destroy(job);
      return true;
    }
    store_job_destroy(job);
    if (err.code != FZIP_ERR_ABORTED) {
      *error = err;
      return false;
    }
    job_update_backoff(attempt);
  }
  return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                        "job %s: too many concurrent updates, try again", job_id);
}

void job_update_backoff(int attempt) {
  int64_t ms = JOB_UPDATE_BACKOFF_MAX_MS;
  if (attempt + 1 >= JOB_UPDATE_RETRIES)
    return; /* no try follows: the loop gives up now, not 128 ms later */
  if (attempt >= 0 && attempt < 16 && (JOB_UPDATE_BACKOFF_MS << attempt) < ms)
    ms = (int64_t)JOB_UPDATE_BACKOFF_MS << attempt;
  fzip_sleep_ms(ms);
}

/* ---- the runner ------------------------------------------------------- */

/* Gives an interrupted job back: runnable stays true, the lease is freed so
 * the next claim (here after restart, or another replica) takes it now. */
static void release_lease(job_runner_t *r, store_job_t *job, const char *holder) {
  fzip_error_t err;

  job->lease_until = 0;
  job->lease_owner[0] = '\0';
  job->updated_at = fzip_now_ms();
  if (!store_job_update(r->store, job, holder, &err))
    fzip_log(FZIP_LOG_WARN, r->name, "could not release lease; it will lapse", "job",
             job->job_id, "error", err.message, NULL);
}

static void run_one(job_runner_t *r, store_job_t *job, const char *holder) {
  job_ctx_t ctx = {.runner = r, .job = job, .last_save_ms = fzip_monotonic_ms()};
  fzip_error_t err;

  fzip_error_clear(&err);
  snprintf(ctx.holder, sizeof ctx.holder, "%s", holder);
  ctx.cancel_requested = job_body_cancel_requested(job->body);
  /* Every line written while the job runs carries the x-request-id of the
   * call that created it ("" for jobs stored before it was kept: none). */
  fzip_log_set_request_id(job->trace_id);
  fzip_log(FZIP_LOG_INFO, r->name, "job claimed", "job", job->job_id, "user", job->user_id,
           "owner", holder, "lease", job->lease_lapsed ? "taken over" : "free", NULL);
  if (job->lease_lapsed)
    fzip_metric_add(FZIP_METRIC_LEASE_TAKEOVERS,
                    (const char *[]){r->opts.name ? r->opts.name : "job"}, 1);
  if (!r->opts.run(&ctx, r->opts.data, &err)) {
    if (job_ctx_is_shutdown_error(&ctx, &err)) {
      release_lease(r, ctx.job, ctx.holder);
      fzip_log(FZIP_LOG_INFO, r->name, "job interrupted by shutdown; lease released", "job",
               ctx.job->job_id, NULL);
    } else {
      fzip_log(FZIP_LOG_WARN, r->name, "job stopped", "job", ctx.job->job_id, "code",
               fzip_code_name((fzip_code_t)err.code), "error", err.message, NULL);
    }
  }
  fzip_log_set_request_id(NULL);
  store_job_destroy(ctx.job);
  /* An export or import of a large user leaves the store's caches full and
   * tens of MiB freed in this worker's and the deflate threads' arenas
   * (BENCHMARKS.md "run T"). */
  store_release_memory(r->store);
}

static void wait_for_work(job_runner_t *r) {
  struct timespec deadline = fzip_monotonic_deadline(r->opts.poll_ms);

  pthread_mutex_lock(&r->mu);
  while (!atomic_load(&r->stopping) && r->pending_notifies == 0) {
    if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == ETIMEDOUT)
      break;
  }
  if (r->pending_notifies > 0)
    r->pending_notifies--;
  pthread_mutex_unlock(&r->mu);
}

/* "<replica owner>#<n>": unique per claim within this runner, and the
 * replica's id is cut short enough to leave the number its room. */
static void claim_holder(char *out, size_t size, job_runner_t *r) {
  uint64_t n = (uint64_t)atomic_fetch_add(&r->claims, 1) + 1;
  snprintf(out, size, "%.*s#%" PRIu64, (int)(STORE_OWNER_MAX - JOB_CLAIM_SUFFIX_MAX), r->owner,
           n);
}

static void *worker_main(void *arg) {
  job_runner_t *r = arg;
  int backoff_ms = JOB_CLAIM_BACKOFF_MIN_MS;

  while (!atomic_load(&r->stopping)) {
    store_job_t *job = NULL;
    fzip_error_t err;
    char holder[STORE_OWNER_MAX + 1];

    claim_holder(holder, sizeof holder, r);
    if (!store_job_claim(&job, r->store, r->opts.kind, holder, fzip_now_ms(), r->opts.lease_ms,
                         &err)) {
      /* The store retried already; back off more before claiming again. */
      fzip_log(FZIP_LOG_WARN, r->name, "claim failed", "error", err.message, NULL);
      fzip_sleep_ms(backoff_ms);
      backoff_ms = backoff_ms * 2 > JOB_CLAIM_BACKOFF_MAX_MS ? JOB_CLAIM_BACKOFF_MAX_MS
                                                             : backoff_ms * 2;
      continue;
    }
    backoff_ms = JOB_CLAIM_BACKOFF_MIN_MS;
    if (job)
      run_one(r, job, holder);
    else
      wait_for_work(r);
  }
  return NULL;
}

static void default_owner(char *out, size_t size) {
  char host[JOB_HOST_NAME_MAX] = "fzipd";
  char uuid[FZIP_UUID_LEN + 1] = "0";

  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  fzip_uuid_v4(uuid, NULL);
  snprintf(out, size, "%s-%ld-%.8s", host, (long)getpid(), uuid);
}

bool job_runner_new(job_runner_t **out, store_t *store, const job_runner_options_t *options,
                    fzip_error_t *error) {
  job_runner_t *r = NULL;

  *out = NULL;
  if (!store || !options || !options->run)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "job runner needs a store and a run function");
  r = calloc(1, sizeof *r);
  if (!r)
    return fzip_error_oom(error, NULL);
  r->store = store;
  r->opts = *options;
  if (r->opts.workers <= 0)
    r->opts.workers = 2;
  if (r->opts.workers > JOB_MAX_WORKERS)
    r->opts.workers = JOB_MAX_WORKERS;
  if (r->opts.lease_ms <= 0)
    r->opts.lease_ms = JOB_DEFAULT_LEASE_MS;
  if (r->opts.poll_ms <= 0)
    r->opts.poll_ms = JOB_DEFAULT_POLL_MS;
  snprintf(r->name, sizeof r->name, "jobs.%s", options->name ? options->name : "job");
  if (options->owner && *options->owner)
    snprintf(r->owner, sizeof r->owner, "%s", options->owner);
  else
    default_owner(r->owner, sizeof r->owner);
  r->opts.owner = r->owner;
  pthread_mutex_init(&r->mu, NULL);
  fzip_cond_init_monotonic(&r->cv);
  atomic_init(&r->stopping, false);
  atomic_init(&r->claims, 0);
  for (int i = 0; i < r->opts.workers; i++) {
    if (pthread_create(&r->threads[i], NULL, worker_main, r) != 0) {
      job_runner_destroy(r);
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                            "cannot start job worker thread");
    }
    r->n_threads++;
  }
  *out = r;
  return true;
}

void job_runner_notify(job_runner_t *r) {
  if (!r)
    return;
  pthread_mutex_lock(&r->mu);
  if (r->pending_notifies < r->opts.workers)
    r->pending_notifies++;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

const char *job_runner_owner(const job_runner_t *r) { return r->owner; }

void job_runner_destroy(job_runner_t *r) {
  if (!r)
    return;
  pthread_mutex_lock(&r->mu);
  atomic_store(&r->stopping, true);
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  for (int i = 0; i < r->n_threads; i++)
    pthread_join(r->threads[i], NULL);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
}
