/*
 * Tests for pkg_deflate: what it writes is one raw deflate stream that
 * zlib's own inflate turns back into the input, with the input's CRC-32
 * and sizes, for lengths around the block size; the bytes are the same
 * whatever the thread count; a stream is reusable entry after entry and
 * after a failed sink; the ratio stays within a few percent of one
 * single-threaded zlib stream.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fzip_test.h"
#include "pkg_deflate.h"

#define LEVEL 6
#define RATIO_SLACK 1.03 /* parallel blocks may cost at most 3% over one stream */

typedef struct {
  unsigned char *data;
  size_t len, cap;
  size_t fail_after; /* 0: never; else fail the call that would pass this many bytes */
} buf_t;

static bool buf_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  buf_t *b = ctx;
  if (len == 0)
    return true;
  if (b->fail_after && b->len + len > b->fail_after)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "test sink full");
  if (b->len + len > b->cap) {
    size_t cap = (b->len + len) * 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p)
      return fzip_error_oom(error, "test sink");
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return true;
}

/* Text-like input (compressible, with repeats further back than a block)
 * with a stretch of pseudo-random bytes in the middle. */
static unsigned char *make_input(size_t len) {
  unsigned char *p = malloc(len ? len : 1);
  uint32_t x = 12345;
  size_t i = 0;
  while (p && i < len) {
    char line[96];
    int n;
    x = x * 1103515245u + 12345u;
    if (i > len / 3 && i < len / 3 + 50000) {
      p[i++] = (unsigned char)(x >> 16);
      continue;
    }
    n = snprintf(line, sizeof line, "{\"id\":\"t-%08u\",\"amount\":\"%u.%02u\",\"memo\":\"m%u\"},\n",
                 (unsigned)(i / 7), (x >> 8) % 5000, (x >> 3) % 100, (x >> 20) % 64);
    for (int k = 0; k < n && i < len; k++)
      p[i++] = (unsigned char)line[k];
  }
  return p;
}

static bool inflate_all(buf_t *out, const unsigned char *in, size_t len) {
  z_stream zs = {0};
  unsigned char chunk[65536];
  int rc = Z_OK;
  if (inflateInit2(&zs, -15) != Z_OK)
    return false;
  zs.next_in = (unsigned char *)in;
  zs.avail_in = (uInt)len;
  while (rc == Z_OK) {
    fzip_error_t e = {0};
    zs.next_out = chunk;
    zs.avail_out = sizeof chunk;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END)
      break;
    if (!buf_sink(out, chunk, sizeof chunk - zs.avail_out, &e))
      rc = Z_MEM_ERROR;
  }
  inflateEnd(&zs);
  /* The stream ends exactly where the compressed bytes end. */
  return rc == Z_STREAM_END && zs.avail_in == 0;
}

/* Deflates `in` through a pool of `threads` in pieces of `piece` bytes. */
static bool deflate_with(buf_t *out, uint32_t *crc, unsigned threads, const unsigned char *in,
                         size_t len, size_t piece, fzip_error_t *err) {
  pkg_deflate_pool_t *pool = NULL;
  pkg_deflate_t *z = NULL;
  uint64_t size = 0, comp = 0;
  bool ok = pkg_deflate_pool_new(&pool, threads, LEVEL, err) && pkg_deflate_new(&z, pool, err);

  if (ok)
    pkg_deflate_begin(z, buf_sink, out);
  for (size_t off = 0; ok && off < len; off += piece)
    ok = pkg_deflate_write(z, in + off, len - off < piece ? len - off : piece, err);
  ok = ok && pkg_deflate_finish(z, crc, &size, &comp, err);
  if (ok && (size != len || comp != out->len))
    ok = fzip_error_set(err, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INTERNAL, "sizes %llu/%llu",
                        (unsigned long long)size, (unsigned long long)comp);
  pkg_deflate_destroy(z);
  pkg_deflate_pool_destroy(pool);
  return ok;
}

static const size_t lengths[] = {0,
                                 1,
                                 PKG_DEFLATE_DICT,
                                 PKG_DEFLATE_BLOCK - 1,
                                 PKG_DEFLATE_BLOCK,
                                 PKG_DEFLATE_BLOCK + 1,
                                 5 * PKG_DEFLATE_BLOCK + 7,
                                 (PKG_DEFLATE_IN_FLIGHT + 3) * PKG_DEFLATE_BLOCK};

static void test_output_inflates_back_with_its_crc_for_every_length(void) {
  for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
    size_t len = lengths[i];
    unsigned char *in = make_input(len);
    buf_t out = {0}, back = {0};
    fzip_error_t err = {0};
    uint32_t crc = 0;
    CHECK_OK(deflate_with(&out, &crc, 2, in, len, 4099, &err), err);
    CHECK(inflate_all(&back, out.data, out.len));
    CHECK(back.len == len && (len == 0 || memcmp(back.data, in, len) == 0));
    CHECK(crc == (uint32_t)crc32(crc32(0L, Z_NULL, 0), in, (uInt)len));
    free(in);
    free(out.data);
    free(back.data);
  }
}

static void test_thread_count_and_write_sizes_do_not_change_the_bytes(void) {
  size_t len = 7 * PKG_DEFLATE_BLOCK + 333;
  unsigned char *in = make_input(len);
  buf_t one = {0}, two = {0}, four = {0};
  fzip_error_t err = {0};
  uint32_t c1 = 0, c2 = 0, c4 = 0;

  CHECK_OK(deflate_with(&one, &c1, 1, in, len, len ? len : 1, &err), err);
  CHECK_OK(deflate_with(&two, &c2, 2, in, len, 1000, &err), err);
  CHECK_OK(deflate_with(&four, &c4, 4, in, len, PKG_DEFLATE_BLOCK, &err), err);
  CHECK(one.len == two.len && memcmp(one.data, two.data, one.len) == 0);
  CHECK(one.len == four.len && memcmp(one.data, four.data, one.len) == 0);
  CHECK(c1 == c2 && c2 == c4);
  free(in);
  free(one.data);
  free(two.data);
  free(four.data);
}

static void test_ratio_is_within_a_few_percent_of_one_stream(void) {
  size_t len = 16 * PKG_DEFLATE_BLOCK;
  unsigned char *in = make_input(len);
  unsigned char *whole = malloc(compressBound((uLong)len));
  buf_t out = {0};
  fzip_error_t err = {0};
  z_stream zs = {0};
  uint32_t crc;

  CHECK_OK(deflate_with(&out, &crc, 2, in, len, 65536, &err), err);
  CHECK(whole && deflateInit2(&zs, LEVEL, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  zs.next_in = in;
  zs.avail_in = (uInt)len;
  zs.next_out = whole;
  zs.avail_out = (uInt)compressBound((uLong)len);
  CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  fprintf(stderr, "  %zu bytes: one stream %lu, blocks %zu (%.2f%%)\n", len, zs.total_out,
          out.len, 100.0 * ((double)out.len - (double)zs.total_out) / (double)zs.total_out);
  CHECK((double)out.len <= (double)zs.total_out * RATIO_SLACK);
  deflateEnd(&zs);
  free(whole);
  free(in);
  free(out.data);
}

static void test_stream_is_reusable_after_a_failed_sink(void) {
  size_t len = 6 * PKG_DEFLATE_BLOCK;
  unsigned char *in = make_input(len);
  pkg_deflate_pool_t *pool = NULL;
  pkg_deflate_t *z = NULL;
  buf_t bad = {.fail_after = 1000}, good = {0}, ref = {0}, back = {0};
  fzip_error_t err = {0};
  uint32_t crc, ref_crc;
  uint64_t size, comp;
  bool failed;

  CHECK_OK(pkg_deflate_pool_new(&pool, 2, LEVEL, &err) && pkg_deflate_new(&z, pool, &err), err);
  pkg_deflate_begin(z, buf_sink, &bad);
  failed = !pkg_deflate_write(z, in, len, &err) || !pkg_deflate_finish(z, &crc, &size, &comp, &err);
  CHECK(failed && err.code == FZIP_ERR_INTERNAL);
  err = (fzip_error_t){0};
  pkg_deflate_begin(z, buf_sink, &good); /* the next entry starts clean */
  CHECK_OK(pkg_deflate_write(z, in, len, &err) && pkg_deflate_finish(z, &crc, &size, &comp, &err),
           err);
  CHECK_OK(deflate_with(&ref, &ref_crc, 1, in, len, len, &err), err);
  CHECK(good.len == ref.len && memcmp(good.data, ref.data, ref.len) == 0 && crc == ref_crc);
  CHECK(inflate_all(&back, good.data, good.len) && back.len == len);
  pkg_deflate_destroy(z);
  pkg_deflate_pool_destroy(pool);
  free(in);
  free(bad.data);
  free(good.data);
  free(ref.data);
  free(back.data);
}

static void test_too_many_threads_is_invalid_argument(void) {
  pkg_deflate_pool_t *pool = NULL;
  fzip_error_t err = {0};
  CHECK_FAILS(pkg_deflate_pool_new(&pool, PKG_DEFLATE_THREADS_MAX + 1, LEVEL, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(pool == NULL);
  CHECK(pkg_deflate_threads_auto() >= 1 && pkg_deflate_threads_auto() <= PKG_DEFLATE_THREADS_MAX);
}

int main(void) {
  RUN(test_output_inflates_back_with_its_crc_for_every_length);
  RUN(test_thread_count_and_write_sizes_do_not_change_the_bytes);
  RUN(test_ratio_is_within_a_few_percent_of_one_stream);
  RUN(test_stream_is_reusable_after_a_failed_sink);
  RUN(test_too_many_threads_is_invalid_argument);
  return fzip_test_summary();
}
