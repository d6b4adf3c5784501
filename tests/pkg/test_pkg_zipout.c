/* pkg/pkg_zipout: the archive is byte for byte what libzip writes for the
 * same deflated entries (the writer before pkg_zipout, so packages keep
 * their bytes); an archive of more than 0xFFFF entries takes the zip64
 * end records and libzip reads every entry back; an entry past 4 GiB
 * (a sparse file) takes zip64 sizes, the one after it a zip64 offset, and
 * libzip's consistency check passes; misuse is refused. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#include "fzip_test.h"
#include "pkg_zipout.h"

#define MANY_ENTRIES 70000 /* past 0xFFFF: the zip64 end records */
/* An entry past 4 GiB: zip64 sizes in its headers, and the entry after
 * it at an offset past 32 bits. */
#define HUGE_COMP_SIZE ((uint64_t)0x100000000 + 12345)
#define ENTRY_TEXT_MAX 256

/* One entry: its name and its deflated bytes, CRC and sizes. */
typedef struct {
  char name[64];
  uint8_t *comp;
  pkgzo_entry_t e;
} entry_t;

static void deflate_text(entry_t *t, const char *name, const char *text) {
  z_stream zs;
  size_t len = strlen(text);

  memset(&zs, 0, sizeof zs);
  snprintf(t->name, sizeof t->name, "%s", name);
  deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  t->comp = malloc(deflateBound(&zs, len));
  zs.next_in = (Bytef *)text;
  zs.avail_in = (uInt)len;
  zs.next_out = t->comp;
  zs.avail_out = (uInt)deflateBound(&zs, len);
  deflate(&zs, Z_FINISH);
  t->e = (pkgzo_entry_t){.name = t->name,
                         .crc32 = (uint32_t)crc32(0, (const Bytef *)text, (uInt)len),
                         .size = len,
                         .comp_size = zs.total_out};
  deflateEnd(&zs);
}

static bool read_comp(void *ctx, void *buf, size_t len, uint64_t at, fzip_error_t *error) {
  const entry_t *t = ctx;
  (void)error;
  memcpy(buf, t->comp + at, len);
  return true;
}

/* A growing memory sink. */
typedef struct {
  uint8_t *data;
  size_t len, cap;
  int writes;
} mem_t;

static bool mem_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  mem_t *m = ctx;
  (void)error;
  if (m->len + len > m->cap) {
    m->cap = (m->len + len) * 2;
    m->data = realloc(m->data, m->cap);
  }
  memcpy(m->data + m->len, data, len);
  m->len += len;
  m->writes++;
  return true;
}

static bool write_all(mem_t *out, entry_t *t, size_t n, fzip_error_t *err) {
  pkgzo_t *z = NULL;
  bool ok = pkgzo_new(&z, mem_sink, out, err);
  for (size_t i = 0; ok && i < n; i++)
    ok = pkgzo_local(z, &t[i].e, read_comp, &t[i], err);
  for (size_t i = 0; ok && i < n; i++)
    ok = pkgzo_central(z, &t[i].e, err);
  ok = ok && pkgzo_end(z, err);
  pkgzo_destroy(z);
  return ok;
}

/* libzip's side: a source that hands over the entry's deflated bytes with
 * their method, CRC and sizes, so that zip_close copies them as they are
 * (what pkg_writer did before pkg_zipout). */
typedef struct {
  const entry_t *t;
  uint64_t pos;
} raw_t;

static zip_int64_t raw_cb(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd) {
  raw_t *r = ud;
  switch (cmd) {
  case ZIP_SOURCE_OPEN:
    r->pos = 0;
    return 0;
  case ZIP_SOURCE_READ: {
    uint64_t n = r->t->e.comp_size - r->pos < len ? r->t->e.comp_size - r->pos : len;
    memcpy(data, r->t->comp + r->pos, n);
    r->pos += n;
    return (zip_int64_t)n;
  }
  case ZIP_SOURCE_CLOSE:
    return 0;
  case ZIP_SOURCE_FREE:
    free(r);
    return 0;
  case ZIP_SOURCE_STAT: {
    zip_stat_t *st = data;
    zip_stat_init(st);
    st->valid = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD | ZIP_STAT_CRC |
                ZIP_STAT_ENCRYPTION_METHOD;
    st->size = r->t->e.size;
    st->comp_size = r->t->e.comp_size;
    st->comp_method = ZIP_CM_DEFLATE;
    st->encryption_method = ZIP_EM_NONE;
    st->crc = r->t->e.crc32;
    return sizeof *st;
  }
  case ZIP_SOURCE_SUPPORTS:
    return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                          ZIP_SOURCE_STAT, ZIP_SOURCE_FREE, -1);
  default:
    return -1;
  }
}

static bool libzip_write(const char *path, entry_t *t, size_t n) {
  int zerr = 0;
  zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  if (!za)
    return false;
  for (size_t i = 0; i < n; i++) {
    raw_t *r = calloc(1, sizeof *r);
    r->t = &t[i];
    zip_source_t *src = zip_source_function(za, raw_cb, r);
    zip_int64_t idx = src ? zip_file_add(za, t[i].name, src, ZIP_FL_ENC_UTF_8) : -1;
    if (idx < 0 ||
        zip_file_set_dostime(za, (zip_uint64_t)idx, PKGZO_DOS_TIME, PKGZO_DOS_DATE, 0) ||
        zip_file_set_external_attributes(za, (zip_uint64_t)idx, 0, ZIP_OPSYS_UNIX,
                                         PKGZO_MODE << 16)) {
      zip_discard(za);
      return false;
    }
  }
  return zip_close(za) == 0;
}

static bool read_whole(uint8_t **out, size_t *len, const char *path) {
  FILE *f = fopen(path, "rb");
  long n;
  if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    if (f)
      fclose(f);
    return false;
  }
  *out = malloc((size_t)n + 1);
  *len = fread(*out, 1, (size_t)n, f);
  fclose(f);
  return *len == (size_t)n;
}

static void free_entries(entry_t *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(t[i].comp);
}

static void test_archive_is_byte_for_byte_what_libzip_writes(void) {
  static const char *names[] = {"manifest.json", "data/accounts.json",
                                "files/0b1c/Relev\xc3\xa9 de compte.ofx", "files/0b1d/empty.csv"};
  static const char *texts[] = {"{\"manifest\":1}\n", "{\"accounts\":[{\"a\":1},{\"a\":2}]}",
                                "<OFX>...</OFX>", ""};
  entry_t t[4];
  mem_t out = {0};
  fzip_error_t err = {0};
  char path[] = "/tmp/fzip-zipout-XXXXXX";
  uint8_t *ref = NULL;
  size_t ref_len = 0;
  int fd = mkstemp(path);

  CHECK(fd >= 0);
  close(fd);
  for (size_t i = 0; i < 4; i++)
    deflate_text(&t[i], names[i], texts[i]);
  CHECK(libzip_write(path, t, 4));
  CHECK(read_whole(&ref, &ref_len, path));
  CHECK_OK(write_all(&out, t, 4, &err), err);
  fprintf(stderr, "  libzip %zu bytes, pkg_zipout %zu bytes\n", ref_len, out.len);
  CHECK(out.len == ref_len && memcmp(out.data, ref, ref_len) == 0);
  CHECK(t[0].e.offset == 0 && t[1].e.offset > 0);
  unlink(path);
  free(ref);
  free(out.data);
  free_entries(t, 4);
}

static void test_more_than_0xffff_entries_take_zip64_and_read_back(void) {
  entry_t *t = calloc(MANY_ENTRIES, sizeof *t);
  mem_t out = {0};
  fzip_error_t err = {0};
  zip_error_t ze;
  char text[ENTRY_TEXT_MAX];
  bool names_ok = true, bytes_ok = true;

  for (size_t i = 0; i < MANY_ENTRIES; i++) {
    char name[64];
    snprintf(name, sizeof name, "files/%06zu/f.csv", i);
    snprintf(text, sizeof text, "row,%zu\n", i);
    deflate_text(&t[i], name, text);
  }
  CHECK_OK(write_all(&out, t, MANY_ENTRIES, &err), err);
  /* Few sink writes: headers are gathered into PKGZO_BUFFER-byte writes. */
  CHECK((size_t)out.writes <= out.len / PKGZO_BUFFER + 1);
  CHECK(memmem(out.data, out.len, "PK\x06\x06", 4) != NULL);
  CHECK(memmem(out.data, out.len, "PK\x06\x07", 4) != NULL);
  zip_error_init(&ze);
  zip_source_t *src = zip_source_buffer_create(out.data, out.len, 0, &ze);
  zip_t *za = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
  CHECK(za != NULL);
  if (za) {
    CHECK(zip_get_num_entries(za, 0) == MANY_ENTRIES);
    for (size_t i = 0; i < MANY_ENTRIES; i += MANY_ENTRIES / 7) {
      char got[ENTRY_TEXT_MAX] = {0};
      zip_file_t *zf = zip_fopen_index(za, i, 0);
      zip_int64_t n = zf ? zip_fread(zf, got, sizeof got - 1) : -1;
      if (zf)
        zip_fclose(zf);
      snprintf(text, sizeof text, "row,%zu\n", i);
      names_ok = names_ok && strcmp(zip_get_name(za, i, 0), t[i].name) == 0;
      bytes_ok = bytes_ok && n == (zip_int64_t)strlen(text) && strcmp(got, text) == 0;
    }
    CHECK(names_ok && bytes_ok);
    zip_discard(za);
  } else if (src) {
    zip_source_free(src);
  }
  zip_error_fini(&ze);
  free(out.data);
  free_entries(t, MANY_ENTRIES);
  free(t);
}

/* The huge entry's bytes are zeros, written as holes: the file is sparse,
 * and the test checks headers and offsets, not the bytes. */
typedef struct {
  int fd;
  uint64_t at;
} sparse_t;

static bool read_zeros(void *ctx, void *buf, size_t len, uint64_t at, fzip_error_t *error) {
  (void)ctx;
  (void)at;
  (void)error;
  memset(buf, 0, len);
  return true;
}

static bool sparse_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  sparse_t *s = ctx;
  const uint8_t *p = data;
  bool zeros = len > 0 && p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
  (void)error;
  if (!zeros && pwrite(s->fd, data, len, (off_t)s->at) != (ssize_t)len)
    return false;
  s->at += len;
  return true;
}

static void test_entry_past_4_gib_takes_zip64_sizes_and_offsets(void) {
  entry_t t[3];
  fzip_error_t err = {0};
  char path[] = "/tmp/fzip-zipout-huge-XXXXXX";
  sparse_t out = {.fd = mkstemp(path)};
  pkgzo_t *z = NULL;
  zip_stat_t st;
  int zerr = 0;

  CHECK(out.fd >= 0);
  deflate_text(&t[0], "manifest.json", "{}");
  deflate_text(&t[1], "files/huge/zeros.bin", "x"); /* name and CRC; sizes below */
  deflate_text(&t[2], "files/after/small.csv", "a,b\n");
  t[1].e.size = HUGE_COMP_SIZE + 1;
  t[1].e.comp_size = HUGE_COMP_SIZE;
  CHECK_OK(pkgzo_new(&z, sparse_sink, &out, &err), err);
  CHECK_OK(pkgzo_local(z, &t[0].e, read_comp, &t[0], &err), err);
  CHECK_OK(pkgzo_local(z, &t[1].e, read_zeros, NULL, &err), err);
  CHECK_OK(pkgzo_local(z, &t[2].e, read_comp, &t[2], &err), err);
  for (int i = 0; i < 3; i++)
    CHECK_OK(pkgzo_central(z, &t[i].e, &err), err);
  CHECK_OK(pkgzo_end(z, &err), err);
  pkgzo_destroy(z);
  CHECK(ftruncate(out.fd, (off_t)out.at) == 0); /* a hole at the end still counts */
  close(out.fd);
  CHECK(t[2].e.offset > 0xFFFFFFFFu);
  zip_t *za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
  CHECK(za != NULL);
  if (za) {
    CHECK(zip_get_num_entries(za, 0) == 3);
    CHECK(zip_stat_index(za, 1, 0, &st) == 0 && st.size == HUGE_COMP_SIZE + 1 &&
          st.comp_size == HUGE_COMP_SIZE);
    /* The entry after it, at an offset past 32 bits, reads back. */
    char got[16] = {0};
    zip_file_t *zf = zip_fopen_index(za, 2, 0);
    zip_int64_t n = zf ? zip_fread(zf, got, sizeof got - 1) : -1;
    if (zf)
      zip_fclose(zf);
    CHECK(n == 4 && strcmp(got, "a,b\n") == 0);
    zip_discard(za);
  }
  unlink(path);
  free_entries(t, 3);
}

static void test_central_records_must_match_the_entries(void) {
  entry_t t[2];
  mem_t out = {0};
  fzip_error_t err = {0};
  pkgzo_t *z = NULL;

  deflate_text(&t[0], "a.json", "{}");
  deflate_text(&t[1], "b.json", "[]");
  CHECK_OK(pkgzo_new(&z, mem_sink, &out, &err), err);
  CHECK_OK(pkgzo_local(z, &t[0].e, read_comp, &t[0], &err), err);
  CHECK_OK(pkgzo_central(z, &t[0].e, &err), err);
  CHECK_FAILS(pkgzo_local(z, &t[1].e, read_comp, &t[1], &err), err, FZIP_ERR_INTERNAL);
  CHECK_FAILS(pkgzo_central(z, &t[1].e, &err), err, FZIP_ERR_INTERNAL);
  pkgzo_destroy(z);
  z = NULL;
  out.len = 0;
  CHECK_OK(pkgzo_new(&z, mem_sink, &out, &err), err);
  CHECK_OK(pkgzo_local(z, &t[0].e, read_comp, &t[0], &err), err);
  CHECK_FAILS(pkgzo_end(z, &err), err, FZIP_ERR_INTERNAL); /* no central record */
  pkgzo_destroy(z);
  free(out.data);
  free_entries(t, 2);
}

int main(void) {
  RUN(test_archive_is_byte_for_byte_what_libzip_writes);
  RUN(test_more_than_0xffff_entries_take_zip64_and_read_back);
  RUN(test_entry_past_4_gib_takes_zip64_sizes_and_offsets);
  RUN(test_central_records_must_match_the_entries);
  return fzip_test_summary();
}
