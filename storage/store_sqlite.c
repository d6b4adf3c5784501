/*
 * store_sqlite: the embedded backend, one SQLite file in WAL mode.
 *
 * Design (docs/STORAGE.md has the schema):
 *   - A small pool of connections, each used by one thread at a time, so a
 *     store_t can be shared by every thread of fzipd.  No object keeps a
 *     connection between calls: cursors page by keyset (entity id), blob
 *     readers move one chunk and writers one batch per call, so a thread
 *     holding a cursor can still write, and the pool can never deadlock.
 *   - Every operation is a function run by sq_run, which borrows a
 *     connection, rolls back on failure and retries transient failures
 *     (SQLITE_BUSY, LOCKED, IOERR) with exponential backoff until the
 *     store's retry budget is spent, then reports UNAVAILABLE.
 *   - Writes that must be all-or-nothing run in BEGIN IMMEDIATE, which
 *     takes the single writer lock up front so a read never has to be
 *     upgraded (the case where SQLite cannot wait and fails at once).
 *   - Blobs are rows of STORE_BLOB_CHUNK bytes keyed by (blob_key, n); a
 *     read at an offset computes n and fetches that chunk only.
 *   - One connection outside the pool: the blob checkpointer's, on a thread
 *     of its own (sq_ckpt_main), which copies the blob file's WAL into the
 *     file while writers go on.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_failpoint.h"
#include "store_backend.h"

#define SQ_POOL_MAX 4                          /* connections per store */
/* Page size of files this code creates (bytes; an existing file keeps its
 * own).  4 KiB (SQLite's default) rather than 16 KiB: chosen while an
 * import's batch dirtied about one page of the date index per document
 * (entities_date, gone since: sq_schema_dropped), when the page size was
 * the bytes written per document; 4 KiB put the import floor's documents
 * in 30 s instead of 53 s at 1M transactions (docs/BENCHMARKS.md, run R)
 * for blobs 20% slower to write.  Measured again without that index (run
 * AG, 1M): 16 KiB pages made the export floor's scan (rows fetched by
 * rowid in id order) 4.4-4.7 s instead of 3.2-3.5 s and the import
 * floor's puts 7.9-9.6 s instead of 7.1-7.8 s: 4 KiB stays. */
#define SQ_PAGE_SIZE 4096
/* Blobs (packages, uploaded bank files) live in a second file, PATH-blobs,
 * attached to every connection as schema SQ_BLOB_SCHEMA, with 64 KiB pages.
 * SQLite reads an overflow chain one page (one pread) at a time: a 255 KiB
 * chunk was 64 reads with 4 KiB pages and is 4 here, and the 1M package
 * (187 MiB) reads in ~1/7 of the time and writes in half (docs/BENCHMARKS.md,
 * run U).  The documents keep the main file's 4 KiB pages (above).  The
 * blob file has its own, small page cache (chunks are read once, in order)
 * and checkpoints after SQ_BLOB_WAL_CHECKPOINT_BYTES of WAL: blobs are
 * written once, so a larger WAL would save no copying. */
#define SQ_BLOB_SCHEMA "blobstore"
#define SQ_BLOBS SQ_BLOB_SCHEMA ".blobs"
#define SQ_CHUNKS SQ_BLOB_SCHEMA ".blob_chunks"
#define SQ_BLOB_FILE_SUFFIX "-blobs"
#define SQ_BLOB_PAGE_SIZE 65536
/* The chunk size of every blob written before blobs recorded their own
 * (255 KiB, STORE_BLOB_CHUNK then), as SQL. */
#define SQ_LEGACY_CHUNK "261120"
#define SQ_BLOB_CACHE_KIB 1024
#define SQ_BLOB_WAL_CHECKPOINT_BYTES (64 * 1024 * 1024)
#define SQ_BACKOFF_START_MS 5
#define SQ_BACKOFF_MAX_MS 250
#define SQ_CURSOR_PAGE_ROWS 256                /* documents fetched per cursor page */
#define SQ_CURSOR_PAGE_BYTES (8 * 1024 * 1024) /* stop a page once it holds this much */
#define SQ_SQL_MAX 8192                        /* generated SQL (1000 placeholders fit) */
#define SQ_RESERVE_BYTES (4 * 1024 * 1024)     /* set aside per pending import, see below */
#define SQ_MAX_PAGES_PARAM "?max_pages="       /* URI suffix capping the file's size */
/* A changed_after cursor with at most this many changed documents reads
 * them through the seq index (each page sorts them by id); with more it
 * scans the kind in id order instead.  Docs: STORAGE.md "Change tracking". */
#define SQ_CHANGED_SPARSE_MAX 16384
/* Page cache per connection (KiB; SQLite's own default), and the larger
 * one a batch write gets for its transaction only (pages, so that files
 * with 16 KiB pages keep the 24 MiB they were measured with).  Sized when
 * a batch dirtied a page of entities_date per document; without that
 * index it still pays: the 1M import floor's puts took 13.8-14.0 s with it
 * and 15.9-16.1 s with 500 pages (two interleaved pairs, run Y).  The
 * cache shrinks back after the COMMIT, so only the thread writing holds
 * it, and only while it writes.  Docs: STORAGE.md "Entities". */
#define SQ_CACHE_KIB 2000
#define SQ_BULK_CACHE_PAGES 1536
/* WAL bytes after which a commit checkpoints the main file (sq_wal_hook
 * counts them in pages of the file's own size; SQLite's default is 1000
 * pages).  A bulk
 * import rewrites the same index pages commit after commit; a checkpoint
 * copies each page once however often it was committed since the last
 * one, so fewer, larger checkpoints copy less (the 1M import floor's puts:
 * 30.7 s at 64 MiB, 25.7 s at 256 MiB).  But a batch that looks its ids
 * up (REPLACE, SKIP_EXISTING: random reads of rows and stash) was slower
 * with a large WAL, likely because every page read looks the page up in
 * the WAL's index first (overwrite import at 1M: 76 s with 256 MiB for
 * every write, 51-54 s with 64 MiB for those batches; docs/BENCHMARKS.md,
 * run R), so such a batch commits with the smaller interval and keeps the
 * WAL short while it runs.  The -wal file keeps its size once grown (no
 * journal_size_limit: each refill would allocate its blocks again, and
 * one run with it showed no gain). */
#define SQ_WAL_CHECKPOINT_BYTES (256 * 1024 * 1024)
#define SQ_WAL_CHECKPOINT_LOOKUP_BYTES (64 * 1024 * 1024)
/* A blob WAL this long is checkpointed by the commit that made it so, not
 * by the checkpointer thread (sq_wal_hook): a package of up to ~190 MiB
 * goes in without the writer copying any of it. */
#define SQ_BLOB_WAL_INLINE_BYTES (256 * 1024 * 1024)

typedef struct sq_store sq_store_t;

/* One of a store's two main-file checkpoint intervals (sq_set_checkpoint). */
typedef struct {
  sq_store_t *s;
  int64_t bytes;
} sq_hook_t;

/* The store's blob checkpointer: a thread and its own connection
 * (sq_ckpt_*), with how far its last checkpoint copied the blob file's WAL
 * and how long that WAL was at the last commit the hook looked at, so
 * that the next request waits for another interval of new frames
 * (sq_ckpt_request). */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  sqlite3 *db;
  bool running; /* set before the store is shared, cleared after */
  bool stop;
  bool want; /* a checkpoint was asked for */
  bool busy; /* ... and is running */
  int64_t copied, seen; /* WAL frames */
} sq_ckpt_t;

struct sq_store {
  store_t base;
  char *path;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char *blob_path; /* path + SQ_BLOB_FILE_SUFFIX */
  sqlite3 *idle[SQ_POOL_MAX];
  size_t n_idle;
  size_t n_open;
  int64_t max_pages; /* PRAGMA max_page_count of every connection (0: SQLite's default) */
  sqlite3 *snap;     /* a snapshot view: its one connection, inside a read transaction */
  int64_t main_page; /* the main file's page size: its WAL frames' size (> 0) */
  sq_hook_t hook_write, hook_lookup; /* sq_wal_hook's arguments (sq_set_checkpoint) */
  sq_ckpt_t ckpt;
};

typedef bool (*sq_op_fn)(sqlite3 *db, void *ctx, fzip_error_t *error);

static const store_vtable_t sq_vtable;

/* ---- errors -------------------------------------------------------------- */

static fzip_code_t sq_code(int rc) {
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
  case SQLITE_IOERR:
  case SQLITE_CANTOPEN:
  case SQLITE_PROTOCOL:
    return FZIP_ERR_UNAVAILABLE;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
    return FZIP_ERR_DATA_LOSS;
  case SQLITE_FULL:
  case SQLITE_NOMEM:
  case SQLITE_TOOBIG:
    return FZIP_ERR_RESOURCE_EXHAUSTED;
  case SQLITE_CONSTRAINT:
    return FZIP_ERR_ALREADY_EXISTS;
  default:
    return FZIP_ERR_INTERNAL;
  }
}

static bool sq_fail(fzip_error_t *error, sqlite3 *db, int rc, const char *what) {
  const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return fzip_error_set(error, FZIP_DOMAIN_STORE, sq_code(rc), "sqlite: %s: %s", what, msg);
}

/* ---- statements ---------------------------------------------------------- */

static bool sq_prepare(sqlite3_stmt **out, sqlite3 *db, const char *sql, fzip_error_t *error) {
  int rc = sqlite3_prepare_v2(db, sql, -1, out, NULL);
  if (rc != SQLITE_OK)
    return sq_fail(error, db, rc, "prepare");
  return true;
}

static bool sq_exec(sqlite3 *db, const char *sql, fzip_error_t *error) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return sq_fail(error, db, rc, sql);
  return true;
}

/* PRAGMA name=value. */
static bool sq_pragma(sqlite3 *db, const char *name, int64_t value, fzip_error_t *error) {
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA %s=%lld", name, (long long)value);
  return sq_exec(db, sql, error);
}

/* Steps a statement that returns no rows (or whose rows are not wanted). */
static bool sq_step_done(sqlite3_stmt *stmt, sqlite3 *db, const char *what, fzip_error_t *error) {
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
    ;
  if (rc != SQLITE_DONE)
    return sq_fail(error, db, rc, what);
  return true;
}

/* Steps once: *row says whether a row is available. */
static bool sq_step_row(bool *row, sqlite3_stmt *stmt, sqlite3 *db, const char *what,
                        fzip_error_t *error) {
  int rc = sqlite3_step(stmt);
  *row = rc == SQLITE_ROW;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return sq_fail(error, db, rc, what);
  return true;
}

static void sq_bind_text(sqlite3_stmt *stmt, int i, const char *s) {
  if (s)
    sqlite3_bind_text(stmt, i, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(stmt, i);
}

static void sq_copy_text(char *dst, size_t cap, sqlite3_stmt *stmt, int col) {
  const unsigned char *s = sqlite3_column_text(stmt, col);
  snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

/* Column col's document; NULL if it is not one (the caller says which). */
static bson_t *sq_column_doc(sqlite3_stmt *stmt, int col) {
  const void *data = sqlite3_column_blob(stmt, col);
  return data ? bson_new_from_data(data, (size_t)sqlite3_column_bytes(stmt, col)) : NULL;
}

/* A statement's parameter values, bound in order to ?1, ?2, ... and ended
 * by SQ_END.  Text (NULL binds NULL) and blobs are bound SQLITE_STATIC:
 * they must outlive the statement's steps. */
typedef struct {
  enum { SQ_ARG_END, SQ_ARG_INT, SQ_ARG_TEXT, SQ_ARG_BLOB } type;
  int64_t i;
  const void *p;
  size_t len;
} sq_arg_t;

#define SQ_INT(v) ((sq_arg_t){SQ_ARG_INT, (int64_t)(v), NULL, 0})
#define SQ_TEXT(s) ((sq_arg_t){SQ_ARG_TEXT, 0, (s), 0})
#define SQ_BLOB(data, n) ((sq_arg_t){SQ_ARG_BLOB, 0, (data), (n)})
#define SQ_END ((sq_arg_t){SQ_ARG_END, 0, NULL, 0})

static void sq_bind_args(sqlite3_stmt *stmt, const sq_arg_t *args) {
  for (int i = 0; args[i].type != SQ_ARG_END; i++) {
    if (args[i].type == SQ_ARG_INT)
      sqlite3_bind_int64(stmt, i + 1, args[i].i);
    else if (args[i].type == SQ_ARG_TEXT)
      sq_bind_text(stmt, i + 1, args[i].p);
    else
      sqlite3_bind_blob(stmt, i + 1, args[i].p, (int)args[i].len, SQLITE_STATIC);
  }
}

static bool sq_prepare_args(sqlite3_stmt **out, sqlite3 *db, const char *sql,
                            const sq_arg_t *args, fzip_error_t *error) {
  if (!sq_prepare(out, db, sql, error))
    return false;
  sq_bind_args(*out, args);
  return true;
}

/* Runs a prepared statement that returns no rows with args, from the
 * start, so one statement serves a loop; adds the rows it changed to
 * *changes (may be NULL). */
static bool sq_step_args(uint64_t *changes, sqlite3_stmt *stmt, sqlite3 *db,
                         const sq_arg_t *args, const char *what, fzip_error_t *error) {
  sqlite3_reset(stmt);
  sq_bind_args(stmt, args);
  if (!sq_step_done(stmt, db, what, error))
    return false;
  if (changes)
    *changes += (uint64_t)sqlite3_changes(db);
  return true;
}

/* One statement that returns no rows: prepare, sq_step_args, finalize. */
static bool sq_exec_args(uint64_t *changes, sqlite3 *db, const char *sql, const sq_arg_t *args,
                         const char *what, fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool ok = sq_prepare(&stmt, db, sql, error) && sq_step_args(changes, stmt, db, args, what, error);
  sqlite3_finalize(stmt);
  return ok;
}

/* ---- connection pool ----------------------------------------------------- */

static const char sq_schema[] =
    "CREATE TABLE IF NOT EXISTS entities("
    " user_id TEXT NOT NULL, kind INTEGER NOT NULL, entity_id TEXT NOT NULL,"
    " account_id TEXT, date INTEGER, doc BLOB NOT NULL, tag TEXT,"
    " PRIMARY KEY(user_id, kind, entity_id));"
    "CREATE INDEX IF NOT EXISTS entities_account ON entities(user_id, kind, account_id, entity_id);"
    "CREATE TABLE IF NOT EXISTS jobs("
    " kind INTEGER NOT NULL, job_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
    " runnable INTEGER NOT NULL, lease_owner TEXT NOT NULL, lease_until INTEGER NOT NULL,"
    " version INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY(kind, job_id));"
    "CREATE INDEX IF NOT EXISTS jobs_user_newest"
    " ON jobs(user_id, kind, created_at DESC, job_id DESC);"
    "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(kind, created_at, job_id) WHERE runnable = 1;"
    "CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs(expires_at) WHERE expires_at > 0;";

/* Indexes files from before kept: entities_date (user_id, kind, date,
 * entity_id) took each document of an import at a random place, since
 * dates are in random order against ids, and was two thirds of the
 * import's writes at 1M transactions (docs/STORAGE.md "Entities"). */
static const char sq_schema_dropped[] = "DROP INDEX IF EXISTS entities_date;";

/* The blob file's tables (schema SQ_BLOB_SCHEMA): the definitions the main
 * file had before blobs moved out (sq_migrate_blobs copies them), and each
 * blob's chunk size, which is not a constant of the file: blobs written
 * before the column have SQ_LEGACY_CHUNK (sq_migrate_chunk_size). */
static const char sq_schema_blobs[] =
    "CREATE TABLE IF NOT EXISTS " SQ_BLOB_SCHEMA ".blobs("
    " blob_key INTEGER PRIMARY KEY AUTOINCREMENT, bucket INTEGER NOT NULL,"
    " blob_id TEXT NOT NULL, committed INTEGER NOT NULL, size INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL, started_at INTEGER NOT NULL,"
    " chunk_size INTEGER NOT NULL DEFAULT " SQ_LEGACY_CHUNK ");"
    "CREATE UNIQUE INDEX IF NOT EXISTS " SQ_BLOB_SCHEMA ".blobs_committed ON blobs(bucket, blob_id)"
    " WHERE committed = 1;"
    "CREATE INDEX IF NOT EXISTS " SQ_BLOB_SCHEMA ".blobs_uncommitted ON blobs(started_at)"
    " WHERE committed = 0;"
    "CREATE TABLE IF NOT EXISTS " SQ_BLOB_SCHEMA ".blob_chunks("
    " blob_key INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY(blob_key, n));";

/* Import tags: created after sq_migrate_tag has made sure the column exists
 * in files created before tags. */
static const char sq_schema_tags[] =
    "CREATE INDEX IF NOT EXISTS entities_tag ON entities(user_id, tag, kind, entity_id)"
    " WHERE tag IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS stash("
    " user_id TEXT NOT NULL, tag TEXT NOT NULL, kind INTEGER NOT NULL,"
    " entity_id TEXT NOT NULL, prev_tag TEXT, doc BLOB NOT NULL,"
    " PRIMARY KEY(user_id, tag, kind, entity_id));"
    "CREATE TABLE IF NOT EXISTS import_pending("
    " user_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY(user_id, tag));"
    "CREATE TABLE IF NOT EXISTS import_reserve("
    " user_id TEXT NOT NULL, tag TEXT NOT NULL, pad BLOB NOT NULL, PRIMARY KEY(user_id, tag));";

/* Change tracking (docs/STORAGE.md "Change tracking"): created after
 * sq_migrate_seq has added the seq columns to files from before it. */
static const char sq_schema_changes[] =
    "CREATE INDEX IF NOT EXISTS entities_seq ON entities(user_id, kind, seq, entity_id);"
    "CREATE TABLE IF NOT EXISTS change_seq("
    " user_id TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL, wiped INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS deletions("
    " user_id TEXT NOT NULL, kind INTEGER NOT NULL, entity_id TEXT NOT NULL,"
    " seq INTEGER NOT NULL, PRIMARY KEY(user_id, kind, entity_id));";

/* Adds `column` (its SQL definition after the name in `add`) to `table`
 * unless it is there. */
static bool sq_add_column(sqlite3 *db, const char *table, const char *column, const char *add,
                          fzip_error_t *error) {
  char sql[256];
  sqlite3_stmt *probe = NULL;
  int rc;

  snprintf(sql, sizeof sql, "SELECT %s FROM %s LIMIT 0", column, table);
  rc = sqlite3_prepare_v2(db, sql, -1, &probe, NULL);
  sqlite3_finalize(probe);
  if (rc == SQLITE_OK)
    return true;
  snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s", table, column, add);
  return sq_exec(db, sql, error);
}

/* In one writer transaction, like sq_migrate_request.  Documents written
 * before tracking get seq 0; a pending import from before it begin_seq 0. */
static bool sq_migrate_seq(sqlite3 *db, fzip_error_t *error) {
  if (!sq_exec(db, "BEGIN IMMEDIATE", error))
    return false;
  if (sq_add_column(db, "entities", "seq", "INTEGER NOT NULL DEFAULT 0", error) &&
      sq_add_column(db, "stash", "seq", "INTEGER NOT NULL DEFAULT 0", error) &&
      sq_add_column(db, "import_pending", "begin_seq", "INTEGER NOT NULL DEFAULT 0", error) &&
      sq_exec(db, sq_schema_changes, error) && sq_exec(db, "COMMIT", error))
    return true;
  sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return false;
}

/* Blob files from before chunk_size: their blobs were cut every
 * SQ_LEGACY_CHUNK bytes, which the column's default says; under the writer
 * lock, like sq_migrate_seq. */
static bool sq_migrate_chunk_size(sqlite3 *db, fzip_error_t *error) {
  if (!sq_exec(db, "BEGIN IMMEDIATE", error))
    return false;
  if (sq_add_column(db, SQ_BLOBS, "chunk_size", "INTEGER NOT NULL DEFAULT " SQ_LEGACY_CHUNK,
                    error) &&
      sq_exec(db, "COMMIT", error))
    return true;
  sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return false;
}

static bool sq_migrate_tag(sqlite3 *db, fzip_error_t *error) {
  return sq_add_column(db, "entities", "tag", "TEXT", error);
}

/* Request ids (idempotent creates): files created before them get the
 * columns, and every old job its own id as its unique key, so the unique
 * index can be built over old rows (each holds a distinct key). */
static const char sq_schema_request[] =
    "ALTER TABLE jobs ADD COLUMN request_id TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN request_digest TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE jobs ADD COLUMN idem_key TEXT;";
static const char sq_schema_request_index[] =
    "UPDATE jobs SET idem_key = 'j:' || job_id WHERE idem_key IS NULL;"
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_request ON jobs(user_id, kind, idem_key);";

/* In one writer transaction, so two fzipd opening an old file at once
 * cannot both add the columns. */
static bool sq_migrate_request(sqlite3 *db, fzip_error_t *error) {
  sqlite3_stmt *probe = NULL;
  int rc;

  if (!sq_exec(db, "BEGIN IMMEDIATE", error))
    return false;
  rc = sqlite3_prepare_v2(db, "SELECT idem_key FROM jobs LIMIT 0", -1, &probe, NULL);
  sqlite3_finalize(probe);
  if ((rc == SQLITE_OK || sq_exec(db, sq_schema_request, error)) &&
      sq_exec(db, sq_schema_request_index, error) && sq_exec(db, "COMMIT", error))
    return true;
  sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return false;
}

/* *page = PRAGMA schema.page_size (a new file reports the size it will be
 * created with). */
static bool sq_page_size(int64_t *page, sqlite3 *db, const char *schema, fzip_error_t *error) {
  char sql[64];
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok;

  snprintf(sql, sizeof sql, "PRAGMA %s.page_size", schema);
  ok = sq_prepare(&stmt, db, sql, error) &&
       sq_step_row(&row, stmt, db, "reading the page size", error);
  *page = row ? sqlite3_column_int64(stmt, 0) : 0;
  sqlite3_finalize(stmt);
  if (ok && *page <= 0)
    ok = fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INTERNAL,
                        "sqlite: PRAGMA %s.page_size answered no size", schema);
  return ok;
}

/* Asks the checkpointer for the blob file once `limit` frames have come
 * into its WAL since its last checkpoint copied them (a WAL shorter than
 * at the last look was restarted: all of it is new).  Asking at every
 * commit past the interval would start a checkpoint, and its two syncs,
 * per chunk. */
static void sq_ckpt_request(sq_ckpt_t *c, int64_t frames, int64_t limit) {
  pthread_mutex_lock(&c->mu);
  if (frames < c->seen)
    c->copied = 0;
  c->seen = frames;
  if (frames - c->copied >= limit && !c->want && !c->busy) {
    c->want = true;
    pthread_cond_signal(&c->cv);
  }
  pthread_mutex_unlock(&c->mu);
}

/* Checkpoints a file's WAL once it holds its threshold of frames: the main
 * file's from the hook's interval (sq_set_checkpoint), the blob file's
 * fixed.  SQLite's own wal_autocheckpoint has one frame count for every
 * attached file, and 256 MiB of 4 KiB frames would be 4 GiB of 64 KiB ones.
 *
 * The blob file's copy is the checkpointer thread's (sq_ckpt_main), not
 * the committing thread's: a checkpoint writes every page of the interval
 * into the file and syncs it twice, which took an export's upload of its
 * 187 MiB package from ~0.5 s to 1.25-2.25 s (docs/BENCHMARKS.md, run W)
 * while the other core had nothing to do.  A blob WAL past
 * SQ_BLOB_WAL_INLINE_BYTES is checkpointed here, as before, so that a
 * checkpointer that lags cannot let it grow unbounded; so is every blob
 * WAL before the thread has started (the open's migrations).  The main file's stays here: an import's restore, the one
 * heavy writer of the main file, keeps the other core busy with the
 * package's inflate and hash, and the same move there (run W, asking at
 * every commit past the interval) took the import floor's puts from 22 to
 * 15.5 s but not the import (41.5 s either way, 11 s more CPU). */
static int sq_wal_hook(void *arg, sqlite3 *db, const char *schema, int frames) {
  const sq_hook_t *h = arg;
  sq_store_t *s = h->s;
  bool blobs = strcmp(schema, SQ_BLOB_SCHEMA) == 0;
  int64_t page = blobs ? SQ_BLOB_PAGE_SIZE : s->main_page;
  int64_t limit = (blobs ? SQ_BLOB_WAL_CHECKPOINT_BYTES : h->bytes) / page;

  if (frames < limit)
    return SQLITE_OK;
  if (blobs && s->ckpt.running && frames < SQ_BLOB_WAL_INLINE_BYTES / page) {
    sq_ckpt_request(&s->ckpt, frames, limit);
    return SQLITE_OK;
  }
  sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  return SQLITE_OK;
}

/* The main file checkpoints after the store's normal interval, or after
 * the shorter one of a batch that looks its ids up (`lookup`). */
static void sq_set_checkpoint(sqlite3 *db, sq_store_t *s, bool lookup) {
  sqlite3_wal_hook(db, sq_wal_hook, lookup ? &s->hook_lookup : &s->hook_write);
}

/* PASSIVE: copies what no reader still needs and never waits for a lock,
 * so it runs beside the writers; what it leaves is copied next time. */
static void *sq_ckpt_main(void *arg) {
  sq_store_t *s = arg;
  sq_ckpt_t *c = &s->ckpt;

  pthread_mutex_lock(&c->mu);
  for (;;) {
    int log = 0, copied = 0;
    while (!c->want && !c->stop)
      pthread_cond_wait(&c->cv, &c->mu);
    if (c->stop)
      break;
    c->want = false;
    c->busy = true;
    pthread_mutex_unlock(&c->mu);
    sqlite3_wal_checkpoint_v2(c->db, SQ_BLOB_SCHEMA, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    sqlite3_db_release_memory(c->db);
    pthread_mutex_lock(&c->mu);
    if (copied > c->copied)
      c->copied = copied;
    c->busy = false;
  }
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* Attaches the blob file with its settings; a store capped at max_pages
 * pages of the main file caps the blob file at as many bytes. */
static bool sq_attach_blobs(sqlite3 *db, const sq_store_t *s, fzip_error_t *error) {
  int64_t page = 0;
  bool ok = sq_exec_args(NULL, db, "ATTACH DATABASE ? AS " SQ_BLOB_SCHEMA,
                         (const sq_arg_t[]){SQ_TEXT(s->blob_path), SQ_END},
                         "attaching the blob file", error) &&
            sq_pragma(db, SQ_BLOB_SCHEMA ".page_size", SQ_BLOB_PAGE_SIZE, error) &&
            sq_exec(db, "PRAGMA " SQ_BLOB_SCHEMA ".synchronous=NORMAL", error) &&
            sq_pragma(db, SQ_BLOB_SCHEMA ".cache_size", -SQ_BLOB_CACHE_KIB, error);

  if (ok && s->max_pages > 0) {
    int64_t blob_page = 0;
    ok = sq_page_size(&page, db, "main", error) &&
         sq_page_size(&blob_page, db, SQ_BLOB_SCHEMA, error) &&
         sq_pragma(db, SQ_BLOB_SCHEMA ".max_page_count",
                   (s->max_pages * page + blob_page - 1) / blob_page, error);
  }
  return ok;
}

/* No bulk allocation of page cache at a connection's first transaction:
 * by default SQLite allocates min(20 pages, the cache's size) at once per
 * attached file, and a transaction begins on every one, so each pooled
 * connection took ~1 MiB for the blob file's 64 KiB pages (the whole
 * SQ_BLOB_CACHE_KIB) whether it touched a blob or not (heaptrack, an
 * import of 1M transactions: four connections, 3.9 MiB).  Pages are then
 * allocated as they are used.  sqlite3_config only works before SQLite is
 * initialized: once, before the first open (a process whose SQLite
 * someone else initialized keeps the default, which is only memory). */
static pthread_once_t sq_library_once = PTHREAD_ONCE_INIT;

static void sq_configure_library(void) {
  (void)sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
}

static bool sq_connect(sqlite3 **out, sq_store_t *s, fzip_error_t *error) {
  sqlite3 *db = NULL;
  int busy_ms = s->base.options.retry_budget_ms / 2;
  int rc;

  pthread_once(&sq_library_once, sq_configure_library);
  rc = sqlite3_open_v2(s->path, &db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_UNAVAILABLE,
                   "sqlite: cannot open store file %s: %s", s->path,
                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return false;
  }
  sqlite3_busy_timeout(db, busy_ms > 0 ? busy_ms : 1);
  /* page_size only takes effect on a file not yet created.  synchronous=
   * NORMAL in WAL mode: a commit survives a process crash; only a power
   * loss may drop the last transactions, never corrupt the file. */
  if (!sq_pragma(db, "page_size", SQ_PAGE_SIZE, error) || !sq_attach_blobs(db, s, error) ||
      !sq_exec(db, "PRAGMA synchronous=NORMAL", error) ||
      !sq_pragma(db, "cache_size", -SQ_CACHE_KIB, error) ||
      (s->max_pages > 0 && !sq_pragma(db, "max_page_count", s->max_pages, error))) {
    sqlite3_close(db);
    return fzip_error_prefix(error, "cannot open store file %s", s->path);
  }
  sq_set_checkpoint(db, s, false);
  *out = db;
  return true;
}

/* *exists = main has table `name`. */
static bool sq_main_has_table(bool *exists, sqlite3 *db, const char *name, fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool ok = sq_prepare_args(&stmt, db,
                            "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?",
                            (const sq_arg_t[]){SQ_TEXT(name), SQ_END}, error) &&
            sq_step_row(exists, stmt, db, "reading the schema", error);
  sqlite3_finalize(stmt);
  return ok;
}

/* Files from before the blob file kept their blobs in main.blobs and
 * main.blob_chunks.  They are copied into the blob file in one
 * transaction and dropped from main in the next: a transaction over two
 * WAL files is atomic in each file but not across them, so the copy must
 * be committed before the originals go.  A crash between the two copies
 * again (OR IGNORE keeps what arrived) and then drops; each step checks
 * under the writer lock, so two fzipd opening the file at once do it
 * once. */
static bool sq_migrate_blobs(sqlite3 *db, fzip_error_t *error) {
  bool old = false;
  static const char *const steps[] = {
      "INSERT OR IGNORE INTO " SQ_BLOBS "(blob_key, bucket, blob_id, committed, size, sha256,"
      " started_at) SELECT blob_key, bucket, blob_id, committed, size, sha256, started_at"
      " FROM main.blobs;"
      "INSERT OR IGNORE INTO " SQ_CHUNKS " SELECT blob_key, n, data FROM main.blob_chunks;",
      "DROP TABLE main.blob_chunks; DROP TABLE main.blobs;"};
  /* Every open asks; only an old file takes the writer lock. */
  if (!sq_main_has_table(&old, db, "blob_chunks", error))
    return false;
  for (size_t i = 0; old && i < sizeof steps / sizeof steps[0]; i++) {
    bool exists = false;
    if (!sq_exec(db, "BEGIN IMMEDIATE", error))
      return false;
    if (!sq_main_has_table(&exists, db, "blob_chunks", error) ||
        (exists && !sq_exec(db, steps[i], error)) || !sq_exec(db, "COMMIT", error)) {
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
      return false;
    }
  }
  return true;
}

/* Switches both files to WAL (the pragma without a schema sets every
 * attached file) and creates or updates the schema, once per open. */
static bool sq_init_file(sqlite3 *db, const char *path, fzip_error_t *error) {
  if (!sq_exec(db, "PRAGMA journal_mode=WAL", error) || !sq_exec(db, sq_schema, error) ||
      !sq_exec(db, sq_schema_dropped, error) || !sq_exec(db, sq_schema_blobs, error) ||
      !sq_migrate_chunk_size(db, error) || !sq_migrate_blobs(db, error) ||
      !sq_migrate_tag(db, error) ||
      !sq_exec(db, sq_schema_tags, error) ||
      !sq_migrate_request(db, error) || !sq_migrate_seq(db, error))
    return fzip_error_prefix(error, "cannot open store file %s", path);
  return true;
}

static bool sq_pool_get(sqlite3 **out, sq_store_t *s, fzip_error_t *error) {
  pthread_mutex_lock(&s->mu);
  while (s->n_idle == 0 && s->n_open == SQ_POOL_MAX)
    pthread_cond_wait(&s->cv, &s->mu);
  if (s->n_idle > 0) {
    *out = s->idle[--s->n_idle];
    pthread_mutex_unlock(&s->mu);
    return true;
  }
  s->n_open++;
  pthread_mutex_unlock(&s->mu);
  if (sq_connect(out, s, error))
    return true;
  pthread_mutex_lock(&s->mu);
  s->n_open--;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return false;
}

static void sq_pool_put(sq_store_t *s, sqlite3 *db) {
  pthread_mutex_lock(&s->mu);
  s->idle[s->n_idle++] = db;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Runs `fn` on a pooled connection; a failed fn has its transaction rolled
 * back, and transient failures are retried until the retry budget is spent.
 * fn must be safe to run again from the start (it writes its results to its
 * context only once it has succeeded). */
static bool sq_run(sq_store_t *s, sq_op_fn fn, void *ctx, fzip_error_t *error) {
  int64_t deadline = fzip_monotonic_ms() + s->base.options.retry_budget_ms;
  int backoff = SQ_BACKOFF_START_MS;

  /* A snapshot view reads on its own connection inside its one read
   * transaction, which must survive a failed read: no rollback, no retry
   * (a WAL reader never waits for a lock). */
  if (s->snap)
    return fn(s->snap, ctx, error);
  for (;;) {
    sqlite3 *db = NULL;
    fzip_error_t local = {0};
    bool ok;

    if (!sq_pool_get(&db, s, error))
      return false;
    ok = fn(db, ctx, &local);
    if (!ok && !sqlite3_get_autocommit(db))
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sq_pool_put(s, db);
    if (ok)
      return true;
    if (local.code != FZIP_ERR_UNAVAILABLE || fzip_monotonic_ms() + backoff > deadline) {
      *error = local;
      return false;
    }
    fzip_sleep_ms(backoff);
    backoff = backoff * 2 > SQ_BACKOFF_MAX_MS ? SQ_BACKOFF_MAX_MS : backoff * 2;
  }
}

typedef struct {
  sq_op_fn fn;
  void *ctx;
} sq_txn_t;

static bool op_in_txn(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_txn_t *txn = vctx;
  /* Failpoint store.sqlite_commit: a COMMIT failing after fn wrote its
   * results to ctx (storage.claim_commit_failure.sqlite). */
  return sq_exec(db, "BEGIN IMMEDIATE", error) && txn->fn(db, txn->ctx, error) &&
         fzip_failpoint("store.sqlite_commit", error) && sq_exec(db, "COMMIT", error);
}

/* sq_run with `fn` inside one BEGIN IMMEDIATE ... COMMIT, for writes that
 * must be all-or-nothing (sq_run rolls a failed one back and retries it). */
static bool sq_run_txn(sq_store_t *s, sq_op_fn fn, void *ctx, fzip_error_t *error) {
  sq_txn_t txn = {fn, ctx};
  return sq_run(s, op_in_txn, &txn, error);
}

/* A snapshot view's connection is inside its read transaction already. */
static bool op_in_read(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_txn_t *txn = vctx;
  if (!sqlite3_get_autocommit(db))
    return txn->fn(db, txn->ctx, error);
  return sq_exec(db, "BEGIN", error) && txn->fn(db, txn->ctx, error) &&
         sq_exec(db, "COMMIT", error);
}

/* sq_run with `fn` inside one read transaction, so that its several reads
 * answer from one snapshot; fn finalizes its statements before it returns. */
static bool sq_run_read(sq_store_t *s, sq_op_fn fn, void *ctx, fzip_error_t *error) {
  sq_txn_t txn = {fn, ctx};
  return sq_run(s, op_in_read, &txn, error);
}

/* What every sq_store_t (a store, a snapshot view) sets up first. */
static void sq_store_init(sq_store_t *s) {
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->ckpt.mu, NULL);
  pthread_cond_init(&s->ckpt.cv, NULL);
  s->hook_write = (sq_hook_t){s, SQ_WAL_CHECKPOINT_BYTES};
  s->hook_lookup = (sq_hook_t){s, SQ_WAL_CHECKPOINT_LOOKUP_BYTES};
}

/* The checkpointer's connection and thread (sq_wal_hook); started last,
 * once the file is set up. */
static bool sq_ckpt_start(sq_store_t *s, fzip_error_t *error) {
  if (!sq_connect(&s->ckpt.db, s, error))
    return false;
  if (pthread_create(&s->ckpt.thread, NULL, sq_ckpt_main, s) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                          "sqlite: cannot start the checkpointer thread");
  s->ckpt.running = true;
  return true;
}

static void sq_ckpt_stop(sq_store_t *s) {
  if (s->ckpt.running) {
    pthread_mutex_lock(&s->ckpt.mu);
    s->ckpt.stop = true;
    pthread_cond_signal(&s->ckpt.cv);
    pthread_mutex_unlock(&s->ckpt.mu);
    pthread_join(s->ckpt.thread, NULL);
    s->ckpt.running = false;
  }
  sqlite3_close(s->ckpt.db);
  s->ckpt.db = NULL;
}

bool store_sqlite_open(store_t **out, const store_options_t *options, const char *path,
                       fzip_error_t *error) {
  sq_store_t *s = bson_malloc0(sizeof *s);
  sqlite3 *db = NULL;
  bool ok = false;

  s->base.vt = &sq_vtable;
  s->base.options = *options;
  s->base.options.uri = NULL;
  s->base.options.database = NULL;
  s->path = bson_strdup(path);
  {
    /* "sqlite:PATH?max_pages=N" caps the file (PRAGMA max_page_count): a
     * store that must not fill its disk, and the tests' full store. */
    char *q = strstr(s->path, SQ_MAX_PAGES_PARAM);
    if (q) {
      char *end = NULL;
      long long n = strtoll(q + strlen(SQ_MAX_PAGES_PARAM), &end, 10);
      if (n <= 0 || !end || *end) {
        fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                       "sqlite: bad max_pages in store URI (want sqlite:PATH?max_pages=N)");
        bson_free(s->path);
        bson_free(s);
        return false;
      }
      s->max_pages = n;
      *q = '\0';
    }
  }
  path = s->path;
  s->blob_path = bson_strdup_printf("%s%s", path, SQ_BLOB_FILE_SUFFIX);
  sq_store_init(s);
  /* The page size before the first commit (the migrations'), which the
   * WAL hook measures in it. */
  if (!sq_connect(&db, s, error) || !sq_page_size(&s->main_page, db, "main", error))
    goto done;
  if (!sq_init_file(db, path, error) || !sq_ckpt_start(s, error))
    goto done;
  s->idle[s->n_idle++] = db;
  s->n_open = 1;
  db = NULL;
  *out = &s->base;
  s = NULL;
  ok = true;
done:
  sqlite3_close(db);
  if (s)
    s->base.vt->destroy(&s->base);
  return ok;
}

static void sq_destroy(store_t *store) {
  sq_store_t *s = (sq_store_t *)store;
  sq_ckpt_stop(s);
  for (size_t i = 0; i < s->n_idle; i++)
    sqlite3_close(s->idle[i]);
  if (s->snap) {
    sqlite3_exec(s->snap, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(s->snap);
  }
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->ckpt.mu);
  pthread_cond_destroy(&s->ckpt.cv);
  bson_free(s->path);
  bson_free(s->blob_path);
  bson_free(s);
}

/* A local file answers at once or not at all: timeout_ms has nothing to
 * bound here.  Reading the schema touches the file without a lock a writer
 * could hold. */
static bool sq_ping(store_t *store, int timeout_ms, fzip_error_t *error) {
  sq_store_t *s = (sq_store_t *)store;
  sqlite3 *db = NULL;
  bool ok;

  if (s->snap)
    return sq_exec(s->snap, "SELECT count(*) FROM sqlite_master", error);
  if (!sq_pool_get(&db, s, error))
    return false;
  ok = sq_exec(db, "SELECT count(*) FROM sqlite_master", error);
  sq_pool_put(s, db);
  return ok;
}

/* Connections in the pool are idle: nobody else may use them while the
 * pool's lock is held.  A busy one keeps its cache (it is in use). */
static void sq_release_memory(store_t *store) {
  sq_store_t *s = (sq_store_t *)store;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n_idle; i++)
    sqlite3_db_release_memory(s->idle[i]);
  pthread_mutex_unlock(&s->mu);
}

/* ---- change sequence numbers --------------------------------------------- */

/* The numbers one write transaction hands out: read from change_seq at its
 * start, written back once at its end, so the documents and the counter
 * commit together (BEGIN IMMEDIATE: no other writer in between). */
typedef struct {
  const char *user_id;
  uint64_t start; /* the user's last number when the transaction began */
  uint64_t last;  /* the last number handed out */
  uint64_t wiped;
} sq_seq_t;

static bool sq_seq_begin(sq_seq_t *q, sqlite3 *db, const char *user_id, fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok;

  memset(q, 0, sizeof *q);
  q->user_id = user_id;
  ok = sq_prepare_args(&stmt, db, "SELECT seq, wiped FROM change_seq WHERE user_id = ?",
                       (const sq_arg_t[]){SQ_TEXT(user_id), SQ_END}, error) &&
       sq_step_row(&row, stmt, db, "reading the change seq", error);
  if (ok && row) {
    q->start = q->last = (uint64_t)sqlite3_column_int64(stmt, 0);
    q->wiped = (uint64_t)sqlite3_column_int64(stmt, 1);
  }
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_seq_end(const sq_seq_t *q, sqlite3 *db, fzip_error_t *error) {
  if (q->last == q->start)
    return true;
  return sq_exec_args(NULL, db,
                      "INSERT INTO change_seq(user_id, seq, wiped) VALUES (?1, ?2, ?3)"
                      " ON CONFLICT(user_id) DO UPDATE SET seq = excluded.seq,"
                      " wiped = excluded.wiped",
                      (const sq_arg_t[]){SQ_TEXT(q->user_id), SQ_INT(q->last), SQ_INT(q->wiped),
                                         SQ_END},
                      "writing the change seq", error);
}

#define SQ_NOTE_DELETION_SQL \
  "INSERT OR REPLACE INTO deletions(user_id, kind, entity_id, seq) VALUES (?1, ?2, ?3, ?4)"

/* Records that (kind, id) was deleted, under the next number. */
static bool sq_note_deletion(sqlite3_stmt *note, sqlite3 *db, sq_seq_t *q, int kind,
                             const char *id, fzip_error_t *error) {
  return sq_step_args(NULL, note, db,
                      (const sq_arg_t[]){SQ_TEXT(q->user_id), SQ_INT(kind), SQ_TEXT(id),
                                         SQ_INT(++q->last), SQ_END},
                      "recording a deletion", error);
}

/* ---- entities: filters --------------------------------------------------- */

/* The WHERE clause of a cursor page or a count, built and bound in the
 * same order so placeholders stay plain "?". */
typedef struct {
  const char *user_id;
  int kind;
  const char *after_id;
  const store_filter_t *filter;
  bool seq_unindexed; /* changed_after without the seq index (a scan in id order) */
} sq_where_t;

/* Appends s; once the buffer is full *len stays past cap and nothing more
 * is written, so the caller checks once at the end. */
static void sq_append(char *sql, size_t cap, size_t *len, const char *s) {
  size_t n = strlen(s);
  if (*len + n < cap)
    memcpy(sql + *len, s, n + 1);
  *len += n;
}

static bool sq_where_sql(char *sql, size_t cap, const char *head, const sq_where_t *w,
                         const char *tail, fzip_error_t *error) {
  const store_filter_t *f = w->filter;
  size_t len = 0;

  sql[0] = '\0';
  sq_append(sql, cap, &len, head);
  sq_append(sql, cap, &len, " WHERE user_id = ? AND kind = ?");
  if (w->after_id)
    sq_append(sql, cap, &len, " AND entity_id > ?");
  if (f && f->n_account_ids > 0) {
    sq_append(sql, cap, &len, " AND account_id IN (?");
    for (size_t i = 1; i < f->n_account_ids; i++)
      sq_append(sql, cap, &len, ",?");
    sq_append(sql, cap, &len, ")");
  }
  if (f && f->has_date_from)
    sq_append(sql, cap, &len, " AND date >= ?");
  if (f && f->has_date_to)
    sq_append(sql, cap, &len, " AND date <= ?");
  if (f && f->changed_after > 0)
    sq_append(sql, cap, &len, w->seq_unindexed ? " AND +seq > ?" : " AND seq > ?");
  sq_append(sql, cap, &len, tail);
  if (len >= cap)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INTERNAL,
                          "sqlite: generated query longer than SQ_SQL_MAX");
  return true;
}

static int sq_where_bind(sqlite3_stmt *stmt, const sq_where_t *w) {
  const store_filter_t *f = w->filter;
  int i = 1;
  sq_bind_text(stmt, i++, w->user_id);
  sqlite3_bind_int(stmt, i++, w->kind);
  if (w->after_id)
    sq_bind_text(stmt, i++, w->after_id);
  for (size_t k = 0; f && k < f->n_account_ids; k++)
    sq_bind_text(stmt, i++, f->account_ids[k]);
  if (f && f->has_date_from)
    sqlite3_bind_int64(stmt, i++, f->date_from);
  if (f && f->has_date_to)
    sqlite3_bind_int64(stmt, i++, f->date_to);
  if (f && f->changed_after > 0)
    sqlite3_bind_int64(stmt, i++, (int64_t)f->changed_after);
  return i; /* next free placeholder */
}

/* ---- entities: cursor ---------------------------------------------------- */

/* How a changed_after cursor reads (SQ_CHANGED_SPARSE_MAX). */
typedef enum { SQ_CHANGED_UNKNOWN = 0, SQ_CHANGED_SPARSE, SQ_CHANGED_DENSE } sq_changed_mode_t;

typedef struct {
  store_cursor_t base;
  sq_store_t *s;
  store_pager_t pg;
  sq_changed_mode_t changed;
} sq_cursor_t;

static void sq_cursor_destroy(store_cursor_t *cursor) {
  sq_cursor_t *c = (sq_cursor_t *)cursor;
  store_pager_fini(&c->pg);
  bson_free(c);
}

static bool sq_cursor_new(store_cursor_t **out, store_t *store, const char *user_id,
                          fzip_kind_t kind, const store_filter_t *filter, fzip_error_t *error) {
  sq_cursor_t *c = bson_malloc0(sizeof *c);
  (void)error;
  c->base.vt = &sq_vtable;
  c->s = (sq_store_t *)store;
  store_pager_init(&c->pg, user_id, kind, filter, SQ_CURSOR_PAGE_ROWS);
  *out = &c->base;
  return true;
}

typedef struct {
  store_pager_t *pg;
  int64_t want; /* rows asked for this page */
  bool cut;     /* the page stopped at SQ_CURSOR_PAGE_BYTES, not at the end */
  sq_changed_mode_t changed;
} sq_page_ctx_t;

/* Sparse when the kind has at most SQ_CHANGED_SPARSE_MAX documents changed
 * after the cursor's number: counted on the seq index, up to one more. */
static bool op_changed_mode(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_page_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok;

  ok = sq_prepare_args(&stmt, db,
                       "SELECT count(*) FROM (SELECT 1 FROM entities INDEXED BY entities_seq"
                       " WHERE user_id = ? AND kind = ? AND seq > ? LIMIT ?)",
                       (const sq_arg_t[]){SQ_TEXT(ctx->pg->user_id), SQ_INT(ctx->pg->kind),
                                          SQ_INT(ctx->pg->filter.changed_after),
                                          SQ_INT(SQ_CHANGED_SPARSE_MAX + 1), SQ_END},
                       error) &&
       sq_step_row(&row, stmt, db, "counting changed entities", error);
  if (ok)
    ctx->changed = row && sqlite3_column_int64(stmt, 0) <= SQ_CHANGED_SPARSE_MAX
                       ? SQ_CHANGED_SPARSE
                       : SQ_CHANGED_DENSE;
  sqlite3_finalize(stmt);
  return ok;
}

static bool op_cursor_page(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_page_ctx_t *ctx = vctx;
  store_pager_t *pg = ctx->pg;
  sq_where_t w = {pg->user_id, (int)pg->kind, pg->has_after ? pg->after_id : NULL, &pg->filter,
                  ctx->changed == SQ_CHANGED_DENSE};
  bool sparse = ctx->changed == SQ_CHANGED_SPARSE;
  char sql[SQ_SQL_MAX];
  sqlite3_stmt *stmt = NULL;
  size_t bytes = 0;
  bool ok = false;
  int rc = SQLITE_DONE;

  store_pager_clear(pg);
  ctx->cut = false;
  /* Sparse: the page's rowids from the seq index (the changed documents
   * only, sorted there), then their rows. */
  if (!sq_where_sql(sql, sizeof sql,
                    sparse ? "SELECT entity_id, doc, tag FROM entities WHERE rowid IN"
                             " (SELECT rowid FROM entities INDEXED BY entities_seq"
                           : "SELECT entity_id, doc, tag FROM entities",
                    &w,
                    sparse ? " ORDER BY entity_id LIMIT ?) ORDER BY entity_id"
                           : " ORDER BY entity_id LIMIT ?",
                    error) ||
      !sq_prepare(&stmt, db, sql, error))
    goto done;
  sqlite3_bind_int64(stmt, sq_where_bind(stmt, &w), ctx->want);
  while (bytes < SQ_CURSOR_PAGE_BYTES && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    bson_t *doc = sq_column_doc(stmt, 1);
    if (!doc) {
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                     "sqlite: entity %s holds an invalid document",
                     (const char *)sqlite3_column_text(stmt, 0));
      goto done;
    }
    store_pager_add(pg, doc, (const char *)sqlite3_column_text(stmt, 2));
    bytes += doc->len;
  }
  ctx->cut = bytes >= SQ_CURSOR_PAGE_BYTES;
  if (!ctx->cut && rc != SQLITE_DONE) {
    sq_fail(error, db, rc, "reading entities");
    goto done;
  }
  ok = true;
done:
  sqlite3_finalize(stmt);
  if (!ok)
    store_pager_clear(pg);
  return ok;
}

static bool sq_cursor_next(store_cursor_t *cursor, const bson_t **doc, const char **tag,
                           fzip_error_t *error) {
  sq_cursor_t *c = (sq_cursor_t *)cursor;
  store_pager_t *pg = &c->pg;
  sq_page_ctx_t ctx = {pg, SQ_CURSOR_PAGE_ROWS, false, c->changed};

  *doc = store_pager_next(pg, tag);
  if (*doc)
    return true;
  if (pg->exhausted || (pg->has_limit && pg->remaining == 0))
    return false;
  if (pg->filter.changed_after > 0 && c->changed == SQ_CHANGED_UNKNOWN) {
    if (!sq_run(c->s, op_changed_mode, &ctx, error))
      return false;
    c->changed = ctx.changed;
  }
  if (pg->has_limit && pg->remaining < (uint64_t)ctx.want)
    ctx.want = (int64_t)pg->remaining;
  if (!sq_run(c->s, op_cursor_page, &ctx, error))
    return false;
  /* The limit counts rows as they are read: the backend filters itself. */
  if (!ctx.cut && (int64_t)pg->n < ctx.want)
    pg->exhausted = true;
  if (pg->has_limit)
    pg->remaining -= pg->n;
  store_pager_advance(pg);
  *doc = store_pager_next(pg, tag);
  return *doc != NULL;
}

/* ---- entities: reads ----------------------------------------------------- */

typedef struct {
  sq_where_t w;
  uint64_t count;
} sq_count_ctx_t;

static bool op_count(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_count_ctx_t *ctx = vctx;
  char sql[SQ_SQL_MAX];
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok = false;

  if (!sq_where_sql(sql, sizeof sql, "SELECT count(*) FROM entities", &ctx->w, "", error) ||
      !sq_prepare(&stmt, db, sql, error))
    goto done;
  sq_where_bind(stmt, &ctx->w);
  if (!sq_step_row(&row, stmt, db, "counting entities", error))
    goto done;
  ctx->count = row ? (uint64_t)sqlite3_column_int64(stmt, 0) : 0;
  ok = true;
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_entity_count(uint64_t *out, store_t *store, const char *user_id,
                            fzip_kind_t kind, const store_filter_t *filter, fzip_error_t *error) {
  sq_count_ctx_t ctx = {{user_id, (int)kind, filter ? filter->after_id : NULL, filter, false},
                        0};
  if (!sq_run((sq_store_t *)store, op_count, &ctx, error))
    return false;
  *out = filter && filter->limit > 0 && ctx.count > filter->limit ? filter->limit : ctx.count;
  return true;
}

typedef struct {
  const char *user_id;
  int kind;
  const char *id;
  bson_t *doc;
  char tag[STORE_TAG_MAX + 1];
} sq_get_ctx_t;

static bool op_entity_get(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_get_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok = false;

  if (!sq_prepare_args(&stmt, db,
                       "SELECT doc, tag FROM entities WHERE user_id = ? AND kind = ?"
                       " AND entity_id = ?",
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(ctx->kind),
                                          SQ_TEXT(ctx->id), SQ_END},
                       error) ||
      !sq_step_row(&row, stmt, db, "reading entity", error))
    goto done;
  if (!row) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "entity %s not found", ctx->id);
    goto done;
  }
  ctx->doc = sq_column_doc(stmt, 0);
  sq_copy_text(ctx->tag, sizeof ctx->tag, stmt, 1);
  if (!ctx->doc) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                   "sqlite: entity %s holds an invalid document", ctx->id);
    goto done;
  }
  ok = true;
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_entity_get(bson_t **out, char tag[STORE_TAG_MAX + 1], store_t *store,
                          const char *user_id, fzip_kind_t kind, const char *id,
                          fzip_error_t *error) {
  sq_get_ctx_t ctx = {user_id, (int)kind, id, NULL, ""};
  if (!sq_run((sq_store_t *)store, op_entity_get, &ctx, error))
    return false;
  *out = ctx.doc;
  if (tag)
    memcpy(tag, ctx.tag, sizeof ctx.tag);
  return true;
}

typedef struct {
  const char *user_id;
  int kind;
  const char *const *ids;
  size_t n;
  bool *exists;
  uint64_t deleted;
} sq_ids_ctx_t;

static bool sq_exists_one(bool *exists, sqlite3_stmt *stmt, sqlite3 *db, const char *id,
                          fzip_error_t *error) {
  sqlite3_reset(stmt);
  sq_bind_text(stmt, 3, id);
  return sq_step_row(exists, stmt, db, "checking entity", error);
}

static bool sq_prepare_exists(sqlite3_stmt **stmt, sqlite3 *db, const char *user_id, int kind,
                              fzip_error_t *error) {
  /* ?3, the id, is bound per lookup by sq_exists_one. */
  return sq_prepare_args(stmt, db,
                         "SELECT 1 FROM entities WHERE user_id = ? AND kind = ? AND entity_id = ?",
                         (const sq_arg_t[]){SQ_TEXT(user_id), SQ_INT(kind), SQ_END}, error);
}

/* In one read transaction (sq_run_read): the answers are one snapshot. */
static bool op_exists_many(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_ids_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  bool ok = sq_prepare_exists(&stmt, db, ctx->user_id, ctx->kind, error);

  for (size_t i = 0; ok && i < ctx->n; i++)
    ok = sq_exists_one(&ctx->exists[i], stmt, db, ctx->ids[i], error);
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_entity_exists_many(bool *exists, store_t *store, const char *user_id,
                                  fzip_kind_t kind, const char *const *ids, size_t n,
                                  fzip_error_t *error) {
  sq_ids_ctx_t ctx = {user_id, (int)kind, ids, n, exists, 0};
  return sq_run_read((sq_store_t *)store, op_exists_many, &ctx, error);
}

typedef struct {
  const char *user_id;
  int kind;
  const char *const *ids;
  size_t n;
  bson_t **docs;
  char (*tags)[STORE_TAG_MAX + 1];
} sq_get_many_ctx_t;

static bool op_get_many(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_get_many_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  bool ok = false;

  /* One read transaction (sq_run_read), one snapshot, as op_exists_many;
   * a retry of the whole op starts from nothing. */
  for (size_t i = 0; i < ctx->n; i++) {
    bson_destroy(ctx->docs[i]);
    ctx->docs[i] = NULL;
  }
  if (!sq_prepare_args(&stmt, db,
                       "SELECT doc, tag FROM entities WHERE user_id = ? AND kind = ?"
                       " AND entity_id = ?",
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(ctx->kind), SQ_END},
                       error))
    goto done;
  for (size_t i = 0; i < ctx->n; i++) {
    bool row = false;
    sqlite3_reset(stmt);
    sq_bind_text(stmt, 3, ctx->ids[i]);
    if (!sq_step_row(&row, stmt, db, "reading entities", error))
      goto done;
    ctx->tags[i][0] = '\0';
    if (!row)
      continue;
    if (!(ctx->docs[i] = sq_column_doc(stmt, 0))) {
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                     "sqlite: entity %s holds an invalid document", ctx->ids[i]);
      goto done;
    }
    sq_copy_text(ctx->tags[i], sizeof ctx->tags[i], stmt, 1);
  }
  ok = true;
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_entity_get_many(bson_t **docs, char (*tags)[STORE_TAG_MAX + 1], store_t *store,
                               const char *user_id, fzip_kind_t kind, const char *const *ids,
                               size_t n, fzip_error_t *error) {
  sq_get_many_ctx_t ctx = {user_id, (int)kind, ids, n, docs, tags};
  if (sq_run_read((sq_store_t *)store, op_get_many, &ctx, error))
    return true;
  for (size_t i = 0; i < n; i++) {
    bson_destroy(docs[i]);
    docs[i] = NULL;
  }
  return false;
}

/* ---- entities: writes ---------------------------------------------------- */

typedef struct {
  const char *user_id;
  int kind;
  const bson_t *const *docs;
  const char *const *ids;
  size_t n;
  store_write_mode_t mode;
  const char *tag;             /* import tag, NULL for plain writes */
  store_write_result_t result; /* this batch only; added to the caller's on success */
  sq_store_t *s;               /* for its checkpoint intervals (op_put_bulk) */
} sq_put_ctx_t;

/* Binds ?4 = account, ?5 = date (copied out of the document, NULL when
 * absent) and ?6 = the document. */
static void sq_bind_doc(sqlite3_stmt *stmt, int kind, const bson_t *doc) {
  const fzip_kind_info_t *info = fzip_kind_info((fzip_kind_t)kind);
  bson_iter_t it;

  if (info->account_field && bson_iter_init_find(&it, doc, info->account_field) &&
      BSON_ITER_HOLDS_UTF8(&it))
    sq_bind_text(stmt, 4, bson_iter_utf8(&it, NULL));
  if (info->date_field && bson_iter_init_find(&it, doc, info->date_field) &&
      (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it) ||
       BSON_ITER_HOLDS_DATE_TIME(&it)))
    sqlite3_bind_int64(stmt, 5,
                       BSON_ITER_HOLDS_DATE_TIME(&it) ? bson_iter_date_time(&it)
                                                      : bson_iter_as_int64(&it));
  sqlite3_bind_blob(stmt, 6, bson_get_data(doc), (int)doc->len, SQLITE_STATIC);
}

/* Binds ?1..?7 = user, kind, id, account, date, doc, tag for INSERT and
 * UPDATE alike. */
static void sq_bind_entity(sqlite3_stmt *stmt, const sq_put_ctx_t *ctx, size_t i) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  sq_bind_text(stmt, 1, ctx->user_id);
  sqlite3_bind_int(stmt, 2, ctx->kind);
  sq_bind_text(stmt, 3, ctx->ids[i]);
  sq_bind_doc(stmt, ctx->kind, ctx->docs[i]);
  sq_bind_text(stmt, 7, ctx->tag);
}

/* Keeps the version a tagged write is about to replace, once per tag, and
 * never a version this same import wrote (that one is not "from before"). */
static bool sq_stash(sqlite3_stmt *stmt, sqlite3 *db, const sq_put_ctx_t *ctx, size_t i,
                     fzip_error_t *error) {
  return sq_step_args(NULL, stmt, db,
                      (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(ctx->kind),
                                         SQ_TEXT(ctx->ids[i]), SQ_TEXT(ctx->tag), SQ_END},
                      "stashing entity", error);
}

/* Steps the INSERT or UPDATE of ids[i].  An INSERT of an id that is there
 * fails on the primary key: ALREADY_EXISTS naming it.  The documents are
 * written in batch order, so that is the batch's first existing id, and
 * the failed transaction is rolled back: nothing of the batch is written
 * (without a lookup of every id first). */
static bool sq_step_entity(sqlite3_stmt *stmt, sqlite3 *db, const char *id, fzip_error_t *error) {
  int rc = sqlite3_step(stmt);
  int ext = sqlite3_extended_errcode(db);

  if (rc == SQLITE_DONE)
    return true;
  if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS,
                          "entity %s already exists; nothing of the batch was written", id);
  return sq_fail(error, db, rc, "writing entity");
}

static bool op_put_batch(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_put_ctx_t *ctx = vctx;
  sqlite3_stmt *exists = NULL, *insert = NULL, *update = NULL, *stash = NULL;
  bool lookup = ctx->mode != STORE_WRITE_INSERT; /* an INSERT relies on the key */
  sq_seq_t seq;
  bool ok = false;

  memset(&ctx->result, 0, sizeof ctx->result);
  if (!sq_seq_begin(&seq, db, ctx->user_id, error) ||
      (lookup && !sq_prepare_exists(&exists, db, ctx->user_id, ctx->kind, error)) ||
      !sq_prepare(&insert, db,
                  "INSERT INTO entities(user_id, kind, entity_id, account_id, date, doc, tag,"
                  " seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                  error) ||
      (lookup && !sq_prepare(&update, db,
                             "UPDATE entities SET account_id = ?4, date = ?5, doc = ?6, tag = ?7,"
                             " seq = ?8 WHERE user_id = ?1 AND kind = ?2 AND entity_id = ?3",
                             error)) ||
      (lookup && ctx->tag &&
       !sq_prepare(&stash, db,
                   "INSERT OR IGNORE INTO stash(user_id, tag, kind, entity_id, prev_tag, doc,"
                   " seq) SELECT user_id, ?4, kind, entity_id, tag, doc, seq FROM entities"
                   " WHERE user_id = ?1 AND kind = ?2 AND entity_id = ?3"
                   " AND (tag IS NULL OR tag <> ?4)",
                   error)))
    goto done;
  for (size_t i = 0; i < ctx->n; i++) {
    bool found = false;
    if (lookup && !sq_exists_one(&found, exists, db, ctx->ids[i], error))
      goto done;
    if (found && ctx->mode == STORE_WRITE_SKIP_EXISTING) {
      ctx->result.skipped++;
      continue;
    }
    if (found && stash && !sq_stash(stash, db, ctx, i, error))
      goto done;
    sq_bind_entity(found ? update : insert, ctx, i);
    sqlite3_bind_int64(found ? update : insert, 8, (int64_t)++seq.last);
    if (!sq_step_entity(found ? update : insert, db, ctx->ids[i], error))
      goto done;
    if (found)
      ctx->result.replaced++;
    else
      ctx->result.inserted++;
  }
  ok = sq_seq_end(&seq, db, error);
done:
  sqlite3_finalize(exists);
  sqlite3_finalize(insert);
  sqlite3_finalize(update);
  sqlite3_finalize(stash);
  return ok;
}

/* op_put_batch in its own transaction (op_in_txn), with the connection's
 * page cache at SQ_BULK_CACHE_PAGES and, for a batch that looks its ids
 * up, its checkpoint interval at SQ_WAL_CHECKPOINT_LOOKUP_BYTES until the
 * transaction has ended either way (its COMMIT is what asks for one);
 * shrinking the cache back frees the pages (all clean by then). */
static bool op_put_bulk(sqlite3 *db, void *vctx, fzip_error_t *error) {
  const sq_put_ctx_t *ctx = vctx;
  bool lookup = ctx->mode != STORE_WRITE_INSERT;
  sq_txn_t txn = {op_put_batch, vctx};
  fzip_error_t ignored = {0};
  bool ok;

  if (lookup)
    sq_set_checkpoint(db, ctx->s, true);
  ok = sq_pragma(db, "cache_size", SQ_BULK_CACHE_PAGES, error) && op_in_txn(db, &txn, error);
  if (!ok && !sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  sq_pragma(db, "cache_size", -SQ_CACHE_KIB, &ignored);
  if (lookup)
    sq_set_checkpoint(db, ctx->s, false);
  return ok;
}

/* Plain and tagged writes alike; tag is NULL for a plain one. */
static bool sq_put(store_t *store, const char *user_id, fzip_kind_t kind,
                   const bson_t *const *docs, const char *const *ids, size_t n,
                   store_write_mode_t mode, const char *tag, store_write_result_t *result,
                   fzip_error_t *error) {
  sq_put_ctx_t ctx = {user_id, (int)kind, docs, ids, n, mode, tag, {0, 0, 0},
                      (sq_store_t *)store};
  if (!sq_run(ctx.s, op_put_bulk, &ctx, error))
    return false;
  if (result) {
    result->inserted += ctx.result.inserted;
    result->replaced += ctx.result.replaced;
    result->skipped += ctx.result.skipped;
  }
  return true;
}

static bool sq_entity_put_batch(store_t *store, const char *user_id, fzip_kind_t kind,
                                const bson_t *const *docs, const char *const *ids, size_t n,
                                store_write_mode_t mode, store_write_result_t *result,
                                fzip_error_t *error) {
  return sq_put(store, user_id, kind, docs, ids, n, mode, NULL, result, error);
}

/* Each id that was there is recorded as a deletion. */
static bool op_delete_many(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_ids_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL, *note = NULL;
  sq_seq_t seq;
  bool ok;

  ctx->deleted = 0;
  ok = sq_seq_begin(&seq, db, ctx->user_id, error) &&
       sq_prepare(&stmt, db,
                  "DELETE FROM entities WHERE user_id = ? AND kind = ? AND entity_id = ?",
                  error) &&
       sq_prepare(&note, db, SQ_NOTE_DELETION_SQL, error);
  for (size_t i = 0; ok && i < ctx->n; i++) {
    uint64_t before = ctx->deleted;
    ok = sq_step_args(&ctx->deleted, stmt, db,
                      (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(ctx->kind),
                                         SQ_TEXT(ctx->ids[i]), SQ_END},
                      "deleting entity", error) &&
         (ctx->deleted == before ||
          sq_note_deletion(note, db, &seq, ctx->kind, ctx->ids[i], error));
  }
  ok = ok && sq_seq_end(&seq, db, error);
  sqlite3_finalize(stmt);
  sqlite3_finalize(note);
  return ok;
}

static bool sq_entity_delete_many(uint64_t *deleted, store_t *store, const char *user_id,
                                  fzip_kind_t kind, const char *const *ids, size_t n,
                                  fzip_error_t *error) {
  sq_ids_ctx_t ctx = {user_id, (int)kind, ids, n, NULL, 0};
  if (!sq_run_txn((sq_store_t *)store, op_delete_many, &ctx, error))
    return false;
  if (deleted)
    *deleted = ctx.deleted;
  return true;
}

/* A wipe when anything was deleted: it takes a number of its own, and the
 * user's deletion records go (no increment can span a wipe). */
static bool op_delete_all(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_ids_ctx_t *ctx = vctx;
  sq_seq_t seq;

  ctx->deleted = 0;
  if (!sq_seq_begin(&seq, db, ctx->user_id, error) ||
      !sq_exec_args(&ctx->deleted, db, "DELETE FROM entities WHERE user_id = ? AND kind = ?",
                    (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(ctx->kind), SQ_END},
                    "deleting entities", error))
    return false;
  if (ctx->deleted == 0)
    return true;
  seq.wiped = ++seq.last;
  return sq_exec_args(NULL, db, "DELETE FROM deletions WHERE user_id = ?",
                      (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_END},
                      "dropping deletion records", error) &&
         sq_seq_end(&seq, db, error);
}

static bool sq_entity_delete_all(uint64_t *deleted, store_t *store, const char *user_id,
                                 fzip_kind_t kind, fzip_error_t *error) {
  sq_ids_ctx_t ctx = {user_id, (int)kind, NULL, 0, NULL, 0};
  if (!sq_run_txn((sq_store_t *)store, op_delete_all, &ctx, error))
    return false;
  if (deleted)
    *deleted = ctx.deleted;
  return true;
}

/* ---- entities: import tags ----------------------------------------------- */

static bool sq_entity_put_batch_tagged(store_t *store, const char *user_id, fzip_kind_t kind,
                                       const bson_t *const *docs, const char *const *ids,
                                       size_t n, store_write_mode_t mode, const char *tag,
                                       store_write_result_t *result, fzip_error_t *error) {
  return sq_put(store, user_id, kind, docs, ids, n, mode, tag, result, error);
}

#define SQ_IMPORT_PAGE 128 /* documents visited and settled per transaction */

/* One page of tagged documents (rollback) or stash entries (commit),
 * fetched without holding a transaction so `visit` may use the store. */
typedef struct {
  const char *user_id;
  const char *tag;
  int kind;                              /* rollback: the kind being undone */
  int after_kind;                        /* keyset position */
  char after_id[FZIP_ID_MAX + 1];
  bool from_stash;
  size_t n;
  int kinds[SQ_IMPORT_PAGE];
  char ids[SQ_IMPORT_PAGE][FZIP_ID_MAX + 1];
  bson_t *docs[SQ_IMPORT_PAGE];
  uint64_t changed; /* rows settled by the last op_import_settle */
  uint64_t restored;
} sq_import_t;

static void sq_import_clear(sq_import_t *im) {
  for (size_t i = 0; i < im->n; i++)
    bson_destroy(im->docs[i]);
  im->n = 0;
}

static bool op_import_page(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_import_t *im = vctx;
  sqlite3_stmt *stmt = NULL;
  bool ok = false;
  int rc = SQLITE_DONE;

  sq_import_clear(im);
  if (!sq_prepare(&stmt, db,
                  im->from_stash
                      ? "SELECT kind, entity_id, doc FROM stash WHERE user_id = ?1 AND tag = ?2"
                        " AND (kind, entity_id) > (?3, ?4) ORDER BY kind, entity_id LIMIT ?5"
                      : "SELECT kind, entity_id, doc FROM entities WHERE user_id = ?1"
                        " AND tag = ?2 AND kind = ?3 AND entity_id > ?4"
                        " ORDER BY entity_id LIMIT ?5",
                  error))
    goto done;
  sq_bind_text(stmt, 1, im->user_id);
  sq_bind_text(stmt, 2, im->tag);
  sqlite3_bind_int(stmt, 3, im->from_stash ? im->after_kind : im->kind);
  sq_bind_text(stmt, 4, im->after_id);
  sqlite3_bind_int(stmt, 5, SQ_IMPORT_PAGE);
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    size_t i = im->n;
    im->docs[i] = sq_column_doc(stmt, 2);
    if (!im->docs[i]) {
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                     "sqlite: invalid document under import tag %s", im->tag);
      goto done;
    }
    im->kinds[i] = sqlite3_column_int(stmt, 0);
    sq_copy_text(im->ids[i], sizeof im->ids[i], stmt, 1);
    im->n++;
  }
  if (rc != SQLITE_DONE) {
    sq_fail(error, db, rc, "reading import page");
    goto done;
  }
  ok = true;
done:
  sqlite3_finalize(stmt);
  if (!ok)
    sq_import_clear(im);
  return ok;
}

/* Rollback of one entity: put the stashed version back (with its previous
 * tag) or, when nothing was stashed, delete what the import created.  Both
 * only touch a document still carrying the tag, so re-running is harmless.
 * Either is a change like any write: a fresh number, a deletion record. */
static bool sq_undo_one(sqlite3 *db, sqlite3_stmt *const st[5], sq_seq_t *seq, sq_import_t *im,
                        size_t i, fzip_error_t *error) {
  bool stashed = false;
  sqlite3_stmt *find = st[0], *restore = st[1], *drop = st[2], *forget = st[3], *note = st[4];

  for (int k = 0; k < 4; k++) {
    sqlite3_reset(st[k]);
    sqlite3_clear_bindings(st[k]);
    sq_bind_text(st[k], 1, im->user_id);
    sqlite3_bind_int(st[k], 2, im->kind);
    sq_bind_text(st[k], 3, im->ids[i]);
    sq_bind_text(st[k], 8, im->tag);
  }
  if (!sq_step_row(&stashed, find, db, "reading stash", error))
    return false;
  if (stashed) {
    bson_t *prev = sq_column_doc(find, 1);
    bool ok;
    if (!prev)
      return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                            "sqlite: invalid stashed version of %s", im->ids[i]);
    sq_bind_doc(restore, im->kind, prev);
    sq_bind_text(restore, 7, (const char *)sqlite3_column_text(find, 0));
    sqlite3_bind_int64(restore, 9, (int64_t)(seq->last + 1));
    ok = sq_step_done(restore, db, "restoring entity", error);
    if (ok && sqlite3_changes(db) > 0) {
      im->restored++;
      seq->last++;
    }
    bson_destroy(prev);
    return ok && sq_step_done(forget, db, "dropping stash entry", error);
  }
  if (!sq_step_done(drop, db, "deleting imported entity", error))
    return false;
  if (sqlite3_changes(db) == 0)
    return true;
  im->changed++;
  return sq_note_deletion(note, db, seq, im->kind, im->ids[i], error);
}

static bool op_import_undo(sqlite3 *db, void *vctx, fzip_error_t *error) {
  static const char *const sql[5] = {
      "SELECT prev_tag, doc FROM stash WHERE user_id = ?1 AND kind = ?2 AND entity_id = ?3"
      " AND tag = ?8",
      "UPDATE entities SET account_id = ?4, date = ?5, doc = ?6, tag = ?7, seq = ?9"
      " WHERE user_id = ?1 AND kind = ?2 AND entity_id = ?3 AND tag = ?8",
      "DELETE FROM entities WHERE user_id = ?1 AND kind = ?2 AND entity_id = ?3 AND tag = ?8",
      "DELETE FROM stash WHERE user_id = ?1 AND kind = ?2 AND entity_id = ?3 AND tag = ?8",
      SQ_NOTE_DELETION_SQL};
  sq_import_t *im = vctx;
  sqlite3_stmt *st[5] = {NULL, NULL, NULL, NULL, NULL};
  sq_seq_t seq;
  bool ok = false;

  im->changed = 0;
  im->restored = 0;
  if (!sq_seq_begin(&seq, db, im->user_id, error))
    goto done;
  for (int k = 0; k < 5; k++) {
    if (!sq_prepare(&st[k], db, sql[k], error))
      goto done;
  }
  for (size_t i = 0; i < im->n; i++) {
    if (!sq_undo_one(db, st, &seq, im, i, error))
      goto done;
  }
  ok = sq_seq_end(&seq, db, error);
done:
  for (int k = 0; k < 5; k++)
    sqlite3_finalize(st[k]);
  return ok;
}

static bool op_stash_forget(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_import_t *im = vctx;
  sqlite3_stmt *stmt = NULL;
  bool ok;

  im->changed = 0;
  ok = sq_prepare(&stmt, db,
                  "DELETE FROM stash WHERE user_id = ?1 AND tag = ?2 AND kind = ?3"
                  " AND entity_id = ?4",
                  error);
  for (size_t i = 0; ok && i < im->n; i++)
    ok = sq_step_args(&im->changed, stmt, db,
                      (const sq_arg_t[]){SQ_TEXT(im->user_id), SQ_TEXT(im->tag),
                                         SQ_INT(im->kinds[i]), SQ_TEXT(im->ids[i]), SQ_END},
                      "dropping stash entry", error);
  sqlite3_finalize(stmt);
  return ok;
}

static bool op_stash_forget_all(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_import_t *im = vctx;
  return sq_exec_args(NULL, db, "DELETE FROM stash WHERE user_id = ? AND tag = ?",
                      (const sq_arg_t[]){SQ_TEXT(im->user_id), SQ_TEXT(im->tag), SQ_END},
                      "emptying stash", error);
}

static bool sq_visit_page(sq_import_t *im, store_visit_fn visit, void *visit_ctx,
                          fzip_error_t *error) {
  for (size_t i = 0; visit && i < im->n; i++) {
    if (!visit(visit_ctx, (fzip_kind_t)im->kinds[i], im->docs[i], error))
      return false;
  }
  return true;
}

/* Page by page from im's position on: fetch (no transaction held, so
 * `visit` may use the store), visit, then settle the page in one
 * transaction; adds what settle counted to *changed and *restored. */
static bool sq_import_walk(uint64_t *changed, uint64_t *restored, sq_store_t *s, sq_import_t *im,
                           sq_op_fn settle, store_visit_fn visit, void *visit_ctx,
                           fzip_error_t *error) {
  for (;;) {
    if (!sq_run(s, op_import_page, im, error))
      return false;
    if (im->n == 0)
      return true;
    if (!sq_visit_page(im, visit, visit_ctx, error) || !sq_run_txn(s, settle, im, error))
      return false;
    *changed += im->changed;
    *restored += im->restored;
    im->after_kind = im->kinds[im->n - 1];
    snprintf(im->after_id, sizeof im->after_id, "%s", im->ids[im->n - 1]);
  }
}

static sq_import_t *sq_import_new(const char *user_id, const char *tag) {
  sq_import_t *im = bson_malloc0(sizeof *im);
  im->user_id = user_id;
  im->tag = tag;
  return im;
}

static void sq_import_destroy(sq_import_t *im) {
  sq_import_clear(im);
  bson_free(im);
}

/* Kind by kind in reverse dependency order, the tagged documents of each. */
static bool sq_import_rollback(store_rollback_stats_t *stats, store_t *store, const char *user_id,
                               const char *tag, store_visit_fn visit, void *visit_ctx,
                               fzip_error_t *error) {
  sq_store_t *s = (sq_store_t *)store;
  sq_import_t *im = sq_import_new(user_id, tag);
  bool ok = false;

  for (int kind = FZIP_KIND_COUNT - 1; kind >= 0; kind--) {
    im->kind = kind;
    im->after_id[0] = '\0';
    if (!sq_import_walk(&stats->deleted, &stats->restored, s, im, op_import_undo, visit,
                        visit_ctx, error))
      goto done;
  }
  ok = sq_run(s, op_stash_forget_all, im, error);
done:
  sq_import_destroy(im);
  return ok;
}

/* The stash entries under the tag, all kinds in one keyset walk. */
static bool sq_import_commit(uint64_t *forgotten, store_t *store, const char *user_id,
                             const char *tag, store_visit_fn visit, void *visit_ctx,
                             fzip_error_t *error) {
  sq_import_t *im = sq_import_new(user_id, tag);
  uint64_t none = 0;
  bool ok;

  im->from_stash = true;
  im->after_kind = -1;
  ok = sq_import_walk(forgotten, &none, (sq_store_t *)store, im, op_stash_forget, visit,
                      visit_ctx, error);
  sq_import_destroy(im);
  return ok;
}

/* ---- entities: undo of a committed import -------------------------------- */

typedef struct {
  const char *user_id;
  const char *tag;
  store_import_marks_t *marks;
  int kind;
  char (*ids)[FZIP_ID_MAX + 1];
  size_t n, max;
} sq_undo_ctx_t;

/* Adds "kind, count" rows of a GROUP BY kind query to counts. */
static bool sq_count_kinds(uint64_t counts[FZIP_KIND_COUNT], sqlite3 *db, const char *sql,
                           const sq_undo_ctx_t *ctx, fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok;

  ok = sq_prepare_args(&stmt, db, sql,
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_TEXT(ctx->tag), SQ_END},
                       error);
  while (ok && (ok = sq_step_row(&row, stmt, db, "counting an import's marks", error)) && row) {
    int k = sqlite3_column_int(stmt, 0);
    if (k >= 0 && k < FZIP_KIND_COUNT)
      counts[k] += (uint64_t)sqlite3_column_int64(stmt, 1);
  }
  sqlite3_finalize(stmt);
  return ok;
}

/* Both counts in one read transaction, so they describe one moment. */
static bool op_import_marks(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_undo_ctx_t *ctx = vctx;
  memset(ctx->marks, 0, sizeof *ctx->marks); /* sq_run may run it again */
  return sq_count_kinds(ctx->marks->tagged, db,
                        "SELECT kind, count(*) FROM entities WHERE user_id = ?1 AND tag = ?2"
                        " GROUP BY kind",
                        ctx, error) &&
         sq_count_kinds(ctx->marks->kept, db,
                        "SELECT kind, count(*) FROM stash WHERE user_id = ?1 AND tag = ?2"
                        " GROUP BY kind",
                        ctx, error);
}

static bool sq_import_marks(store_import_marks_t *out, store_t *store, const char *user_id,
                            const char *tag, fzip_error_t *error) {
  sq_undo_ctx_t ctx = {.user_id = user_id, .tag = tag, .marks = out};
  return sq_run_txn((sq_store_t *)store, op_import_marks, &ctx, error);
}

/* Copies column 0 of the first `max` rows of sql (bound to args) into
 * ids; *n is set from 0 each time (sq_run may run the op again). */
static bool sq_read_ids(char (*ids)[FZIP_ID_MAX + 1], size_t *n, size_t max, sqlite3 *db,
                        const char *sql, const sq_arg_t *args, const char *what,
                        fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok;

  *n = 0;
  ok = sq_prepare_args(&stmt, db, sql, args, error);
  while (ok && *n < max && (ok = sq_step_row(&row, stmt, db, what, error)) && row)
    sq_copy_text(ids[(*n)++], FZIP_ID_MAX + 1, stmt, 0);
  sqlite3_finalize(stmt);
  return ok;
}

static bool op_import_lost(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_undo_ctx_t *ctx = vctx;
  return sq_read_ids(ctx->ids, &ctx->n, ctx->max, db,
                     "SELECT s.entity_id FROM stash s LEFT JOIN entities e"
                     " ON e.user_id = s.user_id AND e.kind = s.kind"
                     " AND e.entity_id = s.entity_id"
                     " WHERE s.user_id = ?1 AND s.tag = ?2 AND s.kind = ?3"
                     " AND (e.tag IS NULL OR e.tag <> s.tag)"
                     " ORDER BY s.entity_id LIMIT ?4",
                     (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_TEXT(ctx->tag),
                                        SQ_INT(ctx->kind), SQ_INT(ctx->max), SQ_END},
                     "reading an import's changed documents", error);
}

static bool sq_import_lost(char ids[][FZIP_ID_MAX + 1], size_t *n, store_t *store,
                           const char *user_id, const char *tag, fzip_kind_t kind, size_t max,
                           fzip_error_t *error) {
  sq_undo_ctx_t ctx = {.user_id = user_id, .tag = tag, .kind = (int)kind, .ids = ids, .max = max};
  bool ok = sq_run((sq_store_t *)store, op_import_lost, &ctx, error);
  *n = ctx.n;
  return ok;
}

/* ---- entities: pending imports ------------------------------------------- */

/* The pending set is the table import_pending; its one row per import is
 * what the commit deletes (the flip), so the whole import becomes visible
 * in one single-row write.  Begin also inserts SQ_RESERVE_BYTES of zeros
 * into import_reserve: real pages of the file that a rollback deletes
 * first, so that on a full store (SQLITE_FULL) the rollback and the job's
 * final status find free pages again. */

typedef struct {
  const char *user_id;
  const char *tag;
  char (*tags)[STORE_TAG_MAX + 1];
  size_t n;
  int kind;
  const char *id;
  bson_t *doc;
  uint64_t seq;
} sq_pending_ctx_t;

/* Runs sql with ?1 = user, ?2 = tag (and ?3 = SQ_RESERVE_BYTES for the
 * statement that wants it). */
static bool sq_exec_user_tag(sqlite3 *db, const char *sql, const sq_pending_ctx_t *ctx,
                             fzip_error_t *error) {
  const sq_arg_t args[] = {SQ_TEXT(ctx->user_id), SQ_TEXT(ctx->tag), SQ_INT(SQ_RESERVE_BYTES),
                           SQ_END};
  return sq_exec_args(NULL, db, sql, args, sql, error);
}

static bool op_import_begin(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_pending_ctx_t *ctx = vctx;
  /* begin_seq: the user's last number, which the store's mark stays at
   * while the import is pending (its writes come after it). */
  return sq_exec_user_tag(db,
                          "INSERT OR IGNORE INTO import_pending(user_id, tag, begin_seq)"
                          " VALUES (?1, ?2, coalesce((SELECT seq FROM change_seq"
                          " WHERE user_id = ?1), 0))",
                          ctx, error) &&
         sq_exec_user_tag(db,
                          "INSERT OR IGNORE INTO import_reserve(user_id, tag, pad)"
                          " VALUES (?1, ?2, zeroblob(?3))",
                          ctx, error);
}

/* The flip: one row deleted, in a transaction of its own. */
static bool op_import_end(sqlite3 *db, void *vctx, fzip_error_t *error) {
  return sq_exec_user_tag(db, "DELETE FROM import_pending WHERE user_id = ?1 AND tag = ?2", vctx,
                          error);
}

static bool op_release_reserve(sqlite3 *db, void *vctx, fzip_error_t *error) {
  return sq_exec_user_tag(db, "DELETE FROM import_reserve WHERE user_id = ?1 AND tag = ?2", vctx,
                          error);
}

static bool op_import_pending(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_pending_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  int rc = SQLITE_DONE;
  bool ok = false;

  ctx->n = 0;
  if (!sq_prepare_args(&stmt, db,
                       "SELECT tag FROM import_pending WHERE user_id = ? ORDER BY tag LIMIT ?",
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(STORE_PENDING_MAX), SQ_END},
                       error))
    goto done;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
    sq_copy_text(ctx->tags[ctx->n++], STORE_TAG_MAX + 1, stmt, 0);
  if (rc != SQLITE_DONE) {
    sq_fail(error, db, rc, "reading pending imports");
    goto done;
  }
  ok = true;
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool op_stash_get(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_pending_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok = false;

  if (!sq_prepare_args(&stmt, db,
                       "SELECT doc, seq FROM stash WHERE user_id = ? AND tag = ? AND kind = ?"
                       " AND entity_id = ?",
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_TEXT(ctx->tag),
                                          SQ_INT(ctx->kind), SQ_TEXT(ctx->id), SQ_END},
                       error) ||
      !sq_step_row(&row, stmt, db, "reading stash", error))
    goto done;
  if (!row) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "no stashed version of %s",
                   ctx->id);
    goto done;
  }
  ctx->doc = sq_column_doc(stmt, 0);
  ctx->seq = (uint64_t)sqlite3_column_int64(stmt, 1);
  if (!ctx->doc) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                   "sqlite: invalid stashed version of %s", ctx->id);
    goto done;
  }
  ok = true;
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_import_begin(store_t *store, const char *user_id, const char *tag,
                            fzip_error_t *error) {
  sq_pending_ctx_t ctx = {.user_id = user_id, .tag = tag};
  return sq_run_txn((sq_store_t *)store, op_import_begin, &ctx, error);
}

static bool sq_import_end(store_t *store, const char *user_id, const char *tag,
                          fzip_error_t *error) {
  sq_pending_ctx_t ctx = {.user_id = user_id, .tag = tag};
  return sq_run((sq_store_t *)store, op_import_end, &ctx, error);
}

static bool sq_import_release_reserve(store_t *store, const char *user_id, const char *tag,
                                      fzip_error_t *error) {
  sq_pending_ctx_t ctx = {.user_id = user_id, .tag = tag};
  return sq_run((sq_store_t *)store, op_release_reserve, &ctx, error);
}

static bool sq_import_pending(char tags[][STORE_TAG_MAX + 1], size_t *n, store_t *store,
                              const char *user_id, fzip_error_t *error) {
  sq_pending_ctx_t ctx = {.user_id = user_id, .tags = tags};
  if (!sq_run((sq_store_t *)store, op_import_pending, &ctx, error))
    return false;
  *n = ctx.n;
  return true;
}

static bool sq_stash_get(bson_t **out, uint64_t *seq, store_t *store, const char *user_id,
                         const char *tag, fzip_kind_t kind, const char *id,
                         fzip_error_t *error) {
  sq_pending_ctx_t ctx = {.user_id = user_id, .tag = tag, .kind = (int)kind, .id = id};
  if (!sq_run((sq_store_t *)store, op_stash_get, &ctx, error))
    return false;
  *out = ctx.doc;
  *seq = ctx.seq;
  return true;
}

/* ---- change tracking ----------------------------------------------------- */

typedef struct {
  const char *user_id;
  store_changes_mark_t mark;
} sq_mark_ctx_t;

/* The counter and the oldest pending import's begin_seq, in one read
 * transaction (sq_run_read; a view's own, which fixes its snapshot's). */
static bool op_changes_mark(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_mark_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok = false;
  sq_seq_t seq;

  if (!sq_seq_begin(&seq, db, ctx->user_id, error) ||
      !sq_prepare_args(&stmt, db,
                       "SELECT min(begin_seq) FROM import_pending WHERE user_id = ?",
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_END}, error) ||
      !sq_step_row(&row, stmt, db, "reading pending imports", error))
    goto done;
  ctx->mark.seq = seq.last;
  ctx->mark.wiped = seq.wiped;
  if (row && sqlite3_column_type(stmt, 0) != SQLITE_NULL &&
      (uint64_t)sqlite3_column_int64(stmt, 0) < ctx->mark.seq)
    ctx->mark.seq = (uint64_t)sqlite3_column_int64(stmt, 0);
  ok = true;
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_changes_mark(store_changes_mark_t *out, store_t *store, const char *user_id,
                            fzip_error_t *error) {
  sq_mark_ctx_t ctx = {user_id, {0, 0}};
  if (!sq_run_read((sq_store_t *)store, op_changes_mark, &ctx, error))
    return false;
  *out = ctx.mark;
  return true;
}

typedef struct {
  const char *user_id;
  int kind;
  uint64_t after_seq, upto_seq;
  const char *after_id;
  size_t max, n;
  char (*ids)[FZIP_ID_MAX + 1];
} sq_deletions_ctx_t;

/* A deletion is left out once the id was written again at or before
 * upto_seq (the document is in the increment then); a later write, or one
 * of a still pending import, comes after the mark. */
static bool op_deletions_page(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_deletions_ctx_t *ctx = vctx;
  return sq_read_ids(ctx->ids, &ctx->n, ctx->max, db,
                     "SELECT d.entity_id FROM deletions d WHERE d.user_id = ?1"
                     " AND d.kind = ?2 AND d.entity_id > ?5 AND d.seq > ?3 AND d.seq <= ?4"
                     " AND NOT EXISTS (SELECT 1 FROM entities e WHERE e.user_id = ?1"
                     " AND e.kind = ?2 AND e.entity_id = d.entity_id AND e.seq > d.seq"
                     " AND e.seq <= ?4) ORDER BY d.entity_id LIMIT ?6",
                     (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(ctx->kind),
                                        SQ_INT(ctx->after_seq), SQ_INT(ctx->upto_seq),
                                        SQ_TEXT(ctx->after_id), SQ_INT(ctx->max), SQ_END},
                     "reading deletions", error);
}

static bool sq_deletions_page(char ids[][FZIP_ID_MAX + 1], size_t *n, store_t *store,
                              const char *user_id, fzip_kind_t kind, uint64_t after_seq,
                              uint64_t upto_seq, const char *after_id, size_t max,
                              fzip_error_t *error) {
  sq_deletions_ctx_t ctx = {user_id, (int)kind, after_seq, upto_seq, after_id, max, 0, ids};
  bool ok = sq_run((sq_store_t *)store, op_deletions_page, &ctx, error);
  *n = ok ? ctx.n : 0;
  return ok;
}

/* ---- snapshots ----------------------------------------------------------- */

/* A view is an sq_store_t with no pool and one connection of its own,
 * held inside one read transaction: in WAL mode every read on it sees the
 * database as of its first read, whatever commits meanwhile. */
static bool sq_snapshot_begin(store_t **view, store_t *store, const char *user_id,
                              fzip_error_t *error) {
  sq_store_t *s = (sq_store_t *)store;
  sq_store_t *v = bson_malloc0(sizeof *v);
  sq_pending_ctx_t ctx = {.user_id = user_id};
  char tags[STORE_PENDING_MAX][STORE_TAG_MAX + 1];

  v->base = s->base;
  v->base.read_only = true;
  v->path = bson_strdup(s->path);
  v->blob_path = bson_strdup(s->blob_path);
  v->max_pages = s->max_pages;
  v->main_page = s->main_page;
  sq_store_init(v);
  ctx.tags = tags;
  /* A file's first read after BEGIN fixes its snapshot: the blob file is
   * read too, so blobs are seen as of the same moment as the documents. */
  if (!sq_connect(&v->snap, v, error) || !sq_exec(v->snap, "BEGIN", error) ||
      !op_import_pending(v->snap, &ctx, error) ||
      !sq_exec(v->snap, "SELECT 1 FROM " SQ_BLOBS " LIMIT 1", error)) {
    sq_destroy(&v->base);
    return false;
  }
  *view = &v->base;
  return true;
}

static bool sq_snapshot_end(store_t *view, fzip_error_t *error) {
  (void)error;
  sq_destroy(view); /* ends the read transaction and closes its connection */
  return true;
}

/* ---- jobs ---------------------------------------------------------------- */

#define SQ_JOB_COLS                                                                     \
  "kind, job_id, user_id, created_at, updated_at, expires_at, runnable, lease_owner, " \
  "lease_until, version, body, request_id, request_digest, trace_id"

static bool sq_row_to_job(store_job_t **out, sqlite3_stmt *stmt, fzip_error_t *error) {
  store_job_t *job = bson_malloc0(sizeof *job);

  job->kind = (store_job_kind_t)sqlite3_column_int(stmt, 0);
  sq_copy_text(job->job_id, sizeof job->job_id, stmt, 1);
  sq_copy_text(job->user_id, sizeof job->user_id, stmt, 2);
  job->created_at = sqlite3_column_int64(stmt, 3);
  job->updated_at = sqlite3_column_int64(stmt, 4);
  job->expires_at = sqlite3_column_int64(stmt, 5);
  job->runnable = sqlite3_column_int(stmt, 6) != 0;
  sq_copy_text(job->lease_owner, sizeof job->lease_owner, stmt, 7);
  job->lease_until = sqlite3_column_int64(stmt, 8);
  job->version = sqlite3_column_int64(stmt, 9);
  job->body = sq_column_doc(stmt, 10);
  sq_copy_text(job->request_id, sizeof job->request_id, stmt, 11);
  sq_copy_text(job->request_digest, sizeof job->request_digest, stmt, 12);
  sq_copy_text(job->trace_id, sizeof job->trace_id, stmt, 13);
  if (!job->body) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                   "sqlite: job %s holds an invalid body", job->job_id);
    store_job_destroy(job);
    return false;
  }
  *out = job;
  return true;
}

/* Collects the rows of `stmt`, at most `max`, into a job array; *more says
 * whether a row beyond `max` exists. */
static bool sq_rows_to_jobs(store_job_t ***jobs, size_t *n_jobs, bool *more, sqlite3_stmt *stmt,
                            sqlite3 *db, size_t max, fzip_error_t *error) {
  store_job_t **list = bson_malloc0((max > 0 ? max : 1) * sizeof *list);
  size_t n = 0;
  bool row = false;

  for (;;) {
    if (!sq_step_row(&row, stmt, db, "reading jobs", error))
      goto fail;
    if (!row || n == max)
      break;
    if (!sq_row_to_job(&list[n], stmt, error))
      goto fail;
    n++;
  }
  *jobs = list;
  *n_jobs = n;
  *more = row;
  return true;
fail:
  store_job_list_free(list, n);
  return false;
}

typedef struct {
  store_job_t *job;
  store_job_kind_t kind;
  const char *user_id;
  const char *job_id;
  const char *owner;
  int64_t now_ms;
  int64_t lease_ms;
  size_t max;
  const char *token;
  store_job_t *found;     /* job_get, job_claim */
  store_job_t **list;     /* job_list, list_expired */
  size_t n_list;
  bool more;              /* job_list: another page exists */
  int64_t version;        /* job_update / renew: the version written; count_runnable: the count */
} sq_job_ctx_t;

static bool op_job_create(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  store_job_t *job = ctx->job;
  char key[STORE_IDEM_KEY_SIZE];
  const sq_arg_t args[] = {SQ_INT(job->kind),
                           SQ_TEXT(job->job_id),
                           SQ_TEXT(job->user_id),
                           SQ_INT(job->created_at),
                           SQ_INT(job->updated_at),
                           SQ_INT(job->expires_at),
                           SQ_INT(job->runnable),
                           SQ_TEXT(job->lease_owner),
                           SQ_INT(job->lease_until),
                           SQ_BLOB(bson_get_data(job->body), job->body->len),
                           SQ_TEXT(job->request_id),
                           SQ_TEXT(job->request_digest),
                           SQ_TEXT(job->trace_id),
                           SQ_TEXT(key),
                           SQ_END};

  store_job_idem_key(key, job->request_id, job->job_id);
  /* sq_code maps a constraint failure (the job id or the request key
   * taken) to ALREADY_EXISTS. */
  if (sq_exec_args(NULL, db,
                   "INSERT INTO jobs(" SQ_JOB_COLS ", idem_key)"
                   " VALUES (?,?,?,?,?,?,?,?,?,1,?,?,?,?,?)",
                   args, "creating job", error))
    return true;
  if (error->code == FZIP_ERR_ALREADY_EXISTS)
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS, "job %s already exists",
                   job->job_id);
  return false;
}

static bool sq_job_create(store_t *store, store_job_t *job, fzip_error_t *error) {
  sq_job_ctx_t ctx = {.job = job};
  if (!sq_run((sq_store_t *)store, op_job_create, &ctx, error))
    return false;
  job->version = 1;
  return true;
}

/* One job row (SELECT SQ_JOB_COLS ...) into ctx->found; NOT_FOUND saying
 * "<missing> <what>" when there is none. */
static bool sq_select_job(sq_job_ctx_t *ctx, sqlite3 *db, const char *sql, const sq_arg_t *args,
                          const char *missing, const char *what, fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok = false;

  if (!sq_prepare_args(&stmt, db, sql, args, error) ||
      !sq_step_row(&row, stmt, db, "reading job", error))
    goto done;
  if (!row) {
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "%s %s", missing, what);
    goto done;
  }
  ok = sq_row_to_job(&ctx->found, stmt, error);
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool op_job_get(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  char what[FZIP_ID_MAX + sizeof " not found"];

  snprintf(what, sizeof what, "%s not found", ctx->job_id);
  return sq_select_job(ctx, db,
                       "SELECT " SQ_JOB_COLS " FROM jobs WHERE kind = ?1 AND job_id = ?2"
                       " AND (?3 IS NULL OR user_id = ?3)",
                       (const sq_arg_t[]){SQ_INT(ctx->kind), SQ_TEXT(ctx->job_id),
                                          SQ_TEXT(ctx->user_id), SQ_END},
                       "job", what, error);
}

static bool op_job_find_request(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  char key[STORE_IDEM_KEY_SIZE];

  store_job_idem_key(key, ctx->token, NULL);
  return sq_select_job(ctx, db,
                       "SELECT " SQ_JOB_COLS " FROM jobs"
                       " WHERE user_id = ?1 AND kind = ?2 AND idem_key = ?3",
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(ctx->kind), SQ_TEXT(key),
                                          SQ_END},
                       "no job has request id", ctx->token, error);
}

static bool sq_job_find_request(store_job_t **out, store_t *store, store_job_kind_t kind,
                                const char *user_id, const char *request_id,
                                fzip_error_t *error) {
  sq_job_ctx_t ctx = {.kind = kind, .user_id = user_id, .token = request_id};
  if (!sq_run((sq_store_t *)store, op_job_find_request, &ctx, error))
    return false;
  *out = ctx.found;
  return true;
}

static bool op_job_release_request(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  char key[STORE_IDEM_KEY_SIZE];

  store_job_idem_key(key, NULL, ctx->job_id);
  return sq_exec_args(NULL, db,
                      "UPDATE jobs SET idem_key = ?1"
                      " WHERE kind = ?2 AND job_id = ?3 AND user_id = ?4",
                      (const sq_arg_t[]){SQ_TEXT(key), SQ_INT(ctx->kind), SQ_TEXT(ctx->job_id),
                                         SQ_TEXT(ctx->user_id), SQ_END},
                      "releasing request id", error);
}

static bool sq_job_release_request(store_t *store, store_job_kind_t kind, const char *user_id,
                                   const char *job_id, fzip_error_t *error) {
  sq_job_ctx_t ctx = {.kind = kind, .user_id = user_id, .job_id = job_id};
  return sq_run((sq_store_t *)store, op_job_release_request, &ctx, error);
}

/* *out = the one number a "SELECT count(*) ..." of jobs answers. */
static bool sq_count_jobs(int64_t *out, sqlite3 *db, const char *sql, const sq_arg_t *args,
                          fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok = false;

  if (!sq_prepare_args(&stmt, db, sql, args, error) ||
      !sq_step_row(&row, stmt, db, "counting jobs", error))
    goto done;
  *out = row ? sqlite3_column_int64(stmt, 0) : 0;
  ok = true;
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool op_job_count_runnable(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  return sq_count_jobs(&ctx->version, db,
                       "SELECT count(*) FROM jobs WHERE user_id = ?1 AND runnable = 1"
                       " AND kind <> ?2",
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(STORE_JOB_SCHEDULE),
                                          SQ_END},
                       error);
}

static bool sq_job_count_runnable(uint64_t *out, store_t *store, const char *user_id,
                                  fzip_error_t *error) {
  sq_job_ctx_t ctx = {.user_id = user_id};
  if (!sq_run((sq_store_t *)store, op_job_count_runnable, &ctx, error))
    return false;
  *out = (uint64_t)ctx.version;
  return true;
}

/* The claim's own condition, over its partial index jobs_claim. */
static bool op_job_count_queued(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  return sq_count_jobs(&ctx->version, db,
                       "SELECT count(*) FROM jobs WHERE kind = ?1 AND runnable = 1"
                       " AND lease_until < ?2",
                       (const sq_arg_t[]){SQ_INT(ctx->kind), SQ_INT(ctx->now_ms), SQ_END}, error);
}

static bool sq_job_count_queued(uint64_t *out, store_t *store, store_job_kind_t kind,
                                int64_t now_ms, fzip_error_t *error) {
  sq_job_ctx_t ctx = {.kind = kind, .now_ms = now_ms};
  if (!sq_run((sq_store_t *)store, op_job_count_queued, &ctx, error))
    return false;
  *out = (uint64_t)ctx.version;
  return true;
}

static bool sq_job_get(store_job_t **out, store_t *store, store_job_kind_t kind,
                       const char *user_id, const char *job_id, fzip_error_t *error) {
  sq_job_ctx_t ctx = {.kind = kind, .user_id = user_id, .job_id = job_id};
  if (!sq_run((sq_store_t *)store, op_job_get, &ctx, error))
    return false;
  *out = ctx.found;
  return true;
}

/* After a conditional write matched nothing: NOT_FOUND or ABORTED. */
static bool sq_job_conflict(sqlite3 *db, const store_job_t *job, fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool row = false;

  if (!sq_prepare_args(&stmt, db, "SELECT 1 FROM jobs WHERE kind = ? AND job_id = ?",
                       (const sq_arg_t[]){SQ_INT(job->kind), SQ_TEXT(job->job_id), SQ_END},
                       error))
    return false;
  if (sq_step_row(&row, stmt, db, "reading job", error)) {
    if (row)
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED,
                     "job %s was changed or taken by someone else", job->job_id);
    else
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "job %s not found",
                     job->job_id);
  }
  sqlite3_finalize(stmt);
  return false;
}

static bool op_job_update(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  store_job_t *job = ctx->job;
  const sq_arg_t args[] = {SQ_INT(job->updated_at),
                           SQ_INT(job->expires_at),
                           SQ_INT(job->runnable),
                           SQ_TEXT(job->lease_owner),
                           SQ_INT(job->lease_until),
                           SQ_BLOB(bson_get_data(job->body), job->body->len),
                           SQ_INT(job->kind),
                           SQ_TEXT(job->job_id),
                           SQ_INT(job->version),
                           SQ_TEXT(ctx->owner),
                           SQ_END};
  uint64_t updated = 0;

  if (!sq_exec_args(&updated, db,
                    "UPDATE jobs SET updated_at = ?1, expires_at = ?2, runnable = ?3,"
                    " lease_owner = ?4, lease_until = ?5, body = ?6, version = version + 1"
                    " WHERE kind = ?7 AND job_id = ?8 AND version = ?9"
                    " AND (?10 IS NULL OR lease_owner = ?10)",
                    args, "updating job", error))
    return false;
  if (updated == 0)
    return sq_job_conflict(db, job, error);
  return true;
}

static bool sq_job_update(store_t *store, store_job_t *job, const char *owner,
                          fzip_error_t *error) {
  sq_job_ctx_t ctx = {.job = job, .owner = owner};
  if (!sq_run((sq_store_t *)store, op_job_update, &ctx, error))
    return false;
  job->version++;
  return true;
}

/* Page tokens are "<created_at>:<job_id>" of the last job returned. */
static bool sq_parse_token(int64_t *created_at, char job_id[FZIP_ID_MAX + 1], const char *token,
                           fzip_error_t *error) {
  char *end = NULL;
  long long v = strtoll(token, &end, 10);
  if (end == token || *end != ':' || !fzip_id_is_valid(end + 1))
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_INVALID_ARGUMENT,
                          "invalid page token");
  *created_at = v;
  snprintf(job_id, FZIP_ID_MAX + 1, "%s", end + 1);
  return true;
}

static bool op_job_list(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  int64_t after_created = 0;
  char after_id[FZIP_ID_MAX + 1] = "";
  bool ok = false;

  if (ctx->token && !sq_parse_token(&after_created, after_id, ctx->token, error))
    goto done;
  /* One row beyond max says "more". */
  if (!sq_prepare_args(&stmt, db,
                       "SELECT " SQ_JOB_COLS " FROM jobs WHERE user_id = ?1 AND kind = ?2"
                       " AND (?3 = 0 OR created_at < ?4 OR (created_at = ?4 AND job_id < ?5))"
                       " ORDER BY created_at DESC, job_id DESC LIMIT ?6",
                       (const sq_arg_t[]){SQ_TEXT(ctx->user_id), SQ_INT(ctx->kind),
                                          SQ_INT(ctx->token != NULL), SQ_INT(after_created),
                                          SQ_TEXT(after_id), SQ_INT(ctx->max + 1), SQ_END},
                       error))
    goto done;
  ok = sq_rows_to_jobs(&ctx->list, &ctx->n_list, &ctx->more, stmt, db, ctx->max, error);
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_job_list(store_job_t ***jobs, size_t *n_jobs, char **next_token, store_t *store,
                        store_job_kind_t kind, const char *user_id, size_t page_size,
                        const char *page_token, fzip_error_t *error) {
  sq_job_ctx_t ctx = {.kind = kind, .user_id = user_id, .max = page_size, .token = page_token};
  if (!sq_run((sq_store_t *)store, op_job_list, &ctx, error))
    return false;
  if (ctx.more) {
    const store_job_t *last = ctx.list[ctx.n_list - 1];
    *next_token = bson_strdup_printf("%lld:%s", (long long)last->created_at, last->job_id);
  }
  *jobs = ctx.list;
  *n_jobs = ctx.n_list;
  return true;
}

static bool op_job_delete(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  uint64_t deleted = 0;

  if (!sq_exec_args(&deleted, db,
                    "DELETE FROM jobs WHERE kind = ?1 AND job_id = ?2"
                    " AND (?3 IS NULL OR user_id = ?3)",
                    (const sq_arg_t[]){SQ_INT(ctx->kind), SQ_TEXT(ctx->job_id),
                                       SQ_TEXT(ctx->user_id), SQ_END},
                    "deleting job", error))
    return false;
  if (deleted == 0)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "job %s not found",
                          ctx->job_id);
  return true;
}

static bool sq_job_delete(store_t *store, store_job_kind_t kind, const char *user_id,
                          const char *job_id, fzip_error_t *error) {
  sq_job_ctx_t ctx = {.kind = kind, .user_id = user_id, .job_id = job_id};
  return sq_run((sq_store_t *)store, op_job_delete, &ctx, error);
}

/* Choosing and taking the job run in one IMMEDIATE transaction
 * (sq_run_txn) under SQLite's writer lock, so two claimers can never take
 * the same job: the SELECT picks it and learns whether it still names an
 * owner (a lapsed lease), the UPDATE ... RETURNING takes it. */
static bool op_job_claim(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  bool row = false, ok = false, lapsed = false;
  int64_t rowid = 0;

  /* sq_run runs this again when the COMMIT after it fails transiently: the
   * job a rolled-back attempt read is not the one claimed. */
  store_job_destroy(ctx->found);
  ctx->found = NULL;
  if (!sq_prepare_args(&stmt, db,
                       "SELECT rowid, lease_owner <> '' FROM jobs WHERE kind = ?1 AND runnable = 1"
                       " AND lease_until < ?2 ORDER BY created_at, job_id LIMIT 1",
                       (const sq_arg_t[]){SQ_INT(ctx->kind), SQ_INT(ctx->now_ms), SQ_END},
                       error) ||
      !sq_step_row(&row, stmt, db, "choosing a job to claim", error))
    goto done;
  if (!row) {
    ok = true;
    goto done;
  }
  rowid = sqlite3_column_int64(stmt, 0);
  lapsed = sqlite3_column_int(stmt, 1) != 0;
  sqlite3_finalize(stmt);
  stmt = NULL;
  if (!sq_prepare_args(&stmt, db,
                       "UPDATE jobs SET lease_owner = ?1, lease_until = ?2, version = version + 1"
                       " WHERE rowid = ?3 RETURNING " SQ_JOB_COLS,
                       (const sq_arg_t[]){SQ_TEXT(ctx->owner), SQ_INT(ctx->now_ms + ctx->lease_ms),
                                          SQ_INT(rowid), SQ_END},
                       error) ||
      !sq_step_row(&row, stmt, db, "claiming job", error))
    goto done;
  if (row && !sq_row_to_job(&ctx->found, stmt, error))
    goto done;
  if (row && !sq_step_done(stmt, db, "claiming job", error))
    goto done;
  if (ctx->found)
    ctx->found->lease_lapsed = lapsed;
  ok = true;
done:
  if (!ok) {
    store_job_destroy(ctx->found);
    ctx->found = NULL;
  }
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_job_claim(store_job_t **out, store_t *store, store_job_kind_t kind,
                         const char *owner, int64_t now_ms, int64_t lease_ms,
                         fzip_error_t *error) {
  sq_job_ctx_t ctx = {.kind = kind, .owner = owner, .now_ms = now_ms, .lease_ms = lease_ms};
  if (!sq_run_txn((sq_store_t *)store, op_job_claim, &ctx, error)) {
    /* op_job_claim succeeded but its COMMIT failed: nothing was claimed. */
    store_job_destroy(ctx.found);
    return false;
  }
  *out = ctx.found;
  return true;
}

/* Renewal is fenced like any update: the owner must still hold the lease
 * and nobody may have written the job since this record was read. */
static bool op_job_renew(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  uint64_t renewed = 0;

  if (!sq_exec_args(&renewed, db,
                    "UPDATE jobs SET lease_until = ?1, version = version + 1"
                    " WHERE kind = ?2 AND job_id = ?3 AND lease_owner = ?4 AND version = ?5",
                    (const sq_arg_t[]){SQ_INT(ctx->now_ms + ctx->lease_ms),
                                       SQ_INT(ctx->job->kind), SQ_TEXT(ctx->job->job_id),
                                       SQ_TEXT(ctx->owner), SQ_INT(ctx->job->version), SQ_END},
                    "renewing lease", error))
    return false;
  if (renewed > 0)
    return true;
  sq_job_conflict(db, ctx->job, error);
  if (error->code == FZIP_ERR_ABORTED)
    fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED, "lease on job %s was lost",
                   ctx->job->job_id);
  return false;
}

static bool sq_job_renew(store_t *store, store_job_t *job, const char *owner, int64_t now_ms,
                         int64_t lease_ms, fzip_error_t *error) {
  sq_job_ctx_t ctx = {.job = job, .owner = owner, .now_ms = now_ms, .lease_ms = lease_ms};
  if (!sq_run((sq_store_t *)store, op_job_renew, &ctx, error))
    return false;
  snprintf(job->lease_owner, sizeof job->lease_owner, "%s", owner);
  job->lease_until = now_ms + lease_ms;
  job->version++;
  return true;
}

static bool op_job_list_expired(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_job_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  bool ok = false;

  if (!sq_prepare_args(&stmt, db,
                       "SELECT " SQ_JOB_COLS " FROM jobs WHERE expires_at > 0 AND expires_at <= ?"
                       " ORDER BY expires_at, kind, job_id LIMIT ?",
                       (const sq_arg_t[]){SQ_INT(ctx->now_ms), SQ_INT(ctx->max), SQ_END}, error))
    goto done;
  ok = sq_rows_to_jobs(&ctx->list, &ctx->n_list, &ctx->more, stmt, db, ctx->max, error);
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_job_list_expired(store_job_t ***jobs, size_t *n_jobs, store_t *store,
                                int64_t now_ms, size_t max, fzip_error_t *error) {
  sq_job_ctx_t ctx = {.now_ms = now_ms, .max = max};
  if (!sq_run((sq_store_t *)store, op_job_list_expired, &ctx, error))
    return false;
  *jobs = ctx.list;
  *n_jobs = ctx.n_list;
  return true;
}

/* ---- blobs: shared ------------------------------------------------------- */

typedef struct {
  store_bucket_t bucket;
  const char *blob_id;
  int64_t key;         /* blob_key of the row concerned */
  int64_t n;           /* chunk number */
  const void *data;    /* chunks to write, from n on */
  size_t len;
  void *buf;           /* where a chunk read goes (len bytes) */
  uint64_t chunk_size; /* the blob's (blobs.chunk_size) */
  store_blob_info_t info;
  int64_t now_ms;
  uint64_t deleted;
} sq_blob_ctx_t;

/* Finds the committed blob (bucket, id); *found false if there is none. */
static bool sq_find_committed(bool *found, sq_blob_ctx_t *ctx, sqlite3 *db, fzip_error_t *error) {
  sqlite3_stmt *stmt = NULL;
  bool ok = false;

  if (!sq_prepare_args(&stmt, db,
                       "SELECT blob_key, size, sha256, chunk_size FROM " SQ_BLOBS
                       " WHERE bucket = ? AND blob_id = ? AND committed = 1",
                       (const sq_arg_t[]){SQ_INT(ctx->bucket), SQ_TEXT(ctx->blob_id), SQ_END},
                       error) ||
      !sq_step_row(found, stmt, db, "reading blob", error))
    goto done;
  if (*found) {
    ctx->key = sqlite3_column_int64(stmt, 0);
    ctx->info.size = (uint64_t)sqlite3_column_int64(stmt, 1);
    sq_copy_text(ctx->info.sha256, sizeof ctx->info.sha256, stmt, 2);
    ctx->chunk_size = (uint64_t)sqlite3_column_int64(stmt, 3);
  }
  ok = true;
done:
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_delete_key(sqlite3 *db, int64_t key, fzip_error_t *error) {
  const sq_arg_t args[] = {SQ_INT(key), SQ_END};
  return sq_exec_args(NULL, db, "DELETE FROM " SQ_CHUNKS " WHERE blob_key = ?", args,
                      "deleting blob", error) &&
         sq_exec_args(NULL, db, "DELETE FROM " SQ_BLOBS " WHERE blob_key = ?", args, "deleting blob",
                      error);
}

static bool op_blob_delete_key(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_blob_ctx_t *ctx = vctx;
  return sq_delete_key(db, ctx->key, error);
}

/* ---- blobs: upload ------------------------------------------------------- */

typedef struct {
  store_blob_upload_t base;
  sq_store_t *s;
  store_bucket_t bucket;
  char *blob_id;
  int64_t key;
  bool committed;
} sq_upload_t;

/* ALREADY_EXISTS when a committed blob has the id (a writer starting or
 * committing one). */
static bool sq_check_absent(sq_blob_ctx_t *ctx, sqlite3 *db, fzip_error_t *error) {
  sq_blob_ctx_t other = {.bucket = ctx->bucket, .blob_id = ctx->blob_id};
  bool found = false;
  if (!sq_find_committed(&found, &other, db, error))
    return false;
  if (found)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS,
                          "blob %s already exists", ctx->blob_id);
  return true;
}

static bool op_blob_start(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_blob_ctx_t *ctx = vctx;
  if (!sq_check_absent(ctx, db, error) ||
      !sq_exec_args(NULL, db,
                    "INSERT INTO " SQ_BLOBS "(bucket, blob_id, committed, size, sha256, started_at,"
                    " chunk_size) VALUES (?, ?, 0, 0, '', ?, ?)",
                    (const sq_arg_t[]){SQ_INT(ctx->bucket), SQ_TEXT(ctx->blob_id),
                                       SQ_INT(ctx->now_ms), SQ_INT(STORE_BLOB_CHUNK), SQ_END},
                    "starting blob", error))
    return false;
  ctx->key = sqlite3_last_insert_rowid(db);
  return true;
}

static void sq_upload_destroy(store_blob_upload_t *upload) {
  sq_upload_t *u = (sq_upload_t *)upload;
  if (u->key && !u->committed) {
    /* Best effort: what fails here is left uncommitted for the reaper. */
    sq_blob_ctx_t ctx = {.key = u->key};
    fzip_error_t ignored = {0};
    sq_run_txn(u->s, op_blob_delete_key, &ctx, &ignored);
  }
  bson_free(u->blob_id);
  bson_free(u);
}

static bool sq_upload_new(store_blob_upload_t **out, store_t *store, store_bucket_t bucket,
                          const char *blob_id, fzip_error_t *error) {
  sq_upload_t *u = bson_malloc0(sizeof *u);
  sq_blob_ctx_t ctx = {.bucket = bucket, .blob_id = blob_id, .now_ms = fzip_now_ms()};

  u->base.vt = &sq_vtable;
  u->s = (sq_store_t *)store;
  u->bucket = bucket;
  u->blob_id = bson_strdup(blob_id);
  if (!sq_run_txn(u->s, op_blob_start, &ctx, error)) {
    sq_upload_destroy(&u->base);
    return false;
  }
  u->key = ctx.key;
  *out = &u->base;
  return true;
}

/* Chunks first_n, first_n + 1, ... cut from data every STORE_BLOB_CHUNK
 * bytes, through `stmt` (INSERT INTO chunks (blob_key, n, data)). */
static bool sq_insert_chunks(sqlite3_stmt *stmt, sqlite3 *db, int64_t key, int64_t first_n,
                             const uint8_t *data, size_t len, fzip_error_t *error) {
  for (size_t off = 0; off < len; off += STORE_BLOB_CHUNK)
    if (!sq_step_args(NULL, stmt, db,
                      (const sq_arg_t[]){SQ_INT(key),
                                         SQ_INT(first_n + (int64_t)(off / STORE_BLOB_CHUNK)),
                                         SQ_BLOB(data + off, store_chunk_len(len, off)), SQ_END},
                      "writing blob chunk", error))
      return false;
  return true;
}

/* The chunks are written in one transaction (one commit for the batch,
 * STORE_BLOB_BATCH), and kept only if their blob row is still uncommitted,
 * so a writer whose blob the reaper removed cannot leave orphan chunks
 * (sq_run rolls the batch back).  A deferred BEGIN, not sq_run_txn's
 * IMMEDIATE: the first INSERT takes the blob file's write lock only, so
 * blob writers and document writers do not wait for each other; the check
 * comes after the INSERTs because a read first would make the INSERT an
 * upgrade of a read transaction, which fails at once (SQLITE_BUSY) when
 * another writer committed meanwhile.  The
 * check is a statement of its own and each chunk a one-row INSERT: an
 * INSERT ... SELECT counts as a multi-row write, and SQLite gives such a
 * statement in a transaction a statement journal, a temporary file (64 KiB
 * pages spill it at once) made, written and unlinked per batch. */
static bool op_blob_chunks(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_blob_ctx_t *ctx = vctx;
  const uint8_t *p = ctx->data;
  sqlite3_stmt *stmt = NULL;
  bool found = false, ok;

  if (!sq_exec(db, "BEGIN", error) ||
      !sq_prepare(&stmt, db, "INSERT INTO " SQ_CHUNKS "(blob_key, n, data) VALUES (?, ?, ?)",
                  error))
    return false;
  ok = sq_insert_chunks(stmt, db, ctx->key, ctx->n, p, ctx->len, error);
  sqlite3_finalize(stmt);
  stmt = NULL;
  ok = ok &&
       sq_prepare_args(&stmt, db, "SELECT 1 FROM " SQ_BLOBS " WHERE blob_key = ? AND committed = 0",
                       (const sq_arg_t[]){SQ_INT(ctx->key), SQ_END}, error) &&
       sq_step_row(&found, stmt, db, "writing blob chunk", error);
  sqlite3_finalize(stmt);
  if (ok && !found)
    ok = fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED,
                        "blob was removed while being written (reaped as abandoned?)");
  return ok && sq_exec(db, "COMMIT", error);
}

static bool sq_upload_chunks(store_blob_upload_t *upload, int64_t n, const void *data,
                             size_t len, fzip_error_t *error) {
  sq_upload_t *u = (sq_upload_t *)upload;
  sq_blob_ctx_t ctx = {.key = u->key, .n = n, .data = data, .len = len};
  return sq_run(u->s, op_blob_chunks, &ctx, error);
}

static bool op_blob_commit(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_blob_ctx_t *ctx = vctx;
  uint64_t committed = 0;

  if (!sq_check_absent(ctx, db, error) ||
      !sq_exec_args(&committed, db,
                    "UPDATE " SQ_BLOBS " SET committed = 1, size = ?, sha256 = ?"
                    " WHERE blob_key = ? AND committed = 0",
                    (const sq_arg_t[]){SQ_INT(ctx->info.size), SQ_TEXT(ctx->info.sha256),
                                       SQ_INT(ctx->key), SQ_END},
                    "committing blob", error))
    return false;
  if (committed == 0)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ABORTED,
                          "blob %s was removed before it was committed", ctx->blob_id);
  return true;
}

static bool sq_upload_commit(store_blob_upload_t *upload, const store_blob_info_t *info,
                             fzip_error_t *error) {
  sq_upload_t *u = (sq_upload_t *)upload;
  sq_blob_ctx_t ctx = {.bucket = u->bucket, .blob_id = u->blob_id, .key = u->key, .info = *info};

  if (!sq_run_txn(u->s, op_blob_commit, &ctx, error))
    return false;
  u->committed = true;
  return true;
}

/* Whole small blobs (store_backend.h blob_put): their rows, committed,
 * and their chunks in one transaction, where the upload above takes three
 * per blob (the uncommitted row, the chunks, the commit), each rewriting
 * the 64 KiB pages it touched: ~1 MiB of WAL per bank file of ~20 KiB,
 * the restore of 5,000 of them ~2 s (docs/STORAGE.md "Blobs").  A deferred
 * BEGIN as in op_blob_chunks, and no read before the first INSERT for the
 * same reason; the committed-id unique index is the ALREADY_EXISTS check. */
typedef struct {
  store_bucket_t bucket;
  const store_blob_part_t *blobs;
  const store_blob_info_t *infos;
  size_t n;
  int64_t now_ms;
} sq_put_blobs_t;

static bool sq_put_one_blob(sqlite3 *db, sqlite3_stmt *row, sqlite3_stmt *chunk,
                            const sq_put_blobs_t *ctx, size_t i, fzip_error_t *error) {
  const store_blob_part_t *b = &ctx->blobs[i];
  int64_t key;

  if (!sq_step_args(NULL, row, db,
                    (const sq_arg_t[]){SQ_INT(ctx->bucket), SQ_TEXT(b->blob_id),
                                       SQ_INT(ctx->infos[i].size), SQ_TEXT(ctx->infos[i].sha256),
                                       SQ_INT(ctx->now_ms), SQ_INT(STORE_BLOB_CHUNK), SQ_END},
                    "storing blob", error)) {
    if (error->code == FZIP_ERR_ALREADY_EXISTS)
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_ALREADY_EXISTS, "blob %s already exists",
                     b->blob_id);
    return false;
  }
  key = sqlite3_last_insert_rowid(db);
  return sq_insert_chunks(chunk, db, key, 0, b->data, b->len, error);
}

static bool op_blob_put(sqlite3 *db, void *vctx, fzip_error_t *error) {
  const sq_put_blobs_t *ctx = vctx;
  sqlite3_stmt *row = NULL, *chunk = NULL;
  bool ok = sq_exec(db, "BEGIN", error) &&
            sq_prepare(&row, db,
                       "INSERT INTO " SQ_BLOBS "(bucket, blob_id, committed, size, sha256,"
                       " started_at, chunk_size) VALUES (?, ?, 1, ?, ?, ?, ?)",
                       error) &&
            sq_prepare(&chunk, db, "INSERT INTO " SQ_CHUNKS "(blob_key, n, data) VALUES (?, ?, ?)",
                       error);

  for (size_t i = 0; ok && i < ctx->n; i++)
    ok = sq_put_one_blob(db, row, chunk, ctx, i, error);
  sqlite3_finalize(row);
  sqlite3_finalize(chunk);
  return ok && sq_exec(db, "COMMIT", error);
}

static bool sq_blob_put(store_t *store, store_bucket_t bucket, const store_blob_part_t *blobs,
                        const store_blob_info_t *infos, size_t n, fzip_error_t *error) {
  sq_put_blobs_t ctx = {bucket, blobs, infos, n, fzip_now_ms()};
  return sq_run((sq_store_t *)store, op_blob_put, &ctx, error);
}

/* ---- blobs: download ----------------------------------------------------- */

typedef struct {
  store_blob_download_t base;
  sq_store_t *s;
  int64_t key;
  uint64_t chunk_size;
} sq_download_t;

static bool op_blob_find(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_blob_ctx_t *ctx = vctx;
  bool found = false;
  if (!sq_find_committed(&found, ctx, db, error))
    return false;
  if (!found)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND, "blob %s not found",
                          ctx->blob_id);
  return true;
}

static void sq_download_destroy(store_blob_download_t *download) {
  bson_free(download);
}

static bool sq_download_new(store_blob_download_t **out, store_blob_info_t *info,
                            uint64_t *chunk_size, store_t *store, store_bucket_t bucket,
                            const char *blob_id, fzip_error_t *error) {
  sq_blob_ctx_t ctx = {.bucket = bucket, .blob_id = blob_id};
  sq_download_t *d;

  if (!sq_run((sq_store_t *)store, op_blob_find, &ctx, error))
    return false;
  d = bson_malloc0(sizeof *d);
  d->base.vt = &sq_vtable;
  d->s = (sq_store_t *)store;
  d->key = ctx.key;
  d->chunk_size = ctx.chunk_size;
  *info = ctx.info;
  *chunk_size = ctx.chunk_size;
  *out = &d->base;
  return true;
}

/* Reads chunks ctx->n, ctx->n + 1, ... into ctx->buf (ctx->len bytes):
 * their rowids from the (blob_key, n) primary key in one pass, then each
 * value from its pages straight into the buffer (sqlite3_blob_read; a
 * SELECT of the value would copy it into a buffer of SQLite's first),
 * through one blob handle moved from row to row (sqlite3_blob_reopen,
 * which compiles nothing).  One read transaction, so no row can go
 * between the two: the SELECT's own, which lasts while it is not reset
 * (finalized at the end), and which a snapshot view's connection already
 * has; no BEGIN and COMMIT of our own to parse for every call. */
static bool op_blob_read_chunks(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_blob_ctx_t *ctx = vctx;
  sqlite3_stmt *stmt = NULL;
  sqlite3_blob *blob = NULL;
  uint8_t *dst = ctx->buf;
  size_t at = 0;
  bool ok = false;

  if (!sq_prepare_args(&stmt, db,
                       "SELECT n, rowid FROM " SQ_CHUNKS
                       " WHERE blob_key = ? AND n >= ? ORDER BY n",
                       (const sq_arg_t[]){SQ_INT(ctx->key), SQ_INT(ctx->n), SQ_END}, error))
    goto done;
  for (int64_t n = ctx->n; at < ctx->len; n++) {
    bool row = false;
    size_t bytes;
    int rc;

    if (!sq_step_row(&row, stmt, db, "reading blob chunk", error))
      goto done;
    if (!row || sqlite3_column_int64(stmt, 0) != n) {
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_NOT_FOUND,
                     "blob chunk %lld is gone (blob deleted while read?)", (long long)n);
      goto done;
    }
    rc = blob ? sqlite3_blob_reopen(blob, sqlite3_column_int64(stmt, 1))
              : sqlite3_blob_open(db, SQ_BLOB_SCHEMA, "blob_chunks", "data",
                                  sqlite3_column_int64(stmt, 1), 0, &blob);
    if (rc != SQLITE_OK) {
      sq_fail(error, db, rc, "opening blob chunk");
      goto done;
    }
    /* Every chunk but the last read is a whole chunk, and the last ends
     * the range exactly. */
    bytes = (size_t)sqlite3_blob_bytes(blob);
    if (bytes != store_chunk_len_of(ctx->len, at, ctx->chunk_size)) {
      fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                     "blob chunk %lld is of the wrong size", (long long)n);
      goto done;
    }
    rc = sqlite3_blob_read(blob, dst + at, (int)bytes, 0);
    if (rc != SQLITE_OK) {
      sq_fail(error, db, rc, "reading blob chunk");
      goto done;
    }
    at += bytes;
  }
  ok = true;
done:
  sqlite3_blob_close(blob);
  sqlite3_finalize(stmt);
  return ok;
}

static bool sq_download_chunks(store_blob_download_t *download, int64_t n, size_t len,
                               uint8_t *dst, fzip_error_t *error) {
  sq_download_t *d = (sq_download_t *)download;
  sq_blob_ctx_t ctx = {
      .key = d->key, .n = n, .buf = dst, .len = len, .chunk_size = d->chunk_size};

  if (len > STORE_BLOB_READ_CHUNKS * d->chunk_size)
    return fzip_error_set(error, FZIP_DOMAIN_STORE, FZIP_ERR_DATA_LOSS,
                          "blob chunks from %lld: %zu bytes wanted, %d chunks of %llu at most",
                          (long long)n, len, STORE_BLOB_READ_CHUNKS,
                          (unsigned long long)d->chunk_size);
  return sq_run(d->s, op_blob_read_chunks, &ctx, error);
}

/* ---- blobs: stat, delete, reap ------------------------------------------- */

static bool sq_blob_stat(store_blob_info_t *info, store_t *store, store_bucket_t bucket,
                         const char *blob_id, fzip_error_t *error) {
  sq_blob_ctx_t ctx = {.bucket = bucket, .blob_id = blob_id};
  if (!sq_run((sq_store_t *)store, op_blob_find, &ctx, error))
    return false;
  *info = ctx.info;
  return true;
}

static bool op_blob_delete(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_blob_ctx_t *ctx = vctx;
  bool found = false;

  if (!sq_find_committed(&found, ctx, db, error))
    return false;
  return !found || sq_delete_key(db, ctx->key, error);
}

static bool sq_blob_delete(store_t *store, store_bucket_t bucket, const char *blob_id,
                           fzip_error_t *error) {
  sq_blob_ctx_t ctx = {.bucket = bucket, .blob_id = blob_id};
  return sq_run_txn((sq_store_t *)store, op_blob_delete, &ctx, error);
}

static bool op_blob_reap(sqlite3 *db, void *vctx, fzip_error_t *error) {
  sq_blob_ctx_t *ctx = vctx;
  const sq_arg_t args[] = {SQ_INT(ctx->now_ms), SQ_END};
  ctx->deleted = 0;
  return sq_exec_args(NULL, db,
                      "DELETE FROM " SQ_CHUNKS " WHERE blob_key IN"
                      " (SELECT blob_key FROM " SQ_BLOBS " WHERE committed = 0 AND started_at < ?)",
                      args, "reaping blobs", error) &&
         sq_exec_args(&ctx->deleted, db,
                      "DELETE FROM " SQ_BLOBS " WHERE committed = 0 AND started_at < ?", args,
                      "reaping blobs", error);
}

static bool sq_blob_reap_uncommitted(uint64_t *deleted, store_t *store, int64_t older_than_ms,
                                     fzip_error_t *error) {
  sq_blob_ctx_t ctx = {.now_ms = older_than_ms};
  if (!sq_run_txn((sq_store_t *)store, op_blob_reap, &ctx, error))
    return false;
  if (deleted)
    *deleted = ctx.deleted;
  return true;
}

static const store_vtable_t sq_vtable = {
    .name = "sqlite",
    .destroy = sq_destroy,
    .ping = sq_ping,
    .release_memory = sq_release_memory,
    .cursor_new = sq_cursor_new,
    .cursor_next = sq_cursor_next,
    .cursor_destroy = sq_cursor_destroy,
    .entity_count = sq_entity_count,
    .entity_get = sq_entity_get,
    .entity_put_batch = sq_entity_put_batch,
    .entity_exists_many = sq_entity_exists_many,
    .entity_get_many = sq_entity_get_many,
    .entity_delete_many = sq_entity_delete_many,
    .entity_delete_all = sq_entity_delete_all,
    .job_create = sq_job_create,
    .job_get = sq_job_get,
    .job_update = sq_job_update,
    .job_list = sq_job_list,
    .job_delete = sq_job_delete,
    .job_claim = sq_job_claim,
    .job_renew = sq_job_renew,
    .job_list_expired = sq_job_list_expired,
    .job_find_request = sq_job_find_request,
    .job_release_request = sq_job_release_request,
    .job_count_runnable = sq_job_count_runnable,
    .job_count_queued = sq_job_count_queued,
    .blob_upload_new = sq_upload_new,
    .blob_upload_chunks = sq_upload_chunks,
    .blob_upload_commit = sq_upload_commit,
    .blob_upload_destroy = sq_upload_destroy,
    .blob_put = sq_blob_put,
    .blob_download_new = sq_download_new,
    .blob_download_chunks = sq_download_chunks,
    .blob_download_destroy = sq_download_destroy,
    .blob_stat = sq_blob_stat,
    .blob_delete = sq_blob_delete,
    .blob_reap_uncommitted = sq_blob_reap_uncommitted,
    .entity_put_batch_tagged = sq_entity_put_batch_tagged,
    .import_rollback = sq_import_rollback,
    .import_commit = sq_import_commit,
    .import_begin = sq_import_begin,
    .import_end = sq_import_end,
    .import_pending = sq_import_pending,
    .stash_get = sq_stash_get,
    .import_release_reserve = sq_import_release_reserve,
    .import_marks = sq_import_marks,
    .import_lost = sq_import_lost,
    .snapshot_begin = sq_snapshot_begin,
    .snapshot_end = sq_snapshot_end,
    .changes_mark = sq_changes_mark,
    .deletions_page = sq_deletions_page,
};
