/*
 * fzip_cron: cron expressions for scheduled exports, and their next due
 * time in a time zone.
 *
 * A spec is five fields "minute hour day-of-month month day-of-week"
 * (0-59, 0-23, 1-31, 1-12, 0-7 with 0 and 7 Sunday), each a comma list of
 * items: `*`, a number, a range `a-b`, any of them with a step `/n`; or
 * one of @hourly, @daily (also @midnight), @weekly, @monthly.  Day of month
 * and day of week combine as in Vixie cron: when both are restricted (the
 * field does not start with `*`) a day matches either; otherwise both.
 *
 * Times are wall-clock times in the schedule's zone (fzip_tz.h): a wall
 * time that does not exist (spring forward gap) runs at the next valid
 * instant; one that happens twice (fall back overlap) runs once, at its
 * first occurrence.
 *
 * A parsed spec is a plain value (no allocation), so a parse can be done
 * on any untrusted input: every limit below is checked before use.
 */
#ifndef FZIP_CRON_H
#define FZIP_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "fzip_error.h"
#include "fzip_tz.h"

#define FZIP_CRON_SPEC_MAX 256     /* bytes of a spec */
#define FZIP_CRON_ITEMS_MAX 60     /* comma-separated items in one field */
/* How far ahead fzip_cron_next looks: one whole Gregorian cycle, after
 * which dates and weekdays repeat, so every spec that parses has a next due
 * time (a spec naming no real day, e.g. "0 0 30 2 *", is refused at parse).
 * Fewer years are not enough: day 1 of January that is a Sunday (a
 * day-of-month field written as a step from "*" combines with the weekday
 * by AND, as in Vixie cron) comes 11 years apart; Feb 29 on a given
 * weekday up to 40.
 * The walk is by day: ~146,000 cheap steps at the most. */
#define FZIP_CRON_SEARCH_YEARS 400

typedef struct {
  uint64_t minutes;  /* bit m: minute m matches */
  uint32_t hours;    /* bit h */
  uint32_t mdays;    /* bit d, 1-31 */
  uint16_t months;   /* bit m, 1-12 */
  uint8_t wdays;     /* bit w, 0-6 (Sunday 0; a 7 in the spec sets bit 0) */
  bool mday_star;    /* the day-of-month field starts with '*' */
  bool wday_star;    /* the day-of-week field starts with '*' */
} fzip_cron_t;

/* Parses `spec` into *out.  INVALID_ARGUMENT naming the field ("cron:
 * hour: 24 is out of range 0-23") for a malformed spec or one that never
 * matches a day. */
bool fzip_cron_parse(fzip_cron_t *out, const char *spec, fzip_error_t *error);

/* *next_ms = the first due time strictly after `after_ms` (epoch ms; due
 * times are whole minutes) of `cron` in `tz` (NULL: UTC).  FAILED_PRECONDITION
 * when none falls within FZIP_CRON_SEARCH_YEARS. */
bool fzip_cron_next(int64_t *next_ms, const fzip_cron_t *cron, const fzip_tz_t *tz,
                    int64_t after_ms, fzip_error_t *error);

#endif
