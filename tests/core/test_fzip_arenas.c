/*
 * Tests for fzip_limit_malloc_arenas (glibc only): after it, threads that
 * all allocate at once share at most FZIP_MALLOC_ARENAS arenas; with
 * MALLOC_ARENA_MAX in the environment it leaves glibc's own limit alone.
 * One process per case (CTest runs it twice): the limit is process-wide.
 *
 *   test_fzip_arenas limited     expects <= FZIP_MALLOC_ARENAS arenas
 *   test_fzip_arenas env         run with MALLOC_ARENA_MAX=8: expects more
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fzip_test.h"
#include "fzip_util.h"

#ifdef __GLIBC__
#include <malloc.h>

#define THREADS 8

static pthread_barrier_t g_all_allocated;
static void *volatile g_blocks[THREADS]; /* kept where the compiler must not drop them */

/* Each thread allocates, then waits until every thread has (so none
 * can take over the arena of one that ended). */
static void *allocate(void *arg) {
  size_t i = (size_t)(uintptr_t)arg;
  g_blocks[i] = malloc(1000);
  pthread_barrier_wait(&g_all_allocated);
  free(g_blocks[i]);
  return NULL;
}

/* glibc's arenas: the "Arena N:" lines malloc_stats prints to stderr. */
static int arenas_in_use(void) {
  char line[256];
  int n = 0, saved = dup(STDERR_FILENO);
  FILE *f = tmpfile();
  if (!f || saved < 0)
    return -1;
  fflush(stderr);
  dup2(fileno(f), STDERR_FILENO);
  malloc_stats();
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  rewind(f);
  while (fgets(line, sizeof line, f))
    n += strncmp(line, "Arena ", 6) == 0;
  fclose(f);
  return n;
}

static int arenas_after_threads(void) {
  pthread_t t[THREADS];
  pthread_barrier_init(&g_all_allocated, NULL, THREADS + 1);
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, allocate, (void *)(uintptr_t)i);
  pthread_barrier_wait(&g_all_allocated);
  int n = arenas_in_use();
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&g_all_allocated);
  return n;
}

static void test_threads_share_at_most_the_limit_of_arenas(void) {
  fzip_limit_malloc_arenas();
  int n = arenas_after_threads();
  fprintf(stderr, "  %d arenas for %d threads and main\n", n, THREADS);
  CHECK(n >= 1 && n <= FZIP_MALLOC_ARENAS);
}

static void test_environment_limit_is_left_to_glibc(void) {
  fzip_limit_malloc_arenas(); /* MALLOC_ARENA_MAX=8 is set: does nothing */
  int n = arenas_after_threads();
  fprintf(stderr, "  %d arenas for %d threads and main\n", n, THREADS);
  CHECK(n > FZIP_MALLOC_ARENAS);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "limited") == 0 && !getenv("MALLOC_ARENA_MAX"))
    RUN(test_threads_share_at_most_the_limit_of_arenas);
  else if (argc == 2 && strcmp(argv[1], "env") == 0 && getenv("MALLOC_ARENA_MAX"))
    RUN(test_environment_limit_is_left_to_glibc);
  else {
    fprintf(stderr, "usage: test_fzip_arenas limited | MALLOC_ARENA_MAX=8 test_fzip_arenas env\n");
    return 2;
  }
  return fzip_test_summary();
}
#else
int main(void) {
  fprintf(stderr, "not glibc: nothing to test\n");
  return 0;
}
#endif
