/*
 * rpc_pool: the bounded worker pool handlers run on, with a delay queue.
 *
 * CQ threads must never block, so every handler step is a task run here.
 * Tasks are intrusive (the rpc_task_t lives in the call, which has at most
 * one task queued at a time), so submitting never allocates.  Admission of
 * a new call is bounded: rpc_pool_submit refuses when max_pending tasks are
 * already waiting, and the caller answers RESOURCE_EXHAUSTED.  Later steps
 * of an admitted call use rpc_pool_submit_always so a stream is never cut
 * off half-way by load.  The delay queue serves "call me again in N ms"
 * (health Watch) without holding a thread.
 */
#ifndef FZIP_RPC_POOL_H
#define FZIP_RPC_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "fzip_error.h"

typedef struct rpc_pool rpc_pool_t;
typedef struct rpc_task rpc_task_t;
typedef void (*rpc_task_fn)(rpc_task_t *task);

/* Embed in the owning struct; the pool only links it. */
struct rpc_task {
  rpc_task_t *next;
  rpc_task_fn fn;
  int64_t due_ms; /* monotonic; delay queue only */
};

/* Starts `workers` threads.  *out is the caller's to destroy. */
bool rpc_pool_new(rpc_pool_t **out, int workers, int max_pending, fzip_error_t *error);
/* Joins the workers after the queues drain; delayed tasks run at once. */
void rpc_pool_destroy(rpc_pool_t *pool); /* accepts NULL */

/* False (task not queued, fn never runs) when max_pending tasks wait. */
bool rpc_pool_submit(rpc_pool_t *pool, rpc_task_t *task, rpc_task_fn fn);
void rpc_pool_submit_always(rpc_pool_t *pool, rpc_task_t *task, rpc_task_fn fn);
void rpc_pool_submit_after(rpc_pool_t *pool, rpc_task_t *task, rpc_task_fn fn, int delay_ms);
/* From now on delayed tasks are due at once (shutdown: let waiters see
 * their call is cancelled instead of sleeping out their delay). */
void rpc_pool_hurry(rpc_pool_t *pool);

#endif
