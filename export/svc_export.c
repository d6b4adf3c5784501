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
#include "job_kind.h"
#include "jobs.h"
#include "pkg_seal.h"
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
};

typedef Fzip__V1__ExportJob export_job_t;

#define S(name) FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_##name
#define TO(name) JOB_STATUS_BIT(S(name))
/* Which status may follow which.  A worker moves a job through the
 * running states (a resumed job starts over at COLLECTING_DATA); a job
 * ends COMPLETED, FAILED or CANCELLED, and a completed one EXPIRED. */
#define RUNNING_NEXT                                                                        \
  (TO(COLLECTING_DATA) | TO(BUILDING_PACKAGE) | TO(UPLOADING) | TO(COMPLETED) | TO(FAILED) | \
   TO(CANCELLED))
static const uint32_t export_next[] = {
    [S(UNSPECIFIED)] = TO(INITIATED),
    [S(INITIATED)] = TO(COLLECTING_DATA) | TO(FAILED) | TO(CANCELLED),
    [S(COLLECTING_DATA)] = RUNNING_NEXT,
    [S(BUILDING_PACKAGE)] = RUNNING_NEXT,
    [S(UPLOADING)] = RUNNING_NEXT,
    [S(COMPLETED)] = TO(EXPIRED),
    [S(FAILED)] = 0,
    [S(EXPIRED)] = 0,
    [S(CANCELLED)] = 0,
};
#undef RUNNING_NEXT
#undef TO

/* ---- small helpers ---------------------------------------------------- */

static bool is_terminal(int status) {
  return status == S(COMPLETED) || status == S(FAILED) || status == S(EXPIRED) ||
         status == S(CANCELLED);
}

static bool cancel_now(int status) {
  (void)status; /* nothing is written to the user's data: any status may end at once */
  return true;
}

/* What a client sees: a completed export past its expiry reads EXPIRED
 * even before the reaper got to it. */
static void apply_view(ProtobufCMessage *msg, int64_t now) {
  export_job_t *job = (export_job_t *)msg;
  if (job->status == S(COMPLETED) && job->expires_at > 0 && now >= job->expires_at)
    job->status = S(EXPIRED);
}

const job_kind_t export_job_kind = {
    .kind = STORE_JOB_EXPORT,
    .noun = "export",
    .id_field = "export_id",
    .job = &fzip__v1__export_job__descriptor,
    .status = &fzip__v1__export_status__descriptor,
    .next = export_next,
    .n_status = (int)(sizeof export_next / sizeof export_next[0]),
    .blob_prefix = "export-",
    .part_suffix = NULL,
    .blob_status = S(COMPLETED),
    .cancelled_status = S(CANCELLED),
    .failed_status = S(FAILED),
    .expired_status = S(EXPIRED),
    .expired_from = S(COMPLETED),
    .cancel_now = cancel_now,
    .cancel_now_message = "cancelled before a worker started it",
    .cancel_refused = "already ended",
    .delete_running = true,
    .delete_refused = NULL,
    .view = apply_view,
    .is_terminal = is_terminal,
};

static const char *status_name(int status) { return job_status_name(&export_job_kind, status); }

static bool set_str(char **field, const char *value) { return job_msg_set_str(field, value); }

static bool add_event(export_job_t *job, const char *type, const char *message) {
  return job_msg_add_event(&job->base, type, message, JOB_EVENTS_MAX);
}

static bool set_error(export_job_t *job, const fzip_error_t *err, const char *phase) {
  return job_msg_set_error(&job->base, err, phase);
}

/* The record body: it names the package blob once the job completed. */
static bool build_body(bson_t *body, const export_job_t *job, fzip_error_t *error) {
  return job_kind_body(body, &export_job_kind, &job->base, false, error);
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
  sel->include_csv = job->include_csv;
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

/* The recipients of an encrypted export, from the request or the job
 * record: 1..PKGS_STANZAS_MAX of them, each a 32-byte X25519 public key,
 * a passphrase one with a 16-byte salt and Argon2id limits in bounds.
 * *n = 0 when `enc` is NULL (a plain package). */
static bool seal_recipients(pkgs_recipient_t out[PKGS_STANZAS_MAX], size_t *n,
                            const Fzip__V1__EncryptionOptions *enc, fzip_error_t *error) {
  *n = 0;
  if (!enc)
    return true;
  if (enc->n_recipients == 0 || enc->n_recipients > PKGS_STANZAS_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "encryption needs 1 to %d recipients", PKGS_STANZAS_MAX);
  for (size_t i = 0; i < enc->n_recipients; i++) {
    const Fzip__V1__EncryptionRecipient *r = enc->recipients[i];
    fzip_error_t why = {0};
    memset(&out[i], 0, sizeof out[i]);
    if (r->x25519_public_key.len != PKGS_KEY_LEN ||
        (r->passphrase_salt.len != 0 && r->passphrase_salt.len != PKGS_SALT_LEN))
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                            "encryption recipient %zu: a %d-byte public key and an empty or "
                            "%d-byte salt", i, PKGS_KEY_LEN, PKGS_SALT_LEN);
    memcpy(out[i].public_key, r->x25519_public_key.data, PKGS_KEY_LEN);
    out[i].type = r->passphrase_salt.len ? PKGS_STANZA_PASSPHRASE : PKGS_STANZA_X25519;
    if (r->passphrase_salt.len)
      memcpy(out[i].salt, r->passphrase_salt.data, PKGS_SALT_LEN);
    out[i].opslimit = r->argon2_opslimit;
    out[i].memlimit = r->argon2_memlimit;
    if (!pkgs_recipient_check(&out[i], &why))
      return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                            "encryption recipient %zu: %s", i, why.message);
  }
  *n = enc->n_recipients;
  return true;
}

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

static void increment_of(export_job_t *job, const export_job_t *base);

/* The new job as the worker will find it; strings point into `req` and
 * stack buffers, so it is only packed, never freed.  *existing instead
 * when a simultaneous call with the same request_id created its job first. */
static bool create_record(store_job_t **out, store_job_t **existing, svc_export_t *svc,
                          rpc_ctx_t *ctx, const Fzip__V1__CreateExportRequest *req,
                          const export_job_t *base, const char *schedule_id,
                          const svc_jobs_request_t *idem, uint64_t items, fzip_error_t *error) {
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
  if (!job_set_status(&job.base, &export_job_kind, S(INITIATED), error))
    return false;
  job.current_phase = "queued";
  job.export_type = req->export_type == FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_UNSPECIFIED
                        ? FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_COMPLETE
                        : req->export_type;
  job.include_analytics = req->include_analytics;
  job.include_csv = req->include_csv;
  job.encryption = req->encryption;
  job.description = req->description;
  job.filters = req->filters;
  job.created_at = job.updated_at = now;
  job.items_total = (int64_t)items;
  job.estimated_size_bytes = (int64_t)(items * EST_BYTES_PER_ITEM);
  job.estimated_completion_at = now + 1000 + (int64_t)(items * 1000 / EST_ITEMS_PER_SEC);
  job.pinned_timestamp = req->pinned_timestamp;
  job.schedule_id = (char *)(schedule_id ? schedule_id : "");
  if (base)
    increment_of(&job, base);
  ev.type = "initiated";
  ev.at = now;
  ev.message = "export requested";
  job.n_events = 1;
  job.events = evs;

  rec = store_job_new();
  if (!rec)
    return fzip_error_oom(error, NULL);
  snprintf(rec->job_id, sizeof rec->job_id, "%s", id);
  snprintf(rec->user_id, sizeof rec->user_id, "%s", idem->user_id);
  rec->kind = STORE_JOB_EXPORT;
  rec->created_at = rec->updated_at = now;
  rec->runnable = true;
  if (!build_body(rec->body, &job, error))
    goto done;
  if (!svc_jobs_create(existing, &svc->base, ctx, rec, idem, error))
    goto done;
  if (!*existing) {
    job_count_created(&job.base, &export_job_kind);
    *out = rec;
    rec = NULL;
  }
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

/* What makes two CreateExport calls the same request: every field but
 * request_id, export_type's default filled in.  ctx NULL: user_id's. */
static bool request_of(svc_jobs_request_t *idem, rpc_ctx_t *ctx, const char *user_id,
                       const Fzip__V1__CreateExportRequest *req, fzip_error_t *error) {
  Fzip__V1__CreateExportRequest params = *req;
  params.request_id = "";
  if (params.export_type == FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_UNSPECIFIED)
    params.export_type = FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_COMPLETE;
  if (ctx)
    return svc_jobs_request_init(idem, ctx, req->request_id, &params.base, error);
  return svc_jobs_request_init_user(idem, user_id, req->request_id, &params.base, error);
}

/* ---- incremental exports: the base ------------------------------------ */

static bool bad_base(rpc_ctx_t *ctx, fzip_error_t *error) {
  if (ctx)
    rpc_ctx_add_violation(ctx, "incremental_base_id", error->message);
  return false;
}

/* Whether two optional messages pack to the same bytes (NULL as empty). */
static bool same_message(const ProtobufCMessage *a, const ProtobufCMessage *b) {
  size_t na = a ? protobuf_c_message_get_packed_size(a) : 0;
  size_t nb = b ? protobuf_c_message_get_packed_size(b) : 0;
  uint8_t *pa = NULL, *pb = NULL;
  bool same = false;

  if (na != nb)
    return false;
  if (na == 0)
    return true;
  pa = malloc(na);
  pb = malloc(nb);
  if (pa && pb) {
    protobuf_c_message_pack(a, pa);
    protobuf_c_message_pack(b, pb);
    same = memcmp(pa, pb, na) == 0;
  }
  free(pa);
  free(pb);
  return same;
}

/* The request's selection must be unset or the base's: an increment has
 * its base's export_type, filters and include_analytics. */
static bool check_same_selection(rpc_ctx_t *ctx, const Fzip__V1__CreateExportRequest *req,
                                 const export_job_t *base, fzip_error_t *error) {
  const char *what = NULL;

  if (req->export_type != FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_UNSPECIFIED &&
      req->export_type != base->export_type)
    what = "export_type";
  else if (req->include_analytics && !base->include_analytics)
    what = "include_analytics";
  else if (req->filters &&
           !same_message(&req->filters->base, base->filters ? &base->filters->base : NULL))
    what = "filters";
  if (!what)
    return true;
  fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                 "%s differs from base export %s's: an increment has its base's export_type, "
                 "filters and include_analytics (leave them unset)",
                 what, base->export_id);
  if (ctx)
    rpc_ctx_add_violation(ctx, what, error->message);
  return false;
}

/* The base of an incremental export: the user's (else NOT_FOUND), COMPLETED
 * and not expired, its chain short enough.  *base is malloc-unpacked. */
static bool load_base(export_job_t **base, svc_export_t *svc, rpc_ctx_t *ctx, const char *user_id,
                      const Fzip__V1__CreateExportRequest *req, fzip_error_t *error) {
  const char *id = req->incremental_base_id;
  store_job_t *rec = NULL;
  ProtobufCMessage *msg = NULL;
  export_job_t *b = NULL;
  bool ok = false;

  *base = NULL;
  if (req->include_csv) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                   "include_csv is not offered for an incremental export (its tables would "
                   "hold only the changes); make a complete export for CSV");
    if (ctx)
      rpc_ctx_add_violation(ctx, "include_csv", error->message);
    return false;
  }
  if (!fzip_id_is_valid(id)) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                   "incremental_base_id is not a valid export id");
    fzip_error_set_reason(error, "INVALID_JOB_ID");
    return bad_base(ctx, error);
  }
  if (!store_job_get(&rec, svc->store, STORE_JOB_EXPORT, user_id, id, error)) {
    if (error->code == FZIP_ERR_NOT_FOUND) {
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_NOT_FOUND,
                     "base export %s not found", id);
      fzip_error_set_reason(error, "JOB_NOT_FOUND");
    }
    return false;
  }
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__export_job__descriptor, NULL, error))
    goto done;
  b = (export_job_t *)msg;
  apply_view(msg, fzip_now_ms());
  if (b->status != S(COMPLETED)) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                   "base export %s is %s: an increment needs a completed export whose "
                   "package is still stored",
                   id, status_name(b->status));
    bad_base(ctx, error);
    goto done;
  }
  if (b->chain_length >= EXPORT_CHAIN_MAX) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                   "base export %s ends a chain of %d increments, the most one complete "
                   "export may have (EXPORT_CHAIN_MAX); make a complete export",
                   id, (int)b->chain_length);
    bad_base(ctx, error);
    goto done;
  }
  if (!check_same_selection(ctx, req, b, error))
    goto done;
  *base = b;
  msg = NULL;
  ok = true;
done:
  protobuf_c_message_free_unpacked(msg, NULL);
  store_job_destroy(rec);
  return ok;
}

/* A new job becomes an increment on `base`: its selection is the base's
 * (pointers into base, only packed). */
static void increment_of(export_job_t *job, const export_job_t *base) {
  job->export_type = base->export_type;
  job->include_analytics = base->include_analytics;
  job->filters = base->filters;
  job->base_export_id = base->export_id;
  job->base_sha256 = base->package_sha256;
  job->base_change_seq = base->change_seq;
  job->chain_length = base->chain_length + 1;
}

bool svc_export_create(store_job_t **out, bool *replayed, svc_export_t *svc, rpc_ctx_t *ctx,
                       const char *user_id, const Fzip__V1__CreateExportRequest *req,
                       const char *schedule_id, fzip_error_t *error) {
  export_job_t probe = FZIP__V1__EXPORT_JOB__INIT;
  export_job_t *base = NULL;
  pkg_incremental_t inc = {0};
  pkg_selection_t sel;
  svc_jobs_request_t idem;
  pkgs_recipient_t recipients[PKGS_STANZAS_MAX];
  size_t n_recipients = 0;
  uint64_t items = 0;
  store_job_t *rec = NULL, *existing = NULL;
  bool ok = false;

  *out = NULL;
  *replayed = false;
  if (ctx)
    user_id = rpc_ctx_user_id(ctx);
  probe.export_type = req->export_type;
  probe.include_analytics = req->include_analytics;
  probe.include_csv = req->include_csv;
  probe.filters = req->filters;
  if (req->pinned_timestamp < 0)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "pinned_timestamp must be a positive epoch-ms time");
  if (!check_description(req->description, error) || !selection_from_job(&sel, &probe, error) ||
      !seal_recipients(recipients, &n_recipients, req->encryption, error) ||
      !request_of(&idem, ctx, user_id, req, error))
    return false;
  /* A replay answers with the first call's job before any counting. */
  if (!svc_jobs_admit(&existing, &svc->base, ctx, &idem, true, error))
    return false;
  if (existing) {
    fzip_log(FZIP_LOG_INFO, "export", "export request replayed", "export", existing->job_id,
             "user", existing->user_id, NULL);
    *out = existing;
    *replayed = true;
    return true;
  }
  if (req->incremental_base_id && req->incremental_base_id[0]) {
    if (!load_base(&base, svc, ctx, user_id, req, error))
      goto done;
    increment_of(&probe, base);
    if (!selection_from_job(&sel, &probe, error))
      goto done;
    inc.base_change_seq = base->change_seq;
    inc.chain_length = probe.chain_length;
    sel.incremental = &inc;
  }
  if (!export_source_count(&items, svc->store, user_id, &sel, error) ||
      !create_record(&rec, &existing, svc, ctx, req, base, schedule_id, &idem, items, error))
    goto done;
  if (existing) {
    rec = existing;
    *replayed = true;
    fzip_log(FZIP_LOG_INFO, "export", "export request replayed", "export", rec->job_id,
             "user", rec->user_id, NULL);
  } else {
    job_runner_notify(svc->base.runner);
    fzip_log(FZIP_LOG_INFO, "export", "export created", "export", rec->job_id, "user",
             rec->user_id, "base", base ? base->export_id : "", "schedule",
             schedule_id ? schedule_id : "", NULL);
  }
  *out = rec;
  ok = true;
done:
  if (base)
    protobuf_c_message_free_unpacked(&base->base, NULL);
  return ok;
}

static bool create_export(rpc_ctx_t *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp,
                          fzip_error_t *error) {
  svc_export_t *svc = rpc_ctx_method_data(ctx);
  const Fzip__V1__CreateExportRequest *req = (const void *)msg;
  store_job_t *rec = NULL;
  Fzip__V1__CreateExportResponse *out = NULL;
  bool replayed = false, ok = false;

  if (!svc_export_create(&rec, &replayed, svc, ctx, rpc_ctx_user_id(ctx), req, NULL, error))
    return false;
  out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  fzip__v1__create_export_response__init(out);
  if (!job_for_reply(&out->job, ctx, svc, rec, error))
    goto done;
  *resp = &out->base;
  ok = true;
done:
  store_job_destroy(rec);
  return ok;
}

/* ---- DownloadExport --------------------------------------------------- */

/* The suggested file name: "fzip-export-<id>.fzip", with room to spare. */
#define DOWNLOAD_FILE_NAME_AFFIX_MAX 32
#define DOWNLOAD_FILE_NAME_MAX (FZIP_ID_MAX + DOWNLOAD_FILE_NAME_AFFIX_MAX)

typedef struct {
  store_blob_reader_t *reader;
  size_t chunk;
  bool info_sent;
  Fzip__V1__DownloadInfo info; /* strings malloc'd */
  char sha256[FZIP_SHA256_HEX_LEN + 1];
  char file_name[DOWNLOAD_FILE_NAME_MAX];
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
  char blob[JOB_BLOB_ID_MAX];
  bool ok = false;

  if (req->chunk_size < 0 || req->chunk_size > SVC_EXPORT_CHUNK_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INVALID_ARGUMENT,
                          "chunk_size must be between 0 and %d", SVC_EXPORT_CHUNK_MAX);
  if (!load(&view, &rec, svc, ctx, req->export_id, error) ||
      !download_check(rec, view, req->offset, error))
    goto done;
  st = calloc(1, sizeof *st);
  if (!st) {
    fzip_error_oom(error, NULL);
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
  job_blob_id(blob, &export_job_kind, rec->job_id);
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
  size_t got = 0, want;

  if (!out)
    return fzip_error_oom(error, NULL);
  fzip__v1__download_export_response__init(out);
  if (!st->info_sent) {
    out->payload_case = FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_INFO;
    out->info = &st->info;
    st->info_sent = true;
    *msg = &out->base;
    return true;
  }
  /* A reused buffer that gRPC sends uncopied; the arena if none is free. */
  buf = rpc_ctx_payload(ctx, st->chunk);
  if (!buf)
    buf = rpc_ctx_alloc(ctx, st->chunk);
  if (!buf)
    return fzip_error_oom(error, NULL);
  /* A message ends where a stored chunk does (chunk_size is a hint), so
   * that every chunk is read straight into it; a loop, as backends may
   * return short reads at chunk borders. */
  want = store_blob_reader_fit(st->reader, st->chunk);
  while (got < want) {
    size_t n = 0;
    if (!store_blob_reader_read(st->reader, buf + got, want - got, &n, error))
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

/* The phase a running export reports is the package writer's
 * (pkg_phase_name: "counting", "data", ...); the ends have their own
 * names ("queued", "completed", ...), which are no writer phase. */
#define PHASE_NONE (-1)

typedef struct {
  job_ctx_t *jctx;
  export_job_t *job;
  int phase;               /* pkg_phase_t of job->current_phase, or PHASE_NONE */
  fzip_error_t save_error; /* first failed save during the build */
  bool stop;
} run_state_t;

/* The writer phase a stored phase name stands for (a resumed job). */
static int phase_of(const char *name) {
  for (int p = PKG_PHASE_COUNTING; p <= PKG_PHASE_DONE; p++) {
    if (name && strcmp(name, pkg_phase_name((pkg_phase_t)p)) == 0)
      return p;
  }
  return PHASE_NONE;
}

static bool save_job(run_state_t *rs, bool force) {
  rs->job->updated_at = fzip_now_ms();
  if (job_ctx_save_job(rs->jctx, &export_job_kind, &rs->job->base, force, &rs->save_error))
    return true;
  rs->stop = true;
  return false;
}

static void set_phase(run_state_t *rs, int status, pkg_phase_t phase) {
  if ((int)rs->job->status != status || rs->phase != (int)phase) {
    if (!job_set_status(&rs->job->base, &export_job_kind, status, &rs->save_error)) {
      rs->stop = true;
      return;
    }
    if (!set_str(&rs->job->current_phase, pkg_phase_name(phase))) {
      fzip_error_oom(&rs->save_error, NULL);
      rs->stop = true;
      return;
    }
    rs->phase = (int)phase;
    save_job(rs, true);
  }
}

static void on_progress(void *arg, const pkg_progress_t *p) {
  run_state_t *rs = arg;
  int status = S(COLLECTING_DATA);
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
  case PKG_PHASE_COMPRESSING: /* pkg_write_file's; an export streams */
  case PKG_PHASE_UPLOADING:   /* the zip is written into the blob as it is made */
    status = S(UPLOADING);
    pct = 70 + (int)(29.0 * (p->fraction < 0 ? 0 : p->fraction > 1 ? 1 : p->fraction));
    break;
  case PKG_PHASE_DONE:
    status = S(UPLOADING);
    pct = 99;
    break;
  }
  rs->job->items_done = (int64_t)p->items_done;
  rs->job->progress = job_progress_clamp(rs->job->progress, pct);
  set_phase(rs, status, p->phase);
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
                       int64_t record_expires_at, fzip_error_t *error) {
  return job_ctx_end_job(rs->jctx, &export_job_kind, &rs->job->base, status, event, message,
                         fzip_now_ms(), record_expires_at, error);
}

static bool build_and_store(svc_export_t *svc, run_state_t *rs, const store_job_t *rec,
                            pkg_result_t *res, fzip_error_t *error) {
  pkg_selection_t sel;
  pkg_options_t opts = {0};
  pkg_incremental_t inc = {0};
  pkgs_recipient_t recipients[PKGS_STANZAS_MAX];
  export_seal_t seal = {.recipients = recipients};
  char blob[JOB_BLOB_ID_MAX];

  if (!selection_from_job(&sel, rs->job, error) ||
      !seal_recipients(recipients, &seal.n_recipients, rs->job->encryption, error))
    return false;
  if (rs->job->base_export_id && rs->job->base_export_id[0]) {
    inc.base_export_id = rs->job->base_export_id;
    inc.base_package_sha256 = rs->job->base_sha256;
    inc.base_change_seq = rs->job->base_change_seq;
    inc.chain_length = rs->job->chain_length;
    sel.incremental = &inc;
  }
  job_blob_id(blob, &export_job_kind, rs->job->export_id);
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
  if (!export_source_write_blob(res, svc->store, rec->user_id, &sel, &opts, &seal, blob, error)) {
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
  run_state_t rs = {.jctx = jctx, .phase = PHASE_NONE};
  pkg_result_t res;
  fzip_error_t err;
  char blob[JOB_BLOB_ID_MAX], public[FZIP_ERROR_MESSAGE_MAX];
  bool ok = false;
  int64_t now = fzip_now_ms();

  fzip_error_clear(&err);
  fzip_error_clear(&rs.save_error);
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__export_job__descriptor, NULL, error))
    return false;
  rs.job = (export_job_t *)msg;
  rs.phase = phase_of(rs.job->current_phase);
  job_blob_id(blob, &export_job_kind, rs.job->export_id);

  if (job_ctx_cancel_requested(jctx)) {
    ok = finish_job(&rs, S(CANCELLED), "cancelled", "cancelled before it started",
                    now + svc->opts.retention_ms, error);
    goto done;
  }
  if (!add_event(rs.job, rs.job->started_at ? "resumed" : "started",
                 job_ctx_owner(jctx))) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  if (!rs.job->started_at)
    rs.job->started_at = now;
  set_phase(&rs, S(COLLECTING_DATA), PKG_PHASE_COUNTING);

  if (!rs.stop && build_and_store(svc, &rs, rec, &res, &err)) {
    rs.job->package_size = (int64_t)res.package_size;
    rs.job->change_seq = res.change_seq;
    rs.job->progress = 100;
    rs.job->items_done = rs.job->items_total;
    if (!set_str(&rs.job->package_sha256, res.package_sha256) || !fill_summary(rs.job, &res)) {
      fzip_error_oom(error, NULL);
      goto done;
    }
    rs.job->expires_at = fzip_now_ms() + svc->opts.ttl_ms;
    ok = finish_job(&rs, S(COMPLETED), "completed", "package ready", rs.job->expires_at, error);
    if (!ok)
      /* Deleted or taken while finishing: don't leave the package behind. */
      store_blob_delete(svc->store, STORE_BUCKET_PACKAGES, blob, NULL);
    goto done;
  }
  if (!fzip_error_is_set(&err))
    err = rs.save_error;

  /* Stopped or failed. */
  switch (job_ctx_stop_reason(jctx, &err)) {
  case JOB_STOP_LEAVE:
    /* Shutdown: the job resumes elsewhere.  Lease lost / deleted: not ours
     * any more.  Either way nothing to finish here. */
    *error = err;
    goto done;
  case JOB_STOP_CANCEL:
    ok = finish_job(&rs, S(CANCELLED), "cancelled", "cancelled by the user",
                    fzip_now_ms() + svc->opts.retention_ms, error);
    goto done;
  case JOB_STOP_FAIL:
    break;
  }
  fzip_log(FZIP_LOG_WARN, "export", "export failed", "export", rs.job->export_id, "phase",
           rs.job->current_phase, "error", err.message, NULL);
  if (!set_error(rs.job, &err, rs.job->current_phase)) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  ok = finish_job(&rs, S(FAILED), "failed", job_public_message(public, sizeof public, &err),
                  fzip_now_ms() + svc->opts.retention_ms, error);
done:
  protobuf_c_message_free_unpacked(msg, NULL);
  return ok;
}

/* ---- lifecycle -------------------------------------------------------- */

/* The methods only this service answers; svc_jobs answers the rest. */
static const svc_jobs_own_t export_own[SVC_JOBS_OWN] = {
    {"CreateExport", RPC_UNARY, create_export, NULL, NULL},
    {"DownloadExport", RPC_SERVER_STREAMING, NULL, &download_ops, NULL},
};

bool svc_export_new(svc_export_t **out, store_t *store, const svc_export_options_t *options,
                    fzip_error_t *error) {
  svc_export_t *svc = calloc(1, sizeof *svc);
  job_runner_options_t ro = {0};

  *out = NULL;
  if (!svc)
    return fzip_error_oom(error, NULL);
  svc->store = store;
  if (options)
    svc->opts = *options;
  if (svc->opts.ttl_ms <= 0)
    svc->opts.ttl_ms = DEFAULT_TTL_MS;
  if (svc->opts.retention_ms <= 0)
    svc->opts.retention_ms = DEFAULT_RETENTION_MS;
  ro.workers = svc->opts.workers;
  ro.lease_ms = svc->opts.lease_ms;
  ro.poll_ms = svc->opts.poll_ms;
  ro.owner = svc->opts.owner;
  ro.run = run_export;
  ro.data = svc;
  if (!svc_jobs_base_init(&svc->base, &export_job_kind, store, svc->opts.retention_ms,
                          &fzip__v1__export_service__descriptor, export_own, &ro,
                          error)) {
    free(svc);
    return false;
  }
  svc->base.max_queued = svc->opts.max_queued_per_user;
  *out = svc;
  return true;
}

void svc_export_destroy(svc_export_t *svc) {
  if (!svc)
    return;
  svc_jobs_base_fini(&svc->base);
  free(svc);
}

const rpc_method_t *const *svc_export_methods(svc_export_t *svc, size_t *n) {
  *n = svc->base.n_rows;
  return svc->base.row_ptrs;
}
