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

struct pkgjson_writer {
  pkgjson_sink_fn sink;
  void *sink_ctx;
  uint64_t written;
  size_t used;
  int depth;
  size_t path_len;
  char path[PKGJSON_PATH_MAX];
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

static bool put(pkgjson_writer_t *w, const char *data, size_t len, fzip_error_t *error) {
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
    size_t n = pkgjson_utf8_seq_len(s + i, len - i);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

static bool path_error(pkgjson_writer_t *w, fzip_code_t code, const char *what,
                       fzip_error_t *error) {
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, code, "field \"%.*s\": %s", (int)w->path_len,
                        w->path, what);
}

/* Escapes runs of plain bytes in one put() each: most strings have none. */
static bool write_escaped(pkgjson_writer_t *w, const char *s, size_t len, fzip_error_t *error) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;

  if (!put(w, "\"", 1, error))
    return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6];
    size_t esc_len = 2;

    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    if (!put(w, s + run, i - run, error))
      return false;
    run = i + 1;
    esc[0] = '\\';
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
    if (!put(w, esc, esc_len, error))
      return false;
  }
  return put(w, s + run, len - run, error) && put(w, "\"", 1, error);
}

bool pkgjson_write_string(pkgjson_writer_t *w, const char *s, size_t len, fzip_error_t *error) {
  if (!pkgjson_utf8_valid(s, len))
    return path_error(w, FZIP_ERR_INVALID_ARGUMENT, "string is not valid UTF-8", error);
  return write_escaped(w, s, len, error);
}

bool pkgjson_write_int64(pkgjson_writer_t *w, int64_t v, fzip_error_t *error) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
  return put(w, tmp, (size_t)n, error);
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

/* Appends ".key" (or "key" at the top) to the error path; returns the old
 * length to restore.  A path longer than the buffer is cut, not an error:
 * it only decorates messages. */
static size_t path_push(pkgjson_writer_t *w, const char *key) {
  size_t old = w->path_len;
  int n = snprintf(w->path + old, sizeof w->path - old, "%s%s", old ? "." : "", key);
  if (n > 0)
    w->path_len = old + (size_t)n < sizeof w->path ? old + (size_t)n : sizeof w->path - 1;
  return old;
}

static bool write_container(pkgjson_writer_t *w, bson_iter_t *it, bool is_array,
                            fzip_error_t *error);

static bool write_value(pkgjson_writer_t *w, bson_iter_t *it, fzip_error_t *error) {
  bson_iter_t child;
  uint32_t len;
  const char *s;

  switch (bson_iter_type(it)) {
  case BSON_TYPE_UTF8:
    s = bson_iter_utf8(it, &len);
    return pkgjson_write_string(w, s, len, error);
  case BSON_TYPE_INT32:
    return pkgjson_write_int64(w, bson_iter_int32(it), error);
  case BSON_TYPE_INT64:
    return pkgjson_write_int64(w, bson_iter_int64(it), error);
  case BSON_TYPE_DOUBLE:
    return pkgjson_write_double(w, bson_iter_double(it), error);
  case BSON_TYPE_BOOL:
    return bson_iter_bool(it) ? put(w, "true", 4, error) : put(w, "false", 5, error);
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

static bool write_member(pkgjson_writer_t *w, bson_iter_t *it, bool is_array, bool first,
                         fzip_error_t *error) {
  const char *key = bson_iter_key(it);
  size_t old = path_push(w, key);
  bool ok = true;

  if (!first)
    ok = put(w, ",", 1, error);
  if (ok && !is_array) {
    size_t key_len = strlen(key);
    if (!pkgjson_utf8_valid(key, key_len))
      ok = path_error(w, FZIP_ERR_INVALID_ARGUMENT, "key is not valid UTF-8", error);
    else
      ok = write_escaped(w, key, key_len, error) && put(w, ":", 1, error);
  }
  if (ok)
    ok = write_value(w, it, error);
  w->path_len = old;
  w->path[old] = '\0';
  return ok;
}

static bool write_container(pkgjson_writer_t *w, bson_iter_t *it, bool is_array,
                            fzip_error_t *error) {
  bool first = true;

  if (w->depth >= PKGJSON_DEPTH_MAX)
    return path_error(w, FZIP_ERR_RESOURCE_EXHAUSTED, "nested deeper than PKGJSON_DEPTH_MAX",
                      error);
  w->depth++;
  if (!put(w, is_array ? "[" : "{", 1, error))
    return false;
  while (bson_iter_next(it)) {
    if (!write_member(w, it, is_array, first, error))
      return false;
    first = false;
  }
  if (it->err_off != 0)
    return path_error(w, FZIP_ERR_INVALID_ARGUMENT, "corrupt BSON", error);
  w->depth--;
  return put(w, is_array ? "]" : "}", 1, error);
}

bool pkgjson_write_document(pkgjson_writer_t *w, const bson_t *doc, fzip_error_t *error) {
  bson_iter_t it;

  w->depth = 0;
  w->path_len = 0;
  w->path[0] = '\0';
  if (!bson_iter_init(&it, doc))
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_INVALID_ARGUMENT,
                          "corrupt BSON document");
  return write_container(w, &it, false, error);
}
