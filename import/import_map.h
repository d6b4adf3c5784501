/*
 * import_map: how a package's entities are mapped onto the importing
 * user's data under fzip.v1.RestoreOptions (docs/IMPORT.md "Restore as a
 * copy", "Partial packages and selective import").
 *
 * The options are checked at the RPC boundary (import_map_check) and kept
 * in the job (import_map_set_options).  One run of the job makes one map:
 * the validator takes its pkgv_restore_t (import_map_restore), and hands
 * back what it found out about the references (pkgv_result_t.refs,
 * import_map_take_refs); the restore step then passes every stored
 * document through import_map_apply, which leaves out the entities the
 * selection does not keep or whose required reference dangles, clears the
 * optional references that dangle, and under as_copy gives every entity
 * and every reference to an entity of the package a new id (and leaves
 * out a transaction's transactionHash, a digest over the old accountId;
 * the package's analytics are not selected under as_copy, pkgv_selected:
 * the import regenerates them).  The same
 * rules (pkgv_selected, the validator's verdicts, the table
 * pkgv_ref_fields) decide in both steps, so the restore counts what the
 * preview counted.
 *
 * New ids are derived, not drawn: import_map_new_id hashes (import id,
 * kind, package id), so a reference maps to the id its target was given,
 * a rerun of an interrupted import maps the same way, and no id map is
 * held in memory.
 */
#ifndef IMPORT_MAP_H
#define IMPORT_MAP_H

#include <bson/bson.h>
#include <stdbool.h>

#include "fzip/v1/jobs.pb-c.h"
#include "fzip_entity.h"
#include "fzip_error.h"
#include "fzip_util.h"
#include "pkg_validate.h"

typedef struct import_map import_map_t;

/* Checks options a request carries (NULL: the defaults): kinds are known
 * EntityKind values, at most PKGV_RESTORE_ACCOUNTS_MAX account_ids, each
 * a valid id.  On a bad value *field (borrowed, static) names the field
 * for a google.rpc.BadRequest violation and *error is INVALID_ARGUMENT.
 * Every merge strategy is accepted with as_copy: nothing conflicts. */
bool import_map_check(const Fzip__V1__RestoreOptions *restore, const char **field,
                      fzip_error_t *error);

/* Replaces *job_restore (the job's, freed) with a copy of `restore`, or
 * NULL when it is NULL. */
bool import_map_set_options(Fzip__V1__RestoreOptions **job_restore,
                            const Fzip__V1__RestoreOptions *restore, fzip_error_t *error);

/* A map for one run of import `import_id` under the job's options
 * (`restore`, NULL: the defaults; borrowed, it must outlive the map).
 * Caller destroys. */
bool import_map_new(import_map_t **out, const Fzip__V1__RestoreOptions *restore,
                    const char *import_id, fzip_error_t *error);
void import_map_destroy(import_map_t *map); /* accepts NULL */

/* The options as pkgv_options_t.restore takes them (borrowed from the
 * map); NULL for a NULL map. */
const pkgv_restore_t *import_map_restore(const import_map_t *map);

/* Takes res->refs (sets it NULL): the validator's verdicts, which apply
 * maps references by.  No-op for a NULL map. */
void import_map_take_refs(import_map_t *map, pkgv_result_t *res);

/* The document the restore stores for an entity of `kind` (*doc, the
 * caller's): replaced by its mapped copy, or destroyed and set to NULL
 * when the entity is left out (not selected, or a required reference
 * dangles).  Counts what it does per kind.  Without options (or a NULL
 * map) *doc is left as it is. */
bool import_map_apply(import_map_t *map, fzip_kind_t kind, bson_t **doc, fzip_error_t *error);

/* Sets the counters apply keeps (references_cleared, dropped,
 * not_selected) in `counts` (its kind says which).  No-op for a NULL map. */
void import_map_counts(const import_map_t *map, Fzip__V1__EntityCounts *counts);

/* The id the entity of `kind` with package id `id` is stored under: a
 * new one (in `buf`) under as_copy, else `id` itself. */
const char *import_map_id(const import_map_t *map, fzip_kind_t kind, const char *id,
                          char buf[FZIP_UUID_LEN + 1]);

/* The id an entity of `kind` with package id `id` gets in a copy made by
 * import `import_id`: a UUID (version 8, RFC 9562) from the SHA-256 of
 * the three. */
void import_map_new_id(char out[FZIP_UUID_LEN + 1], const char *import_id, fzip_kind_t kind,
                       const char *id);

#endif
