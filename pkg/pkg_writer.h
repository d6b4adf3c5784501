/*
 * pkg_writer: builds an FZIP package (docs/FORMAT.md) from a source.
 *
 * One call turns one user's data, or a selection of it, into a ZIP file:
 * manifest.json first, then data/<kind>.json for each included kind (each
 * followed by its csv/<kind>.csv when the selection asks for CSV, see
 * pkg_csv.h), then files/<fileId>/<sanitised name> for each transaction
 * file's bytes.
 * The data comes through a pkg_source_t (count, per-kind cursor, file
 * bytes in chunks) so that the format knows nothing of a store: the
 * store-backed source, with its consistent snapshot and the blob sink,
 * is export/export_source.h.
 * Memory stays bounded whatever the data size: each kind is streamed from
 * a source cursor through pkg_json, hashed, and deflated on the way
 * (pkg_deflate.h: blocks compressed in parallel on all cores) onto a
 * temporary spool file; each file's bytes go the same way after it (a csv/
 * table, written beside its kind, into a second spool); at the end
 * pkg_zipout writes the package front to back into the file or the sink,
 * copying those already-deflated bytes as they are.
 * The only things held in memory are the ids of the kinds others refer to
 * (accounts, categories, file maps, transaction files) to work out
 * external references, and the list of files to copy; both are capped.
 *
 * Export jobs use it in three steps: pkg_count() for an honest
 * items_total, then pkg_write_file() or pkg_write_stream() with a progress
 * callback (every PKG_PROGRESS_EVERY_ITEMS items, or deletions of an
 * increment, or PKG_PROGRESS_EVERY_BYTES bytes of file content, and at every
 * phase change) and a cancel callback
 * (polled as often), and finally the pkg_result_t says what was written.
 *
 * Determinism: with options->export_timestamp_ms pinned, the same data
 * gives a byte-identical package (same zlib build and
 * PKG_DEFLATE_BLOCK, whatever options->compress_threads); data entries and
 * their checksums are identical whatever the timestamp.
 */
#ifndef PKG_WRITER_H
#define PKG_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "fzip_util.h"

#define PKG_FORMAT_VERSION "1.0"
#define PKG_FORMAT_MAJOR 1
#define PKG_FORMAT_MINOR 0
#define PKG_PACKAGE_FORMAT "fzip"
#define PKG_MANIFEST_ENTRY "manifest.json"
/* An incremental package (FORMAT.md 15): the manifest's extra top-level
 * object and the entry listing what was deleted since the base. */
#define PKG_INCREMENTAL_KEY "incremental"
#define PKG_DELETIONS_ENTRY "data/deletions.json"
/* A manifest checksum is this prefix then FZIP_SHA256_HEX_LEN lower-case hex. */
#define PKG_CHECKSUM_PREFIX "sha256:"
#define PKG_CHECKSUM_PREFIX_LEN (sizeof PKG_CHECKSUM_PREFIX - 1)

#define PKG_FILE_NAME_MAX 255        /* bytes of a sanitised file name */
#define PKG_FILES_MAX 100000         /* transaction files in one package */
#define PKG_REF_IDS_MAX 1000000      /* distinct referenced ids per kind tracked */
#define PKG_EXTERNAL_REFS_MAX 10000  /* external reference ids per kind in the manifest */
#define PKG_ENTITIES_MAX 10000000    /* entities of one kind in one package */
#define PKG_COPY_CHUNK (256 * 1024)  /* bytes per blob read / temp copy */
#define PKG_COMPRESSION_LEVEL 6      /* deflate level of every entry */
#define PKG_PROGRESS_EVERY_ITEMS 1000
#define PKG_PROGRESS_EVERY_BYTES (4 * 1024 * 1024)
#define PKG_FILTER_IDS_MAX 1000      /* account ids in a selection (a store filter's cap) */
#define PKG_READ_ATTEMPTS 5          /* builds started before an inconsistent source fails */

typedef enum {
  PKG_EXPORT_COMPLETE = 0,
  PKG_EXPORT_ACCOUNTS_ONLY,
  PKG_EXPORT_TRANSACTIONS_ONLY, /* transactions + their accounts and categories */
  PKG_EXPORT_CATEGORIES_ONLY,
  PKG_EXPORT_SELECTIVE, /* by account ids and/or date range */
} pkg_export_type_t;

/* "complete", "accounts_only", ... as written in the manifest. */
const char *pkg_export_type_name(pkg_export_type_t type);

/* An incremental package (FORMAT.md 15): what its manifest's
 * "incremental" object says of its base.  Borrowed.  A count needs only
 * base_change_seq; a write refuses (INVALID_ARGUMENT) an id that is not
 * fzip_id_is_valid or a sha256 that is not pkg_sha256_hex_is_valid. */
typedef struct {
  const char *base_export_id;
  const char *base_package_sha256; /* hex of the base as downloaded (an envelope if sealed) */
  uint64_t base_change_seq;        /* entities changed after it are written */
  int32_t chain_length;            /* >= 1 */
} pkg_incremental_t;

/* What to export.  Account ids and the date range only apply to
 * PKG_EXPORT_SELECTIVE and PKG_EXPORT_TRANSACTIONS_ONLY (see FORMAT.md
 * "Export types").  Borrowed for the duration of the call. */
typedef struct {
  pkg_export_type_t export_type;
  bool include_analytics; /* complete and selective only */
  bool include_csv;       /* csv/ tables of accounts, categories, transactions (FORMAT.md 13) */
  const char *const *account_ids;
  size_t n_account_ids; /* 0: all accounts; at most PKG_FILTER_IDS_MAX */
  bool has_date_from;   /* transactions' date >= date_from (epoch ms) */
  int64_t date_from;
  bool has_date_to; /* transactions' date <= date_to (inclusive) */
  int64_t date_to;
  /* Set: an increment on a base package: only entities changed after
   * base_change_seq, data/deletions.json, the manifest's "incremental"
   * object; the source must have the change ops.  NULL: complete. */
  const pkg_incremental_t *incremental;
} pkg_selection_t;

typedef enum {
  PKG_PHASE_COUNTING = 0,
  PKG_PHASE_DATA,        /* writing data/<kind>.json */
  PKG_PHASE_FILES,       /* copying transaction file bytes */
  PKG_PHASE_COMPRESSING, /* pkg_write_file: the zip written into the file */
  PKG_PHASE_UPLOADING,   /* pkg_write_stream: the zip written into the sink */
  PKG_PHASE_DONE,
} pkg_phase_t;

const char *pkg_phase_name(pkg_phase_t phase); /* "data", "files", ... */

typedef struct {
  pkg_phase_t phase;
  const char *entry;    /* entry being written ("data/transactions.json"), borrowed */
  uint64_t items_done;  /* entities + files written so far */
  uint64_t items_total; /* from the counting pass; an estimate if data changed since */
  uint64_t bytes_done;  /* file bytes copied, or in COMPRESSING/UPLOADING that phase's bytes */
  double fraction;      /* 0..1 of the zip written (COMPRESSING, UPLOADING), else 0 */
} pkg_progress_t;

/* Progress reports; must not call back into the writer. */
typedef void (*pkg_progress_fn)(void *ctx, const pkg_progress_t *progress);
/* Polled as often as progress; returning true stops the writer with
 * FZIP_ERR_CANCELLED and removes what it wrote. */
typedef bool (*pkg_cancel_fn)(void *ctx);

typedef struct {
  int64_t export_timestamp_ms;     /* 0: now; pin it for a byte-identical package */
  const char *application_version; /* manifest "application_version"; NULL: fzip's version */
  const char *temp_dir;            /* NULL: $TMPDIR or /tmp */
  pkg_progress_fn progress;        /* may be NULL */
  void *progress_ctx;
  pkg_cancel_fn cancelled; /* may be NULL */
  void *cancel_ctx;
  /* Threads deflating the entries, the writer's own among them
   * (pkg_deflate.h): 0, all cores; 1, the writer's thread only.  The
   * package's bytes do not depend on it. */
  unsigned compress_threads;
} pkg_options_t;

/* What the package holds. */
typedef struct {
  uint64_t counts[FZIP_KIND_COUNT]; /* entities written per kind */
  bool included[FZIP_KIND_COUNT];   /* whether data/<kind>.json is in the package */
  uint64_t files_count;             /* files/ entries */
  uint64_t files_bytes;             /* their uncompressed bytes */
  uint64_t files_missing;           /* transaction files whose bytes the source did not have */
  uint64_t external_refs;           /* ids listed in manifest external_references */
  uint64_t entries;                 /* zip entries, manifest included */
  uint64_t package_size;            /* bytes of the .fzip */
  /* hex of the whole .fzip from pkg_write_file; empty from pkg_write_stream,
   * whose sink's owner hashes (export_source_write_blob fills it in) */
  char package_sha256[FZIP_SHA256_HEX_LEN + 1];
  int64_t export_timestamp_ms;      /* the timestamp written into the manifest */
  uint64_t change_seq;              /* the source's changes() seq; 0 without change ops */
  uint64_t deletions;               /* ids in data/deletions.json (increments) */
} pkg_result_t;

/* Checks a selection (types, account ids, date range); INVALID_ARGUMENT
 * naming what is wrong. */
bool pkg_selection_check(const pkg_selection_t *selection, fzip_error_t *error);

/* Exactly FZIP_SHA256_HEX_LEN lower-case hex digits (false for NULL): the
 * one spelling of a digest in a package, so it compares as a string. */
bool pkg_sha256_hex_is_valid(const char *hex);

/* Which entities of one kind the selection asks for (FORMAT.md "Export
 * types"); all of them when n_account_ids is 0 and no date is set.  The
 * date applies to the kind's date field (transactions' date).  Borrowed. */
typedef struct {
  const char *const *account_ids; /* the kind's account field is one of these */
  size_t n_account_ids;           /* 0: no account filter */
  bool has_date_from;             /* date >= date_from (epoch ms) */
  int64_t date_from;
  bool has_date_to;               /* date <= date_to (inclusive) */
  int64_t date_to;
  uint64_t changed_after;         /* only entities whose change seq is above (0: all) */
} pkg_filter_t;

/* Where the writer reads one user's data from.  Every call that can fail
 * returns false with *error set.  Cursors and files are the source's
 * handles, used by one thread and closed (close accepts NULL) before the
 * write returns.  A source decides its own consistency and paging: the
 * writer only ever holds one document and one chunk at a time. */
typedef struct {
  /* Optional (NULL: every read is consistent).  A build calls read_begin
   * before its first read and read_end after its last, cursors and files
   * closed; read_end failing with FZIP_ERR_ABORTED says the reads were not
   * one consistent view (an import committed meanwhile): the writer starts
   * the build over, at most PKG_READ_ATTEMPTS times.  read_end is called
   * after every successful read_begin, also when the build failed. */
  bool (*read_begin)(void *ctx, fzip_error_t *error);
  bool (*read_end)(void *ctx, fzip_error_t *error);
  /* *n = how many entities of `kind` the filter matches. */
  bool (*count)(void *ctx, uint64_t *n, fzip_kind_t kind, const pkg_filter_t *filter,
                fzip_error_t *error);
  /* Opens a cursor over the matching entities of `kind`, id ascending. */
  bool (*cursor_open)(void *ctx, void **cursor, fzip_kind_t kind, const pkg_filter_t *filter,
                      fzip_error_t *error);
  /* true: *doc is the next entity (borrowed until the next call); false:
   * the end when *error is unset, a failure when it is set. */
  bool (*cursor_next)(void *cursor, const bson_t **doc, fzip_error_t *error);
  void (*cursor_close)(void *cursor);
  /* Opens the bytes of a transaction file, `location` being its record's
   * s3Key; *file = NULL (and true) when the source has no bytes there:
   * the file is listed as missing in the manifest, not an error. */
  bool (*file_open)(void *ctx, void **file, const char *location, fzip_error_t *error);
  /* Reads up to `cap` bytes; *n == 0 at the end. */
  bool (*file_read)(void *file, void *buf, size_t cap, size_t *n, fzip_error_t *error);
  void (*file_close)(void *file);
  /* Change tracking (optional; an increment needs them).  Between
   * read_begin and read_end: *seq = the change sequence the reads are
   * complete up to, *wiped = that of the user's last wipe (0: none). */
  bool (*changes)(void *ctx, uint64_t *seq, uint64_t *wiped, fzip_error_t *error);
  /* Ids of `kind` deleted with after_seq < seq <= upto_seq (the
   * changes() seq of the same read), id ascending; next as cursor_next
   * (*id borrowed until the next call). */
  bool (*deletions_open)(void *ctx, void **cursor, fzip_kind_t kind, uint64_t after_seq,
                         uint64_t upto_seq, fzip_error_t *error);
  bool (*deletions_next)(void *cursor, const char **id, fzip_error_t *error);
  void (*deletions_close)(void *cursor);
} pkg_source_ops_t;

typedef struct {
  const pkg_source_ops_t *ops;
  void *ctx; /* passed to read_begin/_end, count, cursor_open and file_open */
} pkg_source_t;

/* Receives the finished package's bytes in order. */
typedef bool (*pkg_sink_fn)(void *ctx, const void *data, size_t len, fzip_error_t *error);

/* Counts the items (entities of the included kinds plus transaction files
 * whose bytes will be copied) a write of this selection reports progress
 * over. */
bool pkg_count(uint64_t *items_total, const pkg_source_t *source,
               const pkg_selection_t *selection, fzip_error_t *error);

/* Writes the package of `user_id` (the manifest's user) read from `source`
 * to `path`: into PATH.XXXXXX beside it, renamed over `path` once whole,
 * so a failure leaves nothing new and an earlier file as it was.
 * *result (may be NULL) is filled on success. */
bool pkg_write_file(pkg_result_t *result, const pkg_source_t *source, const char *user_id,
                    const pkg_selection_t *selection, const pkg_options_t *options,
                    const char *path, fzip_error_t *error);

/* Writes the package straight into `sink` (pkg_zipout, PKGZO_BUFFER bytes
 * at a time; no package file) once every entry is deflated into the
 * spools, in phase PKG_PHASE_UPLOADING (progress entry `sink_name`, polls
 * for cancel every PKG_PROGRESS_EVERY_BYTES, the first after the first
 * write).  The sink has had every byte when this returns true; *result
 * (may be NULL) has the size of the bytes handed to the sink and an
 * empty package_sha256: the sink's owner hashes what it receives (the
 * store's blob writer does, for the blob's own record), so the bytes are
 * not hashed twice on the export's one single-threaded stretch.  On
 * failure the sink may have had part of the package. */
bool pkg_write_stream(pkg_result_t *result, const pkg_source_t *source, const char *user_id,
                      const pkg_selection_t *selection, const pkg_options_t *options,
                      pkg_sink_fn sink, void *sink_ctx, const char *sink_name,
                      fzip_error_t *error);

/* Sanitises a transaction file name for use as the last path component of
 * files/<fileId>/ (FORMAT.md "File names"): invalid UTF-8 bytes, control
 * characters, '/', '\\' and ":*?\"<>|" become '_', leading and trailing
 * spaces and dots are dropped, an empty result becomes "file", and the name
 * is cut to PKG_FILE_NAME_MAX bytes on a character boundary keeping its
 * extension.  out must hold PKG_FILE_NAME_MAX + 1 bytes. */
void pkg_sanitize_file_name(char out[PKG_FILE_NAME_MAX + 1], const char *name, size_t len);

#endif
