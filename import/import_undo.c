/*
 * import_undo: undoing a COMPLETED import (see import_undo.h).
 *
 * The store does the data side (store_import_undo_check, store_import_undo,
 * store_import_forget); this module keeps the job's side of it: the marks
 * an undo is checked against, the window, and the order of closing the
 * window before forgetting, which is what makes a forget and an undo
 * exclude each other without a lock.
 */
#include "import_undo.h"

#include <stdlib.h>
#include <string.h>

#include "fzip_failpoint.h"
#include "fzip_util.h"
#include "import_run.h"
#include "job_body.h"
#include "job_kind.h"

#define S(name) FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_##name

typedef Fzip__V1__ImportJob import_job_t;

/* Whether `key` is "<...>/<import_id>": a blob the import itself wrote. */
static bool written_by(const char *key, const char *import_id) {
  size_t kl = strlen(key), il = strlen(import_id);
  return kl > il && strcmp(key + kl - il, import_id) == 0 && key[kl - il - 1] == '/';
}

bool import_visit_file(void *ctx, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error) {
  import_visit_t *v = ctx;
  const char *key = NULL;
  size_t ulen = strlen(v->user);
  bson_iter_t it;

  /* Tests slow the commit's walk over the stash, and the rollback's (an
   * undo's) over the imported documents, down here to kill fzipd inside
   * them. */
  if (!fzip_failpoint(v->imported ? "import.rollback_visit" : "import.commit_visit", error))
    return false;
  if (kind != FZIP_KIND_TRANSACTION_FILE)
    return true;
  /* An imported s3Key could name anything: only the user's own blobs. */
  if (!bson_iter_init_find(&it, doc, "s3Key") || !BSON_ITER_HOLDS_UTF8(&it))
    return true;
  key = bson_iter_utf8(&it, NULL);
  if (strncmp(key, v->user, ulen) != 0 || key[ulen] != '/')
    return true;
  if (v->imported && !written_by(key, v->import_id))
    return true;
  /* A replaced version's blob is its own: a merge that keeps the stored
   * bytes copies them to the import's blob (import_diff.h). */
  return store_blob_delete(v->store, STORE_BUCKET_FILES, key, error);
}

/* ---- marks ------------------------------------------------------------ */

static void free_marks(import_job_t *job) {
  for (size_t i = 0; i < job->n_undo_marks; i++)
    free(job->undo_marks[i]);
  free(job->undo_marks);
  job->undo_marks = NULL;
  job->n_undo_marks = 0;
}

bool import_undo_record_marks(import_job_t *job, store_t *store, const char *user,
                              fzip_error_t *error) {
  store_import_marks_t m;

  if (!store_import_marks(&m, store, user, job->import_id, error))
    return false;
  free_marks(job);
  job->undo_marks = calloc(FZIP_KIND_COUNT, sizeof *job->undo_marks);
  if (!job->undo_marks)
    return fzip_error_oom(error, "undo marks");
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    Fzip__V1__UndoMark *mark = calloc(1, sizeof *mark);
    if (!mark)
      return fzip_error_oom(error, "undo marks");
    fzip__v1__undo_mark__init(mark);
    mark->kind = (Fzip__V1__EntityKind)(k + 1); /* EntityKind is fzip_kind_t + 1 */
    mark->documents = (int64_t)m.tagged[k];
    mark->previous_versions = (int64_t)m.kept[k];
    job->undo_marks[job->n_undo_marks++] = mark;
  }
  return true;
}

static void expected_marks(store_import_marks_t *out, const import_job_t *job) {
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < job->n_undo_marks; i++) {
    int k = (int)job->undo_marks[i]->kind - 1;
    if (k >= 0 && k < FZIP_KIND_COUNT) {
      out->tagged[k] = (uint64_t)job->undo_marks[i]->documents;
      out->kept[k] = (uint64_t)job->undo_marks[i]->previous_versions;
    }
  }
}

/* ---- the undo --------------------------------------------------------- */

bool import_undo_allowed(const import_job_t *job, int64_t now_ms, fzip_error_t *error) {
  if (job->status != S(COMPLETED))
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "import %s is %s: only a COMPLETED import can be undone",
                          job->import_id,
                          job_status_name(&import_job_kind, (int)job->status));
  if (job->undo_until <= now_ms || job->n_undo_marks == 0)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                          "import %s can no longer be undone: its undo window has passed "
                          "(--import-undo-window-hours) or it had none",
                          job->import_id);
  return true;
}

bool import_undo_check(const import_job_t *job, store_t *store, const char *user,
                       fzip_error_t *error) {
  store_import_marks_t expected;

  expected_marks(&expected, job);
  return store_import_undo_check(store, user, job->import_id, &expected, error);
}

bool import_undo_apply(store_rollback_stats_t *stats, const import_job_t *job, store_t *store,
                       const char *user, fzip_error_t *error) {
  import_visit_t v = {store, user, job->import_id, true};
  return store_import_undo(stats, store, user, job->import_id, import_visit_file, &v, error);
}

bool import_undo_forget(store_t *store, const char *user, const char *import_id,
                        fzip_error_t *error) {
  import_visit_t v = {store, user, import_id, false};
  return store_import_forget(NULL, store, user, import_id, import_visit_file, &v, error);
}

/* ---- the end of the window -------------------------------------------- */

/* Closes the window on the record: no UndoImport takes the job from this
 * save on (one that took it first made the save fail ABORTED). */
static bool close_window(store_t *store, store_job_t *rec, import_job_t *job, int64_t now_ms,
                         fzip_error_t *error) {
  job->undo_until = 0;
  free_marks(job);
  return job_store_unowned(store, &import_job_kind, rec, &job->base, now_ms, false, error);
}

static bool unpack(import_job_t **job, const store_job_t *rec, fzip_error_t *error) {
  ProtobufCMessage *msg = NULL;
  if (!job_body_unpack(&msg, rec->body, &fzip__v1__import_job__descriptor, NULL, error))
    return false;
  *job = (import_job_t *)msg;
  return true;
}

bool import_undo_expire(store_t *store, store_job_t *rec, int64_t now_ms, int64_t retention_ms,
                        bool *handled, fzip_error_t *error) {
  import_job_t *job = NULL;
  bool ok = false;

  *handled = false;
  if (rec->runnable)
    return true;
  if (!unpack(&job, rec, error))
    return true; /* unreadable: the default expiry deletes it */
  if (job->status != S(COMPLETED)) {
    ok = true;
    goto done;
  }
  if (job->undo_until != 0 || job->n_undo_marks > 0) {
    int64_t keep_until = job->completed_at + retention_ms;
    if (keep_until > now_ms)
      rec->expires_at = keep_until;
    if (!close_window(store, rec, job, now_ms, error)) {
      /* Taken by an UndoImport (or changed) meanwhile: the next pass
       * looks again at what it has become. */
      ok = error->code == FZIP_ERR_ABORTED;
      *handled = ok;
      if (ok)
        fzip_error_clear(error);
      goto done;
    }
  }
  /* Always: a pass that stopped between the close and here left a stash
   * behind, and forgetting nothing is one cheap query. */
  if (!import_undo_forget(store, rec->user_id, rec->job_id, error))
    goto done;
  *handled = rec->expires_at > now_ms;
  ok = true;
done:
  if (job)
    protobuf_c_message_free_unpacked(&job->base, NULL);
  return ok;
}

bool import_undo_before_delete(store_t *store, store_job_t *rec, fzip_error_t *error) {
  import_job_t *job = NULL;
  bool ok = false;

  if (!unpack(&job, rec, error))
    return true; /* unreadable: nothing of ours to forget */
  if (job->status != S(COMPLETED)) {
    ok = true;
    goto done;
  }
  if ((job->undo_until != 0 || job->n_undo_marks > 0) &&
      !close_window(store, rec, job, fzip_now_ms(), error))
    goto done;
  ok = import_undo_forget(store, rec->user_id, rec->job_id, error);
done:
  protobuf_c_message_free_unpacked(&job->base, NULL);
  return ok;
}
