/*
 * svc_export: see svc_export.h.
 *
 * The job record's body carries the packed fzip.v1.ExportJob (job_body.h),
 * so what GetExport returns is exactly what the worker last saved.  The
 * worker keeps the message unpacked with the malloc allocator and replaces
 * fields through set_str()/add_event(), then saves it through jobs.h, which
 * also extends its lease and notices cancels.
 *
 * Progress is counted, never guessed: pkg_count() gives items_total before
 * any work; collecting moves 5 -> 70 with items written, building 70 -> 90
 * with libzip's fraction, uploading 90 -> 99, completion 100.  It is
 * clamped so that it never goes backwards (a resumed job starts over but
 * keeps showing the highest value reached until it passes it).
 */
#include "svc_export.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export_source.h"
#include "fzip/v1/export_service.pb-c.h"
#include "fzip/v1/jobs.pb-c.h"
#include "fzip_entity.h"
#include "fzip_failpoint.h"
#include "fzip_log.h"
#include "fzip_util.h"
#include "job_body.h"
#include "jobs.h"
#include "pkg_writer.h"
#include "svc_jobs.h"

#define DEFAULT_TTL_MS (24LL * 3600 * 1000)
#define DEFAULT_RETENTION_MS (7LL * 24 * 3600 * 1000)
/* Rough figures for the estimates CreateExport returns (bytes of a
 * compressed package per entity, entities written per second). */
#define EST_BYTES_PER_ITEM 180
#define EST_ITEMS_PER_SEC 100000

struct svc_export {
  svc_jobs_base_t base; /* first: the shared job handlers find it */
  store_t *store;
  svc_export_options_t opts;
  job_runner_t *runner;
  rpc_method_t rows[7];
  const rpc_method_t *row_ptrs[7];
};

typedef Fzip__V1__ExportJob export_job_t;

/* ---- small helpers ---------------------------------------------------- */

static bool oom(fzip_error_t *error) {
  return fzip_error_oom(error, NULL);
}

static const char *status_name(int status) {
  return job_enum_name(&fzip__v1__export_status__descriptor, status);
}

static bool is_terminal(int status) {
  return status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED ||
         status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_FAILED ||
         status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_EXPIRED ||
         status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_CANCELLED;
}

static void blob_id_for(char out[FZIP_ID_MAX + 16], const char *export_id) {
  snprintf(out, FZIP_ID_MAX + 16, "export-%s", export_id);
}

static bool set_str(char **field, const char *value) { return job_msg_set_str(field, value); }

static bool add_event(export_job_t *job, const char *type, const char *message) {
  return job_msg_add_event(&job->base, type, message, SVC_EXPORT_EVENTS_MAX);
}

static bool set_error(export_job_t *job, const fzip_error_t *err, const char *phase) {
  return job_msg_set_error(&job->base, err, phase);
}

static bool build_body(bson_t *body, const export_job_t *job, bool with_blob,
                       fzip_error_t *error) {
  char blob[FZIP_ID_MAX + 16];
  blob_id_for(blob, job->export_id);
  return job_body_build(body, &job->base, status_name(job->status), job->progress,
                        with_blob ? blob : NULL, false, error);
}

/* What a client sees: a completed export past its expiry reads EXPIRED
 * even before the reaper got to it. */
static void apply_view(ProtobufCMessage *msg, int64_t now) {
  export_job_t *job = (export_job_t *)msg;
  if (job->status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED && job->expires_at > 0 &&
      now >= job->expires_at)
    job->status = FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_EXPIRED;
}

static bool job_for_reply(export_job_t **out, rpc_ctx_t *ctx, svc_export_t *svc,
                          const store_job_t *rec, fzip_error_t *error) {
  return svc_jobs_unpack((ProtobufCMessage **)out, &svc->base, ctx, rec, error);
}

static bool load(export_job_t **job, store_job_t **rec, svc_export_t *svc, rpc_ctx_t *ctx,
                 const char *id, fzip_error_t *error) {
  return svc_jobs_load((ProtobufCMessage **)job, rec, &svc->base, ctx, id, error);
}

/* ---- selection -------------------------------------------------------- */

static bool selection_from_job(pkg_selection_t *sel, const export_job_t *job,
                               fzip_error_t *error) {
  memset(sel, 0, sizeof *sel);
  switch (job->export_type) {
  case FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_UNSPECIFIED:
  case FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_COMPLETE:
    sel->export_type = PKG_EXPORT_COMPLETE;
    break;
  case FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_ACCOUNTS_ONLY:
    sel->export_type = PKG_EXPORT_ACCOUNTS_ONLY;
    break;
  case FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_TRANSACTIONS_ONLY:
    sel->export_type = PKG_EXPORT_TRANSACTIONS_ONLY;
    break;
  case FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_CATEGORIES_ONLY:
    sel->export_type = PKG_EXPORT_CATEGORIES_ONLY;
    break;
  case FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_SELECTIVE:
    sel->export_type = PKG_EXPORT_SELECTIVE;
    break;
  default:
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "unknown export_type %d", (int)job->export_type);
  }
  sel->include_analytics = job->include_analytics;
  if (job->filters) {
    sel->account_ids = (const char *const *)job->filters->account_ids;
    sel->n_account_ids = job->filters->n_account_ids;
    if (job->filters->date_range) {
      sel->has_date_from = job->filters->date_range->has_from;
      sel->date_from = job->filters->date_range->from;
      sel->has_date_to = job->filters->date_range->has_to;
      sel->date_to = job->filters->date_range->to;
    }
  }
  return pkg_selection_check(sel, error);
}

/* ---- CreateExport ----------------------------------------------------- */

static bool check_description(const char *d, fzip_error_t *error) {
  size_t n = d ? strlen(d) : 0;
  if (n > SVC_EXPORT_DESCRIPTION_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "description is %zu bytes; the limit is %d", n,
                          SVC_EXPORT_DESCRIPTION_MAX);
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)d[i] < 0x20 && d[i] != '\t')
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                            "description contains a control character at byte %zu", i);
  }
  return true;
}

/* The new job as the worker will find it; strings point into `req` and
 * stack buffers, so it is only packed, never freed. */
static bool create_record(store_job_t **out, svc_export_t *svc, rpc_ctx_t *ctx,
                          const Fzip__V1__CreateExportRequest *req, uint64_t items,
                          fzip_error_t *error) {
  export_job_t job = FZIP__V1__EXPORT_JOB__INIT;
  Fzip__V1__JobEvent ev = FZIP__V1__JOB_EVENT__INIT;
  Fzip__V1__JobEvent *evs[1] = {&ev};
  char id[FZIP_UUID_LEN + 1];
  store_job_t *rec = NULL;
  int64_t now = fzip_now_ms();
  bool ok = false;

  if (!fzip_uuid_v4(id, error))
    return false;
  job.export_id = id;
  job.status = FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_INITIATED;
  job.current_phase = "queued";
  job.export_type = req->export_type == FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_UNSPECIFIED
                        ? FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_COMPLETE
                        : req->export_type;
  job.include_analytics = req->include_analytics;
  job.description = req->description;
  job.filters = req->filters;
  job.created_at = job.updated_at = now;
  job.items_total = (int64_t)items;
  job.estimated_size_bytes = (int64_t)(items * EST_BYTES_PER_ITEM);
  job.estimated_completion_at = now + 1000 + (int64_t)(items * 1000 / EST_ITEMS_PER_SEC);
  job.pinned_timestamp = req->pinned_timestamp;
  ev.type = "initiated";
  ev.at = now;
  ev.message = "export requested";
  job.n_events = 1;
  job.events = evs;

  rec = store_job_new();
  if (!rec)
    return oom(error);
  snprintf(rec->job_id, sizeof rec->job_id, "%s", id);
  snprintf(rec->user_id, sizeof rec->user_id, "%s", rpc_ctx_user_id(ctx));
  rec->kind = STORE_JOB_EXPORT;
  rec->created_at = rec->updated_at = now;
  rec->runnable = true;
  if (!build_body(rec->body, &job, false, error))
    goto done;
  if (!store_job_create(svc->store, rec, error))
    goto done;
  *out = rec;
  rec = NULL;
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

static bool create_export(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                          fzip_error_t *error) {
  svc_export_t *svc = rpc_ctx_method_data(ctx);
  const Fzip__V1__CreateExportRequest *req = (const void *)msg;
  export_job_t probe = FZIP__V1__EXPORT_JOB__INIT;
  pkg_selection_t sel;
  uint64_t items = 0;
  store_job_t *rec = NULL;
  Fzip__V1__CreateExportResponse *out = NULL;
  bool ok = false;

  probe.export_type = req->export_type;
  probe.include_analytics = req->include_analytics;
  probe.filters = req->filters;
  if (req->pinned_timestamp < 0)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "pinned_timestamp must be a positive epoch-ms time");
  if (!check_description(req->description, error) || !selection_from_job(&sel, &probe, error))
    return false;
  if (!export_source_count(&items, svc->store, rpc_ctx_user_id(ctx), &sel, error))
    return false;
  if (!create_record(&rec, svc, ctx, req, items, error))
    return false;
  job_runner_notify(svc->runner);
  out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out) {
    oom(error);
    goto done;
  }
  fzip__v1__create_export_response__init(out);
  if (!job_for_reply(&out->job, ctx, svc, rec, error))
    goto done;
  fzip_log(FZIP_LOG_INFO, "export", "export created", "export", rec->job_id, "user",
           rec->user_id, NULL);
  *resp = &out->base;
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

/* ---- Cancel / Delete -------------------------------------------------- */

/* Ends a job no worker holds (a cancel before any claim, an expiry):
 * status, phase and event set, saved version-checked, reaped
 * retention_ms from `now`. */
static bool end_unclaimed(svc_export_t *svc, store_job_t *rec, export_job_t *job, int status,
                          const char *event, const char *message, int64_t now,
                          fzip_error_t *error) {
  bson_t *body = NULL;

  job->status = status;
  job->updated_at = now;
  if (!set_str(&job->current_phase, event) || !add_event(job, event, message))
    return oom(error);
  body = bson_new();
  if (!build_body(body, job, false, error)) {
    bson_destroy(body);
    return false;
  }
  bson_destroy(rec->body);
  rec->body = body;
  rec->runnable = false;
  rec->updated_at = now;
  rec->expires_at = now + svc->opts.retention_ms;
  return store_job_update(svc->store, rec, NULL, error);
}

/* A job no worker holds yet is cancelled here at once; a running one is
 * flagged and its worker stops at its next save (jobs.h). */
static bool cancel_unclaimed(svc_export_t *svc, store_job_t *rec, fzip_error_t *error) {
  ProtobufCMessage *msg = NULL;
  export_job_t *job = NULL;
  bool ok = false;

  if (!job_body_unpack(&msg, rec->body, &fzip__v1__export_job__descriptor, NULL, error))
    return false;
  job = (export_job_t *)msg;
  job->completed_at = fzip_now_ms();
  ok = end_unclaimed(svc, rec, job, FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_CANCELLED,
                     "cancelled", "cancelled before a worker started it", job->completed_at,
                     error);
  protobuf_c_message_free_unpacked(msg, NULL);
  return ok;
}

static bool cancel_export(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                          fzip_error_t *error) {
  svc_export_t *svc = rpc_ctx_method_data(ctx);
  const Fzip__V1__CancelExportRequest *req = (const void *)msg;
  Fzip__V1__CancelExportResponse *out = rpc_ctx_alloc(ctx, sizeof *out);
  store_job_t *rec = NULL;
  bool ok = false;

  if (!out)
    return oom(error);
  fzip__v1__cancel_export_response__init(out);
  for (int attempt = 0; attempt < 8; attempt++) {
    export_job_t *view = NULL;

    store_job_destroy(rec);
    rec = NULL;
    if (!load(&view, &rec, svc, ctx, req->export_id, error))
      goto done;
    if (is_terminal(view->status)) {
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                     "export %s already ended (%s)", rec->job_id, status_name(view->status));
      goto done;
    }
    if (rec->lease_until < fzip_now_ms()) {
      if (cancel_unclaimed(svc, rec, error))
        break;
      if (error->code != FZIP_ERR_ABORTED)
        goto done;
      continue; /* a worker claimed it meanwhile: flag it instead */
    }
    store_job_destroy(rec);
    rec = NULL;
    if (!job_request_cancel(&rec, svc->store, STORE_JOB_EXPORT, rpc_ctx_user_id(ctx),
                            req->export_id, error))
      goto done;
    break;
  }
  if (!rec || !job_for_reply(&out->job, ctx, svc, rec, error))
    goto done;
  *resp = &out->base;
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

static bool delete_export(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                          fzip_error_t *error) {
  svc_export_t *svc = rpc_ctx_method_data(ctx);
  const Fzip__V1__DeleteExportRequest *req = (const void *)msg;
  Fzip__V1__DeleteExportResponse *out = rpc_ctx_alloc(ctx, sizeof *out);
  store_job_t *rec = NULL;
  char blob[FZIP_ID_MAX + 16];
  bool ok = false;

  if (!out)
    return oom(error);
  fzip__v1__delete_export_response__init(out);
  export_job_t *view = NULL;
  if (!load(&view, &rec, svc, ctx, req->export_id, error))
    goto done;
  /* Blob first: a crash in between leaves a job the user can delete
   * again, never an orphan package.  A worker still running finds its job
   * gone at its next save and removes what it wrote (run_export). */
  blob_id_for(blob, rec->job_id);
  if (!store_blob_delete(svc->store, STORE_BUCKET_PACKAGES, blob, error) ||
      !store_job_delete(svc->store, STORE_JOB_EXPORT, rpc_ctx_user_id(ctx), rec->job_id, error))
    goto done;
  fzip_log(FZIP_LOG_INFO, "export", "export deleted", "export", rec->job_id, "user",
           rec->user_id, NULL);
  *resp = &out->base;
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

/* ---- DownloadExport --------------------------------------------------- */

typedef struct {
  store_blob_reader_t *reader;
  size_t chunk;
  bool info_sent;
  Fzip__V1__DownloadInfo info; /* strings malloc'd */
  char sha256[FZIP_SHA256_HEX_LEN + 1];
  char file_name[FZIP_ID_MAX + 32];
} download_state_t;

static bool download_check(const store_job_t *rec, export_job_t *view, int64_t offset,
                           fzip_error_t *error) {
  if (view->status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_EXPIRED)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "export %s expired; create a new export", rec->job_id);
  if (view->status != FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "export %s is %s, not completed", rec->job_id,
                          status_name(view->status));
  if (offset < 0 || offset > view->package_size)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_OUT_OF_RANGE,
                          "offset %" PRId64 " is outside the package (%" PRId64 " bytes)",
                          offset, view->package_size);
  return true;
}

static bool download_open(rpc_ctx_t *ctx, const ProtobufCMessage *msg, void **state,
                          fzip_error_t *error) {
  svc_export_t *svc = rpc_ctx_method_data(ctx);
  const Fzip__V1__DownloadExportRequest *req = (const void *)msg;
  store_job_t *rec = NULL;
  export_job_t *view = NULL;
  download_state_t *st = NULL;
  char blob[FZIP_ID_MAX + 16];
  bool ok = false;

  if (req->chunk_size < 0 || req->chunk_size > SVC_EXPORT_CHUNK_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "chunk_size must be between 0 and %d", SVC_EXPORT_CHUNK_MAX);
  if (!load(&view, &rec, svc, ctx, req->export_id, error) ||
      !download_check(rec, view, req->offset, error))
    goto done;
  st = calloc(1, sizeof *st);
  if (!st) {
    oom(error);
    goto done;
  }
  st->chunk = req->chunk_size ? (size_t)req->chunk_size : SVC_EXPORT_CHUNK_DEFAULT;
  /* chunk_size is a hint: a 4 MiB chunk would make a message just over
   * the 4 MiB a stock client accepts (proto and EXPORT.md say so). */
  if (st->chunk > SVC_EXPORT_CHUNK_SENT_MAX)
    st->chunk = SVC_EXPORT_CHUNK_SENT_MAX;
  fzip__v1__download_info__init(&st->info);
  st->info.size = view->package_size;
  st->info.offset = req->offset;
  snprintf(st->sha256, sizeof st->sha256, "%s", view->package_sha256);
  snprintf(st->file_name, sizeof st->file_name, "fzip-export-%s.fzip", rec->job_id);
  st->info.sha256 = st->sha256;
  st->info.file_name = st->file_name;
  blob_id_for(blob, rec->job_id);
  if (!store_blob_reader_new(&st->reader, svc->store, STORE_BUCKET_PACKAGES, blob,
                             (uint64_t)req->offset, error)) {
    if (error->code == FZIP_ERR_NOT_FOUND)
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                     "the package of export %s is no longer stored", rec->job_id);
    goto done;
  }
  *state = st;
  st = NULL;
  ok = true;
done:
  if (st) {
    store_blob_reader_destroy(st->reader);
    free(st);
  }
  store_job_destroy(rec);
  return ok;
}

static bool download_next(rpc_ctx_t *ctx, void *state, ProtobufCMessage **msg, bool *done,
                          int *retry_after_ms, fzip_error_t *error) {
  download_state_t *st = state;
  Fzip__V1__DownloadExportResponse *out = rpc_ctx_alloc(ctx, sizeof *out);
  uint8_t *buf = NULL;
  size_t got = 0;

  if (!out)
    return oom(error);
  fzip__v1__download_export_response__init(out);
  if (!st->info_sent) {
    out->payload_case = FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_INFO;
    out->info = &st->info;
    st->info_sent = true;
    *msg = &out->base;
    return true;
  }
  buf = rpc_ctx_alloc(ctx, st->chunk);
  if (!buf)
    return oom(error);
  /* Fill the chunk: backends may return short reads at chunk borders. */
  while (got < st->chunk) {
    size_t n = 0;
    if (!store_blob_reader_read(st->reader, buf + got, st->chunk - got, &n, error))
      return false;
    if (n == 0)
      break;
    got += n;
  }
  if (got == 0) {
    *done = true;
    return true;
  }
  out->payload_case = FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_CHUNK;
  out->chunk.data = buf;
  out->chunk.len = got;
  *msg = &out->base;
  return true;
}

static void download_close(rpc_ctx_t *ctx, void *state) {
  download_state_t *st = state;
  if (!st)
    return;
  store_blob_reader_destroy(st->reader);
  free(st);
}

static const rpc_server_stream_ops_t download_ops = {download_open, download_next,
                                                     download_close};

/* ---- the worker ------------------------------------------------------- */

typedef struct {
  job_ctx_t *jctx;
  export_job_t *job;
  bool had_blob;
  fzip_error_t save_error; /* first failed save during the build */
  bool stop;
} run_state_t;

static int clamp_progress(const export_job_t *job, int p) {
  if (p > 99)
    p = 99;
  return p < job->progress ? job->progress : p;
}

static bool save_job(run_state_t *rs, bool force) {
  bson_t body = BSON_INITIALIZER;
  bool ok = false;

  rs->job->updated_at = fzip_now_ms();
  if (!build_body(&body, rs->job, false, &rs->save_error))
    goto done;
  ok = job_ctx_tick(rs->jctx, &body, force, &rs->save_error);
done:
  bson_destroy(&body);
  if (!ok)
    rs->stop = true;
  return ok;
}

static void set_phase(run_state_t *rs, int status, const char *phase) {
  if ((int)rs->job->status != status || strcmp(rs->job->current_phase, phase) != 0) {
    rs->job->status = status;
    if (!set_str(&rs->job->current_phase, phase)) {
      oom(&rs->save_error);
      rs->stop = true;
      return;
    }
    save_job(rs, true);
  }
}

static void on_progress(void *arg, const pkg_progress_t *p) {
  run_state_t *rs = arg;
  int status = FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COLLECTING_DATA;
  int pct = 5;

  if (rs->stop)
    return;
  switch (p->phase) {
  case PKG_PHASE_COUNTING:
  case PKG_PHASE_DATA:
  case PKG_PHASE_FILES:
    if (p->items_total > 0)
      pct = 5 + (int)(65.0 * (double)(p->items_done > p->items_total ? p->items_total
                                                                      : p->items_done) /
                      (double)p->items_total);
    break;
  case PKG_PHASE_COMPRESSING:
    status = FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_BUILDING_PACKAGE;
    pct = 70 + (int)(20.0 * (p->fraction < 0 ? 0 : p->fraction > 1 ? 1 : p->fraction));
    break;
  case PKG_PHASE_UPLOADING:
  case PKG_PHASE_DONE:
    status = FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_UPLOADING;
    pct = 90;
    break;
  }
  rs->job->items_done = (int64_t)p->items_done;
  rs->job->progress = clamp_progress(rs->job, pct);
  set_phase(rs, status, pkg_phase_name(p->phase));
  if (!rs->stop)
    save_job(rs, false);
  /* Fault tests pause (or fail) here, once UPLOADING is saved and the
   * package blob is part-written, to prove that a crash in the upload
   * phase ends well (docs/EXPORT.md). */
  if (!rs->stop && p->phase == PKG_PHASE_UPLOADING &&
      !fzip_failpoint("export.uploading", &rs->save_error))
    rs->stop = true;
}

static bool on_cancel(void *arg) {
  run_state_t *rs = arg;
  return rs->stop || job_ctx_should_stop(rs->jctx);
}

static bool fill_summary(export_job_t *job, const pkg_result_t *res) {
  Fzip__V1__DataSummary *s = job->data_summary;
  if (!s) {
    s = malloc(sizeof *s);
    if (!s)
      return false;
    fzip__v1__data_summary__init(s);
    job->data_summary = s;
  }
  s->accounts_count = (int64_t)res->counts[FZIP_KIND_ACCOUNT];
  s->transactions_count = (int64_t)res->counts[FZIP_KIND_TRANSACTION];
  s->categories_count = (int64_t)res->counts[FZIP_KIND_CATEGORY];
  s->file_maps_count = (int64_t)res->counts[FZIP_KIND_FILE_MAP];
  s->transaction_files_count = (int64_t)res->counts[FZIP_KIND_TRANSACTION_FILE];
  s->analytics_count = (int64_t)res->counts[FZIP_KIND_ANALYTICS];
  s->file_bytes = (int64_t)res->files_bytes;
  return true;
}

/* Ends the job with a final status; `expires_at` of the record is when the
 * reaper looks at it next. */
static bool finish_job(run_state_t *rs, int status, const char *event, const char *message,
                       int64_t record_expires_at, bool with_blob, fzip_error_t *error) {
  bson_t body = BSON_INITIALIZER;
  bool ok = false;

  rs->job->status = status;
  rs->job->updated_at = rs->job->completed_at = fzip_now_ms();
  if (!set_str(&rs->job->current_phase, event) || !add_event(rs->job, event, message)) {
    oom(error);
    goto done;
  }
  if (!build_body(&body, rs->job, with_blob, error))
    goto done;
  ok = job_ctx_finish(rs->jctx, &body, record_expires_at, error);
done:
  bson_destroy(&body);
  return ok;
}

static bool build_and_store(svc_export_t *svc, run_state_t *rs, const store_job_t *rec,
                            pkg_result_t *res, fzip_error_t *error) {
  pkg_selection_t sel;
  pkg_options_t opts = {0};
  char blob[FZIP_ID_MAX + 16];

  if (!selection_from_job(&sel, rs->job, error))
    return false;
  blob_id_for(blob, rs->job->export_id);
  /* A previous attempt (a replica died after committing) may have left
   * the package: start clean so the result is this run's. */
  if (!store_blob_delete(svc->store, STORE_BUCKET_PACKAGES, blob, error))
    return false;
  opts.export_timestamp_ms = rs->job->pinned_timestamp;
  opts.temp_dir = svc->opts.temp_dir;
  opts.progress = on_progress;
  opts.progress_ctx = rs;
  opts.cancelled = on_cancel;
  opts.cancel_ctx = rs;
  if (!export_source_write_blob(res, svc->store, rec->user_id, &sel, &opts, blob, error)) {
    /* The writer reports a stop as CANCELLED: say why it stopped. */
    if (rs->stop && fzip_error_is_set(&rs->save_error))
      *error = rs->save_error;
    return false;
  }
  return true;
}

static bool run_export(job_ctx_t *jctx, void *data, fzip_error_t *error) {
  svc_export_t *svc = data;
  const store_job_t *rec = job_ctx_record(jctx);
  ProtobufCMessage *msg = NULL;
  run_state_t rs = {.jctx = jctx};
  pkg_result_t res;
  fzip_error_t err;
  char blob[FZIP_ID_MAX + 16];
  bool ok = false;
  int64_t now = fzip_now_ms();

  fzip_error_clear(&err);
  fzip_error_clear(&rs.save_error);
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__export_job__descriptor, NULL, error))
    return false;
  rs.job = (export_job_t *)msg;
  blob_id_for(blob, rs.job->export_id);

  if (job_ctx_cancel_requested(jctx)) {
    ok = finish_job(&rs, FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_CANCELLED, "cancelled",
                    "cancelled before it started", now + svc->opts.retention_ms, false, error);
    goto done;
  }
  if (!add_event(rs.job, rs.job->started_at ? "resumed" : "started",
                 job_ctx_owner(jctx))) {
    oom(error);
    goto done;
  }
  if (!rs.job->started_at)
    rs.job->started_at = now;
  set_phase(&rs, FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COLLECTING_DATA, "counting");

  if (!rs.stop && build_and_store(svc, &rs, rec, &res, &err)) {
    rs.job->package_size = (int64_t)res.package_size;
    rs.job->progress = 100;
    rs.job->items_done = rs.job->items_total;
    if (!set_str(&rs.job->package_sha256, res.package_sha256) || !fill_summary(rs.job, &res)) {
      oom(error);
      goto done;
    }
    rs.job->expires_at = fzip_now_ms() + svc->opts.ttl_ms;
    ok = finish_job(&rs, FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED, "completed",
                    "package ready", rs.job->expires_at, true, error);
    if (!ok)
      /* Deleted or taken while finishing: don't leave the package behind. */
      store_blob_delete(svc->store, STORE_BUCKET_PACKAGES, blob, NULL);
    goto done;
  }
  if (!fzip_error_is_set(&err))
    err = rs.save_error;

  /* Stopped or failed. */
  if (job_ctx_is_shutdown_error(jctx, &err) || err.code == FZIP_ERR_ABORTED ||
      err.code == FZIP_ERR_NOT_FOUND) {
    /* Shutdown: the job resumes elsewhere.  Lease lost / deleted: not ours
     * any more.  Either way nothing to finish here. */
    *error = err;
    goto done;
  }
  if (err.code == FZIP_ERR_CANCELLED && job_ctx_cancel_requested(jctx)) {
    ok = finish_job(&rs, FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_CANCELLED, "cancelled",
                    "cancelled by the user", fzip_now_ms() + svc->opts.retention_ms, false,
                    error);
    goto done;
  }
  fzip_log(FZIP_LOG_WARN, "export", "export failed", "export", rs.job->export_id, "phase",
           rs.job->current_phase, "error", err.message, NULL);
  if (!set_error(rs.job, &err, rs.job->current_phase)) {
    oom(error);
    goto done;
  }
  ok = finish_job(&rs, FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_FAILED, "failed", err.message,
                  fzip_now_ms() + svc->opts.retention_ms, false, error);
done:
  protobuf_c_message_free_unpacked(msg, NULL);
  return ok;
}

/* ---- expiry ----------------------------------------------------------- */

bool svc_export_expire(svc_export_t *svc, store_job_t *rec, int64_t now_ms, bool *handled,
                       fzip_error_t *error) {
  ProtobufCMessage *msg = NULL;
  export_job_t *job = NULL;
  char blob[FZIP_ID_MAX + 16];
  bool ok = false;

  *handled = false;
  if (rec->kind != STORE_JOB_EXPORT)
    return true;
  *handled = true;
  blob_id_for(blob, rec->job_id);
  if (!store_blob_delete(svc->store, STORE_BUCKET_PACKAGES, blob, error))
    return false;
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__export_job__descriptor, NULL, error))
    goto remove; /* unreadable record: nothing to keep */
  job = (export_job_t *)msg;
  if (job->status != FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED)
    goto remove;
  ok = end_unclaimed(svc, rec, job, FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_EXPIRED, "expired",
                     "package deleted after its expiry", now_ms, error);
  goto done;
remove:
  ok = store_job_delete(svc->store, STORE_JOB_EXPORT, NULL, rec->job_id, error) ||
       error->code == FZIP_ERR_NOT_FOUND;
done:
  protobuf_c_message_free_unpacked(msg, NULL);
  return ok;
}

/* ---- lifecycle -------------------------------------------------------- */

static bool status_is_terminal(int status) { return is_terminal(status); }

static const svc_jobs_kind_t export_kind = {
    .kind = STORE_JOB_EXPORT,
    .noun = "export",
    .id_field = "export_id",
    .job = &fzip__v1__export_job__descriptor,
    .view = apply_view,
    .is_terminal = status_is_terminal,
};

static void init_rows(svc_export_t *svc) {
#define ROW(i, name, kind_, req, resp, field, fn)                                          \
  svc->rows[i] = (rpc_method_t){.path = "/fzip.v1.ExportService/" name,                   \
                                .kind = kind_,                                             \
                                .request = &req,                                           \
                                .response = &resp,                                         \
                                .requires_auth = true,                                     \
                                .field = fn,                                               \
                                .data = svc}
  ROW(0, "CreateExport", RPC_UNARY, fzip__v1__create_export_request__descriptor,
      fzip__v1__create_export_response__descriptor, unary, create_export);
  ROW(1, "GetExport", RPC_UNARY, fzip__v1__get_export_request__descriptor,
      fzip__v1__get_export_response__descriptor, unary, svc_jobs_get);
  ROW(2, "ListExports", RPC_UNARY, fzip__v1__list_exports_request__descriptor,
      fzip__v1__list_exports_response__descriptor, unary, svc_jobs_list);
  ROW(3, "DownloadExport", RPC_SERVER_STREAMING, fzip__v1__download_export_request__descriptor,
      fzip__v1__download_export_response__descriptor, server_stream, &download_ops);
  ROW(4, "DeleteExport", RPC_UNARY, fzip__v1__delete_export_request__descriptor,
      fzip__v1__delete_export_response__descriptor, unary, delete_export);
  ROW(5, "CancelExport", RPC_UNARY, fzip__v1__cancel_export_request__descriptor,
      fzip__v1__cancel_export_response__descriptor, unary, cancel_export);
  ROW(6, "WatchExport", RPC_SERVER_STREAMING, fzip__v1__watch_export_request__descriptor,
      fzip__v1__watch_export_response__descriptor, server_stream, &svc_jobs_watch_ops);
#undef ROW
  for (int i = 0; i < 7; i++)
    svc->row_ptrs[i] = &svc->rows[i];
}

bool svc_export_new(svc_export_t **out, store_t *store, const svc_export_options_t *options,
                    fzip_error_t *error) {
  svc_export_t *svc = calloc(1, sizeof *svc);
  job_runner_options_t ro = {0};

  *out = NULL;
  if (!svc)
    return oom(error);
  svc->store = store;
  svc->base.kind = &export_kind;
  svc->base.store = store;
  if (options)
    svc->opts = *options;
  if (svc->opts.ttl_ms <= 0)
    svc->opts.ttl_ms = DEFAULT_TTL_MS;
  if (svc->opts.retention_ms <= 0)
    svc->opts.retention_ms = DEFAULT_RETENTION_MS;
  init_rows(svc);
  ro.kind = STORE_JOB_EXPORT;
  ro.name = "export";
  ro.workers = svc->opts.workers;
  ro.lease_ms = svc->opts.lease_ms;
  ro.poll_ms = svc->opts.poll_ms;
  ro.owner = svc->opts.owner;
  ro.run = run_export;
  ro.data = svc;
  if (!job_runner_new(&svc->runner, store, &ro, error)) {
    free(svc);
    return false;
  }
  *out = svc;
  return true;
}

void svc_export_destroy(svc_export_t *svc) {
  if (!svc)
    return;
  job_runner_destroy(svc->runner);
  free(svc);
}

const rpc_method_t *const *svc_export_methods(svc_export_t *svc, size_t *n) {
  *n = 7;
  return svc->row_ptrs;
}
