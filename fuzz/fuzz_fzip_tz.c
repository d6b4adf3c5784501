/*
 * Fuzz target for fzip_tz's TZif reader (zone files are read from the
 * zoneinfo directory, which an operator controls, but a reader of binary
 * counts and offsets must hold on any bytes): the input is parsed as a
 * TZif file; a zone that parses is asked for local times and offsets at
 * instants around its transitions and far out, and for the instants of a
 * few local times; every offset must be within a day and a bit, and the
 * instant of a local time it produced must be near the instant it came
 * from (not exact: a synthetic zone may have transitions closer together
 * than fzip_tz_utc's sampling span, which real zones never have).
 */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "fzip_tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OFFSET_BOUND_S (26 * 3600)
/* |instant of local(t) - t|: an offset plus fzip_tz_utc's search span
 * (OFFSET_MAX_S + 4 h either side of the local time read as UTC). */
#define BACK_BOUND_S (OFFSET_BOUND_S + 30 * 3600)

static const int64_t INSTANTS_S[] = {
    INT64_MIN, -62135596800LL, -1, 0, 951782400LL, 1711846800LL, 2147483648LL,
    4102444800LL, 253402300799LL, INT64_MAX,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fzip_tz_t *tz = NULL;
  fzip_error_t err = {0};

  if (!fzip_tz_parse(&tz, "fuzz", data, size, &err))
    return 0;
  for (size_t i = 0; i < sizeof INSTANTS_S / sizeof INSTANTS_S[0]; i++) {
    struct tm local;
    int32_t off = 0;
    int64_t back = 0, t = INSTANTS_S[i];
    int64_t year;
    fzip_tz_local(tz, t, &local, &off);
    if (off <= -OFFSET_BOUND_S || off >= OFFSET_BOUND_S || local.tm_mon < 0 ||
        local.tm_mon > 11 || local.tm_mday < 1 || local.tm_mday > 31 || local.tm_hour > 23)
      abort();
    year = (int64_t)local.tm_year + 1900;
    if (year < -FZIP_TZ_YEAR_LIMIT || year > FZIP_TZ_YEAR_LIMIT)
      continue;
    if (!fzip_tz_utc(&back, tz, &local, &err))
      abort(); /* a local time it produced is in range */
    if (t > FZIP_TZ_SECS_LIMIT)
      t = FZIP_TZ_SECS_LIMIT;
    if (t < -FZIP_TZ_SECS_LIMIT)
      t = -FZIP_TZ_SECS_LIMIT;
    if (back < t - BACK_BOUND_S || back > t + BACK_BOUND_S)
      abort();
  }
  fzip_tz_destroy(tz);
  return 0;
}
