/* core/fzip_tz: known offsets (London, New York both ways, Lord Howe's
 * 30-minute shift, Kathmandu +5:45), instants past the last transition
 * (the footer rule), gaps and overlaps, agreement with the C library's
 * own reading of the same zoneinfo files (this test is single-threaded,
 * so TZ + localtime_r is fine here), name validation and refusal of
 * damaged TZif data. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_test.h"
#include "fzip_tz.h"
#include "fzip_util.h"

#define H 3600
/* Random instants compared with the C library per zone. */
#define SAMPLES 20000
/* Instants 1900-01-01 .. 2200-01-01. */
#define SAMPLE_LO (-2208988800LL)
#define SAMPLE_HI (7258118400LL)

static const char *const ZONES[] = {
    "Europe/London",   "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu",
    "Europe/Dublin",   "America/Sao_Paulo", "Pacific/Apia",        "Africa/Casablanca",
    "America/St_Johns", "Asia/Tehran",      "Pacific/Chatham",     "Antarctica/Troll",
    "Europe/Berlin",   "Australia/Sydney", "America/Santiago",    "Etc/GMT+5",
};

static fzip_tz_t *load(const char *name) {
  fzip_tz_t *tz = NULL;
  fzip_error_t err;

  if (!fzip_tz_load(&tz, name, &err))
    fprintf(stderr, "  load %s: %s\n", name, err.message);
  return tz;
}

static int64_t utc_of(int y, int mo, int d, int h, int mi, int s) {
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                  .tm_hour = h, .tm_min = mi, .tm_sec = s};
  return (int64_t)timegm(&tm);
}

static int32_t offset_at(const fzip_tz_t *tz, int64_t t) {
  struct tm tm;
  int32_t off = 0;

  fzip_tz_local(tz, t, &tm, &off);
  return off;
}

/* fzip_tz_utc of a local wall time. */
static int64_t local_to_utc(const fzip_tz_t *tz, int y, int mo, int d, int h, int mi) {
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
  int64_t out = INT64_MIN;
  fzip_error_t err;

  if (!fzip_tz_utc(&out, tz, &tm, &err))
    fprintf(stderr, "  fzip_tz_utc: %s\n", err.message);
  return out;
}

static void test_known_offsets_both_sides_of_each_change(void) {
  fzip_tz_t *lon = load("Europe/London"), *ny = load("America/New_York");
  fzip_tz_t *lh = load("Australia/Lord_Howe"), *ktm = load("Asia/Kathmandu");
  int64_t t;

  CHECK(lon && ny && lh && ktm);
  CHECK(offset_at(lon, utc_of(2024, 1, 15, 12, 0, 0)) == 0);
  CHECK(offset_at(lon, utc_of(2024, 7, 15, 12, 0, 0)) == H);
  t = utc_of(2024, 3, 31, 1, 0, 0); /* BST starts 01:00 UTC */
  CHECK(offset_at(lon, t - 1) == 0 && offset_at(lon, t) == H);
  t = utc_of(2024, 10, 27, 1, 0, 0); /* and ends 01:00 UTC */
  CHECK(offset_at(lon, t - 1) == H && offset_at(lon, t) == 0);
  CHECK(offset_at(lon, utc_of(1970, 1, 15, 0, 0, 0)) == H); /* British Standard Time 1968-71 */
  t = utc_of(2024, 3, 10, 7, 0, 0); /* EDT starts 02:00 EST */
  CHECK(offset_at(ny, t - 1) == -5 * H && offset_at(ny, t) == -4 * H);
  t = utc_of(2024, 11, 3, 6, 0, 0); /* and ends 02:00 EDT */
  CHECK(offset_at(ny, t - 1) == -4 * H && offset_at(ny, t) == -5 * H);
  t = utc_of(2024, 4, 6, 15, 0, 0); /* Lord Howe: 02:00 +11 -> 01:30 +10:30 */
  CHECK(offset_at(lh, t - 1) == 11 * H && offset_at(lh, t) == 10 * H + 1800);
  t = utc_of(2024, 10, 5, 15, 30, 0); /* 02:00 +10:30 -> 02:30 +11 */
  CHECK(offset_at(lh, t - 1) == 10 * H + 1800 && offset_at(lh, t) == 11 * H);
  CHECK(offset_at(ktm, utc_of(2024, 6, 1, 0, 0, 0)) == 5 * H + 45 * 60);
  CHECK(offset_at(ktm, utc_of(1985, 6, 1, 0, 0, 0)) == 5 * H + 30 * 60);
  fzip_tz_destroy(lon);
  fzip_tz_destroy(ny);
  fzip_tz_destroy(lh);
  fzip_tz_destroy(ktm);
}

/* Past 2037 the files have no transitions left: the footer rule decides. */
static void test_far_future_follows_the_footer_rule(void) {
  fzip_tz_t *lon = load("Europe/London"), *ny = load("America/New_York");
  fzip_tz_t *lh = load("Australia/Lord_Howe");
  struct tm tm;
  int32_t off;
  int64_t t;

  CHECK(lon && ny && lh);
  t = utc_of(2100, 3, 28, 1, 0, 0); /* last Sunday of March 2100 */
  CHECK(offset_at(lon, t - 1) == 0 && offset_at(lon, t) == H);
  fzip_tz_local(lon, t, &tm, &off);
  CHECK(tm.tm_year == 200 && tm.tm_mon == 2 && tm.tm_mday == 28 && tm.tm_hour == 2 &&
        tm.tm_wday == 0 && tm.tm_isdst == 1 && tm.tm_yday == 86);
  t = utc_of(2100, 11, 7, 6, 0, 0); /* first Sunday of November 2100, 02:00 EDT */
  CHECK(offset_at(ny, t - 1) == -4 * H && offset_at(ny, t) == -5 * H);
  CHECK(offset_at(lh, utc_of(2100, 1, 1, 0, 0, 0)) == 11 * H); /* southern summer */
  CHECK(offset_at(lh, utc_of(2100, 7, 1, 0, 0, 0)) == 10 * H + 1800);
  fzip_tz_destroy(lon);
  fzip_tz_destroy(ny);
  fzip_tz_destroy(lh);
}

/* Spring forward: a missing local time is the first instant after the
 * gap; fall back: a doubled local time is its earlier instant. */
static void test_gap_gives_its_end_and_overlap_the_earlier(void) {
  fzip_tz_t *lon = load("Europe/London"), *ny = load("America/New_York");
  fzip_tz_t *lh = load("Australia/Lord_Howe");

  CHECK(lon && ny && lh);
  CHECK(local_to_utc(lon, 2024, 3, 31, 1, 30) == utc_of(2024, 3, 31, 1, 0, 0));
  CHECK(local_to_utc(lon, 2024, 3, 31, 2, 0) == utc_of(2024, 3, 31, 1, 0, 0));
  CHECK(local_to_utc(lon, 2024, 3, 31, 0, 59) == utc_of(2024, 3, 31, 0, 59, 0));
  CHECK(local_to_utc(lon, 2024, 10, 27, 1, 30) == utc_of(2024, 10, 27, 0, 30, 0));
  CHECK(local_to_utc(lon, 2024, 10, 27, 2, 0) == utc_of(2024, 10, 27, 2, 0, 0));
  CHECK(local_to_utc(ny, 2024, 3, 10, 2, 30) == utc_of(2024, 3, 10, 7, 0, 0));
  CHECK(local_to_utc(ny, 2024, 11, 3, 1, 30) == utc_of(2024, 11, 3, 5, 30, 0));
  CHECK(local_to_utc(lh, 2024, 4, 7, 1, 45) == utc_of(2024, 4, 6, 14, 45, 0));
  CHECK(local_to_utc(lh, 2024, 10, 6, 2, 15) == utc_of(2024, 10, 5, 15, 30, 0));
  CHECK(local_to_utc(lon, 2100, 3, 28, 1, 30) == utc_of(2100, 3, 28, 1, 0, 0));
  CHECK(local_to_utc(lon, 2100, 10, 31, 1, 30) == utc_of(2100, 10, 31, 0, 30, 0));
  fzip_tz_destroy(lon);
  fzip_tz_destroy(ny);
  fzip_tz_destroy(lh);
}

/* Out-of-range fields are normalised as timegm does. */
static void test_utc_normalises_fields(void) {
  fzip_tz_t *utc = load("");
  int64_t out = 0;
  fzip_error_t err;
  struct tm tm = {.tm_year = 124, .tm_mon = 13, .tm_mday = 32, .tm_hour = 25, .tm_min = -1};
  struct tm copy = tm;

  CHECK(utc);
  CHECK_OK(fzip_tz_utc(&out, utc, &tm, &err), err);
  CHECK(out == (int64_t)timegm(&copy));
  tm.tm_year = 200000;
  CHECK_FAILS(fzip_tz_utc(&out, utc, &tm, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  fzip_tz_destroy(utc);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Every field and the offset equal the C library's for random instants
 * 1900-2200, and local -> UTC gives back the instant (or, for the second
 * of a doubled local time, the earlier one with the same wall clock). */
static void test_agrees_with_the_c_library_and_round_trips(void) {
  for (size_t z = 0; z < sizeof ZONES / sizeof ZONES[0]; z++) {
    fzip_tz_t *tz = load(ZONES[z]);
    fzip_error_t err;

    CHECK(tz);
    setenv("TZ", ZONES[z], 1);
    tzset();
    for (int i = 0; i < SAMPLES; i++) {
      int64_t t = SAMPLE_LO + (int64_t)(rng() % (uint64_t)(SAMPLE_HI - SAMPLE_LO));
      time_t tt = (time_t)t;
      struct tm want, got, again;
      int32_t off = 0;
      int64_t back = 0;

      CHECK(localtime_r(&tt, &want));
      fzip_tz_local(tz, t, &got, &off);
      if (got.tm_year != want.tm_year || got.tm_mon != want.tm_mon ||
          got.tm_mday != want.tm_mday || got.tm_hour != want.tm_hour ||
          got.tm_min != want.tm_min || got.tm_sec != want.tm_sec ||
          got.tm_wday != want.tm_wday || got.tm_yday != want.tm_yday ||
          got.tm_isdst != want.tm_isdst || off != want.tm_gmtoff) {
        fprintf(stderr, "  %s at %lld: offset %d, libc %ld\n", ZONES[z], (long long)t, off,
                want.tm_gmtoff);
        CHECK(!"fzip_tz_local differs from localtime_r");
      }
      CHECK_OK(fzip_tz_utc(&back, tz, &got, &err), err);
      fzip_tz_local(tz, back, &again, NULL);
      CHECK(back <= t);
      CHECK(again.tm_hour == got.tm_hour && again.tm_min == got.tm_min &&
            again.tm_sec == got.tm_sec && again.tm_mday == got.tm_mday);
    }
    fzip_tz_destroy(tz);
  }
  unsetenv("TZ");
}

static void test_utc_needs_no_file(void) {
  fzip_tz_t *tz = NULL;
  fzip_error_t err;
  struct tm tm;
  int32_t off = 1;

  setenv("TZDIR", "/nonexistent-zoneinfo", 1);
  CHECK_OK(fzip_tz_load(&tz, "", &err), err);
  CHECK(strcmp(fzip_tz_name(tz), "UTC") == 0);
  fzip_tz_local(tz, 86400 * 365, &tm, &off);
  CHECK(off == 0 && tm.tm_year == 71 && tm.tm_mon == 0 && tm.tm_mday == 1 && tm.tm_wday == 5);
  fzip_tz_destroy(tz);
  tz = NULL;
  CHECK_OK(fzip_tz_load(&tz, "UTC", &err), err);
  fzip_tz_destroy(tz);
  tz = NULL;
  CHECK_FAILS(fzip_tz_load(&tz, "Europe/London", &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(tz == NULL);
  /* The message goes back to the client: the name, not the server's path. */
  CHECK(strcmp(err.message, "unknown time zone Europe/London") == 0);
  unsetenv("TZDIR");
}

static void test_bad_names_are_refused_before_any_file_is_read(void) {
  static const char *const bad[] = {
      "../../etc/passwd", "/etc/passwd", "Europe/../../../etc/passwd", "Europe//London",
      "Europe/London/", "./Europe/London", "Europe/..", "Europe London", "Europe/London\n",
      "Nowhere/Nothing", "Europe", "Europe/London.bak",
      "Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/B",
  };
  fzip_error_t err;

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    fzip_tz_t *tz = NULL;
    CHECK_FAILS(fzip_tz_load(&tz, bad[i], &err), err, FZIP_ERR_INVALID_ARGUMENT);
    CHECK(tz == NULL);
    CHECK(strstr(err.message, "time zone") != NULL);
  }
}

/* Every cut of a real file is refused (the footer's closing newline is
 * its last byte), and so are version 1 files and a damaged footer. */
static void test_damaged_tzif_is_refused(void) {
  char *data = NULL;
  size_t len = 0;
  fzip_tz_t *tz = NULL;
  fzip_error_t err;
  char *copy = NULL;

  CHECK_OK(fzip_read_small_file(&data, &len, FZIP_TZ_DIR_DEFAULT "/Europe/London",
                                FZIP_TZ_FILE_MAX, &err),
           err);
  CHECK_OK(fzip_tz_parse(&tz, "x", (const uint8_t *)data, len, &err), err);
  fzip_tz_destroy(tz);
  for (size_t cut = 0; cut < len; cut++) {
    tz = NULL;
    if (fzip_tz_parse(&tz, "x", (const uint8_t *)data, cut, &err)) {
      fzip_tz_destroy(tz);
      fprintf(stderr, "  a cut at %zu of %zu was accepted\n", cut, len);
      CHECK(!"truncated TZif accepted");
    }
  }
  copy = malloc(len);
  CHECK(copy);
  memcpy(copy, data, len);
  copy[4] = 0; /* version 1 */
  CHECK_FAILS(fzip_tz_parse(&tz, "x", (const uint8_t *)copy, len, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  memcpy(copy, data, len);
  copy[len - 3] = '!'; /* "...M10.5.0\n" -> "...M10.!.0\n" */
  CHECK_FAILS(fzip_tz_parse(&tz, "x", (const uint8_t *)copy, len, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  free(copy);
  free(data);
}

int main(void) {
  RUN(test_known_offsets_both_sides_of_each_change);
  RUN(test_far_future_follows_the_footer_rule);
  RUN(test_gap_gives_its_end_and_overlap_the_earlier);
  RUN(test_utc_normalises_fields);
  RUN(test_agrees_with_the_c_library_and_round_trips);
  RUN(test_utc_needs_no_file);
  RUN(test_bad_names_are_refused_before_any_file_is_read);
  RUN(test_damaged_tzif_is_refused);
  return fzip_test_summary();
}
