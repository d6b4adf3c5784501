/*
 * fzip_log: structured logs, one JSON object per line on stderr.
 *
 *   fzip_log(FZIP_LOG_INFO, "rpc", "call done", "method", "/fzip.v1...",
 *            "user", uid, NULL);
 *
 * Key/value pairs are NUL-terminated strings, ended by a NULL key; values
 * are JSON-escaped.  Thread-safe: one write(2) per line.
 *
 * Numbers and booleans go out as JSON numbers and booleans through the
 * typed fields, so that log pipelines can sum and compare them:
 *
 *   const fzip_log_field_t f[] = {fzip_log_str("method", path),
 *                                 fzip_log_int("duration_ms", ms),
 *                                 fzip_log_bool("delivered", sent)};
 *   fzip_log_fields(FZIP_LOG_INFO, "rpc", "call done", f, FZIP_LOG_COUNT(f));
 */
#ifndef FZIP_LOG_H
#define FZIP_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest request id a thread carries, plus its NUL (the rpc layer's
 * RPC_REQUEST_ID_MAX fits); a longer one is cut. */
#define FZIP_LOG_REQUEST_ID_MAX 129

/* Longest line written, newline included: a longer value is cut with
 * "...", and pairs that no longer fit are dropped, so a line is always one
 * whole JSON object and one write(2). */
#define FZIP_LOG_LINE_MAX 4096

typedef enum { FZIP_LOG_DEBUG = 0, FZIP_LOG_INFO, FZIP_LOG_WARN, FZIP_LOG_ERROR } fzip_log_level_t;

void fzip_log_set_level(fzip_log_level_t level);
/* Parse "debug|info|warn|error"; false if unknown. */
bool fzip_log_level_parse(fzip_log_level_t *out, const char *s);
bool fzip_log_enabled(fzip_log_level_t level);

/* Variadic tail: key, value, key, value, ..., NULL; every value a string. */
void fzip_log(fzip_log_level_t level, const char *component, const char *msg, ...);

/* Sets the calling thread's request id (copied, cut at
 * FZIP_LOG_REQUEST_ID_MAX - 1 bytes); NULL or "" clears it.  While set,
 * every line the thread writes carries "request_id":"<id>" right after
 * "msg", unless the line has a request_id field of its own (that one wins,
 * so no line has the key twice).  The rpc layer sets it around each handler
 * step and the job runner around each job, so handler and job lines can be
 * found by the id the client saw. */
void fzip_log_set_request_id(const char *id);
/* The calling thread's request id, "" when none; valid until it is set again. */
const char *fzip_log_request_id(void);

typedef enum { FZIP_LOG_STR = 0, FZIP_LOG_INT, FZIP_LOG_BOOL } fzip_log_type_t;

/* One key and a typed value; the strings are borrowed for the call. */
typedef struct {
  const char *key;
  fzip_log_type_t type;
  const char *str; /* FZIP_LOG_STR; NULL logs as "" */
  int64_t num;     /* FZIP_LOG_INT */
  bool flag;       /* FZIP_LOG_BOOL */
} fzip_log_field_t;

static inline fzip_log_field_t fzip_log_str(const char *key, const char *value) {
  return (fzip_log_field_t){.key = key, .type = FZIP_LOG_STR, .str = value};
}
static inline fzip_log_field_t fzip_log_int(const char *key, int64_t value) {
  return (fzip_log_field_t){.key = key, .type = FZIP_LOG_INT, .num = value};
}
static inline fzip_log_field_t fzip_log_bool(const char *key, bool value) {
  return (fzip_log_field_t){.key = key, .type = FZIP_LOG_BOOL, .flag = value};
}

/* The number of fields in an array of them. */
#define FZIP_LOG_COUNT(fields) (sizeof(fields) / sizeof((fields)[0]))

/* Like fzip_log, with the n typed fields in order (n may be 0). */
void fzip_log_fields(fzip_log_level_t level, const char *component, const char *msg,
                     const fzip_log_field_t *fields, size_t n);

#endif
