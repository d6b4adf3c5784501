/*
 * bench_grpc_floor: the raw gRPC C-core streaming floor, the ceiling for
 * any gRPC service on this machine.  A minimal server (child process, one
 * completion-queue thread, no worker pool, no protobuf, no store) and a
 * minimal client (parent process) move FILE's bytes over loopback in
 * BENCH_GRPC_CHUNK messages, with the channel arguments fzipd and its
 * client use (message limits, no BDP probing on the server).  The bytes
 * are loaded into memory first and sent as slices that point into it, so
 * neither the disk nor a copy is measured; the receiver drops each message
 * after counting it.
 *
 * The server runs on one CPU and the client on another (the first two the
 * process may use; unpinned on a one-CPU machine): left to the scheduler,
 * the two single-threaded processes often share one CPU, woken where the
 * other ran, and the same transfer of the 1M package then ran at
 * 1,200-1,900 MiB/s, as with both pinned to one CPU, instead of up to
 * 3,650 (docs/BENCHMARKS.md, run AH):
 * a floor must be what the machine can do, not what the scheduler chose.
 *
 *   bench_grpc_floor download FILE -> server streams FILE to the client
 *   bench_grpc_floor upload FILE   -> client streams FILE to the server
 *
 * prints {"mode": "grpc-download"|"grpc-upload", "bytes": N, "seconds": S,
 * "mib_per_s": R, "messages": M}, timed in the client from the call's start
 * until its status arrived (the upload's status comes after the server read
 * the last byte).
 */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_file.h"

/* What bench_client asks for and sends (BENCH_CHUNK there). */
#define BENCH_GRPC_CHUNK (1024 * 1024)
/* fzipd's default message limit (rpc_server.c), on both ends. */
#define BENCH_GRPC_MAX_MESSAGE (4 * 1024 * 1024 + 64 * 1024)
#define BENCH_GRPC_METHOD "/bench.Floor/Stream"
/* How long the client waits for the whole transfer. */
#define BENCH_GRPC_DEADLINE_S 3600

typedef enum { MODE_DOWNLOAD, MODE_UPLOAD } mode_t_;

/* The CPUs the server (child) and the client run on; -1: not pinned. */
static int g_cpu_server = -1, g_cpu_client = -1;

/* The first two CPUs this process may use, if there are two. */
static void choose_cpus(void) {
  cpu_set_t allowed;
  int found = 0, cpus[2];
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
    return;
  for (int i = 0; i < CPU_SETSIZE && found < 2; i++)
    if (CPU_ISSET(i, &allowed))
      cpus[found++] = i;
  if (found == 2) {
    g_cpu_server = cpus[0];
    g_cpu_client = cpus[1];
  }
}

/* Pins the calling process to `cpu` (nothing when -1); a failure only
 * leaves it unpinned, which the JSON line says. */
static bool pin_to(int cpu) {
  cpu_set_t one;
  if (cpu < 0)
    return false;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0;
}

static bool g_pinned = false;

/* One message of the file: a slice pointing into it (no copy). */
static grpc_byte_buffer *chunk_at(const unsigned char *data, size_t size, size_t *off) {
  size_t n = size - *off < BENCH_GRPC_CHUNK ? size - *off : BENCH_GRPC_CHUNK;
  grpc_slice s = grpc_slice_from_static_buffer(data + *off, n);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  *off += n;
  return bb;
}

/* Waits for `tag` on cq (every batch here is waited for in order). */
static bool wait_tag(grpc_completion_queue *cq, void *tag) {
  grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static bool batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n,
                  void *tag) {
  return grpc_call_start_batch(call, ops, n, tag, NULL) == GRPC_CALL_OK && wait_tag(cq, tag);
}

/* ---- server (child) ------------------------------------------------------ */

static int serve(mode_t_ mode, const unsigned char *data, size_t size, int port_fd) {
  grpc_arg args[] = {
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = BENCH_GRPC_MAX_MESSAGE}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = BENCH_GRPC_MAX_MESSAGE}},
      {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_BDP_PROBE, {.integer = 0}},
      {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
  };
  grpc_channel_args channel_args = {sizeof args / sizeof args[0], args};
  grpc_server *server = NULL;
  grpc_completion_queue *cq = NULL;
  grpc_server_credentials *creds = NULL;
  grpc_call *call = NULL;
  grpc_call_details details;
  grpc_metadata_array md;
  grpc_op ops[3];
  int cancelled = 0, port = 0, rc = 1;

  grpc_init();
  grpc_call_details_init(&details);
  grpc_metadata_array_init(&md);
  cq = grpc_completion_queue_create_for_pluck(NULL);
  server = grpc_server_create(&channel_args, NULL);
  grpc_server_register_completion_queue(server, cq, NULL);
  creds = grpc_insecure_server_credentials_create();
  port = grpc_server_add_http2_port(server, "127.0.0.1:0", creds);
  grpc_server_credentials_release(creds);
  grpc_server_start(server);
  if (port <= 0 || write(port_fd, &port, sizeof port) != (ssize_t)sizeof port)
    goto done;
  close(port_fd);
  if (grpc_server_request_call(server, &call, &details, &md, cq, cq, (void *)1) != GRPC_CALL_OK ||
      !wait_tag(cq, (void *)1))
    goto done;
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[0].data.recv_close_on_server.cancelled = &cancelled;
  if (grpc_call_start_batch(call, ops, 1, (void *)2, NULL) != GRPC_CALL_OK)
    goto done;
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (!batch(call, cq, ops, 1, (void *)3))
    goto done;
  if (mode == MODE_DOWNLOAD) {
    grpc_byte_buffer *req = NULL;
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_MESSAGE;
    ops[0].data.recv_message.recv_message = &req;
    if (!batch(call, cq, ops, 1, (void *)4))
      goto done;
    grpc_byte_buffer_destroy(req);
    for (size_t off = 0; off < size;) {
      grpc_byte_buffer *bb = chunk_at(data, size, &off);
      memset(ops, 0, sizeof ops);
      ops[0].op = GRPC_OP_SEND_MESSAGE;
      ops[0].data.send_message.send_message = bb;
      bool ok = batch(call, cq, ops, 1, (void *)5);
      grpc_byte_buffer_destroy(bb);
      if (!ok)
        goto done;
    }
  } else {
    for (;;) {
      grpc_byte_buffer *bb = NULL;
      memset(ops, 0, sizeof ops);
      ops[0].op = GRPC_OP_RECV_MESSAGE;
      ops[0].data.recv_message.recv_message = &bb;
      if (!batch(call, cq, ops, 1, (void *)4))
        goto done;
      if (!bb)
        break;
      grpc_byte_buffer_destroy(bb);
    }
  }
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[0].data.send_status_from_server.status = GRPC_STATUS_OK;
  if (!batch(call, cq, ops, 1, (void *)6) || !wait_tag(cq, (void *)2))
    goto done;
  rc = 0;
done:
  if (call)
    grpc_call_unref(call);
  /* Graceful unless the call failed: the client may still be reading
   * what was sent before the status. */
  grpc_server_shutdown_and_notify(server, cq, (void *)7);
  if (rc != 0)
    grpc_server_cancel_all_calls(server);
  wait_tag(cq, (void *)7);
  grpc_server_destroy(server);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  grpc_call_details_destroy(&details);
  grpc_metadata_array_destroy(&md);
  grpc_shutdown();
  return rc;
}

/* ---- client (parent) ----------------------------------------------------- */

static int run_client(mode_t_ mode, const unsigned char *data, size_t size, int port) {
  grpc_arg args[] = {
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = BENCH_GRPC_MAX_MESSAGE}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = BENCH_GRPC_MAX_MESSAGE}},
  };
  grpc_channel_args channel_args = {sizeof args / sizeof args[0], args};
  char target[64];
  grpc_channel_credentials *creds = NULL;
  grpc_channel *channel = NULL;
  grpc_completion_queue *cq = NULL;
  grpc_call *call = NULL;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice status_details = grpc_empty_slice();
  grpc_op ops[3];
  uint64_t bytes = 0, messages = 0;
  double t0 = 0, seconds = 0;
  int rc = 1;

  grpc_init();
  creds = grpc_insecure_credentials_create();
  cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_metadata_array_init(&initial_md);
  grpc_metadata_array_init(&trailing_md);
  snprintf(target, sizeof target, "127.0.0.1:%d", port);
  channel = grpc_channel_create(target, creds, &channel_args);
  grpc_channel_credentials_release(creds);
  t0 = bench_now_s();
  call = grpc_channel_create_call(channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                  grpc_slice_from_static_string(BENCH_GRPC_METHOD), NULL,
                                  gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                               gpr_time_from_seconds(BENCH_GRPC_DEADLINE_S,
                                                                     GPR_TIMESPAN)),
                                  NULL);
  /* The status and the server's headers (without asking for those, the
   * core never completes the status), apart from the sends. */
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[0].data.recv_status_on_client.trailing_metadata = &trailing_md;
  ops[0].data.recv_status_on_client.status = &status;
  ops[0].data.recv_status_on_client.status_details = &status_details;
  ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[1].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
  if (grpc_call_start_batch(call, ops, 2, (void *)10, NULL) != GRPC_CALL_OK)
    goto done;
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (!batch(call, cq, ops, 1, (void *)11))
    goto done;
  if (mode == MODE_DOWNLOAD) {
    grpc_slice empty = grpc_empty_slice();
    grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&empty, 1);
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_MESSAGE;
    ops[0].data.send_message.send_message = req;
    ops[1].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    bool ok = batch(call, cq, ops, 2, (void *)12);
    grpc_byte_buffer_destroy(req);
    if (!ok)
      goto done;
    for (;;) {
      grpc_byte_buffer *bb = NULL;
      memset(ops, 0, sizeof ops);
      ops[0].op = GRPC_OP_RECV_MESSAGE;
      ops[0].data.recv_message.recv_message = &bb;
      if (!batch(call, cq, ops, 1, (void *)13))
        goto done;
      if (!bb)
        break;
      bytes += grpc_byte_buffer_length(bb);
      messages++;
      grpc_byte_buffer_destroy(bb);
    }
  } else {
    for (size_t off = 0; off < size;) {
      size_t before = off;
      grpc_byte_buffer *bb = chunk_at(data, size, &off);
      memset(ops, 0, sizeof ops);
      ops[0].op = GRPC_OP_SEND_MESSAGE;
      ops[0].data.send_message.send_message = bb;
      bool ok = batch(call, cq, ops, 1, (void *)14);
      grpc_byte_buffer_destroy(bb);
      if (!ok)
        goto done;
      bytes += off - before;
      messages++;
    }
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (!batch(call, cq, ops, 1, (void *)15))
      goto done;
  }
  if (!wait_tag(cq, (void *)10) || status != GRPC_STATUS_OK)
    goto done;
  seconds = bench_now_s() - t0;
  if (bytes != size)
    goto done;
  printf("{\"mode\": \"grpc-%s\", \"bytes\": %" PRIu64 ", \"seconds\": %.4f, \"mib_per_s\": %.2f"
         ", \"messages\": %" PRIu64 ", \"pinned\": %s}\n",
         mode == MODE_DOWNLOAD ? "download" : "upload", bytes, seconds,
         seconds > 0 ? (double)bytes / 1048576.0 / seconds : 0.0, messages,
         g_pinned ? "true" : "false");
  rc = 0;
done:
  if (rc != 0)
    fprintf(stderr, "bench_grpc_floor: call failed (status %d, %" PRIu64 " of %zu bytes)\n",
            (int)status, bytes, size);
  if (call)
    grpc_call_unref(call);
  grpc_slice_unref(status_details);
  grpc_metadata_array_destroy(&initial_md);
  grpc_metadata_array_destroy(&trailing_md);
  grpc_channel_destroy(channel);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  grpc_shutdown();
  return rc;
}

int main(int argc, char **argv) {
  unsigned char *data = NULL;
  size_t size = 0;
  int fds[2] = {-1, -1};
  int port = 0, rc = 1, wstatus = 0;
  pid_t child = -1;
  mode_t_ mode;

  if (argc != 3 || (strcmp(argv[1], "download") != 0 && strcmp(argv[1], "upload") != 0)) {
    fprintf(stderr, "usage: bench_grpc_floor download|upload FILE\n");
    return 2;
  }
  mode = strcmp(argv[1], "download") == 0 ? MODE_DOWNLOAD : MODE_UPLOAD;
  if (!bench_load_file(&data, &size, argv[2])) {
    fprintf(stderr, "bench_grpc_floor: %s: cannot read\n", argv[2]);
    goto done;
  }
  choose_cpus();
  /* Two processes, like fzipd and its client; forked before either side
   * calls grpc_init (the core does not survive a fork). */
  if (pipe(fds) != 0 || (child = fork()) < 0) {
    perror("bench_grpc_floor");
    goto done;
  }
  if (child == 0) {
    close(fds[0]);
    (void)pin_to(g_cpu_server);
    _exit(serve(mode, data, size, fds[1]));
  }
  /* The server's pin is not checked: both pins are asked for, and a
   * failed one shows as a slow floor, never a fast one. */
  g_pinned = pin_to(g_cpu_client);
  close(fds[1]);
  fds[1] = -1;
  if (read(fds[0], &port, sizeof port) != (ssize_t)sizeof port || port <= 0) {
    fprintf(stderr, "bench_grpc_floor: the server did not start\n");
    goto done;
  }
  rc = run_client(mode, data, size, port);
done:
  if (fds[0] >= 0)
    close(fds[0]);
  if (fds[1] >= 0)
    close(fds[1]);
  if (child > 0) {
    if (rc != 0)
      kill(child, SIGTERM);
    if (waitpid(child, &wstatus, 0) == child && (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus)))
      rc = 1;
  }
  free(data);
  return rc;
}
