/*
 * bench_tcp: the raw loopback floor for streaming.  A receiver thread
 * accepts one connection on 127.0.0.1 and reads until EOF; the sender
 * writes FILE's bytes (loaded into memory first, so the disk is not
 * measured) in BENCH_TCP_CHUNK writes.  Timed from connect until the
 * receiver has seen the last byte.
 *
 *   bench_tcp FILE   -> {"mode": "tcp", "bytes": N, "seconds": S, "mib_per_s": R}
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_file.h"

#define BENCH_TCP_CHUNK (1024 * 1024)

typedef struct {
  int listen_fd;
  uint64_t received;
  double done_at;
  int err;
} receiver_t;

static void *receive(void *arg) {
  receiver_t *r = arg;
  unsigned char *buf = malloc(BENCH_TCP_CHUNK);
  int fd = accept(r->listen_fd, NULL, NULL);
  ssize_t n = 0;
  if (fd < 0 || !buf) {
    r->err = errno ? errno : ENOMEM;
    goto done;
  }
  while ((n = read(fd, buf, BENCH_TCP_CHUNK)) > 0)
    r->received += (uint64_t)n;
  if (n < 0)
    r->err = errno;
  r->done_at = bench_now_s();
done:
  if (fd >= 0)
    close(fd);
  free(buf);
  return NULL;
}

int main(int argc, char **argv) {
  receiver_t r = {.listen_fd = -1};
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  pthread_t thread;
  bool started = false;
  unsigned char *data = NULL;
  size_t size = 0, sent = 0;
  int fd = -1, rc = 1;
  double t0 = 0;

  if (argc != 2) {
    fprintf(stderr, "usage: bench_tcp FILE\n");
    return 2;
  }
  if (!bench_load_file(&data, &size, argv[1])) {
    fprintf(stderr, "bench_tcp: %s: cannot read\n", argv[1]);
    goto done;
  }
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  r.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  if (r.listen_fd < 0 || bind(r.listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      listen(r.listen_fd, 1) != 0 ||
      getsockname(r.listen_fd, (struct sockaddr *)&addr, &len) != 0 ||
      pthread_create(&thread, NULL, receive, &r) != 0) {
    perror("bench_tcp: listen");
    goto done;
  }
  started = true;
  t0 = bench_now_s();
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    perror("bench_tcp: connect");
    goto done;
  }
  while (sent < size) {
    size_t want = size - sent < BENCH_TCP_CHUNK ? size - sent : BENCH_TCP_CHUNK;
    ssize_t n = write(fd, data + sent, want);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      perror("bench_tcp: write");
      goto done;
    }
    sent += (size_t)n;
  }
  close(fd);
  fd = -1;
  pthread_join(thread, NULL);
  started = false;
  if (r.err || r.received != size) {
    fprintf(stderr, "bench_tcp: received %" PRIu64 " of %zu bytes (%s)\n", r.received, size,
            strerror(r.err));
    goto done;
  }
  double s = r.done_at - t0;
  printf("{\"mode\": \"tcp\", \"bytes\": %zu, \"seconds\": %.4f, \"mib_per_s\": %.2f}\n", size, s,
         s > 0 ? (double)size / 1048576.0 / s : 0.0);
  rc = 0;
done:
  if (fd >= 0)
    close(fd);
  if (started) {
    shutdown(r.listen_fd, SHUT_RDWR); /* unblocks accept if the sender never connected */
    pthread_join(thread, NULL);
  }
  if (r.listen_fd >= 0)
    close(r.listen_fd);
  free(data);
  return rc;
}
