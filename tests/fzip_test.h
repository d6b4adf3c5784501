/*
 * fzip_test: the tiny test harness every C test program uses.
 *
 *   static void test_cursor_returns_documents_in_id_order(void) {
 *     CHECK(x == 1);
 *     CHECK_OK(store_open(&s, &opts, &err), err);
 *   }
 *   int main(int argc, char **argv) {
 *     RUN(test_cursor_returns_documents_in_id_order);
 *     return fzip_test_summary();
 *   }
 *
 * A failed CHECK prints file:line and the expression, marks the current
 * test failed and returns from it.  Test names say the behaviour checked.
 * FZIP_TEST_FILTER=substring runs only matching tests.
 */
#ifndef FZIP_TEST_H
#define FZIP_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_error.h"

static int fzip_test_failed_count;
static int fzip_test_passed_count;
static int fzip_test_current_failed;

#define CHECK(expr)                                                                      \
  do {                                                                                   \
    if (!(expr)) {                                                                       \
      fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);         \
      fzip_test_current_failed = 1;                                                      \
      return;                                                                            \
    }                                                                                    \
  } while (0)

/* CHECK a call returning bool that fills an fzip_error_t on failure. */
#define CHECK_OK(call, err)                                                              \
  do {                                                                                   \
    if (!(call)) {                                                                       \
      fprintf(stderr, "  %s:%d: %s failed: [%s/%s] %s\n", __FILE__, __LINE__, #call,      \
              fzip_domain_name((fzip_domain_t)(err).domain),                              \
              fzip_code_name((fzip_code_t)(err).code), (err).message);                   \
      fzip_test_current_failed = 1;                                                      \
      return;                                                                            \
    }                                                                                    \
  } while (0)

/* CHECK a call fails with the given fzip_code_t. */
#define CHECK_FAILS(call, err, want_code)                                                \
  do {                                                                                   \
    fzip_error_clear(&(err));                                                            \
    if ((call)) {                                                                        \
      fprintf(stderr, "  %s:%d: %s unexpectedly succeeded\n", __FILE__, __LINE__, #call); \
      fzip_test_current_failed = 1;                                                      \
      return;                                                                            \
    }                                                                                    \
    if ((err).code != (uint32_t)(want_code)) {                                           \
      fprintf(stderr, "  %s:%d: %s failed with %s, want %s: %s\n", __FILE__, __LINE__,   \
              #call, fzip_code_name((fzip_code_t)(err).code),                           \
              fzip_code_name(want_code), (err).message);                                 \
      fzip_test_current_failed = 1;                                                      \
      return;                                                                            \
    }                                                                                    \
  } while (0)

#define RUN(fn)                                                                          \
  do {                                                                                   \
    const char *filter_ = getenv("FZIP_TEST_FILTER");                                    \
    if (filter_ && *filter_ && !strstr(#fn, filter_))                                     \
      break;                                                                             \
    fzip_test_current_failed = 0;                                                        \
    fprintf(stderr, "RUN  %s\n", #fn);                                                   \
    fn();                                                                                \
    if (fzip_test_current_failed) {                                                      \
      fzip_test_failed_count++;                                                          \
      fprintf(stderr, "FAIL %s\n", #fn);                                                 \
    } else {                                                                             \
      fzip_test_passed_count++;                                                          \
      fprintf(stderr, "ok   %s\n", #fn);                                                 \
    }                                                                                    \
  } while (0)

/* Creates an empty file of its own under $TMPDIR (else /tmp) named
 * fzip-test-<name>-XXXXXX and puts its path in path[n] (e.g. an embedded
 * store's file); false, with the reason printed, when it cannot. */
static inline int fzip_test_temp_file(char *path, size_t n, const char *name) {
  const char *tmp = getenv("TMPDIR");
  int fd;
  snprintf(path, n, "%s/fzip-test-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
  fd = mkstemp(path);
  if (fd < 0) {
    perror("mkstemp");
    return 0;
  }
  close(fd);
  return 1;
}

/* Removes an embedded store at `path`: the file, the blob file and their
 * WAL siblings (docs/STORAGE.md "Embedded store"); missing ones are fine. */
static inline void fzip_test_remove_sqlite(const char *path) {
  static const char *const suffixes[] = {"", "-wal", "-shm", "-blobs", "-blobs-wal",
                                         "-blobs-shm"};
  char name[1100];
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    snprintf(name, sizeof name, "%s%s", path, suffixes[i]);
    unlink(name);
  }
}

static inline int fzip_test_summary(void) {
  fprintf(stderr, "%d passed, %d failed\n", fzip_test_passed_count, fzip_test_failed_count);
  return fzip_test_failed_count ? 1 : 0;
}

#endif
