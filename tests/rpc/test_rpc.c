/*
 * test_rpc: the rpc server layer and the rpc client library, end to end.
 *
 * Starts test_rpc_server as a child process on loopback (argv[1] is its
 * path, argv[2] a scratch directory) and talks to it with
 * client/rpc_client: every call shape, auth, flow control under a slow
 * reader with the server's RSS read from /proc, cancellation, deadlines,
 * concurrency, a full worker pool, health Check/Watch, TLS, and SIGTERM
 * during a stream, and streams whose message sizes grow and shrink, each
 * message checked whole as it arrives (the client lends each read message
 * from memory the next read reuses; the server joins and unpacks upload
 * chunks into reused memory).  RSS and time figures are printed for the record; no
 * test here asserts a throughput: that is bench's, against its floor
 * (docs/BENCHMARKS.md).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fzip_test.h"
#include "fzip_test.pb-c.h"
#include "fzip_util.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rpc_client.h"

/* Under AddressSanitizer the rpc arena poisons what a reset hands back;
 * the mixed-size download checks that a stale message is poisoned. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

#define MIB (1024 * 1024)
#define BIG_STREAM_BYTES ((uint64_t)256 * MIB)
#define STREAM_CHUNK MIB
#define SLOW_READ_PAUSE_MS 10
#define RSS_GROWTH_LIMIT_KIB (48 * 1024)
#define STATS_WAIT_MS 5000
#define CONCURRENT_CALLERS 64
#define CALLS_PER_CALLER 8
#define SERVER_ARGS_MAX 16
/* SIGTERM to exit with a stream outliving a 1 s grace: the grace, at most
 * 1 s for gRPC's own shutdown (rpc_server.c), and process exit, which under
 * ASan on a loaded machine took over 1 s.  Far below what it guards against:
 * the 30 s wait for cancelled calls or gRPC's ~10 s executor join. */
#define SIGTERM_GRACE_MS 1000
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define SIGTERM_EXIT_LIMIT_MS 6000
/* Message sizes the mixed-size streams cycle through: past the reused
 * block and back below it, one byte, an arena block plus one, the send
 * limit's 4 MiB; the upload adds an empty message.  MIXED_STREAM_BYTES
 * covers the cycle several times. */
#define MIXED_SIZES                                                                         \
  MIB, 1, 3 * MIB + 7, 16 * 1024 + 1, 2 * MIB, 100, 4 * MIB, 64 * 1024, MIB + 1
#define MIXED_STREAM_BYTES ((uint64_t)48 * MIB)
/* test_rpc_server's Download pattern: byte i of the stream is i % 251. */
#define DOWNLOAD_PATTERN_PERIOD 251

typedef struct {
  pid_t pid;
  int port;
  char target[64];
} server_proc_t;

static const char *server_bin;
static const char *scratch_dir;
static server_proc_t shared;
static rpc_client_t *cli;

static const rpc_call_options_t good = {.authorization = "Bearer good-alice", .timeout_ms = 30000};
static const rpc_call_options_t no_auth = {.timeout_ms = 10000};

/* ---- child server -------------------------------------------------------- */

static bool server_spawn(server_proc_t *s, const char *const *extra) {
  int fds[2];
  const char *argv[SERVER_ARGS_MAX] = {server_bin};
  int argc = 1;
  for (; extra && *extra && argc < SERVER_ARGS_MAX - 1; extra++)
    argv[argc++] = *extra;
  argv[argc] = NULL;
  if (pipe(fds) != 0)
    return false;
  s->pid = fork();
  if (s->pid < 0)
    return false;
  if (s->pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    /* ASan's default 256 MiB quarantine would swamp the RSS checks. */
    setenv("ASAN_OPTIONS", "quarantine_size_mb=8:detect_leaks=1", 0);
    execv(server_bin, (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char line[64] = "";
  bool ok = f && fgets(line, sizeof line, f) && sscanf(line, "PORT %d", &s->port) == 1;
  if (f)
    fclose(f);
  snprintf(s->target, sizeof s->target, "127.0.0.1:%d", s->port);
  return ok;
}

/* SIGTERM, then wait up to timeout_ms: the exit code, or -1 (killed). */
static int server_stop(server_proc_t *s, int timeout_ms, int64_t *took_ms) {
  int status = 0;
  int64_t start = fzip_monotonic_ms();
  kill(s->pid, SIGTERM);
  while (fzip_monotonic_ms() - start < timeout_ms) {
    if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
      if (took_ms)
        *took_ms = fzip_monotonic_ms() - start;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    fzip_sleep_ms(10);
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, &status, 0);
  return -1;
}

static long proc_kib(pid_t pid, const char *field) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = strlen(field);
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, field, n) && line[n] == ':') {
      kib = strtol(line + n + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kib;
}

static bool client_for(rpc_client_t **out, const char *target) {
  fzip_error_t err = {0};
  rpc_client_options_t o = {.target = target};
  return rpc_client_new(out, &o, &err);
}

static bool echo_call(rpc_client_t *c, const rpc_call_options_t *co, const char *text,
                      Fzip__Test__V1__EchoResponse **out, fzip_error_t *err) {
  Fzip__Test__V1__EchoRequest req = FZIP__TEST__V1__ECHO_REQUEST__INIT;
  req.text = (char *)text;
  return rpc_client_unary((ProtobufCMessage **)out, c, "/fzip.test.v1.Test/Echo", co, &req.base,
                          &fzip__test__v1__echo_response__descriptor, err);
}

static bool get_stats(Fzip__Test__V1__StatsResponse **out) {
  fzip_error_t err = {0};
  Fzip__Test__V1__StatsRequest req = FZIP__TEST__V1__STATS_REQUEST__INIT;
  return rpc_client_unary((ProtobufCMessage **)out, cli, "/fzip.test.v1.Test/Stats", &no_auth,
                          &req.base, &fzip__test__v1__stats_response__descriptor, &err);
}

typedef enum {
  STAT_DOWNLOAD_CLOSES,
  STAT_UPLOAD_CLOSES,
  STAT_SLEEP_CANCELS,
  STAT_STREAM_ENDS
} stat_t;

static uint64_t stat_value(stat_t which) {
  Fzip__Test__V1__StatsResponse *s = NULL;
  uint64_t v = UINT64_MAX;
  if (get_stats(&s)) {
    v = which == STAT_DOWNLOAD_CLOSES ? s->download_closes
        : which == STAT_UPLOAD_CLOSES ? s->upload_closes
        : which == STAT_SLEEP_CANCELS ? s->sleep_cancels
                                      : s->stream_ends;
    protobuf_c_message_free_unpacked(&s->base, NULL);
  }
  return v;
}

/* Polls until the counter reaches `want` (close runs asynchronously). */
static bool wait_stat(stat_t which, uint64_t want) {
  for (int waited = 0; waited < STATS_WAIT_MS; waited += 20) {
    uint64_t v = stat_value(which);
    if (v != UINT64_MAX && v >= want)
      return true;
    fzip_sleep_ms(20);
  }
  return false;
}

static bool open_download(rpc_client_call_t **call, rpc_client_t *c, const rpc_call_options_t *co,
                          uint64_t total, uint32_t chunk, fzip_error_t *err) {
  Fzip__Test__V1__DownloadRequest req = FZIP__TEST__V1__DOWNLOAD_REQUEST__INIT;
  req.total_bytes = total;
  req.chunk_bytes = chunk;
  return rpc_client_call_open_with(call, c, "/fzip.test.v1.Test/Download", co, &req.base,
                                   &fzip__test__v1__chunk__descriptor, err);
}

/* The mixed-size download: MIXED_SIZES in turn until MIXED_STREAM_BYTES. */
static bool open_mixed_download(rpc_client_call_t **call, fzip_error_t *err) {
  static uint32_t sizes[] = {MIXED_SIZES};
  Fzip__Test__V1__DownloadRequest req = FZIP__TEST__V1__DOWNLOAD_REQUEST__INIT;
  req.total_bytes = MIXED_STREAM_BYTES;
  req.chunk_sizes = sizes;
  req.n_chunk_sizes = sizeof sizes / sizeof sizes[0];
  return rpc_client_call_open_with(call, cli, "/fzip.test.v1.Test/Download", &good, &req.base,
                                   &fzip__test__v1__chunk__descriptor, err);
}

/* The test server's Download sends byte i of the stream as i % 251: a
 * chunk continues the stream at `offset` if every byte says so (a lost,
 * repeated or reordered chunk breaks its ends; a chunk buffer that the
 * server reused while gRPC still sent it would break its middle). */
static bool bytes_continue(const uint8_t *data, size_t len, uint64_t offset) {
  static uint8_t period[2 * DOWNLOAD_PATTERN_PERIOD];
  if (period[1] == 0) {
    for (size_t i = 0; i < sizeof period; i++)
      period[i] = (uint8_t)(i % DOWNLOAD_PATTERN_PERIOD);
  }
  for (size_t at = 0; at < len; at += DOWNLOAD_PATTERN_PERIOD) {
    size_t n = len - at < DOWNLOAD_PATTERN_PERIOD ? len - at : DOWNLOAD_PATTERN_PERIOD;
    if (memcmp(data + at, period + (offset + at) % DOWNLOAD_PATTERN_PERIOD, n) != 0)
      return false;
  }
  return true;
}

static bool chunk_continues(const Fzip__Test__V1__Chunk *c, uint64_t offset) {
  return c->data.len > 0 && bytes_continue(c->data.data, c->data.len, offset);
}

/* A chunk lent as pieces (rpc_client_call_read_bytes) continues the
 * stream at `offset`, pieces in order and none empty. */
static bool pieces_continue(const rpc_client_bytes_t *b, uint64_t offset) {
  size_t sum = 0;
  for (size_t i = 0; i < b->count; i++) {
    if (b->iov[i].iov_len == 0 || !bytes_continue(b->iov[i].iov_base, b->iov[i].iov_len,
                                                  offset + sum))
      return false;
    sum += b->iov[i].iov_len;
  }
  return b->len > 0 && sum == b->len;
}

/* ---- tests --------------------------------------------------------------- */

static void test_unary_echo_returns_text_and_user(void) {
  fzip_error_t err = {0};
  Fzip__Test__V1__EchoResponse *resp = NULL;
  CHECK_OK(echo_call(cli, &good, "hello", &resp, &err), err);
  bool same = !strcmp(resp->text, "hello") && !strcmp(resp->user_id, "alice");
  protobuf_c_message_free_unpacked(&resp->base, NULL);
  CHECK(same);
}

/* on_stream_end runs once per streaming call, after it ended, and never
 * for a unary call (fzipd gives memory back there).  Runs before any
 * other test's stream, whose end could land late. */
static void test_stream_end_hook_runs_once_per_stream_only(void) {
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  Fzip__Test__V1__EchoResponse *resp = NULL;
  uint64_t before = stat_value(STAT_STREAM_ENDS);
  CHECK(before != UINT64_MAX);
  CHECK_OK(open_download(&call, cli, &good, MIB, STREAM_CHUNK, &err), err);
  while (rpc_client_call_read(&msg, call, &err) && msg)
    ;
  CHECK(rpc_client_call_status(call) == 0);
  rpc_client_call_destroy(call);
  CHECK(wait_stat(STAT_STREAM_ENDS, before + 1));
  for (int i = 0; i < 5; i++) {
    CHECK_OK(echo_call(cli, &good, "unary", &resp, &err), err);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
  }
  fzip_sleep_ms(100);
  CHECK(stat_value(STAT_STREAM_ENDS) == before + 1);
}

static void test_missing_and_bad_tokens_are_unauthenticated(void) {
  fzip_error_t err = {0};
  Fzip__Test__V1__EchoResponse *resp = NULL;
  rpc_call_options_t bad = {.authorization = "Bearer evil-mallory", .timeout_ms = 10000};
  CHECK_FAILS(echo_call(cli, &no_auth, "x", &resp, &err), err, FZIP_ERR_UNAUTHENTICATED);
  CHECK(strstr(err.message, "missing authorization") != NULL);
  CHECK_FAILS(echo_call(cli, &bad, "x", &resp, &err), err, FZIP_ERR_UNAUTHENTICATED);
  CHECK(strstr(err.message, "token rejected") != NULL);
}

static void test_unknown_method_is_unimplemented(void) {
  fzip_error_t err = {0};
  ProtobufCMessage *resp = NULL;
  Fzip__Test__V1__EchoRequest req = FZIP__TEST__V1__ECHO_REQUEST__INIT;
  CHECK_FAILS(rpc_client_unary(&resp, cli, "/fzip.test.v1.Test/Nope", &good, &req.base,
                               &fzip__test__v1__echo_response__descriptor, &err),
              err, FZIP_ERR_UNIMPLEMENTED);
}

static void test_download_256mib_to_slow_reader_keeps_server_rss_flat(void) {
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  uint64_t got = 0;
  long idle = proc_kib(shared.pid, "VmRSS"), peak = idle;
  bool content_ok = true;
  int64_t start = fzip_monotonic_ms();
  rpc_call_options_t co = {.authorization = good.authorization, .timeout_ms = 120000};

  CHECK_OK(open_download(&call, cli, &co, BIG_STREAM_BYTES, STREAM_CHUNK, &err), err);
  for (int i = 0;; i++) {
    if (!rpc_client_call_read(&msg, call, &err))
      break;
    if (!msg)
      break;
    Fzip__Test__V1__Chunk *c = (Fzip__Test__V1__Chunk *)msg;
    if (!chunk_continues(c, got))
      content_ok = false;
    got += c->data.len;
    if (i % 8 == 0) {
      long rss = proc_kib(shared.pid, "VmRSS");
      if (rss > peak)
        peak = rss;
    }
    fzip_sleep_ms(SLOW_READ_PAUSE_MS);
  }
  int64_t ms = fzip_monotonic_ms() - start;
  int status = rpc_client_call_status(call);
  rpc_client_call_destroy(call);
  fprintf(stderr, "  download: %llu MiB in %lld ms to a reader pausing %d ms per MiB; server "
                  "VmRSS idle %ld KiB, peak %ld KiB (+%ld), VmHWM %ld KiB\n",
          (unsigned long long)(got / MIB), (long long)ms, SLOW_READ_PAUSE_MS, idle, peak,
          peak - idle, proc_kib(shared.pid, "VmHWM"));
  CHECK(status == 0);
  CHECK(got == BIG_STREAM_BYTES);
  CHECK(content_ok);
  CHECK(peak - idle < RSS_GROWTH_LIMIT_KIB);
}

/* The reader takes chunks as fast as they come (the slow-reader test
 * above covers the paused side of flow control).  No timing here: the
 * download figure against its floor is bench's (bench_client download,
 * docs/BENCHMARKS.md), measured on a quiet machine. */
static void test_download_256mib_at_full_speed_arrives_whole_and_in_order(void) {
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  uint64_t got = 0;
  bool content_ok = true;
  CHECK_OK(open_download(&call, cli, &good, BIG_STREAM_BYTES, STREAM_CHUNK, &err), err);
  while (rpc_client_call_read(&msg, call, &err) && msg) {
    Fzip__Test__V1__Chunk *c = (Fzip__Test__V1__Chunk *)msg;
    if (!chunk_continues(c, got))
      content_ok = false;
    got += c->data.len;
  }
  int status = rpc_client_call_status(call);
  rpc_client_call_destroy(call);
  CHECK(status == 0);
  CHECK(got == BIG_STREAM_BYTES);
  CHECK(content_ok);
}

/* The upload's bytes: a periodic pattern copied rather than computed per
 * byte, so the upload's time is the rpc layer's, not this loop's. */
#define UPLOAD_PATTERN_PERIOD 253
static void fill_pattern(uint8_t *buf, size_t n, uint64_t offset) {
  static uint8_t period[2 * UPLOAD_PATTERN_PERIOD];
  if (!period[1]) {
    for (size_t i = 0; i < sizeof period; i++)
      period[i] = (uint8_t)(i * 7 % UPLOAD_PATTERN_PERIOD);
  }
  size_t phase = (size_t)(offset % UPLOAD_PATTERN_PERIOD);
  for (size_t i = 0; i < n;) {
    size_t take = n - i < UPLOAD_PATTERN_PERIOD ? n - i : UPLOAD_PATTERN_PERIOD;
    memcpy(buf + i, period + phase, take);
    i += take;
  }
}

static void test_upload_256mib_sha256_matches(void) {
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  Fzip__Test__V1__UploadResponse *resp = NULL;
  uint8_t *buf = malloc(STREAM_CHUNK);
  fzip_sha256_t *sha = fzip_sha256_new();
  char want[FZIP_SHA256_HEX_LEN + 1];
  long idle = proc_kib(shared.pid, "VmRSS"), peak = idle;
  int64_t start = fzip_monotonic_ms();
  bool sent = true;
  CHECK(buf && sha);
  CHECK_OK(rpc_client_call_open(&call, cli, "/fzip.test.v1.Test/Upload", &good,
                                &fzip__test__v1__upload_response__descriptor, &err),
           err);
  for (uint64_t off = 0; off < BIG_STREAM_BYTES && sent; off += STREAM_CHUNK) {
    Fzip__Test__V1__Chunk c = FZIP__TEST__V1__CHUNK__INIT;
    fill_pattern(buf, STREAM_CHUNK, off);
    fzip_sha256_update(sha, buf, STREAM_CHUNK);
    c.data.data = buf;
    c.data.len = STREAM_CHUNK;
    sent = rpc_client_call_write(call, &c.base, &err);
    if ((off / STREAM_CHUNK) % 8 == 0) {
      long rss = proc_kib(shared.pid, "VmRSS");
      if (rss > peak)
        peak = rss;
    }
  }
  bool finished = sent && rpc_client_call_finish((ProtobufCMessage **)&resp, call, &err);
  int64_t ms = fzip_monotonic_ms() - start;
  rpc_client_call_destroy(call);
  fzip_sha256_final_hex(sha, want);
  fzip_sha256_destroy(sha);
  free(buf);
  fprintf(stderr, "  upload: 256 MiB in %lld ms (%.0f MiB/s); server VmRSS idle %ld KiB, peak "
                  "%ld KiB (+%ld)\n",
          (long long)ms, ms ? 256.0 * 1000 / ms : 0, idle, peak, peak - idle);
  CHECK_OK(finished, err);
  bool match = resp->total_bytes == BIG_STREAM_BYTES && !strcmp(resp->sha256, want) &&
               resp->chunks == BIG_STREAM_BYTES / STREAM_CHUNK;
  protobuf_c_message_free_unpacked(&resp->base, NULL);
  CHECK(match);
  CHECK(peak - idle < RSS_GROWTH_LIMIT_KIB);
}

/* Each read lends its message from the call's memory, which the next read
 * reuses (rpc_client.h): every message must be whole and exactly the
 * expected one when it is read, whatever the sizes before it, and under
 * ASan the bytes of the previous one that this one does not reuse must be
 * poisoned, so that a caller keeping a message too long is reported. */
static void test_download_of_mixed_sizes_is_whole_at_every_read(void) {
  static uint32_t sizes[] = {MIXED_SIZES};
  const size_t n_sizes = sizeof sizes / sizeof sizes[0];
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  uint64_t got = 0;
  size_t k = 0, bad_size = 0, bad_content = 0, not_poisoned = 0;
#ifdef TEST_ASAN
  const uint8_t *prev = NULL; /* the last message's bytes */
  size_t prev_len = 0;
#endif
  CHECK_OK(open_mixed_download(&call, &err), err);
  while (rpc_client_call_read(&msg, call, &err) && msg) {
    const Fzip__Test__V1__Chunk *c = (const Fzip__Test__V1__Chunk *)msg;
    uint64_t left = MIXED_STREAM_BYTES - got;
    size_t want = left < sizes[k % n_sizes] ? (size_t)left : sizes[k % n_sizes];
    bad_size += c->data.len != want;
    bad_content += !chunk_continues(c, got);
#ifdef TEST_ASAN
    if (prev && prev_len > c->data.len && !__asan_address_is_poisoned(prev + prev_len - 1))
      not_poisoned++;
    prev = c->data.data;
    prev_len = c->data.len;
#endif
    got += c->data.len;
    k++;
  }
  int status = rpc_client_call_status(call);
  rpc_client_call_destroy(call);
#ifdef TEST_ASAN
  const char *poison_note = "";
#else
  const char *poison_note = " (not checked: no ASan)";
#endif
  fprintf(stderr, "  mixed download: %zu messages, %zu of the wrong size, %zu wrong, %zu stale "
                  "tails not poisoned%s\n",
          k, bad_size, bad_content, not_poisoned, poison_note);
  CHECK_OK(status == 0, err);
  CHECK(got == MIXED_STREAM_BYTES);
  CHECK(k > 2 * n_sizes);
  CHECK(bad_size == 0 && bad_content == 0);
  CHECK(not_poisoned == 0);
}

/* The same mixed download read with rpc_client_call_read_bytes: with the
 * chunk's field every message comes as pieces in place (none unpacked),
 * adding up to the sizes sent in order; with another field number every
 * message is unpacked as a plain read would, equally whole. */
static void read_mixed_as_bytes(uint32_t field, size_t *pieces_msgs, size_t *unpacked_msgs,
                                size_t *bad, uint64_t *got, int *status) {
  static uint32_t sizes[] = {MIXED_SIZES};
  const size_t n_sizes = sizeof sizes / sizeof sizes[0];
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  rpc_client_bytes_t bytes;
  size_t k = 0;

  *pieces_msgs = *unpacked_msgs = *bad = 0;
  *got = 0;
  CHECK_OK(open_mixed_download(&call, &err), err);
  while (rpc_client_call_read_bytes(&msg, &bytes, call, field, &err) && (msg || bytes.present)) {
    uint64_t left = MIXED_STREAM_BYTES - *got;
    size_t want = left < sizes[k % n_sizes] ? (size_t)left : sizes[k % n_sizes];
    size_t len = 0;
    if (bytes.present) {
      (*pieces_msgs)++;
      len = bytes.len;
      *bad += msg != NULL || !pieces_continue(&bytes, *got);
    } else {
      const Fzip__Test__V1__Chunk *c = (const Fzip__Test__V1__Chunk *)msg;
      (*unpacked_msgs)++;
      len = c->data.len;
      *bad += !chunk_continues(c, *got);
    }
    *bad += len != want;
    *got += len;
    k++;
  }
  *status = rpc_client_call_status(call);
  rpc_client_call_destroy(call);
}

static void test_download_read_as_pieces_is_whole_and_in_order(void) {
  size_t pieces = 0, unpacked = 0, bad = 0;
  uint64_t got = 0;
  int status = -1;

  read_mixed_as_bytes(1, &pieces, &unpacked, &bad, &got, &status);
  fprintf(stderr, "  as pieces: %zu chunks lent, %zu unpacked, %zu bad\n", pieces, unpacked, bad);
  CHECK(status == 0);
  CHECK(got == MIXED_STREAM_BYTES);
  CHECK(pieces > 0 && unpacked == 0 && bad == 0);
}

static void test_read_bytes_of_another_field_unpacks_every_message(void) {
  size_t pieces = 0, unpacked = 0, bad = 0;
  uint64_t got = 0;
  int status = -1;

  read_mixed_as_bytes(2, &pieces, &unpacked, &bad, &got, &status);
  CHECK(status == 0);
  CHECK(got == MIXED_STREAM_BYTES);
  CHECK(pieces == 0 && unpacked > 0 && bad == 0);
}

/* The server joins each upload message's slices into a per-call buffer and
 * unpacks it into the call's reused arena block (rpc_call.c): messages that
 * grow and shrink, and an empty one, must all arrive as sent. */
static void test_upload_of_mixed_sizes_sha256_matches(void) {
  static const uint32_t sizes[] = {MIXED_SIZES, 0};
  const size_t n_sizes = sizeof sizes / sizeof sizes[0];
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  Fzip__Test__V1__UploadResponse *resp = NULL;
  uint8_t *buf = malloc(4 * MIB);
  fzip_sha256_t *sha = fzip_sha256_new();
  char want[FZIP_SHA256_HEX_LEN + 1];
  uint64_t off = 0;
  uint32_t chunks = 0;
  bool sent = true;
  CHECK(buf && sha);
  CHECK_OK(rpc_client_call_open(&call, cli, "/fzip.test.v1.Test/Upload", &good,
                                &fzip__test__v1__upload_response__descriptor, &err),
           err);
  for (size_t k = 0; off < MIXED_STREAM_BYTES && sent; k++) {
    Fzip__Test__V1__Chunk c = FZIP__TEST__V1__CHUNK__INIT;
    size_t n = sizes[k % n_sizes];
    fill_pattern(buf, n, off);
    fzip_sha256_update(sha, buf, n);
    c.data.data = buf;
    c.data.len = n;
    sent = rpc_client_call_write(call, &c.base, &err);
    off += n;
    chunks++;
  }
  bool finished = sent && rpc_client_call_finish((ProtobufCMessage **)&resp, call, &err);
  rpc_client_call_destroy(call);
  fzip_sha256_final_hex(sha, want);
  fzip_sha256_destroy(sha);
  free(buf);
  CHECK_OK(finished, err);
  bool match = resp->total_bytes == off && !strcmp(resp->sha256, want) && resp->chunks == chunks;
  protobuf_c_message_free_unpacked(&resp->base, NULL);
  CHECK(match);
}

static void test_cancel_mid_download_runs_close_and_server_survives(void) {
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  uint64_t before = stat_value(STAT_DOWNLOAD_CLOSES);
  CHECK(before != UINT64_MAX);
  CHECK_OK(open_download(&call, cli, &good, (uint64_t)1024 * MIB, 256 * 1024, &err), err);
  for (int i = 0; i < 4; i++) {
    CHECK_OK(rpc_client_call_read(&msg, call, &err), err);
    CHECK(msg != NULL);
  }
  rpc_client_call_cancel(call);
  bool read_ok = rpc_client_call_read(&msg, call, &err);
  rpc_client_call_destroy(call);
  CHECK(!read_ok && err.code == FZIP_ERR_CANCELLED);
  CHECK(wait_stat(STAT_DOWNLOAD_CLOSES, before + 1));
  Fzip__Test__V1__EchoResponse *resp = NULL;
  CHECK_OK(echo_call(cli, &good, "still there", &resp, &err), err);
  protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void test_cancel_mid_upload_runs_close_and_server_survives(void) {
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  static uint8_t buf[256 * 1024];
  uint64_t before = stat_value(STAT_UPLOAD_CLOSES);
  CHECK(before != UINT64_MAX);
  CHECK_OK(rpc_client_call_open(&call, cli, "/fzip.test.v1.Test/Upload", &good,
                                &fzip__test__v1__upload_response__descriptor, &err),
           err);
  for (int i = 0; i < 4; i++) {
    Fzip__Test__V1__Chunk c = FZIP__TEST__V1__CHUNK__INIT;
    c.data.data = buf;
    c.data.len = sizeof buf;
    CHECK_OK(rpc_client_call_write(call, &c.base, &err), err);
  }
  rpc_client_call_cancel(call);
  rpc_client_call_destroy(call);
  CHECK(wait_stat(STAT_UPLOAD_CLOSES, before + 1));
  Fzip__Test__V1__EchoResponse *resp = NULL;
  CHECK_OK(echo_call(cli, &good, "still there", &resp, &err), err);
  protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void test_deadline_mid_download_is_deadline_exceeded(void) {
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  rpc_call_options_t co = {.authorization = good.authorization, .timeout_ms = 500};
  uint64_t before = stat_value(STAT_DOWNLOAD_CLOSES);
  int msgs = 0;
  bool ok;
  CHECK_OK(open_download(&call, cli, &co, (uint64_t)1024 * MIB, 256 * 1024, &err), err);
  while ((ok = rpc_client_call_read(&msg, call, &err)) && msg) {
    msgs++;
    fzip_sleep_ms(50);
  }
  rpc_client_call_destroy(call);
  CHECK(msgs > 0);
  CHECK(!ok && err.code == FZIP_ERR_DEADLINE_EXCEEDED);
  CHECK(wait_stat(STAT_DOWNLOAD_CLOSES, before + 1));
}

static void test_deadline_stops_a_sleeping_handler(void) {
  fzip_error_t err = {0};
  ProtobufCMessage *resp = NULL;
  Fzip__Test__V1__SleepRequest req = FZIP__TEST__V1__SLEEP_REQUEST__INIT;
  rpc_call_options_t co = {.authorization = good.authorization, .timeout_ms = 200};
  uint64_t before = stat_value(STAT_SLEEP_CANCELS);
  req.ms = 5000;
  int64_t start = fzip_monotonic_ms();
  CHECK_FAILS(rpc_client_unary(&resp, cli, "/fzip.test.v1.Test/Sleep", &co, &req.base,
                               &fzip__test__v1__sleep_response__descriptor, &err),
              err, FZIP_ERR_DEADLINE_EXCEEDED);
  CHECK(fzip_monotonic_ms() - start < 2000);
  CHECK(wait_stat(STAT_SLEEP_CANCELS, before + 1));
}

static atomic_int concurrent_ok;

static void *concurrent_caller(void *arg) {
  char text[32];
  for (int i = 0; i < CALLS_PER_CALLER; i++) {
    fzip_error_t err = {0};
    Fzip__Test__V1__EchoResponse *resp = NULL;
    snprintf(text, sizeof text, "c%d-%d", (int)(intptr_t)arg, i);
    if (echo_call(cli, &good, text, &resp, &err)) {
      if (!strcmp(resp->text, text))
        atomic_fetch_add(&concurrent_ok, 1);
      protobuf_c_message_free_unpacked(&resp->base, NULL);
    } else {
      fprintf(stderr, "  concurrent echo failed: %s\n", err.message);
    }
  }
  return NULL;
}

static void test_64_concurrent_unary_calls_all_succeed(void) {
  pthread_t threads[CONCURRENT_CALLERS];
  int started = 0;
  atomic_store(&concurrent_ok, 0);
  int64_t start = fzip_monotonic_ms();
  for (int i = 0; i < CONCURRENT_CALLERS; i++) {
    if (pthread_create(&threads[i], NULL, concurrent_caller, (void *)(intptr_t)i) == 0)
      started++;
  }
  for (int i = 0; i < started; i++)
    pthread_join(threads[i], NULL);
  int64_t ms = fzip_monotonic_ms() - start;
  fprintf(stderr, "  %d callers x %d echo calls in %lld ms\n", CONCURRENT_CALLERS,
          CALLS_PER_CALLER, (long long)ms);
  CHECK(started == CONCURRENT_CALLERS);
  CHECK(atomic_load(&concurrent_ok) == CONCURRENT_CALLERS * CALLS_PER_CALLER);
}

static void test_bidi_echo_stream_replies_once_per_request(void) {
  fzip_error_t err = {0};
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  CHECK_OK(rpc_client_call_open(&call, cli, "/fzip.test.v1.Test/EchoStream", &good,
                                &fzip__test__v1__echo_response__descriptor, &err),
           err);
  bool all = true;
  for (int i = 0; i < 5 && all; i++) {
    char text[16];
    Fzip__Test__V1__EchoRequest req = FZIP__TEST__V1__ECHO_REQUEST__INIT;
    snprintf(text, sizeof text, "m%d", i);
    req.text = text;
    all = rpc_client_call_write(call, &req.base, &err) && rpc_client_call_read(&msg, call, &err) &&
          msg && !strcmp(((Fzip__Test__V1__EchoResponse *)msg)->text, text);
  }
  bool ended = all && rpc_client_call_writes_done(call, &err) &&
               rpc_client_call_read(&msg, call, &err) && !msg;
  rpc_client_call_destroy(call);
  CHECK_OK(all, err);
  CHECK_OK(ended, err);
}

static int watch_next_status(rpc_client_call_t *call) {
  fzip_error_t err = {0};
  ProtobufCMessage *msg = NULL;
  if (!rpc_client_call_read(&msg, call, &err) || !msg)
    return -1;
  return ((Grpc__Health__V1__HealthCheckResponse *)msg)->status;
}

static bool set_health(const char *service, int status) {
  fzip_error_t err = {0};
  ProtobufCMessage *resp = NULL;
  Fzip__Test__V1__SetHealthRequest req = FZIP__TEST__V1__SET_HEALTH_REQUEST__INIT;
  req.service = (char *)service;
  req.status = status;
  bool ok = rpc_client_unary(&resp, cli, "/fzip.test.v1.Test/SetHealth", &no_auth, &req.base,
                             &fzip__test__v1__set_health_response__descriptor, &err);
  if (resp)
    protobuf_c_message_free_unpacked(resp, NULL);
  return ok;
}

static void test_health_check_and_watch_sees_changes(void) {
  fzip_error_t err = {0};
  Grpc__Health__V1__HealthCheckResponse *resp = NULL;
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  rpc_client_call_t *watch = NULL;
  req.service = "";
  CHECK_OK(rpc_client_unary((ProtobufCMessage **)&resp, cli, "/grpc.health.v1.Health/Check",
                            &no_auth, &req.base,
                            &grpc__health__v1__health_check_response__descriptor, &err),
           err);
  int overall = resp->status;
  protobuf_c_message_free_unpacked(&resp->base, NULL);
  CHECK(overall == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  req.service = "nope";
  CHECK_FAILS(rpc_client_unary((ProtobufCMessage **)&resp, cli, "/grpc.health.v1.Health/Check",
                               &no_auth, &req.base,
                               &grpc__health__v1__health_check_response__descriptor, &err),
              err, FZIP_ERR_NOT_FOUND);

  req.service = "svc-a";
  CHECK_OK(rpc_client_call_open_with(&watch, cli, "/grpc.health.v1.Health/Watch", &no_auth,
                                     &req.base,
                                     &grpc__health__v1__health_check_response__descriptor, &err),
           err);
  int first = watch_next_status(watch);
  bool set1 = set_health("svc-a", 1);
  int second = watch_next_status(watch);
  bool set2 = set_health("svc-a", 2);
  int third = watch_next_status(watch);
  rpc_client_call_destroy(watch);
  CHECK(first == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
  CHECK(set1 && second == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  CHECK(set2 && third == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
}

typedef struct {
  rpc_client_t *client;
  uint32_t ms;
  bool ok;
  fzip_error_t err;
} sleeper_t;

static void *sleeper(void *arg) {
  sleeper_t *s = arg;
  ProtobufCMessage *resp = NULL;
  Fzip__Test__V1__SleepRequest req = FZIP__TEST__V1__SLEEP_REQUEST__INIT;
  req.ms = s->ms;
  s->ok = rpc_client_unary(&resp, s->client, "/fzip.test.v1.Test/Sleep", &good, &req.base,
                           &fzip__test__v1__sleep_response__descriptor, &s->err);
  if (resp)
    protobuf_c_message_free_unpacked(resp, NULL);
  return NULL;
}

/* One worker, one queue slot: a running Sleep and a queued one leave no
 * room, so a third call is refused at once. */
static void test_full_pool_answers_resource_exhausted(void) {
  server_proc_t s;
  rpc_client_t *c = NULL;
  const char *args[] = {"--workers", "1", "--max-pending", "1", NULL};
  pthread_t ta, tb;
  sleeper_t a = {0}, b = {0}, third = {0};
  CHECK(server_spawn(&s, args));
  bool up = client_for(&c, s.target);
  a = (sleeper_t){.client = c, .ms = 1500};
  b = (sleeper_t){.client = c, .ms = 1500};
  third = (sleeper_t){.client = c, .ms = 10};
  if (up) {
    pthread_create(&ta, NULL, sleeper, &a);
    fzip_sleep_ms(300);
    pthread_create(&tb, NULL, sleeper, &b);
    fzip_sleep_ms(300);
    sleeper(&third);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
  }
  rpc_client_destroy(c);
  int code = server_stop(&s, 10000, NULL);
  CHECK(up);
  CHECK(a.ok && b.ok);
  CHECK(!third.ok && third.err.code == FZIP_ERR_RESOURCE_EXHAUSTED);
  CHECK(code == 0);
}

typedef struct {
  server_proc_t *server;
  int code;
  int64_t took_ms;
} stopper_t;

static void *stopper(void *arg) {
  stopper_t *st = arg;
  st->code = server_stop(st->server, 10000, &st->took_ms);
  return NULL;
}

/* The client keeps reading slowly while the server gets SIGTERM: the
 * stream outlives the 1 s grace, is cancelled, and the server exits 0. */
static void test_sigterm_during_stream_exits_zero_promptly(void) {
  server_proc_t s;
  rpc_client_t *c = NULL;
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL;
  fzip_error_t err = {0};
  const char *args[] = {"--grace-ms", STRINGIFY(SIGTERM_GRACE_MS), NULL};
  stopper_t st = {.server = &s, .code = -1};
  pthread_t tid;
  bool read_failed = false;
  CHECK(server_spawn(&s, args));
  bool up = client_for(&c, s.target) &&
            open_download(&call, c, &good, (uint64_t)1024 * MIB, STREAM_CHUNK, &err) &&
            rpc_client_call_read(&msg, call, &err) && msg;
  pthread_create(&tid, NULL, stopper, &st);
  for (int i = 0; up && i < 1024; i++) {
    if (!rpc_client_call_read(&msg, call, &err)) {
      read_failed = true;
      break;
    }
    if (!msg)
      break;
    fzip_sleep_ms(20);
  }
  /* A client that got its error closes its connection, as real ones do. */
  rpc_client_call_destroy(call);
  rpc_client_destroy(c);
  pthread_join(tid, NULL);
  fprintf(stderr, "  SIGTERM during a slow stream: exit %d after %lld ms (grace 1000 ms)\n",
          st.code, (long long)st.took_ms);
  CHECK(up);
  CHECK(st.code == 0);
  CHECK(st.took_ms < SIGTERM_EXIT_LIMIT_MS);
  CHECK(read_failed);
}

static void test_tls_server_and_client_round_trip(void) {
  char cmd[2048], cert[512], key[512];
  server_proc_t s;
  rpc_client_t *c = NULL;
  fzip_error_t err = {0};
  Fzip__Test__V1__EchoResponse *resp = NULL;
  snprintf(cert, sizeof cert, "%s/tls-cert.pem", scratch_dir);
  snprintf(key, sizeof key, "%s/tls-key.pem", scratch_dir);
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
           "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
           ">/dev/null 2>&1",
           key, cert);
  CHECK(system(cmd) == 0);
  const char *args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
  CHECK(server_spawn(&s, args));
  rpc_client_options_t o = {.target = s.target, .tls_ca_file = cert,
                            .tls_server_name = "localhost"};
  bool ok = rpc_client_new(&c, &o, &err) && echo_call(c, &good, "over tls", &resp, &err);
  bool same = ok && !strcmp(resp->text, "over tls");
  if (resp)
    protobuf_c_message_free_unpacked(&resp->base, NULL);
  rpc_client_destroy(c);
  /* A plaintext client must not get through to a TLS port. */
  rpc_client_t *plain = NULL;
  rpc_call_options_t quick = {.authorization = good.authorization, .timeout_ms = 1000};
  bool plain_ok = client_for(&plain, s.target) && echo_call(plain, &quick, "x", &resp, &err);
  rpc_client_destroy(plain);
  int code = server_stop(&s, 10000, NULL);
  CHECK(ok && same);
  CHECK(!plain_ok);
  CHECK(code == 0);
}

static void test_sigterm_on_idle_server_exits_zero(void) {
  int64_t took = 0;
  rpc_client_destroy(cli);
  cli = NULL;
  int code = server_stop(&shared, 10000, &took);
  shared.pid = 0;
  CHECK(code == 0);
  CHECK(took < 2000);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <test_rpc_server> <scratch dir>\n", argv[0]);
    return 2;
  }
  server_bin = argv[1];
  scratch_dir = argv[2];
  signal(SIGPIPE, SIG_IGN);
  if (!server_spawn(&shared, NULL) || !client_for(&cli, shared.target)) {
    fprintf(stderr, "cannot start %s\n", server_bin);
    return 1;
  }
  RUN(test_unary_echo_returns_text_and_user);
  RUN(test_stream_end_hook_runs_once_per_stream_only);
  RUN(test_missing_and_bad_tokens_are_unauthenticated);
  RUN(test_unknown_method_is_unimplemented);
  RUN(test_download_256mib_to_slow_reader_keeps_server_rss_flat);
  RUN(test_download_256mib_at_full_speed_arrives_whole_and_in_order);
  RUN(test_upload_256mib_sha256_matches);
  RUN(test_download_of_mixed_sizes_is_whole_at_every_read);
  RUN(test_download_read_as_pieces_is_whole_and_in_order);
  RUN(test_read_bytes_of_another_field_unpacks_every_message);
  RUN(test_upload_of_mixed_sizes_sha256_matches);
  RUN(test_cancel_mid_download_runs_close_and_server_survives);
  RUN(test_cancel_mid_upload_runs_close_and_server_survives);
  RUN(test_deadline_mid_download_is_deadline_exceeded);
  RUN(test_deadline_stops_a_sleeping_handler);
  RUN(test_64_concurrent_unary_calls_all_succeed);
  RUN(test_bidi_echo_stream_replies_once_per_request);
  RUN(test_health_check_and_watch_sees_changes);
  RUN(test_full_pool_answers_resource_exhausted);
  RUN(test_sigterm_during_stream_exits_zero_promptly);
  RUN(test_tls_server_and_client_round_trip);
  RUN(test_sigterm_on_idle_server_exits_zero);
  if (shared.pid > 0)
    server_stop(&shared, 10000, NULL);
  rpc_client_destroy(cli);
  return fzip_test_summary();
}
