/*
 * pkg_writer: builds an FZIP package (docs/FORMAT.md) from a store.
 *
 * One call turns one user's data, or a selection of it, into a ZIP file:
 * manifest.json first, then data/<kind>.json for each included kind, then
 * files/<fileId>/<sanitised name> for each transaction file's bytes.
 * Memory stays bounded whatever the data size: each kind is streamed from
 * a store cursor through pkg_json into a temporary file (hashing as it
 * goes), each file's bytes are streamed from the blob store into another,
 * and libzip compresses those temporaries into the package at the end.
 * The only things held in memory are the ids of the kinds others refer to
 * (accounts, categories, file maps, transaction files) to work out
 * external references, and the list of files to copy; both are capped.
 *
 * Export jobs use it in three steps: pkg_count() for an honest
 * items_total, then pkg_write_file() or pkg_write_blob() with a progress
 * callback (every PKG_PROGRESS_EVERY_ITEMS items or PKG_PROGRESS_EVERY_BYTES
 * bytes of file content, and at every phase change) and a cancel callback
 * (polled as often), and finally the pkg_result_t says what was written.
 *
 * Determinism: with options->export_timestamp_ms pinned, the same data
 * gives a byte-identical package (same libzip/zlib build); data entries and
 * their checksums are identical whatever the timestamp.
 */
#ifndef PKG_WRITER_H
#define PKG_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "fzip_util.h"
#include "store.h"

#define PKG_FORMAT_VERSION "1.0"
#define PKG_FORMAT_MAJOR 1
#define PKG_FORMAT_MINOR 0
#define PKG_PACKAGE_FORMAT "fzip"
#define PKG_MANIFEST_ENTRY "manifest.json"

#define PKG_FILE_NAME_MAX 255        /* bytes of a sanitised file name */
#define PKG_FILES_MAX 100000         /* transaction files in one package */
#define PKG_REF_IDS_MAX 1000000      /* distinct referenced ids per kind tracked */
#define PKG_EXTERNAL_REFS_MAX 10000  /* external reference ids per kind in the manifest */
#define PKG_ENTITIES_MAX 10000000    /* entities of one kind in one package */
#define PKG_COPY_CHUNK (256 * 1024)  /* bytes per blob read / temp copy */
#define PKG_COMPRESSION_LEVEL 6      /* deflate level of every entry */
#define PKG_PROGRESS_EVERY_ITEMS 1000
#define PKG_PROGRESS_EVERY_BYTES (4 * 1024 * 1024)

typedef enum {
  PKG_EXPORT_COMPLETE = 0,
  PKG_EXPORT_ACCOUNTS_ONLY,
  PKG_EXPORT_TRANSACTIONS_ONLY, /* transactions + their accounts and categories */
  PKG_EXPORT_CATEGORIES_ONLY,
  PKG_EXPORT_SELECTIVE, /* by account ids and/or date range */
} pkg_export_type_t;

/* "complete", "accounts_only", ... as written in the manifest. */
const char *pkg_export_type_name(pkg_export_type_t type);

/* What to export.  Account ids and the date range only apply to
 * PKG_EXPORT_SELECTIVE and PKG_EXPORT_TRANSACTIONS_ONLY (see FORMAT.md
 * "Export types").  Borrowed for the duration of the call. */
typedef struct {
  pkg_export_type_t export_type;
  bool include_analytics; /* complete and selective only */
  const char *const *account_ids;
  size_t n_account_ids; /* 0: all accounts; at most STORE_FILTER_IDS_MAX */
  bool has_date_from;   /* transactions' date >= date_from (epoch ms) */
  int64_t date_from;
  bool has_date_to; /* transactions' date <= date_to (inclusive) */
  int64_t date_to;
} pkg_selection_t;

typedef enum {
  PKG_PHASE_COUNTING = 0,
  PKG_PHASE_DATA,        /* writing data/<kind>.json */
  PKG_PHASE_FILES,       /* copying transaction file bytes */
  PKG_PHASE_COMPRESSING, /* libzip writing the package */
  PKG_PHASE_UPLOADING,   /* pkg_write_blob: copying into the blob store */
  PKG_PHASE_DONE,
} pkg_phase_t;

const char *pkg_phase_name(pkg_phase_t phase); /* "data", "files", ... */

typedef struct {
  pkg_phase_t phase;
  const char *entry;    /* entry being written ("data/transactions.json"), borrowed */
  uint64_t items_done;  /* entities + files written so far */
  uint64_t items_total; /* from the counting pass; an estimate if data changed since */
  uint64_t bytes_done;  /* file bytes copied, or in COMPRESSING/UPLOADING that phase's bytes */
  double fraction;      /* 0..1 within COMPRESSING (libzip's estimate), else 0 */
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
} pkg_options_t;

/* What the package holds. */
typedef struct {
  uint64_t counts[FZIP_KIND_COUNT]; /* entities written per kind */
  bool included[FZIP_KIND_COUNT];   /* whether data/<kind>.json is in the package */
  uint64_t files_count;             /* files/ entries */
  uint64_t files_bytes;             /* their uncompressed bytes */
  uint64_t files_missing;           /* transaction files whose bytes were not in the store */
  uint64_t external_refs;           /* ids listed in manifest external_references */
  uint64_t entries;                 /* zip entries, manifest included */
  uint64_t package_size;            /* bytes of the .fzip */
  char package_sha256[FZIP_SHA256_HEX_LEN + 1]; /* hex of the whole .fzip */
  int64_t export_timestamp_ms;      /* the timestamp written into the manifest */
} pkg_result_t;

/* Checks a selection (types, account ids, date range); INVALID_ARGUMENT
 * naming what is wrong. */
bool pkg_selection_check(const pkg_selection_t *selection, fzip_error_t *error);

/* Counts the items (entities of the included kinds plus transaction files
 * whose bytes will be copied) a write of this selection reports progress
 * over. */
bool pkg_count(uint64_t *items_total, store_t *store, const char *user_id,
               const pkg_selection_t *selection, fzip_error_t *error);

/* Writes the package to `path` (created or replaced; on failure nothing is
 * left there).  *result (may be NULL) is filled on success. */
bool pkg_write_file(pkg_result_t *result, store_t *store, const char *user_id,
                    const pkg_selection_t *selection, const pkg_options_t *options,
                    const char *path, fzip_error_t *error);

/* Writes the package to a temporary file and streams it into the blob store
 * as `blob_id` in STORE_BUCKET_PACKAGES, committing it only when complete;
 * result->package_size/sha256 are those the store reports. */
bool pkg_write_blob(pkg_result_t *result, store_t *store, const char *user_id,
                    const pkg_selection_t *selection, const pkg_options_t *options,
                    const char *blob_id, fzip_error_t *error);

/* Sanitises a transaction file name for use as the last path component of
 * files/<fileId>/ (FORMAT.md "File names"): invalid UTF-8 bytes, control
 * characters, '/', '\\' and ":*?\"<>|" become '_', leading and trailing
 * spaces and dots are dropped, an empty result becomes "file", and the name
 * is cut to PKG_FILE_NAME_MAX bytes on a character boundary keeping its
 * extension.  out must hold PKG_FILE_NAME_MAX + 1 bytes. */
void pkg_sanitize_file_name(char out[PKG_FILE_NAME_MAX + 1], const char *name, size_t len);

#endif
