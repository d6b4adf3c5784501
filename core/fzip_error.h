/*
 * fzip_error: the one error type of the project.
 *
 * Modelled on bson_error_t: a caller-owned struct passed as the last
 * argument of every call that can fail.  A function that fails fills it
 * (domain, code, message) and returns false / NULL / -1; on success it
 * leaves it untouched.  The code is a project code chosen so that exactly
 * one place, the RPC boundary (rpc/rpc_status.c), can turn it into a
 * gRPC status; the domain says which subsystem raised it, for logs.
 */
#ifndef FZIP_ERROR_H
#define FZIP_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
  FZIP_DOMAIN_NONE = 0,
  FZIP_DOMAIN_SYS,        /* operating system, files, memory */
  FZIP_DOMAIN_STORE,      /* storage backends */
  FZIP_DOMAIN_RPC,        /* gRPC layer */
  FZIP_DOMAIN_AUTH,       /* token verification */
  FZIP_DOMAIN_CONFIG,     /* flags, environment, URIs */
  FZIP_DOMAIN_PACKAGE,    /* FZIP package reading/writing */
  FZIP_DOMAIN_VALIDATION, /* import validation */
  FZIP_DOMAIN_JOB,        /* export/import jobs */
} fzip_domain_t;

/* Project error codes.  Each maps to one gRPC status code. */
typedef enum {
  FZIP_OK = 0,
  FZIP_ERR_INVALID_ARGUMENT,   /* caller sent something malformed */
  FZIP_ERR_NOT_FOUND,          /* absent, or not the caller's */
  FZIP_ERR_ALREADY_EXISTS,     /* id taken */
  FZIP_ERR_FAILED_PRECONDITION,/* wrong state for the operation */
  FZIP_ERR_UNAUTHENTICATED,    /* no or bad credentials */
  FZIP_ERR_PERMISSION_DENIED,
  FZIP_ERR_RESOURCE_EXHAUSTED, /* a limit was hit */
  FZIP_ERR_OUT_OF_RANGE,       /* offset/size beyond the data */
  FZIP_ERR_CANCELLED,          /* the caller or an operator cancelled */
  FZIP_ERR_DEADLINE_EXCEEDED,
  FZIP_ERR_ABORTED,            /* lost a race (lease, version) */
  FZIP_ERR_UNAVAILABLE,        /* transient: database down, retry */
  FZIP_ERR_UNIMPLEMENTED,
  FZIP_ERR_DATA_LOSS,          /* checksum mismatch, corrupt data */
  FZIP_ERR_INTERNAL,           /* a bug or an unexpected failure */
} fzip_code_t;

#define FZIP_ERROR_MESSAGE_MAX 512

/* Longest reason, NUL excluded (google.rpc.ErrorInfo's own limit). */
#define FZIP_ERROR_REASON_MAX 63

typedef struct {
  uint32_t domain; /* fzip_domain_t */
  uint32_t code;   /* fzip_code_t */
  char message[FZIP_ERROR_MESSAGE_MAX];
  /* Optional: a static UPPER_SNAKE_CASE constant that says more than the
   * code ("EXPORT_NOT_FOUND"), sent to clients as the google.rpc.ErrorInfo
   * reason (docs/GRPC.md); NULL means the code's name.  Every
   * fzip_error_set clears it, so set it after (fzip_error_set_reason). */
  const char *reason;
} fzip_error_t;

/* Fill `error` (which may be NULL) with a printf-style message.  The
 * message is truncated at FZIP_ERROR_MESSAGE_MAX - 1 bytes.  Returns false
 * so that `return fzip_error_set(...)` reads naturally in bool functions. */
bool fzip_error_set(fzip_error_t *error, fzip_domain_t domain, fzip_code_t code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
bool fzip_error_setv(fzip_error_t *error, fzip_domain_t domain, fzip_code_t code,
                     const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

/* Prefix the existing message with context ("opening blob: <old message>"),
 * keeping domain and code.  Returns false. */
bool fzip_error_prefix(fzip_error_t *error, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* An allocation failed: the one way to say so (domain SYS, code
 * RESOURCE_EXHAUSTED, "out of memory[ for <what>]").  `what` names what was
 * being allocated, or is NULL.  Returns false. */
bool fzip_error_oom(fzip_error_t *error, const char *what);

/* Gives a set error its reason (a string literal: it is kept, not copied;
 * [A-Z0-9_], at most FZIP_ERROR_REASON_MAX bytes).  Returns false, so
 *   return fzip_error_set_reason(error, "EXPORT_NOT_FOUND");
 * follows a fzip_error_set in a bool function. */
bool fzip_error_set_reason(fzip_error_t *error, const char *reason);
/* The reason clients see: the error's own, else its code's name. */
const char *fzip_error_reason(const fzip_error_t *error);

void fzip_error_clear(fzip_error_t *error);
bool fzip_error_is_set(const fzip_error_t *error);

const char *fzip_code_name(fzip_code_t code);     /* "NOT_FOUND" */
const char *fzip_domain_name(fzip_domain_t domain); /* "store" */

#endif
