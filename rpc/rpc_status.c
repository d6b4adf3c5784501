/* rpc_status: see rpc_status.h.  One row per fzip code; the mapping is
 * one-to-one, so the same rows read backwards give the client's view. */
#include "rpc_status.h"

#include <grpc/status.h>
#include <stddef.h>

typedef struct {
  fzip_code_t code;
  grpc_status_code status;
} status_row_t;

static const status_row_t rows[] = {
    {FZIP_OK, GRPC_STATUS_OK},
    {FZIP_ERR_INVALID_ARGUMENT, GRPC_STATUS_INVALID_ARGUMENT},
    {FZIP_ERR_NOT_FOUND, GRPC_STATUS_NOT_FOUND},
    {FZIP_ERR_ALREADY_EXISTS, GRPC_STATUS_ALREADY_EXISTS},
    {FZIP_ERR_FAILED_PRECONDITION, GRPC_STATUS_FAILED_PRECONDITION},
    {FZIP_ERR_UNAUTHENTICATED, GRPC_STATUS_UNAUTHENTICATED},
    {FZIP_ERR_PERMISSION_DENIED, GRPC_STATUS_PERMISSION_DENIED},
    {FZIP_ERR_RESOURCE_EXHAUSTED, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {FZIP_ERR_OUT_OF_RANGE, GRPC_STATUS_OUT_OF_RANGE},
    {FZIP_ERR_CANCELLED, GRPC_STATUS_CANCELLED},
    {FZIP_ERR_DEADLINE_EXCEEDED, GRPC_STATUS_DEADLINE_EXCEEDED},
    {FZIP_ERR_ABORTED, GRPC_STATUS_ABORTED},
    {FZIP_ERR_UNAVAILABLE, GRPC_STATUS_UNAVAILABLE},
    {FZIP_ERR_UNIMPLEMENTED, GRPC_STATUS_UNIMPLEMENTED},
    {FZIP_ERR_DATA_LOSS, GRPC_STATUS_DATA_LOSS},
    {FZIP_ERR_INTERNAL, GRPC_STATUS_INTERNAL},
};

#define N_ROWS (sizeof rows / sizeof rows[0])

int rpc_status_code(fzip_code_t code) {
  for (size_t i = 0; i < N_ROWS; i++) {
    if (rows[i].code == code)
      return (int)rows[i].status;
  }
  return GRPC_STATUS_INTERNAL;
}

fzip_code_t rpc_status_to_code(int grpc_status) {
  for (size_t i = 0; i < N_ROWS; i++) {
    if ((int)rows[i].status == grpc_status)
      return rows[i].code;
  }
  return FZIP_ERR_INTERNAL;
}
