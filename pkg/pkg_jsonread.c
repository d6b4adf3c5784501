/*
 * pkg_jsonread: see pkg_jsonread.h.
 *
 * A recursive-descent parser over a refillable byte window.  Recursion is
 * safe because depth is checked before every nested object or array.
 * Every object and array is built as its own standalone bson_t and then
 * appended to its parent: that costs a copy per nesting level (entities
 * are shallow) but lets the duplicate-key check iterate a finished
 * document instead of one libbson is still writing.  A key is compared
 * with the members only when its fingerprint was seen before in the
 * object: the first KEYSET_LINEAR fingerprints sit in an array, and
 * objects with more members keep a hash set of them, so that the check
 * stays linear for large objects such as the manifest's checksums.
 */
#include "pkg_jsonread.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkg_json.h"
#include "pkg_set.h"

#define KEYSET_LINEAR 16        /* members checked by a plain scan */
#define DOC_VALUE_OVERHEAD 16   /* BSON bytes charged per value besides key and string */
#define EXACT_INT_DOUBLE 9007199254740992.0 /* 2^53: larger doubles skip integers */

typedef enum { ST_START = 0, ST_ARRAY_FIRST, ST_ARRAY_NEXT, ST_DONE, ST_FAILED } state_t;

struct pkgjr_reader {
  pkgjr_read_fn read;
  void *ctx;
  pkgjr_limits_t lim;
  unsigned char *buf;
  size_t pos, len;
  bool eof;
  uint64_t consumed; /* bytes handed out of buf so far */
  char *str;         /* scratch for the string being decoded */
  size_t str_len, str_cap;
  size_t doc_bytes; /* estimate of the document being built, against max_doc */
  size_t elements;  /* elements of the top-level array so far */
  state_t state;
  bool bare;        /* pkgjr_open_bare_array: no `{"<key>":` around the array */
  const char *wrap_uint64_key; /* pkgjr_wrap_uint64; NULL: off */
};

void pkgjr_limits_default(pkgjr_limits_t *limits) {
  limits->max_depth = PKGJR_DEPTH_MAX;
  limits->max_string = PKGJR_STRING_MAX;
  limits->max_key = PKGJR_KEY_MAX;
  limits->max_number = PKGJR_NUMBER_MAX;
  limits->max_members = PKGJR_MEMBERS_MAX;
  limits->max_elements = PKGJR_ELEMENTS_MAX;
  limits->max_doc = PKGJR_DOC_MAX;
  limits->max_total = PKGJR_TOTAL_MAX;
}

pkgjr_reader_t *pkgjr_reader_new(pkgjr_read_fn read, void *ctx, const pkgjr_limits_t *limits) {
  pkgjr_reader_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->read = read;
  r->ctx = ctx;
  if (limits)
    r->lim = *limits;
  else
    pkgjr_limits_default(&r->lim);
  if (r->lim.max_number > PKGJR_NUMBER_CAP)
    r->lim.max_number = PKGJR_NUMBER_CAP; /* the literal is copied into a fixed buffer */
  if (!(r->buf = malloc(PKGJR_BUFFER_SIZE))) {
    free(r);
    return NULL;
  }
  return r;
}

void pkgjr_reader_destroy(pkgjr_reader_t *r) {
  if (!r)
    return;
  free(r->buf);
  free(r->str);
  free(r);
}

uint64_t pkgjr_bytes_read(const pkgjr_reader_t *r) { return r->consumed; }

/* ---- errors ----------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static bool fail(pkgjr_reader_t *r, fzip_code_t code,
                                                       fzip_error_t *error, const char *fmt,
                                                       ...) {
  char msg[FZIP_ERROR_MESSAGE_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->state = ST_FAILED;
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, code, "byte %llu: %s",
                        (unsigned long long)r->consumed, msg);
}

static bool syntax(pkgjr_reader_t *r, fzip_error_t *error, const char *what) {
  return fail(r, FZIP_ERR_INVALID_ARGUMENT, error, "invalid JSON: %s", what);
}

/* ---- bytes ------------------------------------------------------------ */

/* Makes at least one byte available unless at the end; *c = -1 at the end.
 * *c is set on every path, failures too: callers read it only after a
 * success, but gcc -O3 cannot always tie the two together once peek() is
 * inlined into take() and its callers, and warned (maybe-uninitialized). */
static bool peek(int *c, pkgjr_reader_t *r, fzip_error_t *error) {
  *c = -1;
  if (r->pos == r->len && !r->eof) {
    size_t n = 0;
    if (!r->read(r->ctx, r->buf, PKGJR_BUFFER_SIZE, &n, error)) {
      r->state = ST_FAILED;
      return false;
    }
    if (n > PKGJR_BUFFER_SIZE)
      return fail(r, FZIP_ERR_INTERNAL, error, "source returned more than asked");
    r->pos = 0;
    r->len = n;
    r->eof = n == 0;
  }
  *c = r->pos < r->len ? r->buf[r->pos] : -1;
  return true;
}

static bool take(int *c, pkgjr_reader_t *r, fzip_error_t *error) {
  if (!peek(c, r, error))
    return false;
  if (*c < 0)
    return syntax(r, error, "unexpected end of input");
  if (r->consumed >= r->lim.max_total)
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "input longer than %llu bytes",
                (unsigned long long)r->lim.max_total);
  r->pos++;
  r->consumed++;
  return true;
}

static bool is_ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Skips whitespace; *c is the next byte (not consumed) or -1. */
static bool skip_ws(int *c, pkgjr_reader_t *r, fzip_error_t *error) {
  int d;
  for (;;) {
    if (!peek(c, r, error))
      return false;
    if (!is_ws(*c))
      return true;
    if (!take(&d, r, error))
      return false;
  }
}

static bool expect(pkgjr_reader_t *r, char want, const char *what, fzip_error_t *error) {
  int c;
  if (!skip_ws(&c, r, error))
    return false;
  if (c != (unsigned char)want)
    return syntax(r, error, what);
  return take(&c, r, error);
}

static bool expect_literal(pkgjr_reader_t *r, const char *lit, fzip_error_t *error) {
  int c;
  for (const char *p = lit; *p; p++) {
    if (!take(&c, r, error))
      return false;
    if (c != (unsigned char)*p)
      return syntax(r, error, "unknown literal");
  }
  return true;
}

/* ---- strings ---------------------------------------------------------- */

static bool str_put(pkgjr_reader_t *r, const char *data, size_t n, size_t max,
                    fzip_error_t *error) {
  if (r->str_len + n > max)
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "string longer than %zu bytes", max);
  if (r->str_len + n + 1 > r->str_cap) {
    size_t cap = r->str_cap ? r->str_cap : 256;
    while (cap < r->str_len + n + 1)
      cap *= 2;
    char *p = realloc(r->str, cap);
    if (!p)
      return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "out of memory");
    r->str = p;
    r->str_cap = cap;
  }
  memcpy(r->str + r->str_len, data, n);
  r->str_len += n;
  r->str[r->str_len] = '\0';
  return true;
}

static int hex_value(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static bool read_hex4(uint32_t *out, pkgjr_reader_t *r, fzip_error_t *error) {
  int c;
  *out = 0;
  for (int i = 0; i < 4; i++) {
    if (!take(&c, r, error))
      return false;
    if (hex_value(c) < 0)
      return syntax(r, error, "bad \\u escape");
    *out = (*out << 4) | (uint32_t)hex_value(c);
  }
  return true;
}

static size_t utf8_encode(char out[4], uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* \uXXXX, with a following \uXXXX when it is a high surrogate. */
static bool read_unicode_escape(pkgjr_reader_t *r, size_t max, fzip_error_t *error) {
  uint32_t cp, lo;
  char enc[4];
  int c;

  if (!read_hex4(&cp, r, error))
    return false;
  if (cp >= 0xdc00 && cp <= 0xdfff)
    return syntax(r, error, "lone low surrogate escape");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (!take(&c, r, error))
      return false;
    if (c != '\\')
      return syntax(r, error, "unpaired high surrogate escape");
    if (!take(&c, r, error))
      return false;
    if (c != 'u')
      return syntax(r, error, "unpaired high surrogate escape");
    if (!read_hex4(&lo, r, error))
      return false;
    if (lo < 0xdc00 || lo > 0xdfff)
      return syntax(r, error, "unpaired high surrogate escape");
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  }
  return str_put(r, enc, utf8_encode(enc, cp), max, error);
}

static bool read_escape(pkgjr_reader_t *r, size_t max, fzip_error_t *error) {
  static const char from[] = "\"\\/bfnrt";
  static const char to[] = "\"\\/\b\f\n\r\t";
  const char *p;
  int c;

  if (!take(&c, r, error))
    return false;
  if (c == 'u')
    return read_unicode_escape(r, max, error);
  if (c <= 0 || !(p = strchr(from, c)))
    return syntax(r, error, "bad escape");
  return str_put(r, &to[p - from], 1, max, error);
}

/* Decodes a string (opening quote already taken) into r->str. */
static bool read_string(pkgjr_reader_t *r, size_t max, fzip_error_t *error) {
  int c;
  r->str_len = 0;
  if (!str_put(r, "", 0, max, error))
    return false;
  for (;;) {
    if (!take(&c, r, error))
      return false;
    if (c == '"')
      break;
    if (c < 0x20)
      return syntax(r, error, "control character in string");
    if (c == '\\') {
      if (!read_escape(r, max, error))
        return false;
      continue;
    }
    char ch = (char)c;
    if (!str_put(r, &ch, 1, max, error))
      return false;
  }
  if (!pkgjson_utf8_valid(r->str, r->str_len))
    return fail(r, FZIP_ERR_INVALID_ARGUMENT, error, "string is not valid UTF-8");
  return true;
}

/* ---- numbers ---------------------------------------------------------- */

static bool num_put(char *buf, size_t *n, int c, pkgjr_reader_t *r, fzip_error_t *error) {
  if (*n >= r->lim.max_number)
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "number longer than %zu characters",
                r->lim.max_number);
  buf[(*n)++] = (char)c;
  buf[*n] = '\0';
  return true;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

/* Copies digits while they come; *count says how many. */
static bool read_digits(char *buf, size_t *n, size_t *count, pkgjr_reader_t *r,
                        fzip_error_t *error) {
  int c;
  *count = 0;
  for (;;) {
    if (!peek(&c, r, error))
      return false;
    if (!is_digit(c))
      return true;
    if (!take(&c, r, error) || !num_put(buf, n, c, r, error))
      return false;
    (*count)++;
  }
}

/* Reads a number literal into buf (RFC 8259 grammar); *integer says it had
 * neither fraction nor exponent. */
static bool read_number_text(char *buf, bool *integer, pkgjr_reader_t *r, fzip_error_t *error) {
  size_t n = 0, digits;
  int c;

  *integer = true;
  buf[0] = '\0';
  if (!peek(&c, r, error))
    return false;
  if (c == '-' && (!take(&c, r, error) || !num_put(buf, &n, c, r, error)))
    return false;
  if (!peek(&c, r, error))
    return false;
  if (c == '0') {
    if (!take(&c, r, error) || !num_put(buf, &n, c, r, error) || !peek(&c, r, error))
      return false;
    if (is_digit(c))
      return syntax(r, error, "leading zero in number");
  } else {
    if (!read_digits(buf, &n, &digits, r, error))
      return false;
    if (digits == 0)
      return syntax(r, error, "bad number");
  }
  if (!peek(&c, r, error))
    return false;
  if (c == '.') {
    *integer = false;
    if (!take(&c, r, error) || !num_put(buf, &n, c, r, error) ||
        !read_digits(buf, &n, &digits, r, error))
      return false;
    if (digits == 0)
      return syntax(r, error, "no digits after decimal point");
    if (!peek(&c, r, error))
      return false;
  }
  if (c == 'e' || c == 'E') {
    *integer = false;
    if (!take(&c, r, error) || !num_put(buf, &n, c, r, error) || !peek(&c, r, error))
      return false;
    if ((c == '+' || c == '-') && (!take(&c, r, error) || !num_put(buf, &n, c, r, error)))
      return false;
    if (!read_digits(buf, &n, &digits, r, error))
      return false;
    if (digits == 0)
      return syntax(r, error, "no digits in exponent");
  }
  return true;
}

static bool append_number(bson_t *parent, const char *key, size_t klen, pkgjr_reader_t *r,
                          fzip_error_t *error) {
  char buf[PKGJR_NUMBER_CAP + 1];
  bool integer;
  char *end;

  if (!read_number_text(buf, &integer, r, error))
    return false;
  if (integer) {
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno == 0 && *end == '\0')
      return bson_append_int64(parent, key, (int)klen, (int64_t)v);
    if (r->wrap_uint64_key && buf[0] != '-' && strlen(r->wrap_uint64_key) == klen &&
        memcmp(key, r->wrap_uint64_key, klen) == 0) {
      errno = 0;
      unsigned long long u = strtoull(buf, &end, 10);
      if (errno == 0 && *end == '\0')
        return bson_append_int64(parent, key, (int)klen, (int64_t)u);
    }
  }
  errno = 0;
  double d = strtod(buf, &end);
  if (*end != '\0' || !isfinite(d) || (errno == ERANGE && fabs(d) > 1.0))
    return fail(r, FZIP_ERR_INVALID_ARGUMENT, error, "number out of range");
  if (d == floor(d) && fabs(d) <= EXACT_INT_DOUBLE)
    return bson_append_int64(parent, key, (int)klen, (int64_t)d);
  return bson_append_double(parent, key, (int)klen, d);
}

/* ---- keys ------------------------------------------------------------- */

/* True if key is already a member of obj. */
static bool key_seen(const bson_t *obj, const char *key, size_t klen) {
  bson_iter_t it;
  return bson_iter_init_find_w_len(&it, obj, key, (int)klen);
}

/* Adds the key's fingerprint; *maybe_dup is true when it was there (the
 * caller then confirms with an exact scan). */
static bool keyset_add(bool *maybe_dup, pkg_fpset_t *ks, const char *key, size_t klen) {
  pkg_set_rc_t rc = pkg_fpset_add(ks, pkg_set_hash(key, klen), SIZE_MAX);
  *maybe_dup = rc == PKG_SET_PRESENT;
  return rc != PKG_SET_OOM;
}

/* ---- values ----------------------------------------------------------- */

static bool parse_value(bson_t *parent, const char *key, size_t klen, size_t depth,
                        pkgjr_reader_t *r, fzip_error_t *error);

static bool charge(pkgjr_reader_t *r, size_t bytes, fzip_error_t *error) {
  r->doc_bytes += bytes + DOC_VALUE_OVERHEAD;
  if (r->doc_bytes > r->lim.max_doc)
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "document larger than %zu bytes",
                r->lim.max_doc);
  return true;
}

static bool check_members(pkgjr_reader_t *r, size_t members, fzip_error_t *error) {
  if (members >= r->lim.max_members)
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "more than %zu members in one value",
                r->lim.max_members);
  return true;
}

/* Reads `"key":` into key (NUL-terminated) and checks it is new in obj.
 * The first KEYSET_LINEAR keys' fingerprints are kept in early[]: a key
 * is looked up in obj (a strncmp per member) only when its fingerprint
 * was seen, not for every member of every entity. */
static bool read_member_key(char *key, size_t *klen, const bson_t *obj, pkg_fpset_t *ks,
                            uint64_t early[KEYSET_LINEAR], size_t members, pkgjr_reader_t *r,
                            fzip_error_t *error) {
  bool maybe_dup = false;
  int c;

  if (!skip_ws(&c, r, error))
    return false;
  if (c != '"')
    return syntax(r, error, "expected a string key");
  if (!take(&c, r, error) || !read_string(r, r->lim.max_key, error))
    return false;
  if (memchr(r->str, '\0', r->str_len))
    return fail(r, FZIP_ERR_INVALID_ARGUMENT, error, "key contains U+0000");
  memcpy(key, r->str, r->str_len + 1);
  *klen = r->str_len;
  if (members < KEYSET_LINEAR) {
    uint64_t h = pkg_set_hash(key, *klen);
    for (size_t i = 0; i < members && !maybe_dup; i++)
      maybe_dup = early[i] == h;
    early[members] = h;
  } else if (!keyset_add(&maybe_dup, ks, key, *klen)) {
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "out of memory");
  }
  if (maybe_dup && key_seen(obj, key, *klen))
    return fail(r, FZIP_ERR_INVALID_ARGUMENT, error, "duplicate key \"%.64s\"", key);
  return expect(r, ':', "expected ':' after key", error);
}

/* The early members of an object are only scanned; once it grows past
 * KEYSET_LINEAR, hash those too so later keys can be checked in the set. */
static bool keyset_seed(pkg_fpset_t *ks, const bson_t *obj) {
  bson_iter_t it;
  bool dup;
  if (!bson_iter_init(&it, obj))
    return false;
  while (bson_iter_next(&it)) {
    if (!keyset_add(&dup, ks, bson_iter_key(&it), bson_iter_key_len(&it)))
      return false;
  }
  return true;
}

/* Parses object members ('{' taken) into obj. */
static bool parse_object_body(bson_t *obj, size_t depth, pkgjr_reader_t *r, fzip_error_t *error) {
  pkg_fpset_t ks = {0};
  uint64_t early[KEYSET_LINEAR];
  char *key = NULL;
  size_t members = 0, klen = 0;
  bool ok = false;
  int c;

  if (!skip_ws(&c, r, error))
    goto done;
  if (c == '}') {
    ok = take(&c, r, error);
    goto done;
  }
  if (!(key = malloc(r->lim.max_key + 1))) {
    fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "out of memory");
    goto done;
  }
  for (;;) {
    if (!check_members(r, members, error))
      goto done;
    if (members == KEYSET_LINEAR && !keyset_seed(&ks, obj)) {
      fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "out of memory");
      goto done;
    }
    if (!read_member_key(key, &klen, obj, &ks, early, members, r, error) ||
        !parse_value(obj, key, klen, depth, r, error))
      goto done;
    members++;
    if (!skip_ws(&c, r, error) || !take(&c, r, error))
      goto done;
    if (c == '}')
      break;
    if (c != ',') {
      syntax(r, error, "expected ',' or '}' in object");
      goto done;
    }
  }
  ok = true;
done:
  free(key);
  pkg_fpset_free(&ks);
  return ok;
}

/* Parses array elements ('[' taken) into arr. */
static bool parse_array_body(bson_t *arr, size_t depth, pkgjr_reader_t *r, fzip_error_t *error) {
  char idx[PKGJSON_INDEX_KEY_SIZE];
  const char *k;
  size_t n = 0;
  int c;

  if (!skip_ws(&c, r, error))
    return false;
  if (c == ']')
    return take(&c, r, error);
  for (;;) {
    if (!check_members(r, n, error))
      return false;
    size_t klen = bson_uint32_to_string((uint32_t)n, &k, idx, sizeof idx);
    if (!parse_value(arr, k, klen, depth, r, error))
      return false;
    n++;
    if (!skip_ws(&c, r, error) || !take(&c, r, error))
      return false;
    if (c == ']')
      return true;
    if (c != ',')
      return syntax(r, error, "expected ',' or ']' in array");
  }
}

static bool parse_container(bson_t *parent, const char *key, size_t klen, bool is_object,
                            size_t depth, pkgjr_reader_t *r, fzip_error_t *error) {
  bson_t child;
  bool ok;
  int c;

  if (depth + 1 > r->lim.max_depth)
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "nesting deeper than %zu",
                r->lim.max_depth);
  if (!take(&c, r, error))
    return false;
  bson_init(&child);
  ok = is_object ? parse_object_body(&child, depth + 1, r, error)
                 : parse_array_body(&child, depth + 1, r, error);
  if (ok) {
    ok = is_object ? bson_append_document(parent, key, (int)klen, &child)
                   : bson_append_array(parent, key, (int)klen, &child);
    if (!ok)
      fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "document too large for BSON");
  }
  bson_destroy(&child);
  return ok;
}

static bool parse_value(bson_t *parent, const char *key, size_t klen, size_t depth,
                        pkgjr_reader_t *r, fzip_error_t *error) {
  bool ok;
  int c;

  if (!charge(r, klen, error) || !skip_ws(&c, r, error))
    return false;
  switch (c) {
  case '{':
  case '[':
    return parse_container(parent, key, klen, c == '{', depth, r, error);
  case '"':
    if (!take(&c, r, error) || !read_string(r, r->lim.max_string, error) ||
        !charge(r, r->str_len, error))
      return false;
    ok = bson_append_utf8(parent, key, (int)klen, r->str, (int)r->str_len);
    break;
  case 't':
    ok = expect_literal(r, "true", error) && bson_append_bool(parent, key, (int)klen, true);
    break;
  case 'f':
    ok = expect_literal(r, "false", error) && bson_append_bool(parent, key, (int)klen, false);
    break;
  case 'n':
    ok = expect_literal(r, "null", error) && bson_append_null(parent, key, (int)klen);
    break;
  default:
    if (c != '-' && !is_digit(c))
      return syntax(r, error, c < 0 ? "unexpected end of input" : "unexpected character");
    ok = append_number(parent, key, klen, r, error);
    break;
  }
  if (!ok && r->state != ST_FAILED)
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "document too large for BSON");
  return ok;
}

/* ---- top level -------------------------------------------------------- */

static bool expect_end(pkgjr_reader_t *r, fzip_error_t *error) {
  int c;
  if (!skip_ws(&c, r, error))
    return false;
  if (c >= 0)
    return syntax(r, error, "trailing data after the top-level value");
  r->state = ST_DONE;
  return true;
}

static bool usable(pkgjr_reader_t *r, state_t want, fzip_error_t *error) {
  if (r->state == want)
    return true;
  if (r->state == ST_FAILED)
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_FAILED_PRECONDITION,
                          "JSON reader already failed");
  return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_FAILED_PRECONDITION,
                        "JSON reader used out of order");
}

bool pkgjr_open_array(char *key_out, size_t key_cap, pkgjr_reader_t *r, fzip_error_t *error) {
  int c;
  if (!usable(r, ST_START, error) || !expect(r, '{', "expected '{' at the start", error) ||
      !skip_ws(&c, r, error))
    return false;
  if (c != '"')
    return syntax(r, error, "expected one key in the top-level object");
  if (!take(&c, r, error) || !read_string(r, r->lim.max_key, error))
    return false;
  if (r->str_len + 1 > key_cap || memchr(r->str, '\0', r->str_len))
    return fail(r, FZIP_ERR_INVALID_ARGUMENT, error, "unexpected top-level key");
  memcpy(key_out, r->str, r->str_len + 1);
  if (!expect(r, ':', "expected ':' after key", error) ||
      !expect(r, '[', "expected an array under the top-level key", error))
    return false;
  r->state = ST_ARRAY_FIRST;
  return true;
}

bool pkgjr_open_bare_array(pkgjr_reader_t *r, fzip_error_t *error) {
  if (!usable(r, ST_START, error) ||
      !expect(r, '[', "expected '[' at the start (a bare JSON array)", error))
    return false;
  r->bare = true;
  r->state = ST_ARRAY_FIRST;
  return true;
}

void pkgjr_wrap_uint64(pkgjr_reader_t *r, const char *key) { r->wrap_uint64_key = key; }

/* Consumes what separates elements; *more says whether one follows. */
static bool array_step(bool *more, pkgjr_reader_t *r, fzip_error_t *error) {
  int c;
  if (!skip_ws(&c, r, error))
    return false;
  if (c == ']') {
    *more = false;
    return take(&c, r, error) &&
           (r->bare || expect(r, '}', "expected '}' after the array", error)) &&
           expect_end(r, error);
  }
  if (r->state == ST_ARRAY_NEXT) {
    if (c != ',')
      return syntax(r, error, "expected ',' or ']' in array");
    if (!take(&c, r, error) || !skip_ws(&c, r, error))
      return false;
  }
  if (c != '{')
    return syntax(r, error, "array element is not an object");
  *more = true;
  return true;
}

bool pkgjr_next_document(bool *more, bson_t *doc, pkgjr_reader_t *r, fzip_error_t *error) {
  int c;

  *more = false;
  if (r->state == ST_DONE)
    return true;
  if (r->state != ST_ARRAY_FIRST && !usable(r, ST_ARRAY_NEXT, error))
    return false;
  if (!array_step(more, r, error)) {
    *more = false;
    return false;
  }
  if (!*more)
    return true;
  *more = false;
  if (r->elements >= r->lim.max_elements)
    return fail(r, FZIP_ERR_RESOURCE_EXHAUSTED, error, "more than %zu array elements",
                r->lim.max_elements);
  bson_reinit(doc);
  r->doc_bytes = 0;
  if (!take(&c, r, error) || !parse_object_body(doc, 1, r, error))
    return false;
  r->elements++;
  r->state = ST_ARRAY_NEXT;
  *more = true;
  return true;
}

bool pkgjr_read_document(bson_t *doc, pkgjr_reader_t *r, fzip_error_t *error) {
  int c;
  if (!usable(r, ST_START, error) || !skip_ws(&c, r, error))
    return false;
  if (c != '{')
    return syntax(r, error, "expected an object");
  bson_reinit(doc);
  r->doc_bytes = 0;
  if (!take(&c, r, error) || !parse_object_body(doc, 1, r, error))
    return false;
  return expect_end(r, error);
}
