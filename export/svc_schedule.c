/*
 * svc_schedule: see svc_schedule.h.
 *
 * Every handler reads or writes one STORE_JOB_SCHEDULE record through
 * schedule_run.h's schedule_rec_t.  Idempotent creates reuse the job
 * services' request_id machinery (svc_jobs_admit/svc_jobs_create) over a
 * base of the schedule kind with no queue cap.  A user's write plans the
 * next due time at once (schedule_rec_plan), so the record is claimable
 * exactly when due; it is version-checked, so a run being recorded by the
 * scheduler at the same moment is never lost (the scheduler puts its
 * results on the version written here).
 */
#include "svc_schedule.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip/v1/schedule_service.pb-c.h"
#include "fzip_cron.h"
#include "fzip_entity.h"
#include "fzip_log.h"
#include "fzip_tz.h"
#include "fzip_util.h"
#include "job_body.h"
#include "job_kind.h"
#include "jobs.h"
#include "retention.h"
#include "schedule_run.h"
#include "svc_export.h"
#include "svc_jobs.h"

/* The schedule "kind" as svc_jobs' idempotent creates see it. */
static const job_kind_t schedule_kind = {
    .kind = STORE_JOB_SCHEDULE,
    .noun = "schedule",
    .id_field = "schedule_id",
    .job = &fzip__v1__schedule__descriptor,
};

/* The method table is the base's (rows, row_ptrs, paths). */
_Static_assert(SVC_SCHEDULE_METHODS <= SVC_JOBS_ROWS, "the base holds every method row");

struct svc_schedule {
  svc_jobs_base_t base; /* kind, store, method rows; max_queued 0: schedules queue nothing */
  svc_schedule_options_t opts;
};

static svc_schedule_t *svc_of(rpc_ctx_t *ctx) { return rpc_ctx_method_data(ctx); }

static int64_t clock_now(const svc_schedule_t *svc) {
  return schedule_clock_now(svc->opts.clock_offset_file);
}

/* ---- checks ------------------------------------------------------------ */

static bool violation(rpc_ctx_t *ctx, fzip_error_t *first, const char *field,
                      const fzip_error_t *err) {
  rpc_ctx_add_violation(ctx, field, err->message);
  if (!fzip_error_is_set(first))
    *first = *err;
  return false;
}

static bool check_plain(const Fzip__V1__ScheduleSpec *spec, const char **field,
                        fzip_error_t *error) {
  size_t n = spec->description ? strlen(spec->description) : 0;

  *field = "spec.export_type";
  if (!protobuf_c_enum_descriptor_get_value(&fzip__v1__export_type__descriptor,
                                            (int)spec->export_type))
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "export_type %d is not an ExportType", (int)spec->export_type);
  *field = "spec.full_every";
  if (spec->full_every < 0 || spec->full_every > EXPORT_CHAIN_MAX + 1)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "full_every must be 0 to %d (a chain is at most %d increments)",
                          EXPORT_CHAIN_MAX + 1, EXPORT_CHAIN_MAX);
  *field = "spec.description";
  if (n > SVC_EXPORT_DESCRIPTION_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "description is %zu bytes; the limit is %d", n,
                          SVC_EXPORT_DESCRIPTION_MAX);
  *field = "spec.retention";
  return retention_policy_check(spec->retention, error);
}

/* Every problem of the spec as a violation; the first as the error. */
static bool check_spec(rpc_ctx_t *ctx, const Fzip__V1__ScheduleSpec *spec, fzip_error_t *error) {
  fzip_error_t first, err;
  fzip_cron_t cron;
  fzip_tz_t *tz = NULL;
  const char *field = NULL;

  fzip_error_clear(&first);
  fzip_error_clear(&err);
  if (!spec) {
    fzip_error_set(&err, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT, "spec is required");
    violation(ctx, &first, "spec", &err);
  } else {
    if (!fzip_cron_parse(&cron, spec->cron, &err))
      violation(ctx, &first, "spec.cron", &err);
    fzip_error_clear(&err);
    if (!fzip_tz_load(&tz, spec->time_zone ? spec->time_zone : "", &err))
      violation(ctx, &first, "spec.time_zone", &err);
    fzip_tz_destroy(tz);
    fzip_error_clear(&err);
    if (!check_plain(spec, &field, &err))
      violation(ctx, &first, field, &err);
  }
  if (!fzip_error_is_set(&first))
    return true;
  *error = first;
  if (error->code == FZIP_ERR_INVALID_ARGUMENT)
    fzip_error_set_reason(error, "INVALID_SCHEDULE");
  return false;
}

static bool check_id(rpc_ctx_t *ctx, const char *id, fzip_error_t *error) {
  if (fzip_id_is_valid(id))
    return true;
  fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                 "schedule_id is not a valid schedule id");
  rpc_ctx_add_violation(ctx, "schedule_id", error->message);
  return false;
}

/* ---- records ------------------------------------------------------------ */

/* The caller's schedule `id` (NOT_FOUND for absent or another user's). */
static bool load(schedule_rec_t *s, rpc_ctx_t *ctx, const char *id, fzip_error_t *error) {
  store_job_t *rec = NULL;

  memset(s, 0, sizeof *s);
  if (!check_id(ctx, id, error))
    return false;
  if (!store_job_get(&rec, svc_of(ctx)->base.store, STORE_JOB_SCHEDULE, rpc_ctx_user_id(ctx), id,
                     error)) {
    if (error->code == FZIP_ERR_NOT_FOUND) {
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_NOT_FOUND, "schedule %s not found", id);
      fzip_error_set_reason(error, "SCHEDULE_NOT_FOUND");
    }
    return false;
  }
  if (!schedule_rec_init(s, rec, error)) {
    schedule_rec_fini(s);
    return false;
  }
  return true;
}

/* The Schedule of `rec` in the call's arena, version from the record. */
static bool reply_schedule(Fzip__V1__Schedule **out, rpc_ctx_t *ctx, const store_job_t *rec,
                           fzip_error_t *error) {
  ProtobufCMessage *msg = NULL;
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__schedule__descriptor, rpc_ctx_allocator(ctx),
                       error))
    return false;
  *out = (Fzip__V1__Schedule *)msg;
  (*out)->version = rec->version;
  return true;
}

/* The call's response (Create/Get/UpdateScheduleResponse: one field
 * "schedule") holding the Schedule of `rec`. */
static bool reply(ProtobufCMessage **resp, rpc_ctx_t *ctx, const store_job_t *rec,
                  fzip_error_t *error) {
  const ProtobufCMessageDescriptor *desc = rpc_ctx_method(ctx)->response;
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(desc, "schedule");
  ProtobufCMessage *out = rpc_ctx_alloc(ctx, desc->sizeof_message);

  if (!out)
    return fzip_error_oom(error, NULL);
  protobuf_c_message_init(desc, out);
  if (!f)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "%s has no schedule",
                          desc->name);
  if (!reply_schedule((Fzip__V1__Schedule **)((char *)out + f->offset), ctx, rec, error))
    return false;
  *resp = out;
  return true;
}

/* RESOURCE_EXHAUSTED when the user has SCHEDULES_PER_USER_MAX schedules. */
static bool check_schedule_cap(svc_schedule_t *svc, const char *user, fzip_error_t *error) {
  store_job_t **recs = NULL;
  size_t n = 0;
  char *next = NULL;

  if (!store_job_list(&recs, &n, &next, svc->base.store, STORE_JOB_SCHEDULE, user,
                      SCHEDULES_PER_USER_MAX, NULL, error))
    return false;
  store_job_list_free(recs, n);
  bson_free(next);
  if (n < SCHEDULES_PER_USER_MAX)
    return true;
  fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_RESOURCE_EXHAUSTED,
                 "%d schedules is the most one user may have; delete one first",
                 SCHEDULES_PER_USER_MAX);
  return fzip_error_set_reason(error, "SCHEDULES_LIMIT");
}

/* ---- CreateSchedule ----------------------------------------------------- */

/* The new record: a Schedule built on the stack around the request's spec
 * (borrowed), packed into rec's body with its first due time planned. */
static bool new_record(store_job_t **out, svc_schedule_t *svc, rpc_ctx_t *ctx,
                       Fzip__V1__ScheduleSpec *spec, fzip_error_t *error) {
  Fzip__V1__Schedule m = FZIP__V1__SCHEDULE__INIT;
  schedule_rec_t s = {0};
  char id[FZIP_UUID_LEN + 1];
  int64_t now = fzip_now_ms();

  if (!fzip_uuid_v4(id, error))
    return false;
  m.schedule_id = id;
  m.spec = spec;
  m.created_at = m.updated_at = now;
  m.version = 1;
  s.rec = store_job_new();
  s.msg = &m;
  if (!s.rec)
    return fzip_error_oom(error, NULL);
  snprintf(s.rec->job_id, sizeof s.rec->job_id, "%s", id);
  snprintf(s.rec->user_id, sizeof s.rec->user_id, "%s", rpc_ctx_user_id(ctx));
  s.rec->kind = STORE_JOB_SCHEDULE;
  s.rec->created_at = s.rec->updated_at = now;
  if (!schedule_rec_plan(&s, clock_now(svc), error) || !schedule_rec_pack(&s, error)) {
    store_job_destroy(s.rec);
    return false;
  }
  *out = s.rec;
  return true;
}

static bool create_schedule(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                            fzip_error_t *error) {
  svc_schedule_t *svc = svc_of(ctx);
  const Fzip__V1__CreateScheduleRequest *req = (const void *)msg;
  Fzip__V1__CreateScheduleRequest params = *req;
  svc_jobs_request_t idem;
  store_job_t *rec = NULL, *existing = NULL;
  bool ok = false;

  params.request_id = "";
  if (!check_spec(ctx, req->spec, error) ||
      !svc_jobs_request_init(&idem, ctx, req->request_id, &params.base, error) ||
      !svc_jobs_admit(&existing, &svc->base, ctx, &idem, false, error))
    return false;
  if (!existing && (!check_schedule_cap(svc, rpc_ctx_user_id(ctx), error) ||
                    !new_record(&rec, svc, ctx, req->spec, error) ||
                    !svc_jobs_create(&existing, &svc->base, ctx, rec, &idem, error)))
    goto done;
  if (existing) {
    store_job_destroy(rec);
    rec = existing;
  }
  fzip_log(FZIP_LOG_INFO, "schedule", existing ? "schedule request replayed" : "schedule created",
           "schedule", rec->job_id, "user", rec->user_id, NULL);
  ok = reply(resp, ctx, rec, error);
done:
  store_job_destroy(rec);
  return ok;
}

/* ---- GetSchedule, ListSchedules ----------------------------------------- */

static bool get_schedule(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                         fzip_error_t *error) {
  const Fzip__V1__GetScheduleRequest *req = (const void *)msg;
  schedule_rec_t s;
  bool ok = false;

  if (!load(&s, ctx, req->schedule_id, error))
    return false;
  ok = reply(resp, ctx, s.rec, error);
  schedule_rec_fini(&s);
  return ok;
}

static bool list_schedules(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                           fzip_error_t *error) {
  const Fzip__V1__ListSchedulesRequest *req = (const void *)msg;
  Fzip__V1__ListSchedulesResponse *out = NULL;
  store_job_t **recs = NULL;
  size_t n = 0;
  char *next = NULL;
  int32_t size = req->page_size;
  bool ok = false;

  if (size < 0 || size > SVC_JOBS_PAGE_MAX) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                   "page_size must be 0 to %d", SVC_JOBS_PAGE_MAX);
    rpc_ctx_add_violation(ctx, "page_size", error->message);
    return false;
  }
  if (!store_job_list(&recs, &n, &next, svc_of(ctx)->base.store, STORE_JOB_SCHEDULE,
                      rpc_ctx_user_id(ctx), size ? (size_t)size : SVC_JOBS_PAGE_DEFAULT,
                      req->page_token, error))
    return false;
  out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  fzip__v1__list_schedules_response__init(out);
  out->schedules = rpc_ctx_alloc(ctx, (n ? n : 1) * sizeof *out->schedules);
  if (!out->schedules || !(out->next_page_token = rpc_ctx_strdup(ctx, next ? next : ""))) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    if (!reply_schedule(&out->schedules[i], ctx, recs[i], error))
      goto done;
    out->n_schedules++;
  }
  *resp = &out->base;
  ok = true;
done:
  store_job_list_free(recs, n);
  bson_free(next);
  return ok;
}

/* ---- UpdateSchedule ------------------------------------------------------ */

/* One try: ABORTED when the record changed since it was read. */
static bool update_once(store_job_t **saved, rpc_ctx_t *ctx,
                        const Fzip__V1__UpdateScheduleRequest *req, fzip_error_t *error) {
  svc_schedule_t *svc = svc_of(ctx);
  Fzip__V1__ScheduleSpec *old = NULL;
  schedule_rec_t s;
  bool ok = false;

  if (!load(&s, ctx, req->schedule_id, error))
    return false;
  if (req->expected_version != 0 && req->expected_version != s.rec->version) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                   "schedule %s is at version %lld, not %lld: read it again",
                   s.rec->job_id, (long long)s.rec->version, (long long)req->expected_version);
    fzip_error_set_reason(error, "VERSION_CONFLICT");
    goto done;
  }
  old = s.msg->spec;
  s.msg->spec = req->spec; /* borrowed until packed */
  s.msg->updated_at = s.rec->updated_at = fzip_now_ms();
  ok = schedule_rec_plan(&s, clock_now(svc), error) && schedule_rec_pack(&s, error) &&
       store_job_update(svc->base.store, s.rec, NULL, error);
  s.msg->spec = old;
  if (ok) {
    *saved = s.rec;
    s.rec = NULL;
  }
done:
  schedule_rec_fini(&s);
  return ok;
}

static bool update_schedule(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                            fzip_error_t *error) {
  const Fzip__V1__UpdateScheduleRequest *req = (const void *)msg;
  store_job_t *saved = NULL;
  bool ok = false;

  if (!check_spec(ctx, req->spec, error))
    return false;
  /* Without expected_version, a run recorded meanwhile is no conflict:
   * read again and write again. */
  for (int attempt = 0; !update_once(&saved, ctx, req, error); attempt++) {
    if (error->code != FZIP_ERR_ABORTED || req->expected_version != 0 ||
        attempt + 1 >= JOB_UPDATE_RETRIES)
      return false;
    fzip_error_clear(error);
    job_update_backoff(attempt);
  }
  fzip_log(FZIP_LOG_INFO, "schedule", "schedule updated", "schedule", saved->job_id, "user",
           saved->user_id, NULL);
  ok = reply(resp, ctx, saved, error);
  store_job_destroy(saved);
  return ok;
}

/* ---- DeleteSchedule, ApplyRetention --------------------------------------- */

/* Pauses the stored schedule (version-checked, re-read on a conflict), so
 * that the scheduler takes it no more: no run and no retention of its own
 * races the release of its exports that follows. */
static bool stop_runs(schedule_rec_t *s, rpc_ctx_t *ctx, const char *id, fzip_error_t *error) {
  for (int attempt = 0;; attempt++) {
    if (s->msg->spec)
      s->msg->spec->paused = true;
    if (schedule_rec_plan(s, 0, error) && schedule_rec_pack(s, error) &&
        store_job_update(svc_of(ctx)->base.store, s->rec, NULL, error))
      return true;
    if (error->code != FZIP_ERR_ABORTED || attempt + 1 >= JOB_UPDATE_RETRIES)
      return false;
    fzip_error_clear(error);
    job_update_backoff(attempt);
    schedule_rec_fini(s);
    if (!load(s, ctx, id, error))
      return false;
  }
}

static bool delete_schedule(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                            fzip_error_t *error) {
  svc_schedule_t *svc = svc_of(ctx);
  const Fzip__V1__DeleteScheduleRequest *req = (const void *)msg;
  Fzip__V1__DeleteScheduleResponse *out = NULL;
  schedule_rec_t s;
  uint64_t changed = 0;
  char n_changed[24];
  bool ok = false;

  if (!load(&s, ctx, req->schedule_id, error))
    return false;
  /* Paused, then its exports let go, then deleted: a failure on the way
   * leaves a schedule the user can delete again, never kept exports
   * that no schedule would ever release. */
  if (!stop_runs(&s, ctx, req->schedule_id, error) ||
      !retention_release(&changed, svc->base.store, s.rec->user_id, s.rec->job_id,
                         req->delete_packages, fzip_now_ms() + svc->opts.export_ttl_ms, error) ||
      !store_job_delete(svc->base.store, STORE_JOB_SCHEDULE, s.rec->user_id, s.rec->job_id, error))
    goto done;
  snprintf(n_changed, sizeof n_changed, "%" PRIu64, changed);
  fzip_log(FZIP_LOG_INFO, "schedule", "schedule deleted", "schedule", s.rec->job_id, "user",
           s.rec->user_id, req->delete_packages ? "exports_deleted" : "exports_released",
           n_changed, NULL);
  out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  fzip__v1__delete_schedule_response__init(out);
  *resp = &out->base;
  ok = true;
done:
  schedule_rec_fini(&s);
  return ok;
}

static bool apply_retention(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                            fzip_error_t *error) {
  const Fzip__V1__ApplyRetentionRequest *req = (const void *)msg;
  Fzip__V1__ApplyRetentionResponse *out = NULL;
  const Fzip__V1__ScheduleSpec *spec = NULL;
  schedule_rec_t s;
  bool ok = false;

  if (!load(&s, ctx, req->schedule_id, error))
    return false;
  spec = s.msg->spec;
  if (!spec) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS, "schedule has no spec");
    goto done;
  }
  if (!retention_apply(&out, rpc_ctx_allocator(ctx), svc_of(ctx)->base.store, s.rec->user_id,
                       s.rec->job_id, spec->retention, spec->time_zone ? spec->time_zone : "",
                       req->dry_run, fzip_now_ms(), error))
    goto done;
  *resp = &out->base;
  ok = true;
done:
  schedule_rec_fini(&s);
  return ok;
}

/* ---- lifecycle ------------------------------------------------------------ */

static const struct {
  const char *name;
  rpc_unary_fn fn;
} METHODS[SVC_SCHEDULE_METHODS] = {
    {"CreateSchedule", create_schedule}, {"GetSchedule", get_schedule},
    {"ListSchedules", list_schedules},   {"UpdateSchedule", update_schedule},
    {"DeleteSchedule", delete_schedule}, {"ApplyRetention", apply_retention},
};

static bool fill_rows(svc_schedule_t *svc, fzip_error_t *error) {
  const ProtobufCServiceDescriptor *sd = &fzip__v1__schedule_service__descriptor;
  svc_jobs_base_t *b = &svc->base;

  for (size_t i = 0; i < SVC_SCHEDULE_METHODS; i++) {
    const ProtobufCMethodDescriptor *md = protobuf_c_service_descriptor_get_method_by_name(
        sd, METHODS[i].name);
    int len;
    if (!md)
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "no method %s",
                            METHODS[i].name);
    len = snprintf(b->paths[i], sizeof b->paths[i], "/%s/%s", sd->name, md->name);
    if (len < 0 || (size_t)len >= sizeof b->paths[i])
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                            "path of %s.%s exceeds SVC_JOBS_PATH_MAX", sd->name, md->name);
    b->rows[i] = (rpc_method_t){.path = b->paths[i],
                                .kind = RPC_UNARY,
                                .request = md->input,
                                .response = md->output,
                                .requires_auth = true,
                                .unary = METHODS[i].fn,
                                .data = svc};
    b->row_ptrs[i] = &b->rows[i];
  }
  b->n_rows = SVC_SCHEDULE_METHODS;
  return true;
}

bool svc_schedule_new(svc_schedule_t **out, store_t *store, const svc_schedule_options_t *options,
                      fzip_error_t *error) {
  svc_schedule_t *svc = calloc(1, sizeof *svc);

  *out = NULL;
  if (!svc)
    return fzip_error_oom(error, NULL);
  if (options)
    svc->opts = *options;
  svc->base.kind = &schedule_kind;
  svc->base.store = store;
  if (!fill_rows(svc, error)) {
    free(svc);
    return false;
  }
  *out = svc;
  return true;
}

void svc_schedule_destroy(svc_schedule_t *svc) { free(svc); }

const rpc_method_t *const *svc_schedule_methods(svc_schedule_t *svc, size_t *n) {
  *n = SVC_SCHEDULE_METHODS;
  return svc->base.row_ptrs;
}
