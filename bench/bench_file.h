/*
 * bench_file: what the loopback floors (bench_tcp, bench_grpc_floor) share:
 * the package loaded into memory first, so that the disk is not measured,
 * and a monotonic clock in seconds.  Header-only: each floor is one .c.
 */
#ifndef FZIP_BENCH_FILE_H
#define FZIP_BENCH_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

/* Largest file a floor loads (it must fit in memory). */
#define BENCH_FILE_MAX (16ULL * 1024 * 1024 * 1024)

static inline double bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads path into *data (malloc'd, the caller frees) of *size bytes. */
static inline bool bench_load_file(unsigned char **data, size_t *size, const char *path) {
  struct stat st;
  FILE *in = fopen(path, "rb");
  bool ok = false;
  if (!in || fstat(fileno(in), &st) != 0 || (uint64_t)st.st_size > BENCH_FILE_MAX)
    goto done;
  *size = (size_t)st.st_size;
  *data = malloc(*size ? *size : 1);
  ok = *data && fread(*data, 1, *size, in) == *size;
done:
  if (in)
    fclose(in);
  return ok;
}

#endif
