/*
 * fzip_log: structured logs, one JSON object per line on stderr.
 *
 *   fzip_log(FZIP_LOG_INFO, "rpc", "call done", "method", "/fzip.v1...",
 *            "user", uid, NULL);
 *
 * Key/value pairs are NUL-terminated strings, ended by a NULL key; values
 * are JSON-escaped.  Thread-safe: one write(2) per line.
 */
#ifndef FZIP_LOG_H
#define FZIP_LOG_H

#include <stdbool.h>

/* Longest line written, newline included: a longer value is cut with
 * "...", and pairs that no longer fit are dropped, so a line is always one
 * whole JSON object and one write(2). */
#define FZIP_LOG_LINE_MAX 4096

typedef enum { FZIP_LOG_DEBUG = 0, FZIP_LOG_INFO, FZIP_LOG_WARN, FZIP_LOG_ERROR } fzip_log_level_t;

void fzip_log_set_level(fzip_log_level_t level);
/* Parse "debug|info|warn|error"; false if unknown. */
bool fzip_log_level_parse(fzip_log_level_t *out, const char *s);
bool fzip_log_enabled(fzip_log_level_t level);

/* Variadic tail: key, value, key, value, ..., NULL. */
void fzip_log(fzip_log_level_t level, const char *component, const char *msg, ...);

#endif
