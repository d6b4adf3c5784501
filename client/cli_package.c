/*
 * cli_package: `fzip package inspect|verify FILE`, offline.  An encrypted
 * package (FZIPENC1) is first opened with --identity/--passphrase into a
 * private temporary file (cli_key.h), and that file is read.
 *
 * Both read the file with the project's package reader and validator
 * (pkg/pkg_reader.h, pkg/pkg_validate.h), the same code fzipd runs on an
 * upload, so a package that passes here passes the server's checks short
 * of the conflict preview (which needs the user's data).  Nothing here
 * parses zip or JSON itself.
 *
 * inspect prints what the manifest says, after the archive checks;
 * verify runs the whole validation (schema, references, every checksum,
 * counts) and exits 3 listing the first problems when the package fails.
 */
#include "cli_package.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli_ctx.h"
#include "cli_key.h"
#include "cli_msg.h"
#include "cli_xfer.h"
#include "fzip_entity.h"
#include "pkg_apply.h"
#include "pkg_json.h"
#include "pkg_reader.h"
#include "pkg_validate.h"

#define ISSUES_SHOWN 20 /* problems listed in text output */

/* `package apply` takes the whole chain as positionals (cli_args.c also
 * stops at the array's size, so a mismatch would only refuse chains). */
_Static_assert(PKGA_CHAIN_MAX <= CLI_ARGS_MAX_POSITIONAL,
               "cli_args_t.positional cannot hold a PKGA_CHAIN_MAX chain");

/* ---- JSON helpers over the project's writer ------------------------------- */

static bool stdout_sink(void *ctx, const void *data, size_t len, fzip_error_t *error) {
  if (fwrite(data, 1, len, stdout) != len)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "write to stdout failed");
  return true;
}

/* Literal JSON text: its length is the string's, never counted by hand. */
static bool raw(pkgjson_writer_t *w, const char *text, fzip_error_t *error) {
  return pkgjson_write_raw(w, text, strlen(text), error);
}

/* Writes ,"key": and the string value; `first` says whether a comma is due. */
static bool json_kv_str(pkgjson_writer_t *w, bool first, const char *key, const char *value,
                        fzip_error_t *error) {
  const char *v = value ? value : "";
  return (first || raw(w, ",", error)) &&
         pkgjson_write_string(w, key, strlen(key), error) && raw(w, ":", error) &&
         pkgjson_write_string(w, v, strlen(v), error);
}

/* Counts and times are 64-bit: strings, like every int64 the CLI prints
 * (cli_msg.h: exact in jq and JavaScript). */
static bool json_kv_int(pkgjson_writer_t *w, const char *key, int64_t value, fzip_error_t *error) {
  char v[sizeof "-9223372036854775808"];
  snprintf(v, sizeof v, "%" PRId64, value);
  return json_kv_str(w, false, key, v, error);
}

/* ---- inspect -------------------------------------------------------------- */

static void print_issue_line(FILE *f, pkgr_severity_t severity, const char *rule,
                             const char *entry, const char *entity_id, const char *field,
                             const char *reason) {
  fprintf(f, "  %s %s: %s%s%s%s%s%s%s\n", severity == PKGR_SEVERITY_ERROR ? "error" : "warning",
          rule ? rule : "", entry && entry[0] ? entry : "", entity_id && entity_id[0] ? " id " : "",
          entity_id ? entity_id : "", field && field[0] ? " field " : "", field ? field : "",
          entry || entity_id || field ? ": " : "", reason ? reason : "");
}

typedef struct {
  int shown;
  int errors;
} issue_tally_t;

static void on_open_issue(void *ctx, const pkgr_issue_t *issue) {
  issue_tally_t *t = ctx;
  if (issue->severity == PKGR_SEVERITY_ERROR)
    t->errors++;
  if (t->shown++ < ISSUES_SHOWN)
    print_issue_line(stderr, issue->severity, issue->rule, issue->entry, issue->entity_id,
                     issue->field, issue->reason);
}

static void print_info_text(const pkgr_t *r) {
  const pkgr_info_t *info = pkgr_info(r);
  char when[40];
  cli_msg_format_time(when, sizeof when, info->export_timestamp_ms);
  printf("format_version: %s\nflavour: %s\nexport_timestamp: %s (%" PRId64 ")\n"
         "export_type: %s\napplication_version: %s\nsource_user_id: %s\n",
         info->format_version, info->flavour, when, info->export_timestamp_ms, info->export_type,
         info->application_version, info->source_user_id);
  for (int k = 0; k < FZIP_KIND_COUNT; k++)
    printf("%s: %s%s, declared %" PRIu64 "%s\n", fzip_kind_info((fzip_kind_t)k)->name,
           pkgr_has_kind(r, (fzip_kind_t)k) ? "present" : "absent",
           "", info->count[k], info->has_count[k] ? "" : " (no count)");
  printf("files: %zu entries%s\n", pkgr_file_count(r), info->has_files_count ? "" : "");
  if (info->incremental)
    printf("incremental: chain length %" PRId64 " on base export %s (sha256 %s), changes %" PRId64
           " to %" PRId64 "; restore with `fzip package apply`\n",
           info->chain_length, info->base_export_id, info->base_package_sha256,
           info->base_change_seq, info->change_seq);
}

/* FORMAT.md 15: an increment names its base. */
static bool print_incremental_json(pkgjson_writer_t *w, const pkgr_info_t *info,
                                   fzip_error_t *error) {
  if (!info->incremental)
    return true;
  return raw(w, ",\"incremental\":{", error) &&
         json_kv_str(w, true, "base_export_id", info->base_export_id, error) &&
         json_kv_str(w, false, "base_package_sha256", info->base_package_sha256, error) &&
         json_kv_int(w, "base_change_seq", info->base_change_seq, error) &&
         json_kv_int(w, "change_seq", info->change_seq, error) &&
         json_kv_int(w, "chain_length", info->chain_length, error) && raw(w, "}", error);
}

static bool print_info_json(const pkgr_t *r, const char *path, fzip_error_t *error) {
  const pkgr_info_t *info = pkgr_info(r);
  pkgjson_writer_t *w = pkgjson_writer_new(stdout_sink, NULL);
  bool ok = false;
  if (!w)
    return fzip_error_oom(error, NULL);
  if (!raw(w, "{", error) || !json_kv_str(w, true, "file", path, error) ||
      !json_kv_str(w, false, "format_version", info->format_version, error) ||
      !json_kv_str(w, false, "flavour", info->flavour, error) ||
      !json_kv_int(w, "export_timestamp", info->export_timestamp_ms, error) ||
      !json_kv_str(w, false, "export_type", info->export_type, error) ||
      !json_kv_str(w, false, "application_version", info->application_version, error) ||
      !json_kv_str(w, false, "source_user_id", info->source_user_id, error) ||
      !json_kv_int(w, "files", (int64_t)pkgr_file_count(r), error))
    goto done;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    char key[64];
    snprintf(key, sizeof key, "%s_count", fzip_kind_info((fzip_kind_t)k)->name);
    if (info->has_count[k] && !json_kv_int(w, key, (int64_t)info->count[k], error))
      goto done;
  }
  ok = print_incremental_json(w, info, error) && raw(w, "}\n", error) && pkgjson_flush(w, error);
done:
  pkgjson_writer_destroy(w);
  return ok;
}

static int inspect_file(cli_ctx_t *ctx, const char *path, const char *file) {
  issue_tally_t tally = {0, 0};
  fzip_error_t error = {0};
  pkgr_t *r = NULL;
  int rc = CLI_EXIT_OK;
  if (!pkgr_open(&r, file, NULL, on_open_issue, &tally, &error)) {
    fprintf(stderr, "fzip: %s: %s\n", path, error.message);
    return error.domain == FZIP_DOMAIN_VALIDATION ? CLI_EXIT_VERIFY : CLI_EXIT_FAILED;
  }
  if (ctx->json) {
    if (!print_info_json(r, path, &error))
      rc = cli_fail(ctx, &error);
  } else {
    print_info_text(r);
  }
  fflush(stdout);
  pkgr_destroy(r);
  return rc;
}

/* An encrypted package is opened first (cli_key), then read as a plain one. */
static int run_inspect(cli_ctx_t *ctx, const cli_args_t *args) {
  const char *path = args->positional[0], *file = NULL;
  cli_key_plain_t plain;
  int rc = cli_key_open_package(&file, &plain, args, path);
  if (rc == CLI_EXIT_OK)
    rc = inspect_file(ctx, path, file);
  cli_key_plain_cleanup(&plain);
  return rc;
}

/* ---- verify --------------------------------------------------------------- */

static void print_result_text(const pkgv_result_t *res, const char *path) {
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    const pkgv_counts_t *c = &res->counts[k];
    printf("%-18s %8" PRIu64 " entities, %" PRIu64 " valid, %" PRIu64 " errors, %" PRIu64
           " warnings\n",
           fzip_kind_info((fzip_kind_t)k)->name, c->in_package, c->valid, c->errors, c->warnings);
  }
  printf("%-18s %8" PRIu64 " entries, %" PRIu64 " bytes\n", "files", res->files_in_package,
         res->file_bytes);
  for (size_t i = 0; i < res->n_issues && i < ISSUES_SHOWN; i++) {
    const pkgv_issue_t *is = &res->issues[i];
    print_issue_line(res->passed ? stdout : stderr, is->severity, is->rule, is->entry,
                     is->entity_id, is->field, is->reason);
  }
  if (res->issues_total > ISSUES_SHOWN)
    fprintf(res->passed ? stdout : stderr, "  ... %" PRIu64 " issues in all\n", res->issues_total);
  if (res->passed)
    printf("OK %s: package verified (%" PRIu64 " warnings)\n", path, res->warnings_total);
  else
    fprintf(stderr, "fzip: %s: package verification failed: %" PRIu64 " errors, %" PRIu64
            " warnings\n", path, res->errors_total, res->warnings_total);
}

static bool json_issue(pkgjson_writer_t *w, const pkgv_issue_t *is, bool first,
                       fzip_error_t *error) {
  return (first || raw(w, ",", error)) && raw(w, "{", error) &&
         json_kv_str(w, true, "severity", is->severity == PKGR_SEVERITY_ERROR ? "error" : "warning",
                     error) &&
         json_kv_str(w, false, "rule", is->rule, error) &&
         json_kv_str(w, false, "entry", is->entry, error) &&
         json_kv_str(w, false, "entity_id", is->entity_id, error) &&
         json_kv_str(w, false, "field", is->field, error) &&
         json_kv_str(w, false, "reason", is->reason, error) && raw(w, "}", error);
}

static bool print_result_json(const pkgv_result_t *res, const char *path, fzip_error_t *error) {
  pkgjson_writer_t *w = pkgjson_writer_new(stdout_sink, NULL);
  bool ok = false;
  if (!w)
    return fzip_error_oom(error, NULL);
  if (!raw(w, "{", error) || !json_kv_str(w, true, "file", path, error) ||
      !raw(w, res->passed ? ",\"passed\":true" : ",\"passed\":false", error) ||
      !json_kv_int(w, "errors", (int64_t)res->errors_total, error) ||
      !json_kv_int(w, "warnings", (int64_t)res->warnings_total, error) ||
      !json_kv_int(w, "files", (int64_t)res->files_in_package, error))
    goto done;
  for (int k = 0; k < FZIP_KIND_COUNT; k++) {
    char key[64];
    snprintf(key, sizeof key, "%s_count", fzip_kind_info((fzip_kind_t)k)->name);
    if (!json_kv_int(w, key, (int64_t)res->counts[k].in_package, error))
      goto done;
  }
  if (!raw(w, ",\"issues\":[", error))
    goto done;
  for (size_t i = 0; i < res->n_issues; i++)
    if (!json_issue(w, &res->issues[i], i == 0, error))
      goto done;
  ok = raw(w, "]}\n", error) && pkgjson_flush(w, error);
done:
  pkgjson_writer_destroy(w);
  return ok;
}

static int verify_file(cli_ctx_t *ctx, const char *path, const char *file) {
  pkgv_options_t o = {.exists = NULL, .strategy = PKGV_FAIL_ON_CONFLICT};
  pkgv_result_t *res = NULL;
  fzip_error_t error = {0};
  int rc;
  if (!pkgv_validate(&res, file, &o, &error)) {
    fprintf(stderr, "fzip: %s: %s\n", path, error.message);
    return CLI_EXIT_FAILED;
  }
  if (ctx->json) {
    if (!print_result_json(res, path, &error)) {
      pkgv_result_destroy(res);
      return cli_fail(ctx, &error);
    }
  } else {
    print_result_text(res, path);
  }
  fflush(stdout);
  rc = res->passed ? CLI_EXIT_OK : CLI_EXIT_VERIFY;
  pkgv_result_destroy(res);
  return rc;
}

static int run_verify(cli_ctx_t *ctx, const cli_args_t *args) {
  const char *path = args->positional[0], *file = NULL;
  cli_key_plain_t plain;
  int rc = cli_key_open_package(&file, &plain, args, path);
  if (rc == CLI_EXIT_OK)
    rc = verify_file(ctx, path, file);
  cli_key_plain_cleanup(&plain);
  return rc;
}

/* ---- apply ---------------------------------------------------------------- */

/* What one chain member needs: its hash as given, its plaintext. */
typedef struct {
  pkga_input_t in;
  char sha256[FZIP_SHA256_HEX_LEN + 1];
  cli_key_plain_t plain;
} apply_file_t;

static void print_apply_text(const pkga_result_t *res, const char *output, int increments) {
  printf("OK %s: base + %d increment(s) applied: %" PRIu64 " bytes, sha256 %s\n"
         "   %" PRIu64 " entities replaced, %" PRIu64 " deleted, %" PRIu64 " files (%" PRIu64
         " missing)\n",
         output, increments, res->package.package_size, res->package.package_sha256,
         res->entities_replaced, res->entities_deleted, res->package.files_count,
         res->package.files_missing);
}

static bool print_apply_json(const pkga_result_t *res, const char *output, int increments,
                             fzip_error_t *error) {
  pkgjson_writer_t *w = pkgjson_writer_new(stdout_sink, NULL);
  bool ok;
  if (!w)
    return fzip_error_oom(error, NULL);
  ok = raw(w, "{", error) && json_kv_str(w, true, "file", output, error) &&
       json_kv_str(w, false, "sha256", res->package.package_sha256, error) &&
       json_kv_int(w, "size", (int64_t)res->package.package_size, error) &&
       json_kv_int(w, "increments", increments, error) &&
       json_kv_int(w, "entities_replaced", (int64_t)res->entities_replaced, error) &&
       json_kv_int(w, "entities_deleted", (int64_t)res->entities_deleted, error) &&
       json_kv_int(w, "files", (int64_t)res->package.files_count, error) &&
       json_kv_int(w, "files_missing", (int64_t)res->package.files_missing, error) &&
       raw(w, "}\n", error) && pkgjson_flush(w, error);
  pkgjson_writer_destroy(w);
  return ok;
}

/* Hashes each file as given (the chain links name the envelope of a
 * sealed one), then opens it: the plaintext is what pkg_apply reads. */
static int apply_open(apply_file_t *f, const cli_args_t *args, const char *path) {
  fzip_error_t error = {0};
  const char *use = NULL;
  int64_t size = 0;
  int rc;
  if (!cli_xfer_hash_file(f->sha256, &size, path, &error)) {
    fprintf(stderr, "fzip: %s\n", error.message);
    return CLI_EXIT_FAILED;
  }
  rc = cli_key_open_package(&use, &f->plain, args, path);
  f->in = (pkga_input_t){.path = use, .name = path, .sha256 = f->sha256};
  return rc;
}

static int run_apply(cli_ctx_t *ctx, const cli_args_t *args) {
  const char *output = cli_args_get(args, "--output");
  int n = args->n_positional, rc = CLI_EXIT_OK;
  apply_file_t *files = calloc((size_t)n, sizeof *files);
  pkga_input_t *inputs = calloc((size_t)n, sizeof *inputs);
  pkga_result_t res;
  fzip_error_t error = {0};

  if (!files || !inputs) {
    fzip_error_oom(&error, "package apply");
    rc = cli_fail(ctx, &error);
    goto done;
  }
  if (!output || !output[0]) {
    fprintf(stderr, "fzip: package apply needs --output FILE\n");
    rc = CLI_EXIT_USAGE;
    goto done;
  }
  for (int i = 0; i < n && rc == CLI_EXIT_OK; i++) {
    rc = apply_open(&files[i], args, args->positional[i]);
    inputs[i] = files[i].in;
  }
  if (rc != CLI_EXIT_OK)
    goto done;
  if (!pkga_apply(&res, inputs, (size_t)n, output, NULL, &error)) {
    fprintf(stderr, "fzip: %s\n", error.message);
    /* A chain that does not hold, a package refused or failing its
     * checksums: the packages' fault (3); a local file problem: 1. */
    rc = error.domain == FZIP_DOMAIN_VALIDATION || error.domain == FZIP_DOMAIN_PACKAGE
             ? CLI_EXIT_VERIFY
             : CLI_EXIT_FAILED;
    goto done;
  }
  if (!ctx->json)
    print_apply_text(&res, output, n - 1);
  else if (!print_apply_json(&res, output, n - 1, &error))
    rc = cli_fail(ctx, &error);
  fflush(stdout);
done:
  for (int i = 0; files && i < n; i++)
    cli_key_plain_cleanup(&files[i].plain);
  free(files);
  free(inputs);
  return rc;
}

static const cli_opt_t apply_opts[] = {
    {"--output", 'o', CLI_OPT_VALUE, "FILE",
     NULL, "the complete package to write (replaced only once whole)"},
    CLI_KEY_IDENTITY_OPTS,
    {NULL, 0, 0, NULL, NULL, NULL},
};

static const cli_opt_t open_opts[] = {
    CLI_KEY_IDENTITY_OPTS,
    {NULL, 0, 0, NULL, NULL, NULL},
};

const cli_command_t cli_package_commands[] = {
    {"package", "inspect", "FILE", 1, 1, open_opts, "Print a package's manifest summary (offline).",
     "Runs the archive and manifest checks first; exits 3 if the package is refused.\n"
     "An encrypted package needs --identity or --passphrase; exits 3 if it does not open.",
     run_inspect, NULL},
    {"package", "verify", "FILE", 1, 1, open_opts,
     "Verify a package: schema, references, every checksum (offline).",
     "The same validation fzipd runs on upload, without the conflict preview.\n"
     "Exits 3 and lists the first problems when the package fails.  An encrypted\n"
     "package is decrypted first (--identity or --passphrase; exit 3 when the key is\n"
     "wrong or a byte changed, before anything is read).",
     run_verify, NULL},
    {"package", "apply", "BASE INC1 [INC2 ...]", 2, PKGA_CHAIN_MAX, apply_opts,
     "Apply incremental packages to their base: one complete package (offline).",
     "BASE is a complete package, each INC an increment of the package before it\n"
     "(`fzip export create --incremental`), in order.  The result is the package a\n"
     "complete export at the last increment's moment would be, byte for byte.  Exits 3,\n"
     "writing nothing, when the chain does not hold together (wrong order, a missing\n"
     "link, another base) or a package fails its checksums.  Encrypted packages are\n"
     "opened with --identity or --passphrase (asked per file unless FZIP_PASSPHRASE is\n"
     "set); the result is not encrypted.",
     run_apply, NULL},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL},
};
