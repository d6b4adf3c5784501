/*
 * rpc_call (internal): one struct per gRPC call, which owns the tags the
 * completion queue hands back, and the state machine that drives unary,
 * server-streaming, client-streaming and one-reply bidi calls.  All state
 * transitions happen on the call's CQ thread; handler steps run as pool
 * tasks that report back by posting an empty batch to the call.
 */
#ifndef FZIP_RPC_CALL_H
#define FZIP_RPC_CALL_H

#include <stdbool.h>
#include <stddef.h>

#include "rpc_server.h"

/* Asks the core for the next call of methods[method_index] on CQ
 * `cq_index`.  False if the core refused (server shutting down) or out of
 * memory; nothing is left behind then. */
bool rpc_call_request(rpc_server_t *server, size_t method_index, int cq_index);

/* Asks the core for the next call to an unregistered path on CQ
 * `cq_index`; it will be answered UNIMPLEMENTED. */
bool rpc_call_request_unknown(rpc_server_t *server, int cq_index);

/* Handles one completion from a CQ thread (`tag` is a call's tag). */
void rpc_call_on_event(void *tag, bool ok);

#endif
