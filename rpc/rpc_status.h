/*
 * rpc_status: the one table between fzip error codes and gRPC status
 * codes, read in both directions: the server turns an fzip error into the
 * status it sends (rpc_status_code), the client turns a received status
 * back into an fzip code (rpc_status_to_code).  gRPC codes are ints here
 * to keep grpc headers out of handler code.
 */
#ifndef FZIP_RPC_STATUS_H
#define FZIP_RPC_STATUS_H

#include "fzip_error.h"

/* The gRPC status for an fzip code; a code outside the table (a bug)
 * becomes INTERNAL rather than leaking UNKNOWN to clients. */
int rpc_status_code(fzip_code_t code);
/* The fzip code for a gRPC status; UNKNOWN and anything outside the table
 * become INTERNAL. */
fzip_code_t rpc_status_to_code(int grpc_status);

#endif
