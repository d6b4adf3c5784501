/*
 * export_source: the store side of the package writer (pkg/pkg_writer.h).
 *
 * pkg_writer reads through a pkg_source_t and knows nothing of a store;
 * this module is that source over a store_t: one user's committed data,
 * read inside a snapshot (store_snapshot_begin) so that an import running
 * meanwhile is invisible and one that commits makes the writer start over;
 * entity cursors with the selection's filter; transaction file bytes from
 * STORE_BUCKET_FILES.  It also holds the package's way into the blob
 * store: a sink into STORE_BUCKET_PACKAGES committed only when the whole
 * package is there and matches what the writer hashed.
 *
 * The store is borrowed for the duration of each call.
 */
#ifndef EXPORT_SOURCE_H
#define EXPORT_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "fzip_error.h"
#include "pkg_seal.h"
#include "pkg_writer.h"
#include "store.h"

/* pkg_count over user_id's committed data. */
bool export_source_count(uint64_t *items_total, store_t *store, const char *user_id,
                         const pkg_selection_t *selection, fzip_error_t *error);

/* pkg_write_file of user_id's data in `store` to `path`. */
bool export_source_write_file(pkg_result_t *result, store_t *store, const char *user_id,
                              const pkg_selection_t *selection, const pkg_options_t *options,
                              const char *path, fzip_error_t *error);

/* The recipients an export is sealed for (pkg/pkg_seal.h); borrowed.
 * NULL or no recipients: a plain package. */
typedef struct {
  const pkgs_recipient_t *recipients;
  size_t n_recipients;
} export_seal_t;

/* Writes the package and streams it into the blob store as `blob_id` in
 * STORE_BUCKET_PACKAGES, committing it only when complete and only if
 * the store holds as many bytes as were written (DATA_LOSS otherwise, and
 * the blob is deleted); an uncommitted blob never outlives the call.
 * *result's package_sha256 is the blob's, as the store's writer hashed
 * it.  With `seal`, the blob is the FZIPENC1 envelope of the package and
 * *result's package_size and package_sha256 are the envelope's (the
 * plaintext package is never stored: its deflated entries only exist in
 * the writer's temporary spools, removed when the call returns). */
bool export_source_write_blob(pkg_result_t *result, store_t *store, const char *user_id,
                              const pkg_selection_t *selection, const pkg_options_t *options,
                              const export_seal_t *seal, const char *blob_id, fzip_error_t *error);

#endif
