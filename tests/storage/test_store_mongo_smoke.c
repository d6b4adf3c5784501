/*
 * test_store_mongo_smoke: MongoDB-backend behaviour that the
 * backend-agnostic conformance suite cannot see, run against a real
 * FerretDB (the `ferretdb` CTest fixture): the unreachable-server message,
 * the stored document and GridFS layouts, and reaping the chunks of an
 * upload whose process died.  argv[1] is the mongodb:// URI with a
 * database of this test's own.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fzip_test.h"
#include "store.h"

#define SMOKE_BLOB_BYTES (3 * STORE_BLOB_CHUNK + 1000) /* spans 4 chunks */

static const char *mongo_uri;

static bool open_store(store_t **out, fzip_error_t *err) {
  store_options_t opts = {.uri = mongo_uri};
  return store_open(out, &opts, err);
}

/* Documents in `collection` matching a one-field string filter (field
 * NULL: all documents), counted
 * with the driver directly so the test does not trust the store's view. */
static int64_t raw_count(const char *collection, const char *field, const char *value) {
  mongoc_client_t *client = mongoc_client_new(mongo_uri);
  mongoc_uri_t *uri = mongoc_uri_new(mongo_uri);
  mongoc_collection_t *coll =
      mongoc_client_get_collection(client, mongoc_uri_get_database(uri), collection);
  bson_t *q = field ? BCON_NEW(field, BCON_UTF8(value)) : bson_new();
  bson_error_t berr;
  int64_t n = mongoc_collection_count_documents(coll, q, NULL, NULL, NULL, &berr);
  if (n < 0)
    fprintf(stderr, "  raw count: %s\n", berr.message);
  bson_destroy(q);
  mongoc_collection_destroy(coll);
  mongoc_uri_destroy(uri);
  mongoc_client_destroy(client);
  return n;
}

/* Documents of db.export_jobs with a string field equal to value. */
static int64_t raw_count_in(mongoc_client_t *client, const char *db, const char *field,
                            const char *value) {
  mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "export_jobs");
  bson_t *q = BCON_NEW(field, BCON_UTF8(value));
  int64_t n = mongoc_collection_count_documents(coll, q, NULL, NULL, NULL, NULL);
  bson_destroy(q);
  mongoc_collection_destroy(coll);
  return n;
}

static void test_unreachable_server_fails_at_open_with_one_clear_line(void) {
  store_options_t opts = {.uri = "mongodb://127.0.0.1:1/fzip", .retry_budget_ms = 300};
  store_t *s = NULL;
  fzip_error_t err = {0};
  int64_t t0 = fzip_monotonic_ms();
  CHECK_FAILS(store_open(&s, &opts, &err), err, FZIP_ERR_UNAVAILABLE);
  CHECK(s == NULL);
  CHECK(strncmp(err.message, "cannot reach MongoDB at 127.0.0.1:1: ", 37) == 0);
  CHECK(strchr(err.message, '\n') == NULL);
  /* budget 300 ms + one server selection timeout */
  CHECK(fzip_monotonic_ms() - t0 < 10000);
}

static void test_entity_is_stored_under_user_key_with_filter_copies(void) {
  store_t *s = NULL;
  fzip_error_t err = {0};
  bson_t *doc = BCON_NEW("transactionId", "t1", "accountId", "a1", "date", BCON_INT64(1700000000000),
                         "amount", "12.50");
  const bson_t *docs[1] = {doc};
  store_write_result_t res = {0};
  bson_t *back = NULL;
  CHECK_OK(open_store(&s, &err), err);
  CHECK(strcmp(store_backend_name(s), "mongodb") == 0);
  CHECK_OK(store_entity_put_batch(s, "smoke-user", FZIP_KIND_TRANSACTION, docs, 1,
                                  STORE_WRITE_REPLACE, &res, &err),
           err);
  CHECK(raw_count("transactions", "_id", "smoke-user\x1ft1") == 1);
  CHECK(raw_count("transactions", "account", "a1") == 1);
  CHECK_OK(store_entity_get(&back, s, "smoke-user", FZIP_KIND_TRANSACTION, "t1", &err), err);
  CHECK(bson_equal(back, doc));
  bson_destroy(back);
  bson_destroy(doc);
  store_destroy(s);
}

static void fill_pattern(uint8_t *buf, size_t len, uint64_t offset) {
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t)((offset + i) * 7 + 3);
}

static void test_blob_uses_gridfs_layout_and_reads_from_any_offset(void) {
  store_t *s = NULL;
  store_blob_writer_t *w = NULL;
  store_blob_reader_t *r = NULL;
  fzip_error_t err = {0};
  static uint8_t data[SMOKE_BLOB_BYTES], back[SMOKE_BLOB_BYTES];
  store_blob_info_t info;
  char sha[FZIP_SHA256_HEX_LEN + 1];
  uint64_t offset = 2 * STORE_BLOB_CHUNK + 17;
  size_t got = 0, n;
  CHECK_OK(open_store(&s, &err), err);
  fill_pattern(data, sizeof data, 0);
  CHECK_OK(store_blob_writer_new(&w, s, STORE_BUCKET_PACKAGES, "smoke/layout", &err), err);
  CHECK_OK(store_blob_writer_write(w, data, sizeof data, &err), err);
  CHECK(raw_count("packages.files", "filename", "smoke/layout") == 0); /* not yet visible */
  CHECK_OK(store_blob_writer_commit(w, &info, &err), err);
  store_blob_writer_destroy(w);
  fzip_sha256_hex(sha, data, sizeof data);
  CHECK(info.size == sizeof data && strcmp(info.sha256, sha) == 0);
  CHECK(raw_count("packages.files", "filename", "smoke/layout") == 1);
  CHECK_OK(store_blob_reader_new(&r, s, STORE_BUCKET_PACKAGES, "smoke/layout", offset, &err), err);
  do {
    CHECK_OK(store_blob_reader_read(r, back + got, 1000, &n, &err), err);
    got += n;
  } while (n > 0);
  store_blob_reader_destroy(r);
  CHECK(got == sizeof data - offset);
  CHECK(memcmp(back, data + offset, got) == 0);
  CHECK_OK(store_blob_delete(s, STORE_BUCKET_PACKAGES, "smoke/layout", &err), err);
  CHECK(raw_count("packages.files", "filename", "smoke/layout") == 0);
  store_destroy(s);
}

/* A child writes a batch of chunks (what a writer stores at once, when
 * the byte after them comes) and dies without destroying its writer. */
static void crash_mid_upload(void) {
  store_t *s = NULL;
  store_blob_writer_t *w = NULL;
  fzip_error_t err = {0};
  static uint8_t data[STORE_BLOB_BATCH + 1];
  if (!open_store(&s, &err) ||
      !store_blob_writer_new(&w, s, STORE_BUCKET_FILES, "smoke/crashed", &err) ||
      !store_blob_writer_write(w, data, sizeof data, &err)) {
    fprintf(stderr, "  child: %s\n", err.message);
    _exit(1);
  }
  _exit(0);
}

static void test_reaper_deletes_chunks_of_an_upload_whose_process_died(void) {
  store_t *s = NULL;
  fzip_error_t err = {0};
  uint64_t deleted = 0;
  int status = 0;
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0)
    crash_mid_upload();
  CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(raw_count("blob_uploads", "blobId", "smoke/crashed") == 1);
  CHECK(raw_count("files.chunks", NULL, NULL) == STORE_BLOB_BATCH_CHUNKS);
  CHECK_OK(open_store(&s, &err), err);
  /* started just now: not yet old enough to reap */
  CHECK_OK(store_blob_reap_uncommitted(&deleted, s, fzip_now_ms() - 60000, &err), err);
  CHECK(deleted == 0);
  CHECK_OK(store_blob_reap_uncommitted(&deleted, s, fzip_now_ms() + 1, &err), err);
  CHECK(deleted == 1);
  CHECK(raw_count("blob_uploads", "blobId", "smoke/crashed") == 0);
  CHECK(raw_count("files.chunks", NULL, NULL) == 0);
  store_destroy(s);
}

static void test_abandoned_writer_leaves_no_chunks(void) {
  store_t *s = NULL;
  store_blob_writer_t *w = NULL;
  fzip_error_t err = {0};
  static uint8_t data[STORE_BLOB_CHUNK + 5];
  store_blob_info_t info;
  CHECK_OK(open_store(&s, &err), err);
  CHECK_OK(store_blob_writer_new(&w, s, STORE_BUCKET_FILES, "smoke/abandoned", &err), err);
  CHECK_OK(store_blob_writer_write(w, data, sizeof data, &err), err);
  store_blob_writer_destroy(w);
  CHECK(raw_count("blob_uploads", "blobId", "smoke/abandoned") == 0);
  CHECK_FAILS(store_blob_stat(&info, s, STORE_BUCKET_FILES, "smoke/abandoned", &err), err,
              FZIP_ERR_NOT_FOUND);
  store_destroy(s);
}

/* A database written before request ids: two jobs of one user with no
 * idemKey.  Opening it gives each its own key before the unique
 * {userId, idemKey} index is built (else the two would collide on null),
 * and idempotent creates work on it. */
static void test_jobs_from_before_request_ids_get_their_own_keys(void) {
  mongoc_client_t *client = mongoc_client_new(mongo_uri);
  mongoc_uri_t *uri = mongoc_uri_new(mongo_uri);
  char db[128];
  mongoc_database_t *mdb;
  mongoc_collection_t *coll;
  bson_error_t berr;
  store_options_t opts = {.uri = mongo_uri};
  store_t *s = NULL;
  store_job_t *job = NULL, *existing = NULL;
  fzip_error_t err = {0};

  snprintf(db, sizeof db, "%s_old", mongoc_uri_get_database(uri));
  mdb = mongoc_client_get_database(client, db);
  mongoc_database_drop(mdb, NULL);
  coll = mongoc_client_get_collection(client, db, "export_jobs");
  for (int i = 0; i < 2; i++) {
    bson_t *doc = BCON_NEW("_id", BCON_UTF8(i ? "old-2" : "old-1"), "userId", BCON_UTF8("u"),
                           "createdAt", BCON_INT64(1), "updatedAt", BCON_INT64(1), "expiresAt",
                           BCON_INT64(0), "runnable", BCON_BOOL(false), "leaseOwner",
                           BCON_UTF8(""), "leaseUntil", BCON_INT64(0), "version", BCON_INT64(1),
                           "body", "{", "}");
    CHECK(mongoc_collection_insert_one(coll, doc, NULL, NULL, &berr));
    bson_destroy(doc);
  }
  opts.database = db;
  CHECK_OK(store_open(&s, &opts, &err), err);
  CHECK(raw_count_in(client, db, "idemKey", "j:old-1") == 1);
  CHECK(raw_count_in(client, db, "idemKey", "j:old-2") == 1);
  job = store_job_new();
  snprintf(job->job_id, sizeof job->job_id, "new-1");
  snprintf(job->user_id, sizeof job->user_id, "u");
  snprintf(job->request_id, sizeof job->request_id, "op");
  job->created_at = job->updated_at = 2;
  CHECK_OK(store_job_create_once(&existing, s, job, 1000, &err), err);
  CHECK(existing == NULL);
  snprintf(job->job_id, sizeof job->job_id, "new-2");
  CHECK_OK(store_job_create_once(&existing, s, job, 1000, &err), err);
  CHECK(existing && strcmp(existing->job_id, "new-1") == 0);
  store_job_destroy(existing);
  store_job_destroy(job);
  store_destroy(s);
  mongoc_database_drop(mdb, NULL);
  mongoc_database_destroy(mdb);
  mongoc_collection_destroy(coll);
  mongoc_uri_destroy(uri);
  mongoc_client_destroy(client);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s mongodb://HOST:PORT/DATABASE\n", argv[0]);
    return 2;
  }
  mongo_uri = argv[1];
  mongoc_init();
  RUN(test_unreachable_server_fails_at_open_with_one_clear_line);
  RUN(test_entity_is_stored_under_user_key_with_filter_copies);
  RUN(test_blob_uses_gridfs_layout_and_reads_from_any_offset);
  RUN(test_reaper_deletes_chunks_of_an_upload_whose_process_died);
  RUN(test_abandoned_writer_leaves_no_chunks);
  RUN(test_jobs_from_before_request_ids_get_their_own_keys);
  return fzip_test_summary();
}
