/*
 * import_files: the restored transaction files' bytes, copied from the
 * package into the store's files bucket on a thread of their own while
 * the restore goes on with the later kinds (docs/IMPORT.md "Files' bytes
 * beside the transactions").
 *
 * Why a thread: the bytes are thousands of small blobs (the 1M benchmark
 * package: 5,000 files, 99 MiB), each its own write transactions, ~2.5 s
 * of one core.  Written between the files' records and the transactions,
 * they kept the validation beside the restore waiting (its feed full of
 * transactions) and the other core idle; beside the transactions they go
 * to another file of the embedded store (its blob file) or to GridFS, and
 * use that core.
 *
 * Use, from the restore's thread: import_files_new before the files'
 * records; import_files_add for every file whose record was written (so a
 * rollback finds each blob under a tagged record, as before); then
 * import_files_start with the package, which the thread takes over; later
 * import_files_wait until done, with import_files_failed between batches
 * so that a failed copy stops the restore early; import_files_destroy in
 * every case (it stops the thread after the file it is copying and joins
 * it: no blob is written after it returns, so a rollback may follow).
 *
 * Memory: the list, two strings per file added (at most PKG_FILES_MAX),
 * and the package's reader, which the restore held for its files' kind
 * already; one COPY buffer.
 */
#ifndef IMPORT_FILES_H
#define IMPORT_FILES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"
#include "pkg_reader.h"
#include "store.h"

#define IMPORT_FILES_COPY_CHUNK (256 * 1024) /* bytes per read and blob write */

/* Reads up to cap bytes of a blob's source into buf (*n = 0: the end). */
typedef bool (*import_files_read_fn)(void *src, void *buf, size_t cap, size_t *n,
                                     fzip_error_t *error);

/* Writes blob `key` of the files bucket anew (a committed one from an
 * interrupted run is deleted first) from read(src); *written = its bytes.
 * The one copy loop of the import: the thread's and the restore's own
 * (a merged file keeping the stored bytes). */
bool import_files_copy(store_t *store, const char *key, import_files_read_fn read, void *src,
                       int64_t *written, fzip_error_t *error);

typedef struct import_files import_files_t;

/* An empty list; store is borrowed, and so is done (may be NULL), which
 * the thread adds 1 to for every file copied (the job's progress). */
bool import_files_new(import_files_t **out, store_t *store, atomic_uint_fast64_t *done,
                      fzip_error_t *error);
/* Stops a running thread after its current file, joins it, frees all;
 * accepts NULL. */
void import_files_destroy(import_files_t *f);

/* Adds a file: the package's entry for file_id goes into blob `key`.
 * Before import_files_start only. */
bool import_files_add(import_files_t *f, const char *file_id, const char *key,
                      fzip_error_t *error);

/* Starts copying what was added, in order; pkg (open, the package the
 * ids are in) is the thread's from now on, even on failure.  With nothing
 * added no thread starts and pkg is destroyed. */
bool import_files_start(import_files_t *f, pkgr_t *pkg, fzip_error_t *error);

/* Waits up to ms for the copies to end: true with *done when all are
 * written (or none was started), false with the thread's error when one
 * failed. */
bool import_files_wait(import_files_t *f, int ms, bool *done, fzip_error_t *error);

/* Whether a copy failed (a cheap check for the restore's loops); if so
 * *error is its error. */
bool import_files_failed(import_files_t *f, fzip_error_t *error);

/* Files and bytes copied so far. */
void import_files_counts(import_files_t *f, int64_t *files, int64_t *bytes);

#endif
