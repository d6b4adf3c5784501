/*
 * fzipd_config: fzipd's settings from flags and environment.
 *
 * Every setting is one row of a table (flag, environment variable, default,
 * meaning, limits) and the parser, `--help` and validation all read that
 * table, so a setting cannot be documented but unparsed or the reverse.
 * Precedence: built-in default < environment < command-line flag.
 *
 * The config struct is public and read-only after parsing: other modules
 * (rpc options, export runner, store) read its fields.  String fields are
 * borrowed from argv, the environment or static defaults, all of which
 * live as long as the process.
 */
#ifndef FZIPD_CONFIG_H
#define FZIPD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fzip_error.h"

#define FZIPD_DEFAULT_LISTEN "127.0.0.1:50051"
#define FZIPD_DEFAULT_STORE "sqlite:./fzip.db"
/* Where --insecure-dev-auth keeps its generated secret unless
 * --jwt-secret-file names another file. */
#define FZIPD_DEV_SECRET_FILE "./fzipd-dev-jwt.secret"

typedef struct {
  const char *listen;         /* HOST:PORT; port 0 picks a free port */
  const char *metrics_listen; /* HOST:PORT of GET /metrics; NULL: no metrics endpoint */
  const char *store_uri;      /* sqlite:PATH | mongodb://... */
  const char *store_database; /* MongoDB database name; NULL: backend default */
  const char *jwt_secret_file;
  const char *jwt_public_key_file;
  const char *jwt_issuer;   /* NULL: not checked */
  const char *jwt_audience; /* NULL: not checked */
  const char *tls_cert;
  const char *tls_key;
  const char *tls_client_ca;
  int64_t workers;
  int64_t cq_threads;
  int64_t max_message_bytes;
  int64_t max_upload_bytes;
  int64_t export_workers;
  int64_t export_ttl_s;
  int64_t import_workers;
  int64_t max_queued_jobs_per_user; /* 0: no cap */
  int64_t job_retention_hours;
  int64_t import_undo_window_hours; /* a COMPLETED import can be undone this long; 0: never */
  int64_t import_undo_window_ms;    /* tests: overrides the hours when >= 0; -1: unset */
  int64_t import_batch_bytes;       /* tests: documents' bytes per restore batch */
  int64_t reaper_interval_ms;
  int64_t schedule_tick_ms;         /* how often due export schedules are looked for */
  const char *test_clock_offset_file; /* tests: ms added to the schedules' clock; NULL: none */
  int64_t health_check_interval_ms; /* store ping period of the health checker */
  int64_t job_lease_ms;
  const char *temp_dir; /* NULL: $TMPDIR or /tmp; serve points it at its private dir */
  const char *temp_root; /* not a flag: the root of that private dir (tempdir.h), for the sweep */
  int64_t uncommitted_blob_age_s;
  int64_t shutdown_grace_ms;
  const char *log_level;
  bool insecure_dev_auth; /* HS256 with a generated secret: local development only */
  bool help;              /* --help was given: print fzipd_config_print_help and exit 0 */
} fzipd_config_t;

/* Parses `fzipd serve` arguments (argv[0] is the first argument, not the
 * program name) over the environment, then validates.  In insecure dev
 * mode with no secret file given, jwt_secret_file becomes
 * FZIPD_DEV_SECRET_FILE.  Errors are CONFIG/INVALID_ARGUMENT and name the
 * flag and its environment variable. */
bool fzipd_config_parse(fzipd_config_t *out, int argc, char **argv, fzip_error_t *error);

/* The full `fzipd --help` text: subcommands, then every option with its
 * environment variable, default and meaning. */
void fzipd_config_print_help(FILE *f);

/* `fzipd token` options. */
typedef struct {
  const char *secret_file;
  const char *user_id;
  int64_t ttl_s;
  const char *issuer;
  const char *audience;
  bool help;
} fzipd_token_config_t;

bool fzipd_token_config_parse(fzipd_token_config_t *out, int argc, char **argv,
                              fzip_error_t *error);
void fzipd_token_config_print_help(FILE *f);

#endif
