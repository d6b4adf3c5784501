/*
 * store_mongo: the MongoDB backend of the store (libmongoc), also run
 * against FerretDB v1 in the tests.
 *
 * Layout (docs/STORAGE.md, "MongoDB backend"):
 *   - one collection per entity kind (fzip_kind_info(kind)->name), one
 *     document per entity: {_id: "<userId>\x1f<entityId>", userId, id,
 *     account, date, tag, doc}; `account` and `date` are copies of the kind's
 *     filter fields so the indexes need no knowledge of entity shapes;
 *   - export_jobs / import_jobs, one document per job keyed by job id;
 *   - GridFS-layout buckets "packages" and "files" (<bucket>.files,
 *     <bucket>.chunks) plus "blob_uploads", the record of uploads in
 *     progress that the reaper uses to find orphan chunks.
 *
 * Blobs are written in the GridFS layout by this file rather than through
 * mongoc_gridfs_bucket_t upload streams: the files document is inserted
 * last, in one write, with size and sha256 in its metadata, so that insert
 * is the commit; the upload record lets the reaper find the chunks of a
 * writer that died.  Readers fetch chunks from n = offset / chunkSize on.
 *
 * FerretDB v1 (what the tests run) differs from MongoDB in ways that
 * matter here: updates and findAndModify are not atomic (job transitions
 * go through version fences), update ignores ordered=false (REPLACE
 * inserts then replaces instead of upserting), and sorts are done in
 * memory (chunk cursors are unsorted there).  docs/STORAGE.md has the
 * details.
 *
 * Connections come from a mongoc_client_pool_t: every operation pops a
 * client and pushes it back; cursors and blob streams hold one for their
 * lifetime.  Transient failures (no server selectable, broken stream) are
 * retried with exponential backoff inside the store's retry budget, then
 * reported as FZIP_ERR_UNAVAILABLE.  Writes that are not idempotent are
 * retried only when nothing reached a server (server selection failed).
 */
#include "store_mongo.h"

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_log.h"
#include "store_backend.h"

#define MONGO_DEFAULT_DB STORE_MONGO_DEFAULT_DATABASE
#define MONGO_DEFAULT_RETRY_BUDGET_MS 10000
#define MONGO_BACKOFF_START_MS 50
#define MONGO_BACKOFF_MAX_MS 2000
/* Server selection inside one attempt; the retry budget spans attempts. */
#define MONGO_SERVER_SELECTION_MS 2000
#define MONGO_CONNECT_TIMEOUT_MS 2000
/* Documents per cursor batch: bounds client memory at ~batch * doc size. */
#define MONGO_CURSOR_BATCH 200
#define MONGO_DB_NAME_MAX 63 /* MongoDB's own limit on database names */
#define MONGO_WHERE_MAX 256
/* "<bucket>.<files|chunks>": both parts are this file's own short names. */
#define MONGO_COLLECTION_NAME_MAX 32
/* An array index as a BSON key (bson_uint32_to_string): 10 digits + NUL. */
#define MONGO_INDEX_KEY_SIZE 16
#define MONGO_INDEX_FIELDS_MAX 3 /* fields of one of our compound indexes */
#define MONGO_SPECS(a) (a), sizeof(a) / sizeof((a)[0])
/* "<userId>\x1f<entityId>": the separator cannot occur in an entity id. */
#define MONGO_KEY_SEP '\x1f'
#define MONGO_KEY_MAX (FZIP_USER_ID_MAX + 1 + FZIP_ID_MAX + 1)
/* "<uploadId>/<n>" for chunk ids. */
#define MONGO_CHUNK_ID_MAX (STORE_BLOB_ID_MAX + 1 + 20 + 1)
#define MONGO_PAGE_TOKEN_MAX (24 + 1 + FZIP_ID_MAX + 1)
#define MONGO_ERR_DUPLICATE_KEY 11000
#define MONGO_UPLOADS "blob_uploads"
#define MONGO_STASH "import_stash"
#define MONGO_STASH_KEY_MAX (FZIP_USER_ID_MAX + STORE_TAG_MAX + 32 + FZIP_ID_MAX + 4)
/* Documents handled per query by rollback and commit: bounds memory. */
#define MONGO_IMPORT_PAGE 100
#define MONGO_FENCES "job_fences"
#define MONGO_PENDING "import_pending" /* {_id: "<userId>\x1f<tag>", userId, tag} */
#define MONGO_STATE "import_state"     /* {_id: userId, gen}: the import generation */
#define MONGO_GEN_MAX 48
#define MONGO_GEN_BUSY "busy-"
/* Change tracking (docs/STORAGE.md "Change tracking"): the wrapper's and
 * the stash entry's change seq, the per-user counters, the deletions. */
#define MONGO_SEQ_FIELD "seq"
#define MONGO_CHANGES "change_seq" /* {_id: userId, seq, wiped} */
#define MONGO_DELETIONS "deletions" /* {_id: "<userId>\x1f<kind>\x1f<id>", userId, kind, id, seq} */
#define MONGO_DELETION_KEY_MAX (FZIP_USER_ID_MAX + 1 + 32 + 1 + FZIP_ID_MAX + 1)
/* States of an upload record: the writer moves uploading -> committing,
 * the reaper uploading -> reaping; whoever moves it first owns it. */
#define UPLOAD_UPLOADING "uploading"
#define UPLOAD_COMMITTING "committing"
#define UPLOAD_REAPING "reaping"
/* A fence older than this was left by a process that died mid-update. */
#define MONGO_FENCE_STALE_MS 30000
/* Chunks per cursor batch (~1 MiB): bounds reader memory. */
#define MONGO_CHUNK_BATCH 4
/* Candidates tried by one claim before reporting "none available". */
#define MONGO_CLAIM_ATTEMPTS 16
#define MONGO_UPSERT_ATTEMPTS 3 /* an upsert that lost the race to insert (E11000) */

typedef struct {
  store_t base;
  mongoc_client_pool_t *pool;
  mongoc_uri_t *uri;
  char db[MONGO_DB_NAME_MAX + 1];
  int64_t retry_budget_ms;
  char where[MONGO_WHERE_MAX]; /* "host:port" for messages */
  /* FerretDB v1 runs update/findAndModify as read-then-write without a
   * lock, so job transitions go through version fences (see below). */
  bool ferretdb;
  /* A snapshot view (store_snapshot_begin) shares its parent's pool and
   * remembers the user's import generation read when it began. */
  bool is_view;
  char view_user[FZIP_USER_ID_MAX + 1];
  char view_gen[MONGO_GEN_MAX];
  store_changes_mark_t view_mark; /* the user's change mark read when it began */
} mstore_t;

static const store_vtable_t mongo_vtable;

/* ---- errors and retries ------------------------------------------------ */

static bool is_transient(const bson_error_t *e) {
  return e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM;
}

static bool is_duplicate_key(const bson_error_t *e) {
  return e->code == MONGO_ERR_DUPLICATE_KEY;
}

static bool fail_mongo(fzip_error_t *error, const mstore_t *s, const bson_error_t *e,
                       const char *what) {
  fzip_code_t code = FZIP_ERR_INTERNAL;
  if (is_transient(e))
    code = FZIP_ERR_UNAVAILABLE;
  else if (is_duplicate_key(e))
    code = FZIP_ERR_ALREADY_EXISTS;
  return fzip_error_set(error, FZIP_DOMAIN_STORE, code, "mongodb %s (%s): %s", what, s->where,
                        e->message);
}

static bool fail_oom(fzip_error_t *error) {
  return fzip_error_oom(error, NULL);
}

typedef struct {
  int64_t deadline;
  int64_t delay_ms;
} retry_t;

static void retry_start(retry_t *r, const mstore_t *s) {
  r->deadline = fzip_monotonic_ms() + s->retry_budget_ms;
  r->delay_ms = MONGO_BACKOFF_START_MS;
}

/* True (after sleeping) when the failed attempt may be repeated.  Only a
 * failed server selection proves nothing was sent, so only that is
 * retried for writes that are not idempotent. */
static bool retry_again(retry_t *r, const bson_error_t *e, bool idempotent) {
  if (!is_transient(e))
    return false;
  if (!idempotent && e->domain != MONGOC_ERROR_SERVER_SELECTION)
    return false;
  int64_t left = r->deadline - fzip_monotonic_ms();
  if (left <= 0)
    return false;
  fzip_sleep_ms(r->delay_ms < left ? r->delay_ms : left);
  r->delay_ms = r->delay_ms * 2 > MONGO_BACKOFF_MAX_MS ? MONGO_BACKOFF_MAX_MS : r->delay_ms * 2;
  return true;
}

/* ---- connections ------------------------------------------------------- */

/* A popped client and one collection of it. */
typedef struct {
  mongoc_client_t *client;
  mongoc_collection_t *coll;
} conn_t;

static void conn_open(conn_t *c, mstore_t *s, const char *collection) {
  c->client = mongoc_client_pool_pop(s->pool);
  c->coll = mongoc_client_get_collection(c->client, s->db, collection);
}

static void conn_close(conn_t *c, mstore_t *s) {
  mongoc_collection_destroy(c->coll);
  if (c->client)
    mongoc_client_pool_push(s->pool, c->client);
  c->coll = NULL;
  c->client = NULL;
}

static int64_t reply_int(const bson_t *reply, const char *field) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, reply, field) && BSON_ITER_HOLDS_NUMBER(&it))
    return bson_iter_as_int64(&it);
  return 0;
}

static const char *doc_utf8(const bson_t *doc, const char *field) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return NULL;
}

/* A stored wrapper's or stash entry's change seq (0: written before
 * change tracking). */
static uint64_t doc_seq(const bson_t *doc) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, doc, MONGO_SEQ_FIELD) && BSON_ITER_HOLDS_INT64(&it))
    return (uint64_t)bson_iter_int64(&it);
  return 0;
}

/* Finds the first document in `sort` order (NULL: any), copied into
 * *out (NULL if none). */
static bool find_first(bson_t **out, mstore_t *s, const char *collection, const bson_t *filter,
                       const bson_t *sort, fzip_error_t *error) {
  bool ok = false;
  conn_t c = {0};
  mongoc_cursor_t *cur = NULL;
  bson_error_t berr;
  bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
  retry_t r;

  *out = NULL;
  if (sort)
    BSON_APPEND_DOCUMENT(opts, "sort", sort);
  retry_start(&r, s);
  conn_open(&c, s, collection);
  for (;;) {
    const bson_t *doc = NULL;
    cur = mongoc_collection_find_with_opts(c.coll, filter, opts, NULL);
    if (mongoc_cursor_next(cur, &doc)) {
      *out = bson_copy(doc);
      ok = true;
      goto done;
    }
    if (!mongoc_cursor_error(cur, &berr)) {
      ok = true;
      goto done;
    }
    mongoc_cursor_destroy(cur);
    cur = NULL;
    if (!retry_again(&r, &berr, true)) {
      fail_mongo(error, s, &berr, "find");
      goto done;
    }
  }
done:
  mongoc_cursor_destroy(cur);
  bson_destroy(opts);
  conn_close(&c, s);
  return ok;
}

static bool find_one(bson_t **out, mstore_t *s, const char *collection, const bson_t *filter,
                     fzip_error_t *error) {
  return find_first(out, s, collection, filter, NULL, error);
}

/* *out = how many documents of `collection` match q (count_documents,
 * retried); `what` names the count in an error. */
static bool count_in(uint64_t *out, mstore_t *s, const char *collection, const bson_t *q,
                     const char *what, fzip_error_t *error) {
  bson_error_t berr;
  conn_t c = {0};
  retry_t r;
  int64_t n;

  conn_open(&c, s, collection);
  retry_start(&r, s);
  do {
    n = mongoc_collection_count_documents(c.coll, q, NULL, NULL, NULL, &berr);
  } while (n < 0 && retry_again(&r, &berr, true));
  conn_close(&c, s);
  if (n < 0)
    return fail_mongo(error, s, &berr, what);
  *out = (uint64_t)n;
  return true;
}

/* Called with each document find_each reads; false (error set) stops. */
typedef bool (*visit_fn)(const bson_t *doc, void *ctx, fzip_error_t *error);

/* Runs `visit` on each document of a find.  A cursor that breaks is opened
 * again while the retry budget lasts, and the documents come again from the
 * first: `restart` (may be NULL) runs before each pass, so that a pass's
 * results do not depend on a broken one. */
static bool find_each(mstore_t *s, const char *collection, const bson_t *filter,
                      const bson_t *opts, void (*restart)(void *ctx), visit_fn visit, void *ctx,
                      const char *what, fzip_error_t *error) {
  conn_t c = {0};
  mongoc_cursor_t *cur = NULL;
  bson_error_t berr;
  retry_t r;
  bool ok = false;

  conn_open(&c, s, collection);
  retry_start(&r, s);
  for (;;) {
    const bson_t *doc;
    if (restart)
      restart(ctx);
    cur = mongoc_collection_find_with_opts(c.coll, filter, opts, NULL);
    while (mongoc_cursor_next(cur, &doc)) {
      if (!visit(doc, ctx, error))
        goto done;
    }
    if (!mongoc_cursor_error(cur, &berr))
      break;
    mongoc_cursor_destroy(cur);
    cur = NULL;
    if (!retry_again(&r, &berr, true)) {
      fail_mongo(error, s, &berr, what);
      goto done;
    }
  }
  ok = true;
done:
  mongoc_cursor_destroy(cur);
  conn_close(&c, s);
  return ok;
}

/* Runs a write command on the database (createIndexes). */
static bool db_command(mstore_t *s, const bson_t *cmd, const char *what, fzip_error_t *error) {
  mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
  bson_error_t berr;
  retry_t r;
  bool ok;

  retry_start(&r, s);
  do {
    ok = mongoc_client_write_command_with_opts(client, s->db, cmd, NULL, NULL, &berr);
  } while (!ok && retry_again(&r, &berr, true));
  mongoc_client_pool_push(s->pool, client);
  if (!ok)
    return fail_mongo(error, s, &berr, what);
  return true;
}

/* The single-collection writes that coll_write runs. */
typedef enum { WRITE_DELETE_MANY, WRITE_UPDATE_ONE, WRITE_REPLACE_ONE } write_op_t;

/* Runs one write with retries (an update only while nothing was sent: it
 * may not be idempotent); *count (may be NULL) gets the documents deleted
 * or matched. */
static bool coll_write(int64_t *count, mstore_t *s, const char *collection, write_op_t op,
                       const bson_t *q, const bson_t *doc, fzip_error_t *error) {
  static const char *const what[] = {"deleting", "updating", "replacing"};
  conn_t c = {0};
  bson_t reply = BSON_INITIALIZER;
  bson_error_t berr;
  retry_t r;
  bool ok = false;

  conn_open(&c, s, collection);
  retry_start(&r, s);
  for (;;) {
    bson_destroy(&reply);
    if (op == WRITE_DELETE_MANY)
      ok = mongoc_collection_delete_many(c.coll, q, NULL, &reply, &berr);
    else if (op == WRITE_UPDATE_ONE)
      ok = mongoc_collection_update_one(c.coll, q, doc, NULL, &reply, &berr);
    else
      ok = mongoc_collection_replace_one(c.coll, q, doc, NULL, &reply, &berr);
    if (ok || !retry_again(&r, &berr, op != WRITE_UPDATE_ONE))
      break;
  }
  conn_close(&c, s);
  if (ok && count)
    *count = reply_int(&reply, op == WRITE_DELETE_MANY ? "deletedCount" : "matchedCount");
  bson_destroy(&reply);
  if (!ok)
    return fail_mongo(error, s, &berr, what[op]);
  return true;
}

static bool delete_where(uint64_t *deleted, mstore_t *s, const char *collection,
                         const bson_t *q, fzip_error_t *error) {
  int64_t n = 0;
  if (!coll_write(&n, s, collection, WRITE_DELETE_MANY, q, NULL, error))
    return false;
  if (deleted)
    *deleted = (uint64_t)n;
  return true;
}

/* Runs update_one; *matched says whether the filter matched a document. */
static bool update_one(bool *matched, mstore_t *s, const char *collection, const bson_t *q,
                       const bson_t *update, fzip_error_t *error) {
  int64_t n = 0;
  *matched = false;
  if (!coll_write(&n, s, collection, WRITE_UPDATE_ONE, q, update, error))
    return false;
  *matched = n > 0;
  return true;
}

/* Replaces the document matching q (idempotent, so retried freely). */
static bool replace_one(mstore_t *s, const char *collection, const bson_t *q,
                        const bson_t *replacement, fzip_error_t *error) {
  return coll_write(NULL, s, collection, WRITE_REPLACE_ONE, q, replacement, error);
}

/* ---- open / indexes ---------------------------------------------------- */

static pthread_once_t mongo_init_once = PTHREAD_ONCE_INIT;

/* The driver's own messages (monitor retries, "endSessions" refused by
 * FerretDB) go to our JSON log instead of stdout: errors as warnings, the
 * rest at debug level. */
static void mongo_log_handler(mongoc_log_level_t level, const char *domain, const char *message,
                              void *data) {
  (void)data;
  fzip_log(level <= MONGOC_LOG_LEVEL_ERROR ? FZIP_LOG_WARN : FZIP_LOG_DEBUG, "mongoc", message,
           "domain", domain, NULL);
}

static void mongo_init(void) {
  mongoc_init();
  mongoc_log_set_handler(mongo_log_handler, NULL);
}

typedef struct {
  const char *name;
  bool unique;
  const char *keys[MONGO_INDEX_FIELDS_MAX + 1]; /* NULL-ended; a leading '-' means descending */
} index_spec_t;

static void append_index(bson_t *indexes, uint32_t i, const index_spec_t *spec) {
  bson_t idx, key;
  char ikey[MONGO_INDEX_KEY_SIZE];
  const char *k;
  bson_uint32_to_string(i, &k, ikey, sizeof ikey);
  bson_append_document_begin(indexes, k, -1, &idx);
  bson_append_document_begin(&idx, "key", -1, &key);
  for (int j = 0; j <= MONGO_INDEX_FIELDS_MAX && spec->keys[j]; j++) {
    const char *f = spec->keys[j];
    BSON_APPEND_INT32(&key, f[0] == '-' ? f + 1 : f, f[0] == '-' ? -1 : 1);
  }
  bson_append_document_end(&idx, &key);
  BSON_APPEND_UTF8(&idx, "name", spec->name);
  if (spec->unique)
    BSON_APPEND_BOOL(&idx, "unique", true);
  bson_append_document_end(indexes, &idx);
}

/* One index per createIndexes command: FerretDB v1.24 panics (and drops
 * the connection) when one command repeats two or more existing indexes
 * (validateIndexesForCreation deletes from the slice it is indexing). */
static bool create_indexes(mstore_t *s, const char *collection, const index_spec_t *specs,
                           size_t n, fzip_error_t *error) {
  bool ok = true;

  for (size_t i = 0; ok && i < n; i++) {
    bson_t cmd = BSON_INITIALIZER, indexes;
    BSON_APPEND_UTF8(&cmd, "createIndexes", collection);
    bson_append_array_begin(&cmd, "indexes", -1, &indexes);
    append_index(&indexes, 0, &specs[i]);
    bson_append_array_end(&cmd, &indexes);
    ok = db_command(s, &cmd, "createIndexes", error);
    bson_destroy(&cmd);
  }
  if (!ok)
    fzip_error_prefix(error, "indexing %s", collection);
  return ok;
}

static bool create_entity_indexes(mstore_t *s, fzip_error_t *error) {
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    const fzip_kind_info_t *ki = fzip_kind_info((fzip_kind_t)k);
    index_spec_t specs[4] = {{"userId_id", true, {"userId", "id", NULL}},
                             {"userId_seq", false, {"userId", "seq", NULL}}};
    size_t n = 2;
    if (ki->account_field)
      specs[n++] = (index_spec_t){"userId_account_id", false, {"userId", "account", "id", NULL}};
    if (ki->date_field)
      specs[n++] = (index_spec_t){"userId_date_id", false, {"userId", "date", "id", NULL}};
    if (!create_indexes(s, ki->name, specs, n, error))
      return false;
  }
  return true;
}

static const char *job_collection(store_job_kind_t kind) {
  static const char *const NAMES[] = {"export_jobs", "import_jobs", "export_schedules"};
  return NAMES[kind];
}

static const char *bucket_name(store_bucket_t bucket) {
  return bucket == STORE_BUCKET_PACKAGES ? "packages" : "files";
}

static void collection_name(char *out, size_t cap, store_bucket_t bucket, const char *suffix) {
  snprintf(out, cap, "%s.%s", bucket_name(bucket), suffix);
}

typedef struct {
  mstore_t *s;
  const char *collection;
} backfill_t;

/* Sets the job's idemKey to its own key, fenced on idemKey still missing
 * (a job seen again after a broken cursor, or one another replica keyed
 * meanwhile, is left alone). */
static bool backfill_one(const bson_t *doc, void *vctx, fzip_error_t *error) {
  backfill_t *b = vctx;
  const char *id = doc_utf8(doc, "_id");
  char key[STORE_IDEM_KEY_SIZE];
  bson_t *q, *update;
  bool matched, ok;

  if (!id)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                          "malformed job document in %s", b->collection);
  store_job_idem_key(key, NULL, id);
  q = BCON_NEW("_id", BCON_UTF8(id), "idemKey", "{", "$exists", BCON_BOOL(false), "}");
  update = BCON_NEW("$set", "{", "idemKey", BCON_UTF8(key), "}");
  ok = update_one(&matched, b->s, b->collection, q, update, error);
  bson_destroy(q);
  bson_destroy(update);
  return ok;
}

/* Jobs stored before request ids have no idemKey; the unique index would
 * see them all as one null key.  One pass of a cursor over them (ids
 * only) gives each its own id as key, one update per job (FerretDB v1 has
 * no pipeline updates); a database with none left costs one find. */
static bool backfill_idem_keys(mstore_t *s, const char *collection, fzip_error_t *error) {
  backfill_t b = {s, collection};
  bson_t *q = BCON_NEW("idemKey", "{", "$exists", BCON_BOOL(false), "}");
  bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
  bool ok = find_each(s, collection, q, opts, NULL, backfill_one, &b,
                      "backfilling job request keys", error);
  bson_destroy(q);
  bson_destroy(opts);
  return ok;
}

static bool create_job_and_blob_indexes(mstore_t *s, fzip_error_t *error) {
  static const index_spec_t job_specs[] = {
      {"userId_createdAt_id", false, {"userId", "-createdAt", "-_id", NULL}},
      {"runnable_leaseUntil_createdAt", false, {"runnable", "leaseUntil", "createdAt", NULL}},
      {"expiresAt", false, {"expiresAt", NULL}},
      /* Idempotent creates: one job per (user, request key) in a kind's
       * collection (store_job_idem_key; never missing, see backfill). */
      {"userId_idemKey_unique", true, {"userId", "idemKey", NULL}},
  };
  static const index_spec_t files_specs[] = {{"filename_unique", true, {"filename", NULL}}};
  static const index_spec_t chunks_specs[] = {{"files_id_n", true, {"files_id", "n", NULL}}};
  static const index_spec_t upload_specs[] = {{"startedAt", false, {"startedAt", NULL}}};
  char name[MONGO_COLLECTION_NAME_MAX];

  for (int k = STORE_JOB_EXPORT; k <= STORE_JOB_SCHEDULE; k++) {
    if (!backfill_idem_keys(s, job_collection((store_job_kind_t)k), error) ||
        !create_indexes(s, job_collection((store_job_kind_t)k), MONGO_SPECS(job_specs), error))
      return false;
  }
  for (int b = STORE_BUCKET_PACKAGES; b <= STORE_BUCKET_FILES; b++) {
    collection_name(name, sizeof name, (store_bucket_t)b, "files");
    if (!create_indexes(s, name, MONGO_SPECS(files_specs), error))
      return false;
    collection_name(name, sizeof name, (store_bucket_t)b, "chunks");
    if (!create_indexes(s, name, MONGO_SPECS(chunks_specs), error))
      return false;
  }
  return create_indexes(s, MONGO_UPLOADS, MONGO_SPECS(upload_specs), error);
}

static void describe_hosts(char *out, size_t cap, const mongoc_uri_t *uri) {
  const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri);
  size_t used = 0;
  out[0] = '\0';
  for (; h && used < cap; h = h->next) {
    int w = snprintf(out + used, cap - used, "%s%s", used ? "," : "", h->host_and_port);
    if (w < 0)
      break;
    used += (size_t)w;
  }
  if (!out[0])
    snprintf(out, cap, "%s", "(srv)");
}

/* Retries a ping within the budget: a server still starting is not an
 * error until the budget is spent. */
static bool ping(mstore_t *s, fzip_error_t *error) {
  mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
  bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
  bson_error_t berr;
  retry_t r;
  bool ok;

  retry_start(&r, s);
  do {
    ok = mongoc_client_command_simple(client, "admin", cmd, NULL, NULL, &berr);
  } while (!ok && retry_again(&r, &berr, true));
  bson_destroy(cmd);
  mongoc_client_pool_push(s->pool, client);
  if (!ok)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE,
                          "cannot reach MongoDB at %s: %s", s->where, berr.message);
  return true;
}

/* A client of its own for each health ping, with every timeout cut to
 * timeout_ms: the pool's clients wait out a server selection and retry, and
 * a fresh single-threaded client carries no cooldown of a server that was
 * down at the last ping, so a server back up is seen at the next one. */
static bool mongo_ping(store_t *store, int timeout_ms, fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  mongoc_uri_t *uri = mongoc_uri_copy(s->uri);
  mongoc_client_t *client = NULL;
  bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
  bson_error_t berr;
  bool ok = false;

  mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, timeout_ms);
  mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, timeout_ms);
  mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS, timeout_ms);
  client = mongoc_client_new_from_uri_with_error(uri, &berr);
  if (client) {
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    ok = mongoc_client_command_simple(client, "admin", cmd, NULL, NULL, &berr);
  }
  mongoc_client_destroy(client);
  bson_destroy(cmd);
  mongoc_uri_destroy(uri);
  if (!ok)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE,
                          "cannot reach MongoDB at %s: %s", s->where, berr.message);
  return true;
}

static bool detect_ferretdb(mstore_t *s, fzip_error_t *error) {
  mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
  bson_t *cmd = BCON_NEW("buildInfo", BCON_INT32(1));
  bson_t reply;
  bson_error_t berr;
  bson_iter_t it;
  bool ok = mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &berr);

  if (ok)
    s->ferretdb = bson_iter_init_find(&it, &reply, "ferretdbVersion");
  bson_destroy(&reply);
  bson_destroy(cmd);
  mongoc_client_pool_push(s->pool, client);
  if (!ok)
    return fail_mongo(error, s, &berr, "buildInfo");
  return true;
}

/* Majority + journal: a job claimed or an entity restored must survive
 * the loss of the primary, or two workers could run one job after a
 * failover.  URI settings win, so an operator can still choose. */
static void configure_uri(mongoc_uri_t *uri) {
  if (!mongoc_uri_has_option(uri, MONGOC_URI_W)) {
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_write_concern_set_journal(wc, true);
    mongoc_uri_set_write_concern(uri, wc);
    mongoc_write_concern_destroy(wc);
  }
  if (!mongoc_uri_has_option(uri, MONGOC_URI_RETRYWRITES))
    mongoc_uri_set_option_as_bool(uri, MONGOC_URI_RETRYWRITES, true);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_RETRYREADS))
    mongoc_uri_set_option_as_bool(uri, MONGOC_URI_RETRYREADS, true);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                   MONGO_SERVER_SELECTION_MS);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, MONGO_CONNECT_TIMEOUT_MS);
  if (!mongoc_uri_has_option(uri, MONGOC_URI_APPNAME))
    mongoc_uri_set_appname(uri, "fzip");
}

/* options->database, else the URI's path ("mongodb://h/NAME"), else the
 * default: tests give each program its own database through the URI. */
static const char *pick_database(const store_options_t *options, const mongoc_uri_t *uri) {
  const char *db = options->database;
  if (!db || !*db)
    db = mongoc_uri_get_database(uri);
  return db && *db ? db : MONGO_DEFAULT_DB;
}

static void mongo_destroy(store_t *store) {
  mstore_t *s = (mstore_t *)store;
  if (!s)
    return;
  if (s->is_view) {
    bson_free(s); /* the pool and URI are the parent's */
    return;
  }
  mongoc_client_pool_destroy(s->pool);
  mongoc_uri_destroy(s->uri);
  bson_free(s);
}

bool store_mongo_open(store_t **out, const store_options_t *options, fzip_error_t *error) {
  mstore_t *s = NULL;
  bson_error_t berr;
  const char *db = NULL;
  bool ok = false;

  *out = NULL;
  pthread_once(&mongo_init_once, mongo_init);
  s = bson_malloc0(sizeof *s);
  s->uri = mongoc_uri_new_with_error(options->uri, &berr);
  if (!s->uri) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT, "bad MongoDB URI: %s",
                   berr.message);
    goto done;
  }
  db = pick_database(options, s->uri);
  if (strlen(db) > MONGO_DB_NAME_MAX || strpbrk(db, "/\\. \"$")) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "bad MongoDB database name \"%s\"", db);
    goto done;
  }
  s->base.vt = &mongo_vtable;
  s->base.options = *options;
  s->retry_budget_ms = options->retry_budget_ms > 0 ? options->retry_budget_ms
                                                     : MONGO_DEFAULT_RETRY_BUDGET_MS;
  snprintf(s->db, sizeof s->db, "%s", db);
  configure_uri(s->uri);
  describe_hosts(s->where, sizeof s->where, s->uri);
  s->pool = mongoc_client_pool_new_with_error(s->uri, &berr);
  if (!s->pool) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "cannot use MongoDB URI: %s", berr.message);
    goto done;
  }
  mongoc_client_pool_set_error_api(s->pool, MONGOC_ERROR_API_VERSION_2);
  if (!ping(s, error) || !detect_ferretdb(s, error) || !create_entity_indexes(s, error) ||
      !create_job_and_blob_indexes(s, error))
    goto done;
  *out = &s->base;
  s = NULL;
  ok = true;
done:
  mongo_destroy((store_t *)s);
  return ok;
}

/* ---- entities ---------------------------------------------------------- */

/* The n parts joined by MONGO_KEY_SEP into out[cap] (entity, stash and
 * pending keys); INVALID_ARGUMENT, naming `what`, when they do not fit. */
static bool key_join(char *out, size_t cap, const char *const *parts, size_t n,
                     const char *what, fzip_error_t *error) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    size_t part = strlen(parts[i]);
    if (len + (i > 0) + part >= cap)
      return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                            "%s longer than %zu bytes", what, cap - 1);
    if (i > 0)
      out[len++] = MONGO_KEY_SEP;
    memcpy(out + len, parts[i], part);
    len += part;
  }
  out[len] = '\0';
  return true;
}

static bool entity_key(char out[MONGO_KEY_MAX], const char *user_id, const char *id,
                       fzip_error_t *error) {
  return key_join(out, MONGO_KEY_MAX, (const char *const[]){user_id, id}, 2,
                  "user id + entity id", error);
}

/* ---- change numbers ---------------------------------------------------- */

static bool find_and_modify(bson_t **out, mstore_t *s, const char *collection, const bson_t *q,
                            const bson_t *sort, const bson_t *update,
                            mongoc_find_and_modify_flags_t flags, fzip_error_t *error);
static bool read_counter(store_changes_mark_t *out, mstore_t *s, const char *user_id,
                         fzip_error_t *error);
static bool read_mark(store_changes_mark_t *out, mstore_t *s, const char *user_id,
                      fzip_error_t *error);

/* Reserves n (> 0) of the user's change numbers, *first the first of them:
 * one findAndModify $inc (upsert) on the user's counter document.  A
 * number is taken before the write it numbers, so two plain writers of
 * one user can commit out of order (STORAGE.md "Change tracking").  The
 * first reservations of a user can race to insert the counter: the loser
 * gets E11000 (ALREADY_EXISTS) and, the document being there now, is
 * asked again (MongoDB's advice for racing upserts; seen on FerretDB in
 * the conformance suite's concurrent writers). */
static bool seq_reserve(uint64_t *first, mstore_t *s, const char *user_id, uint64_t n,
                        fzip_error_t *error) {
  bson_t *q = BCON_NEW("_id", BCON_UTF8(user_id));
  bson_t *inc = BCON_NEW("$inc", "{", MONGO_SEQ_FIELD, BCON_INT64((int64_t)n), "}");
  bson_t *got = NULL;
  fzip_error_t err;
  bool ok = false;
  for (int attempt = 0; !ok && attempt < MONGO_UPSERT_ATTEMPTS; attempt++) {
    fzip_error_clear(&err);
    ok = find_and_modify(&got, s, MONGO_CHANGES, q, NULL, inc,
                         (mongoc_find_and_modify_flags_t)(MONGOC_FIND_AND_MODIFY_UPSERT |
                                                          MONGOC_FIND_AND_MODIFY_RETURN_NEW),
                         &err);
    if (!ok && err.code != FZIP_ERR_ALREADY_EXISTS)
      break;
  }
  if (!ok && error)
    *error = err;
  int64_t last = ok && got ? reply_int(got, MONGO_SEQ_FIELD) : 0;

  if (ok && (uint64_t)last < n)
    ok = fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INTERNAL,
                        "mongodb: the change counter of %s did not move", user_id);
  if (ok)
    *first = (uint64_t)last - n + 1;
  bson_destroy(got);
  bson_destroy(q);
  bson_destroy(inc);
  return ok;
}

static bool deletion_key(char out[MONGO_DELETION_KEY_MAX], const char *user_id,
                         const fzip_kind_info_t *ki, const char *id, fzip_error_t *error) {
  return key_join(out, MONGO_DELETION_KEY_MAX, (const char *const[]){user_id, ki->name, id}, 3,
                  "deletion key", error);
}

/* Records the deletion of ids[i] under number first + i, replacing an
 * older record of the id.  Written before the documents go: a record
 * whose document is still there is not listed (mongo_deletions_page), so
 * a failure between the two loses nothing. */
static bool note_deletions(mstore_t *s, const char *user_id, const fzip_kind_info_t *ki,
                           const char *const *ids, size_t n, uint64_t first,
                           fzip_error_t *error) {
  char key[MONGO_DELETION_KEY_MAX], ikey[MONGO_INDEX_KEY_SIZE];
  const char *k;
  bson_t q = BSON_INITIALIZER, in, arr;
  bson_t **docs = bson_malloc0((n > 0 ? n : 1) * sizeof *docs);
  bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
  bson_error_t berr;
  conn_t c = {0};
  bool ok = false;

  bson_append_document_begin(&q, "_id", -1, &in);
  bson_append_array_begin(&in, "$in", -1, &arr);
  for (size_t i = 0; i < n; i++) {
    if (!deletion_key(key, user_id, ki, ids[i], error))
      break;
    bson_uint32_to_string((uint32_t)i, &k, ikey, sizeof ikey);
    bson_append_utf8(&arr, k, -1, key, -1);
    docs[i] = BCON_NEW("_id", BCON_UTF8(key), "userId", BCON_UTF8(user_id), "kind",
                       BCON_UTF8(ki->name), "id", BCON_UTF8(ids[i]), MONGO_SEQ_FIELD,
                       BCON_INT64((int64_t)(first + i)));
  }
  bson_append_array_end(&in, &arr);
  bson_append_document_end(&q, &in);
  if (n == 0 || !docs[n - 1] || !delete_where(NULL, s, MONGO_DELETIONS, &q, error))
    goto done;
  conn_open(&c, s, MONGO_DELETIONS);
  /* A duplicate is a concurrent delete of the same id: recorded either way.
   * Unordered, so a duplicate does not stop the records after it. */
  ok = mongoc_collection_insert_many(c.coll, (const bson_t **)docs, n, opts, NULL, &berr) ||
       is_duplicate_key(&berr) || fail_mongo(error, s, &berr, "recording deletions");
  conn_close(&c, s);
done:
  for (size_t i = 0; i < n; i++)
    bson_destroy(docs[i]);
  bson_free(docs);
  bson_destroy(opts);
  bson_destroy(&q);
  return ok || n == 0;
}

/* The stored wrapper: key, owner, id, the copied filter fields, the doc. */
static bool entity_wrap(bson_t *out, const fzip_kind_info_t *ki, const char *user_id,
                        const char *id, const char *tag, uint64_t seq, const bson_t *doc,
                        fzip_error_t *error) {
  char key[MONGO_KEY_MAX];
  bson_iter_t it;

  if (!entity_key(key, user_id, id, error))
    return false;
  bson_init(out);
  BSON_APPEND_UTF8(out, "_id", key);
  BSON_APPEND_UTF8(out, "userId", user_id);
  BSON_APPEND_UTF8(out, "id", id);
  if (ki->account_field && bson_iter_init_find(&it, doc, ki->account_field) &&
      BSON_ITER_HOLDS_UTF8(&it))
    BSON_APPEND_UTF8(out, "account", bson_iter_utf8(&it, NULL));
  if (ki->date_field && bson_iter_init_find(&it, doc, ki->date_field) &&
      BSON_ITER_HOLDS_NUMBER(&it))
    BSON_APPEND_INT64(out, "date", bson_iter_as_int64(&it));
  if (tag)
    BSON_APPEND_UTF8(out, "tag", tag);
  BSON_APPEND_INT64(out, MONGO_SEQ_FIELD, (int64_t)seq);
  BSON_APPEND_DOCUMENT(out, "doc", doc);
  return true;
}

static void append_string_array(bson_t *parent, const char *name, const char *const *items,
                                size_t n) {
  bson_t arr;
  char ikey[MONGO_INDEX_KEY_SIZE];
  const char *k;
  bson_append_array_begin(parent, name, -1, &arr);
  for (size_t i = 0; i < n; i++) {
    bson_uint32_to_string((uint32_t)i, &k, ikey, sizeof ikey);
    bson_append_utf8(&arr, k, -1, items[i], -1);
  }
  bson_append_array_end(parent, &arr);
}

static void entity_filter(bson_t *q, const char *user_id, const store_filter_t *f) {
  bson_t sub;
  bson_init(q);
  BSON_APPEND_UTF8(q, "userId", user_id);
  if (!f)
    return;
  if (f->n_account_ids > 0) {
    bson_append_document_begin(q, "account", -1, &sub);
    append_string_array(&sub, "$in", f->account_ids, f->n_account_ids);
    bson_append_document_end(q, &sub);
  }
  if (f->has_date_from || f->has_date_to) {
    bson_append_document_begin(q, "date", -1, &sub);
    if (f->has_date_from)
      BSON_APPEND_INT64(&sub, "$gte", f->date_from);
    if (f->has_date_to)
      BSON_APPEND_INT64(&sub, "$lte", f->date_to);
    bson_append_document_end(q, &sub);
  }
  if (f->after_id) {
    bson_append_document_begin(q, "id", -1, &sub);
    BSON_APPEND_UTF8(&sub, "$gt", f->after_id);
    bson_append_document_end(q, &sub);
  }
  if (f->changed_after > 0) {
    bson_append_document_begin(q, MONGO_SEQ_FIELD, -1, &sub);
    BSON_APPEND_INT64(&sub, "$gt", (int64_t)f->changed_after);
    bson_append_document_end(q, &sub);
  }
}

typedef struct {
  store_cursor_t base;
  mstore_t *s;
  conn_t c;
  mongoc_cursor_t *cur;
  bool finished;  /* the driver refuses to advance a completed cursor */
  bson_t current; /* static view into the cursor's current raw document */
} mcursor_t;

static void mongo_cursor_destroy(store_cursor_t *cursor) {
  mcursor_t *mc = (mcursor_t *)cursor;
  if (!mc)
    return;
  mongoc_cursor_destroy(mc->cur);
  conn_close(&mc->c, mc->s);
  free(mc);
}

static bool mongo_cursor_new(store_cursor_t **out, store_t *store, const char *user_id,
                             fzip_kind_t kind, const store_filter_t *filter,
                             fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  const fzip_kind_info_t *ki = fzip_kind_info(kind);
  /* bson_t demands 128-byte alignment, more than malloc promises. */
  size_t mc_size = (sizeof(mcursor_t) + 127) / 128 * 128;
  mcursor_t *mc = aligned_alloc(128, mc_size);
  if (mc)
    memset(mc, 0, mc_size);
  bson_t q;
  bson_t *opts = BCON_NEW("sort", "{", "id", BCON_INT32(1), "}", "batchSize",
                          BCON_INT32(MONGO_CURSOR_BATCH), "projection", "{", "doc",
                          BCON_INT32(1), "tag", BCON_INT32(1), "}");

  if (!mc) {
    bson_destroy(opts);
    return fzip_error_oom(error, NULL);
  }
  if (filter && filter->limit > 0)
    BSON_APPEND_INT64(opts, "limit", (int64_t)filter->limit);
  entity_filter(&q, user_id, filter);
  mc->base.vt = &mongo_vtable;
  mc->s = s;
  conn_open(&mc->c, s, ki->name);
  mc->cur = mongoc_collection_find_with_opts(mc->c.coll, &q, opts, NULL);
  bson_destroy(&q);
  bson_destroy(opts);
  *out = &mc->base;
  return true;
}

static bool mongo_cursor_next(store_cursor_t *cursor, const bson_t **doc, const char **tag,
                              fzip_error_t *error) {
  mcursor_t *mc = (mcursor_t *)cursor;
  const bson_t *raw = NULL;
  bson_error_t berr;
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;

  if (mc->finished)
    return false;
  if (!mongoc_cursor_next(mc->cur, &raw)) {
    if (mongoc_cursor_error(mc->cur, &berr))
      return fail_mongo(error, mc->s, &berr, "reading entities");
    mc->finished = true;
    return false;
  }
  if (!bson_iter_init_find(&it, raw, "doc") || !BSON_ITER_HOLDS_DOCUMENT(&it))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                          "mongodb entity without a doc field");
  bson_iter_document(&it, &len, &data);
  if (!bson_init_static(&mc->current, data, len))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS, "corrupt entity doc");
  if (tag)
    *tag = doc_utf8(raw, "tag"); /* lives in the cursor's batch, like doc */
  *doc = &mc->current;
  return true;
}

static bool mongo_entity_count(uint64_t *out, store_t *store, const char *user_id,
                               fzip_kind_t kind, const store_filter_t *filter,
                               fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  const fzip_kind_info_t *ki = fzip_kind_info(kind);
  conn_t c = {0};
  bson_t q;
  bson_t opts = BSON_INITIALIZER;
  bson_error_t berr;
  retry_t r;
  int64_t n;

  if (filter && filter->limit > 0)
    BSON_APPEND_INT64(&opts, "limit", (int64_t)filter->limit);
  entity_filter(&q, user_id, filter);
  conn_open(&c, s, ki->name);
  retry_start(&r, s);
  do {
    n = mongoc_collection_count_documents(c.coll, &q, &opts, NULL, NULL, &berr);
  } while (n < 0 && retry_again(&r, &berr, true));
  conn_close(&c, s);
  bson_destroy(&q);
  bson_destroy(&opts);
  if (n < 0)
    return fail_mongo(error, s, &berr, "counting entities");
  *out = (uint64_t)n;
  return true;
}

static bool mongo_entity_get(bson_t **out, char tag[STORE_TAG_MAX + 1], store_t *store,
                             const char *user_id, fzip_kind_t kind, const char *id,
                             fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  char key[MONGO_KEY_MAX];
  bson_t *found = NULL;
  bson_t q = BSON_INITIALIZER;
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;
  bool ok = false;

  if (!entity_key(key, user_id, id, error))
    goto done;
  BSON_APPEND_UTF8(&q, "_id", key);
  if (!find_one(&found, s, fzip_kind_info(kind)->name, &q, error))
    goto done;
  if (!found) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "%s %s not found",
                   fzip_kind_info(kind)->name, id);
    goto done;
  }
  if (!bson_iter_init_find(&it, found, "doc") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS, "entity without a doc field");
    goto done;
  }
  bson_iter_document(&it, &len, &data);
  *out = bson_new_from_data(data, len);
  if (tag)
    snprintf(tag, STORE_TAG_MAX + 1, "%s", doc_utf8(found, "tag") ? doc_utf8(found, "tag") : "");
  ok = *out != NULL || fail_oom(error);
done:
  bson_destroy(found);
  bson_destroy(&q);
  return ok;
}

/* {_id: {$in: [keys of ids]}} */
static bool keys_filter(bson_t *q, const char *user_id, const char *const *ids, size_t n,
                        fzip_error_t *error) {
  bson_t in, arr;
  char key[MONGO_KEY_MAX], ikey[MONGO_INDEX_KEY_SIZE];
  const char *k;

  bson_init(q);
  bson_append_document_begin(q, "_id", -1, &in);
  bson_append_array_begin(&in, "$in", -1, &arr);
  for (size_t i = 0; i < n; i++) {
    if (!entity_key(key, user_id, ids[i], error)) {
      bson_append_array_end(&in, &arr);
      bson_append_document_end(q, &in);
      return false;
    }
    bson_uint32_to_string((uint32_t)i, &k, ikey, sizeof ikey);
    bson_append_utf8(&arr, k, -1, key, -1);
  }
  bson_append_array_end(&in, &arr);
  bson_append_document_end(q, &in);
  return true;
}

typedef struct {
  bool *exists;
  const char *const *ids;
  size_t n;
} exists_t;

static void exists_restart(void *vctx) {
  exists_t *e = vctx;
  memset(e->exists, 0, e->n * sizeof *e->exists);
}

static bool exists_visit(const bson_t *doc, void *vctx, fzip_error_t *error) {
  exists_t *e = vctx;
  const char *id = doc_utf8(doc, "id");
  (void)error;
  for (size_t i = 0; id && i < e->n; i++) {
    if (strcmp(e->ids[i], id) == 0)
      e->exists[i] = true;
  }
  return true;
}

/* find_each over the user's documents with these ids (keys_filter);
 * `opts` is taken. */
static bool find_ids(mstore_t *s, fzip_kind_t kind, const char *user_id, const char *const *ids,
                     size_t n, bson_t *opts, void (*restart)(void *ctx), visit_fn visit,
                     void *ctx, const char *what, fzip_error_t *error) {
  bson_t q;
  bool ok = keys_filter(&q, user_id, ids, n, error) &&
            find_each(s, fzip_kind_info(kind)->name, &q, opts, restart, visit, ctx, what, error);
  bson_destroy(&q);
  bson_destroy(opts);
  return ok;
}

static bool mongo_entity_exists_many(bool *exists, store_t *store, const char *user_id,
                                     fzip_kind_t kind, const char *const *ids, size_t n,
                                     fzip_error_t *error) {
  exists_t e = {exists, ids, n};
  return find_ids((mstore_t *)store, kind, user_id, ids, n,
                  BCON_NEW("projection", "{", "id", BCON_INT32(1), "}"), exists_restart,
                  exists_visit, &e, "checking entities", error);
}

typedef struct {
  bson_t **docs;
  char (*tags)[STORE_TAG_MAX + 1];
  const char *const *ids;
  size_t n;
} get_many_t;

static void get_many_restart(void *vctx) {
  get_many_t *g = vctx;
  for (size_t i = 0; i < g->n; i++) {
    bson_destroy(g->docs[i]);
    g->docs[i] = NULL;
    g->tags[i][0] = '\0';
  }
}

static bool get_many_visit(const bson_t *raw, void *vctx, fzip_error_t *error) {
  get_many_t *g = vctx;
  const char *id = doc_utf8(raw, "id"), *tag = doc_utf8(raw, "tag");
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;

  for (size_t i = 0; id && i < g->n; i++) {
    if (strcmp(g->ids[i], id) != 0 || g->docs[i])
      continue;
    if (!bson_iter_init_find(&it, raw, "doc") || !BSON_ITER_HOLDS_DOCUMENT(&it))
      return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                            "entity %s without a doc field", id);
    bson_iter_document(&it, &len, &data);
    if (!(g->docs[i] = bson_new_from_data(data, len)))
      return fail_oom(error);
    snprintf(g->tags[i], sizeof g->tags[i], "%s", tag ? tag : "");
    return true;
  }
  return true;
}

static bool mongo_entity_get_many(bson_t **docs, char (*tags)[STORE_TAG_MAX + 1],
                                  store_t *store, const char *user_id, fzip_kind_t kind,
                                  const char *const *ids, size_t n, fzip_error_t *error) {
  get_many_t g = {docs, tags, ids, n};
  bool ok = find_ids((mstore_t *)store, kind, user_id, ids, n,
                     BCON_NEW("projection", "{", "id", BCON_INT32(1), "doc", BCON_INT32(1),
                              "tag", BCON_INT32(1), "}"),
                     get_many_restart, get_many_visit, &g, "reading entities", error);
  if (!ok)
    get_many_restart(&g);
  return ok;
}

/* Runs one bulk write; *reply is always initialised. */
static bool run_bulk(bson_t *reply, mongoc_bulk_operation_t *bulk, bson_error_t *berr) {
  return mongoc_bulk_operation_execute(bulk, reply, berr) != 0;
}

/* For an unordered bulk: marks in failed[] the operations that hit a
 * duplicate key; false if any write error was something else. */
static bool dup_write_errors(bool *failed, size_t n, const bson_t *reply) {
  bson_iter_t it, arr;
  if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it))
    return true;
  bson_iter_recurse(&it, &arr);
  while (bson_iter_next(&arr)) {
    bson_iter_t e;
    int64_t index = -1, code = 0;
    if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &e))
      return false;
    while (bson_iter_next(&e)) {
      if (strcmp(bson_iter_key(&e), "index") == 0)
        index = bson_iter_as_int64(&e);
      else if (strcmp(bson_iter_key(&e), "code") == 0)
        code = bson_iter_as_int64(&e);
    }
    if (code != MONGO_ERR_DUPLICATE_KEY || index < 0 || (size_t)index >= n)
      return false;
    failed[index] = true;
  }
  return true;
}

typedef struct {
  mstore_t *s;
  const fzip_kind_info_t *ki;
  const char *user_id;
  const bson_t *const *docs;
  const char *const *ids;
  size_t n;
  const char *tag; /* import tag written into every document, or NULL */
  const uint64_t *seqs; /* seqs[i]: docs[i]'s change seq (put_batch reserves them) */
} batch_t;

/* One unordered bulk write over a batch, as insert and replace share it:
 * statements for the documents from `start` on (those marked in which[],
 * or all when which is NULL), at most `max` of them, built afresh and run
 * again while retry_again allows (replace statements are idempotent; an
 * insert is repeated only when nothing was sent). */
typedef struct {
  const batch_t *b;
  const bool *which;
  bool replace; /* replace by _id (no upsert), else insert */
  conn_t c;
  retry_t r;     /* one retry budget for all of the caller's writes */
  size_t start;
  size_t end;    /* out: where the statements stopped */
  size_t queued; /* out: how many statements ran */
  bool ran;      /* out: the write ran; if not, berr says why */
  bson_t reply;  /* out: its reply */
  bson_error_t berr;
} bulk_t;

static void bulk_open(bulk_t *w, const batch_t *b, const bool *which, bool replace) {
  memset(w, 0, sizeof *w);
  w->b = b;
  w->which = which;
  w->replace = replace;
  bson_init(&w->reply);
  conn_open(&w->c, b->s, b->ki->name);
  retry_start(&w->r, b->s);
}

static void bulk_close(bulk_t *w) {
  conn_close(&w->c, w->b->s);
  bson_destroy(&w->reply);
}

static bool bulk_queue(mongoc_bulk_operation_t *bulk, bulk_t *w, size_t i, fzip_error_t *error) {
  const batch_t *b = w->b;
  bson_t wrapped, sel = BSON_INITIALIZER;
  bool ok;

  if (!entity_wrap(&wrapped, b->ki, b->user_id, b->ids[i], b->tag, b->seqs[i], b->docs[i],
                   error))
    return false;
  if (w->replace) {
    BSON_APPEND_UTF8(&sel, "_id", doc_utf8(&wrapped, "_id"));
    ok = mongoc_bulk_operation_replace_one_with_opts(bulk, &sel, &wrapped, NULL, &w->berr);
  } else {
    ok = mongoc_bulk_operation_insert_with_opts(bulk, &wrapped, NULL, &w->berr);
  }
  bson_destroy(&sel);
  bson_destroy(&wrapped);
  if (!ok)
    return fail_mongo(error, b->s, &w->berr, w->replace ? "queueing replace" : "queueing insert");
  return true;
}

/* False only when a statement could not be queued (error set). */
static bool bulk_write(bulk_t *w, size_t max, fzip_error_t *error) {
  bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
  mongoc_bulk_operation_t *bulk = NULL;
  bool ok = false;

  for (;;) {
    bulk = mongoc_collection_create_bulk_operation_with_opts(w->c.coll, opts);
    w->queued = 0;
    for (w->end = w->start; w->end < w->b->n && w->queued < max; w->end++) {
      if (w->which && !w->which[w->end])
        continue;
      if (!bulk_queue(bulk, w, w->end, error))
        goto done;
      w->queued++;
    }
    bson_destroy(&w->reply);
    bson_init(&w->reply);
    w->ran = w->queued == 0 || run_bulk(&w->reply, bulk, &w->berr);
    mongoc_bulk_operation_destroy(bulk);
    bulk = NULL;
    if (w->ran || !retry_again(&w->r, &w->berr, w->replace))
      break;
  }
  ok = true;
done:
  mongoc_bulk_operation_destroy(bulk);
  bson_destroy(opts);
  return ok;
}

/* Inserts every document unordered; dup[i] says which ids already existed. */
static bool insert_unordered(uint64_t *inserted, bool *dup, const batch_t *b, fzip_error_t *error) {
  bulk_t w;
  bool ok = false;

  bulk_open(&w, b, NULL, false);
  if (!bulk_write(&w, b->n, error))
    goto done;
  memset(dup, 0, b->n * sizeof *dup);
  if (!w.ran && (!is_duplicate_key(&w.berr) || !dup_write_errors(dup, b->n, &w.reply))) {
    fail_mongo(error, b->s, &w.berr, "inserting entities");
    goto done;
  }
  *inserted = (uint64_t)reply_int(&w.reply, "nInserted");
  ok = true;
done:
  bulk_close(&w);
  return ok;
}

/* No transactions (FerretDB v1 has none): INSERT checks first, and if a
 * concurrent writer took an id between the check and the insert, removes
 * the documents this call inserted so the batch still writes nothing. */
static bool put_insert(store_write_result_t *res, const batch_t *b, fzip_error_t *error) {
  bool *flags = bson_malloc0(b->n * sizeof *flags);
  const char **undo = NULL;
  uint64_t inserted = 0;
  size_t n_undo = 0;
  bool ok = false;

  if (!mongo_entity_exists_many(flags, &b->s->base, b->user_id, b->ki->kind, b->ids, b->n,
                                error))
    goto done;
  for (size_t i = 0; i < b->n; i++) {
    if (flags[i]) {
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS, "%s %s already exists",
                     b->ki->name, b->ids[i]);
      goto done;
    }
  }
  if (!insert_unordered(&inserted, flags, b, error))
    goto done;
  if (inserted < b->n) {
    undo = bson_malloc0(b->n * sizeof *undo);
    for (size_t i = 0; i < b->n; i++) {
      if (!flags[i])
        undo[n_undo++] = b->ids[i];
    }
    if (n_undo > 0 && !b->s->base.vt->entity_delete_many(NULL, &b->s->base, b->user_id,
                                                          b->ki->kind, undo, n_undo, error))
      goto done;
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS,
                   "%s: an id of the batch was written concurrently", b->ki->name);
    goto done;
  }
  res->inserted += inserted;
  ok = true;
done:
  bson_free(flags);
  bson_free(undo);
  return ok;
}

static bool put_skip_existing(store_write_result_t *res, const batch_t *b, fzip_error_t *error) {
  bool *dup = bson_malloc0(b->n * sizeof *dup);
  uint64_t inserted = 0;
  bool ok = insert_unordered(&inserted, dup, b, error);
  if (ok) {
    res->inserted += inserted;
    res->skipped += b->n - inserted;
  }
  bson_free(dup);
  return ok;
}

#define MONGO_REPLACE_SLICE 50

/* Replaces (no upsert) the documents marked in which[]; adds the number
 * matched to *replaced. */
static bool replace_marked(uint64_t *replaced, const bool *which, const batch_t *b,
                           fzip_error_t *error) {
  bulk_t w;
  bool ok = false;

  bulk_open(&w, b, which, true);
  /* In slices of MONGO_REPLACE_SLICE statements: FerretDB v1 stalls on
   * one update command with a few hundred replace statements. */
  for (w.start = 0; w.start < b->n; w.start = w.end) {
    if (!bulk_write(&w, MONGO_REPLACE_SLICE, error))
      goto done;
    if (!w.ran) {
      fail_mongo(error, b->s, &w.berr, "replacing entities");
      goto done;
    }
    if (w.queued)
      *replaced += (uint64_t)reply_int(&w.reply, "nMatched");
  }
  ok = true;
done:
  bulk_close(&w);
  return ok;
}

/* REPLACE as "insert the missing, replace the rest" rather than upserts:
 * FerretDB v1 ignores ordered=false on update and aborts a multi-statement
 * update at its first error without saying which statements ran, so a
 * lost upsert race (E11000) would leave the counts unknown.  Inserts do
 * report per document; an id that a concurrent writer created between the
 * check and the insert is replaced instead, so every id is counted once,
 * as inserted or as replaced. */
static bool put_replace(store_write_result_t *res, const batch_t *b, fzip_error_t *error) {
  bool *exists = bson_malloc0(b->n * sizeof *exists);
  bool *dup = bson_malloc0(b->n * sizeof *dup);
  const bson_t **mdocs = bson_malloc0(b->n * sizeof *mdocs);
  const char **mids = bson_malloc0(b->n * sizeof *mids);
  uint64_t *mseqs = bson_malloc0(b->n * sizeof *mseqs);
  size_t *map = bson_malloc0(b->n * sizeof *map);
  batch_t missing = *b;
  uint64_t inserted = 0;
  size_t m = 0;
  bool ok = false, any_existing = false;

  if (!mongo_entity_exists_many(exists, &b->s->base, b->user_id, b->ki->kind, b->ids, b->n,
                                error))
    goto done;
  for (size_t i = 0; i < b->n; i++) {
    if (!exists[i]) {
      mdocs[m] = b->docs[i];
      mids[m] = b->ids[i];
      mseqs[m] = b->seqs[i];
      map[m++] = i;
    }
  }
  missing.docs = mdocs;
  missing.ids = mids;
  missing.seqs = mseqs;
  missing.n = m;
  if (m > 0 && !insert_unordered(&inserted, dup, &missing, error))
    goto done;
  res->inserted += inserted;
  for (size_t j = 0; j < m; j++) {
    if (dup[j])
      exists[map[j]] = true;
  }
  for (size_t i = 0; i < b->n; i++)
    any_existing = any_existing || exists[i];
  ok = !any_existing || replace_marked(&res->replaced, exists, b, error);
done:
  bson_free(exists);
  bson_free(dup);
  bson_free(mdocs);
  bson_free(mids);
  bson_free(mseqs);
  bson_free(map);
  return ok;
}

/* Numbers the batch's documents with a range reserved in one round trip
 * (a skipped or refused document leaves its number unused), then writes. */
static bool put_batch(const batch_t *batch, store_write_mode_t mode,
                      store_write_result_t *result, fzip_error_t *error) {
  store_write_result_t local = {0};
  store_write_result_t *res = result ? result : &local;
  uint64_t seqs[STORE_BATCH_MAX], first = 0;
  batch_t b = *batch;

  if (b.n == 0)
    return true;
  if (!seq_reserve(&first, b.s, b.user_id, b.n, error))
    return false;
  for (size_t i = 0; i < b.n; i++)
    seqs[i] = first + i;
  b.seqs = seqs;
  switch (mode) {
  case STORE_WRITE_INSERT:
    return put_insert(res, &b, error);
  case STORE_WRITE_REPLACE:
    return put_replace(res, &b, error);
  case STORE_WRITE_SKIP_EXISTING:
    return put_skip_existing(res, &b, error);
  }
  return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT, "bad write mode");
}

static bool mongo_entity_put_batch(store_t *store, const char *user_id, fzip_kind_t kind,
                                   const bson_t *const *docs, const char *const *ids, size_t n,
                                   store_write_mode_t mode, store_write_result_t *result,
                                   fzip_error_t *error) {
  batch_t b = {(mstore_t *)store, fzip_kind_info(kind), user_id, docs, ids, n, NULL, NULL};
  return put_batch(&b, mode, result, error);
}

/* ---- import tags and stash ---------------------------------------------- */

/* Stash entries live in import_stash, keyed
 * "<userId>\x1f<tag>\x1f<kind>\x1f<entityId>": {userId, tag, kind, id,
 * prevTag, doc}.  Inserting one that exists fails with E11000, which is
 * how "unless already stashed" holds without a read first. */
static bool stash_key(char out[MONGO_STASH_KEY_MAX], const char *user_id, const char *tag,
                      const fzip_kind_info_t *ki, const char *id, fzip_error_t *error) {
  return key_join(out, MONGO_STASH_KEY_MAX, (const char *const[]){user_id, tag, ki->name, id}, 4,
                  "stash key", error);
}

static bool stash_entry(bson_t *out, const batch_t *b, const bson_t *stored, fzip_error_t *error) {
  char key[MONGO_STASH_KEY_MAX];
  const char *id = doc_utf8(stored, "id");
  const char *prev_tag = doc_utf8(stored, "tag");
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;
  bson_t doc;

  if (!id || !bson_iter_init_find(&it, stored, "doc") || !BSON_ITER_HOLDS_DOCUMENT(&it))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                          "malformed %s document", b->ki->name);
  if (!stash_key(key, b->user_id, b->tag, b->ki, id, error))
    return false;
  bson_iter_document(&it, &len, &data);
  bson_init_static(&doc, data, len);
  bson_init(out);
  BSON_APPEND_UTF8(out, "_id", key);
  BSON_APPEND_UTF8(out, "userId", b->user_id);
  BSON_APPEND_UTF8(out, "tag", b->tag);
  BSON_APPEND_UTF8(out, "kind", b->ki->name);
  BSON_APPEND_UTF8(out, "id", id);
  if (prev_tag)
    BSON_APPEND_UTF8(out, "prevTag", prev_tag);
  BSON_APPEND_INT64(out, MONGO_SEQ_FIELD, (int64_t)doc_seq(stored));
  BSON_APPEND_DOCUMENT(out, "doc", &doc);
  return true;
}

/* Stashes the current version of every document of the batch that exists
 * (first stash per tag wins), before the replace overwrites it. */
static bool stash_existing(const batch_t *b, fzip_error_t *error) {
  conn_t c = {0}, st = {0};
  mongoc_cursor_t *cur = NULL;
  mongoc_bulk_operation_t *bulk = NULL;
  bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
  bson_t q, entry, reply = BSON_INITIALIZER;
  const bson_t *stored;
  bson_error_t berr;
  bool *dup = bson_malloc0(b->n * sizeof *dup);
  size_t queued = 0;
  bool ok = false;

  bson_init(&q);
  if (!keys_filter(&q, b->user_id, b->ids, b->n, error))
    goto done;
  conn_open(&c, b->s, b->ki->name);
  conn_open(&st, b->s, MONGO_STASH);
  bulk = mongoc_collection_create_bulk_operation_with_opts(st.coll, opts);
  cur = mongoc_collection_find_with_opts(c.coll, &q, NULL, NULL);
  while (mongoc_cursor_next(cur, &stored)) {
    if (!stash_entry(&entry, b, stored, error))
      goto done;
    ok = mongoc_bulk_operation_insert_with_opts(bulk, &entry, NULL, &berr);
    bson_destroy(&entry);
    if (!ok) {
      fail_mongo(error, b->s, &berr, "queueing stash entry");
      goto done;
    }
    ok = false;
    queued++;
  }
  if (mongoc_cursor_error(cur, &berr)) {
    fail_mongo(error, b->s, &berr, "reading documents to stash");
    goto done;
  }
  /* Close the read before writing: FerretDB holds a cursor that is not
   * exhausted (batches over 101 documents) open in a read transaction, and
   * a write to the same database then waits for it forever. */
  mongoc_cursor_destroy(cur);
  cur = NULL;
  if (queued > 0 && !run_bulk(&reply, bulk, &berr) &&
      (!is_duplicate_key(&berr) || !dup_write_errors(dup, b->n, &reply))) {
    fail_mongo(error, b->s, &berr, "stashing documents");
    goto done;
  }
  ok = true;
done:
  mongoc_cursor_destroy(cur);
  mongoc_bulk_operation_destroy(bulk);
  conn_close(&c, b->s);
  conn_close(&st, b->s);
  bson_destroy(&q);
  bson_destroy(&reply);
  bson_destroy(opts);
  bson_free(dup);
  return ok;
}

static bool mongo_entity_put_batch_tagged(store_t *store, const char *user_id, fzip_kind_t kind,
                                          const bson_t *const *docs, const char *const *ids,
                                          size_t n, store_write_mode_t mode, const char *tag,
                                          store_write_result_t *result, fzip_error_t *error) {
  batch_t b = {(mstore_t *)store, fzip_kind_info(kind), user_id, docs, ids, n, tag, NULL};
  if (mode == STORE_WRITE_REPLACE && n > 0 && !stash_existing(&b, error))
    return false;
  return put_batch(&b, mode, result, error);
}

/* Copies up to MONGO_IMPORT_PAGE documents matching q in `sort` order. */
static bool find_page(bson_t **page, size_t *n, mstore_t *s, const char *collection,
                      const bson_t *q, const bson_t *sort, fzip_error_t *error) {
  conn_t c = {0};
  mongoc_cursor_t *cur = NULL;
  bson_t *opts = BCON_NEW("limit", BCON_INT64(MONGO_IMPORT_PAGE));
  const bson_t *doc;
  bson_error_t berr;
  bool ok = false;

  *n = 0;
  BSON_APPEND_DOCUMENT(opts, "sort", sort);
  conn_open(&c, s, collection);
  cur = mongoc_collection_find_with_opts(c.coll, q, opts, NULL);
  while (*n < MONGO_IMPORT_PAGE && mongoc_cursor_next(cur, &doc))
    page[(*n)++] = bson_copy(doc);
  if (mongoc_cursor_error(cur, &berr)) {
    fail_mongo(error, s, &berr, "reading a page");
    goto done;
  }
  ok = true;
done:
  mongoc_cursor_destroy(cur);
  conn_close(&c, s);
  bson_destroy(opts);
  return ok;
}

static void free_page(bson_t **page, size_t n) {
  for (size_t i = 0; i < n; i++)
    bson_destroy(page[i]);
}

static bool visit_doc(store_visit_fn visit, void *ctx, fzip_kind_t kind, const bson_t *stored,
                      fzip_error_t *error) {
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;
  bson_t doc;
  if (!visit)
    return true;
  if (!bson_iter_init_find(&it, stored, "doc") || !BSON_ITER_HOLDS_DOCUMENT(&it))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS, "document without doc");
  bson_iter_document(&it, &len, &data);
  bson_init_static(&doc, data, len);
  return visit(ctx, kind, &doc, error);
}

/* Puts one tagged document back to its stashed version, or deletes it.
 * Either way a change: `seq` (reserved by the caller, one per document)
 * numbers the version put back, or the deletion record. */
static bool undo_one(store_rollback_stats_t *stats, mstore_t *s, const fzip_kind_info_t *ki,
                     const char *user_id, const char *tag, const bson_t *stored, uint64_t seq,
                     fzip_error_t *error) {
  char key[MONGO_STASH_KEY_MAX], ekey[MONGO_KEY_MAX];
  const char *id = doc_utf8(stored, "id");
  bson_t *stash = NULL;
  bson_t q = BSON_INITIALIZER, restored, prev;
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;
  bool ok = false;

  if (!id || !stash_key(key, user_id, tag, ki, id, error) ||
      !entity_key(ekey, user_id, id, error))
    goto done;
  BSON_APPEND_UTF8(&q, "_id", key);
  if (!find_one(&stash, s, MONGO_STASH, &q, error))
    goto done;
  bson_reinit(&q);
  BSON_APPEND_UTF8(&q, "_id", ekey);
  if (!stash) {
    ok = note_deletions(s, user_id, ki, &id, 1, seq, error) &&
         delete_where(NULL, s, ki->name, &q, error);
    stats->deleted += ok;
    goto done;
  }
  if (!bson_iter_init_find(&it, stash, "doc") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS, "malformed stash entry");
    goto done;
  }
  bson_iter_document(&it, &len, &data);
  bson_init_static(&prev, data, len);
  if (!entity_wrap(&restored, ki, user_id, id, doc_utf8(stash, "prevTag"), seq, &prev, error))
    goto done;
  ok = replace_one(s, ki->name, &q, &restored, error);
  bson_destroy(&restored);
  stats->restored += ok;
done:
  bson_destroy(stash);
  bson_destroy(&q);
  return ok;
}

static bool rollback_kind(store_rollback_stats_t *stats, mstore_t *s, const char *user_id,
                          const char *tag, fzip_kind_t kind, store_visit_fn visit, void *ctx,
                          fzip_error_t *error) {
  const fzip_kind_info_t *ki = fzip_kind_info(kind);
  bson_t *page[MONGO_IMPORT_PAGE];
  bson_t *sort = BCON_NEW("id", BCON_INT32(1));
  size_t n = 0;
  bool ok = true;

  /* Undone documents lose the tag, so each query returns the next ones. */
  while (ok) {
    bson_t *q = BCON_NEW("userId", BCON_UTF8(user_id), "tag", BCON_UTF8(tag));
    uint64_t seq = 0;
    ok = find_page(page, &n, s, ki->name, q, sort, error);
    bson_destroy(q);
    if (!ok || n == 0)
      break;
    /* One reservation per page, not per document (a round trip each). */
    ok = seq_reserve(&seq, s, user_id, n, error);
    for (size_t i = 0; ok && i < n; i++)
      ok = visit_doc(visit, ctx, kind, page[i], error) &&
           undo_one(stats, s, ki, user_id, tag, page[i], seq + i, error);
    free_page(page, n);
  }
  bson_destroy(sort);
  return ok;
}

static bool mongo_import_rollback(store_rollback_stats_t *stats, store_t *store,
                                  const char *user_id, const char *tag, store_visit_fn visit,
                                  void *visit_ctx, fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  bson_t *q = NULL;
  bool ok;

  for (int k = FZIP_KIND_COUNT - 1; k >= 0; k--) {
    if (!rollback_kind(stats, s, user_id, tag, (fzip_kind_t)k, visit, visit_ctx, error))
      return false;
  }
  q = BCON_NEW("userId", BCON_UTF8(user_id), "tag", BCON_UTF8(tag));
  ok = delete_where(NULL, s, MONGO_STASH, q, error);
  bson_destroy(q);
  return ok;
}

/* Visits and drops the stash page by page; a stopped commit resumes with
 * the entries not yet dropped. */
static bool mongo_import_commit(uint64_t *forgotten, store_t *store, const char *user_id,
                                const char *tag, store_visit_fn visit, void *visit_ctx,
                                fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  bson_t *page[MONGO_IMPORT_PAGE];
  bson_t *sort = BCON_NEW("_id", BCON_INT32(1));
  bson_t *q = BCON_NEW("userId", BCON_UTF8(user_id), "tag", BCON_UTF8(tag));
  size_t n = 0;
  bool ok = true;

  while (ok) {
    ok = find_page(page, &n, s, MONGO_STASH, q, sort, error);
    if (!ok || n == 0)
      break;
    for (size_t i = 0; ok && i < n; i++) {
      fzip_kind_t kind = FZIP_KIND_ACCOUNT;
      bson_t one = BSON_INITIALIZER;
      const char *key = doc_utf8(page[i], "_id");
      if (!key || !fzip_kind_from_name(&kind, doc_utf8(page[i], "kind"))) {
        ok = fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                            "malformed stash entry");
        break;
      }
      BSON_APPEND_UTF8(&one, "_id", key);
      ok = visit_doc(visit, visit_ctx, kind, page[i], error) &&
           delete_where(NULL, s, MONGO_STASH, &one, error);
      bson_destroy(&one);
      *forgotten += ok;
    }
    free_page(page, n);
  }
  bson_destroy(sort);
  bson_destroy(q);
  return ok;
}


/* ---- undo of a committed import ---------------------------------------- */

static bool mongo_import_marks(store_import_marks_t *out, store_t *store, const char *user_id,
                               const char *tag, fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  bool ok = true;

  for (int k = 0; ok && k < FZIP_KIND_COUNT; k++) {
    const fzip_kind_info_t *ki = fzip_kind_info((fzip_kind_t)k);
    bson_t *tagged = BCON_NEW("userId", BCON_UTF8(user_id), "tag", BCON_UTF8(tag));
    bson_t *kept = BCON_NEW("userId", BCON_UTF8(user_id), "tag", BCON_UTF8(tag), "kind",
                            BCON_UTF8(ki->name));
    ok = count_in(&out->tagged[k], s, ki->name, tagged, "counting an import's documents",
                  error) &&
         count_in(&out->kept[k], s, MONGO_STASH, kept, "counting an import's stash", error);
    bson_destroy(tagged);
    bson_destroy(kept);
  }
  return ok;
}

/* Whether the live document a stash entry stands for still carries the
 * entry's tag. */
static bool still_tagged(bool *tagged, mstore_t *s, const fzip_kind_info_t *ki,
                         const char *user_id, const char *tag, const char *id,
                         fzip_error_t *error) {
  char ekey[MONGO_KEY_MAX];
  bson_t *q = NULL, *found = NULL;
  bool ok;

  if (!entity_key(ekey, user_id, id, error))
    return false;
  q = BCON_NEW("_id", BCON_UTF8(ekey));
  ok = find_one(&found, s, ki->name, q, error);
  *tagged = ok && found && doc_utf8(found, "tag") && strcmp(doc_utf8(found, "tag"), tag) == 0;
  bson_destroy(found);
  bson_destroy(q);
  return ok;
}

/* The kind's stash entries under the tag in _id order, a page at a time,
 * until `max` of them stand for documents that lost the tag. */
static bool mongo_import_lost(char ids[][FZIP_ID_MAX + 1], size_t *n, store_t *store,
                              const char *user_id, const char *tag, fzip_kind_t kind, size_t max,
                              fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  const fzip_kind_info_t *ki = fzip_kind_info(kind);
  bson_t *page[MONGO_IMPORT_PAGE];
  bson_t *sort = BCON_NEW("_id", BCON_INT32(1));
  char after[MONGO_STASH_KEY_MAX] = "";
  size_t got = 0;
  bool ok = true;

  *n = 0;
  while (ok && *n < max) {
    bson_t *q = BCON_NEW("userId", BCON_UTF8(user_id), "tag", BCON_UTF8(tag), "kind",
                         BCON_UTF8(ki->name), "_id", "{", "$gt", BCON_UTF8(after), "}");
    ok = find_page(page, &got, s, MONGO_STASH, q, sort, error);
    bson_destroy(q);
    if (!ok || got == 0)
      break;
    for (size_t i = 0; ok && i < got && *n < max; i++) {
      const char *id = doc_utf8(page[i], "id");
      bool tagged = true;
      if (id && (ok = still_tagged(&tagged, s, ki, user_id, tag, id, error)) && !tagged)
        snprintf(ids[(*n)++], FZIP_ID_MAX + 1, "%s", id);
    }
    const char *last = doc_utf8(page[got - 1], "_id");
    snprintf(after, sizeof after, "%s", last ? last : "");
    free_page(page, got);
  }
  bson_destroy(sort);
  return ok;
}

/* ---- pending imports and snapshots ------------------------------------- */

/* The pending set is one document per pending import in import_pending:
 * begin inserts it, the commit's flip deletes it -- each a single-document
 * write, atomic on MongoDB and on FerretDB alike (no read-modify-write).
 * Readers cannot hold a transaction across many reads, so a consistent
 * read is checked instead: every change of the pending set is bracketed by
 * two writes of the user's generation in import_state, first a "busy-"
 * value, then a fresh one (a seqlock made of unique values rather than a
 * counter, because FerretDB's update is a read-modify-write that could
 * lose an increment).  A snapshot reads the generation before and after;
 * equal and not busy means no begin, flip or rollback end overlapped. */

static bool pending_key(char out[MONGO_STASH_KEY_MAX], const char *user_id, const char *tag,
                        fzip_error_t *error) {
  return key_join(out, MONGO_STASH_KEY_MAX, (const char *const[]){user_id, tag}, 2,
                  "pending key", error);
}

static bool gen_read(char out[MONGO_GEN_MAX], mstore_t *s, const char *user_id,
                     fzip_error_t *error) {
  bson_t *q = BCON_NEW("_id", BCON_UTF8(user_id));
  bson_t *found = NULL;
  bool ok = find_one(&found, s, MONGO_STATE, q, error);
  if (ok)
    snprintf(out, MONGO_GEN_MAX, "%s", found && doc_utf8(found, "gen") ? doc_utf8(found, "gen")
                                                                        : "");
  bson_destroy(found);
  bson_destroy(q);
  return ok;
}

/* Sets the generation to a value never used before ("busy-" + it while a
 * change is under way).  An upserting replace: idempotent, retried. */
static bool gen_write(mstore_t *s, const char *user_id, bool busy, fzip_error_t *error) {
  char uuid[FZIP_UUID_LEN + 1], gen[MONGO_GEN_MAX];
  conn_t c = {0};
  bson_t *q = NULL, *doc = NULL, *opts = NULL;
  bson_error_t berr;
  retry_t r;
  bool ok;

  if (!fzip_uuid_v4(uuid, error))
    return false;
  snprintf(gen, sizeof gen, "%s%s", busy ? MONGO_GEN_BUSY : "", uuid);
  q = BCON_NEW("_id", BCON_UTF8(user_id));
  doc = BCON_NEW("_id", BCON_UTF8(user_id), "gen", BCON_UTF8(gen));
  opts = BCON_NEW("upsert", BCON_BOOL(true));
  conn_open(&c, s, MONGO_STATE);
  retry_start(&r, s);
  do {
    ok = mongoc_collection_replace_one(c.coll, q, doc, opts, NULL, &berr);
  } while (!ok && retry_again(&r, &berr, true));
  conn_close(&c, s);
  bson_destroy(q);
  bson_destroy(doc);
  bson_destroy(opts);
  if (!ok)
    return fail_mongo(error, s, &berr, "writing the import generation");
  return true;
}

static bool mongo_import_begin(store_t *store, const char *user_id, const char *tag,
                               fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  char key[MONGO_STASH_KEY_MAX];
  conn_t c = {0};
  bson_t *doc = NULL;
  bson_error_t berr;
  retry_t r;
  bool ok;

  store_changes_mark_t counter = {0, 0};

  /* beginSeq: the user's last number, which the mark stays at while the
   * import is pending (its writes are numbered after it). */
  if (!pending_key(key, user_id, tag, error) || !read_counter(&counter, s, user_id, error) ||
      !gen_write(s, user_id, true, error))
    return false;
  doc = BCON_NEW("_id", BCON_UTF8(key), "userId", BCON_UTF8(user_id), "tag", BCON_UTF8(tag),
                 "beginSeq", BCON_INT64((int64_t)counter.seq));
  conn_open(&c, s, MONGO_PENDING);
  retry_start(&r, s);
  do {
    ok = mongoc_collection_insert_one(c.coll, doc, NULL, NULL, &berr);
  } while (!ok && !is_duplicate_key(&berr) && retry_again(&r, &berr, true));
  conn_close(&c, s);
  bson_destroy(doc);
  if (!ok && !is_duplicate_key(&berr)) /* already pending: fine */
    return fail_mongo(error, s, &berr, "marking an import pending");
  return gen_write(s, user_id, false, error);
}

/* The flip: one document deleted. */
static bool mongo_import_end(store_t *store, const char *user_id, const char *tag,
                             fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  char key[MONGO_STASH_KEY_MAX];
  bson_t *q = NULL;
  bool ok;

  if (!pending_key(key, user_id, tag, error) || !gen_write(s, user_id, true, error))
    return false;
  q = BCON_NEW("_id", BCON_UTF8(key));
  ok = delete_where(NULL, s, MONGO_PENDING, q, error);
  bson_destroy(q);
  return ok && gen_write(s, user_id, false, error);
}

static bool mongo_import_pending(char tags[][STORE_TAG_MAX + 1], size_t *n, store_t *store,
                                 const char *user_id, fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  bson_t *page[MONGO_IMPORT_PAGE];
  bson_t *q = BCON_NEW("userId", BCON_UTF8(user_id));
  bson_t *sort = BCON_NEW("_id", BCON_INT32(1));
  size_t got = 0;
  bool ok = find_page(page, &got, s, MONGO_PENDING, q, sort, error);

  *n = 0;
  for (size_t i = 0; ok && i < got && *n < STORE_PENDING_MAX; i++) {
    const char *tag = doc_utf8(page[i], "tag");
    if (tag)
      snprintf(tags[(*n)++], STORE_TAG_MAX + 1, "%s", tag);
  }
  free_page(page, got);
  bson_destroy(q);
  bson_destroy(sort);
  return ok;
}

static bool mongo_stash_get(bson_t **out, uint64_t *seq, store_t *store, const char *user_id,
                            const char *tag, fzip_kind_t kind, const char *id,
                            fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  char key[MONGO_STASH_KEY_MAX];
  bson_t *found = NULL, *q = NULL;
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;
  bool ok = false;

  if (!stash_key(key, user_id, tag, fzip_kind_info(kind), id, error))
    return false;
  q = BCON_NEW("_id", BCON_UTF8(key));
  if (!find_one(&found, s, MONGO_STASH, q, error))
    goto done;
  if (!found) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "no stashed version of %s", id);
    goto done;
  }
  if (!bson_iter_init_find(&it, found, "doc") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS, "malformed stash entry");
    goto done;
  }
  bson_iter_document(&it, &len, &data);
  *out = bson_new_from_data(data, len);
  *seq = doc_seq(found);
  ok = *out != NULL || fail_oom(error);
done:
  bson_destroy(found);
  bson_destroy(q);
  return ok;
}

static bool mongo_snapshot_begin(store_t **view, store_t *store, const char *user_id,
                                 fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  mstore_t *v = bson_malloc0(sizeof *v);

  *v = *s;
  v->base.read_only = true;
  v->is_view = true;
  snprintf(v->view_user, sizeof v->view_user, "%s", user_id);
  /* The mark before the generation: the view's reads come after both. */
  if (!read_mark(&v->view_mark, s, user_id, error) || !gen_read(v->view_gen, s, user_id, error)) {
    bson_free(v);
    return false;
  }
  *view = &v->base;
  return true;
}

static bool mongo_snapshot_end(store_t *view, fzip_error_t *error) {
  mstore_t *v = (mstore_t *)view;
  char now[MONGO_GEN_MAX];
  bool ok = gen_read(now, v, v->view_user, error);

  if (ok && (strcmp(now, v->view_gen) != 0 ||
             strncmp(now, MONGO_GEN_BUSY, strlen(MONGO_GEN_BUSY)) == 0))
    ok = fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED,
                        "the user's data changed during the read (an import began, committed "
                        "or was rolled back); read again");
  bson_free(v);
  return ok;
}

/* The ids that exist are numbered and recorded as deletions first
 * (note_deletions), then deleted. */
static bool mongo_entity_delete_many(uint64_t *deleted, store_t *store, const char *user_id,
                                     fzip_kind_t kind, const char *const *ids, size_t n,
                                     fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  const fzip_kind_info_t *ki = fzip_kind_info(kind);
  bool *exists = bson_malloc0(n * sizeof *exists);
  const char **present = bson_malloc0(n * sizeof *present);
  uint64_t first = 0;
  size_t m = 0;
  bson_t q = BSON_INITIALIZER;
  bool ok = false;

  if (!mongo_entity_exists_many(exists, store, user_id, kind, ids, n, error))
    goto done;
  for (size_t i = 0; i < n; i++) {
    if (exists[i])
      present[m++] = ids[i];
  }
  if (m == 0) {
    if (deleted)
      *deleted = 0;
    ok = true;
    goto done;
  }
  bson_destroy(&q);
  ok = seq_reserve(&first, s, user_id, m, error) &&
       note_deletions(s, user_id, ki, present, m, first, error) &&
       keys_filter(&q, user_id, present, m, error) &&
       delete_where(deleted, s, ki->name, &q, error);
done:
  bson_destroy(&q);
  bson_free(exists);
  bson_free(present);
  return ok;
}

/* A wipe, when there is anything to delete: numbered and recorded (with the
 * user's older deletion records dropped) before the documents go, so a
 * failure in between makes the next increment refuse, never miss it. */
static bool mongo_entity_delete_all(uint64_t *deleted, store_t *store, const char *user_id,
                                    fzip_kind_t kind, fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  bson_t *q = BCON_NEW("userId", BCON_UTF8(user_id));
  bson_t *id = BCON_NEW("_id", BCON_UTF8(user_id));
  bson_t *older = NULL, *set = NULL, *any = NULL;
  uint64_t wipe = 0;
  bool matched = false, ok = false;

  if (deleted)
    *deleted = 0;
  if (!find_one(&any, s, fzip_kind_info(kind)->name, q, error))
    goto done;
  if (!any) {
    ok = true;
    goto done;
  }
  if (!seq_reserve(&wipe, s, user_id, 1, error))
    goto done;
  set = BCON_NEW("$max", "{", "wiped", BCON_INT64((int64_t)wipe), "}");
  older = BCON_NEW("userId", BCON_UTF8(user_id), MONGO_SEQ_FIELD, "{", "$lt",
                   BCON_INT64((int64_t)wipe), "}");
  ok = update_one(&matched, s, MONGO_CHANGES, id, set, error) &&
       delete_where(NULL, s, MONGO_DELETIONS, older, error) &&
       delete_where(deleted, s, fzip_kind_info(kind)->name, q, error);
done:
  bson_destroy(any);
  bson_destroy(q);
  bson_destroy(id);
  bson_destroy(older);
  bson_destroy(set);
  return ok;
}

/* ---- change tracking ----------------------------------------------------- */

/* The user's counter document: last number and wipe (0 when none). */
static bool read_counter(store_changes_mark_t *out, mstore_t *s, const char *user_id,
                         fzip_error_t *error) {
  bson_t *q = BCON_NEW("_id", BCON_UTF8(user_id));
  bson_t *counter = NULL;
  bool ok = find_one(&counter, s, MONGO_CHANGES, q, error);

  out->seq = ok && counter ? (uint64_t)reply_int(counter, MONGO_SEQ_FIELD) : 0;
  out->wiped = ok && counter ? (uint64_t)reply_int(counter, "wiped") : 0;
  bson_destroy(counter);
  bson_destroy(q);
  return ok;
}

/* The counter first, then the pending set: an import that begins in
 * between records a begin number >= the counter read, so none of its
 * writes can fall at or below the mark. */
static bool read_mark(store_changes_mark_t *out, mstore_t *s, const char *user_id,
                      fzip_error_t *error) {
  bson_t *pq = NULL, *sort = NULL, *page[MONGO_IMPORT_PAGE];
  size_t got = 0;
  bool ok;

  if (!read_counter(out, s, user_id, error))
    return false;
  pq = BCON_NEW("userId", BCON_UTF8(user_id));
  sort = BCON_NEW("_id", BCON_INT32(1));
  ok = find_page(page, &got, s, MONGO_PENDING, pq, sort, error);
  for (size_t i = 0; ok && i < got; i++) {
    uint64_t begin = (uint64_t)reply_int(page[i], "beginSeq");
    if (begin < out->seq)
      out->seq = begin;
  }
  if (ok)
    free_page(page, got);
  bson_destroy(pq);
  bson_destroy(sort);
  return ok;
}

static bool mongo_changes_mark(store_changes_mark_t *out, store_t *store, const char *user_id,
                               fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  if (s->is_view && strcmp(user_id, s->view_user) == 0) {
    *out = s->view_mark;
    return true;
  }
  return read_mark(out, s, user_id, error);
}

typedef struct {
  const char *const *ids;
  bool *keep; /* keep[i] false once ids[i] is live at a seq <= upto */
  size_t n;
  uint64_t upto;
} rewritten_t;

static void rewritten_restart(void *vctx) {
  rewritten_t *r = vctx;
  for (size_t i = 0; i < r->n; i++)
    r->keep[i] = true;
}

static bool rewritten_visit(const bson_t *doc, void *vctx, fzip_error_t *error) {
  rewritten_t *r = vctx;
  const char *id = doc_utf8(doc, "id");
  (void)error;
  for (size_t i = 0; id && i < r->n; i++) {
    if (strcmp(r->ids[i], id) == 0 && doc_seq(doc) <= r->upto)
      r->keep[i] = false;
  }
  return true;
}

/* Deletion records of (user, kind) in _id order (= id order), a page at
 * a time; each page's ids that are live at a seq <= upto are left out
 * (written again, or the delete never happened). */
static bool mongo_deletions_page(char ids[][FZIP_ID_MAX + 1], size_t *n, store_t *store,
                                 const char *user_id, fzip_kind_t kind, uint64_t after_seq,
                                 uint64_t upto_seq, const char *after_id, size_t max,
                                 fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  const fzip_kind_info_t *ki = fzip_kind_info(kind);
  char from[MONGO_DELETION_KEY_MAX], prefix[MONGO_DELETION_KEY_MAX];
  bson_t *page[MONGO_IMPORT_PAGE];
  const char *pids[MONGO_IMPORT_PAGE];
  bool keep[MONGO_IMPORT_PAGE];
  bson_t *sort = BCON_NEW("_id", BCON_INT32(1));
  size_t got = 0;
  bool ok = deletion_key(prefix, user_id, ki, "", error);

  *n = 0;
  /* From the key after after_id, within the keys of (user, kind). */
  if (ok)
    ok = deletion_key(from, user_id, ki, after_id, error);
  while (ok && *n < max) {
    size_t len = strlen(prefix);
    char end[MONGO_DELETION_KEY_MAX];
    bson_t *q = NULL;
    memcpy(end, prefix, len);
    end[len] = '\x7f'; /* above every id character */
    end[len + 1] = '\0';
    q = BCON_NEW("_id", "{", "$gt", BCON_UTF8(from), "$lt", BCON_UTF8(end), "}",
                 MONGO_SEQ_FIELD, "{", "$gt", BCON_INT64((int64_t)after_seq), "$lte",
                 BCON_INT64((int64_t)upto_seq), "}");
    ok = find_page(page, &got, s, MONGO_DELETIONS, q, sort, error);
    bson_destroy(q);
    if (!ok || got == 0)
      break;
    for (size_t i = 0; i < got; i++)
      pids[i] = doc_utf8(page[i], "id") ? doc_utf8(page[i], "id") : "";
    {
      rewritten_t r = {pids, keep, got, upto_seq};
      ok = find_ids(s, kind, user_id, pids, got,
                    BCON_NEW("projection", "{", "id", BCON_INT32(1), MONGO_SEQ_FIELD,
                             BCON_INT32(1), "}"),
                    rewritten_restart, rewritten_visit, &r, "checking deleted entities",
                    error);
    }
    for (size_t i = 0; ok && i < got && *n < max; i++) {
      if (keep[i])
        snprintf(ids[(*n)++], FZIP_ID_MAX + 1, "%s", pids[i]);
      snprintf(from, sizeof from, "%s", doc_utf8(page[i], "_id") ? doc_utf8(page[i], "_id") : "");
    }
    free_page(page, got);
  }
  bson_destroy(sort);
  return ok;
}

/* ---- jobs -------------------------------------------------------------- */

static void job_to_bson(bson_t *out, const store_job_t *job) {
  bson_init(out);
  BSON_APPEND_UTF8(out, "_id", job->job_id);
  BSON_APPEND_UTF8(out, "userId", job->user_id);
  BSON_APPEND_INT64(out, "createdAt", job->created_at);
  BSON_APPEND_INT64(out, "updatedAt", job->updated_at);
  BSON_APPEND_INT64(out, "expiresAt", job->expires_at);
  BSON_APPEND_BOOL(out, "runnable", job->runnable);
  BSON_APPEND_UTF8(out, "leaseOwner", job->lease_owner);
  BSON_APPEND_INT64(out, "leaseUntil", job->lease_until);
  BSON_APPEND_INT64(out, "version", job->version);
  BSON_APPEND_DOCUMENT(out, "body", job->body);
  BSON_APPEND_UTF8(out, "requestId", job->request_id);
  BSON_APPEND_UTF8(out, "requestDigest", job->request_digest);
  BSON_APPEND_UTF8(out, "traceId", job->trace_id);
}

/* The request fields of jobs stored before them are absent: read as "". */
static void copy_optional_field(char *dst, size_t cap, const bson_t *doc, const char *field) {
  const char *v = doc_utf8(doc, field);
  snprintf(dst, cap, "%s", v && strlen(v) < cap ? v : "");
}

static bool copy_field(char *dst, size_t cap, const bson_t *doc, const char *field) {
  const char *v = doc_utf8(doc, field);
  if (!v || strlen(v) >= cap)
    return false;
  memcpy(dst, v, strlen(v) + 1);
  return true;
}

/* Parses a stored job; *out is the caller's. */
static bool job_from_bson(store_job_t **out, store_job_kind_t kind, const bson_t *doc,
                          fzip_error_t *error) {
  store_job_t *job = store_job_new();
  bson_iter_t it;
  const uint8_t *data;
  uint32_t len;

  if (!job)
    return fail_oom(error);
  job->kind = kind;
  if (!copy_field(job->job_id, sizeof job->job_id, doc, "_id") ||
      !copy_field(job->user_id, sizeof job->user_id, doc, "userId") ||
      !copy_field(job->lease_owner, sizeof job->lease_owner, doc, "leaseOwner") ||
      !bson_iter_init_find(&it, doc, "body") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
    store_job_destroy(job);
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                          "malformed job document in %s", job_collection(kind));
  }
  bson_iter_document(&it, &len, &data);
  bson_destroy(job->body);
  job->body = bson_new_from_data(data, len);
  job->created_at = reply_int(doc, "createdAt");
  job->updated_at = reply_int(doc, "updatedAt");
  job->expires_at = reply_int(doc, "expiresAt");
  job->lease_until = reply_int(doc, "leaseUntil");
  job->version = reply_int(doc, "version");
  job->runnable = bson_iter_init_find(&it, doc, "runnable") && bson_iter_as_bool(&it);
  copy_optional_field(job->request_id, sizeof job->request_id, doc, "requestId");
  copy_optional_field(job->request_digest, sizeof job->request_digest, doc, "requestDigest");
  copy_optional_field(job->trace_id, sizeof job->trace_id, doc, "traceId");
  *out = job;
  return true;
}

static bool mongo_job_create(store_t *store, store_job_t *job, fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  char key[STORE_IDEM_KEY_SIZE];
  conn_t c = {0};
  bson_t doc;
  bson_error_t berr;
  retry_t r;
  bool ok;

  job->version = 1;
  job_to_bson(&doc, job);
  store_job_idem_key(key, job->request_id, job->job_id);
  BSON_APPEND_UTF8(&doc, "idemKey", key);
  conn_open(&c, s, job_collection(job->kind));
  retry_start(&r, s);
  do {
    ok = mongoc_collection_insert_one(c.coll, &doc, NULL, NULL, &berr);
  } while (!ok && retry_again(&r, &berr, false));
  conn_close(&c, s);
  bson_destroy(&doc);
  /* A duplicate is the id or the request key (userId_idemKey_unique). */
  if (!ok && is_duplicate_key(&berr))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS,
                          "job %s already exists", job->job_id);
  if (!ok)
    return fail_mongo(error, s, &berr, "creating job");
  return true;
}

static bool mongo_job_find_request(store_job_t **out, store_t *store, store_job_kind_t kind,
                                   const char *user_id, const char *request_id,
                                   fzip_error_t *error) {
  char key[STORE_IDEM_KEY_SIZE];
  bson_t *found = NULL;
  bson_t q = BSON_INITIALIZER;
  bool ok;

  store_job_idem_key(key, request_id, NULL);
  BSON_APPEND_UTF8(&q, "userId", user_id);
  BSON_APPEND_UTF8(&q, "idemKey", key);
  ok = find_one(&found, (mstore_t *)store, job_collection(kind), &q, error);
  bson_destroy(&q);
  if (ok && !found)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND,
                          "no job has request id %s", request_id);
  ok = ok && job_from_bson(out, kind, found, error);
  bson_destroy(found);
  return ok;
}

/* A plain $set outside the version fences: the key is no part of what
 * job_update writes, so it cannot undo or be undone by a transition. */
static bool mongo_job_release_request(store_t *store, store_job_kind_t kind, const char *user_id,
                                      const char *job_id, fzip_error_t *error) {
  char key[STORE_IDEM_KEY_SIZE];
  bson_t *q = BCON_NEW("_id", BCON_UTF8(job_id), "userId", BCON_UTF8(user_id));
  bson_t *update;
  bool matched, ok;

  store_job_idem_key(key, NULL, job_id);
  update = BCON_NEW("$set", "{", "idemKey", BCON_UTF8(key), "}");
  ok = update_one(&matched, (mstore_t *)store, job_collection(kind), q, update, error);
  bson_destroy(q);
  bson_destroy(update);
  return ok;
}

/* *out = how many jobs of `kind` match q. */
static bool count_jobs(uint64_t *out, mstore_t *s, store_job_kind_t kind, const bson_t *q,
                       fzip_error_t *error) {
  return count_in(out, s, job_collection(kind), q, "counting jobs", error);
}

/* The claim's own filter, over the runnable_leaseUntil_createdAt index. */
static bool mongo_job_count_queued(uint64_t *out, store_t *store, store_job_kind_t kind,
                                   int64_t now_ms, fzip_error_t *error) {
  bson_t *q = BCON_NEW("runnable", BCON_BOOL(true), "leaseUntil", "{", "$lt", BCON_INT64(now_ms),
                       "}");
  bool ok = count_jobs(out, (mstore_t *)store, kind, q, error);
  bson_destroy(q);
  return ok;
}

static bool mongo_job_count_runnable(uint64_t *out, store_t *store, const char *user_id,
                                     fzip_error_t *error) {
  bson_t *q = BCON_NEW("userId", BCON_UTF8(user_id), "runnable", BCON_BOOL(true));
  uint64_t total = 0, n = 0;
  bool ok = true;

  for (int k = STORE_JOB_EXPORT; ok && k <= STORE_JOB_IMPORT; k++) {
    ok = count_jobs(&n, (mstore_t *)store, (store_job_kind_t)k, q, error);
    total += n;
  }
  bson_destroy(q);
  if (ok)
    *out = total;
  return ok;
}

static bool mongo_job_get(store_job_t **out, store_t *store, store_job_kind_t kind,
                          const char *user_id, const char *job_id, fzip_error_t *error) {
  bson_t q = BSON_INITIALIZER;
  bson_t *found = NULL;
  bool ok = false;

  BSON_APPEND_UTF8(&q, "_id", job_id);
  if (!find_one(&found, (mstore_t *)store, job_collection(kind), &q, error))
    goto done;
  if (!found || (user_id && strcmp(doc_utf8(found, "userId") ? doc_utf8(found, "userId") : "",
                                   user_id) != 0)) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "job %s not found", job_id);
    goto done;
  }
  ok = job_from_bson(out, kind, found, error);
done:
  bson_destroy(found);
  bson_destroy(&q);
  return ok;
}



/* Version fences.  On FerretDB v1 an update is a read, a change in Go and
 * a write by _id with no lock in between, so two conditional updates of
 * one job version can both "match".  An insert, though, is checked
 * against the unique _id index.  So a transition of job J from version V
 * first inserts {_id: "<collection>/J/V"} into job_fences: one writer per
 * version gets it, the others see a duplicate key and lose.  The winner
 * removes the fence after its update (the stored version has moved on, so
 * a late loser's conditional update matches nothing).  A fence left by a
 * crash is cleared once older than MONGO_FENCE_STALE_MS.  Real MongoDB
 * updates are atomic per document and skip all this. */
static bool fence_take(bool *taken, mstore_t *s, const char *fence_id, fzip_error_t *error) {
  conn_t c = {0};
  bson_t *doc = BCON_NEW("_id", BCON_UTF8(fence_id), "at", BCON_INT64(fzip_now_ms()));
  bson_t *stale = BCON_NEW("_id", BCON_UTF8(fence_id), "at", "{", "$lt",
                           BCON_INT64(fzip_now_ms() - MONGO_FENCE_STALE_MS), "}");
  bson_t reply = BSON_INITIALIZER;
  bson_error_t berr;
  bool ok = false;

  *taken = false;
  conn_open(&c, s, MONGO_FENCES);
  for (int attempt = 0; attempt < 2; attempt++) {
    if (mongoc_collection_insert_one(c.coll, doc, NULL, NULL, &berr)) {
      *taken = true;
      break;
    }
    if (!is_duplicate_key(&berr)) {
      fail_mongo(error, s, &berr, "taking job fence");
      goto done;
    }
    bson_destroy(&reply);
    if (!mongoc_collection_delete_one(c.coll, stale, NULL, &reply, &berr)) {
      fail_mongo(error, s, &berr, "clearing stale job fence");
      goto done;
    }
    if (reply_int(&reply, "deletedCount") == 0)
      break;
  }
  ok = true;
done:
  conn_close(&c, s);
  bson_destroy(doc);
  bson_destroy(stale);
  bson_destroy(&reply);
  return ok;
}

static void fence_drop(mstore_t *s, const char *fence_id) {
  conn_t c = {0};
  bson_t *q = BCON_NEW("_id", BCON_UTF8(fence_id));
  bson_error_t berr;
  conn_open(&c, s, MONGO_FENCES);
  if (!mongoc_collection_delete_one(c.coll, q, NULL, NULL, &berr))
    fzip_log(FZIP_LOG_WARN, "store", "job fence not removed", "fence", fence_id, "error",
             berr.message, NULL);
  conn_close(&c, s);
  bson_destroy(q);
}

/* update_one on {_id: job_id, version: version, <extra>}; *won says
 * whether this call made the transition. */
static bool job_transition(bool *won, mstore_t *s, const char *collection, const char *job_id,
                           int64_t version, const char *owner, const bson_t *update,
                           fzip_error_t *error) {
  char *fence_id = NULL;
  bson_t *q = BCON_NEW("_id", BCON_UTF8(job_id), "version", BCON_INT64(version));
  bool taken = true, ok = false;

  *won = false;
  if (owner)
    BSON_APPEND_UTF8(q, "leaseOwner", owner);
  if (s->ferretdb) {
    fence_id = bson_strdup_printf("%s/%s/%" PRId64, collection, job_id, version);
    if (!fence_take(&taken, s, fence_id, error))
      goto done;
  }
  ok = !taken || update_one(won, s, collection, q, update, error);
  if (taken && fence_id)
    fence_drop(s, fence_id);
done:
  bson_free(fence_id);
  bson_destroy(q);
  return ok;
}

static bool mongo_job_update(store_t *store, store_job_t *job, const char *owner,
                             fzip_error_t *error) {
  bson_t update = BSON_INITIALIZER, set;
  bool matched = false, ok;

  bson_append_document_begin(&update, "$set", -1, &set);
  BSON_APPEND_INT64(&set, "updatedAt", job->updated_at);
  BSON_APPEND_INT64(&set, "expiresAt", job->expires_at);
  BSON_APPEND_BOOL(&set, "runnable", job->runnable);
  BSON_APPEND_UTF8(&set, "leaseOwner", job->lease_owner);
  BSON_APPEND_INT64(&set, "leaseUntil", job->lease_until);
  BSON_APPEND_INT64(&set, "version", job->version + 1);
  BSON_APPEND_DOCUMENT(&set, "body", job->body);
  bson_append_document_end(&update, &set);
  ok = job_transition(&matched, (mstore_t *)store, job_collection(job->kind), job->job_id,
                      job->version, owner, &update, error);
  bson_destroy(&update);
  if (!ok)
    return false;
  if (!matched)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED,
                          "job %s changed or was taken meanwhile", job->job_id);
  job->version++;
  return true;
}

/* Page tokens are "<createdAt>:<jobId>" of the last job returned. */
static bool parse_page_token(int64_t *created_at, const char **job_id, const char *token,
                             fzip_error_t *error) {
  char *end = NULL;
  long long v = strtoll(token, &end, 10);
  if (end == token || *end != ':' || !fzip_id_is_valid(end + 1))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                          "malformed page token");
  *created_at = v;
  *job_id = end + 1;
  return true;
}

/* Collects up to `max` jobs matching q in the order of `opts`. */
static bool find_jobs(store_job_t **jobs, size_t *n_jobs, mstore_t *s, store_job_kind_t kind,
                      const bson_t *q, const bson_t *opts, size_t max, fzip_error_t *error) {
  conn_t c = {0};
  mongoc_cursor_t *cur = NULL;
  const bson_t *doc;
  bson_error_t berr;
  bool ok = false;

  conn_open(&c, s, job_collection(kind));
  cur = mongoc_collection_find_with_opts(c.coll, q, opts, NULL);
  while (*n_jobs < max && mongoc_cursor_next(cur, &doc)) {
    if (!job_from_bson(&jobs[*n_jobs], kind, doc, error))
      goto done;
    (*n_jobs)++;
  }
  if (mongoc_cursor_error(cur, &berr)) {
    fail_mongo(error, s, &berr, "listing jobs");
    goto done;
  }
  ok = true;
done:
  mongoc_cursor_destroy(cur);
  conn_close(&c, s);
  return ok;
}

static bool mongo_job_list(store_job_t ***jobs, size_t *n_jobs, char **next_token,
                           store_t *store, store_job_kind_t kind, const char *user_id,
                           size_t page_size, const char *page_token, fzip_error_t *error) {
  bson_t q = BSON_INITIALIZER;
  bson_t *opts = NULL;
  store_job_t **list = NULL;
  size_t n = 0;
  int64_t after_created = 0;
  const char *after_id = NULL;
  bool ok = false;

  *jobs = NULL;
  *n_jobs = 0;
  *next_token = NULL;
  if (page_token && *page_token &&
      !parse_page_token(&after_created, &after_id, page_token, error))
    goto done;
  BSON_APPEND_UTF8(&q, "userId", user_id);
  if (after_id) {
    /* (createdAt, _id) < (after_created, after_id), newest first */
    bson_t or, a, b, lt;
    bson_append_array_begin(&q, "$or", -1, &or);
    bson_append_document_begin(&or, "0", -1, &a);
    bson_append_document_begin(&a, "createdAt", -1, &lt);
    BSON_APPEND_INT64(&lt, "$lt", after_created);
    bson_append_document_end(&a, &lt);
    bson_append_document_end(&or, &a);
    bson_append_document_begin(&or, "1", -1, &b);
    BSON_APPEND_INT64(&b, "createdAt", after_created);
    bson_append_document_begin(&b, "_id", -1, &lt);
    BSON_APPEND_UTF8(&lt, "$lt", after_id);
    bson_append_document_end(&b, &lt);
    bson_append_document_end(&or, &b);
    bson_append_array_end(&q, &or);
  }
  /* One extra tells whether another page follows. */
  opts = BCON_NEW("sort", "{", "createdAt", BCON_INT32(-1), "_id", BCON_INT32(-1), "}", "limit",
                  BCON_INT64((int64_t)page_size + 1));
  list = bson_malloc0((page_size + 1) * sizeof *list);
  if (!find_jobs(list, &n, (mstore_t *)store, kind, &q, opts, page_size + 1, error))
    goto done;
  if (n > page_size) {
    store_job_destroy(list[page_size]);
    list[page_size] = NULL;
    n = page_size;
    *next_token = bson_strdup_printf("%" PRId64 ":%s", list[n - 1]->created_at,
                                     list[n - 1]->job_id);
  }
  *jobs = list;
  *n_jobs = n;
  list = NULL;
  ok = true;
done:
  if (list)
    store_job_list_free(list, n);
  bson_destroy(&q);
  bson_destroy(opts);
  return ok;
}

static bool mongo_job_delete(store_t *store, store_job_kind_t kind, const char *user_id,
                             const char *job_id, fzip_error_t *error) {
  bson_t q = BSON_INITIALIZER;
  uint64_t deleted = 0;
  bool ok;

  BSON_APPEND_UTF8(&q, "_id", job_id);
  if (user_id)
    BSON_APPEND_UTF8(&q, "userId", user_id);
  ok = delete_where(&deleted, (mstore_t *)store, job_collection(kind), &q, error);
  bson_destroy(&q);
  if (ok && deleted == 0)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "job %s not found",
                          job_id);
  return ok;
}

/* findAndModify returning the document as it was before the update
 * (flags 0) or after it (MONGOC_FIND_AND_MODIFY_RETURN_NEW); *out NULL
 * when none matched. */
static bool find_and_modify(bson_t **out, mstore_t *s, const char *collection, const bson_t *q,
                            const bson_t *sort, const bson_t *update,
                            mongoc_find_and_modify_flags_t flags, fzip_error_t *error) {
  mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
  conn_t c = {0};
  bson_t reply = BSON_INITIALIZER;
  bson_error_t berr;
  bson_iter_t it;
  retry_t r;
  bool ok;

  *out = NULL;
  if (sort)
    mongoc_find_and_modify_opts_set_sort(fam, sort);
  mongoc_find_and_modify_opts_set_update(fam, update);
  mongoc_find_and_modify_opts_set_flags(fam, flags);
  conn_open(&c, s, collection);
  retry_start(&r, s);
  for (;;) {
    bson_destroy(&reply);
    ok = mongoc_collection_find_and_modify_with_opts(c.coll, q, fam, &reply, &berr);
    if (ok || !retry_again(&r, &berr, false))
      break;
  }
  conn_close(&c, s);
  mongoc_find_and_modify_opts_destroy(fam);
  if (ok && bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
    const uint8_t *data;
    uint32_t len;
    bson_iter_document(&it, &len, &data);
    *out = bson_new_from_data(data, len);
  }
  bson_destroy(&reply);
  if (!ok)
    return fail_mongo(error, s, &berr, "findAndModify");
  return true;
}

/* Claim without an atomic findAndModify: take the oldest candidate's
 * current version through a fence; a lost race moves on to re-query. */
static bool claim_fenced(store_job_t **out, mstore_t *s, store_job_kind_t kind, const bson_t *q,
                         const bson_t *sort, const bson_t *update, fzip_error_t *error) {
  const char *coll = job_collection(kind);
  bson_t *cand = NULL;
  bool won = false;

  for (int attempt = 0; attempt < MONGO_CLAIM_ATTEMPTS; attempt++) {
    store_job_t *job = NULL;
    bool ok = find_first(&cand, s, coll, q, sort, error) &&
              (!cand || job_from_bson(&job, kind, cand, error));
    bson_destroy(cand);
    cand = NULL;
    if (!ok)
      return false;
    if (!job)
      return true; /* nothing runnable */
    ok = job_transition(&won, s, coll, job->job_id, job->version, NULL, update, error);
    if (ok && won)
      ok = mongo_job_get(out, &s->base, kind, NULL, job->job_id, error);
    if (ok && won && *out)
      (*out)->lease_lapsed = job->lease_owner[0] != '\0';
    store_job_destroy(job);
    if (!ok || won)
      return ok;
  }
  return true; /* contended: report none now, the caller polls again */
}

static bool mongo_job_claim(store_job_t **out, store_t *store, store_job_kind_t kind,
                            const char *owner, int64_t now_ms, int64_t lease_ms,
                            fzip_error_t *error) {
  bson_t *q = BCON_NEW("runnable", BCON_BOOL(true), "leaseUntil", "{", "$lt", BCON_INT64(now_ms),
                       "}");
  bson_t *sort = BCON_NEW("createdAt", BCON_INT32(1), "_id", BCON_INT32(1));
  bson_t *update = BCON_NEW("$set", "{", "leaseOwner", BCON_UTF8(owner), "leaseUntil",
                            BCON_INT64(now_ms + lease_ms), "}", "$inc", "{", "version",
                            BCON_INT64(1), "}");
  bson_t *found = NULL;
  bool ok = false;

  *out = NULL;
  if (((mstore_t *)store)->ferretdb) {
    ok = claim_fenced(out, (mstore_t *)store, kind, q, sort, update, error);
    goto done;
  }
  /* The document as it was: whether it still named an owner (a lapsed
   * lease) is only there; the update's effect is applied to it here. */
  if (!find_and_modify(&found, (mstore_t *)store, job_collection(kind), q, sort, update, 0,
                       error))
    goto done;
  ok = !found || job_from_bson(out, kind, found, error);
  if (ok && *out) {
    (*out)->lease_lapsed = (*out)->lease_owner[0] != '\0';
    snprintf((*out)->lease_owner, sizeof (*out)->lease_owner, "%s", owner);
    (*out)->lease_until = now_ms + lease_ms;
    (*out)->version++;
  }
done:
  bson_destroy(found);
  bson_destroy(q);
  bson_destroy(sort);
  bson_destroy(update);
  return ok;
}

static bool renew_fenced(store_job_t *job, mstore_t *s, const char *owner, const bson_t *update,
                         fzip_error_t *error) {
  for (int attempt = 0; attempt < MONGO_CLAIM_ATTEMPTS; attempt++) {
    store_job_t *cur = NULL;
    bool won = false, ok;
    if (!mongo_job_get(&cur, &s->base, job->kind, NULL, job->job_id, error)) {
      if (error && error->code == FZIP_ERR_NOT_FOUND)
        fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED, "job %s is gone",
                       job->job_id);
      return false;
    }
    if (strcmp(cur->lease_owner, owner) != 0) {
      store_job_destroy(cur);
      break;
    }
    ok = job_transition(&won, s, job_collection(job->kind), job->job_id, cur->version, owner,
                        update, error);
    if (ok && won)
      job->version = cur->version + 1;
    store_job_destroy(cur);
    if (!ok)
      return false;
    if (won)
      return true;
  }
  return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED, "lease on job %s was lost",
                        job->job_id);
}

static bool mongo_job_renew(store_t *store, store_job_t *job, const char *owner, int64_t now_ms,
                            int64_t lease_ms, fzip_error_t *error) {
  bson_t *q = BCON_NEW("_id", BCON_UTF8(job->job_id), "leaseOwner", BCON_UTF8(owner));
  bson_t *update = BCON_NEW("$set", "{", "leaseUntil", BCON_INT64(now_ms + lease_ms), "}", "$inc",
                            "{", "version", BCON_INT64(1), "}");
  bson_t *found = NULL;
  bool ok = false;

  if (((mstore_t *)store)->ferretdb) {
    if (!renew_fenced(job, (mstore_t *)store, owner, update, error))
      goto done;
  } else {
    if (!find_and_modify(&found, (mstore_t *)store, job_collection(job->kind), q, NULL, update,
                         MONGOC_FIND_AND_MODIFY_RETURN_NEW, error))
      goto done;
    if (!found) {
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED, "lease on job %s was lost",
                     job->job_id);
      goto done;
    }
    job->version = reply_int(found, "version");
  }
  job->lease_until = now_ms + lease_ms;
  snprintf(job->lease_owner, sizeof job->lease_owner, "%s", owner);
  ok = true;
done:
  bson_destroy(found);
  bson_destroy(q);
  bson_destroy(update);
  return ok;
}

static bool mongo_job_list_expired(store_job_t ***jobs, size_t *n_jobs, store_t *store,
                                   int64_t now_ms, size_t max, fzip_error_t *error) {
  bson_t *q = BCON_NEW("expiresAt", "{", "$gt", BCON_INT64(0), "$lte", BCON_INT64(now_ms), "}");
  bson_t *opts = BCON_NEW("sort", "{", "expiresAt", BCON_INT32(1), "}", "limit",
                          BCON_INT64((int64_t)max));
  store_job_t **list = bson_malloc0((max ? max : 1) * sizeof *list);
  size_t n = 0;
  bool ok = false;

  *jobs = NULL;
  *n_jobs = 0;
  for (int k = STORE_JOB_EXPORT; k <= STORE_JOB_IMPORT && n < max; k++) {
    if (!find_jobs(list, &n, (mstore_t *)store, (store_job_kind_t)k, q, opts, max, error))
      goto done;
  }
  *jobs = list;
  *n_jobs = n;
  list = NULL;
  ok = true;
done:
  if (list)
    store_job_list_free(list, n);
  bson_destroy(q);
  bson_destroy(opts);
  return ok;
}

/* ---- blobs ------------------------------------------------------------- */

typedef struct {
  store_blob_upload_t base;
  mstore_t *s;
  mongoc_client_t *client;
  mongoc_collection_t *files;
  mongoc_collection_t *chunks;
  mongoc_collection_t *uploads;
  char blob_id[STORE_BLOB_ID_MAX + 1];
  char upload_id[FZIP_UUID_LEN + 1]; /* the files doc _id and chunks files_id */
  bool committed;
} mupload_t;

static mongoc_collection_t *bucket_collection(mongoc_client_t *client, const mstore_t *s,
                                              store_bucket_t bucket, const char *suffix) {
  char name[MONGO_COLLECTION_NAME_MAX];
  collection_name(name, sizeof name, bucket, suffix);
  return mongoc_client_get_collection(client, s->db, name);
}

static void chunk_id(char out[MONGO_CHUNK_ID_MAX], const char *upload_id, int64_t n) {
  snprintf(out, MONGO_CHUNK_ID_MAX, "%s/%" PRId64, upload_id, n);
}

/* The committed files document of a blob (*out NULL if none). */
static bool find_blob(bson_t **out, mstore_t *s, store_bucket_t bucket, const char *blob_id,
                      fzip_error_t *error) {
  char name[MONGO_COLLECTION_NAME_MAX];
  bson_t q = BSON_INITIALIZER;
  bool ok;
  collection_name(name, sizeof name, bucket, "files");
  BSON_APPEND_UTF8(&q, "filename", blob_id);
  ok = find_one(out, s, name, &q, error);
  bson_destroy(&q);
  return ok;
}

static bool insert_doc(mstore_t *s, mongoc_collection_t *coll, const bson_t *doc,
                       const char *what, fzip_error_t *error) {
  bson_error_t berr;
  retry_t r;
  bool ok;
  retry_start(&r, s);
  do {
    ok = mongoc_collection_insert_one(coll, doc, NULL, NULL, &berr);
  } while (!ok && retry_again(&r, &berr, false));
  if (!ok)
    return fail_mongo(error, s, &berr, what);
  return true;
}

/* Removes everything an upload left: its chunks, then its record. */
static bool discard_upload(mstore_t *s, mongoc_collection_t *chunks,
                           mongoc_collection_t *uploads, const char *upload_id,
                           fzip_error_t *error) {
  bson_t q = BSON_INITIALIZER;
  bson_error_t berr;
  bool ok;

  BSON_APPEND_UTF8(&q, "files_id", upload_id);
  ok = mongoc_collection_delete_many(chunks, &q, NULL, NULL, &berr);
  bson_reinit(&q);
  BSON_APPEND_UTF8(&q, "_id", upload_id);
  ok = ok && mongoc_collection_delete_one(uploads, &q, NULL, NULL, &berr);
  bson_destroy(&q);
  if (!ok)
    return fail_mongo(error, s, &berr, "discarding upload");
  return true;
}

static void mongo_blob_upload_destroy(store_blob_upload_t *upload) {
  mupload_t *u = (mupload_t *)upload;
  fzip_error_t err = {0};
  if (!u)
    return;
  if (!u->committed && u->client &&
      !discard_upload(u->s, u->chunks, u->uploads, u->upload_id, &err))
    fzip_log(FZIP_LOG_WARN, "store", "abandoned upload left for the reaper", "upload",
             u->upload_id, "error", err.message, NULL);
  mongoc_collection_destroy(u->files);
  mongoc_collection_destroy(u->chunks);
  mongoc_collection_destroy(u->uploads);
  if (u->client)
    mongoc_client_pool_push(u->s->pool, u->client);
  bson_free(u);
}

static bool mongo_blob_upload_new(store_blob_upload_t **out, store_t *store,
                                  store_bucket_t bucket, const char *blob_id,
                                  fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  mupload_t *u = NULL;
  bson_t *existing = NULL;
  bson_t *record = NULL;
  bool ok = false;

  *out = NULL;
  if (!find_blob(&existing, s, bucket, blob_id, error))
    goto done;
  if (existing) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS, "blob %s already exists",
                   blob_id);
    goto done;
  }
  u = bson_malloc0(sizeof *u);
  u->base.vt = &mongo_vtable;
  u->s = s;
  snprintf(u->blob_id, sizeof u->blob_id, "%s", blob_id);
  if (!fzip_uuid_v4(u->upload_id, error))
    goto done;
  u->client = mongoc_client_pool_pop(s->pool);
  u->files = bucket_collection(u->client, s, bucket, "files");
  u->chunks = bucket_collection(u->client, s, bucket, "chunks");
  u->uploads = mongoc_client_get_collection(u->client, s->db, MONGO_UPLOADS);
  /* Recorded before the first chunk so a crash leaves a trace to reap. */
  record = BCON_NEW("_id", BCON_UTF8(u->upload_id), "bucket", BCON_UTF8(bucket_name(bucket)),
                    "blobId", BCON_UTF8(blob_id), "state", BCON_UTF8(UPLOAD_UPLOADING),
                    "startedAt", BCON_INT64(fzip_now_ms()));
  if (!insert_doc(s, u->uploads, record, "recording upload", error))
    goto done;
  *out = &u->base;
  u = NULL;
  ok = true;
done:
  bson_destroy(existing);
  bson_destroy(record);
  mongo_blob_upload_destroy((store_blob_upload_t *)u);
  return ok;
}

/* Moves upload record `id` from state `from` to `to` (startedAt = now);
 * *moved is false if it was not in state `from` (or is gone). */
static bool upload_move(bool *moved, mstore_t *s, const char *id, const char *from,
                        const char *to, fzip_error_t *error) {
  bson_t *q = BCON_NEW("_id", BCON_UTF8(id), "state", BCON_UTF8(from));
  bson_t *update = BCON_NEW("$set", "{", "state", BCON_UTF8(to), "startedAt",
                            BCON_INT64(fzip_now_ms()), "}");
  bool ok = update_one(moved, s, MONGO_UPLOADS, q, update, error);
  bson_destroy(q);
  bson_destroy(update);
  return ok;
}

static bool upload_chunk(mupload_t *u, int64_t n, const void *data, size_t len,
                         fzip_error_t *error) {
  char id[MONGO_CHUNK_ID_MAX];
  bson_t doc = BSON_INITIALIZER;
  bool ok;

  chunk_id(id, u->upload_id, n);
  BSON_APPEND_UTF8(&doc, "_id", id);
  BSON_APPEND_UTF8(&doc, "files_id", u->upload_id);
  BSON_APPEND_INT64(&doc, "n", n);
  BSON_APPEND_BINARY(&doc, "data", BSON_SUBTYPE_BINARY, data, (uint32_t)len);
  ok = insert_doc(u->s, u->chunks, &doc, "writing blob chunk", error);
  bson_destroy(&doc);
  return ok;
}

/* One insert per chunk (GridFS's layout): an insert retried after a lost
 * reply must not meet its own earlier half of a multi-document insert. */
static bool mongo_blob_upload_chunks(store_blob_upload_t *upload, int64_t n, const void *data,
                                     size_t len, fzip_error_t *error) {
  mupload_t *u = (mupload_t *)upload;
  const uint8_t *p = data;

  for (size_t off = 0; off < len; off += STORE_BLOB_CHUNK) {
    if (!upload_chunk(u, n + (int64_t)(off / STORE_BLOB_CHUNK), p + off,
                      store_chunk_len(len, off), error))
      return false;
  }
  return true;
}

/* The files document is inserted last and in one write: that insert is
 * the commit, so readers never see a partial blob.  The unique index on
 * filename makes a concurrent second commit fail with ALREADY_EXISTS. */
static bool mongo_blob_upload_commit(store_blob_upload_t *upload, const store_blob_info_t *info,
                                     fzip_error_t *error) {
  mupload_t *u = (mupload_t *)upload;
  bson_t doc = BSON_INITIALIZER, meta, q = BSON_INITIALIZER;
  bson_error_t berr;
  bool ok = false, mine = false;

  if (!upload_move(&mine, u->s, u->upload_id, UPLOAD_UPLOADING, UPLOAD_COMMITTING, error))
    goto done;
  if (!mine) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED,
                   "upload of blob %s was reaped as abandoned", u->blob_id);
    goto done;
  }
  BSON_APPEND_UTF8(&doc, "_id", u->upload_id);
  BSON_APPEND_INT64(&doc, "length", (int64_t)info->size);
  BSON_APPEND_INT32(&doc, "chunkSize", STORE_BLOB_CHUNK);
  BSON_APPEND_DATE_TIME(&doc, "uploadDate", fzip_now_ms());
  BSON_APPEND_UTF8(&doc, "filename", u->blob_id);
  bson_append_document_begin(&doc, "metadata", -1, &meta);
  BSON_APPEND_INT64(&meta, "size", (int64_t)info->size);
  BSON_APPEND_UTF8(&meta, "sha256", info->sha256);
  bson_append_document_end(&doc, &meta);
  if (!insert_doc(u->s, u->files, &doc, "committing blob", error)) {
    if (error && error->code == FZIP_ERR_ALREADY_EXISTS)
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS,
                     "blob %s already exists", u->blob_id);
    goto done;
  }
  u->committed = true;
  /* A leftover record is harmless: the reaper skips committed uploads. */
  BSON_APPEND_UTF8(&q, "_id", u->upload_id);
  if (!mongoc_collection_delete_one(u->uploads, &q, NULL, NULL, &berr))
    fzip_log(FZIP_LOG_WARN, "store", "upload record not removed", "upload", u->upload_id,
             "error", berr.message, NULL);
  ok = true;
done:
  bson_destroy(&doc);
  bson_destroy(&q);
  return ok;
}

typedef struct {
  store_blob_download_t base;
  mstore_t *s;
  mongoc_client_t *client;
  mongoc_collection_t *chunks;
  char files_id[STORE_BLOB_ID_MAX + 1];
  mongoc_cursor_t *cur; /* chunks from the first n wanted on, opened at the first chunk */
  int64_t chunk_n;      /* n of the chunk last returned */
  uint64_t chunk_size;  /* the files document's chunkSize */
} mdownload_t;

static void mongo_blob_download_destroy(store_blob_download_t *download) {
  mdownload_t *d = (mdownload_t *)download;
  if (!d)
    return;
  mongoc_cursor_destroy(d->cur);
  mongoc_collection_destroy(d->chunks);
  if (d->client)
    mongoc_client_pool_push(d->s->pool, d->client);
  bson_free(d);
}

static bool files_doc_info(store_blob_info_t *info, uint64_t *chunk_size, const bson_t *doc) {
  bson_iter_t it, m;
  const char *sha = NULL;
  info->size = (uint64_t)reply_int(doc, "length");
  if (chunk_size)
    *chunk_size = (uint64_t)reply_int(doc, "chunkSize");
  if (bson_iter_init_find(&it, doc, "metadata") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
      bson_iter_recurse(&it, &m) && bson_iter_find(&m, "sha256") && BSON_ITER_HOLDS_UTF8(&m))
    sha = bson_iter_utf8(&m, NULL);
  if (!sha || strlen(sha) != FZIP_SHA256_HEX_LEN)
    return false;
  memcpy(info->sha256, sha, FZIP_SHA256_HEX_LEN + 1);
  return !chunk_size || *chunk_size > 0;
}

static bool mongo_blob_download_new(store_blob_download_t **out, store_blob_info_t *info,
                                    uint64_t *chunk_size, store_t *store, store_bucket_t bucket,
                                    const char *blob_id, fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  mdownload_t *d = NULL;
  bson_t *files = NULL;
  bool ok = false;

  *out = NULL;
  if (!find_blob(&files, s, bucket, blob_id, error))
    goto done;
  if (!files) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "blob %s not found", blob_id);
    goto done;
  }
  d = bson_malloc0(sizeof *d);
  d->base.vt = &mongo_vtable;
  d->s = s;
  if (!files_doc_info(info, &d->chunk_size, files) ||
      !copy_field(d->files_id, sizeof d->files_id, files, "_id")) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS, "blob %s: bad files document",
                   blob_id);
    goto done;
  }
  d->client = mongoc_client_pool_pop(s->pool);
  d->chunks = bucket_collection(d->client, s, bucket, "chunks");
  *chunk_size = d->chunk_size;
  *out = &d->base;
  d = NULL;
  ok = true;
done:
  bson_destroy(files);
  mongo_blob_download_destroy((store_blob_download_t *)d);
  return ok;
}

/* Chunks of the blob from n = first on, in n order, in batches of
 * MONGO_CHUNK_BATCH.  MongoDB answers from the {files_id, n} index.
 * FerretDB v1 can use no index here (its one pushed-down filter, _id
 * equality, does not even match its own _id index expression), and a sort
 * would make it load every matching chunk before sending the first; so
 * there the query is unsorted and streams in insertion order, which is n
 * order because a writer inserts chunks one after another.  Every chunk's
 * n is checked either way. */
static void open_chunk_cursor(mdownload_t *d, int64_t first) {
  bson_t *q = BCON_NEW("files_id", BCON_UTF8(d->files_id), "n", "{", "$gte", BCON_INT64(first),
                       "}");
  bson_t *opts = BCON_NEW("batchSize", BCON_INT32(MONGO_CHUNK_BATCH));
  if (!d->s->ferretdb)
    BCON_APPEND(opts, "sort", "{", "n", BCON_INT32(1), "}");
  d->cur = mongoc_collection_find_with_opts(d->chunks, q, opts, NULL);
  d->chunk_n = first - 1;
  bson_destroy(q);
  bson_destroy(opts);
}

/* Chunk n, the cursor's next, into dst: exactly `want` bytes. */
static bool download_one_chunk(mdownload_t *d, int64_t n, size_t want, uint8_t *dst,
                               fzip_error_t *error) {
  const bson_t *doc = NULL;
  bson_error_t berr;
  bson_iter_t it;
  const uint8_t *bytes = NULL;
  uint32_t len = 0;

  if (!d->cur)
    open_chunk_cursor(d, n);
  if (n != d->chunk_n + 1)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INTERNAL,
                          "blob %s: chunk %" PRId64 " asked for after %" PRId64, d->files_id, n,
                          d->chunk_n);
  if (!mongoc_cursor_next(d->cur, &doc)) {
    if (mongoc_cursor_error(d->cur, &berr))
      return fail_mongo(error, d->s, &berr, "reading blob chunks");
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                          "blob %s: chunk %" PRId64 " missing", d->files_id, n);
  }
  if (reply_int(doc, "n") != n || !bson_iter_init_find(&it, doc, "data") ||
      !BSON_ITER_HOLDS_BINARY(&it))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                          "blob %s: chunk %" PRId64 " missing or out of order", d->files_id, n);
  bson_iter_binary(&it, NULL, &len, &bytes);
  if (len != want)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                          "blob %s: chunk %" PRId64 " has %u bytes, want %zu", d->files_id, n,
                          len, want);
  d->chunk_n = n;
  memcpy(dst, bytes, want);
  return true;
}

/* Chunks n, n + 1, ... of len bytes in all: every one but the last is
 * chunk_size bytes, and the last ends the range. */
static bool mongo_blob_download_chunks(store_blob_download_t *download, int64_t n, size_t len,
                                       uint8_t *dst, fzip_error_t *error) {
  mdownload_t *d = (mdownload_t *)download;
  for (size_t at = 0; at < len; n++) {
    size_t want = store_chunk_len_of(len, at, d->chunk_size);
    if (!download_one_chunk(d, n, want, dst + at, error))
      return false;
    at += want;
  }
  return true;
}

static bool mongo_blob_stat(store_blob_info_t *info, store_t *store, store_bucket_t bucket,
                            const char *blob_id, fzip_error_t *error) {
  bson_t *files = NULL;
  bool ok = false;

  if (!find_blob(&files, (mstore_t *)store, bucket, blob_id, error))
    goto done;
  if (!files) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "blob %s not found", blob_id);
    goto done;
  }
  if (!files_doc_info(info, NULL, files)) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS, "blob %s: bad files document",
                   blob_id);
    goto done;
  }
  ok = true;
done:
  bson_destroy(files);
  return ok;
}

/* The files document goes first so the blob vanishes at once; chunks
 * left by a failure in between are unreachable and harmless. */
static bool mongo_blob_delete(store_t *store, store_bucket_t bucket, const char *blob_id,
                              fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  char files_name[32], chunks_name[32], files_id[STORE_BLOB_ID_MAX + 1];
  bson_t *files = NULL;
  bson_t q = BSON_INITIALIZER;
  bool ok = false;

  collection_name(files_name, sizeof files_name, bucket, "files");
  collection_name(chunks_name, sizeof chunks_name, bucket, "chunks");
  if (!find_blob(&files, s, bucket, blob_id, error))
    goto done;
  if (!files || !copy_field(files_id, sizeof files_id, files, "_id")) {
    ok = true;
    goto done;
  }
  BSON_APPEND_UTF8(&q, "_id", files_id);
  if (!delete_where(NULL, s, files_name, &q, error))
    goto done;
  bson_reinit(&q);
  BSON_APPEND_UTF8(&q, "files_id", files_id);
  ok = delete_where(NULL, s, chunks_name, &q, error);
done:
  bson_destroy(files);
  bson_destroy(&q);
  return ok;
}

/* Reaps one upload record older than the cutoff.  An upload still being
 * written is first moved to "reaping" so its writer cannot commit any
 * more; one caught mid-commit ("committing" for longer than the cutoff:
 * its writer died) keeps its data if the files document made it. */
static bool reap_upload(bool *reaped, mstore_t *s, mongoc_client_t *client,
                        const bson_t *record, fzip_error_t *error) {
  const char *upload_id = doc_utf8(record, "_id");
  const char *bucket = doc_utf8(record, "bucket");
  const char *state = doc_utf8(record, "state");
  store_bucket_t b = bucket && strcmp(bucket, "files") == 0 ? STORE_BUCKET_FILES
                                                             : STORE_BUCKET_PACKAGES;
  mongoc_collection_t *files = bucket_collection(client, s, b, "files");
  mongoc_collection_t *chunks = bucket_collection(client, s, b, "chunks");
  mongoc_collection_t *uploads = mongoc_client_get_collection(client, s->db, MONGO_UPLOADS);
  bson_t q = BSON_INITIALIZER;
  bson_error_t berr;
  int64_t committed;
  bool ok = false, mine = true;

  *reaped = false;
  if (!upload_id)
    goto done;
  if (state && strcmp(state, UPLOAD_UPLOADING) == 0 &&
      !upload_move(&mine, s, upload_id, UPLOAD_UPLOADING, UPLOAD_REAPING, error))
    goto done;
  if (!mine) { /* its writer committed or reaped it meanwhile */
    ok = true;
    goto done;
  }
  BSON_APPEND_UTF8(&q, "_id", upload_id);
  committed = mongoc_collection_count_documents(files, &q, NULL, NULL, NULL, &berr);
  if (committed < 0) {
    fail_mongo(error, s, &berr, "checking upload");
    goto done;
  }
  if (committed > 0) {
    ok = mongoc_collection_delete_one(uploads, &q, NULL, NULL, &berr) ||
         fail_mongo(error, s, &berr, "removing upload record");
    goto done;
  }
  ok = discard_upload(s, chunks, uploads, upload_id, error);
  *reaped = ok;
done:
  bson_destroy(&q);
  mongoc_collection_destroy(files);
  mongoc_collection_destroy(chunks);
  mongoc_collection_destroy(uploads);
  return ok;
}

#define MONGO_REAP_PAGE 100
#define MONGO_REAP_PASSES 100

/* Copies up to MONGO_REAP_PAGE upload records started before the cut-off,
 * closing the cursor before anything is written (FerretDB stalls a write
 * behind an open read of the same database). */
static bool read_upload_page(bson_t **page, size_t *n, mstore_t *s, const bson_t *q,
                             fzip_error_t *error) {
  conn_t c = {0};
  bson_t *opts = BCON_NEW("limit", BCON_INT64(MONGO_REAP_PAGE));
  mongoc_cursor_t *cur = NULL;
  const bson_t *record;
  bson_error_t berr;
  bool ok = true;

  *n = 0;
  conn_open(&c, s, MONGO_UPLOADS);
  cur = mongoc_collection_find_with_opts(c.coll, q, opts, NULL);
  while (*n < MONGO_REAP_PAGE && mongoc_cursor_next(cur, &record))
    page[(*n)++] = bson_copy(record);
  if (mongoc_cursor_error(cur, &berr))
    ok = fail_mongo(error, s, &berr, "listing uploads");
  mongoc_cursor_destroy(cur);
  conn_close(&c, s);
  bson_destroy(opts);
  return ok;
}

static bool mongo_blob_reap_uncommitted(uint64_t *deleted, store_t *store, int64_t older_than_ms,
                                        fzip_error_t *error) {
  mstore_t *s = (mstore_t *)store;
  mongoc_client_t *worker = mongoc_client_pool_pop(s->pool);
  bson_t *q = BCON_NEW("startedAt", "{", "$lt", BCON_INT64(older_than_ms), "}");
  bson_t *page[MONGO_REAP_PAGE];
  size_t n_page = 0;
  uint64_t n = 0;
  bool ok = false, reaped;

  /* Page by page: each pass removes (or moves on) what it read; a short
   * page means nothing is left.  The pass bound keeps a record that
   * cannot be removed from looping forever; the next run retries it. */
  for (int pass = 0; pass < MONGO_REAP_PASSES; pass++) {
    if (!read_upload_page(page, &n_page, s, q, error))
      goto done;
    for (size_t i = 0; i < n_page; i++) {
      bool step = reap_upload(&reaped, s, worker, page[i], error);
      n += step && reaped;
      if (!step) {
        for (size_t k = i; k < n_page; k++)
          bson_destroy(page[k]);
        goto done;
      }
      bson_destroy(page[i]);
    }
    if (n_page < MONGO_REAP_PAGE)
      break;
  }
  if (deleted)
    *deleted = n;
  ok = true;
done:
  mongoc_client_pool_push(s->pool, worker);
  bson_destroy(q);
  return ok;
}

static const store_vtable_t mongo_vtable = {
    .name = "mongodb",
    .destroy = mongo_destroy,
    .ping = mongo_ping,
    .cursor_new = mongo_cursor_new,
    .cursor_next = mongo_cursor_next,
    .cursor_destroy = mongo_cursor_destroy,
    .entity_count = mongo_entity_count,
    .entity_get = mongo_entity_get,
    .entity_put_batch = mongo_entity_put_batch,
    .entity_exists_many = mongo_entity_exists_many,
    .entity_get_many = mongo_entity_get_many,
    .entity_delete_many = mongo_entity_delete_many,
    .entity_delete_all = mongo_entity_delete_all,
    .job_create = mongo_job_create,
    .job_get = mongo_job_get,
    .job_update = mongo_job_update,
    .job_list = mongo_job_list,
    .job_delete = mongo_job_delete,
    .job_claim = mongo_job_claim,
    .job_renew = mongo_job_renew,
    .job_list_expired = mongo_job_list_expired,
    .job_find_request = mongo_job_find_request,
    .job_release_request = mongo_job_release_request,
    .job_count_runnable = mongo_job_count_runnable,
    .job_count_queued = mongo_job_count_queued,
    .blob_upload_new = mongo_blob_upload_new,
    .blob_upload_chunks = mongo_blob_upload_chunks,
    .blob_upload_commit = mongo_blob_upload_commit,
    .blob_upload_destroy = mongo_blob_upload_destroy,
    .blob_download_new = mongo_blob_download_new,
    .blob_download_chunks = mongo_blob_download_chunks,
    .blob_download_destroy = mongo_blob_download_destroy,
    .blob_stat = mongo_blob_stat,
    .blob_delete = mongo_blob_delete,
    .blob_reap_uncommitted = mongo_blob_reap_uncommitted,
    .entity_put_batch_tagged = mongo_entity_put_batch_tagged,
    .import_rollback = mongo_import_rollback,
    .import_commit = mongo_import_commit,
    .import_begin = mongo_import_begin,
    .import_end = mongo_import_end,
    .import_pending = mongo_import_pending,
    .stash_get = mongo_stash_get,
    .changes_mark = mongo_changes_mark,
    .deletions_page = mongo_deletions_page,
    .import_marks = mongo_import_marks,
    .import_lost = mongo_import_lost,
    .snapshot_begin = mongo_snapshot_begin,
    .snapshot_end = mongo_snapshot_end,
};
