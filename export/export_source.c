/*
 * export_source: see export_source.h.
 *
 * The source's context is the store and the user; between read_begin and
 * read_end it also holds the snapshot view every read goes through, so
 * that counts, cursors and file bytes of one build see the same data.
 */
#include "export_source.h"

#include <inttypes.h>
#include <string.h>

#include "fzip_metrics.h"
#include "fzip_util.h"

/* pkg's caps must fit the store's. */
_Static_assert(PKG_FILTER_IDS_MAX <= STORE_FILTER_IDS_MAX, "a selection must fit a store filter");
_Static_assert(PKG_READ_ATTEMPTS == STORE_SNAPSHOT_RETRIES,
               "the writer retries a snapshot as often as the store says to");

typedef struct {
  store_t *store;
  const char *user_id;
  store_t *view; /* the snapshot while a build reads, else NULL */
} source_ctx_t;

static store_t *reading(const source_ctx_t *c) {
  return c->view ? c->view : c->store;
}

static void to_store_filter(store_filter_t *out, const pkg_filter_t *f) {
  memset(out, 0, sizeof *out);
  out->account_ids = f->account_ids;
  out->n_account_ids = f->n_account_ids;
  out->has_date_from = f->has_date_from;
  out->date_from = f->date_from;
  out->has_date_to = f->has_date_to;
  out->date_to = f->date_to;
  out->changed_after = f->changed_after;
}

static bool src_read_begin(void *ctx, fzip_error_t *error) {
  source_ctx_t *c = ctx;
  return store_snapshot_begin(&c->view, c->store, c->user_id, error);
}

static bool src_read_end(void *ctx, fzip_error_t *error) {
  source_ctx_t *c = ctx;
  store_t *view = c->view;
  c->view = NULL;
  return store_snapshot_end(view, error);
}

static bool src_count(void *ctx, uint64_t *n, fzip_kind_t kind, const pkg_filter_t *filter,
                      fzip_error_t *error) {
  source_ctx_t *c = ctx;
  store_filter_t f;
  to_store_filter(&f, filter);
  return store_entity_count(n, reading(c), c->user_id, kind, &f, error);
}

static bool src_cursor_open(void *ctx, void **cursor, fzip_kind_t kind,
                            const pkg_filter_t *filter, fzip_error_t *error) {
  source_ctx_t *c = ctx;
  store_cursor_t *cur = NULL;
  store_filter_t f;
  to_store_filter(&f, filter);
  if (!store_cursor_new(&cur, reading(c), c->user_id, kind, &f, error))
    return false;
  *cursor = cur;
  return true;
}

static bool src_cursor_next(void *cursor, const bson_t **doc, fzip_error_t *error) {
  return store_cursor_next(cursor, doc, error);
}

static void src_cursor_close(void *cursor) {
  store_cursor_destroy(cursor);
}

/* A blob the store does not have (or whose id it refuses) is a missing
 * file, listed in the manifest; any other failure stops the export. */
static bool src_file_open(void *ctx, void **file, const char *location, fzip_error_t *error) {
  source_ctx_t *c = ctx;
  store_blob_reader_t *r = NULL;
  fzip_error_t local = {0};

  *file = NULL;
  if (store_blob_reader_new(&r, reading(c), STORE_BUCKET_FILES, location, 0, &local)) {
    *file = r;
    return true;
  }
  if (local.code == FZIP_ERR_NOT_FOUND || local.code == FZIP_ERR_INVALID_ARGUMENT)
    return true;
  *error = local;
  return false;
}

static bool src_file_read(void *file, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  return store_blob_reader_read(file, buf, cap, n, error);
}

static void src_file_close(void *file) {
  store_blob_reader_destroy(file);
}

/* The mark of the snapshot the build reads (store.h "change tracking"). */
static bool src_changes(void *ctx, uint64_t *seq, uint64_t *wiped, fzip_error_t *error) {
  source_ctx_t *c = ctx;
  store_changes_mark_t mark = {0};

  if (!store_changes_mark(&mark, reading(c), c->user_id, error))
    return false;
  *seq = mark.seq;
  *wiped = mark.wiped;
  return true;
}

/* Up to the mark the build read (the writer passes it): deletions past it
 * could name an id the snapshot still shows, which the increment holds. */
static bool src_deletions_open(void *ctx, void **cursor, fzip_kind_t kind, uint64_t after_seq,
                               uint64_t upto_seq, fzip_error_t *error) {
  source_ctx_t *c = ctx;
  store_deletions_t *d = NULL;
  bool ok = store_deletions_new(&d, reading(c), c->user_id, kind, after_seq, upto_seq, error);
  *cursor = d;
  return ok;
}

static bool src_deletions_next(void *cursor, const char **id, fzip_error_t *error) {
  return store_deletions_next(cursor, id, error);
}

static void src_deletions_close(void *cursor) {
  store_deletions_destroy(cursor);
}

static const pkg_source_ops_t source_ops = {
    .read_begin = src_read_begin,
    .read_end = src_read_end,
    .count = src_count,
    .cursor_open = src_cursor_open,
    .cursor_next = src_cursor_next,
    .cursor_close = src_cursor_close,
    .file_open = src_file_open,
    .file_read = src_file_read,
    .file_close = src_file_close,
    .changes = src_changes,
    .deletions_open = src_deletions_open,
    .deletions_next = src_deletions_next,
    .deletions_close = src_deletions_close,
};

bool export_source_count(uint64_t *items_total, store_t *store, const char *user_id,
                         const pkg_selection_t *selection, fzip_error_t *error) {
  source_ctx_t c = {.store = store, .user_id = user_id};
  pkg_source_t src = {&source_ops, &c};
  return pkg_count(items_total, &src, selection, error);
}

bool export_source_write_file(pkg_result_t *result, store_t *store, const char *user_id,
                              const pkg_selection_t *selection, const pkg_options_t *options,
                              const char *path, fzip_error_t *error) {
  source_ctx_t c = {.store = store, .user_id = user_id};
  pkg_source_t src = {&source_ops, &c};
  return pkg_write_file(result, &src, user_id, selection, options, path, error);
}

/* ---- the package blob ------------------------------------------------ */

typedef struct {
  store_t *store;
  const char *blob_id;
  store_blob_writer_t *w; /* made at the first byte: no blob while the package is built */
} blob_sink_t;

static bool blob_sink_open(blob_sink_t *s, fzip_error_t *error) {
  return s->w || store_blob_writer_new(&s->w, s->store, STORE_BUCKET_PACKAGES, s->blob_id, error);
}

static bool blob_sink_write(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  blob_sink_t *s = ctx;
  return blob_sink_open(s, error) && store_blob_writer_write(s->w, data, len, error);
}

/* Commits the blob if it holds as many bytes as were written; res then
 * takes the blob's sha256, which the store's writer computed from the
 * bytes on their way (pkg_write_stream leaves the hashing to the sink). */
static bool blob_sink_commit(blob_sink_t *s, pkg_result_t *res, fzip_error_t *error) {
  store_blob_info_t info;

  if (!blob_sink_open(s, error) || !store_blob_writer_commit(s->w, &info, error))
    return false;
  if (info.size != res->package_size) {
    fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS,
                   "package blob %s holds %" PRIu64 " bytes, %" PRIu64 " were written",
                   s->blob_id, info.size, res->package_size);
    store_blob_delete(s->store, STORE_BUCKET_PACKAGES, s->blob_id, NULL);
    return false;
  }
  memcpy(res->package_sha256, info.sha256, sizeof res->package_sha256);
  fzip_metric_add(FZIP_METRIC_EXPORT_BYTES, NULL, (double)info.size);
  return true;
}

/* ---- sealing: the package through the FZIPENC1 envelope --------------- */

/* Between the package writer and the blob sink: the envelope writer is
 * made at the first package byte (no blob while the package is built),
 * and the envelope's bytes are counted on their way to the blob, whose
 * writer hashes them, so that the job's size and sha256 are those of what
 * DownloadExport serves. */
typedef struct {
  blob_sink_t *blob;
  const pkgs_recipient_t *recipients;
  size_t n_recipients;
  pkgs_writer_t *w;
  uint64_t size;
} seal_sink_t;

static bool seal_out(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  seal_sink_t *s = ctx;
  s->size += len;
  return blob_sink_write(s->blob, data, len, error);
}

static bool seal_open(seal_sink_t *s, fzip_error_t *error) {
  if (!s->w)
    s->w = pkgs_writer_new(seal_out, s, s->recipients, s->n_recipients, error);
  return s->w != NULL;
}

static bool seal_in(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  seal_sink_t *s = ctx;
  return seal_open(s, error) && pkgs_writer_write(s->w, data, len, error);
}

/* Seals the last chunk; `res` then has the envelope's size. */
static bool seal_finish(seal_sink_t *s, pkg_result_t *res, fzip_error_t *error) {
  if (!seal_open(s, error) || !pkgs_writer_finish(s->w, error))
    return false;
  res->package_size = s->size;
  return true;
}

bool export_source_write_blob(pkg_result_t *result, store_t *store, const char *user_id,
                              const pkg_selection_t *selection, const pkg_options_t *options,
                              const export_seal_t *seal, const char *blob_id, fzip_error_t *error) {
  source_ctx_t c = {.store = store, .user_id = user_id};
  pkg_source_t src = {&source_ops, &c};
  blob_sink_t sink = {.store = store, .blob_id = blob_id};
  seal_sink_t sealer = {.blob = &sink};
  pkg_sink_fn write = blob_sink_write;
  void *write_ctx = &sink;
  pkg_result_t res;
  bool ok = false;

  if (seal && seal->n_recipients > 0) {
    sealer.recipients = seal->recipients;
    sealer.n_recipients = seal->n_recipients;
    write = seal_in;
    write_ctx = &sealer;
  }
  if (!pkg_write_stream(&res, &src, user_id, selection, options, write, write_ctx, blob_id, error))
    goto done;
  if (sealer.n_recipients > 0 && !seal_finish(&sealer, &res, error))
    goto done;
  if (!blob_sink_commit(&sink, &res, error))
    goto done;
  if (result)
    *result = res;
  ok = true;
done:
  pkgs_writer_destroy(sealer.w);
  store_blob_writer_destroy(sink.w); /* deletes an uncommitted blob */
  return ok;
}
