/*
 * pkg_json: see pkg_json.h.
 *
 * Output is staged in one fixed buffer and handed to the sink when full, so
 * the writer's memory does not depend on the size of what it writes.  The
 * dotted path of the field being written ("categories.0.confidence") is
 * kept in a small fixed buffer only so that a type error can name it.
 */
#include "pkg_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest decimal int64: "-9223372036854775808". */
#define INT64_TEXT_MAX 20

struct pkgjson_writer {
  pkgjson_sink_fn sink;
  void *sink_ctx;
  uint64_t written;
  size_t used;
  int depth;
  /* The keys of the members being written, outermost first (borrowed
   * from the document): the error path is joined from them only when an
   * error needs it, not formatted for every member. */
  int n_keys;
  const char *keys[PKGJSON_DEPTH_MAX + 1];
  char buf[PKGJSON_BUFFER_SIZE];
};

pkgjson_writer_t *pkgjson_writer_new(pkgjson_sink_fn sink, void *sink_ctx) {
  pkgjson_writer_t *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  w->sink = sink;
  w->sink_ctx = sink_ctx;
  return w;
}

void pkgjson_writer_destroy(pkgjson_writer_t *w) { free(w); }

uint64_t pkgjson_bytes_written(const pkgjson_writer_t *w) { return w->written; }

bool pkgjson_flush(pkgjson_writer_t *w, fzip_error_t *error) {
  size_t n = w->used;
  if (n == 0)
    return true;
  w->used = 0;
  return w->sink(w->sink_ctx, w->buf, n, error);
}

/* Copies through the buffer, handing it to the sink each time it is full. */
static bool put_slow(pkgjson_writer_t *w, const char *data, size_t len, fzip_error_t *error) {
  while (len > 0) {
    size_t room = sizeof w->buf - w->used;
    size_t n = len < room ? len : room;
    memcpy(w->buf + w->used, data, n);
    w->used += n;
    w->written += n;
    data += n;
    len -= n;
    if (w->used == sizeof w->buf && !pkgjson_flush(w, error))
      return false;
  }
  return true;
}

/* The common case inline: what fits without filling the buffer is copied
 * and needs no flush (put_slow flushes exactly when the buffer is full, so
 * the sink sees the same chunks either way). */
static inline bool put(pkgjson_writer_t *w, const char *data, size_t len, fzip_error_t *error) {
  if (len < sizeof w->buf - w->used) {
    memcpy(w->buf + w->used, data, len);
    w->used += len;
    w->written += len;
    return true;
  }
  return put_slow(w, data, len, error);
}

static inline bool put_char(pkgjson_writer_t *w, char c, fzip_error_t *error) {
  if (w->used + 1 < sizeof w->buf) {
    w->buf[w->used++] = c;
    w->written++;
    return true;
  }
  return put_slow(w, &c, 1, error);
}

bool pkgjson_write_raw(pkgjson_writer_t *w, const char *text, size_t len, fzip_error_t *error) {
  return put(w, text, len, error);
}

size_t pkgjson_utf8_seq_len(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  unsigned char c = s[0];
  size_t need;
  uint32_t min, cp;

  if (len == 0)
    return 0;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    need = 2, min = 0x80, cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    need = 3, min = 0x800, cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0; /* continuation byte, overlong 2-byte lead, or > U+10FFFF lead */
  }
  if (len < need)
    return 0;
  for (size_t i = 1; i < need; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return need;
}

bool pkgjson_utf8_valid(const char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    size_t n = (unsigned char)s[i] < 0x80 ? 1 : pkgjson_utf8_seq_len(s + i, len - i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

/* The error path ("categories.0.confidence"): the keys joined by '.', cut
 * to PKGJSON_PATH_MAX - 1 bytes.  A key that is "" adds no dot after an
 * empty path, as it always has. */
static void path_join(char out[PKGJSON_PATH_MAX], const pkgjson_writer_t *w) {
  size_t len = 0;
  for (int i = 0; i < w->n_keys; i++) {
    const char *k = w->keys[i];
    if (len > 0 && len < PKGJSON_PATH_MAX - 1)
      out[len++] = '.';
    while (*k && len < PKGJSON_PATH_MAX - 1)
      out[len++] = *k++;
  }
  out[len] = '\0';
}

static bool path_error(pkgjson_writer_t *w, fzip_code_t code, const char *what,
                       fzip_error_t *error) {
  char path[PKGJSON_PATH_MAX];
  path_join(path, w);
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, code, "field \"%s\": %s", path, what);
}

/* What a byte is to a JSON string: copied as it is, escaped, or the lead
 * (or a stray continuation) of a multi-byte UTF-8 sequence to check. */
enum { BYTE_PLAIN = 0, BYTE_ESCAPE = 1, BYTE_UTF8 = 2 };

#define E BYTE_ESCAPE
#define U BYTE_UTF8
#define U16 U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U
static const unsigned char byte_class[256] = {
    E, E, E, E, E, E, E, E, E, E, E, E, E, E, E, E, /* 0x00 */
    E, E, E, E, E, E, E, E, E, E, E, E, E, E, E, E, /* 0x10 */
    0, 0, E, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, E, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 (0x7f is plain) */
    U16, U16, U16, U16, U16, U16, U16, U16,         /* 0x80 - 0xff */
};
#undef U16
#undef U
#undef E

/* Eight bytes at a time: a word with any byte below 0x20, '"', '\\' or
 * >= 0x80 stops the skip (the byte loop takes it from there).  has_zero
 * and has_less are exact for "some byte is": no byte is missed. */
#define WORD_ONES 0x0101010101010101ULL
#define WORD_HIGHS 0x8080808080808080ULL
#define has_less(x, n) (((x) - WORD_ONES * (n)) & ~(x) & WORD_HIGHS)
#define has_zero(x) has_less(x, 1)

static size_t plain_prefix(const unsigned char *p, size_t i, size_t len) {
  while (len - i >= sizeof(uint64_t)) {
    uint64_t x;
    memcpy(&x, p + i, sizeof x);
    if ((x & WORD_HIGHS) || has_less(x, 0x20) || has_zero(x ^ (WORD_ONES * '"')) ||
        has_zero(x ^ (WORD_ONES * '\\')))
      break;
    i += sizeof x;
  }
  return i;
}

/* Checks s[0..len) is valid UTF-8 and finds the first byte that needs an
 * escape (*first_escape = len if none): one pass, before anything is
 * written, so that a string that is refused leaves no output. */
static bool string_scan(const char *s, size_t len, size_t *first_escape) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;

  *first_escape = len;
  while (i < len) {
    i = plain_prefix(p, i, len);
    if (i == len)
      break;
    switch (byte_class[p[i]]) {
    case BYTE_PLAIN:
      i++;
      break;
    case BYTE_ESCAPE:
      if (*first_escape == len)
        *first_escape = i;
      i++;
      break;
    default: {
      size_t n = pkgjson_utf8_seq_len(s + i, len - i);
      if (n == 0)
        return false;
      i += n;
    }
    }
  }
  return true;
}

/* Writes the escape of control character, '"' or '\\' c. */
static bool put_escape(pkgjson_writer_t *w, unsigned char c, fzip_error_t *error) {
  static const char hex[] = "0123456789abcdef";
  char esc[6] = {'\\', 0};
  size_t esc_len = 2;

  switch (c) {
  case '"': esc[1] = '"'; break;
  case '\\': esc[1] = '\\'; break;
  case '\b': esc[1] = 'b'; break;
  case '\f': esc[1] = 'f'; break;
  case '\n': esc[1] = 'n'; break;
  case '\r': esc[1] = 'r'; break;
  case '\t': esc[1] = 't'; break;
  default:
    memcpy(esc + 1, "u00", 3);
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 0xf];
    esc_len = 6;
  }
  return put(w, esc, esc_len, error);
}

/* Writes s quoted; string_scan said where its first escape is.  Runs of
 * plain bytes go in one put() each: most strings have no escape at all,
 * and are one copy between their quotes. */
static bool write_quoted(pkgjson_writer_t *w, const char *s, size_t len, size_t first_escape,
                         fzip_error_t *error) {
  const unsigned char *p = (const unsigned char *)s;
  size_t run = 0;

  if (first_escape == len && len + 2 < sizeof w->buf - w->used) {
    char *out = w->buf + w->used;
    out[0] = '"';
    memcpy(out + 1, s, len);
    out[len + 1] = '"';
    w->used += len + 2;
    w->written += len + 2;
    return true;
  }
  if (!put_char(w, '"', error))
    return false;
  for (size_t i = first_escape; i < len; i++) {
    if (byte_class[p[i]] != BYTE_ESCAPE)
      continue;
    if (!put(w, s + run, i - run, error) || !put_escape(w, p[i], error))
      return false;
    run = i + 1;
  }
  return put(w, s + run, len - run, error) && put_char(w, '"', error);
}

bool pkgjson_write_string(pkgjson_writer_t *w, const char *s, size_t len, fzip_error_t *error) {
  size_t first_escape;
  if (!string_scan(s, len, &first_escape))
    return path_error(w, FZIP_ERR_INVALID_ARGUMENT, "string is not valid UTF-8", error);
  return write_quoted(w, s, len, first_escape, error);
}

/* Decimal digits of v, as "%lld" spells them, at the end of out; returns
 * where they start. */
static char *format_int64(char out[INT64_TEXT_MAX], int64_t v) {
  /* "00" "01" ... "99": two digits per division (timestamps have 13). */
  static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                              "25262728293031323334353637383940414243444546474849"
                              "50515253545556575859606162636465666768697071727374"
                              "75767778798081828384858687888990919293949596979899";
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN too */
  char *p = out + INT64_TEXT_MAX;

  while (u >= 100) {
    p -= 2;
    memcpy(p, pairs + 2 * (u % 100), 2);
    u /= 100;
  }
  if (u >= 10) {
    p -= 2;
    memcpy(p, pairs + 2 * u, 2);
  } else {
    *--p = (char)('0' + u);
  }
  if (v < 0)
    *--p = '-';
  return p;
}

bool pkgjson_write_int64(pkgjson_writer_t *w, int64_t v, fzip_error_t *error) {
  char tmp[INT64_TEXT_MAX];
  const char *p = format_int64(tmp, v);
  return put(w, p, (size_t)(tmp + sizeof tmp - p), error);
}

bool pkgjson_format_double(char out[PKGJSON_DOUBLE_MAX], double v) {
  if (!isfinite(v))
    return false;
  /* The shortest precision that reads back exactly: one spelling per value. */
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, PKGJSON_DOUBLE_MAX, "%.*g", prec, v);
    if (strtod(out, NULL) == v)
      break;
  }
  if (!strpbrk(out, ".en"))
    strcat(out, ".0"); /* keep "a double" distinguishable from an integer */
  return true;
}

bool pkgjson_write_double(pkgjson_writer_t *w, double v, fzip_error_t *error) {
  char tmp[PKGJSON_DOUBLE_MAX];
  if (!pkgjson_format_double(tmp, v))
    return path_error(w, FZIP_ERR_INVALID_ARGUMENT, "NaN or infinity has no JSON form", error);
  return put(w, tmp, strlen(tmp), error);
}

static bool write_container(pkgjson_writer_t *w, bson_iter_t *it, bool is_array,
                            fzip_error_t *error);

/* The member `it` is on was checked by bson_iter_next (bounds, a string's
 * length and terminating NUL, a bool's byte), so the inline _unsafe
 * accessors read it as the checked ones would, without a library call
 * and a type check each. */
static bool write_value(pkgjson_writer_t *w, bson_iter_t *it, fzip_error_t *error) {
  bson_iter_t child;
  size_t len;
  const char *s;

  switch (bson_iter_type_unsafe(it)) {
  case BSON_TYPE_UTF8:
    s = bson_iter_utf8_unsafe(it, &len);
    return pkgjson_write_string(w, s, len, error);
  case BSON_TYPE_INT32:
    return pkgjson_write_int64(w, bson_iter_int32_unsafe(it), error);
  case BSON_TYPE_INT64:
    return pkgjson_write_int64(w, bson_iter_int64_unsafe(it), error);
  case BSON_TYPE_DOUBLE:
    return pkgjson_write_double(w, bson_iter_double_unsafe(it), error);
  case BSON_TYPE_BOOL:
    return bson_iter_bool_unsafe(it) ? put(w, "true", 4, error) : put(w, "false", 5, error);
  case BSON_TYPE_NULL:
    return put(w, "null", 4, error);
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY:
    if (!bson_iter_recurse(it, &child))
      return path_error(w, FZIP_ERR_INVALID_ARGUMENT, "corrupt nested BSON", error);
    return write_container(w, &child, bson_iter_type(it) == BSON_TYPE_ARRAY, error);
  default: {
    char what[96];
    snprintf(what, sizeof what, "BSON type 0x%02x is not allowed in a package (not JSON-native)",
             (unsigned)bson_iter_type(it));
    return path_error(w, FZIP_ERR_INVALID_ARGUMENT, what, error);
  }
  }
}

/* The key (an object's) and the value of one member; the key stays on the
 * error path while its value is written. */
static bool write_member(pkgjson_writer_t *w, bson_iter_t *it, bool is_array, bool first,
                         fzip_error_t *error) {
  const char *key = bson_iter_key_unsafe(it);
  bool ok = true;

  w->keys[w->n_keys++] = key; /* depth <= PKGJSON_DEPTH_MAX: write_container */
  if (!first)
    ok = put_char(w, ',', error);
  if (ok && !is_array) {
    size_t key_len = it->d1 - it->key - 1, first_escape; /* bson_iter_key_len, inline */
    if (!string_scan(key, key_len, &first_escape))
      ok = path_error(w, FZIP_ERR_INVALID_ARGUMENT, "key is not valid UTF-8", error);
    else
      ok = write_quoted(w, key, key_len, first_escape, error) && put_char(w, ':', error);
  }
  if (ok)
    ok = write_value(w, it, error);
  w->n_keys--;
  return ok;
}

static bool write_container(pkgjson_writer_t *w, bson_iter_t *it, bool is_array,
                            fzip_error_t *error) {
  bool first = true;

  if (w->depth >= PKGJSON_DEPTH_MAX)
    return path_error(w, FZIP_ERR_RESOURCE_EXHAUSTED, "nested deeper than PKGJSON_DEPTH_MAX",
                      error);
  w->depth++;
  if (!put_char(w, is_array ? '[' : '{', error))
    return false;
  while (bson_iter_next(it)) {
    if (!write_member(w, it, is_array, first, error))
      return false;
    first = false;
  }
  if (it->err_off != 0)
    return path_error(w, FZIP_ERR_INVALID_ARGUMENT, "corrupt BSON", error);
  w->depth--;
  return put_char(w, is_array ? ']' : '}', error);
}

bool pkgjson_write_document(pkgjson_writer_t *w, const bson_t *doc, fzip_error_t *error) {
  bson_iter_t it;

  w->depth = 0;
  w->n_keys = 0;
  if (!bson_iter_init(&it, doc))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "corrupt BSON document");
  return write_container(w, &it, false, error);
}
