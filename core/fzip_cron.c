/*
 * fzip_cron: see fzip_cron.h.
 *
 * Parsing fills one bit set per field.  The next due time is searched on
 * the wall clock (year, month, day, hour, minute as plain calendar
 * arithmetic, no time zone), skipping a whole month, day or hour at once
 * when it cannot match, then the wall time found is turned into an
 * instant in the zone.  An instant not after `after` (a gap mapped forward
 * onto one already used, or the second pass of an overlap) moves the wall
 * search on by a minute, so a wall time that happens twice runs once.
 */
#include "fzip_cron.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int lo, hi;
} field_t;

static const field_t FIELDS[5] = {
    {"minute", 0, 59}, {"hour", 0, 23}, {"day-of-month", 1, 31}, {"month", 1, 12},
    {"day-of-week", 0, 7},
};

static const struct {
  const char *name;
  const char *spec;
} MACROS[] = {
    {"@hourly", "0 * * * *"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},
    {"@monthly", "0 0 1 * *"},
};

#define MINUTE_S 60
#define DAY_S (24 * 3600)

/* INVALID_ARGUMENT "cron: <field>: <what>". */
static bool bad(fzip_error_t *error, const field_t *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool bad(fzip_error_t *error, const field_t *f, const char *fmt, ...) {
  char what[FZIP_ERROR_MESSAGE_MAX / 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT, "cron: %s: %s",
                        f->name, what);
}

/* A decimal number of at most 3 digits at *p (cron numbers are small;
 * the range check refuses what is too large). */
static bool parse_num(int *out, const char **p) {
  int n = 0, digits = 0;
  while (**p >= '0' && **p <= '9') {
    if (++digits > 3)
      return false;
    n = n * 10 + (**p - '0');
    (*p)++;
  }
  *out = n;
  return digits > 0;
}

/* One item "*", "n", "a-b", each with an optional "/step", ending at
 * `end`; sets its bits in *bits. */
static bool parse_item(uint64_t *bits, const char *p, const char *end, const field_t *f,
                       fzip_error_t *error) {
  int lo = f->lo, hi = f->hi, step = 1;
  bool range = false;

  if (p < end && *p == '*') {
    p++;
    range = true;
  } else {
    if (!parse_num(&lo, &p))
      return bad(error, f, "expected a number, '*' or a range");
    hi = lo;
    if (p < end && *p == '-') {
      p++;
      if (!parse_num(&hi, &p))
        return bad(error, f, "a range needs an end");
      range = true;
    }
  }
  if (p < end && *p == '/') {
    p++;
    if (!parse_num(&step, &p) || step < 1)
      return bad(error, f, "a step must be a number from 1");
    if (!range) /* "5/15" as Vixie cron: from 5 to the end, every 15 */
      hi = f->hi;
  }
  if (p != end)
    return (*p > ' ' && *p < 127) ? bad(error, f, "unexpected '%c'", *p)
                                  : bad(error, f, "unexpected byte 0x%02x", (unsigned char)*p);
  if (lo < f->lo || lo > f->hi)
    return bad(error, f, "%d is out of range %d-%d", lo, f->lo, f->hi);
  if (hi < f->lo || hi > f->hi)
    return bad(error, f, "%d is out of range %d-%d", hi, f->lo, f->hi);
  if (lo > hi)
    return bad(error, f, "range %d-%d runs backwards", lo, hi);
  if (step > f->hi - f->lo + 1)
    return bad(error, f, "step %d is larger than the field", step);
  for (int v = lo; v <= hi; v += step)
    *bits |= UINT64_C(1) << v;
  return true;
}

/* One field "item,item,..." in [p, end). */
static bool parse_field(uint64_t *bits, const char *p, const char *end, const field_t *f,
                        fzip_error_t *error) {
  int items = 0;
  *bits = 0;
  for (;;) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop = comma ? comma : end;
    if (++items > FZIP_CRON_ITEMS_MAX)
      return bad(error, f, "more than %d items", FZIP_CRON_ITEMS_MAX);
    if (stop == p)
      return bad(error, f, "empty item");
    if (!parse_item(bits, p, stop, f, error))
      return false;
    if (!comma)
      return true;
    p = comma + 1;
  }
}

static const char *expand_macro(const char *spec, fzip_error_t *error) {
  if (spec[0] != '@')
    return spec;
  for (size_t i = 0; i < sizeof MACROS / sizeof MACROS[0]; i++) {
    if (strcmp(spec, MACROS[i].name) == 0)
      return MACROS[i].spec;
  }
  fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                 "cron: unknown macro (use @hourly, @daily, @weekly or @monthly)");
  return NULL;
}

static bool parse_fields(fzip_cron_t *c, const char *spec, fzip_error_t *error) {
  const char *p = spec;
  uint64_t bits[5];
  bool star[5];
  int n = 0;

  while (*p) {
    const char *start;
    while (*p == ' ' || *p == '\t')
      p++;
    if (!*p)
      break;
    if (n == 5)
      return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                            "cron: more than 5 fields (minute hour day-of-month month "
                            "day-of-week)");
    start = p;
    while (*p && *p != ' ' && *p != '\t')
      p++;
    star[n] = *start == '*';
    if (!parse_field(&bits[n], start, p, &FIELDS[n], error))
      return false;
    n++;
  }
  if (n != 5)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "cron: %d fields; 5 are needed (minute hour day-of-month month "
                          "day-of-week) or a macro such as @daily",
                          n);
  c->minutes = bits[0];
  c->hours = (uint32_t)bits[1];
  c->mdays = (uint32_t)bits[2];
  c->months = (uint16_t)bits[3];
  c->wdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 is Sunday too */
  c->mday_star = star[2];
  c->wday_star = star[4];
  return true;
}

bool fzip_cron_parse(fzip_cron_t *out, const char *spec, fzip_error_t *error) {
  fzip_cron_t c = {0};
  size_t len = spec ? strnlen(spec, FZIP_CRON_SPEC_MAX + 1) : 0;
  int64_t probe = 0;

  if (len == 0)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "cron: empty; give 5 fields or a macro such as @daily");
  if (len > FZIP_CRON_SPEC_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "cron: longer than %d bytes", FZIP_CRON_SPEC_MAX);
  spec = expand_macro(spec, error);
  if (!spec || !parse_fields(&c, spec, error))
    return false;
  /* A spec that names no real day (Feb 30) would never run: say so now. */
  if (!fzip_cron_next(&probe, &c, NULL, 0, error)) {
    fzip_error_clear(error);
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "cron: day-of-month: matches no day of the months given");
  }
  *out = c;
  return true;
}

/* ---- calendar arithmetic (proleptic Gregorian, no zone) ---------------- */

typedef struct {
  int64_t y;
  int mon, day, hour, min; /* mon 1-12, day 1-31 */
} wall_t;

static int64_t wall_seconds(const wall_t *w) {
  return fzip_tz_days_from_civil(w->y, w->mon, w->day) * DAY_S + w->hour * 3600 +
         w->min * MINUTE_S;
}

static bool day_matches(const fzip_cron_t *c, const wall_t *w) {
  int64_t days = fzip_tz_days_from_civil(w->y, w->mon, w->day);
  int wday = fzip_tz_weekday(days);
  bool md = (c->mdays >> w->day) & 1, wd = (c->wdays >> wday) & 1;
  if (!c->mday_star && !c->wday_star)
    return md || wd;
  return md && wd;
}

/* Carries minute -> hour -> day -> month -> year. */
static void wall_normalise(wall_t *w) {
  if (w->min >= 60) {
    w->min = 0;
    w->hour++;
  }
  if (w->hour >= 24) {
    w->hour = 0;
    w->day++;
  }
  if (w->day > fzip_tz_month_days(w->y, w->mon)) {
    w->day = 1;
    w->mon++;
  }
  if (w->mon > 12) {
    w->mon = 1;
    w->y++;
  }
}

/* The first matching wall time at or after *w, in place; false if none
 * before `limit_year`. */
static bool next_wall(wall_t *w, const fzip_cron_t *c, int64_t limit_year) {
  while (w->y < limit_year) {
    if (!((c->months >> w->mon) & 1)) {
      w->mon++, w->day = 1, w->hour = 0, w->min = 0;
      if (w->mon > 12)
        w->mon = 1, w->y++;
    } else if (!day_matches(c, w)) {
      w->day++, w->hour = 0, w->min = 0;
      wall_normalise(w);
    } else if (!((c->hours >> w->hour) & 1)) {
      w->hour++, w->min = 0;
      wall_normalise(w);
    } else if (!((c->minutes >> w->min) & 1)) {
      w->min++;
      wall_normalise(w);
    } else {
      return true;
    }
  }
  return false;
}

/* UTC (tz NULL) uses the same calendar arithmetic as wall_seconds, the
 * other direction, rather than libc's gmtime_r. */
static void to_wall(wall_t *w, const fzip_tz_t *tz, int64_t utc_s) {
  struct tm tm;
  int32_t offset = 0;
  if (!tz) {
    int64_t days = utc_s / DAY_S - (utc_s % DAY_S < 0); /* floor */
    int64_t secs = utc_s - days * DAY_S;
    fzip_tz_civil_from_days(days, &w->y, &w->mon, &w->day);
    w->hour = (int)(secs / 3600);
    w->min = (int)(secs / MINUTE_S % 60);
    return;
  }
  fzip_tz_local(tz, utc_s, &tm, &offset);
  w->y = (int64_t)tm.tm_year + 1900;
  w->mon = tm.tm_mon + 1;
  w->day = tm.tm_mday;
  w->hour = tm.tm_hour;
  w->min = tm.tm_min;
}

static bool from_wall(int64_t *utc_s, const fzip_tz_t *tz, const wall_t *w,
                      fzip_error_t *error) {
  struct tm tm = {0};
  if (!tz) {
    *utc_s = wall_seconds(w);
    return true;
  }
  tm.tm_year = (int)(w->y - 1900);
  tm.tm_mon = w->mon - 1;
  tm.tm_mday = w->day;
  tm.tm_hour = w->hour;
  tm.tm_min = w->min;
  return fzip_tz_utc(utc_s, tz, &tm, error);
}

bool fzip_cron_next(int64_t *next_ms, const fzip_cron_t *cron, const fzip_tz_t *tz,
                    int64_t after_ms, fzip_error_t *error) {
  int64_t after_s = after_ms >= 0 ? after_ms / 1000 : -((-after_ms + 999) / 1000);
  int64_t limit_year, at = 0;
  wall_t w;

  to_wall(&w, tz, after_s);
  limit_year = w.y + FZIP_CRON_SEARCH_YEARS + 1;
  w.min++; /* strictly after: the next whole minute on the wall clock */
  wall_normalise(&w);
  for (;;) {
    if (!next_wall(&w, cron, limit_year))
      return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_FAILED_PRECONDITION,
                            "cron: no due time within %d years", FZIP_CRON_SEARCH_YEARS);
    if (!from_wall(&at, tz, &w, error))
      return false;
    if (at > after_s) {
      *next_ms = at * 1000;
      return true;
    }
    w.min++;
    wall_normalise(&w);
  }
}
