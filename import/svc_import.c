/*
 * svc_import: see svc_import.h.  This file holds the RPC side (upload,
 * start, cancel, delete, and the shared Get/List/Watch rows); the worker
 * that validates and restores is import_run.c.
 *
 * Upload: the job record is created with the first message (status
 * UPLOADED, phase "receiving", expiring after the upload timeout), then
 * chunks go straight into an uncommitted blob; the size limit is checked
 * before each write.  Only when the client half-closes and the size and
 * sha256 match what it announced is the blob committed and the record
 * made permanent.  When the server refuses something (limit, checksum,
 * bad message) `close` deletes both, so a refused upload leaves nothing
 * behind.  When the stream breaks instead (client gone, cancelled,
 * shutdown) `close` commits what arrived and marks the job "interrupted"
 * with received_bytes; a later UploadImport with options.resume_import_id
 * continues it.  Resuming needs the prefix under a new writer of the same
 * blob id (a committed id cannot be reopened, and the store API stays as
 * it is): the prefix is copied aside to "<blob>.part", the blob deleted,
 * and a fresh writer of "<blob>" gets the prefix back and then the new
 * chunks, so the store's sha256 at commit covers the whole package.  That
 * costs two server-side copies of the prefix per resume, never a client
 * resend.  If fzipd dies mid-upload the record expires (upload timeout)
 * and the reaper removes it, the uncommitted blob and any ".part".
 */
#include "svc_import.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip/v1/import_service.pb-c.h"
#include "fzip/v1/jobs.pb-c.h"
#include "fzip_entity.h"
#include "fzip_failpoint.h"
#include "fzip_log.h"
#include "fzip_metrics.h"
#include "fzip_util.h"
#include "import_map.h"
#include "import_run.h"
#include "import_undo.h"
#include "job_body.h"
#include "jobs.h"
#include "svc_jobs.h"

#define DEFAULT_RETENTION_MS (7LL * 24 * 3600 * 1000)
#define DEFAULT_UPLOAD_TIMEOUT_MS (6LL * 3600 * 1000)
#define DEFAULT_WORKERS 1

typedef Fzip__V1__ImportJob import_job_t;

struct svc_import {
  svc_jobs_base_t base; /* first: the shared job handlers find it */
  import_env_t env;
  svc_import_options_t opts;
};

#define S(name) FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_##name

static const char *status_name(int status) { return job_status_name(&import_job_kind, status); }

/* The package blob and the resume prefix ("<blob>.part": where a resumed
 * upload keeps the bytes received before, while the package blob's id is
 * being rewritten). */
static void blob_id(char out[JOB_BLOB_ID_MAX], const char *import_id) {
  job_blob_id(out, &import_job_kind, import_id);
}

static void part_blob_id(char out[JOB_BLOB_ID_MAX], const char *import_id) {
  job_part_blob_id(out, &import_job_kind, import_id);
}

/* Saves `job` into `rec` (body rebuilt, version-checked, no owner); the
 * stored cancel flag is kept unless the job starts a new run. */
static bool store_record(store_t *store, store_job_t *rec, const import_job_t *job,
                         bool new_run, fzip_error_t *error) {
  return job_store_unowned(store, &import_job_kind, rec, &job->base, fzip_now_ms(), !new_run,
                           error);
}

/* ---- UploadImport ----------------------------------------------------- */

typedef struct {
  svc_import_t *svc;
  store_job_t *rec;            /* the job record created with the options */
  store_job_t *replay;         /* the job an earlier call with this request_id made: the
                                * answer; this call's chunks are read and dropped */
  import_job_t *job;           /* malloc-owned copy of the record's message */
  store_blob_writer_t *writer; /* NULL once committed */
  bool owns_job;               /* created or claimed by this call: close may change it */
  bool resumed;                /* continues an interrupted upload ("<blob>.part" exists) */
  bool refused;                /* the server failed the call: close deletes everything */
  bool started;                /* the options message was handled */
  bool done;                   /* everything succeeded: close keeps it */
  bool kept;                   /* interrupted and kept for a resume: close leaves it */
  uint64_t received;           /* whole-package bytes in the writer, prefix included */
  uint64_t next_save;          /* received_bytes is saved again past this */
  int64_t expected_size;
  char expected_sha256[FZIP_SHA256_HEX_LEN + 1];
  bool start;
} upload_t;

static bool check_options(const Fzip__V1__ImportOptions *o, int64_t max, fzip_error_t *error) {
  size_t n = strlen(o->file_name);
  size_t h = strlen(o->expected_sha256);

  if (o->merge_strategy < 0 ||
      o->merge_strategy > FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_MERGE_FIELDS)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "unknown merge_strategy %d", (int)o->merge_strategy);
  if (o->expected_size < 0 || o->expected_size > max)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "expected_size %" PRId64 " is outside 0..%" PRId64 " (the upload limit)",
                          o->expected_size, max);
  if (h != 0 && h != FZIP_SHA256_HEX_LEN)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "expected_sha256 must be 64 hex digits");
  for (size_t i = 0; i < h; i++) {
    if (!isxdigit((unsigned char)o->expected_sha256[i]))
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                            "expected_sha256 must be 64 hex digits");
  }
  if (n > SVC_IMPORT_FILE_NAME_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "file_name is %zu bytes; the limit is %d", n, SVC_IMPORT_FILE_NAME_MAX);
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)o->file_name[i] < 0x20)
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                            "file_name contains a control character");
  }
  return true;
}

/* RestoreOptions of a request (import_map_check): INVALID_ARGUMENT with a
 * BadRequest violation naming the field. */
static bool check_restore(rpc_ctx_t *ctx, const Fzip__V1__RestoreOptions *restore,
                          fzip_error_t *error) {
  const char *field = NULL;
  if (import_map_check(restore, &field, error))
    return true;
  if (field)
    rpc_ctx_add_violation(ctx, field, error->message);
  return fzip_error_set_reason(error, "INVALID_RESTORE_OPTIONS");
}

/* What makes two uploads the same request: their options but request_id,
 * merge_strategy's default filled in. */
static bool request_of(svc_jobs_request_t *idem, rpc_ctx_t *ctx,
                       const Fzip__V1__ImportOptions *o, fzip_error_t *error) {
  Fzip__V1__ImportOptions params = *o;
  params.request_id = "";
  if (params.merge_strategy == FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_UNSPECIFIED)
    params.merge_strategy = FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_FAIL_ON_CONFLICT;
  return svc_jobs_request_init(idem, ctx, o->request_id, &params.base, error);
}

static bool upload_begin(upload_t *up, rpc_ctx_t *ctx, const Fzip__V1__ImportOptions *o,
                         fzip_error_t *error) {
  svc_import_t *svc = up->svc;
  char id[FZIP_UUID_LEN + 1];
  char blob[JOB_BLOB_ID_MAX];
  int64_t now = fzip_now_ms();
  svc_jobs_request_t idem;
  bson_t *body = NULL;
  bool ok = false;

  if (!check_options(o, svc->opts.max_upload_bytes, error) ||
      !check_restore(ctx, o->restore, error) || !request_of(&idem, ctx, o, error))
    return false;
  /* Before the replay check: a replayed stream is held to it too. */
  up->expected_size = o->expected_size;
  if (!svc_jobs_admit(&up->replay, &svc->base, ctx, &idem, o->start, error))
    return false;
  if (up->replay)
    return true;
  if (!fzip_uuid_v4(id, error))
    return false;
  snprintf(up->expected_sha256, sizeof up->expected_sha256, "%s", o->expected_sha256);
  for (char *p = up->expected_sha256; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  up->start = o->start;

  up->job = malloc(sizeof *up->job);
  if (!up->job)
    return fzip_error_oom(error, NULL);
  fzip__v1__import_job__init(up->job);
  if (!job_set_status(&up->job->base, &import_job_kind, S(UPLOADED), error))
    return false;
  up->job->merge_strategy = o->merge_strategy == FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_UNSPECIFIED
                                ? FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_FAIL_ON_CONFLICT
                                : o->merge_strategy;
  up->job->validate_only = o->validate_only;
  if (!import_map_set_options(&up->job->restore, o->restore, error))
    return false;
  up->job->created_at = up->job->updated_at = now;
  if (!job_msg_set_str(&up->job->import_id, id) ||
      !import_set_phase(up->job, IMPORT_PHASE_RECEIVING) ||
      !job_msg_set_str(&up->job->file_name, o->file_name) ||
      !job_msg_add_event(&up->job->base, "upload_started", "receiving the package",
                         JOB_EVENTS_MAX))
    return fzip_error_oom(error, NULL);

  up->rec = store_job_new();
  if (!up->rec)
    return fzip_error_oom(error, NULL);
  snprintf(up->rec->job_id, sizeof up->rec->job_id, "%s", id);
  snprintf(up->rec->user_id, sizeof up->rec->user_id, "%s", rpc_ctx_user_id(ctx));
  up->rec->kind = STORE_JOB_IMPORT;
  up->rec->created_at = up->rec->updated_at = now;
  up->rec->expires_at = now + svc->opts.upload_timeout_ms;
  blob_id(blob, id);
  body = bson_new();
  if (!job_kind_body(body, &import_job_kind, &up->job->base, false, error))
    goto done;
  bson_destroy(up->rec->body);
  up->rec->body = body;
  body = NULL;
  if (!svc_jobs_create(&up->replay, &svc->base, ctx, up->rec, &idem, error))
    goto done;
  if (up->replay) {
    ok = true; /* a simultaneous call with this request_id came first */
    goto done;
  }
  job_count_created(&up->job->base, &import_job_kind);
  up->owns_job = true;
  if (!store_blob_writer_new(&up->writer, svc->env.store, STORE_BUCKET_PACKAGES, blob, error))
    goto done;
  ok = true;
done:
  bson_destroy(body);
  return ok;
}

/* ---- resuming an interrupted upload ------------------------------------ */

#define UPLOAD_COPY_CHUNK STORE_BLOB_CHUNK
/* How long a short upload waits to learn whether its client died. */
#define UPLOAD_GONE_WAIT_MS 500
#define UPLOAD_GONE_POLL_MS 10
#define UPLOAD_SAVE_EVERY_BYTES (32ULL * 1024 * 1024)

/* Appends the committed blob `from` to writer w. */
static bool copy_blob(store_blob_writer_t *w, store_t *store, const char *from,
                      fzip_error_t *error) {
  store_blob_reader_t *r = NULL;
  unsigned char *buf = malloc(UPLOAD_COPY_CHUNK);
  size_t n = 0;
  bool ok = false;

  if (!buf)
    return fzip_error_oom(error, NULL);
  if (!store_blob_reader_new(&r, store, STORE_BUCKET_PACKAGES, from, 0, error))
    goto done;
  for (;;) {
    if (!store_blob_reader_read(r, buf, UPLOAD_COPY_CHUNK, &n, error))
      goto done;
    if (n == 0)
      break;
    if (!store_blob_writer_write(w, buf, n, error))
      goto done;
  }
  ok = true;
done:
  store_blob_reader_destroy(r);
  free(buf);
  return ok;
}

/* Gets the bytes received so far into a fresh writer of the package blob:
 * the committed prefix moves to "<blob>.part" (unless a resume that died
 * already moved it) and is copied back behind the new writer. */
static bool reopen_prefix(upload_t *up, fzip_error_t *error) {
  store_t *store = up->svc->env.store;
  char blob[JOB_BLOB_ID_MAX], part[JOB_BLOB_ID_MAX];
  store_blob_writer_t *pw = NULL;
  store_blob_info_t info;
  fzip_error_t serr = {0};
  bool ok = false;

  blob_id(blob, up->rec->job_id);
  part_blob_id(part, up->rec->job_id);
  if (store_blob_stat(&info, store, STORE_BUCKET_PACKAGES, blob, &serr)) {
    if (!store_blob_delete(store, STORE_BUCKET_PACKAGES, part, error) ||
        !store_blob_writer_new(&pw, store, STORE_BUCKET_PACKAGES, part, error) ||
        !copy_blob(pw, store, blob, error) || !store_blob_writer_commit(pw, NULL, error) ||
        !store_blob_delete(store, STORE_BUCKET_PACKAGES, blob, error))
      goto done;
  } else if (serr.code != FZIP_ERR_NOT_FOUND) {
    *error = serr;
    goto done;
  }
  if (!store_blob_stat(&info, store, STORE_BUCKET_PACKAGES, part, error))
    goto done;
  if (info.size != (uint64_t)up->job->received_bytes) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS,
                   "import %s should hold %" PRId64 " bytes but holds %" PRIu64,
                   up->rec->job_id, up->job->received_bytes, info.size);
    goto done;
  }
  if (!store_blob_writer_new(&up->writer, store, STORE_BUCKET_PACKAGES, blob, error) ||
      !copy_blob(up->writer, store, part, error))
    goto done;
  up->received = info.size;
  ok = true;
done:
  store_blob_writer_destroy(pw);
  return ok;
}

/* Checks that the job is this caller's interrupted upload at the offset
 * the client resumes from, then claims it (phase "receiving",
 * version-checked, so two resumes of one upload cannot both run). */
static bool resume_claim(upload_t *up, rpc_ctx_t *ctx, const Fzip__V1__ImportOptions *o,
                         fzip_error_t *error) {
  svc_import_t *svc = up->svc;
  ProtobufCMessage *view = NULL, *msg = NULL;

  if (!svc_jobs_load(&view, &up->rec, &svc->base, ctx, o->resume_import_id, error) ||
      !job_body_unpack(&msg, up->rec->body, &fzip__v1__import_job__descriptor, NULL, error))
    return false;
  up->job = (import_job_t *)msg;
  if (up->job->status != S(UPLOADED) || import_phase_of(up->job) != IMPORT_PHASE_INTERRUPTED)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "import %s is not an interrupted upload (%s, %s)", up->rec->job_id,
                          status_name(up->job->status), up->job->current_phase);
  if (o->resume_offset != up->job->received_bytes)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "import %s holds %" PRId64 " bytes: resume from offset %" PRId64
                          ", not %" PRId64,
                          up->rec->job_id, up->job->received_bytes, up->job->received_bytes,
                          o->resume_offset);
  if (up->expected_size > 0 && up->job->received_bytes > up->expected_size)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "import %s already holds %" PRId64 " bytes, more than expected_size",
                          up->rec->job_id, up->job->received_bytes);
  up->job->merge_strategy = o->merge_strategy == FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_UNSPECIFIED
                                ? FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_FAIL_ON_CONFLICT
                                : o->merge_strategy;
  up->job->validate_only = o->validate_only;
  if (!import_map_set_options(&up->job->restore, o->restore, error))
    return false;
  up->job->updated_at = fzip_now_ms();
  if (!import_set_phase(up->job, IMPORT_PHASE_RECEIVING) ||
      !job_msg_add_event(&up->job->base, "upload_resumed", "receiving the rest of the package",
                         JOB_EVENTS_MAX))
    return fzip_error_oom(error, NULL);
  up->rec->expires_at = up->job->updated_at + svc->opts.upload_timeout_ms;
  if (!store_record(svc->env.store, up->rec, up->job, false, error)) {
    if (error->code == FZIP_ERR_ABORTED)
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                     "import %s is being resumed by another call", up->rec->job_id);
    return false;
  }
  up->owns_job = true;
  up->resumed = true;
  return true;
}

static bool resume_begin(upload_t *up, rpc_ctx_t *ctx, const Fzip__V1__ImportOptions *o,
                         fzip_error_t *error) {
  if (!check_options(o, up->svc->opts.max_upload_bytes, error) ||
      !check_restore(ctx, o->restore, error))
    return false;
  up->expected_size = o->expected_size;
  snprintf(up->expected_sha256, sizeof up->expected_sha256, "%s", o->expected_sha256);
  for (char *p = up->expected_sha256; *p; p++)
    *p = (char)tolower((unsigned char)*p);
  up->start = o->start;
  return resume_claim(up, ctx, o, error) && reopen_prefix(up, error);
}

/* Saves the job as an interrupted upload holding `received` bytes,
 * resumable (not runnable) until the upload timeout. */
static bool mark_interrupted(upload_t *up, uint64_t received, const char *event,
                             const char *text, fzip_error_t *error) {
  up->job->received_bytes = (int64_t)received;
  up->job->updated_at = fzip_now_ms();
  if (!import_set_phase(up->job, IMPORT_PHASE_INTERRUPTED) ||
      !job_msg_add_event(&up->job->base, event, text, JOB_EVENTS_MAX))
    return fzip_error_oom(error, NULL);
  up->rec->runnable = false;
  up->rec->expires_at = up->job->updated_at + up->svc->opts.upload_timeout_ms;
  return store_record(up->svc->env.store, up->rec, up->job, false, error);
}

/* The stream broke with bytes received: commit them and mark the job
 * interrupted, resumable until the upload timeout.  False: could not,
 * the caller discards the upload. */
static bool upload_keep(upload_t *up) {
  svc_import_t *svc = up->svc;
  store_blob_info_t info;
  fzip_error_t err = {0};
  char part[JOB_BLOB_ID_MAX];

  if (!store_blob_writer_commit(up->writer, &info, &err))
    goto failed;
  store_blob_writer_destroy(up->writer);
  up->writer = NULL;
  if (!mark_interrupted(up, info.size, "upload_interrupted",
                        "stream broken; resume with options.resume_import_id", &err))
    goto failed;
  if (up->resumed) {
    part_blob_id(part, up->rec->job_id);
    if (!store_blob_delete(svc->env.store, STORE_BUCKET_PACKAGES, part, &err))
      fzip_log(FZIP_LOG_WARN, "import", "could not delete a resume prefix; expiry will", "import",
               up->rec->job_id, "error", err.message, NULL);
  }
  const fzip_log_field_t f[] = {fzip_log_str("import", up->rec->job_id),
                                fzip_log_int("received_bytes", (int64_t)info.size)};
  fzip_log_fields(FZIP_LOG_INFO, "import", "upload interrupted; kept for a resume", f,
                  FZIP_LOG_COUNT(f));
  return true;
failed:
  fzip_log(FZIP_LOG_WARN, "import", "could not keep an interrupted upload; discarding it",
           "import", up->rec->job_id, "error", err.message, NULL);
  return false;
}

/* Deletes everything of an upload this call created or claimed. */
static void upload_discard(upload_t *up) {
  fzip_error_t err;

  store_blob_writer_destroy(up->writer); /* uncommitted: deletes what it wrote */
  up->writer = NULL;
  if (!job_delete_blobs(up->svc->env.store, &import_job_kind, up->rec->job_id, &err))
    fzip_log(FZIP_LOG_WARN, "import", "could not delete a failed upload; the reaper will",
             "import", up->rec->job_id, "error", err.message, NULL);
  if (!store_job_delete(up->svc->env.store, STORE_JOB_IMPORT, NULL, up->rec->job_id, &err) &&
      err.code != FZIP_ERR_NOT_FOUND)
    fzip_log(FZIP_LOG_WARN, "import", "could not delete a failed upload's job", "import",
             up->rec->job_id, "error", err.message, NULL);
}

/* A resumed upload that failed (refused, store error, bad size or sha256
 * at the end) goes back to what it was before this call: interrupted,
 * holding the prefix it held, resumable again.  The prefix is "<blob>.part"
 * once reopen_prefix moved it, else still the committed package blob.
 * False: neither exists any more, the caller discards the upload. */
static bool resume_release(upload_t *up) {
  store_t *store = up->svc->env.store;
  char blob[JOB_BLOB_ID_MAX], part[JOB_BLOB_ID_MAX];
  store_blob_info_t info;
  fzip_error_t err = {0};

  store_blob_writer_destroy(up->writer); /* uncommitted: deletes this call's bytes */
  up->writer = NULL;
  blob_id(blob, up->rec->job_id);
  part_blob_id(part, up->rec->job_id);
  if (store_blob_stat(&info, store, STORE_BUCKET_PACKAGES, part, &err)) {
    /* The prefix is the part: a package blob this call committed goes. */
    if (!store_blob_delete(store, STORE_BUCKET_PACKAGES, blob, &err))
      goto failed;
  } else {
    if (err.code != FZIP_ERR_NOT_FOUND)
      goto failed;
    fzip_error_clear(&err);
    if (!store_blob_stat(&info, store, STORE_BUCKET_PACKAGES, blob, &err))
      goto failed;
  }
  if (!mark_interrupted(up, info.size, "upload_resume_failed",
                        "the resume failed; the bytes from before it are kept", &err))
    goto failed;
  return true;
failed:
  fzip_log(FZIP_LOG_WARN, "import", "could not keep the upload after a failed resume; discarding it",
           "import", up->rec->job_id, "error", err.message, NULL);
  return false;
}

/* GetImport shows an upload's received_bytes while it runs, saved every
 * UPLOAD_SAVE_EVERY_BYTES (a failed save fails the upload: the record was
 * deleted or the store is gone). */
static bool save_received(upload_t *up, fzip_error_t *error) {
  if (up->received < up->next_save)
    return true;
  up->next_save = up->received + UPLOAD_SAVE_EVERY_BYTES;
  up->job->received_bytes = (int64_t)up->received;
  up->job->updated_at = fzip_now_ms();
  return store_record(up->svc->env.store, up->rec, up->job, false, error);
}

static bool upload_recv_step(upload_t *up, rpc_ctx_t *ctx,
                             const Fzip__V1__UploadImportRequest *req, fzip_error_t *error) {
  if (!up->started) {
    up->started = true;
    if (req->payload_case != FZIP__V1__UPLOAD_IMPORT_REQUEST__PAYLOAD_OPTIONS)
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                            "the first UploadImport message must carry options");
    if (req->options->resume_import_id && req->options->resume_import_id[0]) {
      if (req->options->request_id && req->options->request_id[0])
        return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                              "request_id names a new upload; a resume names its job "
                              "(resume_import_id) and takes none");
      return resume_begin(up, ctx, req->options, error);
    }
    return upload_begin(up, ctx, req->options, error);
  }
  if (req->payload_case != FZIP__V1__UPLOAD_IMPORT_REQUEST__PAYLOAD_CHUNK)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "options may only be sent once, in the first message");
  /* A replay's bytes count against the same limits as a first upload's,
   * or a replayed stream could be fed forever. */
  if (req->chunk.len > (uint64_t)up->svc->opts.max_upload_bytes - up->received)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "upload exceeds the limit of %" PRId64 " bytes",
                          up->svc->opts.max_upload_bytes);
  if (up->expected_size > 0 && up->received + req->chunk.len > (uint64_t)up->expected_size)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "upload is larger than the announced expected_size %" PRId64,
                          up->expected_size);
  if (up->replay) {
    up->received += req->chunk.len; /* the first call's job has the package: read, not stored */
    return true;
  }
  /* Fault tests fail an upload mid-way here (the server refusing it). */
  if (!fzip_failpoint("import.upload_chunk", error) ||
      !store_blob_writer_write(up->writer, req->chunk.data, req->chunk.len, error))
    return false;
  up->received += req->chunk.len;
  fzip_metric_add(FZIP_METRIC_IMPORT_BYTES, NULL, (double)req->chunk.len);
  return save_received(up, error);
}

static bool upload_recv(rpc_ctx_t *ctx, void **state, const ProtobufCMessage *msg,
                        fzip_error_t *error) {
  upload_t *up = *state;

  if (!up) {
    up = calloc(1, sizeof *up);
    if (!up)
      return fzip_error_oom(error, NULL);
    up->svc = rpc_ctx_method_data(ctx);
    *state = up;
  }
  if (upload_recv_step(up, ctx, (const void *)msg, error))
    return true;
  up->refused = true;
  return false;
}

/* Waits up to UPLOAD_GONE_WAIT_MS for the call's cancel: true if the
 * client went away rather than half-closed. */
static bool client_went_away(rpc_ctx_t *ctx) {
  /* Bounded by the clock, not a count of sleeps (they stretch under load). */
  int64_t until = fzip_monotonic_ms() + UPLOAD_GONE_WAIT_MS;

  while (!rpc_ctx_is_cancelled(ctx) && fzip_monotonic_ms() < until)
    fzip_sleep_ms(UPLOAD_GONE_POLL_MS);
  return rpc_ctx_is_cancelled(ctx);
}

static bool upload_finish_step(rpc_ctx_t *ctx, upload_t *up, ProtobufCMessage **resp,
                               fzip_error_t *error) {
  svc_import_t *svc = up ? up->svc : rpc_ctx_method_data(ctx);
  store_blob_info_t info;
  ProtobufCMessage *view = NULL;

  if (!up)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "UploadImport received no message");
  if (up->replay) {
    fzip_log(FZIP_LOG_INFO, "import", "upload request replayed; its bytes were not stored",
             "import", up->replay->job_id, "user", up->replay->user_id, NULL);
    if (!svc_jobs_unpack(&view, &svc->base, ctx, up->replay, error))
      return false;
    return svc_jobs_reply(resp, ctx, &fzip__v1__upload_import_response__descriptor, view, error);
  }
  if (up->received == 0)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "UploadImport received no package bytes");
  /* A stream short of expected_size is either a client that half-closed
   * too early (refused below: DATA_LOSS, nothing kept) or one that died:
   * gRPC reports a dead peer's stream as a half-close too, and its cancel
   * follows at once.  The dead one's bytes are kept for a resume. */
  if (up->expected_size > 0 && up->received < (uint64_t)up->expected_size &&
      client_went_away(ctx)) {
    if (!up->owns_job || !upload_keep(up))
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS,
                            "received %" PRIu64 " bytes but expected_size is %" PRId64,
                            up->received, up->expected_size);
    up->kept = true;
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "upload of import %s ended after %" PRIu64 " of %" PRId64
                          " bytes; they are kept: resume from offset %" PRIu64,
                          up->rec->job_id, up->received, up->expected_size, up->received);
  }
  if (!store_blob_writer_commit(up->writer, &info, error))
    return false;
  store_blob_writer_destroy(up->writer);
  up->writer = NULL;
  if (up->expected_size > 0 && info.size != (uint64_t)up->expected_size)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS,
                          "received %" PRIu64 " bytes but expected_size is %" PRId64,
                          info.size, up->expected_size);
  if (up->expected_sha256[0] && strcmp(info.sha256, up->expected_sha256) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_DATA_LOSS,
                          "received bytes have sha256 %s but expected_sha256 is %s",
                          info.sha256, up->expected_sha256);
  up->job->package_size = (int64_t)info.size;
  up->job->received_bytes = (int64_t)info.size;
  if (!job_msg_set_str(&up->job->package_sha256, info.sha256) ||
      !import_set_phase(up->job, up->start ? IMPORT_PHASE_QUEUED : IMPORT_PHASE_UPLOADED) ||
      !job_msg_add_event(&up->job->base, "uploaded", "package stored", JOB_EVENTS_MAX))
    return fzip_error_oom(error, NULL);
  if (up->start && !job_set_status(&up->job->base, &import_job_kind, S(VALIDATING), error))
    return false;
  up->job->updated_at = fzip_now_ms();
  up->rec->runnable = up->start;
  up->rec->expires_at = up->job->updated_at + svc->opts.retention_ms;
  if (!store_record(svc->env.store, up->rec, up->job, false, error))
    return false;
  up->done = true;
  if (up->resumed) {
    char part[JOB_BLOB_ID_MAX];
    fzip_error_t err;
    part_blob_id(part, up->rec->job_id);
    if (!store_blob_delete(svc->env.store, STORE_BUCKET_PACKAGES, part, &err))
      fzip_log(FZIP_LOG_WARN, "import", "could not delete a resume prefix; expiry will", "import",
               up->rec->job_id, "error", err.message, NULL);
  }
  if (up->start)
    job_runner_notify(svc->base.runner);
  fzip_log(FZIP_LOG_INFO, "import", "package uploaded", "import", up->job->import_id, "user",
           up->rec->user_id, "sha256", info.sha256, NULL);
  if (!svc_jobs_unpack(&view, &svc->base, ctx, up->rec, error))
    return false;
  return svc_jobs_reply(resp, ctx, &fzip__v1__upload_import_response__descriptor, view, error);
}

static bool upload_finish(rpc_ctx_t *ctx, void *state, ProtobufCMessage **resp,
                          fzip_error_t *error) {
  upload_t *up = state;
  if (upload_finish_step(ctx, up, resp, error))
    return true;
  if (up)
    up->refused = true;
  return false;
}

/* Refused by the server: nothing is kept (a resumed upload goes back to
 * the prefix it held before the call).  Broken from outside (the call
 * was cancelled: client gone, deadline, shutdown) with bytes received and
 * the writer still open: they are kept for a resume. */
static void upload_close(rpc_ctx_t *ctx, void *state) {
  upload_t *up = state;

  if (!up)
    return;
  if (!up->done && !up->kept && up->owns_job) {
    bool keep = !up->refused && up->writer && up->received > 0 && rpc_ctx_is_cancelled(ctx);
    if (!(keep && upload_keep(up)) && !(up->resumed && resume_release(up)))
      upload_discard(up);
  }
  store_blob_writer_destroy(up->writer); /* uncommitted: deletes what it wrote */
  store_job_destroy(up->rec);
  store_job_destroy(up->replay);
  if (up->job)
    fzip__v1__import_job__free_unpacked(up->job, NULL);
  free(up);
}

static const rpc_client_stream_ops_t upload_ops = {upload_recv, upload_finish, upload_close};

/* ---- StartImport ------------------------------------------------------ */

/* A job may start (again) when it is not running and its upload is
 * whole: not VALIDATING, PROCESSING or COMPLETED, and not receiving or
 * interrupted. */
static bool can_start(const import_job_t *job) {
  import_phase_t phase = import_phase_of(job);
  return job->status != S(VALIDATING) &&
         job_status_allowed(&import_job_kind, job->status, S(VALIDATING)) &&
         phase != IMPORT_PHASE_RECEIVING && phase != IMPORT_PHASE_INTERRUPTED;
}

/* Resets a job for a new run with the given options. */
/* A job queued for a new run: no error from the last one, phase queued,
 * an event saying who asked. */
static bool queue_again(import_job_t *job, const char *event, const char *message,
                        fzip_error_t *error) {
  if (job->error) {
    fzip__v1__job_error__free_unpacked(job->error, NULL);
    job->error = NULL;
  }
  if (!import_set_phase(job, IMPORT_PHASE_QUEUED) ||
      !job_msg_add_event(&job->base, event, message, JOB_EVENTS_MAX))
    return fzip_error_oom(error, NULL);
  return true;
}

static bool reset_for_start(import_job_t *job, const Fzip__V1__StartImportRequest *req,
                            fzip_error_t *error) {
  if (!job_set_status(&job->base, &import_job_kind, S(VALIDATING), error))
    return false;
  job->merge_strategy = req->merge_strategy == FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_UNSPECIFIED
                            ? FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_FAIL_ON_CONFLICT
                            : req->merge_strategy;
  job->validate_only = req->validate_only;
  if (!import_map_set_options(&job->restore, req->restore, error))
    return false;
  job->progress = 0;
  job->items_done = 0;
  job->started_at = 0;
  job->completed_at = 0;
  if (job->validation) {
    fzip__v1__validation_summary__free_unpacked(job->validation, NULL);
    job->validation = NULL;
  }
  if (job->result) {
    fzip__v1__import_result__free_unpacked(job->result, NULL);
    job->result = NULL;
  }
  return queue_again(job, "started", "import requested", error);
}

/* How StartImport and UndoImport change the job they name: `edit` checks
 * the job (FAILED_PRECONDITION) and sets it up for its new run; the reply
 * is a message `reply` whose "job" is what was stored. */
typedef struct {
  bool (*edit)(import_job_t *job, const ProtobufCMessage *req, fzip_error_t *error);
  const ProtobufCMessageDescriptor *reply;
} job_change_t;

/* One attempt: load, edit, make it runnable again and save it
 * version-checked (ABORTED: changed meanwhile), wake a worker, reply. */
static bool change_once(ProtobufCMessage **resp, svc_import_t *svc, rpc_ctx_t *ctx,
                        const ProtobufCMessage *req, const char *import_id,
                        const job_change_t *change, fzip_error_t *error) {
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL, *view = NULL;
  import_job_t *job = NULL;
  bool ok = false;

  if (!svc_jobs_load(&view, &rec, &svc->base, ctx, import_id, error))
    return false;
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__import_job__descriptor, NULL, error))
    goto done;
  job = (import_job_t *)msg;
  if (!change->edit(job, req, error))
    goto done;
  rec->runnable = true;
  rec->expires_at = 0; /* set again when the run ends */
  if (!store_record(svc->env.store, rec, job, true, error))
    goto done;
  job_runner_notify(svc->base.runner);
  if (!svc_jobs_unpack(&view, &svc->base, ctx, rec, error))
    goto done;
  ok = svc_jobs_reply(resp, ctx, change->reply, view, error);
done:
  if (msg)
    protobuf_c_message_free_unpacked(msg, NULL);
  store_job_destroy(rec);
  return ok;
}

/* change_once again while it loses a race with another change (ABORTED),
 * JOB_UPDATE_RETRIES times at most. */
static bool change_job(ProtobufCMessage **resp, svc_import_t *svc, rpc_ctx_t *ctx,
                       const ProtobufCMessage *req, const char *import_id,
                       const job_change_t *change, fzip_error_t *error) {
  for (int attempt = 0; attempt < JOB_UPDATE_RETRIES; attempt++) {
    if (change_once(resp, svc, ctx, req, import_id, change, error))
      return true;
    if (error->code != FZIP_ERR_ABORTED)
      return false;
    job_update_backoff(attempt);
  }
  return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                        "import %s changed too often; try again", import_id);
}

static bool start_edit(import_job_t *job, const ProtobufCMessage *req, fzip_error_t *error) {
  if (!can_start(job))
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "import %s is %s and cannot be started", job->import_id,
                          status_name((int)job->status));
  return reset_for_start(job, (const Fzip__V1__StartImportRequest *)req, error);
}

static const job_change_t start_change = {start_edit,
                                          &fzip__v1__start_import_response__descriptor};

static bool start_import(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                         fzip_error_t *error) {
  svc_import_t *svc = rpc_ctx_method_data(ctx);
  const Fzip__V1__StartImportRequest *req = (const void *)msg;

  if (req->merge_strategy < 0 ||
      req->merge_strategy > FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_MERGE_FIELDS)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "unknown merge_strategy %d", (int)req->merge_strategy);
  if (!check_restore(ctx, req->restore, error))
    return false;
  return change_job(resp, svc, ctx, msg, req->import_id, &start_change, error);
}

/* ---- UndoImport ------------------------------------------------------- */

/* COMPLETED (within its window) -> UNDOING, queued for a worker
 * (import_run.c's run_undo). */
static bool undo_edit(import_job_t *job, const ProtobufCMessage *req, fzip_error_t *error) {
  (void)req;
  if (!import_undo_allowed(job, fzip_now_ms(), error) ||
      !job_set_status(&job->base, &import_job_kind, S(UNDOING), error))
    return false;
  return queue_again(job, "undo_requested", "undo requested", error);
}

static const job_change_t undo_change = {undo_edit,
                                         &fzip__v1__undo_import_response__descriptor};

static bool undo_import(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                        fzip_error_t *error) {
  const Fzip__V1__UndoImportRequest *req = (const void *)msg;

  if (!change_job(resp, rpc_ctx_method_data(ctx), ctx, msg, req->import_id, &undo_change,
                  error))
    return false;
  fzip_log(FZIP_LOG_INFO, "import", "undo requested", "import", req->import_id, NULL);
  return true;
}

/* ---- expiry ----------------------------------------------------------- */

bool svc_import_expire(void *ctx, store_job_t *job, int64_t now_ms, bool *handled,
                       fzip_error_t *error) {
  svc_import_t *svc = ctx;

  *handled = false;
  if (job->kind == STORE_JOB_IMPORT &&
      !import_undo_expire(svc->env.store, job, now_ms, svc->opts.retention_ms, handled, error))
    return false;
  return *handled || svc_jobs_expire(ctx, job, now_ms, handled, error);
}

/* ---- lifecycle -------------------------------------------------------- */

/* The methods only this service answers; svc_jobs answers the rest. */
static const svc_jobs_own_t import_own[SVC_JOBS_OWN] = {
    {"UploadImport", RPC_CLIENT_STREAMING, NULL, NULL, &upload_ops},
    {"StartImport", RPC_UNARY, start_import, NULL, NULL},
    {"UndoImport", RPC_UNARY, undo_import, NULL, NULL},
};

bool svc_import_new(svc_import_t **out, store_t *store, const svc_import_options_t *options,
                    fzip_error_t *error) {
  svc_import_t *svc = calloc(1, sizeof *svc);
  job_runner_options_t ro = {0};

  *out = NULL;
  if (!svc)
    return fzip_error_oom(error, NULL);
  if (options)
    svc->opts = *options;
  if (svc->opts.max_upload_bytes <= 0)
    svc->opts.max_upload_bytes = SVC_IMPORT_DEFAULT_MAX_UPLOAD;
  if (svc->opts.retention_ms <= 0)
    svc->opts.retention_ms = DEFAULT_RETENTION_MS;
  if (svc->opts.upload_timeout_ms <= 0)
    svc->opts.upload_timeout_ms = DEFAULT_UPLOAD_TIMEOUT_MS;
  if (svc->opts.workers <= 0)
    svc->opts.workers = DEFAULT_WORKERS;
  svc->env.store = store;
  svc->env.retention_ms = svc->opts.retention_ms;
  svc->env.undo_window_ms = svc->opts.undo_window_ms > 0 ? svc->opts.undo_window_ms : 0;
  svc->env.batch_bytes = svc->opts.batch_bytes > 0 ? (size_t)svc->opts.batch_bytes : 0;
  svc->env.temp_dir = svc->opts.temp_dir;
  ro.workers = svc->opts.workers;
  ro.lease_ms = svc->opts.lease_ms;
  ro.poll_ms = svc->opts.poll_ms;
  ro.owner = svc->opts.owner;
  ro.run = import_run;
  ro.data = &svc->env;
  if (!svc_jobs_base_init(&svc->base, &import_job_kind, store, svc->opts.retention_ms,
                          &fzip__v1__import_service__descriptor, import_own, &ro,
                          error)) {
    free(svc);
    return false;
  }
  svc->base.max_queued = svc->opts.max_queued_per_user;
  *out = svc;
  return true;
}

void svc_import_destroy(svc_import_t *svc) {
  if (!svc)
    return;
  svc_jobs_base_fini(&svc->base);
  free(svc);
}

const rpc_method_t *const *svc_import_methods(svc_import_t *svc, size_t *n) {
  *n = svc->base.n_rows;
  return svc->base.row_ptrs;
}
