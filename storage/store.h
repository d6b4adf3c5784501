/*
 * store: fzip's persistence interface.
 *
 * One opaque handle, `store_t`, over interchangeable backends (a vtable,
 * see store_backend.h): the embedded SQLite store (default) and MongoDB
 * (collections + GridFS).  Every backend passes the one conformance suite
 * in tests/storage/.
 *
 * Three families of objects:
 *   - entities: per-user documents of each fzip_kind_t, keyed by
 *     (user id, entity id), read through cursors in a stable order
 *     (entity id ascending) and written in bulk batches;
 *   - jobs: export/import job records with an atomic claim + lease so that
 *     several fzipd replicas share one queue (docs/STORAGE.md);
 *   - blobs: byte streams in named buckets (packages, transaction files),
 *     written in chunks and read from any offset.
 * Nothing here forces a collection or a blob into memory.
 *
 * Threads: a store_t may be used from many threads at once (backends pool
 * their connections).  Cursors, blob readers and blob writers belong to one
 * thread at a time.
 *
 * Ownership: `**out` parameters become the caller's and are released with
 * the matching _destroy; `const` pointers returned by a cursor are borrowed
 * until the next call on that cursor.  Every function that can fail takes a
 * trailing fzip_error_t* and returns false (or NULL) on failure.  Transient
 * backend failures (server gone) are retried inside the backend with
 * backoff up to its retry budget, then reported as FZIP_ERR_UNAVAILABLE.
 */
#ifndef FZIP_STORE_H
#define FZIP_STORE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "fzip_util.h"

typedef struct store store_t;

/* ---- opening ---------------------------------------------------------- */

typedef struct {
  const char *uri;      /* "sqlite:PATH" or "mongodb://..." (NULL: default sqlite path) */
  const char *database; /* MongoDB database name (NULL: "fzip") */
  int retry_budget_ms;  /* total time spent retrying transient errors (0: default 10000) */
} store_options_t;

#define STORE_DEFAULT_SQLITE_URI "sqlite:fzip.db"

/* Opens and checks the connection (a ping / schema set-up).  A store that
 * cannot be reached fails here with a one-line message. */
bool store_open(store_t **out, const store_options_t *options, fzip_error_t *error);
void store_destroy(store_t *store); /* accepts NULL */
const char *store_backend_name(const store_t *store); /* "sqlite" / "mongodb" */
/* One cheap round trip to the backend, not retried, that gives up after
 * about timeout_ms (> 0): UNAVAILABLE when the store cannot be reached.
 * For the health checker, which must learn of an outage in bounded time,
 * where every other call retries for the whole retry budget. */
bool store_ping(store_t *store, int timeout_ms, fzip_error_t *error);
/* Drops what the store keeps only for speed and that refills on use:
 * SQLite's idle connections give their page caches back (up to 2,000 KiB
 * each); MongoDB's driver keeps nothing of the kind.  Then hands the
 * heap's free pages back to the system (fzip_release_memory), which is
 * where the dropped caches go.  For the end of big work (a job, a
 * download or upload, an import's phase); never fails.  Accepts NULL
 * (the heap only). */
void store_release_memory(store_t *store);

/* ---- entities --------------------------------------------------------- */

/* Hard limits shared by all backends. */
#define STORE_BATCH_MAX 1000            /* documents per bulk call */
#define STORE_DOC_MAX (4 * 1024 * 1024) /* bytes of one BSON entity document */
#define STORE_FILTER_IDS_MAX 1000       /* account ids in one filter */

typedef struct {
  const char *const *account_ids; /* match kind's account_field in this set */
  size_t n_account_ids;           /* 0: no account filter */
  bool has_date_from;             /* kind's date_field >= date_from */
  int64_t date_from;
  bool has_date_to;               /* kind's date_field <= date_to (inclusive) */
  int64_t date_to;
  const char *after_id;           /* keyset pagination: ids strictly greater */
  size_t limit;                   /* 0: no limit */
  const char *see_tag;            /* read as the pending import `see_tag` sees the data:
                                   * its own uncommitted writes visible (NULL: committed
                                   * data only, what every other reader gets) */
  uint64_t changed_after;         /* only documents whose change seq is > this
                                   * (0: all); see "change tracking" */
} store_filter_t;

typedef struct store_cursor store_cursor_t;

/* Documents of one kind of one user matching `filter` (NULL: all), in
 * entity id order.  The documents are those put, unchanged.
 *
 * Reads (cursors, counts, gets, exists) never show an uncommitted import:
 * a document written under a pending import tag (store_import_begin) is
 * hidden, and the version it replaced is shown instead (see "import tags"
 * below).  When the user has no pending import, reads take the plain path
 * with no extra cost.  A cursor learns the user's pending set when it is
 * created; for a consistent read of many kinds use store_snapshot_begin. */
bool store_cursor_new(store_cursor_t **out, store_t *store, const char *user_id,
                      fzip_kind_t kind, const store_filter_t *filter, fzip_error_t *error);
/* Returns true and sets *doc (borrowed until the next call) while documents
 * remain; returns false at the end (error untouched) or on failure (error
 * set: check fzip_error_is_set). */
bool store_cursor_next(store_cursor_t *cursor, const bson_t **doc, fzip_error_t *error);
void store_cursor_destroy(store_cursor_t *cursor);

bool store_entity_count(uint64_t *out, store_t *store, const char *user_id, fzip_kind_t kind,
                        const store_filter_t *filter, fzip_error_t *error);

/* One document by id; NOT_FOUND if absent. *out is the caller's. */
bool store_entity_get(bson_t **out, store_t *store, const char *user_id, fzip_kind_t kind,
                      const char *id, fzip_error_t *error);

typedef enum {
  STORE_WRITE_INSERT = 0,    /* fail the whole batch (ALREADY_EXISTS) if any id exists */
  STORE_WRITE_REPLACE,       /* upsert: replace existing, insert new */
  STORE_WRITE_SKIP_EXISTING, /* insert new, leave existing untouched */
} store_write_mode_t;

typedef struct {
  uint64_t inserted;
  uint64_t replaced;
  uint64_t skipped;
} store_write_result_t;

/* Writes up to STORE_BATCH_MAX documents of one kind for one user.  Each
 * document must carry the kind's id field (a valid fzip id); ids must be
 * unique within the batch.  The counts are added to *result (may be NULL). */
bool store_entity_put_batch(store_t *store, const char *user_id, fzip_kind_t kind,
                            const bson_t *const *docs, size_t n, store_write_mode_t mode,
                            store_write_result_t *result, fzip_error_t *error);

/* exists[i] = whether ids[i] exists for this user and kind (n <= STORE_BATCH_MAX). */
bool store_entity_exists_many(bool *exists, store_t *store, const char *user_id,
                              fzip_kind_t kind, const char *const *ids, size_t n,
                              fzip_error_t *error);

/* docs[i] = the user's document of `kind` with id ids[i] as readers see it
 * (n <= STORE_BATCH_MAX), NULL when there is none: what store_entity_get
 * would return for each id, in one round trip where the backend allows.
 * Pending imports are hidden as for every read, except the writes of
 * `see_tag` (may be NULL) as in store_filter_t.  The documents are the
 * caller's (bson_destroy each); on failure every docs[i] is NULL. */
bool store_entity_get_many(bson_t **docs, store_t *store, const char *user_id, fzip_kind_t kind,
                           const char *const *ids, size_t n, const char *see_tag,
                           fzip_error_t *error);

/* Deletes the given ids (missing ids are fine); *deleted may be NULL. */
bool store_entity_delete_many(uint64_t *deleted, store_t *store, const char *user_id,
                              fzip_kind_t kind, const char *const *ids, size_t n,
                              fzip_error_t *error);

/* Deletes every document of one kind of one user. */
bool store_entity_delete_all(uint64_t *deleted, store_t *store, const char *user_id,
                             fzip_kind_t kind, fzip_error_t *error);

/* ---- jobs ------------------------------------------------------------- */

/* STORE_JOB_SCHEDULE: export schedules (export/svc_schedule.h) kept as
 * job records: the claim + lease gives "one replica runs a due schedule",
 * lease_until being its next due time.  They never expire and are not
 * counted by store_job_count_runnable (they queue no work of their own). */
typedef enum {
  STORE_JOB_EXPORT = 0,
  STORE_JOB_IMPORT = 1,
  STORE_JOB_SCHEDULE = 2,
} store_job_kind_t;

#define STORE_OWNER_MAX 128
/* Longest request id (idempotency key or trace id), bytes of printable
 * ASCII; the rpc layer's x-request-id (RPC_REQUEST_ID_MAX - 1) fits. */
#define STORE_REQUEST_ID_MAX 128

/* A job record.  The indexed fields are here; everything else (status,
 * progress, options, results, events) lives in `body`, which the store
 * keeps as it was given. */
typedef struct {
  char job_id[FZIP_ID_MAX + 1];
  char user_id[FZIP_USER_ID_MAX + 1];
  store_job_kind_t kind;
  int64_t created_at;    /* epoch ms; lists are newest first by (created_at, job_id) */
  int64_t updated_at;
  int64_t expires_at;    /* 0: never; the reaper deletes expired jobs and their blobs */
  bool runnable;         /* true while a worker must (re)take it */
  char lease_owner[STORE_OWNER_MAX + 1]; /* "" when unleased */
  int64_t lease_until;   /* epoch ms; a lease past this is free to take */
  int64_t version;       /* bumped by every update; set by the store */
  bson_t *body;          /* owned by the record */
  /* Written by store_job_create only (updates keep them).  request_id is
   * the client's idempotency key ("" none: see store_job_create_once);
   * request_digest a digest of the creating request's parameters, so a
   * reused request_id with other parameters can be told apart; trace_id
   * the x-request-id of the creating call, for the job's log lines. */
  char request_id[STORE_REQUEST_ID_MAX + 1];
  char request_digest[FZIP_SHA256_HEX_LEN + 1];
  char trace_id[STORE_REQUEST_ID_MAX + 1];
  /* Set by store_job_claim only: the job was taken from an owner whose
   * lease had lapsed (a dead or hung replica), not a new or released one. */
  bool lease_lapsed;
} store_job_t;

store_job_t *store_job_new(void);    /* zeroed record with an empty body */
void store_job_destroy(store_job_t *job); /* accepts NULL */

/* Inserts a new record (version becomes 1).  ALREADY_EXISTS if the id is taken. */
bool store_job_create(store_t *store, store_job_t *job, fzip_error_t *error);
/* NOT_FOUND if absent or owned by another user (user_id NULL: any user,
 * for workers and the reaper). */
bool store_job_get(store_job_t **out, store_t *store, store_job_kind_t kind, const char *user_id,
                   const char *job_id, fzip_error_t *error);
/* Writes updated_at, expires_at, runnable, lease fields and body of `job`
 * if the stored version still equals job->version (and, when `owner` is
 * non-NULL, the stored lease_owner equals owner); then job->version is
 * bumped.  ABORTED if someone else changed or took the job meanwhile. */
bool store_job_update(store_t *store, store_job_t *job, const char *owner, fzip_error_t *error);
/* Newest first.  `page_token` NULL or "" for the first page; *next_token
 * (caller frees with bson_free) is NULL on the last page.  *jobs is an
 * array of *n_jobs records the caller frees with store_job_list_free. */
bool store_job_list(store_job_t ***jobs, size_t *n_jobs, char **next_token, store_t *store,
                    store_job_kind_t kind, const char *user_id, size_t page_size,
                    const char *page_token, fzip_error_t *error);
void store_job_list_free(store_job_t **jobs, size_t n_jobs);
/* NOT_FOUND if absent or owned by another user (user_id NULL: any user). */
bool store_job_delete(store_t *store, store_job_kind_t kind, const char *user_id,
                      const char *job_id, fzip_error_t *error);

/* Idempotent create.  A job with a request_id holds the key
 * (user_id, kind, request_id) unique in the store (a unique index: two
 * simultaneous creates with one key make one job, on every replica);
 * without one the job's own id stands in as its key.  If the key is held
 * by a job created less than `window_ms` before job->created_at, nothing
 * is written and *existing (the caller's) is that job; a holder older than
 * that gives the key up (store_job_release_request) and the create is
 * tried again.  *existing is NULL when `job` was created.  ALREADY_EXISTS
 * only when the key kept changing hands STORE_REQUEST_RETRIES times. */
#define STORE_REQUEST_RETRIES 4
bool store_job_create_once(store_job_t **existing, store_t *store, store_job_t *job,
                           int64_t window_ms, fzip_error_t *error);
/* The job that holds request_id for this user and kind; NOT_FOUND if none
 * (never created, deleted, or given up). */
bool store_job_find_request(store_job_t **out, store_t *store, store_job_kind_t kind,
                            const char *user_id, const char *request_id, fzip_error_t *error);
/* Gives up a job's request_id key (the job keeps its request_id field):
 * a new create may take the key.  Idempotent; a missing job is fine. */
bool store_job_release_request(store_t *store, store_job_kind_t kind, const char *user_id,
                               const char *job_id, fzip_error_t *error);
/* *out = how many of the user's export and import jobs are runnable:
 * queued for a worker or running (schedules are not counted). */
bool store_job_count_runnable(uint64_t *out, store_t *store, const char *user_id,
                              fzip_error_t *error);

/* Bounds for job pages: page_size 0 means STORE_PAGE_DEFAULT; page_size and
 * list_expired's max above STORE_PAGE_MAX are INVALID_ARGUMENT. */
#define STORE_PAGE_DEFAULT 50
#define STORE_PAGE_MAX 1000

/* Atomically takes the oldest runnable job of `kind` whose lease is free
 * (lease_until < now_ms), setting lease_owner = owner and lease_until =
 * now_ms + lease_ms.  *out is NULL (and true is returned) when none is
 * available.  A job whose owner died is taken over once its lease lapses
 * ((*out)->lease_lapsed: it still named an owner when claimed). */
bool store_job_claim(store_job_t **out, store_t *store, store_job_kind_t kind, const char *owner,
                     int64_t now_ms, int64_t lease_ms, fzip_error_t *error);
/* *out = how many jobs of `kind` (any user) store_job_claim could take
 * at now_ms: runnable with a free lease.  The queue depth fzipd's
 * metrics report; one count over the claim index, cheap enough per scrape. */
bool store_job_count_queued(uint64_t *out, store_t *store, store_job_kind_t kind, int64_t now_ms,
                            fzip_error_t *error);
/* Extends the lease held by `owner`; ABORTED if it was lost. */
bool store_job_renew(store_t *store, store_job_t *job, const char *owner, int64_t now_ms,
                     int64_t lease_ms, fzip_error_t *error);

/* Up to `max` jobs (any user, any kind) with 0 < expires_at <= now_ms. */
bool store_job_list_expired(store_job_t ***jobs, size_t *n_jobs, store_t *store, int64_t now_ms,
                            size_t max, fzip_error_t *error);

/* ---- blobs ------------------------------------------------------------ */

typedef enum { STORE_BUCKET_PACKAGES = 0, STORE_BUCKET_FILES = 1 } store_bucket_t;

/* The chunk size blobs are written in, by every backend.  256 KiB, not
 * GridFS's customary 255: in the SQLite blob file (64 KiB pages) a chunk of
 * 256 KiB keeps only SQLite's minimum on its b-tree leaf (~8 KiB, seven
 * chunks a leaf) and the rest in four overflow pages that SQLite reads
 * straight into the caller's buffer, where a 255 KiB chunk kept ~63 KiB on
 * a leaf of its own, read through the page cache and copied again
 * (docs/STORAGE.md "Blobs"; run AE).  A blob records the chunk size it was
 * written with, so blobs of 255 KiB chunks still read. */
#define STORE_BLOB_CHUNK (256 * 1024)
/* A writer buffers this many chunks and hands them to the backend in one
 * call (SQLite: one transaction), so that a blob is not one commit per
 * chunk: each commit also rewrites the chunk table's leaf and the file
 * header, which made the WAL ~1.7x the blob (docs/STORAGE.md "Blobs"). */
#define STORE_BLOB_BATCH_CHUNKS 4
#define STORE_BLOB_BATCH (STORE_BLOB_BATCH_CHUNKS * STORE_BLOB_CHUNK)
/* The largest chunk a reader accepts from a stored blob (GridFS files made
 * by other tools may have other chunk sizes; MongoDB's own limit is a
 * 16 MiB document): a reader holds at most one chunk. */
#define STORE_BLOB_CHUNK_MAX (16 * 1024 * 1024)
/* A reader asks its backend for up to this many whole chunks per call
 * (SQLite: one read transaction, one statement), when they fit in its
 * caller's buffer: a 1 MiB download message is four. */
#define STORE_BLOB_READ_CHUNKS 8

typedef struct {
  uint64_t size;
  char sha256[FZIP_SHA256_HEX_LEN + 1];
} store_blob_info_t;

typedef struct store_blob_writer store_blob_writer_t;
typedef struct store_blob_reader store_blob_reader_t;

#define STORE_BLOB_ID_MAX 512

/* Starts a blob named `blob_id` (printable ASCII, at most STORE_BLOB_ID_MAX
 * bytes; callers compose it, e.g. "<user id>/<file id>").  The blob is
 * invisible to readers until committed; ALREADY_EXISTS if a committed blob
 * has that id (and again at commit if another writer committed it first).
 * A writer abandoned by a crash leaves an uncommitted blob that
 * store_blob_reap_uncommitted removes; on a backend with blob_put
 * (store_backend.h; SQLite) a blob that never outgrew the writer's
 * STORE_BLOB_BATCH buffer is written only by its commit, in one step, and
 * leaves nothing before that. */
bool store_blob_writer_new(store_blob_writer_t **out, store_t *store, store_bucket_t bucket,
                           const char *blob_id, fzip_error_t *error);
bool store_blob_writer_write(store_blob_writer_t *w, const void *data, size_t len,
                             fzip_error_t *error);
/* Makes the blob visible; fills *info (may be NULL) with size and sha256. */
bool store_blob_writer_commit(store_blob_writer_t *w, store_blob_info_t *info,
                              fzip_error_t *error);
/* Destroying an uncommitted writer deletes everything it wrote. */
void store_blob_writer_destroy(store_blob_writer_t *w);

/* Whole small blobs written together (store_blob_put_many). */
#define STORE_BLOB_PUT_MAX 64 /* blobs per call; STORE_BLOB_BATCH bytes in all */
typedef struct {
  const char *blob_id; /* as for store_blob_writer_new; distinct within a call */
  const void *data;    /* borrowed for the call; may be NULL when len is 0 */
  size_t len;
} store_blob_part_t;

/* Stores and commits n blobs (1..STORE_BLOB_PUT_MAX, STORE_BLOB_BATCH
 * bytes in all) as the writer would, one after the other.  On a backend
 * with blob_put (SQLite) they are one atomic write, all or none:
 * ALREADY_EXISTS if a committed blob has one of the ids, and then none is
 * stored.  Elsewhere each is a writer of its own, and a failure leaves
 * the blobs before it committed.  Many bank files in one SQLite
 * transaction write their pages once, where one transaction each rewrote
 * the blob file's shared pages every time (docs/STORAGE.md "Blobs"). */
bool store_blob_put_many(store_t *store, store_bucket_t bucket, const store_blob_part_t *blobs,
                         size_t n, fzip_error_t *error);

/* A pack gathers whole small blobs into a STORE_BLOB_BATCH buffer of its
 * own and stores them with store_blob_put_many: the one way the import's
 * restore and its floor (bench_floor) write bank files.  The caller puts
 * a blob's bytes at store_blob_pack_space, then names them with
 * store_blob_pack_add; when the next one does not fit (store_blob_pack_fits
 * is false), store_blob_pack_flush first.  The store is borrowed for the
 * pack's life; destroying a pack drops what was not flushed. */
typedef struct store_blob_pack store_blob_pack_t;

bool store_blob_pack_new(store_blob_pack_t **out, store_t *store, store_bucket_t bucket,
                         fzip_error_t *error);
void store_blob_pack_destroy(store_blob_pack_t *pack);
/* True when a blob of len bytes fits beside those added since the last
 * flush (room for one more, and len bytes of the buffer left). */
bool store_blob_pack_fits(const store_blob_pack_t *pack, size_t len);
/* Where the next blob's bytes go: STORE_BLOB_BATCH minus the bytes added
 * since the last flush are free there.  Valid until the next add or
 * flush. */
uint8_t *store_blob_pack_space(store_blob_pack_t *pack);
/* Adds the len bytes at store_blob_pack_space as blob_id (copied);
 * INVALID_ARGUMENT if they do not fit or the id is not one (nothing is
 * added then). */
bool store_blob_pack_add(store_blob_pack_t *pack, const char *blob_id, size_t len,
                         fzip_error_t *error);
/* Stores what was added since the last flush (nothing if none) and
 * empties the pack, whatever the outcome; *n and *bytes (either may be
 * NULL) are what it stored, 0 after a failure, which is
 * store_blob_put_many's (on a backend without blob_put the blobs before
 * the failing one stay committed all the same). */
bool store_blob_pack_flush(store_blob_pack_t *pack, size_t *n, uint64_t *bytes,
                           fzip_error_t *error);

/* NOT_FOUND if no committed blob; OUT_OF_RANGE if offset > size. */
bool store_blob_reader_new(store_blob_reader_t **out, store_t *store, store_bucket_t bucket,
                           const char *blob_id, uint64_t offset, fzip_error_t *error);
/* Reads up to len bytes; *n == 0 at the end. */
bool store_blob_reader_read(store_blob_reader_t *r, void *buf, size_t len, size_t *n,
                            fzip_error_t *error);
/* How much of the next len bytes to read so that the read ends where a
 * chunk does (or at the blob's end): the largest such length <= len, or
 * len when the next chunk border is further than len.  A caller that reads
 * that much each time (a download's messages) gets every chunk whole into
 * its own buffer instead of through the reader's. */
size_t store_blob_reader_fit(const store_blob_reader_t *r, size_t len);
void store_blob_reader_destroy(store_blob_reader_t *r);

bool store_blob_stat(store_blob_info_t *info, store_t *store, store_bucket_t bucket,
                     const char *blob_id, fzip_error_t *error);
/* Deletes the blob and all its chunks; deleting a missing blob is fine. */
bool store_blob_delete(store_t *store, store_bucket_t bucket, const char *blob_id,
                       fzip_error_t *error);
/* Deletes uncommitted blobs started before `older_than_ms` (epoch ms). */
bool store_blob_reap_uncommitted(uint64_t *deleted, store_t *store, int64_t older_than_ms,
                                 fzip_error_t *error);

/* ---- reaper ----------------------------------------------------------- */

/* Convention shared by the job layer and the reaper: a job that produced a
 * package names it in the UTF-8 string field "packageBlobId" of its body;
 * the blob lives in STORE_BUCKET_PACKAGES.  A body without that field owns
 * no blob. */
#define STORE_JOB_PACKAGE_BLOB_FIELD "packageBlobId"
#define STORE_REAP_BATCH 100 /* expired jobs handled per list_expired call */
#define STORE_REAP_PASSES_MAX 100 /* batches per store_reap call */

typedef struct {
  uint64_t jobs;              /* expired jobs deleted */
  uint64_t package_blobs;     /* their package blobs deleted */
  uint64_t uncommitted_blobs; /* abandoned uncommitted blobs deleted */
  uint64_t hooked;            /* expired jobs a kind's hook handled */
} store_reap_stats_t;

/* A job kind's own expiry step: called for each expired job before the
 * default.  Set *handled when the hook dealt with the job (e.g. an export
 * that turns EXPIRED and moves its expires_at on); otherwise the default
 * deletes the job and its package blob. */
typedef bool (*store_reap_hook_fn)(void *ctx, store_job_t *job, int64_t now_ms, bool *handled,
                                   fzip_error_t *error);

/* Deletes every job with 0 < expires_at <= now_ms together with its package
 * blob (blob first, so a crash in between leaves a job that the next run
 * reaps again, never an orphan blob), in batches of STORE_REAP_BATCH, then
 * deletes uncommitted blobs started more than uncommitted_older_than_ms
 * (an age, >= 0) before now_ms.  `hook` (may be NULL) sees each expired
 * job first and may handle it itself; a handled job must leave the expired
 * set (deleted, or expires_at moved past now_ms).  Safe to run from several
 * replicas at once.  The counts are added to *stats (may be NULL). */
bool store_reap(store_reap_stats_t *stats, store_t *store, int64_t now_ms,
                int64_t uncommitted_older_than_ms, store_reap_hook_fn hook, void *hook_ctx,
                fzip_error_t *error);

/* ---- import tags, stash and rollback ---------------------------------- */

/* An import must be all or nothing without multi-document transactions
 * (FerretDB has none; MongoDB bounds them).  So every document an import
 * writes is tagged with its import id, and the version a write replaces is
 * first kept in a per-user stash under that tag.  Rolling back puts the
 * stash back and deletes what the tag created; committing forgets the
 * stash.  Both are idempotent, so a crash in the middle of either is
 * finished by running it again (docs/IMPORT.md).  Tags are store metadata:
 * cursors and gets return the documents without them. */

#define STORE_TAG_MAX FZIP_ID_MAX

/* Like store_entity_put_batch, with every written document tagged `tag`.
 * Before a document is replaced (STORE_WRITE_REPLACE), its current
 * version and current tag are stashed under (`tag`, kind, id) unless
 * already stashed there, so the stash always holds the version from
 * before the import.  INSERT and SKIP_EXISTING never replace, so never
 * stash.  The stash write happens before the replace: a crash in between
 * leaves a stash entry whose document is unchanged, which rollback
 * restores harmlessly. */
bool store_entity_put_batch_tagged(store_t *store, const char *user_id, fzip_kind_t kind,
                                   const bson_t *const *docs, size_t n, store_write_mode_t mode,
                                   const char *tag, store_write_result_t *result,
                                   fzip_error_t *error);

/* Called for each document a rollback removes or replaces (the tagged,
 * imported version: e.g. to delete the blob it names), or for each stashed
 * version a commit forgets (the previous version).  Returning false stops
 * the operation with that error; it can be run again. */
typedef bool (*store_visit_fn)(void *ctx, fzip_kind_t kind, const bson_t *doc,
                               fzip_error_t *error);

typedef struct {
  uint64_t restored; /* stashed versions put back */
  uint64_t deleted;  /* documents the tag created, deleted */
} store_rollback_stats_t;

/* Undoes everything written with `tag` for this user, kind by kind in
 * reverse dependency order: each tagged document with a stash entry is
 * replaced by the stashed version (with its previous tag), each tagged
 * document without one is deleted, then the tag's stash is emptied, and
 * last the tag leaves the pending set.  While it runs the tag is still
 * pending, so readers never see any of it.  It first releases the space
 * store_import_begin set aside, so it can finish on a full store.
 * `visit` (may be NULL) sees each tagged document before it goes.
 * Streams: memory does not grow with the number of documents. */
bool store_import_rollback(store_rollback_stats_t *stats, store_t *store, const char *user_id,
                           const char *tag, store_visit_fn visit, void *visit_ctx,
                           fzip_error_t *error);

/* Commits `tag`: first the flip, ONE atomic single-record write that
 * removes the tag from the user's pending set, so every document of the
 * import becomes visible at once; then forgets the stash (`visit`, may be
 * NULL, sees each stashed previous version before it is dropped).  A crash
 * after the flip leaves a stash that running the commit again forgets. */
bool store_import_commit(uint64_t *forgotten, store_t *store, const char *user_id,
                         const char *tag, store_visit_fn visit, void *visit_ctx,
                         fzip_error_t *error);

/* ---- undo of a committed import --------------------------------------- */

/* An import that may be undone keeps its stash after the commit: the flip
 * alone makes it visible (store_import_flip) and the versions it replaced
 * (and what they name, e.g. old file blobs, which `visit` deletes when
 * they go) stay in the stash until store_import_forget drops them, at
 * the end of the undo window.  store_import_commit is the two at once.
 * Undo reuses rollback: store_import_undo makes the tag pending again
 * (one single-record write: readers see the before-state at once) and
 * rolls it back.  Before anything changes, store_import_undo_check
 * refuses an import whose documents were changed or deleted since
 * (docs/STORAGE.md "Undo"). */

/* The flip of store_import_commit without forgetting; idempotent. */
bool store_import_flip(store_t *store, const char *user_id, const char *tag,
                       fzip_error_t *error);
/* Forgets the tag's stash (`visit`, may be NULL, sees each stashed previous
 * version before it is dropped); idempotent, a no-op once forgotten. */
bool store_import_forget(uint64_t *forgotten, store_t *store, const char *user_id,
                         const char *tag, store_visit_fn visit, void *visit_ctx,
                         fzip_error_t *error);

/* What an import left in the store, per kind (fzip_kind_t). */
typedef struct {
  uint64_t tagged[FZIP_KIND_COUNT]; /* documents carrying the tag */
  uint64_t kept[FZIP_KIND_COUNT];   /* previous versions in the tag's stash */
} store_import_marks_t;

bool store_import_marks(store_import_marks_t *out, store_t *store, const char *user_id,
                        const char *tag, fzip_error_t *error);

/* Ids named per kind in a refused undo's message. */
#define STORE_UNDO_IDS_MAX 3

/* Whether the committed import `tag` can be undone: FAILED_PRECONDITION
 * when another import of the user is pending, when the tag's marks
 * differ from `expected` (what store_import_marks counted at its commit):
 * a document it wrote was overwritten (a later import, a plain write) or
 * deleted since, or its stash was forgotten.  The message names each
 * kind that differs, the counts, and up to STORE_UNDO_IDS_MAX ids of
 * documents it replaced that no longer carry its tag. */
bool store_import_undo_check(store_t *store, const char *user_id, const char *tag,
                             const store_import_marks_t *expected, fzip_error_t *error);

/* Undoes a committed import whose stash was kept: the tag becomes pending
 * again, then store_import_rollback.  Idempotent: a rerun after a crash
 * finishes it.  Call store_import_undo_check first, once. */
bool store_import_undo(store_rollback_stats_t *stats, store_t *store, const char *user_id,
                       const char *tag, store_visit_fn visit, void *visit_ctx,
                       fzip_error_t *error);

/* ---- pending imports and consistent reads ----------------------------- */

#define STORE_PENDING_MAX 16 /* pending imports per user at one time */

/* Marks `tag` pending for this user; call it before the first tagged write.
 * Until store_import_commit flips it (or store_import_rollback ends it),
 * every read hides the documents written with the tag and shows the
 * stashed version from before instead.  Idempotent.  RESOURCE_EXHAUSTED
 * when the user already has STORE_PENDING_MAX pending imports.  The
 * embedded store also sets space aside here that a rollback on a full
 * store releases first (docs/STORAGE.md). */
bool store_import_begin(store_t *store, const char *user_id, const char *tag,
                        fzip_error_t *error);

/* *pending = whether `tag` is in the user's pending set. */
bool store_import_is_pending(bool *pending, store_t *store, const char *user_id,
                             const char *tag, fzip_error_t *error);

#define STORE_SNAPSHOT_RETRIES 5 /* attempts a caller makes before giving up */

/* Opens a read-only view of the store in which one user's reads are one
 * consistent snapshot of committed data: on SQLite one read transaction
 * (a WAL snapshot) on a connection of its own; on MongoDB the reads are
 * bracketed by the user's import generation, which every begin, commit and
 * rollback end changes.  Writes through the view fail (FAILED_PRECONDITION).
 * Cursors, gets, counts and blob readers made from the view must be
 * destroyed before store_snapshot_end, which always destroys the view and
 * returns false with ABORTED when the read was not consistent (an import
 * began or committed meanwhile): read again, at most STORE_SNAPSHOT_RETRIES
 * times. */
bool store_snapshot_begin(store_t **view, store_t *store, const char *user_id,
                          fzip_error_t *error);
bool store_snapshot_end(store_t *view, fzip_error_t *error);

/* ---- change tracking (incremental exports) ---------------------------- */

/* Every write of a user's entity (put, tagged put, a rollback's or undo's
 * put back) numbers the document with the user's next change sequence
 * number (per user, starting at 1, never reused); every delete of one
 * (delete_many, a rollback's or undo's delete of what an import created)
 * records a deletion (kind, id, seq) the same way; delete_all records a
 * wipe instead (and drops the user's older deletions).  Documents written
 * before tracking existed have seq 0.  A filter's `changed_after` selects
 * the documents numbered above it; store_deletions_* lists deletions.
 * docs/STORAGE.md "Change tracking". */

typedef struct {
  /* Every write numbered <= seq is committed and visible to a read made
   * after this call: the user's last number, or, while imports are pending,
   * the number before the oldest pending one began (their writes may
   * become visible later, so an increment taken after must include them). */
  uint64_t seq;
  uint64_t wiped; /* seq of the user's last delete_all (wipe); 0: never */
} store_changes_mark_t;

/* Reads the mark; through a snapshot view, the mark of that snapshot. */
bool store_changes_mark(store_changes_mark_t *out, store_t *store, const char *user_id,
                        fzip_error_t *error);

typedef struct store_deletions store_deletions_t;

/* Ids of `kind` deleted with after_seq < seq <= upto_seq and not written
 * again since at a seq <= upto_seq, in entity id order, streamed (memory
 * does not grow with their number).  An id written again after upto_seq
 * (or by a still pending import) stays listed: such a write is in the next
 * increment, and applying deletes before it adds.  Works through a
 * snapshot view. */
bool store_deletions_new(store_deletions_t **out, store_t *store, const char *user_id,
                         fzip_kind_t kind, uint64_t after_seq, uint64_t upto_seq,
                         fzip_error_t *error);
/* true and *entity_id (borrowed until the next call) while ids remain;
 * false at the end (error untouched) or on failure (error set). */
bool store_deletions_next(store_deletions_t *d, const char **entity_id, fzip_error_t *error);
void store_deletions_destroy(store_deletions_t *d); /* accepts NULL */

#endif
