/* job_kind: see job_kind.h. */
#include "job_kind.h"

#include <stdio.h>

#include "fzip_log.h"
#include "fzip_metrics.h"
#include "fzip_util.h"
#include "job_body.h"
#include "jobs.h"

static int32_t *status_field(const ProtobufCMessage *job) {
  const ProtobufCFieldDescriptor *fd =
      protobuf_c_message_descriptor_get_field_by_name(job->descriptor, "status");
  if (!fd || fd->type != PROTOBUF_C_TYPE_ENUM)
    return NULL;
  return (int32_t *)((char *)job + fd->offset);
}

int job_status_of(const ProtobufCMessage *job) {
  const int32_t *p = status_field(job);
  return p ? *p : 0;
}

const char *job_status_name(const job_kind_t *kind, int status) {
  return job_enum_name(kind->status, status);
}

bool job_status_allowed(const job_kind_t *kind, int from, int to) {
  if (from < 0 || to < 0 || from >= kind->n_status || to >= kind->n_status ||
      to >= JOB_STATUS_MAX)
    return false;
  return (kind->next[from] & JOB_STATUS_BIT(to)) != 0;
}

/* Every status change passes here, so here it is counted, except a new
 * job's first status (from the unset 0), which job_count_created counts
 * once the record is stored.  A job's duration (from creation) is observed
 * when it enters a final status from a running one (an import's UPLOADED
 * and VALIDATION_PASSED are final until StartImport runs it on), never at
 * creation, nor when e.g. COMPLETED later turns EXPIRED. */
static void record_transition(const ProtobufCMessage *job, const job_kind_t *kind, int from,
                              int to) {
  const ProtobufCFieldDescriptor *fd =
      protobuf_c_message_descriptor_get_field_by_name(job->descriptor, "created_at");
  const char *state = job_status_name(kind, to);
  int64_t created_at = 0;

  fzip_metric_add(FZIP_METRIC_JOB_TRANSITIONS, (const char *[]){kind->noun, state}, 1);
  if (!kind->is_terminal || !kind->is_terminal(to) || kind->is_terminal(from) || !fd ||
      fd->type != PROTOBUF_C_TYPE_INT64)
    return;
  created_at = *(const int64_t *)((const char *)job + fd->offset);
  if (created_at > 0)
    fzip_metric_observe(FZIP_METRIC_JOB_DURATION, (const char *[]){kind->noun, state},
                        (double)(fzip_now_ms() - created_at) / 1000.0);
}

void job_count_created(const ProtobufCMessage *job, const job_kind_t *kind) {
  const char *state = job_status_name(kind, job_status_of(job));
  fzip_metric_add(FZIP_METRIC_JOB_TRANSITIONS, (const char *[]){kind->noun, state}, 1);
}

bool job_set_status(ProtobufCMessage *job, const job_kind_t *kind, int to, fzip_error_t *error) {
  int32_t *status = status_field(job);

  if (!status || job->descriptor != kind->job)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INTERNAL, "%s is not a %s job",
                          job->descriptor->name, kind->noun);
  if (!job_status_allowed(kind, *status, to))
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "%s job cannot go from %s to %s", kind->noun,
                          job_status_name(kind, *status), job_status_name(kind, to));
  if (*status != to) {
    fzip_log(FZIP_LOG_DEBUG, kind->noun, "status", "from", job_status_name(kind, *status), "to",
             job_status_name(kind, to), NULL);
    if (*status != 0)
      record_transition(job, kind, *status, to);
  }
  *status = to;
  return true;
}

/* ---- blobs ------------------------------------------------------------- */

void job_blob_id(char out[JOB_BLOB_ID_MAX], const job_kind_t *kind, const char *job_id) {
  snprintf(out, JOB_BLOB_ID_MAX, "%s%s", kind->blob_prefix, job_id);
}

void job_part_blob_id(char out[JOB_BLOB_ID_MAX], const job_kind_t *kind, const char *job_id) {
  snprintf(out, JOB_BLOB_ID_MAX, "%s%s%s", kind->blob_prefix, job_id,
           kind->part_suffix ? kind->part_suffix : "");
}

bool job_delete_blobs(store_t *store, const job_kind_t *kind, const char *job_id,
                      fzip_error_t *error) {
  char blob[JOB_BLOB_ID_MAX], part[JOB_BLOB_ID_MAX];

  job_blob_id(blob, kind, job_id);
  if (!store_blob_delete(store, STORE_BUCKET_PACKAGES, blob, error))
    return false;
  if (!kind->part_suffix)
    return true;
  job_part_blob_id(part, kind, job_id);
  return store_blob_delete(store, STORE_BUCKET_PACKAGES, part, error);
}

bool job_delete(store_t *store, const job_kind_t *kind, store_job_t *rec, fzip_error_t *error) {
  return (!kind->before_delete || kind->before_delete(store, rec, error)) &&
         job_delete_blobs(store, kind, rec->job_id, error) &&
         store_job_delete(store, kind->kind, rec->user_id, rec->job_id, error);
}

/* ---- records ----------------------------------------------------------- */

static int progress_of(const ProtobufCMessage *job) {
  const ProtobufCFieldDescriptor *fd =
      protobuf_c_message_descriptor_get_field_by_name(job->descriptor, "progress");
  if (!fd || fd->type != PROTOBUF_C_TYPE_INT32)
    return 0;
  return *(const int32_t *)((const char *)job + fd->offset);
}

static const char *job_id_of(const job_kind_t *kind, const ProtobufCMessage *job) {
  const ProtobufCFieldDescriptor *fd =
      protobuf_c_message_descriptor_get_field_by_name(job->descriptor, kind->id_field);
  const char *id = fd && fd->type == PROTOBUF_C_TYPE_STRING
                       ? *(const char *const *)((const char *)job + fd->offset)
                       : NULL;
  return id ? id : "";
}

bool job_kind_body(bson_t *out, const job_kind_t *kind, const ProtobufCMessage *job,
                   bool cancel_requested, fzip_error_t *error) {
  int status = job_status_of(job);
  char blob[JOB_BLOB_ID_MAX];
  bool named = kind->blob_status == 0 || status == kind->blob_status;

  job_blob_id(blob, kind, job_id_of(kind, job));
  return job_body_build(out, job, job_status_name(kind, status), progress_of(job),
                        named ? blob : NULL, cancel_requested, error);
}

bool job_store_unowned(store_t *store, const job_kind_t *kind, store_job_t *rec,
                       const ProtobufCMessage *job, int64_t now, bool keep_cancel,
                       fzip_error_t *error) {
  bson_t *body = bson_new();
  bool ok = false;

  if (!job_kind_body(body, kind, job, keep_cancel && job_body_cancel_requested(rec->body), error))
    goto done;
  bson_destroy(rec->body);
  rec->body = body;
  body = NULL;
  rec->updated_at = now;
  ok = store_job_update(store, rec, NULL, error);
done:
  bson_destroy(body);
  return ok;
}

static int64_t *int64_field(ProtobufCMessage *job, const char *name) {
  const ProtobufCFieldDescriptor *fd =
      protobuf_c_message_descriptor_get_field_by_name(job->descriptor, name);
  return fd && fd->type == PROTOBUF_C_TYPE_INT64 ? (int64_t *)((char *)job + fd->offset) : NULL;
}

static char **string_field(ProtobufCMessage *job, const char *name) {
  const ProtobufCFieldDescriptor *fd =
      protobuf_c_message_descriptor_get_field_by_name(job->descriptor, name);
  return fd && fd->type == PROTOBUF_C_TYPE_STRING ? (char **)((char *)job + fd->offset) : NULL;
}

bool job_end(ProtobufCMessage *job, const job_kind_t *kind, int status, const char *event,
             const char *message, int64_t now, bool set_completed, fzip_error_t *error) {
  int64_t *updated_at = int64_field(job, "updated_at");
  int64_t *completed_at = int64_field(job, "completed_at");
  char **phase = string_field(job, "current_phase");

  if (!updated_at || !completed_at || !phase)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INTERNAL,
                          "%s job has no updated_at, completed_at or current_phase", kind->noun);
  if (!job_set_status(job, kind, status, error))
    return false;
  *updated_at = now;
  if (set_completed)
    *completed_at = now;
  if (!job_msg_set_str(phase, event) || !job_msg_add_event(job, event, message, JOB_EVENTS_MAX))
    return fzip_error_oom(error, NULL);
  return true;
}

bool job_end_unowned(store_t *store, const job_kind_t *kind, store_job_t *rec,
                     ProtobufCMessage *job, int status, const char *event, const char *message,
                     int64_t now, bool set_completed, int64_t retention_ms, fzip_error_t *error) {
  if (!job_end(job, kind, status, event, message, now, set_completed, error))
    return false;
  rec->runnable = false;
  rec->expires_at = now + retention_ms;
  /* An ended job has nothing left to cancel; a flag kept here would stop
   * its next run (StartImport again) as soon as it is claimed. */
  return job_store_unowned(store, kind, rec, job, now, false, error);
}

/* ---- cancel ------------------------------------------------------------ */

/* One attempt of job_cancel on the record just read: *done when it ended
 * (cancelled, flagged, or refused); false with ABORTED when the ending
 * lost a race (a worker claimed the job meanwhile: the next attempt flags
 * it instead). */
static bool cancel_once(store_job_t **rec, bool *flagged, bool *done, store_t *store,
                        const job_kind_t *kind, const char *user_id, const char *job_id,
                        int64_t retention_ms, fzip_error_t *error) {
  ProtobufCMessage *job = NULL;
  int64_t now = fzip_now_ms();
  int status;
  bool ok = false;

  if (!job_body_unpack(&job, (*rec)->body, kind->job, NULL, error))
    return false;
  if (kind->view)
    kind->view(job, now);
  status = job_status_of(job);
  if (!(*rec)->runnable) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION, "%s %s %s (%s)",
                   kind->noun, (*rec)->job_id, kind->cancel_refused,
                   job_status_name(kind, status));
    goto done;
  }
  if ((*rec)->lease_until < now && kind->cancel_now(status)) {
    ok = job_end_unowned(store, kind, *rec, job, kind->cancelled_status, "cancelled",
                         kind->cancel_now_message, now, true, retention_ms, error);
    *done = ok;
    goto done;
  }
  store_job_destroy(*rec);
  *rec = NULL;
  /* It retries its own conflicts: its answer is final here. */
  ok = job_request_cancel(rec, store, kind->kind, user_id, job_id, error);
  *done = true;
  *flagged = ok;
done:
  protobuf_c_message_free_unpacked(job, NULL);
  return ok;
}

bool job_cancel(store_job_t **out, bool *flagged, store_t *store, const job_kind_t *kind,
                const char *user_id, const char *job_id, int64_t retention_ms,
                fzip_error_t *error) {
  store_job_t *rec = NULL;

  *out = NULL;
  *flagged = false;
  for (int attempt = 0; attempt < JOB_UPDATE_RETRIES; attempt++) {
    bool done = false;

    if (!store_job_get(&rec, store, kind->kind, user_id, job_id, error))
      return false;
    if (cancel_once(&rec, flagged, &done, store, kind, user_id, job_id, retention_ms, error)) {
      *out = rec;
      return true;
    }
    store_job_destroy(rec);
    rec = NULL;
    if (done || error->code != FZIP_ERR_ABORTED)
      return false;
    job_update_backoff(attempt);
  }
  /* Every attempt lost a race: the record read last is stale and was not
   * cancelled, so say so rather than answer with it. */
  return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                        "%s %s changed too often; try again", kind->noun, job_id);
}

/* ---- a worker's saves ---------------------------------------------------- */

static bool save_job(job_ctx_t *ctx, const job_kind_t *kind, const ProtobufCMessage *job,
                     bool final, bool force, int64_t expires_at, fzip_error_t *error) {
  bson_t body = BSON_INITIALIZER;
  bool ok = job_kind_body(&body, kind, job, false, error) &&
            (final ? job_ctx_finish(ctx, &body, expires_at, error)
                   : job_ctx_tick(ctx, &body, force, error));
  bson_destroy(&body);
  return ok;
}

bool job_ctx_save_job(job_ctx_t *ctx, const job_kind_t *kind, const ProtobufCMessage *job,
                      bool force, fzip_error_t *error) {
  return save_job(ctx, kind, job, false, force, 0, error);
}

bool job_ctx_finish_job(job_ctx_t *ctx, const job_kind_t *kind, const ProtobufCMessage *job,
                        int64_t expires_at, fzip_error_t *error) {
  return save_job(ctx, kind, job, true, false, expires_at, error);
}

bool job_ctx_end_job(job_ctx_t *ctx, const job_kind_t *kind, ProtobufCMessage *job, int status,
                     const char *event, const char *message, int64_t now, int64_t expires_at,
                     fzip_error_t *error) {
  fzip_error_t refused, again;
  char **phase = string_field(job, "current_phase");

  if (job_end(job, kind, status, event, message, now, true, &refused))
    return job_ctx_finish_job(ctx, kind, job, expires_at, error);
  if (refused.code != FZIP_ERR_FAILED_PRECONDITION) {
    *error = refused;
    return false;
  }
  fzip_log(FZIP_LOG_ERROR, kind->noun, "final status refused; the job ends failed instead", "job",
           job_id_of(kind, job), "status", job_status_name(kind, status), "error",
           refused.message, NULL);
  if (!job_msg_set_error(job, &refused, phase && *phase ? *phase : ""))
    return fzip_error_oom(error, NULL);
  /* Failing refused too (the job had ended already): the run still ends,
   * the job keeping the status it has. */
  if (status == kind->failed_status ||
      !job_end(job, kind, kind->failed_status, "failed", refused.message, now, true, &again))
    fzip_log(FZIP_LOG_ERROR, kind->noun, "failure refused too; the job ends as it is", "job",
             job_id_of(kind, job), "status", job_status_name(kind, job_status_of(job)), NULL);
  return job_ctx_finish_job(ctx, kind, job, expires_at, error);
}

/* ---- expiry ------------------------------------------------------------ */

bool job_expire(store_t *store, const job_kind_t *kind, store_job_t *rec, int64_t now_ms,
                int64_t retention_ms, fzip_error_t *error) {
  ProtobufCMessage *job = NULL;
  bool ok = false;

  if (rec->runnable) {
    rec->expires_at = 0;
    return store_job_update(store, rec, NULL, error) || error->code == FZIP_ERR_ABORTED;
  }
  if (!job_delete_blobs(store, kind, rec->job_id, error))
    return false;
  if (kind->expired_status &&
      job_body_unpack(&job, rec->body, kind->job, NULL, error) &&
      job_status_of(job) == kind->expired_from) {
    ok = job_end_unowned(store, kind, rec, job, kind->expired_status, "expired",
                         "package deleted after its expiry", now_ms, false, retention_ms, error);
    goto done;
  }
  /* Any other ended job, or an unreadable record: nothing to keep. */
  ok = store_job_delete(store, kind->kind, NULL, rec->job_id, error) ||
       error->code == FZIP_ERR_NOT_FOUND;
done:
  if (job)
    protobuf_c_message_free_unpacked(job, NULL);
  return ok;
}
