/*
 * Fuzz target for fzip_cron: the input (cut at FZIP_CRON_SPEC_MAX + 1
 * bytes and NUL-terminated, so the length limit is reached too) is parsed
 * as a cron spec; a spec that parses must have a next due time, strictly
 * after the start and on a whole minute, from a few starting instants
 * (the epoch, a leap day, far in the future, before 1970).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fzip_cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int64_t STARTS_MS[] = {0, 951782400000LL, 4102444800000LL, -86400000LL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char spec[FZIP_CRON_SPEC_MAX + 2];
  size_t n = size < sizeof spec - 1 ? size : sizeof spec - 1;
  fzip_cron_t cron;
  fzip_error_t err = {0};

  memcpy(spec, data, n);
  spec[n] = '\0';
  if (!fzip_cron_parse(&cron, spec, &err))
    return 0;
  for (size_t i = 0; i < sizeof STARTS_MS / sizeof STARTS_MS[0]; i++) {
    int64_t next = 0;
    if (!fzip_cron_next(&next, &cron, NULL, STARTS_MS[i], &err))
      abort(); /* a spec that parses matches some day within the search */
    if (next <= STARTS_MS[i] || next % 60000 != 0)
      abort();
  }
  return 0;
}
