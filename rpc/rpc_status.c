/*
 * rpc_status: the one place an fzip error code becomes a gRPC status code.
 * The table is total over fzip_code_t; a code outside it (a bug) becomes
 * INTERNAL rather than leaking UNKNOWN to clients.
 */
#include "rpc.h"

#include <grpc/status.h>

static const grpc_status_code status_of_code[] = {
    [FZIP_OK] = GRPC_STATUS_OK,
    [FZIP_ERR_INVALID_ARGUMENT] = GRPC_STATUS_INVALID_ARGUMENT,
    [FZIP_ERR_NOT_FOUND] = GRPC_STATUS_NOT_FOUND,
    [FZIP_ERR_ALREADY_EXISTS] = GRPC_STATUS_ALREADY_EXISTS,
    [FZIP_ERR_FAILED_PRECONDITION] = GRPC_STATUS_FAILED_PRECONDITION,
    [FZIP_ERR_UNAUTHENTICATED] = GRPC_STATUS_UNAUTHENTICATED,
    [FZIP_ERR_PERMISSION_DENIED] = GRPC_STATUS_PERMISSION_DENIED,
    [FZIP_ERR_RESOURCE_EXHAUSTED] = GRPC_STATUS_RESOURCE_EXHAUSTED,
    [FZIP_ERR_OUT_OF_RANGE] = GRPC_STATUS_OUT_OF_RANGE,
    [FZIP_ERR_CANCELLED] = GRPC_STATUS_CANCELLED,
    [FZIP_ERR_DEADLINE_EXCEEDED] = GRPC_STATUS_DEADLINE_EXCEEDED,
    [FZIP_ERR_ABORTED] = GRPC_STATUS_ABORTED,
    [FZIP_ERR_UNAVAILABLE] = GRPC_STATUS_UNAVAILABLE,
    [FZIP_ERR_UNIMPLEMENTED] = GRPC_STATUS_UNIMPLEMENTED,
    [FZIP_ERR_DATA_LOSS] = GRPC_STATUS_DATA_LOSS,
    [FZIP_ERR_INTERNAL] = GRPC_STATUS_INTERNAL,
};

int rpc_status_code(fzip_code_t code) {
  if ((unsigned)code >= sizeof status_of_code / sizeof status_of_code[0])
    return GRPC_STATUS_INTERNAL;
  return (int)status_of_code[code];
}
