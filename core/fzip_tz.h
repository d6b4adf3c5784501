/*
 * fzip_tz: IANA time zones without the C library's global TZ state.
 *
 * fzipd is multi-threaded, so setenv("TZ") + localtime_r is not an option:
 * a zone is read once from its TZif file (RFC 8536, version 2 or later:
 * 64-bit transition times) under the zoneinfo directory into an immutable
 * handle that any number of threads may use at once.  Times past the last
 * transition follow the file's footer, a POSIX TZ rule ("GMT0BST,M3.5.0/1,
 * M10.5.0").  "" and "UTC" need no file.  Leap-second ("right/") zones are
 * refused: fzip counts POSIX seconds.
 *
 * Used by schedules (cron fields in the schedule's zone) and retention
 * (hour/day/week/month/year buckets in that zone).
 */
#ifndef FZIP_TZ_H
#define FZIP_TZ_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "fzip_error.h"

/* Longest zone name accepted ("America/Argentina/ComodRivadavia" is 32). */
#define FZIP_TZ_NAME_MAX 64
/* Where zones are read from; the environment variable TZDIR, when set and
 * not empty, names another directory (as for the C library). */
#define FZIP_TZ_DIR_DEFAULT "/usr/share/zoneinfo"
/* Bounds of a TZif file (real ones are a few KiB and a few hundred
 * transitions); a larger one is refused, never truncated. */
#define FZIP_TZ_FILE_MAX (256 * 1024)
#define FZIP_TZ_TRANSITIONS_MAX 4096
#define FZIP_TZ_FOOTER_MAX 128
/* Years fzip_tz_utc accepts (-100000..100000), and the instants
 * fzip_tz_local clamps to (a little beyond those years). */
#define FZIP_TZ_YEAR_LIMIT 100000
#define FZIP_TZ_SECS_LIMIT ((int64_t)FZIP_TZ_YEAR_LIMIT * 366 * 86400)

typedef struct fzip_tz fzip_tz_t;

/* Loads the zone `name` ("" or "UTC": UTC, no file).  The name must be
 * 1 to FZIP_TZ_NAME_MAX bytes of [A-Za-z0-9/_+-.], relative, with no
 * empty, "." or ".." component.  INVALID_ARGUMENT (domain CONFIG) naming
 * the zone when the name is malformed, unknown, or its file is not a valid
 * TZif v2+ file.  *out is the caller's (fzip_tz_destroy); it is immutable
 * and safe to share between threads. */
bool fzip_tz_load(fzip_tz_t **out, const char *name, fzip_error_t *error);
/* Parses TZif bytes (what fzip_tz_load reads from the file), for the fuzz
 * target and tests; `name` is only kept for fzip_tz_name. */
bool fzip_tz_parse(fzip_tz_t **out, const char *name, const uint8_t *data, size_t len,
                   fzip_error_t *error);
void fzip_tz_destroy(fzip_tz_t *tz); /* accepts NULL */
/* The name it was loaded with ("UTC" for ""); borrowed. */
const char *fzip_tz_name(const fzip_tz_t *tz);

/* Local time at `utc_s` (epoch seconds, clamped to +-FZIP_TZ_SECS_LIMIT): *local gets year, month, day,
 * hour, minute, second, tm_wday, tm_yday and tm_isdst (others zeroed);
 * *utc_offset_s (may be NULL) the offset east of UTC in seconds. */
void fzip_tz_local(const fzip_tz_t *tz, int64_t utc_s, struct tm *local, int32_t *utc_offset_s);
/* The instant of the local time tm_year/tm_mon/tm_mday/tm_hour/tm_min/
 * tm_sec (tm_isdst, tm_wday and tm_yday ignored; out-of-range fields are
 * normalised as by timegm).  A local time that occurs twice (clocks go
 * back) gives the earlier instant; one that does not exist (clocks go
 * forward) gives the first instant after the gap (02:30 in a 02:00->03:00
 * gap is 03:00).  False (INVALID_ARGUMENT) only for a time outside
 * years -100000..100000. */
bool fzip_tz_utc(int64_t *utc_s, const fzip_tz_t *tz, const struct tm *local, fzip_error_t *error);

/* Proleptic Gregorian calendar arithmetic, no zone (H. Hinnant's
 * algorithms), for callers that step through civil dates (fzip_cron):
 * days since 1970-01-01 of y-m-d (m 1-12, d 1-31), its inverse, the
 * days of a month and the weekday of a day. */
int64_t fzip_tz_days_from_civil(int64_t y, int m, int d);
void fzip_tz_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
int fzip_tz_month_days(int64_t y, int m);
/* The weekday (0 Sunday .. 6 Saturday) of days since 1970-01-01. */
int fzip_tz_weekday(int64_t days);

#endif
