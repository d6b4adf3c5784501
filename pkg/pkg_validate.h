/*
 * pkg_validate: decides whether an uploaded FZIP package may be imported,
 * before anything is written, and previews what the import would do.
 *
 * pkgv_validate() opens the package with pkg_reader (archive and manifest
 * checks), then streams every kind in dependency order (accounts,
 * categories, file maps, transaction files, transactions, analytics) and
 * checks each entity against the format's schema (required fields, types,
 * enums, decimal strings, timestamp range, string lengths) and the
 * business rules (ids unique in the package, every reference resolving to
 * the package or to the manifest's external_references, no category
 * cycles, rule ids unique per category, regex rules that compile), then
 * the checksums of the data entries and of every files/ entry, the counts
 * the manifest declares, and that each transaction file has its bytes and
 * that they match its record's fileSize and sha256.  Fields the schema does
 * not define are warnings (schema.unknown_field); pkgv_entity_sanitize
 * removes them before anything is stored.
 * Given an "exists" callback (import/import_exists.h asks the store), it
 * fetches in batches of PKGV_EXISTS_BATCH_MAX the user's versions of the
 * package's entities and turns that into the preview as a diff
 * (pkg_diff.h): per kind how many would be created, are identical or
 * changed, and would be skipped, overwritten or merged under the
 * strategy, the first changed entities with their differing fields, and,
 * under fail_on_conflict, one error per existing id.
 *
 * Memory grows with the ids that others refer to (accounts, categories,
 * file maps, transaction files: kept as strings, each kind capped at
 * PKGV_REF_IDS_MAX), never with the transactions or analytics records,
 * nor with the size of an entity stream: entities are read one at a
 * time.  Their ids are checked unique by pkg_idrun (pkg_idrun.h), exactly
 * (whole ids, no fingerprints): while they arrive in ascending order, as
 * fzip's own packages list them, by comparing each with the one before
 * (nothing kept, nothing written); from the first id out of order on, by
 * an external sort: sorted runs of at most PKG_IDRUN_RUN_MAX ids
 * (PKG_IDRUN_RUN_BYTES, about 4.5 MiB of buffer) spilled to an unlinked
 * temporary file in options.temp_dir and merged at the end of the kind
 * (PKG_IDRUN_READ_BYTES of read buffer per run, 64 KiB at 1M ids),
 * after the ids before that first one are read again from the start of
 * the data file.  Such a duplicate is reported at the end of its kind, in
 * id order (same rule id.duplicate and reason, the id named; its entity
 * still counted in `valid` and, a second time, in the preview, which a
 * refused package does not act on) rather than where the entity is; an
 * id equal to the one just before it is reported at the entity.  A
 * temporary file that cannot be created, written or read fails the
 * validation (pkgv_validate returns false), it never passes a package.
 *
 * The restore step re-streams the same package in the same order through
 * pkg_reader: pkgr_open(), then for each kind k from 0 to FZIP_KIND_COUNT-1
 * pkgr_entities_open(k) / _next() / _finish(), and pkgr_file_open() for
 * the bytes of each transaction file.
 */
#ifndef PKG_VALIDATE_H
#define PKG_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "pkg_limits.h"
#include "pkg_reader.h"

#define PKGV_ISSUES_MAX 500          /* issues kept in a result; issues_total counts all */
#define PKGV_CONFLICT_IDS_MAX 100    /* conflicting ids kept in a result */
#define PKGV_REF_IDS_MAX 1000000     /* ids kept per referenced kind */
#define PKGV_TXN_IDS_MAX 20000000    /* ids per non-referenced kind (pkg_idrun's ids_max) */
#define PKGV_RULES_MAX 1000          /* rules of one category */
#define PKGV_REGEX_MAX 512           /* bytes of a regex rule's pattern */
#define PKGV_DECIMAL_MAX 40          /* characters of a decimal string */
#define PKGV_TIME_MIN (-2208988800000LL) /* 1900-01-01T00:00:00Z in epoch ms */
#define PKGV_TIME_MAX 7258118400000LL    /* 2200-01-01T00:00:00Z in epoch ms */
#define PKGV_RULE_NAME_MAX 40
#define PKGV_FIELD_MAX 128
#define PKGV_REASON_MAX 256
#define PKGV_PROGRESS_EVERY 1000     /* entities between progress reports / cancel polls */
#define PKGV_EXISTS_BATCH_MAX 1000   /* ids per exists call (a store batch, STORE_BATCH_MAX) */

/* Entities whose differing fields a result lists, per kind, and the fields
 * kept per entity (every kind has fewer top-level fields). */
#define PKGV_DIFFS_PER_KIND 10
#define PKGV_DIFF_FIELDS_MAX 32
#define PKGV_DIFF_FIELD_NAME_MAX 64

/* One package entity that differs from the user's version of it. */
typedef struct {
  int kind; /* fzip_kind_t */
  char entity_id[FZIP_ID_MAX + 1];
  size_t n_fields; /* fields that differ; the first PKGV_DIFF_FIELDS_MAX named */
  char fields[PKGV_DIFF_FIELDS_MAX][PKGV_DIFF_FIELD_NAME_MAX];
} pkgv_diff_t;

/* Values match fzip.v1.MergeStrategy minus one. */
typedef enum {
  PKGV_FAIL_ON_CONFLICT = 0,
  PKGV_SKIP_EXISTING,
  PKGV_OVERWRITE,
  PKGV_MERGE_FIELDS, /* field by field, docs/IMPORT.md "Merge strategies" */
} pkgv_strategy_t;

const char *pkgv_strategy_name(pkgv_strategy_t strategy); /* "fail_on_conflict" ... */

/* An issue as kept in the result (strings cut to their buffers). */
typedef struct {
  pkgr_severity_t severity;
  int kind; /* fzip_kind_t, or -1 */
  char rule[PKGV_RULE_NAME_MAX];
  char entry[PKGR_ENTRY_NAME_MAX + 1];
  char entity_id[FZIP_ID_MAX + 1];
  char field[PKGV_FIELD_MAX];
  char reason[PKGV_REASON_MAX];
} pkgv_issue_t;

typedef struct {
  uint64_t in_package;  /* entities read */
  uint64_t valid;       /* entities without an error */
  uint64_t warnings;    /* warning issues about this kind */
  uint64_t errors;      /* error issues about this kind */
  uint64_t created;     /* preview: ids the user does not have */
  uint64_t overwritten; /* preview: existing ids replaced (overwrite) */
  uint64_t skipped;     /* preview: existing ids left alone (skip_existing) */
  uint64_t identical;   /* preview: existing and equal to the package's */
  uint64_t changed;     /* preview: existing and different from the package's */
  uint64_t merged;      /* preview: merge_fields takes at least one field */
  uint64_t references_cleared; /* restore options: dangling references cleared */
  uint64_t dropped;     /* restore options: left out, a required reference dangles */
  uint64_t not_selected; /* restore options: left out by the selection */
} pkgv_counts_t;

/* How the package is mapped onto the user's data (fzip.v1.RestoreOptions);
 * the zero value is the default (every entity, own ids, dangling
 * references refused). */
typedef struct {
  bool as_copy;               /* every entity gets a new id */
  bool drop_dangling;         /* clear / leave out instead of refusing */
  uint32_t kinds;             /* bit (1u << fzip_kind_t) per kind kept; 0: all */
  const char *const *account_ids; /* only these accounts (n_account_ids > 0) */
  size_t n_account_ids;
} pkgv_restore_t;

/* Account ids a selection may name (fzip.v1.RestoreOptions.account_ids). */
#define PKGV_RESTORE_ACCOUNTS_MAX 1000

/* True when `restore` is not the defaults (NULL is the defaults). */
bool pkgv_restore_active(const pkgv_restore_t *restore);

/* Whether the selection keeps this entity of the package: its kind is in
 * `kinds` (0: all), and, with account_ids, an entity of a kind that has an
 * account field (fzip_entity.h: file maps, transaction files, transactions,
 * analytics; the accounts by their own id) whose field is set names one of
 * them.  Categories and entities without the field are kept.  Under
 * as_copy the package's analytics are never kept (the import regenerates
 * them for the copies).  The validator and the restore step both ask
 * this, so they agree. */
bool pkgv_selected(const pkgv_restore_t *restore, fzip_kind_t kind, const bson_t *doc);

/* A reference field of format 1.0 (docs/FORMAT.md "External references"):
 * `field` of an entity of kind `from` holds the id of a `to`; with `item`,
 * `field` is an array of objects whose `item` holds it
 * (transactions.categories[].categoryId).  `required`: the entity cannot
 * be restored without it (the schema's required fields). */
typedef struct {
  fzip_kind_t from;
  const char *field;
  const char *item;
  fzip_kind_t to;
  bool required;
} pkgv_ref_field_t;

/* The table of every reference field, *n rows, borrowed and static. */
const pkgv_ref_field_t *pkgv_ref_fields(size_t *n);
/* Its row for `field` of kind `from`; NULL if that field is no reference. */
const pkgv_ref_field_t *pkgv_ref_field(fzip_kind_t from, const char *field);

/* What validation under restore options found out about the references
 * of the selected entities, kept for the restore step so that it maps
 * each one the way validation counted it. */
typedef struct pkgv_refs pkgv_refs_t;

/* The entity `id` of kind `kind` is restored from the package (selected,
 * not dropped): under as_copy, references to it are remapped. */
bool pkgv_refs_in_package(const pkgv_refs_t *refs, fzip_kind_t kind, const char *id);
/* Neither in the selected part of the package nor in the user's data. */
bool pkgv_refs_dangling(const pkgv_refs_t *refs, fzip_kind_t kind, const char *id);
void pkgv_refs_destroy(pkgv_refs_t *refs); /* accepts NULL */

typedef struct {
  bool passed; /* no error issue at all */
  bool preview_from_store; /* false: no exists callback, everything counted as created */
  pkgv_counts_t counts[FZIP_KIND_COUNT];
  pkgv_issue_t *issues; /* the first n_issues found, in order found */
  size_t n_issues;
  uint64_t issues_total, errors_total, warnings_total;
  /* Members no spec row names (warnings schema.unknown_field, kept or not):
   * 0 means pkgv_entity_sanitize leaves every entity of the package as it is. */
  uint64_t unknown_fields;
  bool limit_error; /* an error issue broke a limit (rule limit.*), kept or not */
  char **conflicting_ids; /* "<kind>/<id>", the first n_conflicting_ids */
  size_t n_conflicting_ids;
  uint64_t conflicts_total;
  /* The preview as a diff: the first PKGV_DIFFS_PER_KIND changed entities
   * of each kind (package order) and their differing fields. */
  pkgv_diff_t *diffs;
  size_t n_diffs;
  bool has_info; /* the manifest was read: info is filled */
  pkgr_info_t info;
  uint64_t files_in_package; /* files/ entries */
  uint64_t file_bytes;       /* their bytes */
  /* With restore options (pkgv_restore_active): the references' verdicts
   * for the restore step; owned by the result (a caller that keeps it
   * sets the field to NULL), NULL without options. */
  pkgv_refs_t *refs;
} pkgv_result_t;

void pkgv_result_destroy(pkgv_result_t *result); /* accepts NULL */

/* What a progress call reports.  The declared figures are the manifest's
 * data_summary counts (0 where it gives none): untrusted, for a progress
 * bar until the validation has counted; a package whose data differs
 * from them is refused (rule manifest.count). */
typedef struct {
  const char *phase;          /* "archive", a kind name, "files" or "references" */
  uint64_t entities_done;     /* entities read so far, every kind */
  uint64_t entities_declared; /* the manifest's entity counts, summed */
  uint64_t files_declared;    /* the manifest's files_count */
} pkgv_progress_t;

/* Called every PKGV_PROGRESS_EVERY entities and at each phase and kind. */
typedef void (*pkgv_progress_fn)(void *ctx, const pkgv_progress_t *progress);
typedef bool (*pkgv_cancel_fn)(void *ctx); /* true stops with FZIP_ERR_CANCELLED */

/* The conflict step's question: exists[i] = whether the importing user
 * already has an entity of `kind` with id ids[i] (n <= PKGV_EXISTS_BATCH_MAX),
 * and, when docs is non-NULL, docs[i] = that entity as stored (NULL when
 * absent; the caller's, bson_destroy).  Asked with docs for the package's
 * ids of each kind (the preview as a diff, pkg_diff.h) and without for
 * references (which need only exist).  False with *error set stops the
 * validation, every docs[i] NULL. */
typedef bool (*pkgv_exists_fn)(void *ctx, bool *exists, bson_t **docs, fzip_kind_t kind,
                               const char *const *ids, size_t n, fzip_error_t *error);

/* Receives one entity of the package (pkgv_options_t.sink); known_only:
 * the validation found no field in it that format 1.0 does not define, so
 * pkgv_entity_sanitize would return it unchanged. */
typedef bool (*pkgv_sink_fn)(void *ctx, fzip_kind_t kind, const bson_t *doc, bool known_only,
                             fzip_error_t *error);

/* Asked once per kind before its entities are read, with exists_ctx:
 * *any = whether the importing user has any entity of `kind`.  When it has
 * none, every id of the kind counts as created without an exists call (or
 * the sanitised copy the diff would need): an import into an empty user
 * asks the store nothing per entity.  The answer is as current as the
 * per-batch calls it replaces, which the restore does not trust either
 * (fail_on_conflict writes refuse an existing id). */
typedef bool (*pkgv_any_fn)(void *ctx, bool *any, fzip_kind_t kind, fzip_error_t *error);

typedef struct {
  pkgv_exists_fn exists;   /* NULL: no conflict step (preview counts all as created) */
  pkgv_any_fn any;         /* NULL: the exists call is asked for every id */
  void *exists_ctx;
  pkgv_strategy_t strategy;
  const pkgv_restore_t *restore; /* NULL: the defaults */
  const pkgr_limits_t *limits; /* NULL: defaults */
  pkgv_progress_fn progress;   /* may be NULL */
  void *progress_ctx;
  pkgv_cancel_fn cancelled;    /* may be NULL */
  void *cancel_ctx;
  /* Where the duplicate-id check of ids out of order spills its sorted
   * runs (pkg_idrun.h); NULL: $TMPDIR, else /tmp. */
  const char *temp_dir;
  /* For tests: ids per sorted run, 0 (and at most): PKG_IDRUN_RUN_MAX;
   * small values make a small package span several runs. */
  size_t id_run_max;
  /* NULL, or called with every entity of the package as read (kind by
   * kind in ascending order, package order within a kind, whatever its
   * verdict) and sink_ctx: the import keeps them in a spool for a restore
   * that follows a passed validation (pkg_spool_put), or hands them to a
   * restore running beside it (import_feed_put).  False with *error set
   * stops the validation. */
  pkgv_sink_fn sink;
  void *sink_ctx;
} pkgv_options_t;

/* Validates the package at `path`.  Returns true when validation ran to a
 * verdict, *out (the caller's) saying passed or not and why; a refused
 * package is a successful validation with passed == false.  Returns false
 * only when it could not decide: unreadable file, out of memory, a failed
 * exists call, cancellation. */
bool pkgv_validate(pkgv_result_t **out, const char *path, const pkgv_options_t *options,
                   fzip_error_t *error);

/* Copies into `out` (an initialised, empty bson_t of the caller's) the
 * fields of `doc` that format 1.0 defines for `kind`, recursing into the
 * nested objects the schema describes (rules, assignments, mappings,
 * dateRange); fields it does not define (reported by pkgv_validate as
 * schema.unknown_field warnings) are left out, analytics' free-form
 * `data` is copied whole.  The restore step stores what this returns.
 * False (FZIP_DOMAIN_PACKAGE, RESOURCE_EXHAUSTED) if `out` cannot grow. */
bool pkgv_entity_sanitize(bson_t *out, fzip_kind_t kind, const bson_t *doc,
                          fzip_error_t *error);

/* The code a refused package's failure carries: RESOURCE_EXHAUSTED when
 * any of its error issues is a limit (pkgr_rule_is_limit), otherwise
 * FAILED_PRECONDITION.  Meaningless when result->passed. */
fzip_code_t pkgv_result_error_code(const pkgv_result_t *result);

/* The limits table (pkg_limits.h), *n rows, borrowed and static. */
const pkg_limit_t *pkgv_limits(size_t *n);

#endif
