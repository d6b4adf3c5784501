/*
 * cli_xfer: what uploads and downloads share: hashing a local file and
 * pacing a transfer to a byte rate (--limit-rate; sizes such as "4M" are
 * read by cli_args_size).
 */
#ifndef CLI_XFER_H
#define CLI_XFER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fzip_error.h"
#include "fzip_util.h"

#define CLI_XFER_CHUNK (1024 * 1024)      /* upload chunk, well under the message limit */
#define CLI_XFER_CHUNK_MAX (4 * 1024 * 1024)
#define CLI_XFER_RATE_MAX (INT64_MAX / 1000) /* --limit-rate, bytes per second */

/* Feeds the first `len` bytes of the open file f (from its current
 * position) into h; fails if the file is shorter. */
bool cli_xfer_hash_stream(fzip_sha256_t *h, FILE *f, int64_t len, const char *path,
                          fzip_error_t *error);
/* sha256 hex and size of a whole file. */
bool cli_xfer_hash_file(char hex[FZIP_SHA256_HEX_LEN + 1], int64_t *size, const char *path,
                        fzip_error_t *error);

/* Sleeps as long as `moved` bytes since `started_ms` (monotonic) are
 * ahead of `rate` bytes per second; rate 0: no limit. */
void cli_xfer_throttle(int64_t moved, int64_t started_ms, int64_t rate);

#endif
