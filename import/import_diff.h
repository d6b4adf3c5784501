/*
 * import_diff: the restore's half of the preview as a diff (pkg/pkg_diff.h,
 * docs/IMPORT.md "Preview" and "Merge strategies").
 *
 * Before a batch of the package's entities is written, import_diff_batch
 * fetches the user's versions of them (store_entity_get_many: committed
 * data, this pending import's own writes hidden) and judges each with
 * pkgd_judge under the job's strategy, exactly as the validator's preview
 * did.  Under overwrite and merge_fields an identical entity leaves the
 * batch: nothing is written, nothing stashed, its import tag stays the
 * old one.  Under merge_fields a changed entity is replaced by the merged
 * document, or leaves the batch when the merge takes nothing.  What stays
 * is written as before (tagged, the replaced version stashed), so
 * rollback and undo are unchanged.  The counts and the first diffs per
 * kind are kept for the job's ImportResult; they equal the preview's when
 * the data did not change in between.
 */
#ifndef IMPORT_DIFF_H
#define IMPORT_DIFF_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_entity.h"
#include "fzip_error.h"
#include "pkg_validate.h"
#include "store.h"

typedef struct import_diff import_diff_t;

/* For one import of `user_id` (both borrowed, outliving the object) under
 * `strategy`.  *out is the caller's. */
bool import_diff_new(import_diff_t **out, store_t *store, const char *user_id,
                     pkgv_strategy_t strategy, fzip_error_t *error);
void import_diff_destroy(import_diff_t *d); /* accepts NULL */

/* Judges docs[0..*n) (entities of `kind` as the restore stores them, the
 * caller's) against the stored versions and leaves in docs, in order,
 * what is to be written: entities that are new, changed ones under
 * overwrite, merged documents under merge_fields, existing ones under
 * skip_existing (the store skips them).  Documents left out or replaced
 * are destroyed; *n is updated.  side (may be NULL) is an array parallel
 * to docs that moves with it (a left-out document's side[i] is freed).
 * bytes_from[i] (for the documents left; the caller frees each) is NULL,
 * or, for a merged transaction file that keeps the stored bytes, the
 * user's blob holding them: the caller copies them to the import's own
 * blob and names that one (no two versions ever share a blob, so a
 * forgotten or undone version's blob can always be deleted).  Under
 * fail_on_conflict nothing is asked (validation refused every existing
 * id). */
bool import_diff_batch(import_diff_t *d, fzip_kind_t kind, bson_t **docs, char **side,
                       char **bytes_from, size_t *n, fzip_error_t *error);

/* How many batches asked the store for the stored versions so far: about
 * entities / STORE_BATCH_MAX, or their bytes / the restore's batch limit
 * (logged when the import ends; tests read it). */
size_t import_diff_batches(const import_diff_t *d);

/* Sets the identical / changed / merged counts of each of res's counts,
 * and, unless the strategy is fail_on_conflict, overwritten and skipped
 * (identical entities are in neither), then res->diffs.  False when out
 * of memory. */
bool import_diff_fill(const import_diff_t *d, Fzip__V1__ImportResult *res);

/* *out = a new array of *n EntityDiff messages (freed with their owner)
 * made from diffs[0..n_diffs): the validator's preview and the restore
 * record their diffs through this one function.  False when out of
 * memory (nothing allocated). */
bool import_diff_messages(Fzip__V1__EntityDiff ***out, size_t *n, const pkgv_diff_t *diffs,
                          size_t n_diffs);

#endif
