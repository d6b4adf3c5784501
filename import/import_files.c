/*
 * import_files: see import_files.h.
 *
 * The list is one growing buffer of "file_id\0key\0" pairs, read in order
 * by the thread once started (nothing is added after): no lock for it.
 * The thread's end (done, failed, its error) is under the mutex; the stop
 * flag and the counters are atomics, read by the restore between batches.
 */
#include "import_files.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_failpoint.h"
#include "fzip_util.h"

#define FILES_WHAT "import files" /* names the list in its errors */
#define FILES_LIST_MIN 4096       /* bytes of the list's first allocation */

struct import_files {
  store_t *store;
  atomic_uint_fast64_t *done; /* the caller's progress, may be NULL */
  char *list;                 /* "file_id\0key\0" pairs */
  size_t len, cap;
  pkgr_t *pkg; /* the thread's once started */
  pthread_t thread;
  bool started; /* a thread was created: destroy joins it */
  atomic_bool stop;
  atomic_int_fast64_t files, bytes;
  pthread_mutex_t mu;
  pthread_cond_t cond; /* the thread ended */
  bool ended, failed;  /* under mu */
  fzip_error_t error;  /* the failed copy's; written before `ended` */
};

bool import_files_copy(store_t *store, const char *key, import_files_read_fn read, void *src,
                       int64_t *written, fzip_error_t *error) {
  store_blob_writer_t *w = NULL;
  unsigned char *buf = NULL;
  bool ok = false;

  *written = 0;
  /* A rerun after an interruption may find this blob committed already. */
  if (!store_blob_delete(store, STORE_BUCKET_FILES, key, error))
    return false;
  buf = malloc(IMPORT_FILES_COPY_CHUNK);
  if (!buf)
    return fzip_error_oom(error, NULL);
  if (!store_blob_writer_new(&w, store, STORE_BUCKET_FILES, key, error))
    goto done;
  for (;;) {
    size_t n = 0;
    if (!read(src, buf, IMPORT_FILES_COPY_CHUNK, &n, error))
      goto done;
    if (n == 0)
      break;
    if (!store_blob_writer_write(w, buf, n, error))
      goto done;
    *written += (int64_t)n;
  }
  ok = store_blob_writer_commit(w, NULL, error);
done:
  store_blob_writer_destroy(w);
  free(buf);
  return ok;
}

bool import_files_new(import_files_t **out, store_t *store, atomic_uint_fast64_t *done,
                      fzip_error_t *error) {
  import_files_t *f = calloc(1, sizeof *f);

  *out = NULL;
  if (!f)
    return fzip_error_oom(error, FILES_WHAT);
  f->store = store;
  f->done = done;
  atomic_init(&f->stop, false);
  atomic_init(&f->files, 0);
  atomic_init(&f->bytes, 0);
  if (pthread_mutex_init(&f->mu, NULL) != 0) {
    free(f);
    return fzip_error_oom(error, FILES_WHAT);
  }
  if (fzip_cond_init_monotonic(&f->cond) != 0) { /* import_files_wait's deadline */
    pthread_mutex_destroy(&f->mu);
    free(f);
    return fzip_error_oom(error, FILES_WHAT);
  }
  *out = f;
  return true;
}

void import_files_destroy(import_files_t *f) {
  if (!f)
    return;
  if (f->started) {
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
  }
  pkgr_destroy(f->pkg);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->mu);
  free(f->list);
  free(f);
}

bool import_files_add(import_files_t *f, const char *file_id, const char *key,
                      fzip_error_t *error) {
  size_t id_len = strlen(file_id) + 1, key_len = strlen(key) + 1;
  size_t need = f->len + id_len + key_len;

  if (f->started)
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INTERNAL,
                          "%s: a file added after the copies started", FILES_WHAT);
  if (need > f->cap) {
    size_t cap = f->cap ? f->cap : FILES_LIST_MIN;
    char *grown;
    while (cap < need)
      cap *= 2;
    grown = realloc(f->list, cap);
    if (!grown)
      return fzip_error_oom(error, FILES_WHAT);
    f->list = grown;
    f->cap = cap;
  }
  memcpy(f->list + f->len, file_id, id_len);
  memcpy(f->list + f->len + id_len, key, key_len);
  f->len = need;
  return true;
}

static bool read_package_file(void *src, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  return pkgr_file_read(src, buf, cap, n, error);
}

/* One file's bytes from the package into its blob.  Failpoint
 * import.file_bytes: a copy that fails (tests/import). */
static bool copy_one(import_files_t *f, const char *file_id, const char *key,
                     fzip_error_t *error) {
  pkgr_file_t *pf = NULL;
  int64_t n = 0;
  bool ok = fzip_failpoint("import.file_bytes", error) &&
            pkgr_file_open(&pf, f->pkg, file_id, error) &&
            import_files_copy(f->store, key, read_package_file, pf, &n, error);

  pkgr_file_destroy(pf);
  if (!ok)
    return false;
  atomic_fetch_add(&f->files, 1);
  atomic_fetch_add(&f->bytes, n);
  if (f->done)
    atomic_fetch_add(f->done, 1);
  return true;
}

static void *files_main(void *arg) {
  import_files_t *f = arg;
  fzip_error_t err;
  size_t at = 0;
  bool ok = true;

  fzip_error_clear(&err);
  while (ok && at < f->len && !atomic_load(&f->stop)) {
    const char *file_id = f->list + at;
    const char *key = file_id + strlen(file_id) + 1;
    at = (size_t)(key - f->list) + strlen(key) + 1;
    ok = copy_one(f, file_id, key, &err);
  }
  /* The package goes now, not at destroy: the restore goes on for a
   * while, and its directory is megabytes at thousands of files. */
  pkgr_destroy(f->pkg);
  f->pkg = NULL;
  pthread_mutex_lock(&f->mu);
  if (!ok) {
    f->error = err;
    f->failed = true;
  }
  f->ended = true;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

bool import_files_start(import_files_t *f, pkgr_t *pkg, fzip_error_t *error) {
  int rc;

  if (f->started) {
    pkgr_destroy(pkg);
    return fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_INTERNAL, "%s: started twice",
                          FILES_WHAT);
  }
  if (f->len == 0) {
    pkgr_destroy(pkg);
    return true;
  }
  f->pkg = pkg;
  if ((rc = pthread_create(&f->thread, NULL, files_main, f)) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "starting the file copies' thread: %s", strerror(rc));
  f->started = true;
  return true;
}

bool import_files_wait(import_files_t *f, int ms, bool *done, fzip_error_t *error) {
  struct timespec deadline = fzip_monotonic_deadline(ms);
  bool ok = true;

  *done = true;
  if (!f->started)
    return true;
  pthread_mutex_lock(&f->mu);
  while (!f->ended) {
    if (pthread_cond_timedwait(&f->cond, &f->mu, &deadline) == ETIMEDOUT)
      break;
  }
  *done = f->ended && !f->failed;
  if (f->failed) {
    *error = f->error;
    ok = false;
  }
  pthread_mutex_unlock(&f->mu);
  return ok;
}

bool import_files_failed(import_files_t *f, fzip_error_t *error) {
  bool failed;

  pthread_mutex_lock(&f->mu);
  failed = f->failed;
  if (failed)
    *error = f->error;
  pthread_mutex_unlock(&f->mu);
  return failed;
}

void import_files_counts(import_files_t *f, int64_t *files, int64_t *bytes) {
  *files = (int64_t)atomic_load(&f->files);
  *bytes = (int64_t)atomic_load(&f->bytes);
}
