/* pkg_zipout: see pkg_zipout.h.  Field layouts: PKWARE APPNOTE 6.3.x,
 * 4.3.7 (local header), 4.3.12 (central record), 4.3.14-16 (end records),
 * 4.5.3 (zip64 extra field). */
#include "pkg_zipout.h"

#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define LOCAL_FIXED 30
#define CENTRAL_FIXED 46
#define END_FIXED 22
#define END64_FIXED 56
#define LOCATOR64_FIXED 20
#define END64_REST (END64_FIXED - 12) /* the record's size field counts what follows it */
#define EXTRA_ZIP64 0x0001u
#define MADE_BY (3u << 8 | 63u) /* UNIX, 6.3: libzip's */
#define NEEDED_DEFLATE 20u
#define NEEDED_ZIP64 45u
#define METHOD_DEFLATE 8u
#define FLAG_UTF8 (1u << 11)
#define MAX16 0xFFFFu
#define MAX32 0xFFFFFFFFu
#define HEADER_MAX (END64_FIXED + LOCATOR64_FIXED + END_FIXED) /* the largest fixed part */

struct pkgzo {
  pkgjson_sink_fn sink;
  void *sink_ctx;
  uint8_t *buf; /* PKGZO_BUFFER bytes */
  size_t used;
  uint64_t flushed;   /* bytes handed to the sink */
  uint64_t entries;   /* local entries written */
  uint64_t central;   /* central records written */
  uint64_t cd_offset; /* where the central directory starts */
  bool in_central;
};

bool pkgzo_new(pkgzo_t **out, pkgjson_sink_fn sink, void *sink_ctx, fzip_error_t *error) {
  pkgzo_t *z = calloc(1, sizeof *z);

  *out = NULL;
  if (!z || !(z->buf = malloc(PKGZO_BUFFER))) {
    free(z);
    return fzip_error_oom(error, "the zip writer");
  }
  z->sink = sink;
  z->sink_ctx = sink_ctx;
  *out = z;
  return true;
}

void pkgzo_destroy(pkgzo_t *z) {
  if (!z)
    return;
  free(z->buf);
  free(z);
}

uint64_t pkgzo_offset(const pkgzo_t *z) { return z->flushed + z->used; }

static bool flush(pkgzo_t *z, fzip_error_t *error) {
  if (z->used == 0)
    return true;
  if (!z->sink(z->sink_ctx, z->buf, z->used, error))
    return false;
  z->flushed += z->used;
  z->used = 0;
  return true;
}

/* Appends len bytes, flushing as the buffer fills. */
static bool put(pkgzo_t *z, const void *data, size_t len, fzip_error_t *error) {
  const uint8_t *p = data;
  while (len > 0) {
    size_t n = PKGZO_BUFFER - z->used < len ? PKGZO_BUFFER - z->used : len;
    memcpy(z->buf + z->used, p, n);
    z->used += n;
    p += n;
    len -= n;
    if (z->used == PKGZO_BUFFER && !flush(z, error))
      return false;
  }
  return true;
}

/* Little-endian fields into a header being built (names go to the
 * output on their own). */
typedef struct {
  uint8_t b[HEADER_MAX];
  size_t n;
} header_t;

static void le(header_t *h, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++)
    h->b[h->n++] = (uint8_t)(v >> (8 * i));
}

static uint32_t clamp32(uint64_t v) { return v >= MAX32 ? MAX32 : (uint32_t)v; }

static bool is_ascii(const char *s) {
  for (; *s; s++) {
    if ((unsigned char)*s >= 0x80)
      return false;
  }
  return true;
}

static bool check_name(const pkgzo_entry_t *e, size_t *len, fzip_error_t *error) {
  *len = strlen(e->name);
  if (*len == 0 || *len > MAX16)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INTERNAL,
                          "zip entry name of %zu bytes (1 to %u)", *len, MAX16);
  return true;
}

/* The fields every header shares, from the version needed on. */
static void common(header_t *h, const pkgzo_entry_t *e, bool zip64, bool sizes64) {
  le(h, zip64 ? NEEDED_ZIP64 : NEEDED_DEFLATE, 2);
  le(h, is_ascii(e->name) ? 0 : FLAG_UTF8, 2);
  le(h, METHOD_DEFLATE, 2);
  le(h, PKGZO_DOS_TIME, 2);
  le(h, PKGZO_DOS_DATE, 2);
  le(h, e->crc32, 4);
  le(h, sizes64 ? MAX32 : clamp32(e->comp_size), 4);
  le(h, sizes64 ? MAX32 : clamp32(e->size), 4);
}

bool pkgzo_local(pkgzo_t *z, pkgzo_entry_t *e, pkgzo_read_fn read, void *read_ctx,
                 fzip_error_t *error) {
  header_t h;
  size_t name_len;
  bool zip64 = e->size >= MAX32 || e->comp_size >= MAX32;

  h.n = 0;
  if (z->in_central)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INTERNAL,
                          "zip entry %s after the central directory began", e->name);
  if (!check_name(e, &name_len, error))
    return false;
  e->offset = pkgzo_offset(z);
  le(&h, SIG_LOCAL, 4);
  common(&h, e, zip64, zip64);
  le(&h, name_len, 2);
  le(&h, zip64 ? 4 + 16 : 0, 2);
  if (!put(z, h.b, h.n, error) || !put(z, e->name, name_len, error))
    return false;
  if (zip64) {
    h.n = 0;
    le(&h, EXTRA_ZIP64, 2);
    le(&h, 16, 2);
    le(&h, e->size, 8);
    le(&h, e->comp_size, 8);
    if (!put(z, h.b, h.n, error))
      return false;
  }
  for (uint64_t at = 0; at < e->comp_size;) {
    uint64_t left = e->comp_size - at;
    size_t n = PKGZO_BUFFER - z->used < left ? PKGZO_BUFFER - z->used : (size_t)left;
    if (!read(read_ctx, z->buf + z->used, n, at, error))
      return false;
    z->used += n;
    at += n;
    if (z->used == PKGZO_BUFFER && !flush(z, error))
      return false;
  }
  z->entries++;
  return true;
}

bool pkgzo_central(pkgzo_t *z, const pkgzo_entry_t *e, fzip_error_t *error) {
  header_t h, x;
  size_t name_len;

  h.n = x.n = 0;
  if (!check_name(e, &name_len, error))
    return false;
  if (!z->in_central) {
    z->in_central = true;
    z->cd_offset = pkgzo_offset(z);
  }
  if (z->central >= z->entries)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INTERNAL,
                          "more central records than zip entries (%s)", e->name);
  /* The zip64 extra holds exactly the fields that do not fit. */
  if (e->size >= MAX32)
    le(&x, e->size, 8);
  if (e->comp_size >= MAX32)
    le(&x, e->comp_size, 8);
  if (e->offset >= MAX32)
    le(&x, e->offset, 8);
  le(&h, SIG_CENTRAL, 4);
  le(&h, MADE_BY, 2);
  common(&h, e, x.n > 0, false);
  le(&h, name_len, 2);
  le(&h, x.n ? 4 + x.n : 0, 2);
  le(&h, 0, 2); /* comment */
  le(&h, 0, 2); /* disk */
  le(&h, 0, 2); /* internal attributes */
  le(&h, (uint64_t)PKGZO_MODE << 16, 4);
  le(&h, clamp32(e->offset), 4);
  if (!put(z, h.b, h.n, error) || !put(z, e->name, name_len, error))
    return false;
  if (x.n) {
    h.n = 0;
    le(&h, EXTRA_ZIP64, 2);
    le(&h, x.n, 2);
    if (!put(z, h.b, h.n, error) || !put(z, x.b, x.n, error))
      return false;
  }
  z->central++;
  return true;
}

bool pkgzo_end(pkgzo_t *z, fzip_error_t *error) {
  header_t h;

  h.n = 0;
  if (!z->in_central)
    z->cd_offset = pkgzo_offset(z); /* an archive without entries */
  if (z->central != z->entries)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INTERNAL,
                          "%llu zip entries but %llu central records",
                          (unsigned long long)z->entries, (unsigned long long)z->central);
  uint64_t cd_size = pkgzo_offset(z) - z->cd_offset;
  if (z->entries >= MAX16 || cd_size >= MAX32 || z->cd_offset >= MAX32) {
    uint64_t end64 = pkgzo_offset(z);
    le(&h, SIG_END64, 4);
    le(&h, END64_REST, 8);
    le(&h, MADE_BY, 2);
    le(&h, NEEDED_ZIP64, 2);
    le(&h, 0, 4); /* this disk */
    le(&h, 0, 4); /* the directory's disk */
    le(&h, z->entries, 8);
    le(&h, z->entries, 8);
    le(&h, cd_size, 8);
    le(&h, z->cd_offset, 8);
    le(&h, SIG_LOCATOR64, 4);
    le(&h, 0, 4);
    le(&h, end64, 8);
    le(&h, 1, 4); /* disks */
  }
  le(&h, SIG_END, 4);
  le(&h, 0, 2);
  le(&h, 0, 2);
  le(&h, z->entries >= MAX16 ? MAX16 : z->entries, 2);
  le(&h, z->entries >= MAX16 ? MAX16 : z->entries, 2);
  le(&h, clamp32(cd_size), 4);
  le(&h, clamp32(z->cd_offset), 4);
  le(&h, 0, 2); /* comment */
  return put(z, h.b, h.n, error) && flush(z, error);
}
