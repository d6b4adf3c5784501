/*
 * cli_xfer: what uploads and downloads share: hashing a local file,
 * pacing a transfer to a byte rate (--limit-rate), and sizes written
 * "512k" / "4M".
 */
#ifndef CLI_XFER_H
#define CLI_XFER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli_args.h"
#include "fzip_error.h"
#include "fzip_util.h"

#define CLI_XFER_CHUNK (1024 * 1024)      /* upload chunk, well under the message limit */
#define CLI_XFER_CHUNK_MAX (4 * 1024 * 1024)

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

/* Reads a size option ("1048576", "512k", "4M", "1G") in [min, max];
 * *out keeps its value when the option is absent. */
bool cli_xfer_size_opt(int64_t *out, const cli_args_t *args, const char *name, int64_t min,
                       int64_t max, fzip_error_t *error);

#endif
