/*
 * rpc_server: start-up, the completion-queue threads and shutdown.
 *
 * One CQ per polling thread; every method is requested on every CQ, so a
 * call is driven by the one thread whose CQ it arrived on and its state
 * needs no lock.  Channel arguments pin the flow-control behaviour the
 * service relies on: explicit message size limits, no BDP probing (which
 * otherwise grows the receive window, and the server's memory, during fast
 * uploads), and no SO_REUSEPORT (a stale server must not share our port).
 * Shutdown follows the order in /work/shared/reference/grpc-c-core.md:
 * notify, grace, cancel, wait for our call structs (CQs still polled, as
 * workers post to them), join the pool, then drain and join the CQs.
 */
#include "rpc_server.h"
#include "fzip_util.h"

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip_log.h"
#include "rpc_call.h"

#define RPC_DEFAULT_MAX_MESSAGE (4 * 1024 * 1024 + 64 * 1024)
#define RPC_DEFAULT_ARENA_LIMIT ((size_t)64 * 1024 * 1024)
#define RPC_DEFAULT_GRACE_MS 5000
/* Defaults of rpc_server_options_t (rpc.h says them too): completion
 * queue threads only move events, so few; handler threads block on the
 * store, so more; the queue bound is what turns overload into
 * RESOURCE_EXHAUSTED instead of unbounded latency. */
#define RPC_DEFAULT_CQ_THREADS 2
#define RPC_DEFAULT_WORKERS 8
#define RPC_DEFAULT_MAX_PENDING 256
/* Poll intervals of the bounded shutdown waits (the bounds are clocks). */
#define RPC_CALLS_GONE_POLL_MS 5
#define RPC_GRPC_SHUTDOWN_POLL_MS 10
/* After cancel_all_calls, how long to wait for handlers to notice before
 * giving up on a clean exit (a handler that never polls would hang us). */
#define RPC_CANCEL_WAIT_MS 30000
#define RPC_GRPC_SHUTDOWN_WAIT_MS 1000
#define RPC_PEM_MAX (1024 * 1024)

static void fill_defaults(rpc_server_options_t *o) {
  if (o->cq_threads <= 0)
    o->cq_threads = RPC_DEFAULT_CQ_THREADS;
  if (o->cq_threads > RPC_MAX_CQ_THREADS)
    o->cq_threads = RPC_MAX_CQ_THREADS;
  if (o->workers <= 0)
    o->workers = RPC_DEFAULT_WORKERS;
  if (o->max_pending <= 0)
    o->max_pending = RPC_DEFAULT_MAX_PENDING;
  if (o->max_recv_message == 0)
    o->max_recv_message = RPC_DEFAULT_MAX_MESSAGE;
  if (o->max_send_message == 0)
    o->max_send_message = RPC_DEFAULT_MAX_MESSAGE;
  if (o->shutdown_grace_ms <= 0)
    o->shutdown_grace_ms = RPC_DEFAULT_GRACE_MS;
  if (o->call_arena_limit == 0)
    o->call_arena_limit = RPC_DEFAULT_ARENA_LIMIT;
}

static bool check_methods(const rpc_method_t *const *methods, size_t n, bool has_auth,
                          fzip_error_t *error) {
  for (size_t i = 0; i < n; i++) {
    const rpc_method_t *m = methods[i];
    bool handler_ok = (m->kind == RPC_UNARY && m->unary) ||
                      (m->kind == RPC_SERVER_STREAMING && m->server_stream &&
                       m->server_stream->open && m->server_stream->next) ||
                      (m->kind == RPC_CLIENT_STREAMING && m->client_stream &&
                       m->client_stream->recv && m->client_stream->finish) ||
                      (m->kind == RPC_BIDI_ONE_REPLY && m->bidi);
    if (!m->path || m->path[0] != '/' || !m->request || !m->response || !handler_ok)
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                            "method row %zu (%s) is incomplete", i, m->path ? m->path : "?");
    if (m->requires_auth && !has_auth)
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                            "%s requires auth but no auth hook is set", m->path);
  }
  return true;
}

bool rpc_server_new(rpc_server_t **out, const rpc_server_options_t *options,
                    const rpc_method_t *const *methods, size_t n_methods, fzip_error_t *error) {
  bool ok = false;
  rpc_server_t *s = NULL;

  if (!options || !options->listen)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                          "server options need a listen address");
  if (!check_methods(methods, n_methods, options->auth != NULL, error))
    return false;
  s = calloc(1, sizeof *s);
  if (!s) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  s->opts = *options;
  fill_defaults(&s->opts);
  s->methods = methods;
  s->n_methods = n_methods;
  atomic_init(&s->live_calls, 0);
  atomic_init(&s->stopping, false);
  atomic_init(&s->cancelling, false);
  s->registered = calloc(n_methods ? n_methods : 1, sizeof *s->registered);
  if (!s->registered) {
    fzip_error_oom(error, NULL);
    goto done;
  }
  grpc_init();
  s->grpc_initialised = true;
  *out = s;
  s = NULL;
  ok = true;
done:
  rpc_server_destroy(s);
  return ok;
}

static bool read_pem(char **out, const char *path, fzip_error_t *error) {
  return fzip_read_small_file(out, NULL, path, RPC_PEM_MAX, error);
}

static bool make_credentials(grpc_server_credentials **out, const rpc_server_options_t *o,
                             fzip_error_t *error) {
  bool ok = false;
  char *cert = NULL, *key = NULL, *ca = NULL;
  if (!o->tls_cert_file && !o->tls_key_file) {
    *out = grpc_insecure_server_credentials_create();
    return true;
  }
  if (!o->tls_cert_file || !o->tls_key_file)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "TLS needs both a certificate and a key file");
  if (!read_pem(&cert, o->tls_cert_file, error) || !read_pem(&key, o->tls_key_file, error) ||
      (o->tls_client_ca_file && !read_pem(&ca, o->tls_client_ca_file, error)))
    goto done;
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
  *out = grpc_ssl_server_credentials_create_ex(
      ca, &pair, 1,
      ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
         : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
      NULL);
  if (!*out) {
    fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "TLS credentials rejected (certificate/key mismatch?)");
    goto done;
  }
  ok = true;
done:
  free(cert);
  free(key);
  free(ca);
  return ok;
}

static void *cq_thread_main(void *arg) {
  grpc_completion_queue *cq = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type == GRPC_OP_COMPLETE)
      rpc_call_on_event(ev.tag, ev.success != 0);
  }
  return NULL;
}

static bool create_server(rpc_server_t *s, fzip_error_t *error) {
  grpc_arg args[] = {
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)s->opts.max_recv_message}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = (int)s->opts.max_send_message}},
      {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_BDP_PROBE, {.integer = 0}},
      {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
  };
  grpc_channel_args channel_args = {sizeof args / sizeof args[0], args};
  s->server = grpc_server_create(&channel_args, NULL);
  if (!s->server)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL, "grpc_server_create failed");
  for (size_t i = 0; i < s->n_methods; i++) {
    const rpc_method_t *m = s->methods[i];
    bool has_payload = m->kind == RPC_UNARY || m->kind == RPC_SERVER_STREAMING;
    s->registered[i] = grpc_server_register_method(
        s->server, m->path, NULL,
        has_payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
    if (!s->registered[i])
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INVALID_ARGUMENT,
                            "cannot register %s (registered twice?)", m->path);
  }
  for (int i = 0; i < s->opts.cq_threads; i++) {
    s->cqs[i] = grpc_completion_queue_create_for_next(NULL);
    s->n_cqs++;
    grpc_server_register_completion_queue(s->server, s->cqs[i], NULL);
  }
  s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
  return true;
}

static bool bind_port(rpc_server_t *s, int *bound_port, fzip_error_t *error) {
  grpc_server_credentials *creds = NULL;
  if (!make_credentials(&creds, &s->opts, error))
    return false;
  int port = grpc_server_add_http2_port(s->server, s->opts.listen, creds);
  grpc_server_credentials_release(creds);
  if (port <= 0)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_UNAVAILABLE,
                          "cannot listen on %s (address in use or invalid)", s->opts.listen);
  *bound_port = port;
  return true;
}

bool rpc_server_start(rpc_server_t *server, int *bound_port, fzip_error_t *error) {
  int port = 0;
  if (server->started)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_FAILED_PRECONDITION,
                          "server already started");
  server->started = true;
  if (!rpc_pool_new(&server->pool, server->opts.workers, server->opts.max_pending, error) ||
      !create_server(server, error) || !bind_port(server, &port, error))
    return false;
  grpc_server_start(server->server);
  server->grpc_started = true;
  /* Threads before requests: a CQ left without a thread (pthread_create
   * failed) then holds no requested call and is drained at shutdown. */
  for (int q = 0; q < server->n_cqs; q++) {
    int rc = pthread_create(&server->cq_threads[q], NULL, cq_thread_main, server->cqs[q]);
    if (rc != 0)
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                            "cannot start CQ thread: %s", strerror(rc));
    server->n_cq_threads++;
  }
  for (int q = 0; q < server->n_cqs; q++) {
    for (size_t m = 0; m < server->n_methods; m++) {
      for (int k = 0; k < RPC_REQUESTS_PER_METHOD; k++) {
        if (!rpc_call_request(server, m, q))
          return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                                "cannot request calls for %s", server->methods[m]->path);
      }
    }
    if (!rpc_call_request_unknown(server, q))
      return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_INTERNAL,
                            "cannot request calls for unknown methods");
  }
  if (bound_port)
    *bound_port = port;
  const fzip_log_field_t f[] = {fzip_log_str("listen", server->opts.listen),
                                fzip_log_int("port", port),
                                fzip_log_bool("tls", server->opts.tls_cert_file != NULL)};
  fzip_log_fields(FZIP_LOG_INFO, "rpc", "server listening", f, FZIP_LOG_COUNT(f));
  return true;
}

static bool wait_shutdown_tag(rpc_server_t *s, int ms) {
  gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_millis(ms, GPR_TIMESPAN));
  grpc_event ev = grpc_completion_queue_pluck(s->shutdown_cq, s, deadline, NULL);
  return ev.type == GRPC_OP_COMPLETE;
}

/* Bounded by the clock, not by a count of sleeps: on a loaded machine a
 * 5 ms sleep takes much longer, and the bound stretched with it. */
static void wait_calls_gone(rpc_server_t *s, int ms) {
  int64_t until = fzip_monotonic_ms() + ms;
  while (atomic_load(&s->live_calls) > 0 && fzip_monotonic_ms() < until)
    fzip_sleep_ms(RPC_CALLS_GONE_POLL_MS);
}

/* A CQ that never got a thread holds no call, but must still be drained. */
static void drain_cq(grpc_completion_queue *cq) {
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      return;
  }
}

void rpc_server_shutdown(rpc_server_t *server) {
  if (!server || server->shut_down)
    return;
  server->shut_down = true;
  atomic_store(&server->stopping, true);
  if (server->grpc_started) {
    grpc_server_shutdown_and_notify(server->server, server->shutdown_cq, server);
    if (!wait_shutdown_tag(server, server->opts.shutdown_grace_ms)) {
      fzip_log(FZIP_LOG_WARN, "rpc", "grace period over, cancelling in-flight calls", NULL);
      atomic_store(&server->cancelling, true);
      rpc_pool_hurry(server->pool);
      grpc_server_cancel_all_calls(server->server);
      if (!wait_shutdown_tag(server, RPC_CANCEL_WAIT_MS))
        fzip_log(FZIP_LOG_ERROR, "rpc", "calls still running after cancel", NULL);
    }
    /* CQ threads still run: workers finishing their last steps post to
     * them, and requested-but-unused calls come back failed. */
    wait_calls_gone(server, RPC_CANCEL_WAIT_MS);
  }
  rpc_pool_destroy(server->pool);
  server->pool = NULL;
  for (int q = 0; q < server->n_cqs; q++)
    grpc_completion_queue_shutdown(server->cqs[q]);
  for (int q = 0; q < server->n_cq_threads; q++)
    pthread_join(server->cq_threads[q], NULL);
  for (int q = server->n_cq_threads; q < server->n_cqs; q++)
    drain_cq(server->cqs[q]);
  if (server->grpc_started)
    fzip_log(FZIP_LOG_INFO, "rpc", "server stopped", NULL);
}

/* grpc_shutdown() joins gRPC's executor threads; one busy polling a
 * connection that is still draining has been seen to hold it for ~10 s
 * after every call ended.  Our server is gone by then, so give it a bounded
 * wait on a helper thread and let process exit finish it otherwise. */
static void *grpc_shutdown_main(void *arg) {
  atomic_bool *done = arg;
  grpc_shutdown();
  atomic_store(done, true);
  return NULL;
}

static void shutdown_grpc_bounded(void) {
  static atomic_bool done;
  pthread_t t;

  atomic_store(&done, false);
  if (pthread_create(&t, NULL, grpc_shutdown_main, &done) != 0) {
    grpc_shutdown();
    return;
  }
  int64_t until = fzip_monotonic_ms() + RPC_GRPC_SHUTDOWN_WAIT_MS; /* clock-bounded, as above */
  while (!atomic_load(&done) && fzip_monotonic_ms() < until)
    fzip_sleep_ms(RPC_GRPC_SHUTDOWN_POLL_MS);
  if (atomic_load(&done)) {
    pthread_join(t, NULL);
    return;
  }
  pthread_detach(t);
  fzip_log(FZIP_LOG_WARN, "rpc", "gRPC library shutdown still draining; not waiting for it",
           NULL);
}

void rpc_server_destroy(rpc_server_t *server) {
  if (!server)
    return;
  rpc_server_shutdown(server);
  if (server->server)
    grpc_server_destroy(server->server);
  for (int q = 0; q < server->n_cqs; q++)
    grpc_completion_queue_destroy(server->cqs[q]);
  if (server->shutdown_cq) {
    grpc_completion_queue_shutdown(server->shutdown_cq);
    grpc_completion_queue_pluck(server->shutdown_cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME),
                                NULL);
    grpc_completion_queue_destroy(server->shutdown_cq);
  }
  free(server->registered);
  if (server->grpc_initialised)
    shutdown_grpc_bounded();
  free(server);
}
