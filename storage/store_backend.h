/*
 * store_backend: what a storage backend implements.  store.c checks
 * arguments common to all backends (ids, limits, NULLs) and then calls
 * through this table, so backends see only valid input.  Each backend
 * defines its own struct for the opaque handles below; the first member of
 * each must be the base struct declared here so store.c can find the
 * vtable.
 */
#ifndef FZIP_STORE_BACKEND_H
#define FZIP_STORE_BACKEND_H

#include "store.h"

typedef struct store_vtable store_vtable_t;
typedef struct store_blob_upload store_blob_upload_t;
typedef struct store_blob_download store_blob_download_t;

struct store {
  const store_vtable_t *vt;
  store_options_t options; /* strings not retained: backends copy what they need */
  bool read_only;          /* a snapshot view (store_snapshot_begin): writes are refused */
};

struct store_cursor {
  const store_vtable_t *vt;
};

/* What a cursor that reads its backend in keyset pages keeps between
 * pages: its query (the filter deep-copied), where the next page starts,
 * what the filter's limit still allows, and the page itself, documents
 * copied out of the backend with their import tags, so that nothing of the
 * backend stays open between calls.  The SQLite cursor and the front's
 * pending-aware cursor are both built on it (store.c). */
typedef struct {
  char user_id[FZIP_USER_ID_MAX + 1];
  fzip_kind_t kind;
  store_filter_t filter; /* account ids deep-copied; after_id and see_tag NULL */
  char **account_ids;
  char after_id[FZIP_ID_MAX + 1]; /* keyset position: the page's last id */
  bool has_after;
  bool has_limit;
  uint64_t remaining; /* what filter.limit still allows */
  bool exhausted;     /* the backend has nothing after this page */
  bson_t **docs;      /* the page: cap documents at most, owned */
  char (*tags)[STORE_TAG_MAX + 1]; /* tags[i]: docs[i]'s import tag, "" if none */
  size_t cap, n, pos;
} store_pager_t;

/* The unique idempotency key a backend stores with a job: "r:" and the
 * request id when it has one, else "j:" and its own id (so a request id
 * never collides with a job id).  `request_id` NULL or "": the job's own. */
#define STORE_IDEM_KEY_SIZE (2 + STORE_REQUEST_ID_MAX + 1)
void store_job_idem_key(char out[STORE_IDEM_KEY_SIZE], const char *request_id,
                        const char *job_id);

/* filter may be NULL; cap is the most documents a page holds. */
void store_pager_init(store_pager_t *p, const char *user_id, fzip_kind_t kind,
                      const store_filter_t *filter, size_t cap);
/* Adds doc (taken over) and its tag (NULL: none) to the page. */
void store_pager_add(store_pager_t *p, bson_t *doc, const char *tag);
/* The page's next document, borrowed until the page is cleared; NULL at
 * its end.  *tag (tag may be NULL) is NULL when the document has none. */
const bson_t *store_pager_next(store_pager_t *p, const char **tag);
/* After a page is read: the next one starts after its last id. */
void store_pager_advance(store_pager_t *p);
void store_pager_clear(store_pager_t *p); /* empties the page */
void store_pager_fini(store_pager_t *p);

/* One blob being written, as a backend sees it.  The front (store.c) owns
 * the public writer: it cuts the bytes into chunks and hashes them, once for
 * every backend, and hands the backend chunks numbered 0, 1, 2, ... of
 * STORE_BLOB_CHUNK bytes each (the last one shorter, never empty; an empty
 * blob has none), up to STORE_BLOB_BATCH_CHUNKS of them per call, then the
 * size and sha256 to commit with. */
struct store_blob_upload {
  const store_vtable_t *vt;
};

/* The length of the chunk at `off` in a run of `len` bytes cut every
 * `chunk` bytes (the last one may be short). */
static inline size_t store_chunk_len_of(size_t len, size_t off, uint64_t chunk) {
  return len - off < chunk ? len - off : (size_t)chunk;
}

/* The same for a batch being written: the front's STORE_BLOB_CHUNK cut,
 * which every backend's blob_upload_chunks follows. */
static inline size_t store_chunk_len(size_t len, size_t off) {
  return store_chunk_len_of(len, off, STORE_BLOB_CHUNK);
}

/* One committed blob being read, as a backend sees it.  The front's reader
 * (store.c) asks for the chunks in order, from the one that holds its
 * offset on: the run of whole chunks that fits in its caller's buffer
 * straight there, and a chunk that does not into a chunk buffer of its
 * own. */
struct store_blob_download {
  const store_vtable_t *vt;
};

struct store_vtable {
  const char *name;
  void (*destroy)(store_t *store);
  /* One round trip, no retry, about timeout_ms at most (store_ping). */
  bool (*ping)(store_t *store, int timeout_ms, fzip_error_t *error);
  /* Optional (NULL: nothing to give back); store_release_memory. */
  void (*release_memory)(store_t *store);

  bool (*cursor_new)(store_cursor_t **out, store_t *store, const char *user_id, fzip_kind_t kind,
                     const store_filter_t *filter, fzip_error_t *error);
  /* *tag (when tag is non-NULL) is the document's import tag, NULL if
   * none; borrowed like *doc. */
  bool (*cursor_next)(store_cursor_t *cursor, const bson_t **doc, const char **tag,
                      fzip_error_t *error);
  void (*cursor_destroy)(store_cursor_t *cursor);
  bool (*entity_count)(uint64_t *out, store_t *store, const char *user_id, fzip_kind_t kind,
                       const store_filter_t *filter, fzip_error_t *error);
  /* tag (may be NULL) receives the document's import tag, "" if none. */
  bool (*entity_get)(bson_t **out, char tag[STORE_TAG_MAX + 1], store_t *store,
                     const char *user_id, fzip_kind_t kind, const char *id, fzip_error_t *error);
  /* ids[i] is docs[i]'s id, already extracted and validated by store.c */
  bool (*entity_put_batch)(store_t *store, const char *user_id, fzip_kind_t kind,
                           const bson_t *const *docs, const char *const *ids, size_t n,
                           store_write_mode_t mode, store_write_result_t *result,
                           fzip_error_t *error);
  bool (*entity_exists_many)(bool *exists, store_t *store, const char *user_id,
                             fzip_kind_t kind, const char *const *ids, size_t n,
                             fzip_error_t *error);
  /* docs[i] = ids[i]'s live document or NULL, tags[i] its import tag ("" if
   * none); the documents are the caller's.  On failure none are left. */
  bool (*entity_get_many)(bson_t **docs, char (*tags)[STORE_TAG_MAX + 1], store_t *store,
                          const char *user_id, fzip_kind_t kind, const char *const *ids,
                          size_t n, fzip_error_t *error);
  bool (*entity_delete_many)(uint64_t *deleted, store_t *store, const char *user_id,
                             fzip_kind_t kind, const char *const *ids, size_t n,
                             fzip_error_t *error);
  bool (*entity_delete_all)(uint64_t *deleted, store_t *store, const char *user_id,
                            fzip_kind_t kind, fzip_error_t *error);

  bool (*job_create)(store_t *store, store_job_t *job, fzip_error_t *error);
  bool (*job_get)(store_job_t **out, store_t *store, store_job_kind_t kind, const char *user_id,
                  const char *job_id, fzip_error_t *error);
  bool (*job_update)(store_t *store, store_job_t *job, const char *owner, fzip_error_t *error);
  bool (*job_list)(store_job_t ***jobs, size_t *n_jobs, char **next_token, store_t *store,
                   store_job_kind_t kind, const char *user_id, size_t page_size,
                   const char *page_token, fzip_error_t *error);
  bool (*job_delete)(store_t *store, store_job_kind_t kind, const char *user_id,
                     const char *job_id, fzip_error_t *error);
  bool (*job_claim)(store_job_t **out, store_t *store, store_job_kind_t kind, const char *owner,
                    int64_t now_ms, int64_t lease_ms, fzip_error_t *error);
  bool (*job_renew)(store_t *store, store_job_t *job, const char *owner, int64_t now_ms,
                    int64_t lease_ms, fzip_error_t *error);
  bool (*job_list_expired)(store_job_t ***jobs, size_t *n_jobs, store_t *store, int64_t now_ms,
                           size_t max, fzip_error_t *error);
  /* job_create also writes the request fields and the unique key
   * store_job_idem_key gives (ALREADY_EXISTS when the id or the key is
   * taken); find_request matches that key, release_request sets it back
   * to the job's own. */
  bool (*job_find_request)(store_job_t **out, store_t *store, store_job_kind_t kind,
                           const char *user_id, const char *request_id, fzip_error_t *error);
  bool (*job_release_request)(store_t *store, store_job_kind_t kind, const char *user_id,
                              const char *job_id, fzip_error_t *error);
  bool (*job_count_runnable)(uint64_t *out, store_t *store, const char *user_id,
                             fzip_error_t *error);
  bool (*job_count_queued)(uint64_t *out, store_t *store, store_job_kind_t kind, int64_t now_ms,
                           fzip_error_t *error);

  /* Records an uncommitted blob; ALREADY_EXISTS if a committed one has
   * that id.  chunks stores chunks from n on (below); commit makes the
   * blob visible with the front's size and sha256 (ALREADY_EXISTS if
   * another writer committed the id first, ABORTED if the reaper took the
   * upload); destroy of an
   * upload not committed discards what it wrote, best effort (what is
   * left stays uncommitted for blob_reap_uncommitted). */
  bool (*blob_upload_new)(store_blob_upload_t **out, store_t *store, store_bucket_t bucket,
                          const char *blob_id, fzip_error_t *error);
  /* chunks stores chunks n, n + 1, ... cut from data (1..STORE_BLOB_BATCH
   * bytes) every STORE_BLOB_CHUNK bytes: all of them or, on failure, any
   * prefix (the front then allows only destroy). */
  bool (*blob_upload_chunks)(store_blob_upload_t *u, int64_t n, const void *data, size_t len,
                             fzip_error_t *error);
  bool (*blob_upload_commit)(store_blob_upload_t *u, const store_blob_info_t *info,
                             fzip_error_t *error);
  void (*blob_upload_destroy)(store_blob_upload_t *u);
  /* Optional (NULL: the front uses the upload above for every blob).
   * Stores n whole blobs (store_blob_put_many's limits: at most
   * STORE_BLOB_PUT_MAX of them, STORE_BLOB_BATCH bytes in all, ids
   * distinct), chunks cut every STORE_BLOB_CHUNK bytes as
   * blob_upload_chunks does, each committed with infos[i], all in one
   * atomic write: afterwards every one is there committed, or none is.
   * ALREADY_EXISTS if a committed blob has one of the ids.  The front's
   * writer calls it at commit (n = 1) when the blob never outgrew its
   * buffer, so a small blob (a bank file) is one write instead of three
   * (SQLite: each commit rewrote the 64 KiB pages it touched;
   * docs/STORAGE.md "Blobs"), and store_blob_put_many with many. */
  bool (*blob_put)(store_t *store, store_bucket_t bucket, const store_blob_part_t *blobs,
                   const store_blob_info_t *infos, size_t n, fzip_error_t *error);
  /* NOT_FOUND if no committed blob has the id; *info gets its size and
   * sha256, *chunk_size the length of all its chunks but the last, as the
   * blob records it (the front refuses 0 and sizes over
   * STORE_BLOB_CHUNK_MAX: DATA_LOSS).
   * chunks copies chunks n, n + 1, ... (1..STORE_BLOB_READ_CHUNKS of them)
   * into dst, len bytes in all: every chunk but the blob's last is
   * *chunk_size bytes and len ends at a chunk's end (DATA_LOSS when the
   * stored chunks disagree).  dst is the caller's (often the reader's
   * caller's own buffer, so a backend that can read straight into it
   * copies nothing more); n is the first chunk wanted, then each call
   * starts at the chunk after the last one's. */
  bool (*blob_download_new)(store_blob_download_t **out, store_blob_info_t *info,
                            uint64_t *chunk_size, store_t *store, store_bucket_t bucket,
                            const char *blob_id, fzip_error_t *error);
  bool (*blob_download_chunks)(store_blob_download_t *d, int64_t n, size_t len, uint8_t *dst,
                               fzip_error_t *error);
  void (*blob_download_destroy)(store_blob_download_t *d);
  bool (*blob_stat)(store_blob_info_t *info, store_t *store, store_bucket_t bucket,
                    const char *blob_id, fzip_error_t *error);
  bool (*blob_delete)(store_t *store, store_bucket_t bucket, const char *blob_id,
                      fzip_error_t *error);
  bool (*blob_reap_uncommitted)(uint64_t *deleted, store_t *store, int64_t older_than_ms,
                                fzip_error_t *error);

  /* Import tags (store.h).  A backend that leaves these NULL makes the
   * calls fail with UNIMPLEMENTED.  ids[i] is docs[i]'s id as above. */
  bool (*entity_put_batch_tagged)(store_t *store, const char *user_id, fzip_kind_t kind,
                                  const bson_t *const *docs, const char *const *ids, size_t n,
                                  store_write_mode_t mode, const char *tag,
                                  store_write_result_t *result, fzip_error_t *error);
  bool (*import_rollback)(store_rollback_stats_t *stats, store_t *store, const char *user_id,
                          const char *tag, store_visit_fn visit, void *visit_ctx,
                          fzip_error_t *error);
  bool (*import_commit)(uint64_t *forgotten, store_t *store, const char *user_id,
                        const char *tag, store_visit_fn visit, void *visit_ctx,
                        fzip_error_t *error);

  /* Pending imports (store.h).  begin adds the tag to the user's pending
   * set (idempotent, ALREADY_EXISTS never: a second begin is fine); end
   * removes it in ONE atomic single-record write (the flip) and is
   * idempotent too.  pending lists the user's pending tags (at most
   * STORE_PENDING_MAX).  stash_get returns the version stashed under
   * (tag, kind, id) and its change seq, NOT_FOUND if none. */
  bool (*import_begin)(store_t *store, const char *user_id, const char *tag,
                       fzip_error_t *error);
  bool (*import_end)(store_t *store, const char *user_id, const char *tag, fzip_error_t *error);
  bool (*import_pending)(char tags[][STORE_TAG_MAX + 1], size_t *n, store_t *store,
                         const char *user_id, fzip_error_t *error);
  bool (*stash_get)(bson_t **out, uint64_t *seq, store_t *store, const char *user_id,
                    const char *tag, fzip_kind_t kind, const char *id, fzip_error_t *error);
  /* Frees what a rollback needs in order to succeed on a full store (the
   * SQLite reserve); NULL when the backend keeps none. */
  bool (*import_release_reserve)(store_t *store, const char *user_id, const char *tag,
                                 fzip_error_t *error);
  /* Undo (store.h): out->tagged[k] = documents of kind k carrying the
   * tag, out->kept[k] = the tag's stash entries of kind k (out zeroed by
   * the front).  lost: up to `max` ids of kind's documents with a stash
   * entry under the tag that no longer carry it (overwritten or deleted
   * since the commit). */
  bool (*import_marks)(store_import_marks_t *out, store_t *store, const char *user_id,
                       const char *tag, fzip_error_t *error);
  bool (*import_lost)(char ids[][FZIP_ID_MAX + 1], size_t *n, store_t *store,
                      const char *user_id, const char *tag, fzip_kind_t kind, size_t max,
                      fzip_error_t *error);
  /* A read-only view of the store for one user's consistent read
   * (store_snapshot_begin); end destroys the view and says whether the
   * read was consistent (ABORTED if not). */
  bool (*snapshot_begin)(store_t **view, store_t *store, const char *user_id,
                         fzip_error_t *error);
  bool (*snapshot_end)(store_t *view, fzip_error_t *error);

  /* Change tracking (store.h).  changes_mark returns the mark as
   * store_changes_mark defines it (a view: its snapshot's).
   * deletions_page: up to `max` ids of `kind` deleted with
   * after_seq < seq <= upto_seq, not written again at a seq <= upto_seq,
   * greater than after_id ("" from the start), ascending. */
  bool (*changes_mark)(store_changes_mark_t *out, store_t *store, const char *user_id,
                       fzip_error_t *error);
  bool (*deletions_page)(char ids[][FZIP_ID_MAX + 1], size_t *n, store_t *store,
                         const char *user_id, fzip_kind_t kind, uint64_t after_seq,
                         uint64_t upto_seq, const char *after_id, size_t max,
                         fzip_error_t *error);
};

/* Backend constructors, chosen by store_open from the URI scheme. */
bool store_sqlite_open(store_t **out, const store_options_t *options, const char *path,
                       fzip_error_t *error);
bool store_mongo_open(store_t **out, const store_options_t *options, fzip_error_t *error);

#endif
