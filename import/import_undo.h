/*
 * import_undo: undoing a COMPLETED import within its undo window
 * (docs/IMPORT.md "Undo").
 *
 * An import committed with a window (--import-undo-window-hours > 0) keeps
 * its stash: the versions it replaced, and the file bytes they name.  Its
 * job records what the import left in the store (ImportJob.undo_marks,
 * store_import_marks) and until when it may be undone (undo_until).  An
 * undo checks the store still matches the marks (nothing the import wrote
 * was changed or deleted since), then puts the before-state back with the
 * store's own rollback (store_import_undo).  When the window ends, the
 * reaper (import_undo_expire) or a DeleteImport (import_undo_before_delete)
 * first closes it on the job record, version-checked, so that an UndoImport
 * racing it either wins or is refused, and only then forgets the stash.
 */
#ifndef FZIP_IMPORT_UNDO_H
#define FZIP_IMPORT_UNDO_H

#include <stdbool.h>
#include <stdint.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_error.h"
#include "store.h"

/* A store_visit_fn for an import's rollback, undo and forget: deletes the
 * file blob a transaction-file version names, if it is one of `user`'s.
 * `imported` (rollback, undo): only blobs this import wrote, named
 * "<user>/<fileId>/<import_id>"; otherwise (forget) the old versions'. */
typedef struct {
  store_t *store;
  const char *user;
  const char *import_id;
  bool imported;
} import_visit_t;

bool import_visit_file(void *ctx, fzip_kind_t kind, const bson_t *doc, fzip_error_t *error);

/* Sets job->undo_marks to what the import `job` left in the store now
 * (call it while the import is still pending, before its commit point). */
bool import_undo_record_marks(Fzip__V1__ImportJob *job, store_t *store, const char *user,
                              fzip_error_t *error);

/* Whether an UndoImport may take the job now: COMPLETED, with marks and
 * undo_until > now_ms.  FAILED_PRECONDITION naming the reason otherwise. */
bool import_undo_allowed(const Fzip__V1__ImportJob *job, int64_t now_ms, fzip_error_t *error);

/* The worker's check before anything changes: store_import_undo_check
 * against the job's marks. */
bool import_undo_check(const Fzip__V1__ImportJob *job, store_t *store, const char *user,
                       fzip_error_t *error);

/* Puts the before-state back (store_import_undo, deleting the file blobs
 * the import wrote); idempotent.  *stats may be NULL. */
bool import_undo_apply(store_rollback_stats_t *stats, const Fzip__V1__ImportJob *job,
                       store_t *store, const char *user, fzip_error_t *error);

/* Forgets an import's stash, deleting the old file blobs it kept. */
bool import_undo_forget(store_t *store, const char *user, const char *import_id,
                        fzip_error_t *error);

/* The reaper's step for an expired import that is not running.  A
 * COMPLETED one: its window is closed on the record (version-checked;
 * the record then stays until completed_at + retention_ms) and its stash
 * forgotten; *handled when the record stays, else the default expiry
 * deletes it.  Any other: *handled false. */
bool import_undo_expire(store_t *store, store_job_t *rec, int64_t now_ms, int64_t retention_ms,
                        bool *handled, fzip_error_t *error);

/* Before a DeleteImport removes a COMPLETED job: closes its window
 * (ABORTED if the record changed meanwhile: the caller retries) and
 * forgets its stash. */
bool import_undo_before_delete(store_t *store, store_job_t *rec, fzip_error_t *error);

#endif
