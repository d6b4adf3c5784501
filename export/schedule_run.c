/*
 * schedule_run: see schedule_run.h.
 *
 * One tick claims due schedules one at a time (store_job_claim on
 * STORE_JOB_SCHEDULE) and handles each: a due one gets its run (the export
 * created, the run recorded, the next due time planned); one claimed only
 * to apply retention (its lease_until was set to the recheck time) gets
 * that if its export has ended.  The record is saved under the lease; if
 * a user changed it meanwhile (UpdateSchedule) the save is ABORTED and the
 * run's results are put on the fresh record instead.
 */
#include "schedule_run.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_cron.h"
#include "fzip_failpoint.h"
#include "fzip_log.h"
#include "fzip_ticker.h"
#include "fzip_tz.h"
#include "fzip_util.h"
#include "job_body.h"
#include "jobs.h"
#include "retention.h"

/* "schedule-<id>-<due ms>": the run's request_id. */
#define RUN_REQUEST_ID_MAX (FZIP_ID_MAX + 48)
#define OWNER_PREFIX "scheduler-"

struct schedule_run {
  store_t *store;
  svc_export_t *exports;
  schedule_run_options_t opts;
  char owner[STORE_OWNER_MAX + 1];
  fzip_ticker_t *ticker;
};

/* ---- clock ------------------------------------------------------------- */

int64_t schedule_clock_now(const char *offset_file) {
  char *text = NULL, *end = NULL;
  size_t len = 0;
  long long offset = 0;
  fzip_error_t err;

  if (!offset_file || !offset_file[0])
    return fzip_now_ms();
  fzip_error_clear(&err);
  if (fzip_read_small_file(&text, &len, offset_file, SCHEDULE_CLOCK_FILE_MAX, &err)) {
    offset = strtoll(text, &end, 10);
    if (end == text)
      offset = 0;
    free(text);
  }
  return fzip_now_ms() + (int64_t)offset;
}

/* ---- the record -------------------------------------------------------- */

bool schedule_rec_init(schedule_rec_t *s, store_job_t *rec, fzip_error_t *error) {
  ProtobufCMessage *msg = NULL;
  bson_iter_t it;

  memset(s, 0, sizeof *s);
  s->rec = rec;
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__schedule__descriptor, NULL, error))
    return false;
  s->msg = (Fzip__V1__Schedule *)msg;
  s->msg->version = rec->version;
  if (bson_iter_init_find(&it, rec->body, SCHEDULE_PENDING_FIELD) && BSON_ITER_HOLDS_UTF8(&it))
    snprintf(s->pending, sizeof s->pending, "%s", bson_iter_utf8(&it, NULL));
  return true;
}

void schedule_rec_fini(schedule_rec_t *s) {
  if (s->msg)
    protobuf_c_message_free_unpacked(&s->msg->base, NULL);
  store_job_destroy(s->rec);
  memset(s, 0, sizeof *s);
}

/* The spec's cron and time zone (*tz for fzip_tz_destroy, even on
 * failure). */
static bool load_spec(fzip_cron_t *cron, fzip_tz_t **tz, const Fzip__V1__ScheduleSpec *spec,
                      fzip_error_t *error) {
  *tz = NULL;
  return fzip_cron_parse(cron, spec->cron, error) &&
         fzip_tz_load(tz, spec->time_zone ? spec->time_zone : "", error);
}

/* The first due time of the spec after `after_ms`. */
static bool next_due(int64_t *out, const Fzip__V1__ScheduleSpec *spec, int64_t after_ms,
                     fzip_error_t *error) {
  fzip_cron_t cron;
  fzip_tz_t *tz = NULL;
  bool ok = load_spec(&cron, &tz, spec, error) && fzip_cron_next(out, &cron, tz, after_ms, error);
  fzip_tz_destroy(tz);
  return ok;
}

static void set_lease(schedule_rec_t *s, int64_t now_ms) {
  int64_t at = s->msg->next_run_at;
  bool paused = !s->msg->spec || s->msg->spec->paused;

  /* An export still to be followed for its retention brings the schedule
   * back sooner than its next run. */
  if (s->pending[0] && !paused &&
      (at == 0 || at > now_ms + SCHEDULE_RETENTION_RECHECK_MS))
    at = now_ms + SCHEDULE_RETENTION_RECHECK_MS;
  s->rec->runnable = !paused;
  s->rec->lease_owner[0] = '\0';
  s->rec->lease_until = paused ? 0 : at;
}

bool schedule_rec_plan(schedule_rec_t *s, int64_t now_ms, fzip_error_t *error) {
  if (!s->msg->spec || s->msg->spec->paused) {
    s->msg->next_run_at = 0;
  } else if (!next_due(&s->msg->next_run_at, s->msg->spec, now_ms, error)) {
    return false;
  }
  set_lease(s, now_ms);
  return true;
}

bool schedule_rec_pack(schedule_rec_t *s, fzip_error_t *error) {
  bson_t *body = bson_new();
  bool paused = s->msg->spec && s->msg->spec->paused;
  if (!body)
    return fzip_error_oom(error, NULL);
  /* "status" is for operators reading the database. */
  if (!job_body_build(body, &s->msg->base, paused ? "PAUSED" : "ACTIVE", 0, NULL, false, error)) {
    bson_destroy(body);
    return false;
  }
  if (s->pending[0])
    BSON_APPEND_UTF8(body, SCHEDULE_PENDING_FIELD, s->pending);
  bson_destroy(s->rec->body);
  s->rec->body = body;
  return true;
}

/* ---- one run ----------------------------------------------------------- */

/* What a run produced, kept apart so it can be put on a fresh record. */
typedef struct {
  int64_t due;
  char export_id[FZIP_ID_MAX + 1]; /* "" when the create failed */
  fzip_error_t error;              /* the create's failure */
  int64_t missed;
  bool ran;
  bool retention_done; /* the pending export ended and retention was applied */
} run_result_t;

/* The export job `id` of `user` (malloc-unpacked) or NULL if it is gone. */
static bool load_export(Fzip__V1__ExportJob **out, store_t *store, const char *user,
                        const char *id, fzip_error_t *error) {
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  fzip_error_t err;

  *out = NULL;
  fzip_error_clear(&err);
  if (!store_job_get(&rec, store, STORE_JOB_EXPORT, user, id, &err)) {
    if (err.code == FZIP_ERR_NOT_FOUND)
      return true;
    *error = err;
    return false;
  }
  if (job_body_unpack(&msg, rec->body, &fzip__v1__export_job__descriptor, NULL, error))
    *out = (Fzip__V1__ExportJob *)msg;
  store_job_destroy(rec);
  return *out != NULL;
}

/* The base of this run's increment: the previous run's export, if
 * full_every asks for an increment and that export is COMPLETED, not
 * expired and not at the end of a chain (EXPORT_CHAIN_MAX: full_every was
 * lowered since); else "" (a complete export). */
static bool pick_base(char base[FZIP_ID_MAX + 1], schedule_run_t *r, const schedule_rec_t *s,
                      fzip_error_t *error) {
  const Fzip__V1__Schedule *m = s->msg;
  Fzip__V1__ExportJob *job = NULL;
  int64_t now = fzip_now_ms();

  base[0] = '\0';
  if (m->spec->full_every <= 1 || m->runs % m->spec->full_every == 0 || !m->last_export_id ||
      !m->last_export_id[0])
    return true;
  if (!load_export(&job, r->store, s->rec->user_id, m->last_export_id, error))
    return false;
  if (job && job->status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED &&
      (job->expires_at == 0 || job->expires_at > now) &&
      job->chain_length < EXPORT_CHAIN_MAX)
    snprintf(base, FZIP_ID_MAX + 1, "%s", job->export_id);
  if (job)
    protobuf_c_message_free_unpacked(&job->base, NULL);
  return true;
}

/* Creates the run's export as CreateExport would, for the schedule's user. */
static bool create_run_export(run_result_t *res, schedule_run_t *r, const schedule_rec_t *s,
                              fzip_error_t *error) {
  const Fzip__V1__ScheduleSpec *spec = s->msg->spec;
  Fzip__V1__CreateExportRequest req = FZIP__V1__CREATE_EXPORT_REQUEST__INIT;
  char request_id[RUN_REQUEST_ID_MAX], base[FZIP_ID_MAX + 1];
  store_job_t *job = NULL;
  bool replayed = false;

  if (!pick_base(base, r, s, error))
    return false;
  snprintf(request_id, sizeof request_id, "schedule-%s-%" PRId64, s->rec->job_id, res->due);
  req.request_id = request_id;
  req.incremental_base_id = base;
  if (!base[0]) { /* an increment has its base's selection */
    req.export_type = spec->export_type;
    req.include_analytics = spec->include_analytics;
    req.filters = spec->filters;
  }
  req.encryption = spec->encryption;
  req.description = spec->description;
  if (!svc_export_create(&job, &replayed, r->exports, NULL, s->rec->user_id, &req,
                         s->rec->job_id, error))
    return false;
  snprintf(res->export_id, sizeof res->export_id, "%s", job->job_id);
  fzip_log(FZIP_LOG_INFO, "schedule",
           replayed ? "scheduled export replayed" : "scheduled export created", "schedule",
           s->rec->job_id, "user", s->rec->user_id, "export", job->job_id, "base", base, NULL);
  store_job_destroy(job);
  return true;
}

/* Counts the due times in (due, now] and finds the first after now. */
static bool plan_after_run(int64_t *missed, int64_t *next, const Fzip__V1__ScheduleSpec *spec,
                           int64_t due, int64_t now, fzip_error_t *error) {
  fzip_cron_t cron;
  fzip_tz_t *tz = NULL;
  int64_t at = due, n = 0;
  bool ok = false;

  if (!load_spec(&cron, &tz, spec, error))
    goto done;
  for (;;) {
    if (!fzip_cron_next(&at, &cron, tz, at, error))
      goto done;
    if (at > now)
      break;
    if (++n >= SCHEDULE_MISSED_COUNT_MAX) { /* stop counting: jump to now */
      if (!fzip_cron_next(&at, &cron, tz, now, error))
        goto done;
      break;
    }
  }
  *missed = n;
  *next = at;
  ok = true;
done:
  fzip_tz_destroy(tz);
  return ok;
}

/* Applies the schedule's retention once its pending export has ended;
 * res->retention_done when it did (or the export is gone). */
static void follow_pending(run_result_t *res, schedule_run_t *r, const schedule_rec_t *s) {
  Fzip__V1__ExportJob *job = NULL;
  Fzip__V1__ApplyRetentionResponse *out = NULL;
  const Fzip__V1__ScheduleSpec *spec = s->msg->spec;
  fzip_error_t err;
  int st;

  fzip_error_clear(&err);
  if (!s->pending[0])
    return;
  if (!load_export(&job, r->store, s->rec->user_id, s->pending, &err))
    goto failed;
  st = job ? (int)job->status : 0;
  if (job && st != FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED &&
      st != FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_FAILED &&
      st != FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_CANCELLED &&
      st != FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_EXPIRED)
    goto done; /* still running: next time */
  if (!retention_apply(&out, NULL, r->store, s->rec->user_id, s->rec->job_id, spec->retention,
                       spec->time_zone ? spec->time_zone : "", false, fzip_now_ms(), &err))
    goto failed;
  fzip_log(FZIP_LOG_INFO, "schedule", "retention applied", "schedule", s->rec->job_id, "user",
           s->rec->user_id, NULL);
  res->retention_done = true;
  goto done;
failed:
  fzip_log(FZIP_LOG_WARN, "schedule", "retention not applied (tried again later)", "schedule",
           s->rec->job_id, "error", err.message, NULL);
done:
  if (out)
    protobuf_c_message_free_unpacked(&out->base, NULL);
  if (job)
    protobuf_c_message_free_unpacked(&job->base, NULL);
}

/* Puts the run's results on `s` (the claimed record, or a fresh one a
 * user changed meanwhile) and plans the next due time. */
static bool apply_result(schedule_rec_t *s, const run_result_t *res, int64_t now,
                         fzip_error_t *error) {
  Fzip__V1__Schedule *m = s->msg;
  int64_t next = 0, missed = 0;

  if (res->retention_done)
    s->pending[0] = '\0';
  if (res->ran && m->last_run_at < res->due) {
    m->last_run_at = res->due;
    m->runs++;
    if (m->last_error) {
      protobuf_c_message_free_unpacked(&m->last_error->base, NULL);
      m->last_error = NULL;
    }
    if (res->export_id[0]) {
      if (!job_msg_set_str(&m->last_export_id, res->export_id))
        return fzip_error_oom(error, NULL);
      snprintf(s->pending, sizeof s->pending, "%s", res->export_id);
    } else if (!job_msg_set_error_field(&m->base, "last_error", &res->error, "create")) {
      return fzip_error_oom(error, NULL);
    }
  }
  if (m->spec && !m->spec->paused && m->next_run_at != 0 && m->next_run_at <= now) {
    if (!plan_after_run(&missed, &next, m->spec, m->next_run_at, now, error))
      return false;
    m->missed_runs += missed;
    m->next_run_at = next;
  }
  set_lease(s, now);
  return schedule_rec_pack(s, error);
}

/* Saves the claimed record; ABORTED (a user changed it) puts the results
 * on the fresh version instead, a few times. */
static bool save_result(schedule_run_t *r, schedule_rec_t *s, const run_result_t *res,
                        int64_t now, fzip_error_t *error) {
  const char *owner = r->owner;

  for (int attempt = 0;; attempt++) {
    store_job_t *fresh = NULL;
    if (!apply_result(s, res, now, error))
      return false;
    if (store_job_update(r->store, s->rec, owner, error))
      return true;
    if (error->code != FZIP_ERR_ABORTED || attempt + 1 >= JOB_UPDATE_RETRIES)
      return false;
    fzip_error_clear(error);
    job_update_backoff(attempt);
    if (!store_job_get(&fresh, r->store, STORE_JOB_SCHEDULE, s->rec->user_id, s->rec->job_id,
                       error))
      return false; /* deleted meanwhile: nothing to record */
    schedule_rec_fini(s);
    if (!schedule_rec_init(s, fresh, error))
      return false;
    owner = NULL; /* the fresh record is not under our lease */
  }
}

static void handle(schedule_run_t *r, store_job_t *rec, int64_t now) {
  schedule_rec_t s;
  run_result_t res;
  fzip_error_t err;
  char id[FZIP_ID_MAX + 1]; /* for the log: save_result may free rec */

  memset(&res, 0, sizeof res);
  fzip_error_clear(&err);
  snprintf(id, sizeof id, "%s", rec->job_id);
  if (!schedule_rec_init(&s, rec, &err))
    goto failed;
  if (!s.msg->spec) {
    fzip_error_set(&err, FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS, "schedule has no spec");
    goto failed;
  }
  follow_pending(&res, r, &s);
  if (s.msg->next_run_at != 0 && s.msg->next_run_at <= now) {
    res.ran = true;
    res.due = s.msg->next_run_at;
    fzip_error_clear(&res.error);
    if (!create_run_export(&res, r, &s, &res.error)) {
      if (res.error.code == FZIP_ERR_UNAVAILABLE) {
        /* The store went away: not this run's failure.  Its lease lapses
         * and the run is tried again (same request_id). */
        err = res.error;
        goto failed;
      }
      fzip_log(FZIP_LOG_WARN, "schedule", "scheduled export not created", "schedule",
               s.rec->job_id, "user", s.rec->user_id, "error", res.error.message, NULL);
    }
    /* Tests: a replica that stops (delay: past its lease; error: dies)
     * between the export and the record of the run. */
    if (res.export_id[0] && !fzip_failpoint("schedule.run_created", &err))
      goto failed;
  }
  if (!save_result(r, &s, &res, now, &err))
    goto failed;
  schedule_rec_fini(&s);
  return;
failed:
  /* The lease lapses and the next tick (here or elsewhere) tries again;
   * the run's request_id keeps a second try from making a second export. */
  fzip_log(FZIP_LOG_WARN, "schedule", "schedule run not saved", "schedule", id, "error",
           err.message, NULL);
  schedule_rec_fini(&s); /* schedule_rec_init always takes rec over */
}

static void tick(fzip_ticker_t *ticker, void *arg) {
  schedule_run_t *r = arg;
  int64_t lease = r->opts.lease_ms > 0 ? r->opts.lease_ms : JOB_DEFAULT_LEASE_MS;

  for (int i = 0; i < SCHEDULE_RUNS_PER_TICK && !fzip_ticker_stopping(ticker); i++) {
    store_job_t *rec = NULL;
    fzip_error_t err;
    int64_t now = schedule_clock_now(r->opts.clock_offset_file);

    fzip_error_clear(&err);
    if (!store_job_claim(&rec, r->store, STORE_JOB_SCHEDULE, r->owner, now, lease, &err)) {
      fzip_log(FZIP_LOG_WARN, "schedule", "claiming schedules failed", "error", err.message,
               NULL);
      return;
    }
    if (!rec)
      return;
    handle(r, rec, now);
  }
}

bool schedule_run_new(schedule_run_t **out, store_t *store, svc_export_t *exports,
                      const schedule_run_options_t *options, fzip_error_t *error) {
  schedule_run_t *r = calloc(1, sizeof *r);
  char uuid[FZIP_UUID_LEN + 1];

  *out = NULL;
  if (!r)
    return fzip_error_oom(error, NULL);
  r->store = store;
  r->exports = exports;
  if (options)
    r->opts = *options;
  if (r->opts.tick_ms <= 0)
    r->opts.tick_ms = SCHEDULE_TICK_DEFAULT_MS;
  if (!fzip_uuid_v4(uuid, error)) {
    free(r);
    return false;
  }
  snprintf(r->owner, sizeof r->owner, OWNER_PREFIX "%s", uuid);
  if (!fzip_ticker_new(&r->ticker, r->opts.tick_ms, FZIP_TICKER_FIRST_NOW, tick, r, error)) {
    free(r);
    return false;
  }
  *out = r;
  return true;
}

void schedule_run_destroy(schedule_run_t *run) {
  if (!run)
    return;
  fzip_ticker_destroy(run->ticker);
  free(run);
}
