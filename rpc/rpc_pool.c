/*
 * rpc_pool: one mutex, one condition variable, a FIFO of ready tasks and a
 * due-time-ordered list of delayed ones.  Idle workers sleep until the
 * earliest delayed task is due, so the delay queue needs no timer thread.
 * Task counts are small (one per live call at most), so the sorted insert
 * is a plain list walk.
 */
#include "rpc_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_log.h"
#include "fzip_util.h"

#define RPC_POOL_MAX_WORKERS 256

struct rpc_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  rpc_task_t *ready_head, *ready_tail;
  rpc_task_t *delayed; /* sorted by due_ms */
  int ready_count;
  int max_pending;
  bool stopping;
  bool hurry;
  int n_threads;
  pthread_t threads[RPC_POOL_MAX_WORKERS];
};

static void push_ready(rpc_pool_t *p, rpc_task_t *t) {
  t->next = NULL;
  if (p->ready_tail)
    p->ready_tail->next = t;
  else
    p->ready_head = t;
  p->ready_tail = t;
  p->ready_count++;
}

static rpc_task_t *pop_ready(rpc_pool_t *p) {
  rpc_task_t *t = p->ready_head;
  if (!t)
    return NULL;
  p->ready_head = t->next;
  if (!p->ready_head)
    p->ready_tail = NULL;
  p->ready_count--;
  return t;
}

/* Moves due delayed tasks to the ready queue; returns ms until the next
 * one is due, or -1 if none waits. */
static int64_t promote_due(rpc_pool_t *p) {
  int64_t now = fzip_monotonic_ms();
  while (p->delayed && (p->hurry || p->delayed->due_ms <= now)) {
    rpc_task_t *t = p->delayed;
    p->delayed = t->next;
    push_ready(p, t);
  }
  return p->delayed ? p->delayed->due_ms - now : -1;
}

static void wait_ms(rpc_pool_t *p, int64_t ms) {
  struct timespec ts = fzip_monotonic_deadline(ms);
  pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

static void *worker_main(void *arg) {
  rpc_pool_t *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    int64_t next_due = promote_due(p);
    rpc_task_t *t = pop_ready(p);
    if (t) {
      pthread_mutex_unlock(&p->mu);
      t->fn(t);
      fzip_log_set_request_id(NULL); /* a task's request id (rpc_call) ends with it */
      pthread_mutex_lock(&p->mu);
      continue;
    }
    if (p->stopping && next_due < 0)
      break;
    if (next_due >= 0)
      wait_ms(p, next_due);
    else
      pthread_cond_wait(&p->cv, &p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

bool rpc_pool_new(rpc_pool_t **out, int workers, int max_pending, fzip_error_t *error) {
  bool ok = false;
  rpc_pool_t *p = NULL;

  if (workers < 1 || workers > RPC_POOL_MAX_WORKERS || max_pending < 1) {
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                   "worker pool: workers must be 1..%d and max_pending >= 1 (got %d, %d)",
                   RPC_POOL_MAX_WORKERS, workers, max_pending);
    goto done;
  }
  p = calloc(1, sizeof *p);
  if (!p) {
    fzip_error_oom(error, "the worker pool");
    goto done;
  }
  p->max_pending = max_pending;
  pthread_mutex_init(&p->mu, NULL);
  /* Timed waits use the monotonic clock so wall-clock jumps cannot stall
   * the delay queue. */
  fzip_cond_init_monotonic(&p->cv);
  for (int i = 0; i < workers; i++) {
    int rc = pthread_create(&p->threads[i], NULL, worker_main, p);
    if (rc != 0) {
      fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "worker pool: pthread_create: %s",
                     strerror(rc));
      goto done;
    }
    p->n_threads++;
  }
  *out = p;
  p = NULL;
  ok = true;
done:
  rpc_pool_destroy(p);
  return ok;
}

void rpc_pool_destroy(rpc_pool_t *pool) {
  if (!pool)
    return;
  pthread_mutex_lock(&pool->mu);
  pool->stopping = true;
  pool->hurry = true;
  pthread_cond_broadcast(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
  for (int i = 0; i < pool->n_threads; i++)
    pthread_join(pool->threads[i], NULL);
  pthread_cond_destroy(&pool->cv);
  pthread_mutex_destroy(&pool->mu);
  free(pool);
}

bool rpc_pool_submit(rpc_pool_t *pool, rpc_task_t *task, rpc_task_fn fn) {
  bool queued = false;
  pthread_mutex_lock(&pool->mu);
  if (pool->ready_count < pool->max_pending) {
    task->fn = fn;
    push_ready(pool, task);
    pthread_cond_signal(&pool->cv);
    queued = true;
  }
  pthread_mutex_unlock(&pool->mu);
  return queued;
}

void rpc_pool_submit_always(rpc_pool_t *pool, rpc_task_t *task, rpc_task_fn fn) {
  pthread_mutex_lock(&pool->mu);
  task->fn = fn;
  push_ready(pool, task);
  pthread_cond_signal(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
}

void rpc_pool_submit_after(rpc_pool_t *pool, rpc_task_t *task, rpc_task_fn fn, int delay_ms) {
  pthread_mutex_lock(&pool->mu);
  task->fn = fn;
  task->due_ms = fzip_monotonic_ms() + (delay_ms > 0 ? delay_ms : 0);
  rpc_task_t **pp = &pool->delayed;
  while (*pp && (*pp)->due_ms <= task->due_ms)
    pp = &(*pp)->next;
  task->next = *pp;
  *pp = task;
  /* Broadcast: a sleeping worker may need to shorten its timed wait. */
  pthread_cond_broadcast(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
}

void rpc_pool_hurry(rpc_pool_t *pool) {
  pthread_mutex_lock(&pool->mu);
  pool->hurry = true;
  pthread_cond_broadcast(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
}
