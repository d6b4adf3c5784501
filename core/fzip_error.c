/* fzip_error: see fzip_error.h. */
#include "fzip_error.h"

#include <stdio.h>
#include <string.h>

bool fzip_error_setv(fzip_error_t *error, fzip_domain_t domain, fzip_code_t code,
                     const char *fmt, va_list ap) {
  if (!error)
    return false;
  error->domain = (uint32_t)domain;
  error->code = (uint32_t)code;
  error->reason = NULL; /* a new error says nothing of the old one's reason */
  vsnprintf(error->message, sizeof error->message, fmt, ap);
  return false;
}

bool fzip_error_set_reason(fzip_error_t *error, const char *reason) {
  if (error)
    error->reason = reason;
  return false;
}

const char *fzip_error_reason(const fzip_error_t *error) {
  if (error->reason && error->reason[0])
    return error->reason;
  return fzip_code_name((fzip_code_t)error->code);
}

bool fzip_error_oom(fzip_error_t *error, const char *what) {
  if (what)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED,
                          "out of memory for %s", what);
  return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_RESOURCE_EXHAUSTED, "out of memory");
}

bool fzip_error_set(fzip_error_t *error, fzip_domain_t domain, fzip_code_t code,
                    const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fzip_error_setv(error, domain, code, fmt, ap);
  va_end(ap);
  return false;
}

bool fzip_error_prefix(fzip_error_t *error, const char *fmt, ...) {
  char prefix[FZIP_ERROR_MESSAGE_MAX];
  char old[FZIP_ERROR_MESSAGE_MAX];
  va_list ap;

  if (!error)
    return false;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, error->message, sizeof old);
  old[sizeof old - 1] = '\0';
  /* Truncation is intended: the message is bounded. */
  {
    size_t n = strlen(prefix);
    size_t room = sizeof error->message - 1;
    size_t o = strlen(old);
    if (n > room)
      n = room;
    memcpy(error->message, prefix, n);
    if (n + 2 <= room) {
      memcpy(error->message + n, ": ", 2);
      n += 2;
    }
    if (o > room - n)
      o = room - n;
    memcpy(error->message + n, old, o);
    error->message[n + o] = '\0';
  }
  return false;
}

void fzip_error_clear(fzip_error_t *error) {
  if (error)
    memset(error, 0, sizeof *error);
}

bool fzip_error_is_set(const fzip_error_t *error) {
  return error && error->code != FZIP_OK;
}

const char *fzip_code_name(fzip_code_t code) {
  static const char *const names[] = {
      [FZIP_OK] = "OK",
      [FZIP_ERR_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
      [FZIP_ERR_NOT_FOUND] = "NOT_FOUND",
      [FZIP_ERR_ALREADY_EXISTS] = "ALREADY_EXISTS",
      [FZIP_ERR_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
      [FZIP_ERR_UNAUTHENTICATED] = "UNAUTHENTICATED",
      [FZIP_ERR_PERMISSION_DENIED] = "PERMISSION_DENIED",
      [FZIP_ERR_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
      [FZIP_ERR_OUT_OF_RANGE] = "OUT_OF_RANGE",
      [FZIP_ERR_CANCELLED] = "CANCELLED",
      [FZIP_ERR_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
      [FZIP_ERR_ABORTED] = "ABORTED",
      [FZIP_ERR_UNAVAILABLE] = "UNAVAILABLE",
      [FZIP_ERR_UNIMPLEMENTED] = "UNIMPLEMENTED",
      [FZIP_ERR_DATA_LOSS] = "DATA_LOSS",
      [FZIP_ERR_INTERNAL] = "INTERNAL",
  };
  if ((unsigned)code < sizeof names / sizeof names[0] && names[code])
    return names[code];
  return "UNKNOWN";
}

const char *fzip_domain_name(fzip_domain_t domain) {
  static const char *const names[] = {
      [FZIP_DOMAIN_NONE] = "none",       [FZIP_DOMAIN_SYS] = "sys",
      [FZIP_DOMAIN_STORE] = "store",     [FZIP_DOMAIN_RPC] = "rpc",
      [FZIP_DOMAIN_AUTH] = "auth",       [FZIP_DOMAIN_CONFIG] = "config",
      [FZIP_DOMAIN_PACKAGE] = "package", [FZIP_DOMAIN_VALIDATION] = "validation",
      [FZIP_DOMAIN_JOB] = "job",
  };
  if ((unsigned)domain < sizeof names / sizeof names[0] && names[domain])
    return names[domain];
  return "unknown";
}
