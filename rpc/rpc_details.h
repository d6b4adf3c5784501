/*
 * rpc_details: the error model clients see beyond the status code, in one
 * place for both sides (docs/GRPC.md "Error model").
 *
 * Every failed call carries a google.rpc.Status in the standard
 * RPC_DETAILS_HEADER trailing metadata: its code and message equal the
 * call's status, its details hold one google.rpc.ErrorInfo (reason: the
 * error's reason or its code name; domain: RPC_DETAILS_DOMAIN; metadata:
 * "fzip_domain" and "request_id") and, for INVALID_ARGUMENT, one
 * google.rpc.BadRequest with the request's problems.
 *
 * Client-facing messages never carry internal addresses or paths: an error
 * rpc_details_sanitised() selects (a rule on domain and code, never on the
 * message text) is sent with a generic message naming the request id, and
 * its full message stays in fzipd's log line of the call.
 *
 * grpc- and protobuf-free header: the server's rpc_call and the client's
 * rpc_client both use it.
 */
#ifndef FZIP_RPC_DETAILS_H
#define FZIP_RPC_DETAILS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_error.h"

/* The binary trailing-metadata key gRPC defines for a google.rpc.Status. */
#define RPC_DETAILS_HEADER "grpc-status-details-bin"
/* google.rpc.ErrorInfo.domain of every fzip reason. */
#define RPC_DETAILS_DOMAIN "fzip.housef3.io"
/* ErrorInfo metadata keys. */
#define RPC_DETAILS_KEY_FZIP_DOMAIN "fzip_domain"
#define RPC_DETAILS_KEY_REQUEST_ID "request_id"
/* Most BadRequest field violations one status carries (the first ones). */
#define RPC_DETAILS_VIOLATIONS_MAX 10
/* Longest field path / ErrorInfo value kept by the parser, NUL included. */
#define RPC_DETAILS_VALUE_MAX 256

/* One problem with a request: a field path ("" = the request as a whole)
 * and what is wrong with it. */
typedef struct {
  const char *field;
  const char *description;
} rpc_violation_t;

/* True when `error`'s message may name internal addresses or paths, so the
 * client gets a generic one: codes INTERNAL and UNAVAILABLE from any
 * domain, and every code from the store and sys domains except those that
 * answer about the caller's own request or records (NOT_FOUND,
 * ALREADY_EXISTS, INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE,
 * ABORTED). */
bool rpc_details_sanitised(const fzip_error_t *error);

/* Writes the message the client is sent for `error` into out (size bytes,
 * always terminated): its own message, or for a sanitised error a generic
 * one such as "storage unavailable; retry later (request id R)". */
void rpc_details_client_message(char *out, size_t size, const fzip_error_t *error,
                                const char *request_id);

/* Packs the google.rpc.Status for a failed call: code `grpc_code`, message
 * `message` (the client message), ErrorInfo from `error` and `request_id`,
 * and, for INVALID_ARGUMENT, a BadRequest with the first
 * RPC_DETAILS_VIOLATIONS_MAX of `violations` (none given: one for the
 * whole request, with `message`).  *out is malloc'd, the caller's to free. */
bool rpc_details_pack(uint8_t **out, size_t *out_len, const fzip_error_t *error, int grpc_code,
                      const char *message, const char *request_id,
                      const rpc_violation_t *violations, size_t n_violations,
                      fzip_error_t *err);

/* What a client reads back from a packed status. */
typedef struct {
  int code;
  char reason[FZIP_ERROR_REASON_MAX + 1];      /* "" when no ErrorInfo */
  char domain[RPC_DETAILS_VALUE_MAX];          /* ErrorInfo.domain */
  char fzip_domain[RPC_DETAILS_VALUE_MAX];     /* metadata "fzip_domain" */
  char request_id[RPC_DETAILS_VALUE_MAX];      /* metadata "request_id" */
  size_t n_violations;                         /* BadRequest field violations */
  char first_field[RPC_DETAILS_VALUE_MAX];     /* the first one's field */
} rpc_details_t;

/* Parses a RPC_DETAILS_HEADER value; false if it is not a google.rpc.Status. */
bool rpc_details_parse(rpc_details_t *out, const uint8_t *data, size_t len);

#endif
