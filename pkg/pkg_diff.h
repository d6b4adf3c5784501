/*
 * pkg_diff: how one entity of a package compares with the version the
 * importing user already has, and what each merge strategy makes of the
 * pair (docs/IMPORT.md "Preview" and "Merge strategies").
 *
 * The validator's preview (pkg_validate's conflict step) and the restore
 * (import/import_diff) both judge every existing entity through
 * pkgd_judge and count it with pkgd_count, so the preview's counts and
 * diffs are the real run's.
 *
 * Two versions are compared in their "comparable" form: the fields format
 * 1.0 defines (pkgv_entity_sanitize: a user id or any field the format
 * does not know is left out on both sides), without a transaction file's
 * s3Key, the name of the blob that holds its bytes, which differs by
 * design (each import writes its own blob); the bytes are compared
 * through the record's sha256 and fileSize instead.  One exception: a
 * transaction file whose stored record names no blob (its bytes were
 * missing from the package it came from) while the package's names one
 * (the package holds the bytes) is changed, field s3Key, so an overwrite
 * or a merge restores the missing bytes.  Top-level fields are
 * compared one by one; nested objects and arrays whole; numbers by value
 * (an int32 equals the same int64).
 */
#ifndef PKG_DIFF_H
#define PKG_DIFF_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "pkg_validate.h"

/* Differing field names kept per entity; every kind has fewer top-level
 * fields, so none is ever left out. */
#define PKGD_FIELDS_MAX PKGV_DIFF_FIELDS_MAX
#define PKGD_FIELD_NAME_MAX PKGV_DIFF_FIELD_NAME_MAX

typedef struct {
  size_t n_fields; /* top-level fields that differ */
  char fields[PKGD_FIELDS_MAX][PKGD_FIELD_NAME_MAX]; /* the first PKGD_FIELDS_MAX, in order */
} pkgd_diff_t;

typedef struct {
  bool identical;   /* no field differs: nothing to write */
  pkgd_diff_t diff; /* the differing fields (identical: none) */
  bool merged;      /* merge_fields: the merge takes at least one field */
} pkgd_verdict_t;

/* Judges `incoming` (the package's entity, as the restore would store
 * it: a transaction file names a blob exactly when the package holds its
 * bytes, see pkgd_file_as_restored) against `stored` (the user's version) under `strategy`.  Under
 * PKGV_MERGE_FIELDS, when the merge takes at least one field, *merged
 * (merged may be NULL: not wanted) becomes the document to write, the
 * caller's to bson_destroy; it is NULL otherwise.  False (out of memory,
 * an oversized document) with *error set. */
bool pkgd_judge(pkgd_verdict_t *out, bson_t **merged, fzip_kind_t kind,
                pkgv_strategy_t strategy, const bson_t *incoming, const bson_t *stored,
                fzip_error_t *error);

/* Adds one existing entity's verdict to the counts: identical or changed,
 * and what the strategy does with it: skip_existing skips every existing
 * entity; overwrite overwrites the changed ones; merge_fields merges the
 * changed ones whose merge takes a field and skips the others; an
 * identical entity is neither overwritten nor merged (nothing is
 * written).  fail_on_conflict counts identical/changed only (the caller
 * refuses the id). */
void pkgd_count(pkgv_counts_t *counts, pkgv_strategy_t strategy, const pkgd_verdict_t *verdict);

/* Appends (kind, id, d's fields) to diffs[0..*n_diffs) unless the kind
 * has PKGV_DIFFS_PER_KIND there already: the first changed entities of
 * each kind, in the order judged.  diffs has room for
 * PKGV_DIFFS_PER_KIND * FZIP_KIND_COUNT. */
void pkgd_keep(pkgv_diff_t *diffs, size_t *n_diffs, fzip_kind_t kind, const char *id,
               const pkgd_diff_t *d);

/* merge_fields, exactly: the package's entity is newer when it has an
 * updatedAt and the stored one has none or an earlier one.  Newer: every
 * field the package's entity has wins, fields only the stored one has
 * stay.  Not newer: the stored entity keeps every field it has and gains
 * those it lacks.  The id never changes.  A transaction file's s3Key
 * follows the bytes the merged record describes: the package's blob is
 * taken when the package names one and either the stored record names
 * none, or the merged sha256 is the package's and differs from the stored
 * one's, or (the package's record has no sha256, as the HouseF3 app's
 * never do) the merged fileSize is the package's and differs from the
 * stored one's; otherwise the stored blob stays.  `out` is an
 * initialised, empty bson_t of the caller's. */
bool pkgd_merge(bson_t *out, fzip_kind_t kind, const bson_t *incoming, const bson_t *stored,
                fzip_error_t *error);

/* The preview's form of a package's transaction file record `doc`: its
 * own s3Key (the app's name for the bytes, meaningless here) left out,
 * and a placeholder s3Key added when has_bytes (the package holds the
 * file's bytes), as the restore names the blob it writes.  `out` is an
 * initialised, empty bson_t of the caller's. */
bool pkgd_file_as_restored(bson_t *out, const bson_t *doc, bool has_bytes, fzip_error_t *error);

#endif
