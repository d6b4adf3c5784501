/*
 * test_rpc_server: a real server process for the rpc layer's tests.
 *
 * Serves fzip.test.v1.Test (every call shape: unary Echo and Sleep,
 * server-streaming Download, client-streaming Upload, bidi EchoStream,
 * plus Stats and SetHealth to observe and steer it; Stats counts the
 * on_stream_end hook's runs) and
 * grpc.health.v1.Health through server/rpc.h, exactly as fzipd would.
 * The auth hook accepts "Bearer good-<user>" (user id <user>); the real
 * JWT verifier lives elsewhere.  Prints "PORT <n>" on stdout once
 * serving, and shuts down gracefully on SIGTERM/SIGINT with exit code 0.
 *
 *   test_rpc_server [--listen A] [--workers N] [--max-pending N]
 *                   [--grace-ms N] [--tls-cert F --tls-key F] [--log-level L]
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_log.h"
#include "fzip_test.pb-c.h"
#include "fzip_util.h"
#include "rpc.h"
#include "svc_health.h"

#define TEST_MAX_CHUNK (4 * 1024 * 1024)
/* DownloadRequest.chunk_sizes: how many sizes a stream may cycle through. */
#define TEST_MAX_CHUNK_SIZES 16
#define TEST_MAX_SLEEP_MS 60000
#define TEST_SLEEP_TICK_MS 5

/* Download bytes are byte i = i % 251: served straight from this table
 * (offset i % 251 into it) so that no per-byte loop skews throughput. */
#define TEST_PATTERN_PERIOD 251
static uint8_t pattern[TEST_MAX_CHUNK + TEST_PATTERN_PERIOD];

static atomic_ulong download_closes;
static atomic_ulong stream_ends; /* rpc_server_options_t.on_stream_end */
static atomic_ulong upload_closes;
static atomic_ulong sleep_cancels;
static svc_health_t *health;

static bool test_auth(void *data, const char *authorization, char *user_id, size_t user_id_size,
                      fzip_error_t *error) {
  static const char prefix[] = "Bearer good-";
  if (!authorization)
    return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                          "missing authorization metadata");
  if (strncmp(authorization, prefix, sizeof prefix - 1) != 0 ||
      strlen(authorization + sizeof prefix - 1) >= user_id_size)
    return fzip_error_set(error, FZIP_DOMAIN_AUTH, FZIP_ERR_UNAUTHENTICATED,
                          "token rejected by the test verifier");
  strcpy(user_id, authorization + sizeof prefix - 1);
  return true;
}

static bool out_of_memory(fzip_error_t *error) {
  return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_RESOURCE_EXHAUSTED, "out of call memory");
}

/* ---- Echo, Sleep, Stats, SetHealth --------------------------------------- */

static bool echo(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                 fzip_error_t *error) {
  const Fzip__Test__V1__EchoRequest *r = (const Fzip__Test__V1__EchoRequest *)req;
  Fzip__Test__V1__EchoResponse *out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out)
    return out_of_memory(error);
  fzip__test__v1__echo_response__init(out);
  out->text = rpc_ctx_strdup(ctx, r->text);
  out->user_id = rpc_ctx_strdup(ctx, rpc_ctx_user_id(ctx));
  if (!out->text || !out->user_id)
    return out_of_memory(error);
  /* A handler's own line: the layer puts the call's request id on it
   * (test_interop.py checks). */
  fzip_log(FZIP_LOG_INFO, "test_server", "echo", "text", r->text, NULL);
  *resp = &out->base;
  return true;
}

static bool sleep_rpc(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                      fzip_error_t *error) {
  const Fzip__Test__V1__SleepRequest *r = (const Fzip__Test__V1__SleepRequest *)req;
  if (r->ms > TEST_MAX_SLEEP_MS)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "sleep longer than %d ms", TEST_MAX_SLEEP_MS);
  int64_t until = fzip_monotonic_ms() + r->ms;
  while (fzip_monotonic_ms() < until) {
    if (rpc_ctx_is_cancelled(ctx)) {
      atomic_fetch_add(&sleep_cancels, 1);
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_CANCELLED, "sleep cancelled");
    }
    fzip_sleep_ms(TEST_SLEEP_TICK_MS);
  }
  Fzip__Test__V1__SleepResponse *out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out)
    return out_of_memory(error);
  fzip__test__v1__sleep_response__init(out);
  *resp = &out->base;
  return true;
}

static bool stats(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                  fzip_error_t *error) {
  Fzip__Test__V1__StatsResponse *out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out)
    return out_of_memory(error);
  fzip__test__v1__stats_response__init(out);
  out->download_closes = atomic_load(&download_closes);
  out->upload_closes = atomic_load(&upload_closes);
  out->sleep_cancels = atomic_load(&sleep_cancels);
  out->stream_ends = atomic_load(&stream_ends);
  *resp = &out->base;
  return true;
}

static bool set_health(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       fzip_error_t *error) {
  const Fzip__Test__V1__SetHealthRequest *r = (const Fzip__Test__V1__SetHealthRequest *)req;
  if (!svc_health_set(health, r->service, (svc_health_status_t)r->status, error))
    return false;
  Fzip__Test__V1__SetHealthResponse *out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out)
    return out_of_memory(error);
  fzip__test__v1__set_health_response__init(out);
  *resp = &out->base;
  return true;
}

static bool echo_stream(rpc_ctx_t *ctx, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        fzip_error_t *error) {
  return echo(ctx, req, resp, error);
}

/* ---- Download: total_bytes in chunk_bytes chunks, byte i = i % 251 ------ */

typedef struct {
  uint64_t offset;
  uint64_t total;
  uint32_t chunk;
  uint32_t sizes[TEST_MAX_CHUNK_SIZES]; /* chunk_sizes, copied: the request dies after open */
  size_t n_sizes;
  size_t sent; /* chunks so far */
} download_t;

static bool download_open(rpc_ctx_t *ctx, const ProtobufCMessage *req, void **state,
                          fzip_error_t *error) {
  const Fzip__Test__V1__DownloadRequest *r = (const Fzip__Test__V1__DownloadRequest *)req;
  if (r->n_chunk_sizes == 0 && (r->chunk_bytes == 0 || r->chunk_bytes > TEST_MAX_CHUNK))
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "chunk_bytes must be 1..%d", TEST_MAX_CHUNK);
  if (r->n_chunk_sizes > TEST_MAX_CHUNK_SIZES)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "at most %d chunk_sizes", TEST_MAX_CHUNK_SIZES);
  for (size_t i = 0; i < r->n_chunk_sizes; i++) {
    if (r->chunk_sizes[i] == 0 || r->chunk_sizes[i] > TEST_MAX_CHUNK)
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                            "chunk_sizes must be 1..%d", TEST_MAX_CHUNK);
  }
  download_t *d = calloc(1, sizeof *d);
  if (!d)
    return out_of_memory(error);
  d->total = r->total_bytes;
  d->chunk = r->chunk_bytes;
  d->n_sizes = r->n_chunk_sizes;
  if (d->n_sizes)
    memcpy(d->sizes, r->chunk_sizes, d->n_sizes * sizeof d->sizes[0]);
  *state = d;
  return true;
}

static bool download_next(rpc_ctx_t *ctx, void *state, ProtobufCMessage **msg, bool *done,
                          int *retry_after_ms, fzip_error_t *error) {
  download_t *d = state;
  uint64_t left = d->total - d->offset;
  uint32_t want = d->n_sizes ? d->sizes[d->sent++ % d->n_sizes] : d->chunk;
  size_t n = left < want ? (size_t)left : want;
  Fzip__Test__V1__Chunk *c = rpc_ctx_alloc(ctx, sizeof *c);
  if (!c)
    return out_of_memory(error);
  fzip__test__v1__chunk__init(c);
  /* Through rpc_ctx_payload as fzipd's DownloadExport does, so that every
   * download test runs the layer's uncopied, reused chunk buffers (the
   * client checks every byte); without one, straight from the table. */
  c->data.data = n ? rpc_ctx_payload(ctx, n) : NULL;
  if (c->data.data)
    memcpy(c->data.data, pattern + d->offset % TEST_PATTERN_PERIOD, n);
  else
    c->data.data = pattern + d->offset % TEST_PATTERN_PERIOD;
  c->data.len = n;
  d->offset += n;
  *msg = &c->base;
  *done = d->offset == d->total;
  return true;
}

static void download_close(rpc_ctx_t *ctx, void *state) {
  free(state);
  atomic_fetch_add(&download_closes, 1);
}

/* ---- Upload: count and hash everything ----------------------------------- */

typedef struct {
  fzip_sha256_t *sha;
  uint64_t total;
  uint32_t chunks;
} upload_t;

static bool upload_recv(rpc_ctx_t *ctx, void **state, const ProtobufCMessage *msg,
                        fzip_error_t *error) {
  const Fzip__Test__V1__Chunk *c = (const Fzip__Test__V1__Chunk *)msg;
  upload_t *u = *state;
  if (!u) {
    u = calloc(1, sizeof *u);
    if (!u)
      return out_of_memory(error);
    *state = u;
    u->sha = fzip_sha256_new();
    if (!u->sha)
      return out_of_memory(error);
  }
  fzip_sha256_update(u->sha, c->data.data, c->data.len);
  u->total += c->data.len;
  u->chunks++;
  return true;
}

static bool upload_finish(rpc_ctx_t *ctx, void *state, ProtobufCMessage **resp,
                          fzip_error_t *error) {
  upload_t *u = state;
  char hex[FZIP_SHA256_HEX_LEN + 1];
  Fzip__Test__V1__UploadResponse *out = rpc_ctx_alloc(ctx, sizeof *out);
  if (!out)
    return out_of_memory(error);
  fzip__test__v1__upload_response__init(out);
  if (u) {
    fzip_sha256_final_hex(u->sha, hex);
    out->total_bytes = u->total;
    out->chunks = u->chunks;
  } else {
    fzip_sha256_hex(hex, "", 0);
  }
  out->sha256 = rpc_ctx_strdup(ctx, hex);
  if (!out->sha256)
    return out_of_memory(error);
  *resp = &out->base;
  return true;
}

static void upload_close(rpc_ctx_t *ctx, void *state) {
  upload_t *u = state;
  if (u)
    fzip_sha256_destroy(u->sha);
  free(u);
  atomic_fetch_add(&upload_closes, 1);
}

/* ---- the table ----------------------------------------------------------- */

static const rpc_server_stream_ops_t download_ops = {download_open, download_next, download_close};
static const rpc_client_stream_ops_t upload_ops = {upload_recv, upload_finish, upload_close};

#define TEST_DESC(name) &fzip__test__v1__##name##__descriptor
static const rpc_method_t test_methods[] = {
    {.path = "/fzip.test.v1.Test/Echo", .kind = RPC_UNARY, .request = TEST_DESC(echo_request),
     .response = TEST_DESC(echo_response), .requires_auth = true, .unary = echo},
    {.path = "/fzip.test.v1.Test/Download", .kind = RPC_SERVER_STREAMING,
     .request = TEST_DESC(download_request), .response = TEST_DESC(chunk), .requires_auth = true,
     .server_stream = &download_ops},
    {.path = "/fzip.test.v1.Test/Upload", .kind = RPC_CLIENT_STREAMING,
     .request = TEST_DESC(chunk), .response = TEST_DESC(upload_response), .requires_auth = true,
     .client_stream = &upload_ops},
    {.path = "/fzip.test.v1.Test/Sleep", .kind = RPC_UNARY, .request = TEST_DESC(sleep_request),
     .response = TEST_DESC(sleep_response), .requires_auth = true, .unary = sleep_rpc},
    {.path = "/fzip.test.v1.Test/Stats", .kind = RPC_UNARY, .request = TEST_DESC(stats_request),
     .response = TEST_DESC(stats_response), .unary = stats},
    {.path = "/fzip.test.v1.Test/SetHealth", .kind = RPC_UNARY,
     .request = TEST_DESC(set_health_request), .response = TEST_DESC(set_health_response),
     .unary = set_health},
    {.path = "/fzip.test.v1.Test/EchoStream", .kind = RPC_BIDI_ONE_REPLY,
     .request = TEST_DESC(echo_request), .response = TEST_DESC(echo_response),
     .requires_auth = true, .bidi = echo_stream},
};
#define TEST_N_METHODS (sizeof test_methods / sizeof test_methods[0])

static void count_stream_end(void *data) {
  (void)data;
  atomic_fetch_add(&stream_ends, 1);
}

static bool parse_args(rpc_server_options_t *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v)
      return false;
    if (!strcmp(a, "--listen"))
      o->listen = v;
    else if (!strcmp(a, "--workers"))
      o->workers = atoi(v);
    else if (!strcmp(a, "--max-pending"))
      o->max_pending = atoi(v);
    else if (!strcmp(a, "--grace-ms"))
      o->shutdown_grace_ms = atoi(v);
    else if (!strcmp(a, "--tls-cert"))
      o->tls_cert_file = v;
    else if (!strcmp(a, "--tls-key"))
      o->tls_key_file = v;
    else if (!strcmp(a, "--log-level")) {
      fzip_log_level_t level;
      if (!fzip_log_level_parse(&level, v))
        return false;
      fzip_log_set_level(level);
    } else
      return false;
    i++;
  }
  return true;
}

int main(int argc, char **argv) {
  int rc = 1;
  rpc_server_t *server = NULL;
  fzip_error_t err = {0};
  rpc_server_options_t opts = {
      .listen = "127.0.0.1:0", .auth = test_auth, .on_stream_end = count_stream_end};
  const rpc_method_t *table[TEST_N_METHODS + SVC_HEALTH_METHOD_COUNT];
  sigset_t sigs;
  int sig = 0, port = 0;

  if (!parse_args(&opts, argc, argv)) {
    fprintf(stderr, "usage: %s [--listen A] [--workers N] [--max-pending N] [--grace-ms N] "
                    "[--tls-cert F --tls-key F] [--log-level L]\n", argv[0]);
    return 2;
  }
  for (size_t i = 0; i < sizeof pattern; i++)
    pattern[i] = (uint8_t)(i % TEST_PATTERN_PERIOD);
  /* Blocked before any thread exists, so only sigwait below sees them. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  if (!svc_health_new(&health, &err) || !svc_health_set(health, "", SVC_HEALTH_SERVING, &err))
    goto done;
  for (size_t i = 0; i < TEST_N_METHODS; i++)
    table[i] = &test_methods[i];
  svc_health_methods(&table[TEST_N_METHODS], health);
  if (!rpc_server_new(&server, &opts, table, TEST_N_METHODS + SVC_HEALTH_METHOD_COUNT, &err) ||
      !rpc_server_start(server, &port, &err))
    goto done;
  printf("PORT %d\n", port);
  fflush(stdout);
  sigwait(&sigs, &sig);
  fzip_log(FZIP_LOG_INFO, "test_server", "signal received, shutting down", NULL);
  svc_health_set_all_not_serving(health);
  rpc_server_shutdown(server);
  rc = 0;
done:
  if (rc != 0)
    fprintf(stderr, "test_rpc_server: [%s] %s\n", fzip_code_name((fzip_code_t)err.code),
            err.message);
  rpc_server_destroy(server);
  svc_health_destroy(health);
  return rc;
}
