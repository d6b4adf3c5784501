/* core/fzip_ticker: the function runs repeatedly at about the interval,
 * first at once or after one interval as asked, a wake runs it early, and
 * stop/destroy never wait out a long interval.  Bounds are loose (a
 * loaded machine may run late, never early by much): each check waits for
 * a count up to a generous deadline instead of sleeping a fixed time. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <time.h>

#include "fzip_test.h"
#include "fzip_ticker.h"
#include "fzip_util.h"

#define SHORT_INTERVAL_MS 20
#define LONG_INTERVAL_MS 60000
#define CALLS_WANTED 5
/* Far more than CALLS_WANTED short intervals, far less than a long one. */
#define DEADLINE_MS 10000
/* What "promptly" means for a stop or a wake against a long interval. */
#define PROMPT_MS 1000
#define POLL_MS 5

typedef struct {
  atomic_int calls;
  atomic_bool saw_stopping;
} counter_t;

static void count_call(fzip_ticker_t *ticker, void *arg) {
  counter_t *c = arg;
  (void)ticker;
  atomic_fetch_add(&c->calls, 1);
}

/* Waits until c->calls >= want or timeout_ms passes; true if reached. */
static bool wait_calls(counter_t *c, int want, int64_t timeout_ms) {
  int64_t end = fzip_monotonic_ms() + timeout_ms;
  while (atomic_load(&c->calls) < want) {
    if (fzip_monotonic_ms() >= end)
      return false;
    fzip_sleep_ms(POLL_MS);
  }
  return true;
}

/* Starts a ticker calling count_call on `c`; NULL (and a line on stderr)
 * if it cannot. */
static fzip_ticker_t *start_counting(counter_t *c, int64_t interval_ms,
                                     fzip_ticker_first_t first) {
  fzip_ticker_t *t = NULL;
  fzip_error_t err = {0};

  if (!fzip_ticker_new(&t, interval_ms, first, count_call, c, &err))
    fprintf(stderr, "  fzip_ticker_new failed: %s\n", err.message);
  return t;
}

static void test_function_runs_repeatedly_at_the_interval(void) {
  counter_t c = {0};
  fzip_ticker_t *t = NULL;
  int64_t start = fzip_monotonic_ms();
  bool reached;
  int64_t took;

  t = start_counting(&c, SHORT_INTERVAL_MS, FZIP_TICKER_FIRST_NOW);
  CHECK(t != NULL);
  reached = wait_calls(&c, CALLS_WANTED, DEADLINE_MS);
  took = fzip_monotonic_ms() - start;
  fzip_ticker_destroy(t);
  CHECK(reached);
  /* The first call is at once, then one interval between calls (a little
   * slack for the clock's granularity). */
  CHECK(took >= (CALLS_WANTED - 1) * SHORT_INTERVAL_MS - POLL_MS);
}

static void test_first_after_interval_waits_before_the_first_call(void) {
  counter_t c = {0};
  fzip_ticker_t *t = NULL;

  t = start_counting(&c, LONG_INTERVAL_MS, FZIP_TICKER_FIRST_AFTER_INTERVAL);
  CHECK(t != NULL);
  fzip_sleep_ms(SHORT_INTERVAL_MS * 5);
  fzip_ticker_destroy(t);
  CHECK(atomic_load(&c.calls) == 0);
}

static void test_wake_runs_the_function_early(void) {
  counter_t c = {0};
  fzip_ticker_t *t = NULL;
  bool reached;

  /* Without the wakes nothing would run for a minute; with them, two
   * calls come well within the deadline. */
  t = start_counting(&c, LONG_INTERVAL_MS, FZIP_TICKER_FIRST_AFTER_INTERVAL);
  CHECK(t != NULL);
  fzip_ticker_wake(t);
  reached = wait_calls(&c, 1, DEADLINE_MS);
  if (reached) {
    fzip_ticker_wake(t);
    reached = wait_calls(&c, 2, DEADLINE_MS);
  }
  fzip_ticker_destroy(t);
  CHECK(reached);
}

/* Also: the first call comes at once, not after the minute. */
static void test_destroy_returns_promptly_while_a_long_interval_is_pending(void) {
  counter_t c = {0};
  fzip_ticker_t *t = NULL;
  int64_t start;
  bool reached;

  t = start_counting(&c, LONG_INTERVAL_MS, FZIP_TICKER_FIRST_NOW);
  CHECK(t != NULL);
  reached = wait_calls(&c, 1, DEADLINE_MS); /* now in the 60 s wait */
  start = fzip_monotonic_ms();
  fzip_ticker_destroy(t);
  CHECK(reached);
  CHECK(fzip_monotonic_ms() - start < PROMPT_MS);
  CHECK(atomic_load(&c.calls) == 1);
}

static void stop_aware_call(fzip_ticker_t *ticker, void *arg) {
  counter_t *c = arg;
  atomic_fetch_add(&c->calls, 1);
  while (!fzip_ticker_stopping(ticker))
    fzip_sleep_ms(POLL_MS);
  atomic_store(&c->saw_stopping, true);
}

static void test_stop_without_join_is_seen_by_a_call_in_progress(void) {
  counter_t c = {0};
  fzip_ticker_t *t = NULL;
  fzip_error_t err = {0};
  bool reached;
  int64_t start;

  CHECK_OK(
      fzip_ticker_new(&t, SHORT_INTERVAL_MS, FZIP_TICKER_FIRST_NOW, stop_aware_call, &c, &err),
      err);
  reached = wait_calls(&c, 1, DEADLINE_MS);
  fzip_ticker_stop(t);
  start = fzip_monotonic_ms();
  fzip_ticker_destroy(t);
  CHECK(reached);
  CHECK(fzip_monotonic_ms() - start < PROMPT_MS);
  CHECK(atomic_load(&c.saw_stopping));
  CHECK(atomic_load(&c.calls) == 1); /* nothing starts after stop */
}

static void test_bad_arguments_are_refused_and_destroy_accepts_null(void) {
  counter_t c = {0};
  fzip_ticker_t *t = (fzip_ticker_t *)&c;
  fzip_error_t err = {0};

  CHECK_FAILS(fzip_ticker_new(&t, 0, FZIP_TICKER_FIRST_NOW, count_call, &c, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(t == NULL);
  CHECK_FAILS(fzip_ticker_new(&t, SHORT_INTERVAL_MS, FZIP_TICKER_FIRST_NOW, NULL, &c, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  fzip_ticker_stop(NULL);
  fzip_ticker_destroy(NULL);
  CHECK(atomic_load(&c.calls) == 0);
}

int main(void) {
  RUN(test_function_runs_repeatedly_at_the_interval);
  RUN(test_first_after_interval_waits_before_the_first_call);
  RUN(test_wake_runs_the_function_early);
  RUN(test_destroy_returns_promptly_while_a_long_interval_is_pending);
  RUN(test_stop_without_join_is_seen_by_a_call_in_progress);
  RUN(test_bad_arguments_are_refused_and_destroy_accepts_null);
  return fzip_test_summary();
}
