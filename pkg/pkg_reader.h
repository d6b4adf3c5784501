/*
 * pkg_reader: opens an FZIP package (docs/FORMAT.md) for reading, safely.
 *
 * A package is an uploaded, untrusted zip.  pkgr_open() reads only the
 * central directory and the manifest, and refuses the package before any
 * entity is looked at when the archive itself is unsafe or unreadable:
 * not a zip, too many entries, an entry or the total too large, a
 * compression ratio typical of zip bombs (per entry, and all entries
 * against the real size of the file), entries whose bytes overlap (the
 * Fifield "better zip bomb": many entries sharing one deflate stream),
 * absolute or `..` paths, NUL bytes in names, links or other special
 * files, directory entries, entries outside the format, duplicate names,
 * encrypted entries, compression methods other than stored/deflate, a
 * missing or malformed manifest, unknown manifest keys, an entry without
 * a sha256 in the manifest (but see pkgr_info_t.design_flavour), or a
 * format version this build does not read.  Each problem found is
 * reported through the caller's issue callback with a stable rule name
 * (see "Validation" in docs/FORMAT.md), so one upload lists all archive
 * problems at once.
 *
 * A package the HouseF3 application wrote (camelCase manifest, gzipped
 * bare arrays data/<kind>.json.gz, no checksums) is read too: pkg_housef3
 * maps its manifest and each entity to format 1.0, so callers see 1.0
 * whatever the flavour (pkgr_info_t.flavour; FORMAT.md section 12).
 *
 * After a successful open the caller streams what it needs:
 *   - entities of one kind, one bson_t at a time, through pkg_jsonread,
 *     hashing the entry's bytes as they pass (pkgr_entities_*); the
 *     validator and the restore step both use it, in dependency order;
 *   - the bytes of one transaction file (pkgr_file_*), also hashed.
 * The checksum of an entry is known once the entry has been read to its
 * end: pkgr_entities_finish() and the last pkgr_file_read() compare it to
 * the manifest and fail with FZIP_ERR_DATA_LOSS on a mismatch.  No entry
 * is ever read into memory whole; the bytes actually inflated are counted,
 * and more (or fewer) than the entry's header declares are an error naming
 * the entry and both sizes (a lying header cannot inflate more).
 *
 * A pkgr_t and its iterators belong to one thread at a time.
 */
#ifndef PKG_READER_H
#define PKG_READER_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "fzip_util.h"
#include "pkg_jsonread.h"
#include "pkg_limits.h"
#include "pkg_writer.h"

/* Default limits (pkgr_limits_default): the table in pkg_limits.h. */
#define PKGR_ENTRIES_MAX PKG_ENTRIES_MAX
#define PKGR_ENTRY_NAME_MAX PKG_ENTRY_NAME_MAX
/* A manifest field path named in an issue ("data_summary.<key>"); longer
 * ones are cut, the issue still names the rule and the entry. */
#define PKGR_FIELD_PATH_MAX 64
#define PKGR_DATA_ENTRY_MAX PKG_DATA_FILE_MAX
#define PKGR_FILE_ENTRY_MAX PKG_FILE_ENTRY_MAX
#define PKGR_MANIFEST_MAX PKG_MANIFEST_MAX
#define PKGR_TOTAL_MAX PKG_TOTAL_UNCOMPRESSED_MAX
#define PKGR_RATIO_MAX PKG_COMPRESSION_RATIO_MAX
#define PKGR_RATIO_MIN_BYTES PKG_RATIO_MIN_BYTES
#define PKGR_READ_CHUNK (64 * 1024)        /* bytes read from libzip at a time */
/* A data entry of at least PKGR_AHEAD_MIN bytes is inflated and hashed
 * on a thread of its own (pkg_readahead), PKGR_AHEAD_BLOCKS blocks of
 * PKGR_AHEAD_BLOCK bytes ahead of its JSON parser. */
#define PKGR_AHEAD_MIN (4 * 1024 * 1024)
#define PKGR_AHEAD_BLOCK (128 * 1024)
#define PKGR_AHEAD_BLOCKS 4
#define PKGR_VERSION_MAX 32                /* bytes of a version string kept */
#define PKGR_INFO_STRING_MAX 256           /* bytes of other informational strings kept */
#define PKGR_FLAVOUR_MAX 16
#define PKGR_FLAVOUR_FZIP "fzip"
#define PKGR_FLAVOUR_HOUSEF3 "housef3"

typedef struct {
  uint64_t max_entries;
  uint64_t max_files; /* files/ entries */
  uint64_t max_data_entry;
  uint64_t max_file_entry;
  uint64_t max_manifest;
  uint64_t max_total;
  uint64_t max_ratio;
  pkgjr_limits_t json; /* applied to data entries; the manifest gets max_manifest */
} pkgr_limits_t;

void pkgr_limits_default(pkgr_limits_t *limits);

/* Values match fzip.v1.ValidationIssue.Severity. */
typedef enum { PKGR_SEVERITY_ERROR = 1, PKGR_SEVERITY_WARNING = 2 } pkgr_severity_t;

/* One finding.  Strings are borrowed for the duration of the callback;
 * those that do not apply are NULL.  `rule` is a stable machine name
 * ("archive.path", "checksum.mismatch", "reference.dangling", ...). */
typedef struct {
  pkgr_severity_t severity;
  const char *rule;
  const char *entry;     /* zip entry, e.g. "data/transactions.json" */
  int kind;              /* fzip_kind_t, or -1 */
  const char *entity_id;
  const char *field;     /* dotted path inside the entity or manifest */
  const char *reason;    /* one human sentence */
} pkgr_issue_t;

typedef void (*pkgr_issue_fn)(void *ctx, const pkgr_issue_t *issue);

/* What the manifest says about the package (informational strings are
 * cut to PKGR_INFO_STRING_MAX - 1 bytes; "" when absent). */
typedef struct {
  char format_version[PKGR_VERSION_MAX];
  int format_major, format_minor;
  int64_t export_timestamp_ms; /* 0 when absent */
  char source_user_id[PKGR_INFO_STRING_MAX]; /* never trusted for anything */
  char application_version[PKGR_INFO_STRING_MAX];
  char export_type[PKGR_INFO_STRING_MAX];
  bool has_count[FZIP_KIND_COUNT]; /* data_summary.<kind>_count present */
  uint64_t count[FZIP_KIND_COUNT];
  bool has_files_count;
  uint64_t files_count;
  /* The manifest has no package_format: a package in the layout of the
   * HouseF3 design document rather than one fzip wrote.  Only in this
   * flavour may a files/ entry lack a manifest checksum, and then only if
   * its transaction file record carries a sha256 (checked by pkg_validate
   * against the bytes): FORMAT.md section 8, "design flavour". */
  bool design_flavour;
  /* PKGR_FLAVOUR_FZIP (format 1.0, this one's design flavour included) or
   * PKGR_FLAVOUR_HOUSEF3: the HouseF3 application's own package, whose
   * camelCase manifest and gzipped bare arrays pkg_housef3 maps to 1.0
   * (FORMAT.md, "The HouseF3 flavour"); its entries have no checksums. */
  char flavour[PKGR_FLAVOUR_MAX];
  /* The manifest has an `incremental` object (FORMAT.md 15): the package
   * holds only what changed since its base, and data/deletions.json
   * (pkgr_deletions_*).  fzip's import refuses it; `fzip package apply`
   * makes base + chain one complete package (pkg_apply.h). */
  bool incremental;
  char base_export_id[PKGR_INFO_STRING_MAX];
  char base_package_sha256[FZIP_SHA256_HEX_LEN + 1]; /* of the base file as downloaded */
  int64_t base_change_seq, change_seq, chain_length;
} pkgr_info_t;

/* One files/<fileId>/<name> entry. */
typedef struct {
  const char *file_id;
  const char *name;  /* the last path component */
  const char *entry; /* the whole entry name */
  uint64_t size;     /* declared uncompressed size */
  bool has_checksum; /* the manifest gives its sha256 */
} pkgr_file_entry_t;

typedef struct pkgr pkgr_t;

/* Rules named "limit.*" are a bound of pkg_limits.h being exceeded: they
 * refuse a package with RESOURCE_EXHAUSTED rather than INVALID_ARGUMENT. */
bool pkgr_rule_is_limit(const char *rule);

/* Opens `path` read-only and runs the archive and manifest checks,
 * reporting each problem to on_issue (may be NULL).  On success *out is
 * the caller's (pkgr_destroy).  Fails with domain FZIP_DOMAIN_VALIDATION
 * (code RESOURCE_EXHAUSTED when the first error issue was a limit,
 * INVALID_ARGUMENT otherwise) when the package was refused, after at least
 * one error issue was reported; any other domain is a failure to try
 * (missing file, out of memory).
 * limits NULL: defaults; copied. */
bool pkgr_open(pkgr_t **out, const char *path, const pkgr_limits_t *limits,
               pkgr_issue_fn on_issue, void *issue_ctx, fzip_error_t *error);
void pkgr_destroy(pkgr_t *r); /* accepts NULL; no iterator may outlive it */

const pkgr_info_t *pkgr_info(const pkgr_t *r);       /* borrowed */
const bson_t *pkgr_manifest(const pkgr_t *r); /* borrowed: the parsed manifest but its checksums */
bool pkgr_has_kind(const pkgr_t *r, fzip_kind_t kind); /* data/<kind>.json(.gz) is present */
const char *pkgr_data_entry(fzip_kind_t kind);       /* "data/<kind>.json" */

/* files/ entries, sorted by file id; the pointers live as long as r. */
size_t pkgr_file_count(const pkgr_t *r);
const pkgr_file_entry_t *pkgr_file_at(const pkgr_t *r, size_t i);
const pkgr_file_entry_t *pkgr_file_find(const pkgr_t *r, const char *file_id); /* or NULL */
/* The file id is in the manifest's files_missing list (its bytes were not
 * available at export, so none are expected); in the HouseF3 flavour, which
 * has no such list, any file id without a files/ entry. */
bool pkgr_file_listed_missing(const pkgr_t *r, const char *file_id);

/* Ids the manifest lists under external_references.<kind>: entities the
 * package refers to without containing (selective exports). */
size_t pkgr_external_count(const pkgr_t *r, fzip_kind_t kind);
const char *pkgr_external_at(const pkgr_t *r, fzip_kind_t kind, size_t i);
bool pkgr_external_has(const pkgr_t *r, fzip_kind_t kind, const char *id);

/* ---- entity streams --------------------------------------------------- */

typedef struct pkgr_entities pkgr_entities_t;

/* Starts streaming data/<kind>.json.  A kind the package does not hold
 * gives a stream with no entities.  *out is the caller's.  Several streams
 * may be open at once. */
bool pkgr_entities_open(pkgr_entities_t **out, pkgr_t *r, fzip_kind_t kind,
                        fzip_error_t *error);
/* Returns true and sets *doc (borrowed until the next call) while entities
 * remain; returns false at the end (error untouched) or on failure (error
 * set, FZIP_DOMAIN_PACKAGE: OUT_OF_RANGE when the entry inflates to more
 * bytes than its header declares, DATA_LOSS when libzip cannot inflate it,
 * RESOURCE_EXHAUSTED for a JSON limit, INVALID_ARGUMENT for malformed
 * JSON, message "byte N: ..."). */
bool pkgr_entities_next(pkgr_entities_t *it, const bson_t **doc, fzip_error_t *error);
/* Entities returned so far. */
uint64_t pkgr_entities_count(const pkgr_entities_t *it);
/* After the end: compares the entry's sha256 with the manifest (DATA_LOSS
 * on a mismatch; true when the manifest gives none) and the bytes inflated
 * with the declared size (OUT_OF_RANGE).  hex_out (may be NULL,
 * FZIP_SHA256_HEX_LEN + 1 bytes) receives the digest. */
bool pkgr_entities_finish(char *hex_out, pkgr_entities_t *it, fzip_error_t *error);
void pkgr_entities_destroy(pkgr_entities_t *it); /* accepts NULL */

/* ---- deletions of an incremental package ------------------------------ */

typedef struct pkgr_deletions pkgr_deletions_t;

/* Starts streaming data/deletions.json, a JSON array of {"kind": "<kind
 * name as in data/<kind>.json>", "id": "<entity id>"} (FORMAT.md 15).  A
 * package without the entry (a complete one) gives an empty stream.  *out
 * is the caller's. */
bool pkgr_deletions_open(pkgr_deletions_t **out, pkgr_t *r, fzip_error_t *error);
/* Returns true with the next record (*id borrowed until the next call)
 * while records remain; false at the end (error untouched) or on failure
 * (error set as pkgr_entities_next's; INVALID_ARGUMENT, message "deletion
 * #N: ...", for a record that is not exactly {kind, id} with a known kind
 * and a valid id, or out of order: kinds in fzip_kind_t order, ids
 * strictly ascending within a kind). */
bool pkgr_deletions_next(pkgr_deletions_t *it, fzip_kind_t *kind, const char **id,
                         fzip_error_t *error);
/* After the end: the entry's sha256 against the manifest, as
 * pkgr_entities_finish. */
bool pkgr_deletions_finish(char *hex_out, pkgr_deletions_t *it, fzip_error_t *error);
void pkgr_deletions_destroy(pkgr_deletions_t *it); /* accepts NULL */

/* ---- transaction file bytes ------------------------------------------- */

typedef struct pkgr_file pkgr_file_t;

/* Opens the bytes of files/<file_id>/...; NOT_FOUND if the package has none. */
bool pkgr_file_open(pkgr_file_t **out, pkgr_t *r, const char *file_id, fzip_error_t *error);
/* Reads up to cap bytes; *n == 0 at the end, where the checksum is
 * compared with the manifest (DATA_LOSS on a mismatch); OUT_OF_RANGE when
 * the bytes inflated differ from the declared size. */
bool pkgr_file_read(pkgr_file_t *f, void *buf, size_t cap, size_t *n, fzip_error_t *error);
/* After pkgr_file_read gave *n == 0 without error: the sha256 of the bytes
 * (FZIP_SHA256_HEX_LEN + 1 bytes, lower-case hex) and their number.
 * False before the end. */
bool pkgr_file_digest(char *hex_out, uint64_t *bytes, const pkgr_file_t *f);
/* The last pkgr_file_read reached the end of the entry (so a DATA_LOSS it
 * gave is the manifest checksum, not libzip failing to inflate). */
bool pkgr_file_at_end(const pkgr_file_t *f);
void pkgr_file_destroy(pkgr_file_t *f); /* accepts NULL */

#endif
