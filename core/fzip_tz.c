/*
 * fzip_tz: see fzip_tz.h.
 *
 * A zone is its transition table (the TZif v2+ 64-bit block; the v1
 * block is skipped) and its footer rule.  An instant before the first
 * transition has type 0 (RFC 8536 3.2), one after the last follows the
 * rule when there is one, else the last transition's type.  Civil dates
 * use proleptic Gregorian day counts (days_from_civil/civil_from_days,
 * H. Hinnant's algorithms), so no C library time function is involved.
 *
 * Local -> UTC looks at the offsets in force a little more than a day
 * before and after the local time read as UTC: whichever of the two
 * candidate instants maps back to the local time is it (both: an
 * overlap, the earlier wins); neither: a gap, and the answer is the
 * transition, found by bisection.
 */
#include "fzip_tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_util.h"

#define SECS_PER_DAY 86400
#define SECS_PER_HOUR 3600
/* Largest |UTC offset| accepted (RFC 8536 suggests below 26 h). */
#define OFFSET_MAX_S (26 * SECS_PER_HOUR)
/* Rule times may be -167..167 hours (RFC 8536 3.3.1). */
#define RULE_HOURS_MAX 167
/* Offsets sampled this far either side of a local time read as UTC: more
 * than any offset, so the samples fall before and after its instant. */
#define LOCAL_SPAN_S (OFFSET_MAX_S + 4 * SECS_PER_HOUR)
#define YEAR_LIMIT FZIP_TZ_YEAR_LIMIT
#define SECS_LIMIT FZIP_TZ_SECS_LIMIT
#define TZIF_HEADER_LEN 44
#define TZIF_TYPES_MAX 256

typedef struct {
  int32_t off; /* east of UTC */
  bool dst;
} tz_type_t;

/* A POSIX rule date: Jn (1..365, no Feb 29), n (0..365) or Mm.w.d. */
typedef struct {
  char kind; /* 'J', 'N' or 'M' */
  int n, m, w, d;
  int32_t time; /* local seconds after midnight, -167..167 h */
} tz_date_t;

typedef struct {
  int32_t std_off, dst_off; /* east of UTC */
  bool has_dst;
  tz_date_t start, end; /* start in standard time, end in daylight time */
} tz_rule_t;

struct fzip_tz {
  char name[FZIP_TZ_NAME_MAX + 1];
  size_t n_trans;
  int64_t *trans;     /* ascending */
  uint8_t *trans_idx; /* type of each transition */
  size_t n_types;
  tz_type_t types[TZIF_TYPES_MAX];
  bool has_rule;
  tz_rule_t rule;
};

/* ---- civil dates ------------------------------------------------------ */

static int64_t floor_div(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

int64_t fzip_tz_days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void fzip_tz_civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int fzip_tz_month_days(int64_t y, int m) {
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return days[m - 1] + (m == 2 && is_leap(y));
}

int fzip_tz_weekday(int64_t days) { return (int)(((days % 7) + 11) % 7); } /* 1970-01-01: Thu */

/* ---- offsets ---------------------------------------------------------- */

/* Local midnight of the rule date in year y, as days since the epoch. */
static int64_t rule_day(const tz_date_t *r, int64_t y) {
  int64_t jan1 = fzip_tz_days_from_civil(y, 1, 1);

  if (r->kind == 'J')
    return jan1 + r->n - 1 + (is_leap(y) && r->n >= 60);
  if (r->kind == 'N')
    return jan1 + r->n;
  int64_t first = fzip_tz_days_from_civil(y, r->m, 1);
  int day = 1 + (r->d - fzip_tz_weekday(first) + 7) % 7 + 7 * (r->w - 1);
  while (day > fzip_tz_month_days(y, r->m))
    day -= 7;
  return first + day - 1;
}

static bool rule_is_dst(const tz_rule_t *r, int64_t t) {
  int64_t y;
  int m, d;

  if (!r->has_dst)
    return false;
  fzip_tz_civil_from_days(floor_div(t + r->std_off, SECS_PER_DAY), &y, &m, &d);
  int64_t start = rule_day(&r->start, y) * SECS_PER_DAY + r->start.time - r->std_off;
  int64_t end = rule_day(&r->end, y) * SECS_PER_DAY + r->end.time - r->dst_off;
  if (start < end)
    return t >= start && t < end;
  return !(t >= end && t < start); /* southern hemisphere: DST spans the new year */
}

static tz_type_t type_at(const fzip_tz_t *tz, int64_t t) {
  if (tz->n_trans == 0 || t > tz->trans[tz->n_trans - 1]) {
    if (tz->has_rule) {
      bool dst = rule_is_dst(&tz->rule, t);
      return (tz_type_t){dst ? tz->rule.dst_off : tz->rule.std_off, dst};
    }
    return tz->n_trans ? tz->types[tz->trans_idx[tz->n_trans - 1]] : tz->types[0];
  }
  if (t < tz->trans[0])
    return tz->types[0];
  size_t lo = 0, hi = tz->n_trans - 1; /* trans[lo] <= t; find the last such */
  while (lo < hi) {
    size_t mid = lo + (hi - lo + 1) / 2;
    if (tz->trans[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return tz->types[tz->trans_idx[lo]];
}

/* ---- POSIX TZ rule (the TZif footer) ---------------------------------- */

static bool parse_num(const char **p, int lo, int hi, int *out) {
  const char *s = *p;
  int v = 0;

  if (*s < '0' || *s > '9')
    return false;
  while (*s >= '0' && *s <= '9') {
    v = v * 10 + (*s++ - '0');
    if (v > hi)
      return false;
  }
  if (v < lo)
    return false;
  *p = s;
  *out = v;
  return true;
}

/* [+-]hh[:mm[:ss]], hours at most max_h; seconds, signed as written. */
static bool parse_hms(const char **p, int max_h, int32_t *out) {
  int sign = 1, h = 0, mi = 0, se = 0;

  if (**p == '+' || **p == '-')
    sign = *(*p)++ == '-' ? -1 : 1;
  if (!parse_num(p, 0, max_h, &h))
    return false;
  if (**p == ':' && (++*p, !parse_num(p, 0, 59, &mi)))
    return false;
  if (**p == ':' && (++*p, !parse_num(p, 0, 59, &se)))
    return false;
  *out = sign * (h * SECS_PER_HOUR + mi * 60 + se);
  return true;
}

/* A zone abbreviation: three or more letters, or <...> of letters, digits, + and -. */
static bool parse_abbr(const char **p) {
  const char *s = *p;
  size_t n = 0;

  if (*s == '<') {
    for (s++; (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '+' || *s == '-';
         s++)
      n++;
    if (*s != '>' || n < 3)
      return false;
    *p = s + 1;
    return true;
  }
  for (; (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'); s++)
    n++;
  if (n < 3)
    return false;
  *p = s;
  return true;
}

static bool parse_date(const char **p, tz_date_t *r) {
  r->time = 2 * SECS_PER_HOUR;
  if (**p == 'M') {
    ++*p;
    r->kind = 'M';
    if (!parse_num(p, 1, 12, &r->m) || *(*p)++ != '.' || !parse_num(p, 1, 5, &r->w) ||
        *(*p)++ != '.' || !parse_num(p, 0, 6, &r->d))
      return false;
  } else if (**p == 'J') {
    ++*p;
    r->kind = 'J';
    if (!parse_num(p, 1, 365, &r->n))
      return false;
  } else {
    r->kind = 'N';
    if (!parse_num(p, 0, 365, &r->n))
      return false;
  }
  if (**p == '/')
    return ++*p, parse_hms(p, RULE_HOURS_MAX, &r->time);
  return true;
}

/* std offset [dst [offset] ,start[/time],end[/time]]: POSIX offsets are
 * west of UTC; a rule with daylight time must say when (zic always does). */
static bool parse_rule(tz_rule_t *r, const char *s) {
  int32_t w;

  memset(r, 0, sizeof *r);
  if (!parse_abbr(&s) || !parse_hms(&s, 24, &w))
    return false;
  r->std_off = -w;
  if (*s == '\0')
    return true;
  if (!parse_abbr(&s))
    return false;
  r->has_dst = true;
  r->dst_off = r->std_off + SECS_PER_HOUR;
  if (*s != ',') {
    if (!parse_hms(&s, 24, &w))
      return false;
    r->dst_off = -w;
  }
  return *s++ == ',' && parse_date(&s, &r->start) && *s++ == ',' && parse_date(&s, &r->end) &&
         *s == '\0';
}

/* ---- TZif ------------------------------------------------------------- */

typedef struct {
  uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} tzif_counts_t;

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p) {
  return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static bool bad(fzip_error_t *error, const char *name, const char *why) {
  return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                        "time zone %s: %s", name, why);
}

/* Reads a header at data[*pos] and moves past it; *version is '2' or later. */
static bool read_header(tzif_counts_t *c, char *version, const uint8_t *data, size_t len,
                        size_t *pos, const char *name, fzip_error_t *error) {
  const uint8_t *h = data + *pos;

  if (len - *pos < TZIF_HEADER_LEN || memcmp(h, "TZif", 4) != 0)
    return bad(error, name, "not a TZif file");
  *version = (char)h[4];
  if (*version < '2')
    return bad(error, name, "TZif version 1 (no 64-bit data) is not supported");
  *c = (tzif_counts_t){be32(h + 20), be32(h + 24), be32(h + 28),
                       be32(h + 32), be32(h + 36), be32(h + 40)};
  if (c->leapcnt)
    return bad(error, name, "leap-second zones are not supported");
  if (c->typecnt == 0 || c->typecnt > TZIF_TYPES_MAX || c->timecnt > FZIP_TZ_TRANSITIONS_MAX ||
      c->charcnt > TZIF_TYPES_MAX * 8 || (c->isutcnt && c->isutcnt != c->typecnt) ||
      (c->isstdcnt && c->isstdcnt != c->typecnt))
    return bad(error, name, "TZif counts out of bounds");
  *pos += TZIF_HEADER_LEN;
  return true;
}

static size_t block_len(const tzif_counts_t *c, size_t time_len) {
  return (size_t)c->timecnt * (time_len + 1) + (size_t)c->typecnt * 6 + c->charcnt +
         (size_t)c->leapcnt * (time_len + 4) + c->isstdcnt + c->isutcnt;
}

/* The v2+ data block at data[pos]: transitions and types. */
static bool read_block(fzip_tz_t *tz, const tzif_counts_t *c, const uint8_t *data, size_t pos,
                       fzip_error_t *error) {
  const uint8_t *idx = data + pos + (size_t)c->timecnt * 8;
  const uint8_t *types = idx + c->timecnt;

  tz->n_trans = c->timecnt;
  tz->n_types = c->typecnt;
  if (c->timecnt && (!(tz->trans = malloc(c->timecnt * sizeof *tz->trans)) ||
                     !(tz->trans_idx = malloc(c->timecnt))))
    return fzip_error_oom(error, "time zone");
  for (size_t i = 0; i < c->timecnt; i++) {
    tz->trans[i] = be64(data + pos + i * 8);
    tz->trans_idx[i] = idx[i];
    if (idx[i] >= c->typecnt || (i && tz->trans[i] <= tz->trans[i - 1]))
      return bad(error, tz->name, "TZif transitions out of order or of an unknown type");
  }
  for (size_t i = 0; i < c->typecnt; i++) {
    int32_t off = (int32_t)be32(types + i * 6);
    if (off <= -OFFSET_MAX_S || off >= OFFSET_MAX_S || types[i * 6 + 4] > 1 ||
        types[i * 6 + 5] >= c->charcnt)
      return bad(error, tz->name, "TZif time type out of bounds");
    tz->types[i] = (tz_type_t){off, types[i * 6 + 4] == 1};
  }
  return true;
}

/* "\n<rule>\n" after the v2 block; an empty rule is none. */
static bool read_footer(fzip_tz_t *tz, const uint8_t *data, size_t len, size_t pos,
                        fzip_error_t *error) {
  char rule[FZIP_TZ_FOOTER_MAX + 1];
  const uint8_t *end;

  if (pos >= len || data[pos] != '\n')
    return bad(error, tz->name, "TZif footer missing");
  pos++;
  end = memchr(data + pos, '\n', len - pos);
  if (!end || (size_t)(end - (data + pos)) > FZIP_TZ_FOOTER_MAX)
    return bad(error, tz->name, "TZif footer unterminated or too long");
  memcpy(rule, data + pos, (size_t)(end - (data + pos)));
  rule[end - (data + pos)] = '\0';
  if (strlen(rule) != (size_t)(end - (data + pos)))
    return bad(error, tz->name, "TZif footer holds a NUL");
  if (!rule[0])
    return true;
  tz->has_rule = true;
  if (!parse_rule(&tz->rule, rule))
    return bad(error, tz->name, "TZif footer rule not understood");
  return true;
}

static fzip_tz_t *tz_alloc(const char *name) {
  fzip_tz_t *tz = calloc(1, sizeof *tz);

  if (tz)
    snprintf(tz->name, sizeof tz->name, "%s", name && *name ? name : "UTC");
  return tz;
}

bool fzip_tz_parse(fzip_tz_t **out, const char *name, const uint8_t *data, size_t len,
                   fzip_error_t *error) {
  fzip_tz_t *tz = tz_alloc(name);
  tzif_counts_t c;
  size_t pos = 0;
  char version;
  bool ok = false;

  *out = NULL;
  if (!tz)
    return fzip_error_oom(error, "time zone");
  if (len > FZIP_TZ_FILE_MAX) {
    bad(error, tz->name, "TZif file too large");
    goto done;
  }
  if (!read_header(&c, &version, data, len, &pos, tz->name, error))
    goto done;
  if (len - pos < block_len(&c, 4)) {
    bad(error, tz->name, "TZif file truncated");
    goto done;
  }
  pos += block_len(&c, 4);
  if (!read_header(&c, &version, data, len, &pos, tz->name, error))
    goto done;
  if (len - pos < block_len(&c, 8)) {
    bad(error, tz->name, "TZif file truncated");
    goto done;
  }
  if (!read_block(tz, &c, data, pos, error) ||
      !read_footer(tz, data, len, pos + block_len(&c, 8), error))
    goto done;
  *out = tz;
  tz = NULL;
  ok = true;
done:
  fzip_tz_destroy(tz);
  return ok;
}

/* ---- loading ---------------------------------------------------------- */

static bool name_char_ok(char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
         ch == '/' || ch == '_' || ch == '+' || ch == '-' || ch == '.';
}

/* Relative, no empty, "." or ".." component: the name cannot leave the
 * zoneinfo directory. */
static bool name_ok(const char *name) {
  size_t len = strlen(name);

  if (len == 0 || len > FZIP_TZ_NAME_MAX || name[0] == '/' || name[len - 1] == '/')
    return false;
  for (const char *c = name; *c; c++) {
    if (!name_char_ok(*c))
      return false;
    if ((c == name || c[-1] == '/') &&
        (c[0] == '/' || (c[0] == '.' && (c[1] == '/' || c[1] == '\0' ||
                                         (c[1] == '.' && (c[2] == '/' || c[2] == '\0'))))))
      return false;
  }
  return true;
}

bool fzip_tz_load(fzip_tz_t **out, const char *name, fzip_error_t *error) {
  const char *dir = getenv("TZDIR");
  char path[4096];
  char *data = NULL;
  size_t len = 0;
  fzip_error_t read_err;
  bool ok;

  *out = NULL;
  if (!name || !*name || strcmp(name, "UTC") == 0) {
    fzip_tz_t *tz = tz_alloc("UTC");
    if (!tz)
      return fzip_error_oom(error, "time zone");
    *out = tz;
    return true;
  }
  if (!name_ok(name))
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "time zone \"%.*s\" is not an IANA zone name (letters, digits, / _ + - "
                          "., at most %d bytes, no . or .. component)",
                          FZIP_TZ_NAME_MAX, name, FZIP_TZ_NAME_MAX);
  if (!dir || !*dir)
    dir = FZIP_TZ_DIR_DEFAULT;
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
    return bad(error, name, "zoneinfo path too long");
  /* The read error names the server's zoneinfo path, which is not the
   * client's business: the message says only which name failed. */
  if (!fzip_read_small_file(&data, &len, path, FZIP_TZ_FILE_MAX, &read_err))
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "unknown time zone %s", name);
  ok = fzip_tz_parse(out, name, (const uint8_t *)data, len, error);
  free(data);
  return ok;
}

void fzip_tz_destroy(fzip_tz_t *tz) {
  if (!tz)
    return;
  free(tz->trans);
  free(tz->trans_idx);
  free(tz);
}

const char *fzip_tz_name(const fzip_tz_t *tz) { return tz->name; }

/* ---- conversions ------------------------------------------------------ */

void fzip_tz_local(const fzip_tz_t *tz, int64_t utc_s, struct tm *local, int32_t *utc_offset_s) {
  int64_t y, days, secs;
  int m, d;

  if (utc_s > SECS_LIMIT)
    utc_s = SECS_LIMIT;
  if (utc_s < -SECS_LIMIT)
    utc_s = -SECS_LIMIT;
  tz_type_t ty = type_at(tz, utc_s);
  secs = utc_s + ty.off;
  days = floor_div(secs, SECS_PER_DAY);
  secs -= days * SECS_PER_DAY;
  fzip_tz_civil_from_days(days, &y, &m, &d);
  memset(local, 0, sizeof *local);
  local->tm_year = (int)(y - 1900);
  local->tm_mon = m - 1;
  local->tm_mday = d;
  local->tm_hour = (int)(secs / SECS_PER_HOUR);
  local->tm_min = (int)(secs / 60 % 60);
  local->tm_sec = (int)(secs % 60);
  local->tm_wday = fzip_tz_weekday(days);
  local->tm_yday = (int)(days - fzip_tz_days_from_civil(y, 1, 1));
  local->tm_isdst = ty.dst;
  if (utc_offset_s)
    *utc_offset_s = ty.off;
}

/* The first instant in (lo, hi] whose offset is not `before`'s (one
 * transition there). */
static int64_t transition_in(const fzip_tz_t *tz, int64_t lo, int64_t hi, int32_t before) {
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (type_at(tz, mid).off == before)
      lo = mid;
    else
      hi = mid;
  }
  return hi;
}

bool fzip_tz_utc(int64_t *utc_s, const fzip_tz_t *tz, const struct tm *local,
                 fzip_error_t *error) {
  int64_t months = (int64_t)local->tm_year * 12 + local->tm_mon;
  int64_t y = 1900 + floor_div(months, 12);
  int mon = (int)(months - floor_div(months, 12) * 12) + 1;

  if (y < -YEAR_LIMIT || y > YEAR_LIMIT)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "local time out of range (year %lld)", (long long)y);
  int64_t ls = (fzip_tz_days_from_civil(y, mon, 1) + local->tm_mday - 1) * SECS_PER_DAY +
               (int64_t)local->tm_hour * SECS_PER_HOUR + (int64_t)local->tm_min * 60 +
               local->tm_sec;
  int32_t ob = type_at(tz, ls - LOCAL_SPAN_S).off;
  int32_t oa = type_at(tz, ls + LOCAL_SPAN_S).off;
  int64_t ub = ls - ob, ua = ls - oa;
  bool b_ok = type_at(tz, ub).off == ob, a_ok = type_at(tz, ua).off == oa;

  if (b_ok && a_ok)
    *utc_s = ub < ua ? ub : ua;
  else if (b_ok || a_ok)
    *utc_s = b_ok ? ub : ua;
  else
    *utc_s = transition_in(tz, ls - LOCAL_SPAN_S, ls + LOCAL_SPAN_S, ob);
  return true;
}
