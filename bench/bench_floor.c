/*
 * bench_floor: what this machine and this store can do at best, measured
 * on the same data as the fzipd run beside it, so that every benchmark
 * figure is a ratio to a floor rather than an absolute number on a noisy,
 * shared machine.
 *
 *   bench_floor export STORE_URI USER PACKAGE
 *       store_cursor_* over every kind of USER, a read of every
 *       transaction file blob, and zlib deflate (PKG_COMPRESSION_LEVEL,
 *       raw, as in a zip) + sha256 of every entry's uncompressed bytes of
 *       PACKAGE (the JSON and file bytes the export wrote).  Only those
 *       steps are timed: unpacking PACKAGE to get the bytes is not.
 *       Then the two-core floor ("floor2_s"): the same scan and blob
 *       reads on one thread while the main thread hashes the same entry
 *       bytes and deflates them through pkg_deflate on every core
 *       (pkg_deflate_threads_auto(), the export's default), timed from
 *       start to both done; the entries are unpacked into a temporary
 *       file first (not timed) and read back from it.
 *   bench_floor import STORE_URI SRC_USER DST_USER PACKAGE
 *       store_entity_put_batch (INSERT, STORE_BATCH_MAX per call) of every
 *       document of SRC_USER into the empty DST_USER, a write of every
 *       transaction file blob (as the import writes them: those of at
 *       most STORE_BLOB_BATCH bytes together, store_blob_put_many, since
 *       run AG), then sha256 of PACKAGE's bytes and inflate
 *       (libzip) + sha256 of every entry.  Reading the source documents is
 *       not timed; DST_USER is emptied again afterwards (not timed).
 *   bench_floor blob-read STORE_URI BLOB_ID        (bucket: packages)
 *   bench_floor blob-write STORE_URI FILE          (written, then deleted)
 *
 * Each prints one JSON object with seconds per step and bytes; every
 * floor but the export's floor2_s is single-threaded.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#include "fzip_entity.h"
#include "fzip_error.h"
#include "fzip_util.h"
#include "pkg_deflate.h"
#include "pkg_writer.h"
#include "store.h"

#define FLOOR_CHUNK (1024 * 1024) /* bytes per blob / entry read */
#define FLOOR_FILES_MAX PKG_FILES_MAX

typedef struct {
  double scan, blob, deflate, sha256, put, inflate;
  uint64_t docs, doc_bytes, blob_bytes, entry_bytes, json_bytes, package_bytes, files;
} floor_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const fzip_error_t *error) {
  fprintf(stderr, "bench_floor: %s\n", error->message);
  return 1;
}

static bool open_store(store_t **out, const char *uri, fzip_error_t *error) {
  store_options_t o = {0};
  o.uri = uri;
  return store_open(out, &o, error);
}

/* The blob ids of USER's transaction files ("s3Key"), caller frees. */
static bool list_file_blobs(char ***ids, size_t *n, store_t *store, const char *user,
                            fzip_error_t *error) {
  store_cursor_t *cur = NULL;
  const bson_t *doc = NULL;
  bson_iter_t it;
  bool ok = false;
  *ids = calloc(FLOOR_FILES_MAX, sizeof **ids);
  *n = 0;
  if (!*ids)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "out of memory");
  if (!store_cursor_new(&cur, store, user, FZIP_KIND_TRANSACTION_FILE, NULL, error))
    goto done;
  while (store_cursor_next(cur, &doc, error)) {
    if (*n < FLOOR_FILES_MAX && bson_iter_init_find(&it, doc, "s3Key") && BSON_ITER_HOLDS_UTF8(&it))
      (*ids)[(*n)++] = strdup(bson_iter_utf8(&it, NULL));
  }
  ok = !fzip_error_is_set(error);
done:
  store_cursor_destroy(cur);
  return ok;
}

static void free_ids(char **ids, size_t n) {
  for (size_t i = 0; ids && i < n; i++)
    free(ids[i]);
  free(ids);
}

/* Reads a whole blob; *seconds gets the time spent in the blob API only. */
static bool read_blob(uint64_t *bytes, double *seconds, store_t *store, store_bucket_t bucket,
                      const char *id, unsigned char *buf, fzip_error_t *error) {
  store_blob_reader_t *r = NULL;
  size_t n = 0;
  bool ok = false;
  double t0 = now_s();
  if (!store_blob_reader_new(&r, store, bucket, id, 0, error))
    goto done;
  do {
    if (!store_blob_reader_read(r, buf, FLOOR_CHUNK, &n, error))
      goto done;
    *bytes += n;
  } while (n > 0);
  ok = true;
done:
  store_blob_reader_destroy(r);
  *seconds += now_s() - t0;
  return ok;
}

/* Deflates (raw, PKG_COMPRESSION_LEVEL) and hashes one entry's bytes as they come out of
 * the package; only the deflate and sha256 calls are timed. */
static bool deflate_entry(floor_t *f, zip_t *za, zip_uint64_t index, unsigned char *in,
                          unsigned char *out, fzip_error_t *error) {
  z_stream z;
  zip_file_t *zf = NULL;
  fzip_sha256_t *h = fzip_sha256_new();
  zip_int64_t n = 0;
  bool ok = false;
  const char *name = zip_get_name(za, index, 0);
  bool json = name && strncmp(name, "data/", 5) == 0;
  memset(&z, 0, sizeof z);
  if (!h || deflateInit2(&z, PKG_COMPRESSION_LEVEL, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "deflateInit failed");
  zf = zip_fopen_index(za, index, 0);
  if (!zf) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "zip_fopen_index: %s",
                   zip_strerror(za));
    goto done;
  }
  for (;;) {
    n = zip_fread(zf, in, FLOOR_CHUNK);
    if (n < 0) {
      fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "zip_fread failed");
      goto done;
    }
    double t0 = now_s();
    z.next_in = in;
    z.avail_in = (uInt)n;
    int flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
    int zr = Z_OK;
    do {
      z.next_out = out;
      z.avail_out = FLOOR_CHUNK;
      zr = deflate(&z, flush);
    } while (z.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
    double t1 = now_s();
    fzip_sha256_update(h, in, (size_t)n);
    f->sha256 += now_s() - t1;
    f->deflate += t1 - t0;
    f->entry_bytes += (uint64_t)n;
    if (json)
      f->json_bytes += (uint64_t)n;
    if (n == 0)
      break;
  }
  ok = true;
done:
  if (zf)
    zip_fclose(zf);
  deflateEnd(&z);
  fzip_sha256_destroy(h);
  return ok;
}

/* ---- two-core export floor -------------------------------------------- */

/* What the scan thread of the two-core floor reads, on a store of its own. */
typedef struct {
  const char *uri, *user;
  char **ids;
  size_t n_ids;
  double seconds; /* its own wall time */
  fzip_error_t error;
  bool ok;
} scan_job_t;

static void *scan_main(void *arg) {
  scan_job_t *j = arg;
  store_t *store = NULL;
  store_cursor_t *cur = NULL;
  const bson_t *doc = NULL;
  unsigned char *buf = malloc(FLOOR_CHUNK);
  uint64_t bytes = 0;
  double blob_s = 0, t0 = now_s();

  if (!buf || !open_store(&store, j->uri, &j->error))
    goto done;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    if (!store_cursor_new(&cur, store, j->user, (fzip_kind_t)k, NULL, &j->error))
      goto done;
    while (store_cursor_next(cur, &doc, &j->error))
      ;
    store_cursor_destroy(cur);
    cur = NULL;
    if (fzip_error_is_set(&j->error))
      goto done;
  }
  for (size_t i = 0; i < j->n_ids; i++)
    if (!read_blob(&bytes, &blob_s, store, STORE_BUCKET_FILES, j->ids[i], buf, &j->error))
      goto done;
  j->ok = true;
done:
  store_destroy(store);
  free(buf);
  j->seconds = now_s() - t0;
  return NULL;
}

/* Every entry's uncompressed bytes, back to back, with their lengths. */
static bool unpack_entries(FILE *out, uint64_t *lens, zip_t *za, zip_int64_t entries,
                           unsigned char *buf, fzip_error_t *error) {
  for (zip_int64_t i = 0; i < entries; i++) {
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)i, 0);
    zip_int64_t n;
    if (!zf)
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "zip_fopen_index");
    lens[i] = 0;
    while ((n = zip_fread(zf, buf, FLOOR_CHUNK)) > 0) {
      if (fwrite(buf, 1, (size_t)n, out) != (size_t)n) {
        zip_fclose(zf);
        return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "writing temp file");
      }
      lens[i] += (uint64_t)n;
    }
    zip_fclose(zf);
    if (n < 0)
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "zip_fread failed");
  }
  return fflush(out) == 0 || fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "flush");
}

static bool count_out(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  *(uint64_t *)ctx += len;
  return true;
}

/* Hashes and deflates (all cores) every entry read back from `in`. */
static bool deflate_entries(uint64_t *comp, FILE *in, const uint64_t *lens, zip_int64_t entries,
                            unsigned char *buf, fzip_error_t *error) {
  pkg_deflate_pool_t *pool = NULL;
  pkg_deflate_t *z = NULL;
  bool ok = pkg_deflate_pool_new(&pool, 0, PKG_COMPRESSION_LEVEL, error) &&
            pkg_deflate_new(&z, pool, error);

  for (zip_int64_t i = 0; ok && i < entries; i++) {
    fzip_sha256_t *h = fzip_sha256_new();
    uint64_t left = lens[i], size, csize;
    uint32_t crc;
    if (!h)
      ok = fzip_error_oom(error, "a SHA-256 context");
    pkg_deflate_begin(z, count_out, comp);
    while (ok && left > 0) {
      size_t n = fread(buf, 1, left < FLOOR_CHUNK ? (size_t)left : FLOOR_CHUNK, in);
      if (n == 0)
        ok = fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "reading temp file");
      else {
        fzip_sha256_update(h, buf, n);
        ok = pkg_deflate_write(z, buf, n, error);
        left -= n;
      }
    }
    ok = ok && pkg_deflate_finish(z, &crc, &size, &csize, error);
    fzip_sha256_destroy(h);
  }
  pkg_deflate_destroy(z);
  pkg_deflate_pool_destroy(pool);
  return ok;
}

/* The two-core floor: *seconds from the start of the scan thread and the
 * deflate to the end of both. */
static bool export_floor2(double *seconds, uint64_t *comp, const char *uri, const char *user,
                          char **ids, size_t n_ids, zip_t *za, unsigned char *buf,
                          fzip_error_t *error) {
  zip_int64_t entries = zip_get_num_entries(za, 0);
  uint64_t *lens = calloc(entries > 0 ? (size_t)entries : 1, sizeof *lens);
  FILE *tmp = tmpfile();
  scan_job_t job = {.uri = uri, .user = user, .ids = ids, .n_ids = n_ids};
  pthread_t scanner;
  bool ok = false, deflated;
  double t0;

  if (!lens) {
    fzip_error_oom(error, "the entry lengths");
    goto done;
  }
  if (!tmp) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "tmpfile: %s", strerror(errno));
    goto done;
  }
  if (!unpack_entries(tmp, lens, za, entries, buf, error))
    goto done;
  rewind(tmp);
  t0 = now_s();
  if (pthread_create(&scanner, NULL, scan_main, &job) != 0) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "pthread_create");
    goto done;
  }
  deflated = deflate_entries(comp, tmp, lens, entries, buf, error);
  pthread_join(scanner, NULL);
  *seconds = now_s() - t0;
  if (!job.ok && deflated)
    *error = job.error;
  ok = deflated && job.ok;
done:
  if (tmp)
    fclose(tmp);
  free(lens);
  return ok;
}

static int run_export(const char *uri, const char *user, const char *package) {
  fzip_error_t error = {0};
  store_t *store = NULL;
  store_cursor_t *cur = NULL;
  const bson_t *doc = NULL;
  char **ids = NULL;
  size_t n_ids = 0;
  zip_t *za = NULL;
  int zerr = 0;
  floor_t f;
  unsigned char *in = malloc(FLOOR_CHUNK), *out = malloc(FLOOR_CHUNK);
  int rc = 1;
  memset(&f, 0, sizeof f);
  if (!in || !out || !open_store(&store, uri, &error))
    goto done;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    double t0 = now_s();
    if (!store_cursor_new(&cur, store, user, (fzip_kind_t)k, NULL, &error))
      goto done;
    while (store_cursor_next(cur, &doc, &error)) {
      f.docs++;
      f.doc_bytes += doc->len;
    }
    store_cursor_destroy(cur);
    cur = NULL;
    f.scan += now_s() - t0;
    if (fzip_error_is_set(&error))
      goto done;
  }
  if (!list_file_blobs(&ids, &n_ids, store, user, &error))
    goto done;
  for (size_t i = 0; i < n_ids; i++)
    if (!read_blob(&f.blob_bytes, &f.blob, store, STORE_BUCKET_FILES, ids[i], in, &error))
      goto done;
  f.files = n_ids;
  za = zip_open(package, ZIP_RDONLY, &zerr);
  if (!za) {
    fzip_error_set(&error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: zip_open error %d", package,
                   zerr);
    goto done;
  }
  zip_int64_t entries = zip_get_num_entries(za, 0);
  for (zip_int64_t i = 0; i < entries; i++)
    if (!deflate_entry(&f, za, (zip_uint64_t)i, in, out, &error))
      goto done;
  double floor2 = 0;
  uint64_t comp2 = 0;
  if (!export_floor2(&floor2, &comp2, uri, user, ids, n_ids, za, in, &error))
    goto done;
  printf("{\"mode\": \"export\", \"docs\": %" PRIu64 ", \"doc_bytes\": %" PRIu64
         ", \"files\": %" PRIu64 ", \"blob_bytes\": %" PRIu64 ", \"entry_bytes\": %" PRIu64
         ", \"json_bytes\": %" PRIu64 ", \"scan_s\": %.4f, \"blob_read_s\": %.4f, "
         "\"deflate_s\": %.4f, \"sha256_s\": %.4f, \"floor_s\": %.4f, \"floor2_s\": %.4f, "
         "\"floor2_threads\": %u, \"floor2_deflated_bytes\": %" PRIu64 "}\n",
         f.docs, f.doc_bytes, f.files, f.blob_bytes, f.entry_bytes, f.json_bytes, f.scan, f.blob,
         f.deflate, f.sha256, f.scan + f.blob + f.deflate + f.sha256, floor2,
         pkg_deflate_threads_auto(), comp2);
  rc = 0;
done:
  if (za)
    zip_discard(za);
  store_cursor_destroy(cur);
  free_ids(ids, n_ids);
  store_destroy(store);
  free(in);
  free(out);
  return rc ? fail(&error) : 0;
}

/* ---- import floor ------------------------------------------------------ */

static bool put_kind(floor_t *f, store_t *store, const char *src, const char *dst, fzip_kind_t k,
                     fzip_error_t *error) {
  store_cursor_t *cur = NULL;
  const bson_t *doc = NULL;
  bson_t *batch[STORE_BATCH_MAX];
  size_t n = 0;
  bool ok = false, more = true;
  if (!store_cursor_new(&cur, store, src, k, NULL, error))
    return false;
  while (more) {
    more = store_cursor_next(cur, &doc, error);
    if (fzip_error_is_set(error))
      goto done;
    if (more) {
      batch[n++] = bson_copy(doc);
      f->docs++;
      f->doc_bytes += doc->len;
    }
    if (n == STORE_BATCH_MAX || (!more && n > 0)) {
      double t0 = now_s();
      bool put = store_entity_put_batch(store, dst, k, (const bson_t *const *)batch, n,
                                        STORE_WRITE_INSERT, NULL, error);
      f->put += now_s() - t0;
      for (size_t i = 0; i < n; i++)
        bson_destroy(batch[i]);
      n = 0;
      if (!put)
        goto done;
    }
  }
  ok = true;
done:
  for (size_t i = 0; i < n; i++)
    bson_destroy(batch[i]);
  store_cursor_destroy(cur);
  return ok;
}

/* The destination's blobs, written as the import writes them: a blob of
 * at most STORE_BLOB_BATCH bytes read whole into a store_blob_pack_t and
 * stored with others when it is full, a larger one through a writer.
 * Only the store's writes are timed. */
static bool pack_flush(floor_t *f, store_blob_pack_t *p, fzip_error_t *error) {
  double t0 = now_s();
  bool ok = store_blob_pack_flush(p, NULL, NULL, error);
  f->blob += now_s() - t0;
  return ok;
}

static bool copy_blob(floor_t *f, store_t *store, store_blob_pack_t *p, const char *src_id,
                      const char *dst_id, unsigned char *buf, fzip_error_t *error) {
  store_blob_reader_t *r = NULL;
  store_blob_writer_t *w = NULL;
  store_blob_info_t info;
  size_t n = 0;
  bool ok = false;
  double t0;

  if (!store_blob_stat(&info, store, STORE_BUCKET_FILES, src_id, error) ||
      !store_blob_reader_new(&r, store, STORE_BUCKET_FILES, src_id, 0, error))
    goto done;
  if (info.size <= STORE_BLOB_BATCH) {
    size_t got = 0;
    uint8_t *at;
    if (!store_blob_pack_fits(p, (size_t)info.size) && !pack_flush(f, p, error))
      goto done;
    at = store_blob_pack_space(p);
    while (got < info.size) {
      if (!store_blob_reader_read(r, at + got, (size_t)info.size - got, &n, error))
        goto done;
      if (n == 0)
        break;
      got += n;
    }
    if (!store_blob_pack_add(p, dst_id, got, error))
      goto done;
    f->blob_bytes += got;
    ok = true;
    goto done;
  }
  t0 = now_s();
  if (!store_blob_writer_new(&w, store, STORE_BUCKET_FILES, dst_id, error))
    goto done;
  f->blob += now_s() - t0;
  for (;;) {
    if (!store_blob_reader_read(r, buf, FLOOR_CHUNK, &n, error))
      goto done;
    if (n == 0)
      break;
    t0 = now_s();
    if (!store_blob_writer_write(w, buf, n, error))
      goto done;
    f->blob += now_s() - t0;
    f->blob_bytes += n;
  }
  t0 = now_s();
  ok = store_blob_writer_commit(w, NULL, error);
  f->blob += now_s() - t0;
done:
  store_blob_writer_destroy(w);
  store_blob_reader_destroy(r);
  return ok;
}

static bool inflate_package(floor_t *f, const char *package, unsigned char *buf,
                            fzip_error_t *error) {
  FILE *in = fopen(package, "rb");
  fzip_sha256_t *h = fzip_sha256_new();
  zip_t *za = NULL;
  int zerr = 0;
  size_t n = 0;
  bool ok = false;
  if (!in || !h) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", package, strerror(errno));
    goto done;
  }
  double t0 = now_s();
  while ((n = fread(buf, 1, FLOOR_CHUNK, in)) > 0) {
    fzip_sha256_update(h, buf, n);
    f->package_bytes += n;
  }
  f->sha256 += now_s() - t0;
  za = zip_open(package, ZIP_RDONLY, &zerr);
  if (!za) {
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: zip_open error %d", package,
                   zerr);
    goto done;
  }
  zip_int64_t entries = zip_get_num_entries(za, 0);
  for (zip_int64_t i = 0; i < entries; i++) {
    zip_int64_t got = 0;
    fzip_sha256_reset(h);
    t0 = now_s();
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)i, 0);
    if (!zf) {
      fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "zip_fopen_index failed");
      goto done;
    }
    while ((got = zip_fread(zf, buf, FLOOR_CHUNK)) > 0) {
      double t1 = now_s();
      f->inflate += t1 - t0;
      fzip_sha256_update(h, buf, (size_t)got);
      t0 = now_s();
      f->sha256 += t0 - t1;
      f->entry_bytes += (uint64_t)got;
    }
    f->inflate += now_s() - t0;
    zip_fclose(zf);
    if (got < 0) {
      fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "zip_fread failed");
      goto done;
    }
  }
  ok = true;
done:
  if (za)
    zip_discard(za);
  if (in)
    fclose(in);
  fzip_sha256_destroy(h);
  return ok;
}

static void empty_user(store_t *store, const char *dst, char **ids, size_t n_ids) {
  fzip_error_t ignored = {0};
  char blob[STORE_BLOB_ID_MAX + 1];
  for (int k = FZIP_KIND_COUNT - 1; k >= 0; k--)
    store_entity_delete_all(NULL, store, dst, (fzip_kind_t)k, &ignored);
  for (size_t i = 0; i < n_ids; i++) {
    snprintf(blob, sizeof blob, "%s/floor-%zu", dst, i);
    store_blob_delete(store, STORE_BUCKET_FILES, blob, &ignored);
  }
}

static int run_import(const char *uri, const char *src, const char *dst, const char *package) {
  fzip_error_t error = {0};
  store_t *store = NULL;
  char **ids = NULL;
  size_t n_ids = 0;
  char blob[STORE_BLOB_ID_MAX + 1];
  unsigned char *buf = malloc(FLOOR_CHUNK);
  store_blob_pack_t *pack = NULL;
  floor_t f;
  int rc = 1;
  memset(&f, 0, sizeof f);
  if (!buf || !open_store(&store, uri, &error) ||
      !list_file_blobs(&ids, &n_ids, store, src, &error))
    goto done;
  for (int k = 0; k < FZIP_KIND_COUNT; k++)
    if (!put_kind(&f, store, src, dst, (fzip_kind_t)k, &error))
      goto done;
  if (!store_blob_pack_new(&pack, store, STORE_BUCKET_FILES, &error))
    goto done;
  for (size_t i = 0; i < n_ids; i++) {
    snprintf(blob, sizeof blob, "%s/floor-%zu", dst, i);
    if (!copy_blob(&f, store, pack, ids[i], blob, buf, &error))
      goto done;
  }
  if (!pack_flush(&f, pack, &error))
    goto done;
  f.files = n_ids;
  if (!inflate_package(&f, package, buf, &error))
    goto done;
  printf("{\"mode\": \"import\", \"docs\": %" PRIu64 ", \"doc_bytes\": %" PRIu64
         ", \"files\": %" PRIu64 ", \"blob_bytes\": %" PRIu64 ", \"package_bytes\": %" PRIu64
         ", \"entry_bytes\": %" PRIu64 ", \"put_s\": %.4f, \"blob_write_s\": %.4f, "
         "\"inflate_s\": %.4f, \"sha256_s\": %.4f, \"floor_s\": %.4f}\n",
         f.docs, f.doc_bytes, f.files, f.blob_bytes, f.package_bytes, f.entry_bytes, f.put,
         f.blob, f.inflate, f.sha256, f.put + f.blob + f.inflate + f.sha256);
  rc = 0;
done:
  if (store)
    empty_user(store, dst, ids, n_ids);
  free_ids(ids, n_ids);
  store_blob_pack_destroy(pack);
  store_destroy(store);
  free(buf);
  return rc ? fail(&error) : 0;
}

/* ---- blob store streaming floor ------------------------------------------ */

static int run_blob_read(const char *uri, const char *id) {
  fzip_error_t error = {0};
  store_t *store = NULL;
  unsigned char *buf = malloc(FLOOR_CHUNK);
  uint64_t bytes = 0;
  double s = 0;
  int rc = 1;
  if (buf && open_store(&store, uri, &error) &&
      read_blob(&bytes, &s, store, STORE_BUCKET_PACKAGES, id, buf, &error)) {
    printf("{\"mode\": \"blob-read\", \"bytes\": %" PRIu64 ", \"seconds\": %.4f, "
           "\"mib_per_s\": %.2f}\n",
           bytes, s, s > 0 ? (double)bytes / 1048576.0 / s : 0.0);
    rc = 0;
  }
  store_destroy(store);
  free(buf);
  return rc ? fail(&error) : 0;
}

static int run_blob_write(const char *uri, const char *path) {
  fzip_error_t error = {0};
  store_t *store = NULL;
  store_blob_writer_t *w = NULL;
  unsigned char *buf = malloc(FLOOR_CHUNK);
  FILE *in = fopen(path, "rb");
  char id[STORE_BLOB_ID_MAX + 1];
  uint64_t bytes = 0;
  size_t n = 0;
  double s = 0, t0 = 0;
  int rc = 1;
  snprintf(id, sizeof id, "bench-floor-%ld-%" PRId64, (long)getpid(), fzip_now_ms());
  if (!buf || !in) {
    fzip_error_set(&error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", path, strerror(errno));
    goto done;
  }
  if (!open_store(&store, uri, &error))
    goto done;
  t0 = now_s();
  if (!store_blob_writer_new(&w, store, STORE_BUCKET_PACKAGES, id, &error))
    goto done;
  s += now_s() - t0;
  while ((n = fread(buf, 1, FLOOR_CHUNK, in)) > 0) {
    t0 = now_s();
    if (!store_blob_writer_write(w, buf, n, &error))
      goto done;
    s += now_s() - t0;
    bytes += n;
  }
  t0 = now_s();
  if (!store_blob_writer_commit(w, NULL, &error))
    goto done;
  s += now_s() - t0;
  printf("{\"mode\": \"blob-write\", \"bytes\": %" PRIu64 ", \"seconds\": %.4f, "
         "\"mib_per_s\": %.2f}\n",
         bytes, s, s > 0 ? (double)bytes / 1048576.0 / s : 0.0);
  rc = 0;
done:
  store_blob_writer_destroy(w);
  if (store) {
    fzip_error_t ignored = {0};
    store_blob_delete(store, STORE_BUCKET_PACKAGES, id, &ignored);
  }
  store_destroy(store);
  if (in)
    fclose(in);
  free(buf);
  return rc ? fail(&error) : 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "export") == 0)
    return run_export(argv[2], argv[3], argv[4]);
  if (argc == 6 && strcmp(argv[1], "import") == 0)
    return run_import(argv[2], argv[3], argv[4], argv[5]);
  if (argc == 4 && strcmp(argv[1], "blob-read") == 0)
    return run_blob_read(argv[2], argv[3]);
  if (argc == 4 && strcmp(argv[1], "blob-write") == 0)
    return run_blob_write(argv[2], argv[3]);
  fprintf(stderr, "usage: bench_floor export STORE_URI USER PACKAGE\n"
                  "       bench_floor import STORE_URI SRC_USER DST_USER PACKAGE\n"
                  "       bench_floor blob-read STORE_URI BLOB_ID\n"
                  "       bench_floor blob-write STORE_URI FILE\n");
  return 2;
}
