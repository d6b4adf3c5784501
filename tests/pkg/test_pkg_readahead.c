/*
 * Tests for pkg_readahead: the reader gets the function's bytes in order
 * whatever the read sizes on either side; the function's error comes out
 * after the bytes before it, and again after that; a stop hands the
 * function back to the caller's thread with nothing lost; the thread is
 * never more than the ring ahead of the reader; a ring blocked full is
 * destroyed without a hang; bad sizes are refused.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_test.h"
#include "fzip_util.h"
#include "pkg_readahead.h"

#define TOTAL (3 * 1024 * 1024 + 12345) /* bytes the test source gives */
#define BLOCK 4096
#define BLOCKS 3

/* A source of TOTAL bytes, byte i = f(i), in calls of varying length;
 * fails with DATA_LOSS once it has given fail_at bytes (0: never). */
typedef struct {
  pthread_mutex_t mu;
  uint64_t given;
  uint64_t fail_at;
  uint32_t rng;
  pthread_t last_caller;
} source_t;

static uint8_t byte_at(uint64_t i) { return (uint8_t)(i * 131 + (i >> 9)); }

static bool source_read(void *ctx, void *buf, size_t cap, size_t *n, fzip_error_t *error) {
  source_t *s = ctx;
  uint8_t *out = buf;
  size_t want;

  pthread_mutex_lock(&s->mu);
  s->last_caller = pthread_self();
  s->rng = s->rng * 1103515245u + 12345u;
  want = 1 + (s->rng >> 8) % 7000; /* short and long calls, across blocks */
  if (want > cap)
    want = cap;
  if (s->given + want > TOTAL)
    want = (size_t)(TOTAL - s->given);
  if (s->fail_at && s->given + want > s->fail_at)
    want = (size_t)(s->fail_at - s->given);
  for (size_t i = 0; i < want; i++)
    out[i] = byte_at(s->given + i);
  s->given += want;
  *n = want;
  if (want == 0 && s->fail_at && s->given == s->fail_at) {
    pthread_mutex_unlock(&s->mu);
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS, "test source broke");
  }
  pthread_mutex_unlock(&s->mu);
  return true;
}

static uint64_t source_given(source_t *s) {
  uint64_t g;
  pthread_mutex_lock(&s->mu);
  g = s->given;
  pthread_mutex_unlock(&s->mu);
  return g;
}

static void source_init(source_t *s, uint64_t fail_at) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  s->fail_at = fail_at;
  s->rng = 7;
}

/* Reads until the end or an error, in reads of varying size; checks every
 * byte; *got = bytes read. */
static bool drain(uint64_t *got, pkgra_t *ra, fzip_error_t *err) {
  uint8_t buf[9000];
  uint32_t rng = 99;
  size_t n = 0;
  do {
    rng = rng * 1103515245u + 12345u;
    size_t cap = 1 + (rng >> 8) % sizeof buf;
    if (!pkgra_read(ra, buf, cap, &n, err))
      return false;
    if (n > cap)
      return fzip_error_set(err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "read past cap");
    for (size_t i = 0; i < n; i++) {
      if (buf[i] != byte_at(*got + i))
        return fzip_error_set(err, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                              "byte %llu out of order or changed",
                              (unsigned long long)(*got + i));
    }
    *got += n;
  } while (n > 0);
  return true;
}

static void test_bytes_come_out_in_order_whatever_the_read_sizes(void) {
  source_t s;
  pkgra_t *ra = NULL;
  fzip_error_t err = {0};
  uint64_t got = 0;
  size_t n = 1;
  uint8_t one;

  source_init(&s, 0);
  CHECK_OK(pkgra_new(&ra, source_read, &s, BLOCK, BLOCKS, &err), err);
  CHECK_OK(drain(&got, ra, &err), err);
  CHECK(got == TOTAL);
  /* The end stays the end. */
  CHECK_OK(pkgra_read(ra, &one, 1, &n, &err), err);
  CHECK(n == 0);
  pkgra_destroy(ra);
}

static void test_error_comes_after_the_bytes_before_it_and_stays(void) {
  static const uint64_t fail_at[] = {1, BLOCK - 1, BLOCK, 5 * BLOCK + 17, TOTAL - 1};
  for (size_t i = 0; i < sizeof fail_at / sizeof fail_at[0]; i++) {
    source_t s;
    pkgra_t *ra = NULL;
    fzip_error_t err = {0};
    uint64_t got = 0;
    size_t n = 0;
    uint8_t one;

    source_init(&s, fail_at[i]);
    CHECK_OK(pkgra_new(&ra, source_read, &s, BLOCK, BLOCKS, &err), err);
    CHECK(!drain(&got, ra, &err));
    CHECK(got == fail_at[i]);
    CHECK(err.code == FZIP_ERR_DATA_LOSS && strstr(err.message, "test source broke"));
    fzip_error_clear(&err);
    CHECK_FAILS(pkgra_read(ra, &one, 1, &n, &err), err, FZIP_ERR_DATA_LOSS);
    pkgra_destroy(ra);
  }
}

static void test_thread_stays_within_the_ring_ahead_of_the_reader(void) {
  source_t s;
  pkgra_t *ra = NULL;
  fzip_error_t err = {0};
  uint8_t buf[100];
  uint64_t read = 0;
  size_t n = 0;

  source_init(&s, 0);
  CHECK_OK(pkgra_new(&ra, source_read, &s, BLOCK, BLOCKS, &err), err);
  for (int round = 0; round < 5; round++) {
    fzip_sleep_ms(20); /* time for the thread to fill every block it may */
    CHECK(source_given(&s) <= read + (uint64_t)BLOCK * BLOCKS);
    CHECK_OK(pkgra_read(ra, buf, sizeof buf, &n, &err), err);
    read += n;
  }
  CHECK(source_given(&s) >= (uint64_t)BLOCK); /* it did read ahead */
  pkgra_destroy(ra);                          /* the thread waits on a full ring */
}

static void test_stop_hands_the_source_back_with_nothing_lost(void) {
  source_t s;
  pkgra_t *ra = NULL;
  fzip_error_t err = {0};
  uint8_t buf[1000];
  uint64_t got = 0;
  size_t n = 0;

  source_init(&s, 0);
  CHECK_OK(pkgra_new(&ra, source_read, &s, BLOCK, BLOCKS, &err), err);
  CHECK_OK(pkgra_read(ra, buf, sizeof buf, &n, &err), err);
  for (size_t i = 0; i < n; i++)
    CHECK(buf[i] == byte_at(i));
  got = n;
  pkgra_stop(ra);
  pkgra_stop(ra); /* idempotent */
  {
    uint64_t ahead = source_given(&s);
    CHECK_OK(drain(&got, ra, &err), err);
    CHECK(got == TOTAL);
    CHECK(ahead < TOTAL);
  }
  /* The calls after the stop were the reader's own. */
  CHECK(pthread_equal(s.last_caller, pthread_self()));
  pkgra_destroy(ra);
}

static void test_bad_sizes_are_refused(void) {
  source_t s;
  pkgra_t *ra = NULL;
  fzip_error_t err = {0};

  source_init(&s, 0);
  CHECK_FAILS(pkgra_new(&ra, source_read, &s, 0, BLOCKS, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(pkgra_new(&ra, source_read, &s, BLOCK, 1, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(pkgra_new(&ra, source_read, &s, PKGRA_BLOCK_MAX + 1, BLOCKS, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(pkgra_new(&ra, source_read, &s, BLOCK, PKGRA_BLOCKS_MAX + 1, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  CHECK(ra == NULL);
  CHECK(source_given(&s) == 0);
  pkgra_destroy(NULL);
}

int main(void) {
  RUN(test_bytes_come_out_in_order_whatever_the_read_sizes);
  RUN(test_error_comes_after_the_bytes_before_it_and_stays);
  RUN(test_thread_stays_within_the_ring_ahead_of_the_reader);
  RUN(test_stop_hands_the_source_back_with_nothing_lost);
  RUN(test_bad_sizes_are_refused);
  return fzip_test_summary();
}
