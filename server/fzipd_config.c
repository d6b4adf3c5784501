/*
 * fzipd_config: one table row per option; a small generic engine applies
 * defaults, then the environment, then flags ("--name value" or
 * "--name=value"; booleans also as a bare "--name"), and validation runs on
 * the result.  The same engine parses the `fzipd token` options.
 */
#include "fzipd_config.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fzip_log.h"
#include "schedule_run.h"
#include "svc_health.h"
#include "svc_jobs.h"

#define FLAG_NAME_MAX 64
#define KIB 1024LL
#define MIB (1024LL * KIB)
#define GIB (1024LL * MIB)
#define TCP_PORT_MAX 65535
#define SQLITE_SCHEME "sqlite:"

typedef enum { OPT_STRING = 0, OPT_INT, OPT_BOOL } opt_type_t;

typedef struct {
  const char *flag;    /* without the leading "--" */
  const char *env;     /* environment variable, or NULL */
  opt_type_t type;
  size_t offset;       /* of the field in the config struct */
  const char *def;     /* default as text, or NULL (unset) */
  int64_t min, max;    /* OPT_INT bounds, inclusive */
  const char *meaning; /* one line for --help */
} opt_row_t;

#define S(flag, env, field, def, meaning) \
  {flag, env, OPT_STRING, offsetof(fzipd_config_t, field), def, 0, 0, meaning}
#define I(flag, env, field, def, lo, hi, meaning) \
  {flag, env, OPT_INT, offsetof(fzipd_config_t, field), def, lo, hi, meaning}
#define B(flag, env, field, meaning) \
  {flag, env, OPT_BOOL, offsetof(fzipd_config_t, field), "false", 0, 1, meaning}

/* Defaults in the option table are text; a default that is a named
 * constant elsewhere is spelled through these, so it cannot drift. */
#define TEXT_OF(x) #x
#define NUMBER_TEXT(x) TEXT_OF(x)

static const opt_row_t SERVE_OPTIONS[] = {
    S("listen", "FZIP_LISTEN", listen, FZIPD_DEFAULT_LISTEN,
      "address to serve gRPC on, HOST:PORT; port 0 picks a free port and prints port=N"),
    S("metrics-listen", "FZIP_METRICS_LISTEN", metrics_listen, NULL,
      "address to serve Prometheus metrics on (GET /metrics), HOST:PORT, apart from gRPC; "
      "port 0 picks a free port (logged as \"metrics listening\"); unset: no metrics endpoint"),
    S("store", "FZIP_STORE", store_uri, FZIPD_DEFAULT_STORE,
      "storage URI: sqlite:PATH (embedded) or mongodb://HOST:PORT/... (MongoDB/FerretDB)"),
    S("store-database", "FZIP_STORE_DATABASE", store_database, NULL,
      "MongoDB database name (default: fzip)"),
    S("jwt-secret-file", "FZIP_JWT_SECRET_FILE", jwt_secret_file, NULL,
      "file holding the HS256 shared secret (at least 32 bytes)"),
    S("jwt-public-key-file", "FZIP_JWT_PUBLIC_KEY_FILE", jwt_public_key_file, NULL,
      "PEM public key: RSA means RS256 tokens, EC P-256 means ES256 tokens"),
    S("jwt-issuer", "FZIP_JWT_ISSUER", jwt_issuer, NULL, "required token iss (unset: not checked)"),
    S("jwt-audience", "FZIP_JWT_AUDIENCE", jwt_audience, NULL,
      "audience that token aud must contain (unset: not checked)"),
    S("tls-cert", "FZIP_TLS_CERT", tls_cert, NULL, "PEM server certificate chain; enables TLS"),
    S("tls-key", "FZIP_TLS_KEY", tls_key, NULL, "PEM private key of --tls-cert"),
    S("tls-client-ca", "FZIP_TLS_CLIENT_CA", tls_client_ca, NULL,
      "PEM CA bundle; when set, clients must present a certificate it signed"),
    I("workers", "FZIP_WORKERS", workers, "8", 1, 256, "handler threads"),
    I("cq-threads", "FZIP_CQ_THREADS", cq_threads, "2", 1, 64, "gRPC completion-queue threads"),
    I("max-message-bytes", "FZIP_MAX_MESSAGE_BYTES", max_message_bytes, "4259840", 64 * KIB,
      64 * MIB, "largest gRPC message sent or received"),
    I("max-upload-bytes", "FZIP_MAX_UPLOAD_BYTES", max_upload_bytes, "4294967296", 1 * MIB,
      64 * GIB, "largest import package accepted"),
    I("export-workers", "FZIP_EXPORT_WORKERS", export_workers, "2", 1, 64,
      "export jobs run at the same time"),
    I("export-ttl-seconds", "FZIP_EXPORT_TTL_SECONDS", export_ttl_s, "86400", 1,
      366LL * 24 * 3600, "seconds a finished export package is kept (default 24 h)"),
    I("import-workers", "FZIP_IMPORT_WORKERS", import_workers, "1", 1, 64,
      "import jobs run at the same time"),
    I("max-queued-jobs-per-user", "FZIP_MAX_QUEUED_JOBS_PER_USER", max_queued_jobs_per_user,
      NUMBER_TEXT(SVC_JOBS_MAX_QUEUED_DEFAULT), 0, 1000000,
      "queued or running jobs (exports and imports together) one user may have; more "
      "CreateExport/UploadImport(start) calls fail RESOURCE_EXHAUSTED (0: no cap)"),
    I("job-retention-hours", "FZIP_JOB_RETENTION_HOURS", job_retention_hours, "168", 1,
      24 * 366, "hours ended jobs (and import uploads) stay listed before the reaper deletes them"),
    I("import-undo-window-hours", "FZIP_IMPORT_UNDO_WINDOW_HOURS", import_undo_window_hours,
      "168", 0, 24 * 366,
      "hours a completed import can be undone (UndoImport); until then the versions it "
      "replaced (and their file bytes) are kept in the store; 0: no undo, forgotten at commit"),
    I("import-undo-window-ms", "FZIP_IMPORT_UNDO_WINDOW_MS", import_undo_window_ms, "-1", -1,
      24LL * 366 * 3600 * 1000,
      "FOR TESTS: the undo window in milliseconds, overriding --import-undo-window-hours "
      "(-1: unset)"),
    I("import-batch-bytes", "FZIP_IMPORT_BATCH_BYTES", import_batch_bytes, "8388608", 1,
      1LL << 30,
      "FOR TESTS: documents' bytes per restore batch (one store round trip each); a lower "
      "value makes a test's small package span many batches"),
    I("job-lease-ms", "FZIP_JOB_LEASE_MS", job_lease_ms, "60000", 1000, 3600000,
      "lease a replica holds on a running job; another replica takes the job over once it "
      "lapses (a dead replica's import is rolled back then)"),
    I("reaper-interval-ms", "FZIP_REAPER_INTERVAL_MS", reaper_interval_ms, "60000", 100,
      24LL * 3600 * 1000, "how often expired jobs, packages and abandoned uploads are removed"),
    I("schedule-tick-ms", "FZIP_SCHEDULE_TICK_MS", schedule_tick_ms,
      NUMBER_TEXT(SCHEDULE_TICK_DEFAULT_MS), 100, 3600000,
      "how often due export schedules are looked for (a run starts at most this long after "
      "its due time)"),
    S("test-clock-offset-file", "FZIP_TEST_CLOCK_OFFSET_FILE", test_clock_offset_file, NULL,
      "FOR TESTS: a file holding milliseconds added to the wall clock when schedules are "
      "planned and run (read on every use), so a test moves time on without waiting"),
    I("health-check-interval-ms", "FZIP_HEALTH_CHECK_INTERVAL_MS", health_check_interval_ms,
      NUMBER_TEXT(SVC_HEALTH_CHECK_INTERVAL_MS), 100, 600000,
      "how often the store is pinged; health \"\" and the fzip.v1 services are NOT_SERVING "
      "while it does not answer"),
    I("uncommitted-blob-age-seconds", "FZIP_UNCOMMITTED_BLOB_AGE_SECONDS", uncommitted_blob_age_s,
      "86400", 1, 366LL * 24 * 3600,
      "the reaper deletes blobs left uncommitted (an upload or export whose fzipd died) this "
      "many seconds after they were started (default 24 h); keep it longer than any upload or "
      "package write takes, or one still running loses its blob"),
    S("temp-dir", "FZIP_TEMP_DIR", temp_dir, NULL,
      "directory for packages being built or validated (default: $TMPDIR or /tmp); fzipd works "
      "in its own locked fzipd-PID-* subdirectory and, at start-up and on every reaper pass, "
      "removes those of dead processes"),
    I("shutdown-grace-ms", "FZIP_SHUTDOWN_GRACE_MS", shutdown_grace_ms, "5000", 0, 600000,
      "on SIGTERM, time in-flight calls get to finish"),
    S("log-level", "FZIP_LOG_LEVEL", log_level, "info", "debug, info, warn or error"),
    B("insecure-dev-auth", "FZIP_INSECURE_DEV_AUTH", insecure_dev_auth,
      "LOCAL DEVELOPMENT ONLY: HS256 with a generated secret written to --jwt-secret-file "
      "(default " FZIPD_DEV_SECRET_FILE ")"),
};

#undef S
#undef I
#undef B
#define S(flag, env, field, def, meaning) \
  {flag, env, OPT_STRING, offsetof(fzipd_token_config_t, field), def, 0, 0, meaning}
#define I(flag, env, field, def, lo, hi, meaning) \
  {flag, env, OPT_INT, offsetof(fzipd_token_config_t, field), def, lo, hi, meaning}

static const opt_row_t TOKEN_OPTIONS[] = {
    S("secret-file", "FZIP_JWT_SECRET_FILE", secret_file, NULL, "HS256 secret file (required)"),
    S("user", NULL, user_id, NULL, "user id, the token's sub (required)"),
    I("ttl-seconds", NULL, ttl_s, "3600", 1, 366 * 24 * 3600, "lifetime of the token"),
    S("issuer", "FZIP_JWT_ISSUER", issuer, NULL, "iss claim (unset: none)"),
    S("audience", "FZIP_JWT_AUDIENCE", audience, NULL, "aud claim (unset: none)"),
};

#undef S
#undef I

#define N_ROWS(t) (sizeof(t) / sizeof((t)[0]))

/* ---- the generic engine ------------------------------------------------ */

static bool parse_bool(bool *out, const char *s) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < N_ROWS(yes); i++) {
    if (strcasecmp(s, yes[i]) == 0)
      return (*out = true);
    if (strcasecmp(s, no[i]) == 0)
      return !(*out = false);
  }
  return false;
}

/* `source` names where the value came from, for the error message. */
static bool set_value(void *base, const opt_row_t *row, const char *value, const char *source,
                      fzip_error_t *error) {
  char *end = NULL;
  long long n = 0;

  switch (row->type) {
  case OPT_STRING:
    *(const char **)((char *)base + row->offset) = value;
    return true;
  case OPT_BOOL:
    if (!parse_bool((bool *)((char *)base + row->offset), value))
      return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                            "%s: \"%s\" is not a boolean (true/false)", source, value);
    return true;
  case OPT_INT:
    errno = 0;
    n = strtoll(value, &end, 10);
    if (errno || end == value || *end)
      return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                            "%s: \"%s\" is not an integer", source, value);
    if (n < row->min || n > row->max)
      return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                            "%s: %lld is out of range [%" PRId64 ", %" PRId64 "]", source, n,
                            row->min, row->max);
    *(int64_t *)((char *)base + row->offset) = (int64_t)n;
    return true;
  }
  return false;
}

static const opt_row_t *find_row(const opt_row_t *rows, size_t n, const char *name, size_t len) {
  for (size_t i = 0; i < n; i++)
    if (strlen(rows[i].flag) == len && strncmp(rows[i].flag, name, len) == 0)
      return &rows[i];
  return NULL;
}

static bool apply_defaults_and_env(void *base, const opt_row_t *rows, size_t n,
                                   fzip_error_t *error) {
  for (size_t i = 0; i < n; i++) {
    const char *env = rows[i].env ? getenv(rows[i].env) : NULL;
    if (rows[i].def && !set_value(base, &rows[i], rows[i].def, rows[i].flag, error))
      return false;
    if (env && *env && !set_value(base, &rows[i], env, rows[i].env, error))
      return false;
  }
  return true;
}

/* Applies argv[*i] (and maybe argv[*i + 1]); advances *i past what it used. */
static bool apply_flag(void *base, const opt_row_t *rows, size_t n, int argc, char **argv,
                       int *i, fzip_error_t *error) {
  const char *arg = argv[*i];
  const char *name = arg + 2;
  const char *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : strlen(name);
  const opt_row_t *row = NULL;
  char source[FLAG_NAME_MAX + 3];

  if (strncmp(arg, "--", 2) != 0 || len == 0)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "unexpected argument \"%s\" (see --help)", arg);
  row = find_row(rows, n, name, len);
  if (!row)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "unknown option --%.*s (see --help)", (int)(len > FLAG_NAME_MAX ? FLAG_NAME_MAX : len), name);
  snprintf(source, sizeof source, "--%s", row->flag);
  if (eq)
    return set_value(base, row, eq + 1, source, error);
  if (row->type == OPT_BOOL)
    return set_value(base, row, "true", source, error);
  if (*i + 1 >= argc)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "%s needs a value", source);
  *i += 1;
  return set_value(base, row, argv[*i], source, error);
}

static bool parse_table(void *base, bool *help, const opt_row_t *rows, size_t n, int argc,
                        char **argv, fzip_error_t *error) {
  if (!apply_defaults_and_env(base, rows, n, error))
    return false;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      *help = true;
      continue;
    }
    if (!apply_flag(base, rows, n, argc, argv, &i, error))
      return false;
  }
  return true;
}

static void print_rows(FILE *f, const opt_row_t *rows, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const opt_row_t *r = &rows[i];
    fprintf(f, "  --%s%s\n", r->flag, r->type == OPT_BOOL ? "" : " VALUE");
    fprintf(f, "      env %s, default %s\n", r->env ? r->env : "(none)",
            r->def ? r->def : "(unset)");
    fprintf(f, "      %s\n", r->meaning);
  }
}

/* ---- serve validation --------------------------------------------------- */

static bool bad(fzip_error_t *error, const char *flag, const char *env, const char *what) {
  return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT, "--%s (%s): %s",
                        flag, env, what);
}

static bool check_listen(const char *listen, const char *flag, const char *env,
                         fzip_error_t *error) {
  const char *colon = strrchr(listen, ':');
  char *end = NULL;
  long port = 0;

  if (!colon || colon == listen)
    return bad(error, flag, env, "want HOST:PORT, e.g. 127.0.0.1:50051");
  if (listen[0] == '[' && colon[-1] != ']')
    return bad(error, flag, env, "IPv6 host must be written [ADDR]:PORT");
  errno = 0;
  port = strtol(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end || port < 0 || port > TCP_PORT_MAX)
    return bad(error, flag, env, "port must be a number from 0 to 65535");
  return true;
}

static bool check_file(const char *path, const char *flag, const char *env,
                       fzip_error_t *error) {
  if (!path)
    return true;
  if (!*path)
    return bad(error, flag, env, "empty path");
  if (access(path, R_OK) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--%s (%s): %s: %s", flag, env, path, strerror(errno));
  return true;
}

static bool check_auth(fzipd_config_t *c, fzip_error_t *error) {
  if (c->insecure_dev_auth) {
    if (c->jwt_public_key_file)
      return bad(error, "insecure-dev-auth", "FZIP_INSECURE_DEV_AUTH",
                 "cannot be combined with --jwt-public-key-file");
    /* The dev secret file may not exist yet: fzipd creates it. */
    if (!c->jwt_secret_file)
      c->jwt_secret_file = FZIPD_DEV_SECRET_FILE;
    return true;
  }
  if (!c->jwt_secret_file && !c->jwt_public_key_file)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "no JWT key configured: set --jwt-secret-file or "
                          "--jwt-public-key-file (or --insecure-dev-auth for local development)");
  if (c->jwt_secret_file && c->jwt_public_key_file)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "set either --jwt-secret-file or --jwt-public-key-file, not both");
  return check_file(c->jwt_secret_file, "jwt-secret-file", "FZIP_JWT_SECRET_FILE", error) &&
         check_file(c->jwt_public_key_file, "jwt-public-key-file", "FZIP_JWT_PUBLIC_KEY_FILE",
                    error);
}

static bool check_tls(const fzipd_config_t *c, fzip_error_t *error) {
  if (!c->tls_cert != !c->tls_key)
    return bad(error, "tls-cert", "FZIP_TLS_CERT", "--tls-cert and --tls-key go together");
  if (c->tls_client_ca && !c->tls_cert)
    return bad(error, "tls-client-ca", "FZIP_TLS_CLIENT_CA", "needs --tls-cert and --tls-key");
  return check_file(c->tls_cert, "tls-cert", "FZIP_TLS_CERT", error) &&
         check_file(c->tls_key, "tls-key", "FZIP_TLS_KEY", error) &&
         check_file(c->tls_client_ca, "tls-client-ca", "FZIP_TLS_CLIENT_CA", error);
}

static bool has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool check_store(const fzipd_config_t *c, fzip_error_t *error) {
  const char *u = c->store_uri;
  if (has_prefix(u, SQLITE_SCHEME) && u[strlen(SQLITE_SCHEME)])
    return true;
  if (has_prefix(u, "mongodb://") || has_prefix(u, "mongodb+srv://"))
    return true;
  return bad(error, "store", "FZIP_STORE", "want sqlite:PATH or mongodb://...");
}

bool fzipd_config_parse(fzipd_config_t *out, int argc, char **argv, fzip_error_t *error) {
  fzip_log_level_t level;

  memset(out, 0, sizeof *out);
  if (!parse_table(out, &out->help, SERVE_OPTIONS, N_ROWS(SERVE_OPTIONS), argc, argv, error))
    return false;
  if (out->help)
    return true;
  if (!fzip_log_level_parse(&level, out->log_level))
    return bad(error, "log-level", "FZIP_LOG_LEVEL", "want debug, info, warn or error");
  if (out->metrics_listen &&
      !check_listen(out->metrics_listen, "metrics-listen", "FZIP_METRICS_LISTEN", error))
    return false;
  return check_listen(out->listen, "listen", "FZIP_LISTEN", error) && check_store(out, error) &&
         check_auth(out, error) &&
         check_tls(out, error);
}

void fzipd_config_print_help(FILE *f) {
  fprintf(f,
          "fzipd: backup and restore service for HouseF3 data (gRPC, fzip.v1).\n"
          "\n"
          "Usage:\n"
          "  fzipd [serve] [OPTIONS]   serve gRPC (the default)\n"
          "  fzipd token --secret-file F --user ID [--ttl-seconds N] [--issuer I] "
          "[--audience A]\n"
          "                            print a development HS256 token\n"
          "  fzipd seed --help           write a synthetic dataset into a store\n"
          "  fzipd version, --version  version, API, package format and libraries\n"
          "  fzipd help                this text\n"
          "\n"
          "Options of serve (flags override environment variables):\n");
  print_rows(f, SERVE_OPTIONS, N_ROWS(SERVE_OPTIONS));
  fprintf(f, "\nOptions of token:\n");
  print_rows(f, TOKEN_OPTIONS, N_ROWS(TOKEN_OPTIONS));
  fprintf(f, "\nfzipd refuses to start without a JWT key unless --insecure-dev-auth is "
             "given.\nSIGTERM or SIGINT stops it gracefully.\n");
}

bool fzipd_token_config_parse(fzipd_token_config_t *out, int argc, char **argv,
                              fzip_error_t *error) {
  memset(out, 0, sizeof *out);
  if (!parse_table(out, &out->help, TOKEN_OPTIONS, N_ROWS(TOKEN_OPTIONS), argc, argv, error))
    return false;
  if (out->help)
    return true;
  if (!out->secret_file)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "token: --secret-file (FZIP_JWT_SECRET_FILE) is required");
  if (!out->user_id)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "token: --user is required");
  return true;
}

void fzipd_token_config_print_help(FILE *f) {
  fprintf(f, "Usage: fzipd token --secret-file F --user ID [--ttl-seconds N] [--issuer I] "
             "[--audience A]\n\nOptions:\n");
  print_rows(f, TOKEN_OPTIONS, N_ROWS(TOKEN_OPTIONS));
}
