/*
 * rpc_server (internal): the server struct shared by rpc_server.c (start-up,
 * CQ threads, shutdown) and rpc_call.c (the per-call state machine).  Not
 * for handlers: they include rpc.h only.
 */
#ifndef FZIP_RPC_SERVER_H
#define FZIP_RPC_SERVER_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "rpc.h"
#include "rpc_pool.h"

#define RPC_MAX_CQ_THREADS 16
/* Calls requested ahead per method and CQ: how many clients of one method
 * can be accepted at once before the core must wait for a re-request. */
#define RPC_REQUESTS_PER_METHOD 4

struct rpc_server {
  rpc_server_options_t opts; /* with defaults filled in; strings borrowed */
  const rpc_method_t *const *methods;
  size_t n_methods;
  void **registered; /* grpc_server_register_method handle per method */
  grpc_server *server;
  grpc_completion_queue *cqs[RPC_MAX_CQ_THREADS];
  pthread_t cq_threads[RPC_MAX_CQ_THREADS];
  int n_cqs;
  int n_cq_threads;
  grpc_completion_queue *shutdown_cq;
  rpc_pool_t *pool;
  atomic_int live_calls;  /* call structs alive, requested ones included */
  atomic_bool stopping;   /* no more re-requests */
  atomic_bool cancelling; /* grace expired: handlers should stop */
  bool started;
  bool grpc_started; /* grpc_server_start was called */
  bool shut_down;
  bool grpc_initialised;
};

#endif
