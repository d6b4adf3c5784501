/*
 * Heavy test (CTest label "heavy"): a package of 200,000 transactions (and
 * 200 files of 1 MiB) written from a real SQLite store must not grow the
 * process's peak resident memory (VmHWM) by more than HEAVY_RSS_BUDGET:
 * the writer streams, it never holds a collection.  Prints the figures.
 * FZIP_HEAVY_TRANSACTIONS overrides the count.
 */
#include <stdlib.h>
#include <unistd.h>

#include "export_source.h"
#include "fzip_test.h"
#include "pkg_writer.h"
#include "store.h"

#define USER "heavy-user"
#define HEAVY_TRANSACTIONS 200000
#define HEAVY_ACCOUNTS 20
#define HEAVY_FILES 200
#define HEAVY_FILE_BYTES (1024 * 1024)
#define HEAVY_RSS_BUDGET_KIB (48 * 1024) /* peak growth allowed while writing */

static char tmpdir[256];
static store_t *store;

static long vm_hwm_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmHWM:", 6) == 0)
      kib = strtol(line + 6, NULL, 10);
  }
  if (f)
    fclose(f);
  return kib;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0), so that the peak
 * measured afterwards is the writer's, not the store fill's. */
static bool reset_hwm(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  bool ok = f && fputs("5", f) >= 0;
  if (f && fclose(f) != 0)
    ok = false;
  return ok;
}

static bool put_docs(fzip_kind_t kind, bson_t **docs, size_t n, fzip_error_t *err) {
  bool ok = store_entity_put_batch(store, USER, kind, (const bson_t *const *)docs, n,
                                   STORE_WRITE_REPLACE, NULL, err);
  for (size_t i = 0; i < n; i++)
    bson_destroy(docs[i]);
  return ok;
}

static bool fill(uint64_t n_txn, fzip_error_t *err) {
  static bson_t *batch[STORE_BATCH_MAX];
  char id[64], acc[64], file[64], blob[128];
  size_t n = 0;
  char *bytes = malloc(HEAVY_FILE_BYTES);

  if (!bytes)
    return false;
  for (int a = 0; a < HEAVY_ACCOUNTS; a++) {
    snprintf(acc, sizeof acc, "acc-%04d", a);
    batch[n++] = BCON_NEW("accountId", acc, "accountName", "Heavy", "accountType", "checking",
                          "isActive", BCON_BOOL(true), "createdAt", BCON_INT64(1), "updatedAt",
                          BCON_INT64(1));
  }
  if (!put_docs(FZIP_KIND_ACCOUNT, batch, n, err))
    goto fail;
  n = 0;
  for (int f = 0; f < HEAVY_FILES; f++) {
    store_blob_writer_t *w = NULL;
    bool ok;
    snprintf(file, sizeof file, "file-%04d", f);
    snprintf(acc, sizeof acc, "acc-%04d", f % HEAVY_ACCOUNTS);
    snprintf(blob, sizeof blob, "%s/%s", USER, file);
    for (size_t i = 0; i < HEAVY_FILE_BYTES; i++)
      bytes[i] = (char)('a' + (i * 7 + (size_t)f) % 26); /* compressible, distinct per file */
    ok = store_blob_writer_new(&w, store, STORE_BUCKET_FILES, blob, err) &&
         store_blob_writer_write(w, bytes, HEAVY_FILE_BYTES, err) &&
         store_blob_writer_commit(w, NULL, err);
    store_blob_writer_destroy(w);
    if (!ok)
      goto fail;
    batch[n++] = BCON_NEW("fileId", file, "fileName", "statement.csv", "uploadDate",
                          BCON_INT64(1), "fileSize", BCON_INT64(HEAVY_FILE_BYTES), "s3Key", blob,
                          "processingStatus", "processed", "accountId", acc, "createdAt",
                          BCON_INT64(1), "updatedAt", BCON_INT64(1));
  }
  if (!put_docs(FZIP_KIND_TRANSACTION_FILE, batch, n, err))
    goto fail;
  n = 0;
  for (uint64_t t = 0; t < n_txn; t++) {
    snprintf(id, sizeof id, "txn-%09llu", (unsigned long long)t);
    snprintf(acc, sizeof acc, "acc-%04d", (int)(t % HEAVY_ACCOUNTS));
    snprintf(file, sizeof file, "file-%04d", (int)(t % HEAVY_FILES));
    batch[n++] = BCON_NEW("transactionId", id, "accountId", acc, "fileId", file, "date",
                          BCON_INT64(1700000000000 + (int64_t)t * 60000), "description",
                          "A fairly ordinary card payment description", "amount", "-12.34",
                          "currency", "USD", "importOrder", BCON_INT64((int64_t)t), "categories",
                          "[", "{", "categoryId", "cat-1", "status", "confirmed", "confidence",
                          BCON_INT32(100), "isManual", BCON_BOOL(false), "assignedAt",
                          BCON_INT64(1), "}", "]", "createdAt", BCON_INT64(1), "updatedAt",
                          BCON_INT64(1));
    if (n == STORE_BATCH_MAX || t + 1 == n_txn) {
      if (!put_docs(FZIP_KIND_TRANSACTION, batch, n, err))
        goto fail;
      n = 0;
    }
  }
  free(bytes);
  return true;
fail:
  free(bytes);
  return false;
}

static void test_writing_200k_transactions_keeps_memory_bounded(void) {
  fzip_error_t err = {0};
  const char *env = getenv("FZIP_HEAVY_TRANSACTIONS");
  uint64_t n_txn = env ? strtoull(env, NULL, 10) : HEAVY_TRANSACTIONS;
  pkg_selection_t sel = {.export_type = PKG_EXPORT_COMPLETE};
  pkg_options_t opt = {.export_timestamp_ms = 1, .temp_dir = tmpdir};
  pkg_result_t res;
  char pkg[512];
  long before, after;
  int64_t t0, t1, t2;

  snprintf(pkg, sizeof pkg, "%s/heavy.fzip", tmpdir);
  t0 = fzip_monotonic_ms();
  CHECK_OK(fill(n_txn, &err), err);
  t1 = fzip_monotonic_ms();
  CHECK(reset_hwm());
  before = vm_hwm_kib();
  CHECK_OK(export_source_write_file(&res, store, USER, &sel, &opt, pkg, &err), err);
  t2 = fzip_monotonic_ms();
  after = vm_hwm_kib();
  fprintf(stderr,
          "  heavy: %llu transactions, %d files x %d MiB: store fill %.1f s; package written "
          "in %.1f s, %.1f MiB; VmHWM %.1f -> %.1f MiB (growth %.1f MiB, budget %d MiB)\n",
          (unsigned long long)n_txn, HEAVY_FILES, HEAVY_FILE_BYTES >> 20, (t1 - t0) / 1000.0,
          (t2 - t1) / 1000.0, res.package_size / 1048576.0, before / 1024.0, after / 1024.0,
          (after - before) / 1024.0, HEAVY_RSS_BUDGET_KIB / 1024);
  CHECK(res.counts[FZIP_KIND_TRANSACTION] == n_txn);
  CHECK(res.files_count == HEAVY_FILES && res.files_bytes == (uint64_t)HEAVY_FILES * HEAVY_FILE_BYTES);
  CHECK(before > 0 && after - before < HEAVY_RSS_BUDGET_KIB);
  {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "unzip -tq '%s' >/dev/null && /usr/bin/python3 %s/check_package.py '%s' >&2",
             pkg, FZIP_PKG_TEST_DIR, pkg);
    CHECK(system(cmd) == 0);
  }
}

int main(void) {
  fzip_error_t err = {0};
  store_options_t so = {0};
  char uri[512], cmd[600];
  int rc;

  snprintf(tmpdir, sizeof tmpdir, "%s/fzip-pkg-heavy-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(tmpdir))
    return 2;
  snprintf(uri, sizeof uri, "sqlite:%s/store.db", tmpdir);
  so.uri = uri;
  if (!store_open(&store, &so, &err)) {
    fprintf(stderr, "store: %s\n", err.message);
    return 2;
  }
  RUN(test_writing_200k_transactions_keeps_memory_bounded);
  rc = fzip_test_summary();
  store_destroy(store);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    return 1;
  return rc;
}
