/*
 * fzip_ticker: one background thread that calls a function every interval
 * until stopped.  The reaper, the queue gauge and the health checker each
 * need exactly this; one module keeps the parts that are easy to get
 * wrong in one place: the wait is on CLOCK_MONOTONIC (a wall clock step
 * neither fires nor starves a tick), and a stop interrupts the wait at
 * once, so shutdown never waits out an interval (only a call in progress,
 * which the callback can shorten by testing fzip_ticker_stopping).
 *
 *   fzip_ticker_t *t;
 *   if (!fzip_ticker_new(&t, 5000, FZIP_TICKER_FIRST_NOW, refresh, g, &err))
 *     ...
 *   fzip_ticker_destroy(t);
 */
#ifndef FZIP_TICKER_H
#define FZIP_TICKER_H

#include <stdbool.h>
#include <stdint.h>

#include "fzip_error.h"

typedef struct fzip_ticker fzip_ticker_t;

/* Called on the ticker's thread, never twice at once.  `ticker` is the
 * one calling (for fzip_ticker_stopping); it may be called before
 * fzip_ticker_new has returned to its caller. */
typedef void (*fzip_ticker_fn)(fzip_ticker_t *ticker, void *arg);

/* When the first call happens. */
typedef enum {
  FZIP_TICKER_FIRST_NOW,           /* as soon as the thread starts */
  FZIP_TICKER_FIRST_AFTER_INTERVAL /* the caller has just done the work itself */
} fzip_ticker_first_t;

/* Starts the thread.  interval_ms must be positive; it is measured from
 * the end of one call to the start of the next.  `arg` is borrowed and
 * must outlive the ticker.  *out is the caller's to destroy.  If this
 * fails, fn is never called. */
bool fzip_ticker_new(fzip_ticker_t **out, int64_t interval_ms, fzip_ticker_first_t first,
                     fzip_ticker_fn fn, void *arg, fzip_error_t *error);
/* Runs fn as soon as possible (at once if the thread is waiting, else
 * right after the call in progress); the next interval counts from there.
 * Wakes coming while a call is pending merge into one call. */
void fzip_ticker_wake(fzip_ticker_t *ticker);
/* Asks the thread to end without waiting for it (it ends after a call in
 * progress), so that stopping can overlap other shutdown work.  No call
 * starts after this returns.  Accepts NULL. */
void fzip_ticker_stop(fzip_ticker_t *ticker);
/* True once stop (or destroy) was asked: a long callback checks it
 * between steps to end early. */
bool fzip_ticker_stopping(fzip_ticker_t *ticker);
/* Stops, joins and frees; accepts NULL.  Never call it from fn. */
void fzip_ticker_destroy(fzip_ticker_t *ticker);

#endif
