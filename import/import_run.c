/*
 * import_run: the import worker (see import_run.h, docs/IMPORT.md).
 *
 * One run of a claimed import job:
 *   1. recover: a job found PROCESSING was interrupted mid-restore (crash,
 *      shutdown, lost lease): roll it back and end it FAILED, so the
 *      user's data is exactly what it was before -- or, if it had reached
 *      "committing", finish the commit;
 *   2. fetch the uploaded package from the blob store into a temp file
 *      (libzip needs random access);
 *   3. validate it (pkg_validate) with the user's data and the merge
 *      strategy: VALIDATION_FAILED ends here, validate-only ends with the
 *      preview as VALIDATION_PASSED; otherwise the entities it read are
 *      kept in a spool (pkg_spool.h), so the package's JSON is inflated
 *      and parsed once;
 *   4. PROCESSING: restore kind by kind in dependency order, in batches,
 *      from the spool,
 *      every document tagged with the import id and every replaced version
 *      stashed (store_entity_put_batch_tagged); transaction files' bytes go
 *      to new blobs named "<user>/<fileId>/<importId>";
 *   5. regenerate the derived analytics from the user's transactions;
 *   6. commit: mark "committing" durably, forget the stash (deleting the
 *      replaced files' old blobs), finish COMPLETED.
 * Any failure in 4-5 (bad data found late, store error, cancel) rolls
 * back before the job ends FAILED or CANCELLED, so nothing changes.
 * Nothing of the package's user id is trusted: every write goes to the
 * job's user, and documents' own "userId" fields are dropped.
 */
#include "import_run.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analytics.h"
#include "fzip/v1/jobs.pb-c.h"
#include "fzip_failpoint.h"
#include "fzip_log.h"
#include "fzip_util.h"
#include "import_diff.h"
#include "import_exists.h"
#include "import_feed.h"
#include "import_undo.h"
#include "import_map.h"
#include "job_body.h"
#include "pkg_reader.h"
#include "pkg_spool.h"
#include "pkg_validate.h"

#define ISSUES_IN_JOB 100    /* issues copied into the job record */
#define CONFLICTS_IN_JOB 50  /* conflicting ids copied into the job record */
#define COPY_CHUNK (256 * 1024)
typedef Fzip__V1__ImportJob import_job_t;

/* ---- the import job kind ------------------------------------------------ */

#define S(name) FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_##name
#define TO(name) JOB_STATUS_BIT(S(name))
/* Which status may follow which.  An upload is UPLOADED; StartImport
 * makes it VALIDATING (again, after any end but COMPLETED); validation
 * ends it or goes on to PROCESSING; a FAILED job whose rollback was left
 * pending ends FAILED again once it is done. */
static const uint32_t import_next[] = {
    [S(UNSPECIFIED)] = TO(UPLOADED),
    [S(UPLOADED)] = TO(VALIDATING),
    [S(VALIDATING)] = TO(VALIDATING) | TO(VALIDATION_PASSED) | TO(VALIDATION_FAILED) |
                      TO(PROCESSING) | TO(FAILED) | TO(CANCELLED),
    [S(VALIDATION_PASSED)] = TO(VALIDATING),
    [S(VALIDATION_FAILED)] = TO(VALIDATING),
    /* VALIDATION_FAILED: a package refused while the restore ran beside
     * its validation (rolled back first). */
    [S(PROCESSING)] = TO(PROCESSING) | TO(COMPLETED) | TO(FAILED) | TO(CANCELLED) |
                      TO(VALIDATION_FAILED),
    /* UndoImport (within the window); a refused undo comes back. */
    [S(COMPLETED)] = TO(UNDOING),
    [S(FAILED)] = TO(VALIDATING) | TO(FAILED),
    [S(CANCELLED)] = TO(VALIDATING),
    /* FAILED: only job_ctx_end_job's fallback for a refused end (a bug);
     * a pending leftover is then rolled back by the next StartImport. */
    [S(UNDOING)] = TO(UNDOING) | TO(UNDONE) | TO(COMPLETED) | TO(FAILED),
    [S(UNDONE)] = 0,
};
#undef TO

static bool is_terminal(int status) {
  return status == S(COMPLETED) || status == S(FAILED) || status == S(CANCELLED) ||
         status == S(VALIDATION_FAILED) || status == S(VALIDATION_PASSED) ||
         status == S(UPLOADED) || status == S(UNDONE);
}

/* Only a job that wrote nothing (still validating) ends at once; a
 * PROCESSING one must roll back, and a FAILED one waiting for its
 * rollback keeps retrying it: those are flagged for their worker. */
static bool cancel_now(int status) { return status == S(VALIDATING); }

/* A window that has passed reads 0 (UndoImport refuses it) even before
 * the reaper has closed it on the record. */
static void import_view(ProtobufCMessage *msg, int64_t now_ms) {
  import_job_t *job = (import_job_t *)msg;
  if (job->undo_until != 0 && job->undo_until <= now_ms)
    job->undo_until = 0;
}

const job_kind_t import_job_kind = {
    .kind = STORE_JOB_IMPORT,
    .noun = "import",
    .id_field = "import_id",
    .job = &fzip__v1__import_job__descriptor,
    .status = &fzip__v1__import_status__descriptor,
    .next = import_next,
    .n_status = (int)(sizeof import_next / sizeof import_next[0]),
    .blob_prefix = "import-",
    .part_suffix = ".part",
    .blob_status = 0,
    .cancelled_status = S(CANCELLED),
    .failed_status = S(FAILED),
    .expired_status = 0,
    .expired_from = 0,
    .cancel_now = cancel_now,
    .cancel_now_message = "cancelled before anything was written",
    .cancel_refused = "is not running",
    .delete_running = false,
    .delete_refused = "cancel it and wait for it to end before deleting it",
    .view = import_view,
    .is_terminal = is_terminal,
    .before_delete = import_undo_before_delete,
};

static const char *const phase_names[IMPORT_PHASE_COUNT] = {
    [IMPORT_PHASE_OTHER] = "",
    [IMPORT_PHASE_RECEIVING] = "receiving",
    [IMPORT_PHASE_INTERRUPTED] = "interrupted",
    [IMPORT_PHASE_UPLOADED] = "uploaded",
    [IMPORT_PHASE_QUEUED] = "queued",
    [IMPORT_PHASE_FETCHING] = "fetching",
    [IMPORT_PHASE_VALIDATING] = "validating",
    [IMPORT_PHASE_RESTORING] = "restoring",
    [IMPORT_PHASE_COMMITTING] = "committing",
    [IMPORT_PHASE_ROLLING_BACK] = "rolling_back",
    /* A job that ended FAILED while its rollback could not finish (e.g. a
     * full store): it stays runnable, and every claim retries the cleanup
     * until it succeeds.  The import stays pending meanwhile, so no reader
     * sees any of it. */
    [IMPORT_PHASE_CLEANUP_PENDING] = "cleanup_pending",
    [IMPORT_PHASE_UNDOING] = "undoing",
};

const char *import_phase_name(import_phase_t phase) {
  return (unsigned)phase < IMPORT_PHASE_COUNT ? phase_names[phase] : "";
}

import_phase_t import_phase_of(const import_job_t *job) {
  for (int p = IMPORT_PHASE_OTHER + 1; p < IMPORT_PHASE_COUNT; p++) {
    if (job->current_phase && strcmp(job->current_phase, phase_names[p]) == 0)
      return (import_phase_t)p;
  }
  return IMPORT_PHASE_OTHER;
}

bool import_set_phase(import_job_t *job, import_phase_t phase) {
  return job_msg_set_str(&job->current_phase, import_phase_name(phase));
}

typedef struct {
  job_ctx_t *jctx;
  import_env_t *env;
  import_job_t *job;          /* malloc-owned */
  char user[FZIP_USER_ID_MAX + 1];
  char path[PATH_MAX];        /* the package, fetched into a temp file */
  atomic_uint_fast64_t items_done; /* the restore thread counts, the job thread saves */
  uint64_t items_total;
  fzip_error_t save_error;
  bool stop;                  /* a save failed: stop at the next check */
  char validate_phase[32];    /* the last pkgv_progress_t phase (on_validate_progress) */
  int64_t files_restored, file_bytes_restored;
  uint64_t created[FZIP_KIND_COUNT], overwritten[FZIP_KIND_COUNT], skipped[FZIP_KIND_COUNT];
  import_diff_t *diff;        /* judges existing entities in the restore (import_diff.h) */
  import_map_t *map;          /* the job's RestoreOptions for this run (import_map.h) */
  bool as_read;              /* validation found no unknown field: entities are stored as
                               * read, without pkgv_entity_sanitize's rebuild */
  pkg_spool_t *spool;         /* the package's entities as validation read them, for the
                               * restore after it (NULL for validate-only or beside) */
  /* Restoring beside the validation (restore_beside): the feed from the
   * validator to the restore thread, which owns the counters above, the
   * diff and the batches until it is joined; the job thread owns the job
   * record (saves, phase, progress) throughout. */
  import_feed_t *feed;
  pthread_t restorer;
  bool began;                 /* store_import_begin done: an end must roll back */
  bool restorer_started;
  atomic_bool restorer_done;
  bool restore_ok;
  fzip_error_t restore_error;
} run_t;

/* ---- saving ----------------------------------------------------------- */

static const char *status_name(int status) { return job_status_name(&import_job_kind, status); }

/* Saves (at most every JOB_SAVE_INTERVAL_MS unless forced); a failure
 * (cancel, lost lease, deleted, shutdown) is kept in save_error. */
static bool save(run_t *r, bool force) {
  if (r->stop)
    return false;
  r->job->updated_at = fzip_now_ms();
  r->job->items_done = (int64_t)r->items_done;
  r->job->items_total = (int64_t)r->items_total;
  if (job_ctx_save_job(r->jctx, &import_job_kind, &r->job->base, force, &r->save_error))
    return true;
  r->stop = true;
  return false;
}

/* Also where one phase's freed buffers and the store's idle caches go
 * back to the system before the next phase allocates its own
 * (store_release_memory): glibc would keep them, and the job's peak RSS
 * would be the sum of its phases' peaks. */
static bool set_phase(run_t *r, int status, import_phase_t phase, fzip_error_t *error) {
  store_release_memory(r->env->store);
  if (!job_set_status(&r->job->base, &import_job_kind, status, error))
    return false;
  if (!import_set_phase(r->job, phase))
    return fzip_error_oom(error, NULL);
  if (!save(r, true)) {
    *error = r->save_error;
    return false;
  }
  return true;
}

static bool finish(run_t *r, int status, const char *event, const char *message,
                   fzip_error_t *error) {
  int64_t now = fzip_now_ms();
  bool ok = false;

  if (status == S(COMPLETED) || status == S(VALIDATION_PASSED))
    r->job->progress = 100;
  r->job->expires_at = now + r->env->retention_ms;
  /* A completed import may be undone until undo_until: its record stays
   * that long at least (the reaper then closes the window, forgets the
   * stash and keeps the record for the rest of its retention). */
  r->job->undo_until = 0;
  if (status == S(COMPLETED) && r->env->undo_window_ms > 0 && r->job->n_undo_marks > 0) {
    r->job->undo_until = now + r->env->undo_window_ms;
    r->job->expires_at = r->job->undo_until;
  }
  ok = job_ctx_end_job(r->jctx, &import_job_kind, &r->job->base, status, event, message, now,
                       r->job->expires_at, error);
  /* diff_batches: the restore's store round trips for the stored versions
   * (tests check an unchanged package costs one per batch, not per entity). */
  const fzip_log_field_t f[] = {
      fzip_log_str("import", r->job->import_id), fzip_log_str("status", status_name(r->job->status)),
      fzip_log_int("diff_batches", r->diff ? (int64_t)import_diff_batches(r->diff) : 0),
      fzip_log_str("message", message)};
  fzip_log_fields(FZIP_LOG_INFO, "import", "import ended", f, FZIP_LOG_COUNT(f));
  return ok;
}

/* Ends the job with `err`, which happened in `phase` (NULL: the current
 * one; a rollback names the phase it undid, not its own). */
static bool fail_job_in(run_t *r, int status, const fzip_error_t *err, const char *phase,
                        fzip_error_t *error) {
  char public[FZIP_ERROR_MESSAGE_MAX];

  if (!phase)
    phase = r->job->current_phase;
  /* The job keeps the client's message; the full one is logged here. */
  if (status != S(CANCELLED))
    fzip_log(FZIP_LOG_WARN, "import", "import failed", "import", r->job->import_id, "phase",
             phase, "error", err->message, NULL);
  if (!job_msg_set_error(&r->job->base, err, phase))
    return fzip_error_oom(error, NULL);
  return finish(r, status,
                status == S(CANCELLED) ? "cancelled" : "failed",
                job_public_message(public, sizeof public, err), error);
}

static bool fail_job(run_t *r, int status, const fzip_error_t *err, fzip_error_t *error) {
  return fail_job_in(r, status, err, NULL, error);
}

/* ---- blobs of restored files ------------------------------------------ */

static void file_blob_id(char *out, size_t cap, const char *user, const char *file_id,
                         const char *import_id) {
  snprintf(out, cap, "%s/%s/%s", user, file_id, import_id);
}

static const char *doc_string(const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}


/* The rollback's visit: the file blobs go with their records, and the job
 * keeps its lease.  A rollback on a slow store (FerretDB: several round
 * trips per document) can outlast the lease; another replica would then
 * take the job over mid-way and end it "interrupted".  A lease that cannot
 * be kept (lost, job deleted, store hiccup) does not stop the rollback:
 * putting the data back comes first, and every step of it is idempotent. */
typedef struct {
  import_visit_t files;
  job_ctx_t *jctx;
  bool warned; /* the lease's trouble was logged (once per rollback) */
} rollback_visit_t;

static bool rollback_visit(void *ctx, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error) {
  rollback_visit_t *v = ctx;
  fzip_error_t lease_err;

  fzip_error_clear(&lease_err);
  /* Logged, since a lost lease means another replica may take over. */
  if (!job_ctx_keep_lease(v->jctx, &lease_err) && !v->warned) {
    v->warned = true;
    fzip_log(FZIP_LOG_WARN, "import", "rollback goes on without its lease", "import",
             v->files.import_id, "error", lease_err.message, NULL);
  }
  return import_visit_file(&v->files, kind, doc, error);
}

static bool rollback(run_t *r, fzip_error_t *error) {
  store_rollback_stats_t st = {0};
  rollback_visit_t v = {{r->env->store, r->user, r->job->import_id, true}, r->jctx, false};
  char buf[96];

  if (!store_import_rollback(&st, r->env->store, r->user, r->job->import_id, rollback_visit, &v,
                             error))
    return fzip_error_prefix(error, "rolling back import %s", r->job->import_id);
  snprintf(buf, sizeof buf, "restored=%" PRIu64 " deleted=%" PRIu64, st.restored, st.deleted);
  const fzip_log_field_t f[] = {fzip_log_str("import", r->job->import_id),
                                fzip_log_int("restored", (int64_t)st.restored),
                                fzip_log_int("deleted", (int64_t)st.deleted)};
  fzip_log_fields(FZIP_LOG_INFO, "import", "rolled back", f, FZIP_LOG_COUNT(f));
  return job_msg_add_event(&r->job->base, "rolled_back", buf, JOB_EVENTS_MAX) ||
         fzip_error_oom(error, NULL);
}

/* The flip; the stash is forgotten at once unless the import may be
 * undone (its marks were recorded), then at the end of the window. */
static bool commit(run_t *r, fzip_error_t *error) {
  import_visit_t v = {r->env->store, r->user, r->job->import_id, false};
  bool keep = r->env->undo_window_ms > 0 && r->job->n_undo_marks > 0;

  if (!(keep ? store_import_flip(r->env->store, r->user, r->job->import_id, error)
             : store_import_commit(NULL, r->env->store, r->user, r->job->import_id,
                                   import_visit_file, &v, error)))
    return fzip_error_prefix(error, "committing import %s", r->job->import_id);
  return true;
}

/* ---- fetching the package --------------------------------------------- */

#define FETCH_WHAT "uploaded package" /* names the fetched copy in its errors */

static bool fetch_package(run_t *r, fzip_error_t *error) {
  store_blob_reader_t *rd = NULL;
  char blob[JOB_BLOB_ID_MAX];
  const char *dir = fzip_tmp_root(r->env->temp_dir);
  unsigned char *buf = NULL;
  FILE *f = NULL;
  int fd = -1;
  bool ok = false;

  if ((size_t)snprintf(r->path, sizeof r->path, "%s/fzip-import-XXXXXX", dir) >= sizeof r->path) {
    r->path[0] = '\0';
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT,
                          "%s: temporary directory name too long", FETCH_WHAT);
  }
  errno = 0;
  fd = mkstemp(r->path);
  if (fd < 0) {
    r->path[0] = '\0';
    return fzip_tmp_error(error, FETCH_WHAT, "creating", dir);
  }
  f = fdopen(fd, "wb");
  buf = malloc(COPY_CHUNK);
  job_blob_id(blob, &import_job_kind, r->job->import_id);
  if (!f || !buf) {
    if (!f)
      close(fd);
    fzip_error_oom(error, NULL);
    goto done;
  }
  if (!store_blob_reader_new(&rd, r->env->store, STORE_BUCKET_PACKAGES, blob, 0, error)) {
    if (error->code == FZIP_ERR_NOT_FOUND)
      fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                     "the uploaded package of import %s is no longer stored", r->job->import_id);
    goto done;
  }
  for (;;) {
    size_t n = 0;
    if (!store_blob_reader_read(rd, buf, COPY_CHUNK, &n, error))
      goto done;
    if (n == 0)
      break;
    errno = 0;
    if (fwrite(buf, 1, n, f) != n) {
      fzip_tmp_error(error, FETCH_WHAT, "writing", dir);
      goto done;
    }
    /* Keeps the lease fresh on a long copy, and notices cancel/shutdown. */
    if (!save(r, false)) {
      *error = r->save_error;
      goto done;
    }
  }
  errno = 0;
  if (fflush(f) != 0) {
    fzip_tmp_error(error, FETCH_WHAT, "writing", dir);
    goto done;
  }
  ok = true;
done:
  store_blob_reader_destroy(rd);
  if (f)
    fclose(f);
  free(buf);
  return ok;
}

/* ---- validation ------------------------------------------------------- */

/* entities + files, at most INT64_MAX (without overflow). */
static uint64_t declared_total(uint64_t entities, uint64_t files) {
  const uint64_t cap = (uint64_t)INT64_MAX;
  if (entities > cap)
    entities = cap;
  if (files > cap)
    files = cap;
  return entities > cap - files ? cap : entities + files;
}

/* The validation's share of the progress, 1-29 over the entities read
 * out of the manifest's count, and the job's items_total from the
 * manifest until the validation has counted (validate).  Saved at once
 * at each phase and kind, else every JOB_SAVE_INTERVAL_MS. */
static void on_validate_progress(void *ctx, const pkgv_progress_t *p) {
  run_t *r = ctx;
  uint64_t done = p->entities_done, declared = p->entities_declared;
  fzip_error_t ignored = {0};
  bool phase_changed = strcmp(p->phase, r->validate_phase) != 0;

  if (declared > 0)
    r->job->progress = job_progress_clamp(
        r->job->progress,
        1 + (int)(29.0 * (double)(done > declared ? declared : done) / (double)declared));
  /* Capped where the job's int64 field can show it: a hostile manifest
   * may declare anything until the validation refuses it. */
  r->items_total = declared_total(declared, p->files_declared);
  if (phase_changed)
    snprintf(r->validate_phase, sizeof r->validate_phase, "%s", p->phase);
  save(r, phase_changed);
  /* A test holds the validation here to watch it (tests/import). */
  fzip_failpoint("import.validating", &ignored);
}

static bool on_cancel(void *ctx) {
  run_t *r = ctx;
  return r->stop || job_ctx_should_stop(r->jctx);
}

static Fzip__V1__EntityCounts *new_counts(int kind, const pkgv_counts_t *c) {
  Fzip__V1__EntityCounts *e = malloc(sizeof *e);
  if (!e)
    return NULL;
  fzip__v1__entity_counts__init(e);
  e->kind = (Fzip__V1__EntityKind)(kind + 1); /* EntityKind follows fzip_kind_t order */
  e->in_package = (int64_t)c->in_package;
  e->valid = (int64_t)c->valid;
  e->warnings = (int64_t)c->warnings;
  e->errors = (int64_t)c->errors;
  e->created = (int64_t)c->created;
  e->overwritten = (int64_t)c->overwritten;
  e->skipped = (int64_t)c->skipped;
  e->identical = (int64_t)c->identical;
  e->changed = (int64_t)c->changed;
  e->merged = (int64_t)c->merged;
  e->references_cleared = (int64_t)c->references_cleared;
  e->dropped = (int64_t)c->dropped;
  e->not_selected = (int64_t)c->not_selected;
  return e;
}

static Fzip__V1__ValidationIssue *new_issue(const pkgv_issue_t *is) {
  Fzip__V1__ValidationIssue *v = malloc(sizeof *v);
  if (!v)
    return NULL;
  fzip__v1__validation_issue__init(v);
  v->severity = (Fzip__V1__ValidationIssue__Severity)is->severity;
  v->entity_kind = is->kind >= 0 ? (Fzip__V1__EntityKind)(is->kind + 1) : 0;
  if (!job_msg_set_str(&v->entry, is->entry) || !job_msg_set_str(&v->entity_id, is->entity_id) ||
      !job_msg_set_str(&v->field, is->field) || !job_msg_set_str(&v->reason, is->reason) ||
      !job_msg_set_str(&v->rule, is->rule)) {
    fzip__v1__validation_issue__free_unpacked(v, NULL);
    return NULL;
  }
  return v;
}

/* Copies the validator's verdict into the job (validation + preview). */
static bool record_validation(run_t *r, const pkgv_result_t *res) {
  Fzip__V1__ValidationSummary *vs = calloc(1, sizeof *vs);
  Fzip__V1__ImportResult *pv = calloc(1, sizeof *pv);
  size_t ni = res->n_issues < ISSUES_IN_JOB ? res->n_issues : ISSUES_IN_JOB;
  size_t nc = res->n_conflicting_ids < CONFLICTS_IN_JOB ? res->n_conflicting_ids : CONFLICTS_IN_JOB;

  if (!vs || !pv)
    goto fail;
  fzip__v1__validation_summary__init(vs);
  fzip__v1__import_result__init(pv);
  if (r->job->validation)
    fzip__v1__validation_summary__free_unpacked(r->job->validation, NULL);
  r->job->validation = vs;
  if (r->job->result)
    fzip__v1__import_result__free_unpacked(r->job->result, NULL);
  r->job->result = pv;
  vs->passed = res->passed;
  vs->issues_total = (int64_t)res->issues_total;
  vs->counts = calloc(FZIP_KIND_COUNT, sizeof *vs->counts);
  pv->counts = calloc(FZIP_KIND_COUNT, sizeof *pv->counts);
  vs->issues = calloc(ni ? ni : 1, sizeof *vs->issues);
  vs->conflicting_ids = calloc(nc ? nc : 1, sizeof *vs->conflicting_ids);
  if (!vs->counts || !pv->counts || !vs->issues || !vs->conflicting_ids)
    goto fail;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    if (!(vs->counts[vs->n_counts] = new_counts(k, &res->counts[k])))
      goto fail;
    vs->n_counts++;
    if (!(pv->counts[pv->n_counts] = new_counts(k, &res->counts[k])))
      goto fail;
    pv->n_counts++;
  }
  for (size_t i = 0; i < ni; i++) {
    if (!(vs->issues[vs->n_issues] = new_issue(&res->issues[i])))
      goto fail;
    vs->n_issues++;
  }
  for (size_t i = 0; i < nc; i++) {
    if (!(vs->conflicting_ids[vs->n_conflicting_ids] = strdup(res->conflicting_ids[i])))
      goto fail;
    vs->n_conflicting_ids++;
  }
  if (!import_diff_messages(&vs->diffs, &vs->n_diffs, res->diffs, res->n_diffs) ||
      !import_diff_messages(&pv->diffs, &pv->n_diffs, res->diffs, res->n_diffs))
    goto fail;
  return true;
fail:
  /* Whatever was attached is freed with the job. */
  if (vs && r->job->validation != vs)
    free(vs);
  if (pv && r->job->result != pv)
    free(pv);
  return false;
}

static bool record_package_info(run_t *r, const pkgv_result_t *res) {
  Fzip__V1__PackageInfo *pi = NULL;
  if (!res->has_info)
    return true;
  pi = malloc(sizeof *pi);
  if (!pi)
    return false;
  fzip__v1__package_info__init(pi);
  if (r->job->package_info)
    fzip__v1__package_info__free_unpacked(r->job->package_info, NULL);
  r->job->package_info = pi;
  pi->export_timestamp = res->info.export_timestamp_ms;
  return job_msg_set_str(&pi->export_format_version, res->info.format_version) &&
         job_msg_set_str(&pi->source_user_id, res->info.source_user_id) &&
         job_msg_set_str(&pi->application_version, res->info.application_version) &&
         job_msg_set_str(&pi->flavour, res->info.flavour);
}

static void first_error(char *out, size_t cap, const pkgv_result_t *res) {
  for (size_t i = 0; i < res->n_issues; i++) {
    const pkgv_issue_t *is = &res->issues[i];
    if (is->severity == PKGR_SEVERITY_ERROR) {
      snprintf(out, cap, "%" PRIu64 " error(s); first: %s%s%s%s%s: %s (%s)", res->errors_total,
               is->entry, *is->entity_id ? " id " : "", is->entity_id,
               *is->field ? " field " : "", is->field, is->reason, is->rule);
      return;
    }
  }
  snprintf(out, cap, "validation failed");
}

/* The spool keeps entities as read: the restore after the validation
 * knows whether any had an unknown field (r->as_read). */
static bool spool_sink(void *ctx, fzip_kind_t kind, const bson_t *doc, bool known_only,
                       fzip_error_t *error) {
  (void)known_only;
  return pkg_spool_put(ctx, kind, doc, error);
}

/* The feed carries entities as they are stored: sanitized here, on the
 * validation's thread, which waits for the restore anyway, when they
 * have fields format 1.0 does not define (rare: most go as read). */
static bool feed_sink(void *ctx, fzip_kind_t kind, const bson_t *doc, bool known_only,
                      fzip_error_t *error) {
  bson_t known = BSON_INITIALIZER;
  bool ok;

  if (known_only)
    return import_feed_put(ctx, kind, doc, error);
  ok = pkgv_entity_sanitize(&known, kind, doc, error) && import_feed_put(ctx, kind, &known, error);
  bson_destroy(&known);
  return ok;
}

static bool restore_beside(run_t *r, const pkgv_options_t *o, bool *yes, fzip_error_t *error);
static bool start_restore_beside(run_t *r, fzip_error_t *error);

/* Why on_cancel said stop: the failed save's error, else a shutdown
 * (CANCELLED, which job_ctx_stop_reason tells apart from a user's). */
static void stop_cause(run_t *r, fzip_error_t *error) {
  if (r->stop)
    *error = r->save_error;
  else
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_CANCELLED, "the import was stopped");
}

/* While the validation waits for the restore beside it (import_feed.h):
 * the job's lease, progress and a cancel, as the validator's own
 * progress calls keep them. */
static bool feed_waiting(void *ctx) {
  run_t *r = ctx;
  save(r, false);
  return !on_cancel(r);
}

/* Ends the feed after the validation: closed when the package passed (the
 * restore finishes it), halted on any other end. */
static bool end_feed(run_t *r, bool passed, fzip_error_t *error) {
  if (!passed) {
    import_feed_halt(r->feed);
    return true;
  }
  if (import_feed_close(r->feed, error))
    return true;
  if (r->stop)
    *error = r->save_error;
  return false;
}

/* Where the validator's entities go: to a restore that starts now and
 * runs beside the validation when restore_beside allows it, else to a
 * spool the restore reads after a passed validation; nowhere for a
 * validate-only run. */
static bool choose_sink(run_t *r, pkgv_options_t *o, fzip_error_t *error) {
  bool beside = false;

  if (r->job->validate_only)
    return true;
  if (!restore_beside(r, o, &beside, error))
    return false;
  if (beside) {
    if (!start_restore_beside(r, error))
      return false;
    o->sink = feed_sink;
    o->sink_ctx = r->feed;
    return true;
  }
  if (!pkg_spool_new(&r->spool, r->env->temp_dir, error))
    return false;
  o->sink = spool_sink;
  o->sink_ctx = r->spool;
  return true;
}

/* Runs the validator; *passed says whether to go on.  Beside it a restore
 * may run (choose_sink): its feed is closed when the package passed, and
 * halted on any other end. */
static bool validate(run_t *r, bool *passed, fzip_error_t *error) {
  pkgv_options_t o = {0};
  import_exists_t exists = {r->env->store, r->user};
  pkgv_result_t *res = NULL;
  char msg[FZIP_ERROR_MESSAGE_MAX];
  bool ok = false;

  *passed = false;
  if (!import_exists_use(&o, &exists, error))
    return false;
  o.strategy = (pkgv_strategy_t)(r->job->merge_strategy - 1);
  o.progress = on_validate_progress;
  o.progress_ctx = r;
  o.cancelled = on_cancel;
  o.cancel_ctx = r;
  o.temp_dir = r->env->temp_dir; /* the duplicate-id check's runs, if ids come out of order */
  if (!import_map_new(&r->map, r->job->restore, r->job->import_id, error))
    return false;
  o.restore = import_map_restore(r->map);
  /* The restore reads the entities from the validator instead of
   * inflating and parsing the package a second time. */
  r->items_done = 0;
  if (!choose_sink(r, &o, error))
    return false;
  if (!pkgv_validate(&res, r->path, &o, error)) {
    if (r->stop)
      *error = r->save_error;
    goto done;
  }
  if (!record_validation(r, res) || !record_package_info(r, res)) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  /* Beside the validation the feed carried every entity sanitized, and
   * the map (no options) has no use for the references. */
  if (!r->feed) {
    import_map_take_refs(r->map, res);
    r->as_read = res->unknown_fields == 0;
  }
  r->items_total = 0;
  for (int k = 0; k < FZIP_KIND_COUNT; k++)
    r->items_total += res->counts[k].in_package;
  r->items_total += res->files_in_package;
  *passed = res->passed;
  if (!res->passed) {
    first_error(msg, sizeof msg, res);
    fzip_error_set(&r->save_error, FZIP_DOMAIN_VALIDATION, pkgv_result_error_code(res), "%s",
                   msg);
  }
  ok = true;
done:
  if (r->feed && !end_feed(r, ok && *passed, error))
    ok = false;
  pkgv_result_destroy(res);
  return ok;
}

/* ---- restoring -------------------------------------------------------- */

typedef struct {
  run_t *r;
  fzip_kind_t kind;
  store_write_mode_t mode;
  pkgr_t *pkg;
  bson_t *docs[STORE_BATCH_MAX];
  char *src_ids[STORE_BATCH_MAX]; /* transaction files: the package's fileId of docs[i] (a
                                   * copy's document has a new one) */
  size_t n;
  size_t max; /* documents per batch: batch_max() */
  size_t bytes;
} batch_t;

/* Transaction files go in batches of IMPORT_FILE_BATCH_MAX documents, the
 * other kinds of STORE_BATCH_MAX.  Each file document brings its bytes
 * after it, so a batch of them writes no faster for being large, while a
 * full one held ~1,000 documents (2.4 MiB) and the bulk page cache their
 * put dirtied (3.7 MiB) at the point where the restore's package reader
 * and the validation's are both open: the 1M import's peak (heaptrack). */
#define IMPORT_FILE_BATCH_MAX 64

static size_t batch_max(fzip_kind_t kind) {
  return kind == FZIP_KIND_TRANSACTION_FILE ? IMPORT_FILE_BATCH_MAX : STORE_BATCH_MAX;
}

static store_write_mode_t write_mode(int strategy) {
  switch (strategy) {
  case FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_SKIP_EXISTING:
    return STORE_WRITE_SKIP_EXISTING;
  case FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_OVERWRITE:
  case FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_MERGE_FIELDS: /* merged documents */
    return STORE_WRITE_REPLACE;
  default:
    return STORE_WRITE_INSERT; /* conflicts were refused by validation */
  }
}

/* The document as it is stored: only the fields format 1.0 defines
 * (pkgv_entity_sanitize: a package's userId or any other unknown field is
 * dropped, the caller's user owns everything) and a file's s3Key names the
 * blob this import writes.  Only a file needs a second copy (its s3Key
 * replaced); any other kind is stored as sanitized (or, with nothing to
 * drop, as read). */
static bson_t *stored_doc(run_t *r, pkgr_t *pkg, fzip_kind_t kind, const bson_t *doc) {
  bson_t *known = NULL;
  bson_t *out = NULL;
  bson_iter_t it;
  const char *file_id = NULL;

  /* The validation of this run read the same package bytes (its blob's
   * sha256 was checked) and named every unknown member: with none, the
   * sanitized document would equal the one read. */
  if (r->as_read) {
    known = bson_copy(doc);
  } else {
    known = bson_new();
    if (!pkgv_entity_sanitize(known, kind, doc, NULL)) {
      bson_reinit(known); /* too large: stored as nothing, which the store refuses */
      return known;
    }
  }
  if (!known)
    return bson_new(); /* not a document: stored as nothing, which the store refuses */
  if (kind != FZIP_KIND_TRANSACTION_FILE)
    return known;
  out = bson_new();
  if (bson_iter_init(&it, known)) {
    while (bson_iter_next(&it)) {
      const char *key = bson_iter_key(&it);
      if (strcmp(key, "s3Key") == 0)
        continue;
      if (strcmp(key, "fileId") == 0 && BSON_ITER_HOLDS_UTF8(&it))
        file_id = bson_iter_utf8(&it, NULL);
      bson_append_iter(out, NULL, 0, &it);
    }
  }
  if (file_id && pkgr_file_find(pkg, file_id)) {
    char key[STORE_BLOB_ID_MAX + 1];
    char copy_id[FZIP_UUID_LEN + 1]; /* as_copy: the blob goes under the new file id */
    file_blob_id(key, sizeof key, r->user, import_map_id(r->map, kind, file_id, copy_id),
                 r->job->import_id);
    BSON_APPEND_UTF8(out, "s3Key", key);
  }
  bson_destroy(known);
  return out;
}

/* Reads up to cap bytes of a blob's source into buf (*n = 0: the end). */
typedef bool (*blob_read_fn)(void *src, void *buf, size_t cap, size_t *n, fzip_error_t *error);

static bool read_package_file(void *src, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  return pkgr_file_read(src, buf, cap, n, error);
}

static bool read_stored_blob(void *src, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  return store_blob_reader_read(src, buf, cap, n, error);
}

/* Writes the blob `key` anew from read(src); *written = its bytes. */
static bool write_blob(run_t *r, const char *key, blob_read_fn read, void *src, int64_t *written,
                       fzip_error_t *error) {
  store_blob_writer_t *w = NULL;
  unsigned char *buf = NULL;
  bool ok = false;

  *written = 0;
  /* A rerun after an interruption may find this blob committed already. */
  if (!store_blob_delete(r->env->store, STORE_BUCKET_FILES, key, error))
    return false;
  buf = malloc(COPY_CHUNK);
  if (!buf)
    return fzip_error_oom(error, NULL);
  if (!store_blob_writer_new(&w, r->env->store, STORE_BUCKET_FILES, key, error))
    goto done;
  for (;;) {
    size_t n = 0;
    if (!read(src, buf, COPY_CHUNK, &n, error))
      goto done;
    if (n == 0)
      break;
    if (!store_blob_writer_write(w, buf, n, error))
      goto done;
    *written += (int64_t)n;
  }
  ok = store_blob_writer_commit(w, NULL, error);
done:
  store_blob_writer_destroy(w);
  free(buf);
  return ok;
}

/* Copies one file's bytes from the package (its id there: file_id) into
 * the blob its stored record names (stored_id: a copy's new id). */
static bool restore_file_bytes(run_t *r, pkgr_t *pkg, const char *file_id, const char *stored_id,
                               fzip_error_t *error) {
  pkgr_file_t *f = NULL;
  char key[STORE_BLOB_ID_MAX + 1];
  int64_t n = 0;
  bool ok = false;

  file_blob_id(key, sizeof key, r->user, stored_id, r->job->import_id);
  if (!pkgr_file_open(&f, pkg, file_id, error) ||
      !write_blob(r, key, read_package_file, f, &n, error))
    goto done;
  r->file_bytes_restored += n;
  r->files_restored++;
  ok = true;
done:
  pkgr_file_destroy(f);
  return ok;
}

/* Copies the stored bytes a merged file keeps (blob `from`) into the
 * import's own blob for it, which its merged record names.  A blob that is
 * gone already leaves the record as it was: naming no bytes. */
static bool copy_kept_bytes(run_t *r, const char *from, const char *file_id,
                            fzip_error_t *error) {
  store_blob_reader_t *rd = NULL;
  char key[STORE_BLOB_ID_MAX + 1];
  fzip_error_t err = {0};
  int64_t n = 0;
  bool ok;

  file_blob_id(key, sizeof key, r->user, file_id, r->job->import_id);
  if (!store_blob_reader_new(&rd, r->env->store, STORE_BUCKET_FILES, from, 0, &err)) {
    if (err.code == FZIP_ERR_NOT_FOUND)
      return true;
    *error = err;
    return false;
  }
  ok = write_blob(r, key, read_stored_blob, rd, &n, error);
  store_blob_reader_destroy(rd);
  return ok;
}

/* docs[i] (a merged transaction file keeping the stored bytes) names the
 * import's own blob instead of the stored one (copy_kept_bytes fills it). */
static bool name_own_blob(bson_t **doc, run_t *r, fzip_error_t *error) {
  const char *file_id = doc_string(*doc, "fileId");
  char key[STORE_BLOB_ID_MAX + 1];
  bson_t *out = bson_new();
  bson_iter_t it;
  bool ok = file_id && bson_iter_init(&it, *doc);

  while (ok && bson_iter_next(&it)) {
    if (strcmp(bson_iter_key(&it), "s3Key") != 0)
      ok = bson_append_iter(out, NULL, 0, &it);
  }
  if (ok) {
    file_blob_id(key, sizeof key, r->user, file_id, r->job->import_id);
    ok = BSON_APPEND_UTF8(out, "s3Key", key);
  }
  if (!ok) {
    bson_destroy(out);
    return fzip_error_oom(error, "a merged transaction file");
  }
  bson_destroy(*doc);
  *doc = out;
  return true;
}

/* Whether the restore must stop now (*error says why): a cancel, a
 * shutdown or a lost lease that the job thread's saves met, or, beside
 * the validation, the validation halting it. */
static bool restore_stopped(run_t *r, fzip_error_t *error) {
  if (r->feed)
    return import_feed_halted(r->feed, error);
  if (!on_cancel(r))
    return false;
  stop_cause(r, error);
  return true;
}

static void batch_clear(batch_t *b) {
  for (size_t i = 0; i < b->n; i++) {
    bson_destroy(b->docs[i]);
    free(b->src_ids[i]);
    b->src_ids[i] = NULL;
  }
  b->n = 0;
  b->bytes = 0;
}

/* Bank files of at most STORE_BLOB_BATCH bytes go to the store together
 * (store_blob_pack_t: up to STORE_BLOB_PUT_MAX of them and
 * STORE_BLOB_BATCH bytes in one store_blob_put_many, SQLite: one
 * transaction), read whole into the pack's buffer first: a write of its
 * own per file rewrote the blob file's shared 64 KiB pages every time
 * (docs/STORAGE.md "Blobs").  A larger file streams through a writer
 * (restore_file_bytes).  The gathered files count as restored once
 * stored. */
static bool pack_flush(run_t *r, store_blob_pack_t *pack, fzip_error_t *error) {
  size_t n = 0;
  uint64_t bytes = 0;
  if (!store_blob_pack_flush(pack, &n, &bytes, error))
    return false;
  r->files_restored += (int64_t)n;
  r->file_bytes_restored += (int64_t)bytes;
  r->items_done += (int64_t)n;
  return n == 0 || !restore_stopped(r, error);
}

/* Reads a file of `size` declared bytes whole into the pack (flushing it
 * first when the file does not fit), for the blob its stored record names
 * (stored_id).  pkgr_file_read checks the size and the checksum at the
 * end, which the last read reaches. */
static bool pack_add(run_t *r, store_blob_pack_t *pack, pkgr_t *pkg, const char *file_id,
                     const char *stored_id, uint64_t size, fzip_error_t *error) {
  pkgr_file_t *f = NULL;
  char key[STORE_BLOB_ID_MAX + 1];
  uint8_t *at, probe;
  size_t got = 0, n = 0;
  bool ok = false;

  if (!store_blob_pack_fits(pack, (size_t)size) && !pack_flush(r, pack, error))
    return false;
  file_blob_id(key, sizeof key, r->user, stored_id, r->job->import_id);
  /* A rerun after an interruption may find this blob committed already. */
  if (!store_blob_delete(r->env->store, STORE_BUCKET_FILES, key, error) ||
      !pkgr_file_open(&f, pkg, file_id, error))
    goto done;
  at = store_blob_pack_space(pack);
  while (got < size) {
    if (!pkgr_file_read(f, at + got, (size_t)size - got, &n, error))
      goto done; /* a short entry fails here, at its end */
    if (n == 0) {
      fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_OUT_OF_RANGE,
                     "file %s: %zu bytes, its entry declares %" PRIu64, file_id, got, size);
      goto done;
    }
    got += n;
  }
  /* The end: one more read, into a byte of its own, notices bytes beyond
   * the declared size (OUT_OF_RANGE) or reaches the checksum's check. */
  if (!pkgr_file_read(f, &probe, 1, &n, error))
    goto done;
  ok = store_blob_pack_add(pack, key, got, error);
done:
  pkgr_file_destroy(f);
  return ok;
}

/* Writes the batch (tagged) and then, for transaction files, the bytes of
 * each file that was written (not skipped).  Documents first: a crash
 * between leaves a tagged document whose blob rollback deletes if it
 * exists, never an untracked blob. */
static bool batch_flush(batch_t *b, fzip_error_t *error) {
  run_t *r = b->r;
  store_write_result_t wr = {0};
  bool exists[STORE_BATCH_MAX];
  const char *ids[STORE_BATCH_MAX];
  char *bytes_from[STORE_BATCH_MAX] = {0}; /* a merge keeps the stored bytes (import_diff.h) */
  store_blob_pack_t *pack = NULL;
  bool ok = false;

  /* Identical entities leave the batch, merged ones replace theirs. */
  if (b->n > 0 &&
      !import_diff_batch(r->diff, b->kind, b->docs, b->src_ids, bytes_from, &b->n, error))
    goto done;
  if (b->n == 0) {
    ok = true; /* all identical: batch_clear still resets the batch's bytes */
    goto done;
  }
  if (b->kind == FZIP_KIND_TRANSACTION_FILE) {
    for (size_t i = 0; i < b->n; i++) {
      if (bytes_from[i] && !name_own_blob(&b->docs[i], r, error))
        goto done;
      ids[i] = doc_string(b->docs[i], "fileId");
    }
    if (!store_entity_exists_many(exists, r->env->store, r->user, b->kind, ids, b->n, error))
      goto done;
  }
  if (!store_entity_put_batch_tagged(r->env->store, r->user, b->kind,
                                     (const bson_t *const *)b->docs, b->n, b->mode,
                                     r->job->import_id, &wr, error))
    goto done;
  r->created[b->kind] += wr.inserted;
  r->overwritten[b->kind] += wr.replaced;
  r->skipped[b->kind] += wr.skipped;
  if (b->kind == FZIP_KIND_TRANSACTION_FILE) {
    for (size_t i = 0; i < b->n; i++) {
      const char *src = b->src_ids[i] ? b->src_ids[i] : ids[i];
      const pkgr_file_entry_t *entry;
      if (b->mode == STORE_WRITE_SKIP_EXISTING && exists[i])
        continue; /* skipped */
      if (bytes_from[i]) {
        if (!copy_kept_bytes(r, bytes_from[i], ids[i], error))
          goto done;
        continue;
      }
      entry = pkgr_file_find(b->pkg, src);
      if (!entry)
        continue; /* listed in files_missing: no bytes to restore */
      if (entry->size <= STORE_BLOB_BATCH) {
        /* The pack's 1 MiB only for a batch with a small file to restore. */
        if ((!pack && !store_blob_pack_new(&pack, r->env->store, STORE_BUCKET_FILES, error)) ||
            !pack_add(r, pack, b->pkg, src, ids[i], entry->size, error))
          goto done;
        continue;
      }
      if (!restore_file_bytes(r, b->pkg, src, ids[i], error))
        goto done;
      r->items_done++;
      if (restore_stopped(r, error))
        goto done;
    }
    if (pack && !pack_flush(r, pack, error))
      goto done;
  }
  ok = true;
done:
  store_blob_pack_destroy(pack);
  for (size_t i = 0; i < STORE_BATCH_MAX; i++)
    free(bytes_from[i]);
  batch_clear(b);
  return ok;
}

/* --import-batch-bytes, for tests; IMPORT_BATCH_BYTES_DEFAULT otherwise. */
static size_t batch_bytes(const run_t *r) {
  return r->env->batch_bytes > 0 ? r->env->batch_bytes : IMPORT_BATCH_BYTES_DEFAULT;
}

/* The restore's share of the progress, 30-90, saved (every
 * JOB_SAVE_INTERVAL_MS at most); by the job thread only. */
static bool save_restore_progress(run_t *r) {
  r->job->progress = job_progress_clamp(
      r->job->progress, 30 + (int)(60.0 * (double)r->items_done /
                                   (double)(r->items_total ? r->items_total : 1)));
  return save(r, false);
}

/* Beside the validation: the batch is half full and the feed has nothing
 * ready.  Writing it now instead of waiting keeps the restore, the slower
 * of the two, busy while the validation refills the feed (with a full
 * batch every time it waited once or twice per batch, 4 s in all at 1M
 * transactions). */
static bool feed_dry(run_t *r, const batch_t *b) {
  return r->feed && b->n >= b->max / 2 && !import_feed_ready(r->feed);
}

static const char *restore_phase(fzip_kind_t kind) {
  static const char *const names[FZIP_KIND_COUNT] = {
      [FZIP_KIND_ACCOUNT] = "restoring_accounts",
      [FZIP_KIND_CATEGORY] = "restoring_categories",
      [FZIP_KIND_FILE_MAP] = "restoring_file_maps",
      [FZIP_KIND_TRANSACTION_FILE] = "restoring_transaction_files",
      [FZIP_KIND_TRANSACTION] = "restoring_transactions",
      [FZIP_KIND_ANALYTICS] = "restoring_analytics",
  };
  return names[kind];
}

/* Restores the documents of one kind.  Only transaction files read the
 * package (their bytes), so only they open it, and close it before the
 * transactions: its directory and manifest are about 3 MiB at 5,000
 * files, which a restore beside the validation would hold as a second
 * copy through its longest kind. */
static bool restore_kind(run_t *r, fzip_kind_t kind, fzip_error_t *error) {
  batch_t *b = calloc(1, sizeof *b);
  pkgr_t *pkg = NULL;
  const bson_t *doc = NULL;
  fzip_error_t err;
  bool ok = false;

  if (!b)
    return fzip_error_oom(error, NULL);
  if (kind == FZIP_KIND_TRANSACTION_FILE && !pkgr_open(&pkg, r->path, NULL, NULL, NULL, error))
    goto done;
  b->r = r;
  b->kind = kind;
  b->max = batch_max(kind);
  b->mode = write_mode(r->job->merge_strategy);
  b->pkg = pkg;
  if (!r->feed && !job_msg_set_str(&r->job->current_phase, restore_phase(kind))) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  if (!r->feed && (!save(r, true) || !pkg_spool_rewind(r->spool, kind, error))) {
    if (r->stop)
      *error = r->save_error;
    goto done;
  }
  fzip_error_clear(&err);
  while (r->feed ? import_feed_next(r->feed, kind, &doc, &err)
                 : pkg_spool_next(r->spool, &doc, &err)) {
    bson_t *copy = stored_doc(r, pkg, kind, doc);
    const char *src = kind == FZIP_KIND_TRANSACTION_FILE ? doc_string(doc, "fileId") : NULL;
    r->items_done++;
    if (!import_map_apply(r->map, kind, &copy, error)) { /* NULL copy: left out */
      bson_destroy(copy);
      goto done;
    }
    if (!copy)
      continue;
    if (src && !(b->src_ids[b->n] = strdup(src))) {
      bson_destroy(copy);
      fzip_error_oom(error, NULL);
      goto done;
    }
    b->docs[b->n++] = copy;
    b->bytes += copy->len;
    if (b->n == b->max || b->bytes >= batch_bytes(r) || feed_dry(r, b)) {
      if (!batch_flush(b, error))
        goto done;
      if (r->feed) {
        if (restore_stopped(r, error))
          goto done;
        continue; /* the job thread saves (wait_restore) */
      }
      if (!save_restore_progress(r)) {
        *error = r->save_error;
        goto done;
      }
    }
  }
  if (fzip_error_is_set(&err)) {
    *error = err;
    goto done;
  }
  if (!batch_flush(b, error))
    goto done;
  ok = true;
done:
  batch_clear(b);
  free(b);
  pkgr_destroy(pkg);
  return ok;
}

static bool fill_result(run_t *r, uint32_t analytics) {
  Fzip__V1__ImportResult *res = r->job->result;
  if (!res) {
    res = calloc(1, sizeof *res);
    if (!res)
      return false;
    fzip__v1__import_result__init(res);
    r->job->result = res;
  }
  for (size_t i = 0; i < res->n_counts; i++) {
    Fzip__V1__EntityCounts *c = res->counts[i];
    int k = (int)c->kind - 1;
    if (k < 0 || k >= FZIP_KIND_COUNT)
      continue;
    c->created = (int64_t)r->created[k];
    c->overwritten = (int64_t)r->overwritten[k];
    c->skipped = (int64_t)r->skipped[k];
    c->failed = 0;
    import_map_counts(r->map, c);
  }
  if (r->diff && !import_diff_fill(r->diff, res))
    return false;
  res->files_restored = r->files_restored;
  res->file_bytes_restored = r->file_bytes_restored;
  if (!analytics_fill_result(res, analytics))
    return false;
  return true;
}

static bool restore_all(run_t *r, fzip_error_t *error) {
  if (!r->diff && !import_diff_new(&r->diff, r->env->store, r->user,
                                   (pkgv_strategy_t)(r->job->merge_strategy - 1), error))
    return false;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    if (!restore_kind(r, (fzip_kind_t)k, error))
      return false;
  }
  return true;
}

/* ---- the run ---------------------------------------------------------- */

/* The job ends FAILED now although its rollback has not finished: the
 * client is told (status and message), and the job stays runnable with
 * phase PHASE_CLEANUP_PENDING so the next claim, after the lease, retries
 * the rollback.  The import is still pending in the store, so readers see
 * none of it meanwhile.  Returns false: the run stopped early. */
static bool fail_cleanup_pending(run_t *r, const fzip_error_t *cause, const char *phase,
                                 const fzip_error_t *rollback_error, fzip_error_t *error) {
  fzip_error_t err;
  char msg[FZIP_ERROR_MESSAGE_MAX], cause_msg[FZIP_ERROR_MESSAGE_MAX],
      rollback_msg[FZIP_ERROR_MESSAGE_MAX];

  r->stop = false;
  snprintf(msg, sizeof msg, "%s; the rollback is not finished (%s) and is retried in the "
           "background; none of this import is visible",
           job_public_message(cause_msg, sizeof cause_msg, cause),
           job_public_message(rollback_msg, sizeof rollback_msg, rollback_error));
  r->job->updated_at = r->job->completed_at = fzip_now_ms();
  fzip_error_clear(&err);
  if (!job_set_status(&r->job->base, &import_job_kind, S(FAILED), &err) ||
      !job_msg_set_error(&r->job->base, cause, phase) ||
      !import_set_phase(r->job, IMPORT_PHASE_CLEANUP_PENDING) ||
      !job_msg_add_event(&r->job->base, "failed", msg, JOB_EVENTS_MAX) ||
      !job_ctx_save_job(r->jctx, &import_job_kind, &r->job->base, true, &err))
    fzip_log(FZIP_LOG_ERROR, "import", "could not record the failure; the job will be retried",
             "import", r->job->import_id, "error", err.message, NULL);
  fzip_log(FZIP_LOG_ERROR, "import", "rollback failed; the job ended FAILED and the cleanup "
           "will be retried", "import", r->job->import_id, "error", rollback_error->message,
           NULL);
  *error = *rollback_error;
  return false;
}

/* Ends a run that failed after writing began: roll back, then FAILED (or
 * CANCELLED).  If the rollback itself fails the job still ends FAILED for
 * the client, and the cleanup is retried (fail_cleanup_pending). */
static bool roll_back_and_end(run_t *r, int status, const fzip_error_t *cause_in,
                              fzip_error_t *error) {
  fzip_error_t cause = *cause_in; /* it may be r->save_error, which the saves below reuse */
  char failed_in[64];

  snprintf(failed_in, sizeof failed_in, "%s", r->job->current_phase ? r->job->current_phase : "");
  r->stop = false; /* saves are needed again to finish */
  if (import_set_phase(r->job, IMPORT_PHASE_ROLLING_BACK))
    save(r, true);
  r->stop = false;
  if (!rollback(r, error))
    return fail_cleanup_pending(r, &cause, failed_in, error, error);
  return fail_job_in(r, status, &cause, failed_in, error);
}

static bool abort_run(run_t *r, const fzip_error_t *cause, fzip_error_t *error) {
  bool cancelled = job_ctx_stop_reason(r->jctx, cause) == JOB_STOP_CANCEL;
  return roll_back_and_end(r, cancelled ? S(CANCELLED) : S(FAILED), cause, error);
}

/* A job that already ended FAILED but whose rollback did not finish:
 * retry it, and end the job for good once it succeeds. */
static bool finish_cleanup(run_t *r, fzip_error_t *error) {
  if (!rollback(r, error))
    return false; /* still pending: the next claim tries again */
  return finish(r, S(FAILED), "cleaned_up",
                "the rollback of the failed import finished", error);
}

/* A job found PROCESSING was interrupted: finish its commit if it got
 * there, else roll it back.  A job with a cleanup pending retries it.
 * Any other job whose tag is still pending in the store (a restart of a
 * job whose cleanup had not run) is rolled back before it goes on.
 * *done says the job ended here. */
static bool recover(run_t *r, bool *done, fzip_error_t *error) {
  bool pending = false;

  *done = false;
  if (import_phase_of(r->job) == IMPORT_PHASE_CLEANUP_PENDING && r->job->status == S(FAILED)) {
    *done = true;
    return finish_cleanup(r, error);
  }
  if (r->job->status != S(PROCESSING)) {
    if (!store_import_is_pending(&pending, r->env->store, r->user, r->job->import_id, error))
      return false;
    return !pending || rollback(r, error);
  }
  if (import_phase_of(r->job) == IMPORT_PHASE_COMMITTING) {
    if (!commit(r, error))
      return false;
    *done = true;
    return finish(r, S(COMPLETED), "completed",
                  "import committed (finished after an interruption)", error);
  }
  if (!rollback(r, error))
    return false;
  /* Everything it wrote is undone; it ends FAILED and the user may start
   * it again (StartImport accepts FAILED jobs). */
  {
    fzip_error_t c;
    fzip_error_set(&c, FZIP_DOMAIN_JOB, FZIP_ERR_ABORTED,
                   "the import was interrupted (server stopped or lost its lease) and was "
                   "rolled back; start it again");
    *done = true;
    return fail_job(r, S(FAILED), &c, error);
  }
}

/* A restore stopped by `err`: a job that is not this worker's to end is
 * left to whoever claims it next (which rolls it back); any other stop
 * rolls back here and ends the job. */
static bool stopped_restoring(run_t *r, const fzip_error_t *err, fzip_error_t *error) {
  if (job_ctx_stop_reason(r->jctx, err) == JOB_STOP_LEAVE) {
    *error = *err;
    return false;
  }
  return abort_run(r, err, error);
}

/* After the restore, whose batches, spool buffers and store caches go back
 * first: the analytics tables are the import's largest allocation. */
static bool regenerate_analytics(run_t *r, uint32_t *types, fzip_error_t *error) {
  store_release_memory(r->env->store);
  return analytics_regenerate(types, r->env->store, r->user, r->job->import_id, error);
}

/* Pending before the first write: readers see nothing of the import
 * until the commit's flip. */
static bool begin_writing(run_t *r, fzip_error_t *error) {
  if (!store_import_begin(r->env->store, r->user, r->job->import_id, error))
    return false;
  r->began = true;
  return true;
}

/* After the entities and files were restored: the analytics, the marks
 * an undo checks, the commit. */
static bool after_restore(run_t *r, fzip_error_t *error) {
  fzip_error_t err;
  uint32_t analytics = 0; /* analytics_regenerate's types */

  fzip_error_clear(&err);
  if (!regenerate_analytics(r, &analytics, &err)) {
    if (!fzip_error_is_set(&err))
      err = r->save_error;
    return stopped_restoring(r, &err, error);
  }
  if (!fill_result(r, analytics))
    return fzip_error_oom(error, NULL);
  /* What an undo will be checked against, saved with the commit point. */
  if (r->env->undo_window_ms > 0 &&
      !import_undo_record_marks(r->job, r->env->store, r->user, &err))
    return stopped_restoring(r, &err, error);
  /* The commit point: once "committing" is saved, an interruption finishes
   * the commit instead of rolling back. */
  r->job->progress = 99;
  if (!set_phase(r, S(PROCESSING), IMPORT_PHASE_COMMITTING, &err))
    return stopped_restoring(r, &err, error);
  if (!commit(r, error))
    return false; /* retried from "committing" by the next claim */
  return finish(r, S(COMPLETED), "completed", "import committed", error);
}

/* The restore after a passed validation, from the spool. */
static bool run_restore(run_t *r, fzip_error_t *error) {
  fzip_error_t err;

  fzip_error_clear(&err);
  if (!set_phase(r, S(PROCESSING), IMPORT_PHASE_RESTORING, &err) || !begin_writing(r, &err) ||
      !restore_all(r, &err)) {
    if (!fzip_error_is_set(&err))
      err = r->save_error;
    return stopped_restoring(r, &err, error);
  }
  return after_restore(r, error);
}

/* ---- restoring beside the validation ---------------------------------- */

/* How often the job thread, once the validation passed, looks whether
 * the restore thread is done (and saves progress, keeps the lease). */
#define RESTORER_POLL_MS 20

/* Whether the restore can run beside the validation (docs/IMPORT.md
 * "Restoring while validating"): an import without RestoreOptions into a
 * user who has no entity of any kind.  Then nothing the validation finds
 * out changes what the restore writes: every entity is new (no conflict,
 * no diff), none is left out or given a new id; a package it refuses
 * costs a rollback of writes no reader saw.  Into a user with data the
 * validation's conflicts and diff decide what is written, so it runs
 * first. */
static bool restore_beside(run_t *r, const pkgv_options_t *o, bool *yes, fzip_error_t *error) {
  *yes = false;
  if (r->job->restore)
    return true;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    bool any = true;
    if (!o->any(o->exists_ctx, &any, (fzip_kind_t)k, error))
      return false;
    if (any)
      return true;
  }
  *yes = true;
  return true;
}

/* The restore thread: what restore_all does after a validation, fed by
 * this one.  A failure abandons the feed, so the validation goes on to
 * its verdict without waiting for it. */
static void *restorer_main(void *arg) {
  run_t *r = arg;

  fzip_error_clear(&r->restore_error);
  r->restore_ok = restore_all(r, &r->restore_error);
  if (!r->restore_ok)
    import_feed_abandon(r->feed);
  atomic_store(&r->restorer_done, true);
  return NULL;
}

/* PROCESSING from here on, phase "validating": the import writes (pending)
 * while the validation reads, so a cancel is the worker's to carry out
 * with a rollback, and a job found PROCESSING after a crash is rolled
 * back (recover). */
static bool start_restore_beside(run_t *r, fzip_error_t *error) {
  int rc;

  if (!import_feed_new(&r->feed, feed_waiting, r, error) ||
      !set_phase(r, S(PROCESSING), IMPORT_PHASE_VALIDATING, error) || !begin_writing(r, error))
    return false;
  r->as_read = true; /* feed_sink sanitized what needed it */
  atomic_store(&r->restorer_done, false);
  if ((rc = pthread_create(&r->restorer, NULL, restorer_main, r)) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "starting the restore thread: %s", strerror(rc));
  r->restorer_started = true;
  return true;
}

/* Ends the restore thread, halting it first unless it is to finish what
 * it was fed; once. */
static void join_restorer(run_t *r, bool halt) {
  if (!r->restorer_started)
    return;
  if (halt)
    import_feed_halt(r->feed);
  pthread_join(r->restorer, NULL);
  r->restorer_started = false;
}

/* The validation passed: the restore thread finishes what it was fed
 * while this one keeps the lease and shows the progress. */
static bool wait_restorer(run_t *r, fzip_error_t *error) {
  while (!atomic_load(&r->restorer_done)) {
    fzip_sleep_ms(RESTORER_POLL_MS);
    if (!save_restore_progress(r) || on_cancel(r)) {
      stop_cause(r, error);
      join_restorer(r, true);
      return false;
    }
  }
  join_restorer(r, false);
  if (!r->restore_ok) {
    *error = r->restore_error;
    return false;
  }
  return true;
}

/* The validation's verdict, with the restore beside it: a refused package
 * is rolled back and ends VALIDATION_FAILED as it would have without
 * writing; a passed one waits for the restore, then goes on as usual. */
static bool finish_beside(run_t *r, bool passed, fzip_error_t *error) {
  fzip_error_t err;

  fzip_error_clear(&err);
  if (!passed) {
    join_restorer(r, true);
    return roll_back_and_end(r, S(VALIDATION_FAILED), &r->save_error, error);
  }
  r->job->progress = job_progress_clamp(r->job->progress, 30);
  if (!set_phase(r, S(PROCESSING), IMPORT_PHASE_RESTORING, &err) || !wait_restorer(r, &err)) {
    join_restorer(r, true);
    if (!fzip_error_is_set(&err))
      err = r->save_error;
    return stopped_restoring(r, &err, error);
  }
  return after_restore(r, error);
}

/* Validation and, unless validate-only, the restore. */
static bool run_job(run_t *r, fzip_error_t *error) {
  fzip_error_t err;
  bool passed = false;

  fzip_error_clear(&err);
  if (!r->job->started_at)
    r->job->started_at = fzip_now_ms();
  if (!set_phase(r, S(VALIDATING), IMPORT_PHASE_FETCHING, &err) || !fetch_package(r, &err) ||
      !set_phase(r, S(VALIDATING), IMPORT_PHASE_VALIDATING, &err) ||
      !validate(r, &passed, &err)) {
    job_stop_t why;
    if (!fzip_error_is_set(&err))
      err = r->save_error;
    if (r->began) { /* the restore beside it may have written */
      join_restorer(r, true);
      return stopped_restoring(r, &err, error);
    }
    why = job_ctx_stop_reason(r->jctx, &err);
    if (why == JOB_STOP_LEAVE) {
      *error = err;
      return false;
    }
    r->stop = false;
    return fail_job(r, why == JOB_STOP_CANCEL ? S(CANCELLED) : S(FAILED), &err, error);
  }
  if (r->began)
    return finish_beside(r, passed, error);
  if (!passed)
    return fail_job(r, S(VALIDATION_FAILED), &r->save_error, error);
  if (r->job->validate_only)
    return finish(r, S(VALIDATION_PASSED), "validation_passed",
                  "validate-only: nothing was written", error);
  r->job->progress = job_progress_clamp(r->job->progress, 30);
  return run_restore(r, error);
}

/* ---- undo (import_undo.h) --------------------------------------------- */

/* An undo refused (or cancelled) before anything changed: the job is
 * COMPLETED again, with the reason as its error, its window and marks as
 * they were (the record expires at the window's end again).  completed_at
 * stays the import's. */
static bool undo_refused(run_t *r, const fzip_error_t *cause, fzip_error_t *error) {
  char public[FZIP_ERROR_MESSAGE_MAX];

  r->stop = false;
  fzip_log(FZIP_LOG_WARN, "import", "undo refused", "import", r->job->import_id, "error",
           cause->message, NULL);
  r->job->updated_at = fzip_now_ms();
  if (!job_set_status(&r->job->base, &import_job_kind, S(COMPLETED), error))
    return false;
  if (!job_msg_set_error(&r->job->base, cause, r->job->current_phase) ||
      !job_msg_set_str(&r->job->current_phase, "completed") ||
      !job_msg_add_event(&r->job->base, "undo_refused",
                         job_public_message(public, sizeof public, cause), JOB_EVENTS_MAX))
    return fzip_error_oom(error, NULL);
  return job_ctx_finish_job(r->jctx, &import_job_kind, &r->job->base, r->job->undo_until,
                            error);
}

/* An UNDOING job: check, then (phase "undoing" saved: from here on a rerun
 * finishes the undo, never refuses it) put the before-state back. */
static bool run_undo(run_t *r, fzip_error_t *error) {
  fzip_error_t err;
  store_rollback_stats_t st = {0};
  char buf[96];

  fzip_error_clear(&err);
  if (import_phase_of(r->job) != IMPORT_PHASE_UNDOING) {
    if (job_ctx_cancel_requested(r->jctx)) {
      fzip_error_set(&err, FZIP_DOMAIN_JOB, FZIP_ERR_CANCELLED, "undo cancelled by the user");
      return undo_refused(r, &err, error);
    }
    if (!import_undo_check(r->job, r->env->store, r->user, &err) ||
        !set_phase(r, S(UNDOING), IMPORT_PHASE_UNDOING, &err)) {
      if (job_ctx_stop_reason(r->jctx, &err) == JOB_STOP_LEAVE) {
        *error = err;
        return false;
      }
      return undo_refused(r, &err, error);
    }
  }
  if (!import_undo_apply(&st, r->job, r->env->store, r->user, error))
    return fzip_error_prefix(error, "undoing import %s", r->job->import_id); /* next claim */
  snprintf(buf, sizeof buf, "restored=%" PRIu64 " deleted=%" PRIu64, st.restored, st.deleted);
  if (!job_msg_add_event(&r->job->base, "rolled_back", buf, JOB_EVENTS_MAX))
    return fzip_error_oom(error, NULL);
  r->job->progress = 100;
  return finish(r, S(UNDONE), "undone", "import undone: the data is as it was before it",
                error);
}

bool import_run(job_ctx_t *jctx, void *data, fzip_error_t *error) {
  run_t *r = calloc(1, sizeof *r);
  ProtobufCMessage *msg = NULL;
  bool ok = false, done = false;

  if (!r)
    return fzip_error_oom(error, NULL);
  r->jctx = jctx;
  r->env = data;
  snprintf(r->user, sizeof r->user, "%s", job_ctx_record(jctx)->user_id);
  fzip_error_clear(&r->save_error);
  if (!job_body_unpack(&msg, job_ctx_record(jctx)->body, &fzip__v1__import_job__descriptor, NULL,
                       error))
    goto out;
  r->job = (import_job_t *)msg;
  if (r->job->status == S(UNDOING)) {
    ok = run_undo(r, error);
    goto out;
  }
  if (!recover(r, &done, error))
    goto out;
  if (done) {
    ok = true;
    goto out;
  }
  if (job_ctx_cancel_requested(jctx)) {
    fzip_error_t c;
    fzip_error_set(&c, FZIP_DOMAIN_JOB, FZIP_ERR_CANCELLED, "cancelled by the user");
    ok = fail_job(r, S(CANCELLED), &c, error);
    goto out;
  }
  ok = run_job(r, error);
out:
  join_restorer(r, true); /* ended on every path above; this is the backstop */
  if (r->path[0])
    unlink(r->path);
  if (msg)
    protobuf_c_message_free_unpacked(msg, NULL);
  import_diff_destroy(r->diff);
  import_map_destroy(r->map);
  pkg_spool_destroy(r->spool);
  import_feed_destroy(r->feed);
  free(r);
  return ok;
}
