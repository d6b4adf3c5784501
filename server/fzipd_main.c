/*
 * fzipd: the fzip server program.
 *
 * Subcommands are a table (serve, token, seed, version, help); `serve` is
 * the default, and `--version` as the first argument means `version`.  serve wires the pieces together in a fixed order: config, a
 * signal mask inherited by every thread created afterwards (so SIGTERM and
 * SIGINT only ever reach main's sigwait), JWT verifier, the private temp
 * dir (after sweeping away those of dead processes: tempdir.h), store,
 * services, rpc server; shutdown undoes them in reverse.  Startup failures print one
 * line on stderr: exit 2 for bad configuration, 1 for anything else.
 */
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <mongoc/mongoc.h>
#include <protobuf-c/protobuf-c.h>
#include <sqlite3.h>
#include <zip.h>

#include "auth_jwt.h"
#include "fzip/v1/export_service.pb-c.h"
#include "fzip_log.h"
#include "fzip_version.h"
#include "fzipd_config.h"
#include "fzip_metrics.h"
#include "import_run.h"
#include "metrics_http.h"
#include "rpc.h"
#include "pkg_writer.h"
#include "queue_gauge.h"
#include "fzip_util.h"
#include "store.h"
#include "svc_export.h"
#include "svc_health.h"
#include "svc_registry.h"
#include "tempdir.h"
#include "seed.h"

#define EXIT_USAGE 2

typedef int (*subcommand_fn)(int argc, char **argv);

typedef struct {
  const char *name;
  subcommand_fn run; /* argv[0] is the subcommand's name, like seed_main's */
} subcommand_t;

static int fail(int status, const fzip_error_t *error) {
  fprintf(stderr, "fzipd: %s\n", error->message);
  return status;
}

/* ---- serve -------------------------------------------------------------- */

typedef struct {
  fzipd_config_t config;
  auth_verifier_t *verifier;
  tempdir_t *temp;
  store_t *store;
  svc_registry_t *registry;
  rpc_server_t *server;
  metrics_http_t *metrics;
  queue_gauge_t *queue_gauge;
} serve_state_t;

static bool make_verifier(serve_state_t *s, fzip_error_t *error) {
  const fzipd_config_t *c = &s->config;
  auth_options_t o = {.secret_file = c->jwt_secret_file,
                      .public_key_file = c->jwt_public_key_file,
                      .issuer = c->jwt_issuer,
                      .audience = c->jwt_audience,
                      .leeway_s = -1,
                      .log_every_call = c->insecure_dev_auth};

  if (c->insecure_dev_auth) {
    if (access(c->jwt_secret_file, F_OK) != 0 && !auth_write_random_secret(c->jwt_secret_file, error))
      return false;
    fprintf(stderr,
            "fzipd: WARNING: --insecure-dev-auth: tokens are checked against the development "
            "secret in %s; never use this outside local development.\n"
            "fzipd: mint a token with: fzipd token --secret-file %s --user dev-user\n",
            c->jwt_secret_file, c->jwt_secret_file);
    fzip_log(FZIP_LOG_WARN, "fzipd", "INSECURE DEVELOPMENT AUTH: do not use in production",
             "secret_file", c->jwt_secret_file, NULL);
  }
  return auth_verifier_new(&s->verifier, &o, error);
}

/* Streams ending closer together than this share one release. */
#define FZIPD_STREAM_RELEASE_GAP_MS 100

/* A download or an upload moved its package through MiB-sized buffers,
 * freed in whichever threads' arenas made them, and an upload filled a
 * connection's page cache: both go back, as after a job (jobs.c).  A
 * release took 0.1-1 ms after 1M-transaction jobs, on the thread that
 * ends the call (often a completion-queue thread), so a burst of short
 * streams does not pay it per call: what a skipped one leaves goes back
 * at the next stream's end or job's end. */
static void release_after_stream(void *store) {
  static _Atomic int64_t last_ms = INT64_MIN / 2;
  int64_t now = fzip_monotonic_ms();
  int64_t last = atomic_load(&last_ms);

  if (now - last < FZIPD_STREAM_RELEASE_GAP_MS ||
      !atomic_compare_exchange_strong(&last_ms, &last, now))
    return; /* one released just now, or another thread does it */
  store_release_memory(store);
}

static bool start_server(serve_state_t *s, int *port, fzip_error_t *error) {
  const fzipd_config_t *c = &s->config;
  const rpc_method_t *const *methods = NULL;
  size_t n = 0;
  rpc_server_options_t o = {0};

  if (!svc_registry_new(&s->registry, s->store, c, error))
    return false;
  methods = svc_registry_methods(s->registry, &n);
  o.listen = c->listen;
  o.cq_threads = (int)c->cq_threads;
  o.workers = (int)c->workers;
  o.max_recv_message = (size_t)c->max_message_bytes;
  o.max_send_message = (size_t)c->max_message_bytes;
  o.shutdown_grace_ms = (int)c->shutdown_grace_ms;
  o.auth = auth_rpc_authenticate;
  o.auth_data = s->verifier;
  o.on_stream_end = release_after_stream;
  o.on_stream_end_data = s->store;
  o.tls_cert_file = c->tls_cert;
  o.tls_key_file = c->tls_key;
  o.tls_client_ca_file = c->tls_client_ca;
  if (!rpc_server_new(&s->server, &o, methods, n, error))
    return false;
  if (!rpc_server_start(s->server, port, error))
    return false;
  return true; /* health: the registry's checker already follows the store */
}

static bool listen_port_is_zero(const char *listen) {
  const char *colon = strrchr(listen, ':');
  return colon && strcmp(colon + 1, "0") == 0;
}

static void announce(const serve_state_t *s, int port) {
  /* Tests start fzipd on port 0 and read the real port from stdout. */
  if (listen_port_is_zero(s->config.listen)) {
    printf("port=%d\n", port);
    fflush(stdout);
  }
  const fzip_log_field_t f[] = {
      fzip_log_str("listen", s->config.listen),
      fzip_log_int("port", port),
      fzip_log_str("store", store_backend_name(s->store)),
      fzip_log_str("auth", auth_verifier_alg(s->verifier)),
      fzip_log_bool("tls", s->config.tls_cert != NULL),
  };
  fzip_log_fields(FZIP_LOG_INFO, "fzipd", "listening", f, FZIP_LOG_COUNT(f));
}

/* The Prometheus endpoint and the queue gauge's thread, when
 * --metrics-listen is set; started before gRPC, so that its line is in the
 * log when "port=N" is printed. */
static bool start_metrics(serve_state_t *s, fzip_error_t *error) {
  int port = 0;

  if (!s->config.metrics_listen)
    return true;
  if (!queue_gauge_start(&s->queue_gauge, s->store, error) ||
      !metrics_http_start(&s->metrics, &port, s->config.metrics_listen, error))
    return false;
  const fzip_log_field_t f[] = {fzip_log_str("listen", s->config.metrics_listen),
                                fzip_log_int("port", port),
                                fzip_log_str("path", METRICS_HTTP_PATH)};
  fzip_log_fields(FZIP_LOG_INFO, "fzipd", "metrics listening", f, FZIP_LOG_COUNT(f));
  return true;
}

/* Start-up cleanup of what crashed fzipd processes left in the temp dir,
 * then this process's own locked directory, which every temporary of the
 * services goes into (config.temp_dir now names it). */
static bool make_temp_dir(serve_state_t *s, fzip_error_t *error) {
  tempdir_sweep_stats_t st;

  if (!tempdir_sweep(&st, s->config.temp_dir, TEMPDIR_LEGACY_AGE_MS, error) ||
      !tempdir_new(&s->temp, s->config.temp_dir, error))
    return false;
  const fzip_log_field_t f[] = {fzip_log_str("path", tempdir_path(s->temp)),
                                fzip_log_int("swept_dirs", (int64_t)st.dirs),
                                fzip_log_int("swept_old_files", (int64_t)st.legacy)};
  fzip_log_fields(FZIP_LOG_INFO, "fzipd", "temp dir ready", f, FZIP_LOG_COUNT(f));
  s->config.temp_root = tempdir_root(s->temp);
  s->config.temp_dir = tempdir_path(s->temp);
  return true;
}

static int wait_for_signal(const sigset_t *set) {
  int sig = 0;
  while (sigwait(set, &sig) != 0)
    ;
  return sig;
}

static void serve_cleanup(serve_state_t *s) {
  if (s->registry)
    svc_health_set_all_not_serving(svc_registry_health(s->registry));
  queue_gauge_stop(s->queue_gauge); /* a count in progress ends during the drain */
  rpc_server_shutdown(s->server);
  /* After the drain: the target stays up (and counts the drained calls)
   * until gRPC has stopped. */
  metrics_http_destroy(s->metrics);
  queue_gauge_destroy(s->queue_gauge);
  rpc_server_destroy(s->server);
  svc_registry_destroy(s->registry);
  store_destroy(s->store);
  tempdir_destroy(s->temp);
  auth_verifier_destroy(s->verifier);
}

static int serve_main(int argc, char **argv) {
  serve_state_t s = {0};
  fzip_error_t error = {0};
  store_options_t so = {0};
  fzip_log_level_t level = FZIP_LOG_INFO;
  sigset_t set;
  int port = 0, status = 1, sig = 0;

  if (!fzipd_config_parse(&s.config, argc - 1, argv + 1, &error))
    return fail(EXIT_USAGE, &error);
  if (s.config.help) {
    fzipd_config_print_help(stdout);
    return 0;
  }
  fzip_log_level_parse(&level, s.config.log_level);
  fzip_log_set_level(level);
  fzip_limit_malloc_arenas(); /* before any thread: see fzip_util.h */
  /* Before any thread exists, so every thread inherits the mask. */
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (!make_verifier(&s, &error)) {
    status = fail(EXIT_USAGE, &error);
    goto done;
  }
  if (!make_temp_dir(&s, &error)) {
    fail(1, &error);
    goto done;
  }
  so.uri = s.config.store_uri;
  so.database = s.config.store_database;
  if (!store_open(&s.store, &so, &error)) {
    fprintf(stderr, "fzipd: cannot open store %s: %s\n", s.config.store_uri, error.message);
    goto done;
  }
  if (!start_metrics(&s, &error) || !start_server(&s, &port, &error)) {
    fail(1, &error);
    goto done;
  }
  announce(&s, port);
  sig = wait_for_signal(&set);
  fzip_log(FZIP_LOG_INFO, "fzipd", "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
           NULL);
  status = 0;
done:
  serve_cleanup(&s);
  if (status == 0)
    fzip_log(FZIP_LOG_INFO, "fzipd", "stopped", NULL);
  return status;
}

/* ---- token / version / help ----------------------------------------------- */

static int token_main(int argc, char **argv) {
  fzipd_token_config_t c;
  fzip_error_t error = {0};
  auth_mint_options_t m = {0};
  char *token = NULL;

  if (!fzipd_token_config_parse(&c, argc - 1, argv + 1, &error))
    return fail(EXIT_USAGE, &error);
  if (c.help) {
    fzipd_token_config_print_help(stdout);
    return 0;
  }
  m.user_id = c.user_id;
  m.ttl_s = c.ttl_s;
  m.issuer = c.issuer;
  m.audience = c.audience;
  if (!auth_mint_hs256(&token, c.secret_file, &m, &error))
    return fail(1, &error);
  printf("%s\n", token);
  free(token);
  return 0;
}

/* The API is named after the services' protobuf package, so it cannot
 * drift from what fzipd serves. */
static int version_main(int argc, char **argv) {
  const fzip_version_row_t rows[] = {
      {"api", fzip__v1__export_service__descriptor.package},
      {"package format", PKG_FORMAT_VERSION},
      {"grpc core", grpc_version_string()},
      {"protobuf-c", protobuf_c_version()},
      {"libzip", zip_libzip_version()},
      {"sqlite", sqlite3_libversion()},
      {"mongoc", mongoc_get_version()},
  };
  fzip_version_print(stdout, "fzipd", rows, sizeof rows / sizeof rows[0]);
  return 0;
}

static int help_main(int argc, char **argv) {
  fzipd_config_print_help(stdout);
  return 0;
}

static const subcommand_t SUBCOMMANDS[] = {
    {"serve", serve_main},
    {"token", token_main},
    {"seed", seed_main},
    {"version", version_main},
    {"help", help_main},
};

int main(int argc, char **argv) {
  size_t n = sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0];

  if (argc >= 2 && strcmp(argv[1], "--version") == 0)
    return version_main(argc - 1, argv + 1);
  /* No subcommand (or a flag first): serve, with argv[0] standing in
   * for the subcommand name. */
  if (argc < 2 || argv[1][0] == '-')
    return serve_main(argc, argv);
  for (size_t i = 0; i < n; i++)
    if (strcmp(argv[1], SUBCOMMANDS[i].name) == 0)
      return SUBCOMMANDS[i].run(argc - 1, argv + 1);
  fprintf(stderr, "fzipd: unknown subcommand \"%s\" (try fzipd --help)\n", argv[1]);
  return EXIT_USAGE;
}
