/*
 * cli_import: `fzip import ...`.  upload and start are specific to
 * imports; the rest are the shared job commands (cli_jobs).
 *
 * Upload hashes the file first and announces its size and sha256 in the
 * options message, so the server can refuse a package that changed or was
 * truncated in transit before it is ever validated.  --validate-only and
 * --wait imply --start: an upload that is to be validated or waited for
 * has to be started.
 *
 * --resume ID continues an upload whose stream broke (the server kept
 * what it received: the job is UPLOADED, phase "interrupted"): the client
 * asks GetImport for received_bytes and sends the file from there; the
 * server checks size and sha256 over the whole package.
 */
#include "cli_import.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "cli_jobs.h"
#include "cli_key.h"
#include "cli_msg.h"
#include "cli_progress.h"
#include "cli_select.h"
#include "cli_xfer.h"
#include "fzip_entity.h"
#include "fzip/v1/import_service.pb-c.h"
#include "fzip_util.h"

#define SVC "/fzip.v1.ImportService/"
#define M(name, snake)                                                                    \
  { SVC name, &fzip__v1__##snake##_request__descriptor, &fzip__v1__##snake##_response__descriptor }
#define FILE_NAME_MAX 255

static bool import_failed(int status) {
  return status == FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_FAILED ||
         status == FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_VALIDATION_FAILED ||
         status == FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_CANCELLED;
}

static const cli_job_kind_t import_kind = {
    .noun = "import",
    .id_field = "import_id",
    .get = M("GetImport", get_import),
    .list = M("ListImports", list_imports),
    .del = M("DeleteImport", delete_import),
    .cancel = M("CancelImport", cancel_import),
    .watch = M("WatchImport", watch_import),
    .failed = import_failed,
};

static bool parse_strategy(int *out, const cli_args_t *args, fzip_error_t *error) {
  const char *s = cli_args_get(args, "--strategy");
  *out = 0;
  if (s && !cli_msg_enum_parse(out, &fzip__v1__merge_strategy__descriptor, s))
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--strategy: unknown merge strategy '%s'", s);
  return true;
}

/* --as-copy, --drop-dangling, --kinds, --accounts: fzip.v1.RestoreOptions
 * (docs/IMPORT.md "Restore as a copy", "Partial packages and selective
 * import"); call restore_cleanup afterwards, also on failure. */
typedef struct {
  Fzip__V1__RestoreOptions msg;
  Fzip__V1__EntityKind kinds[FZIP_KIND_COUNT];
  cli_select_t sel; /* --accounts */
} restore_opts_t;

static bool parse_kinds(restore_opts_t *ro, const char *text, fzip_error_t *error) {
  char *copy = strdup(text), *save = NULL;
  bool ok = copy != NULL;
  if (!copy)
    return fzip_error_oom(error, "--kinds");
  for (char *name = strtok_r(copy, ",", &save); ok && name; name = strtok_r(NULL, ",", &save)) {
    fzip_kind_t k;
    bool seen = false;
    if (!fzip_kind_from_name(&k, name)) {
      ok = fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--kinds: unknown kind '%s' (accounts, categories, file_maps, "
                          "transaction_files, transactions, analytics)", name);
      break;
    }
    for (size_t i = 0; i < ro->msg.n_kinds; i++)
      seen = seen || ro->kinds[i] == (Fzip__V1__EntityKind)(k + 1);
    if (!seen) /* EntityKind follows fzip_kind_t, from 1 */
      ro->kinds[ro->msg.n_kinds++] = (Fzip__V1__EntityKind)(k + 1);
  }
  free(copy);
  return ok;
}

/* *out: the options to send, NULL when none is given (the defaults). */
static bool parse_restore(Fzip__V1__RestoreOptions **out, restore_opts_t *ro,
                          const cli_args_t *args, fzip_error_t *error) {
  const char *kinds = cli_args_get(args, "--kinds");
  *out = NULL;
  memset(ro, 0, sizeof *ro);
  fzip__v1__restore_options__init(&ro->msg);
  ro->msg.kinds = ro->kinds;
  ro->msg.as_copy = cli_args_flag(args, "--as-copy");
  ro->msg.drop_dangling_references = cli_args_flag(args, "--drop-dangling");
  if ((kinds && !parse_kinds(ro, kinds, error)) || !cli_select_parse(&ro->sel, args, error))
    return false;
  ro->msg.account_ids = ro->sel.ids;
  ro->msg.n_account_ids = ro->sel.n_ids;
  if (ro->msg.as_copy || ro->msg.drop_dangling_references || ro->msg.n_kinds ||
      ro->msg.n_account_ids)
    *out = &ro->msg;
  return true;
}

static void restore_cleanup(restore_opts_t *ro) { cli_select_cleanup(&ro->sel); }

/* Reports the job, or follows it with --wait. */
static int report_or_wait(cli_ctx_t *ctx, const cli_args_t *args, const ProtobufCMessage *job) {
  if (!cli_args_flag(args, "--wait") || !job)
    return cli_jobs_report(ctx, &import_kind, job);
  if (!ctx->quiet)
    fprintf(stderr, "import %s started\n", cli_msg_string(job, "import_id"));
  return cli_jobs_watch(ctx, &import_kind, cli_msg_string(job, "import_id"));
}

/* ---- upload ---------------------------------------------------------------- */

typedef struct {
  const char *path;
  const char *resume_id; /* --resume: continue this import */
  int64_t offset;        /* where the chunks start (received_bytes when resuming) */
  char file_name[FILE_NAME_MAX + 1];
  char sha256[FZIP_SHA256_HEX_LEN + 1];
  int64_t size;
  int64_t rate;
  FILE *in;
  unsigned char *buf;
  cli_key_plain_t plain; /* an encrypted FILE's plaintext, sent in its place */
} upload_t;

static bool send_options(rpc_client_call_t *call, const upload_t *u, const cli_args_t *args,
                         fzip_error_t *error) {
  Fzip__V1__UploadImportRequest req = FZIP__V1__UPLOAD_IMPORT_REQUEST__INIT;
  Fzip__V1__ImportOptions o = FZIP__V1__IMPORT_OPTIONS__INIT;
  const char *request_id = cli_args_get(args, "--request-id");
  restore_opts_t ro;
  int strategy = 0;
  bool ok;
  memset(&ro, 0, sizeof ro);
  if (!parse_strategy(&strategy, args, error) || !parse_restore(&o.restore, &ro, args, error)) {
    restore_cleanup(&ro);
    return false;
  }
  o.merge_strategy = (Fzip__V1__MergeStrategy)strategy;
  o.validate_only = cli_args_flag(args, "--validate-only");
  o.start = cli_args_flag(args, "--start") || o.validate_only || cli_args_flag(args, "--wait");
  o.expected_size = u->size;
  o.expected_sha256 = (char *)u->sha256;
  o.file_name = (char *)u->file_name;
  o.resume_import_id = (char *)(u->resume_id ? u->resume_id : "");
  o.request_id = (char *)(request_id ? request_id : "");
  o.resume_offset = u->offset;
  req.payload_case = FZIP__V1__UPLOAD_IMPORT_REQUEST__PAYLOAD_OPTIONS;
  req.options = &o;
  ok = rpc_client_call_write(call, &req.base, error);
  restore_cleanup(&ro);
  return ok;
}

static bool send_chunks(rpc_client_call_t *call, upload_t *u, cli_progress_t *progress,
                        fzip_error_t *error) {
  Fzip__V1__UploadImportRequest req = FZIP__V1__UPLOAD_IMPORT_REQUEST__INIT;
  int64_t sent = u->offset, started = fzip_monotonic_ms();
  req.payload_case = FZIP__V1__UPLOAD_IMPORT_REQUEST__PAYLOAD_CHUNK;
  while (sent < u->size) {
    size_t want = u->size - sent < CLI_XFER_CHUNK ? (size_t)(u->size - sent) : CLI_XFER_CHUNK;
    size_t n = fread(u->buf, 1, want, u->in);
    if (n != want)
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL,
                            "%s: changed while uploading (read failed at byte %" PRId64 ")",
                            u->path, sent);
    req.chunk.data = u->buf;
    req.chunk.len = n;
    if (!rpc_client_call_write(call, &req.base, error))
      return false;
    sent += (int64_t)n;
    cli_progress_bytes(progress, sent, u->size, 0);
    cli_xfer_throttle(sent - u->offset, started, u->rate);
  }
  return true;
}

static bool prepare_upload(upload_t *u, const cli_args_t *args, fzip_error_t *error) {
  char copy[4096];
  snprintf(copy, sizeof copy, "%s", args->positional[0]); /* the name the user gave */
  snprintf(u->file_name, sizeof u->file_name, "%s", basename(copy));
  if (!cli_args_size(&u->rate, args, "--limit-rate", 1, CLI_XFER_RATE_MAX, error) ||
      !cli_xfer_hash_file(u->sha256, &u->size, u->path, error))
    return false;
  u->in = fopen(u->path, "rb");
  u->buf = malloc(CLI_XFER_CHUNK);
  if (!u->in)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", u->path,
                          strerror(errno));
  if (!u->buf)
    return fzip_error_oom(error, NULL);
  if (u->offset > u->size)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "%s has %" PRId64 " bytes but import %s already holds %" PRId64
                          ": not the file that was being uploaded",
                          u->path, u->size, u->resume_id, u->offset);
  if (u->offset > 0 && fseeko(u->in, (off_t)u->offset, SEEK_SET) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", u->path,
                          strerror(errno));
  return true;
}

/* --resume ID: where the server's copy of the upload ends. */
static bool resume_offset(upload_t *u, cli_ctx_t *ctx, fzip_error_t *error) {
  Fzip__V1__GetImportRequest req = FZIP__V1__GET_IMPORT_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  const ProtobufCMessage *job;
  bool ok = false;

  req.import_id = (char *)u->resume_id;
  if (!cli_ctx_unary(&resp, ctx, SVC "GetImport", &req.base,
                     &fzip__v1__get_import_response__descriptor, error))
    return false;
  job = cli_msg_sub(resp, "job");
  if (!job || strcmp(cli_msg_string(job, "current_phase"), "interrupted") != 0) {
    fzip_error_set(error, FZIP_DOMAIN_JOB, FZIP_ERR_FAILED_PRECONDITION,
                   "import %s is not an interrupted upload (phase %s)", u->resume_id,
                   job ? cli_msg_string(job, "current_phase") : "unknown");
    goto done;
  }
  u->offset = cli_msg_int(job, "received_bytes");
  ok = true;
done:
  protobuf_c_message_free_unpacked(resp, NULL);
  return ok;
}

static int run_upload(cli_ctx_t *ctx, const cli_args_t *args) {
  upload_t u;
  fzip_error_t error = {0};
  rpc_client_t *client = NULL;
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *resp = NULL;
  rpc_call_options_t o = cli_ctx_call_options(ctx, false);
  cli_progress_t *progress = NULL;
  int rc;
  memset(&u, 0, sizeof u);
  u.resume_id = cli_args_get(args, "--resume");
  /* An encrypted package is decrypted here, whole and verified, before a
   * byte is sent: the server never holds the key (docs/IMPORT.md). */
  rc = cli_key_open_package(&u.path, &u.plain, args, args->positional[0]);
  if (rc != CLI_EXIT_OK)
    goto done;
  if ((u.resume_id && !resume_offset(&u, ctx, &error)) || !prepare_upload(&u, args, &error) || !cli_ctx_client(&client, ctx, &error) ||
      !rpc_client_call_open(&call, client, SVC "UploadImport", &o,
                            &fzip__v1__upload_import_response__descriptor, &error) ||
      !send_options(call, &u, args, &error))
    goto failed;
  progress = cli_progress_new(cli_ctx_progress_mode(ctx), "upload");
  if (!send_chunks(call, &u, progress, &error) || !rpc_client_call_finish(&resp, call, &error))
    goto failed;
  cli_progress_destroy(progress);
  progress = NULL;
  rc = report_or_wait(ctx, args, resp ? cli_msg_sub(resp, "job") : NULL);
  goto done;
failed:
  cli_progress_destroy(progress);
  progress = NULL;
  /* A write fails with a bare transport error when the server ended the
   * call: its status, read by finish, says why. */
  if (call && rpc_client_call_status(call) < 0 && error.domain != FZIP_DOMAIN_SYS &&
      error.domain != FZIP_DOMAIN_CONFIG) {
    fzip_error_t why = {0};
    if (!rpc_client_call_finish(&resp, call, &why) && why.message[0])
      error = why;
  }
  rc = cli_fail(ctx, &error);
  /* A broken stream (not a refusal, which these codes cannot tell apart
   * from here) leaves the received bytes on the server. */
  if (call && (error.code == FZIP_ERR_UNAVAILABLE || error.code == FZIP_ERR_CANCELLED ||
               error.code == FZIP_ERR_DEADLINE_EXCEEDED) && !ctx->quiet)
    fprintf(stderr, "fzip: if the connection broke, the server kept what it received: `fzip "
                    "import list` shows it (phase interrupted); continue with `fzip import upload "
                    "%s --resume ID`\n",
            args->positional[0]);
done:
  cli_progress_destroy(progress);
  rpc_client_call_destroy(call);
  if (resp)
    protobuf_c_message_free_unpacked(resp, NULL);
  if (u.in)
    fclose(u.in);
  free(u.buf);
  cli_key_plain_cleanup(&u.plain);
  return rc;
}

/* ---- start ----------------------------------------------------------------- */

static int run_start(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__StartImportRequest req = FZIP__V1__START_IMPORT_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  fzip_error_t error = {0};
  restore_opts_t ro;
  int strategy = 0, rc;
  bool ok;
  memset(&ro, 0, sizeof ro);
  req.import_id = (char *)args->positional[0];
  req.validate_only = cli_args_flag(args, "--validate-only");
  ok = parse_strategy(&strategy, args, &error) && parse_restore(&req.restore, &ro, args, &error);
  req.merge_strategy = (Fzip__V1__MergeStrategy)strategy;
  ok = ok && cli_ctx_unary(&resp, ctx, SVC "StartImport", &req.base,
                           &fzip__v1__start_import_response__descriptor, &error);
  restore_cleanup(&ro);
  if (!ok)
    return cli_fail(ctx, &error);
  rc = report_or_wait(ctx, args, cli_msg_sub(resp, "job"));
  protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

/* ---- undo ------------------------------------------------------------------ */

/* An undo succeeded only if the job ends UNDONE: one refused goes back to
 * COMPLETED with the reason in its error. */
static bool undo_failed(int status) {
  return status != FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_UNDONE;
}

static int run_undo(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__UndoImportRequest req = FZIP__V1__UNDO_IMPORT_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  fzip_error_t error = {0};
  cli_job_kind_t undo_kind = import_kind;
  int rc;

  undo_kind.failed = undo_failed;
  req.import_id = (char *)args->positional[0];
  if (!cli_ctx_unary(&resp, ctx, SVC "UndoImport", &req.base,
                     &fzip__v1__undo_import_response__descriptor, &error))
    return cli_fail(ctx, &error);
  if (!cli_args_flag(args, "--wait")) {
    rc = cli_jobs_report(ctx, &import_kind, cli_msg_sub(resp, "job"));
  } else {
    if (!ctx->quiet)
      fprintf(stderr, "undo of import %s requested\n", req.import_id);
    rc = cli_jobs_watch(ctx, &undo_kind, req.import_id);
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

#define STRATEGY_OPT                                                                       \
  {"--strategy", 0, CLI_OPT_VALUE, "S", NULL,                                             \
   "fail_on_conflict|skip_existing|overwrite|merge_fields (default fail_on_conflict; "    \
   "docs/IMPORT.md \"Merge strategies\")"}
#define VALIDATE_OPT                                                                       \
  {"--validate-only", 0, CLI_OPT_FLAG, NULL, NULL, "validate and preview, change nothing"}
#define WAIT_OPT {"--wait", 0, CLI_OPT_FLAG, NULL, NULL, "follow the job until it ends"}
#define RESTORE_OPTS                                                                       \
  {"--as-copy", 0, CLI_OPT_FLAG, NULL, NULL,                                              \
   "restore as a copy: every entity gets a new id (references follow), so the package "   \
   "can go next to the data it came from, or twice"},                                     \
  {"--drop-dangling", 0, CLI_OPT_FLAG, NULL, NULL,                                        \
   "partial packages: clear references to what is neither in the package nor your data, " \
   "leave out transactions whose account is missing (counted per kind)"},                 \
  {"--kinds", 0, CLI_OPT_VALUE, "K,...", NULL,                                            \
   "only these kinds: accounts,categories,file_maps,transaction_files,transactions,"      \
   "analytics"},                                                                          \
  {"--accounts", 0, CLI_OPT_VALUE, "ID,...", NULL,                                        \
   "only these accounts and their file maps, files, transactions, analytics"}
#define END_OPT {NULL, 0, 0, NULL, NULL, NULL}

static const cli_opt_t upload_opts[] = {
    STRATEGY_OPT,
    VALIDATE_OPT,
    RESTORE_OPTS,
    {"--start", 0, CLI_OPT_FLAG, NULL, NULL, "start the import once uploaded"},
    WAIT_OPT,
    {"--limit-rate", 0, CLI_OPT_VALUE, "BYTES", NULL, "at most BYTES per second (e.g. 512k)"},
    {"--resume", 0, CLI_OPT_VALUE, "ID", NULL,
     "continue the interrupted upload ID (same file) from where the server's copy ends"},
    {"--request-id", 0, CLI_OPT_VALUE, "ID", NULL,
     "idempotency key of a new upload: the same ID within 24 h returns the same job "
     "and the file is not stored again"},
    CLI_KEY_IDENTITY_OPTS,
    END_OPT,
};

static const cli_opt_t start_opts[] = {STRATEGY_OPT, VALIDATE_OPT, RESTORE_OPTS, WAIT_OPT,
                                       END_OPT};

static const cli_opt_t undo_opts[] = {
    {"--wait", 0, CLI_OPT_FLAG, NULL, NULL,
     "follow the job until the undo ends (exit 1 unless it ends UNDONE)"},
    END_OPT,
};

const cli_command_t cli_import_commands[] = {
    {"import", "upload", "FILE", 1, 1, upload_opts, "Upload an FZIP package (prints the job).",
     "Sends the file's size and sha256 first; the server keeps the upload only if both\n"
     "match.  --validate-only and --wait imply --start.  If the stream breaks, the server\n"
     "keeps what it received (import list: phase interrupted); --resume ID sends the rest.",
     run_upload, NULL},
    {"import", "start", "ID", 1, 1, start_opts, "Start (or restart) an uploaded import.", NULL,
     run_start, NULL},
    {"import", "list", "", 0, 0, NULL, "List your import jobs, newest first.", NULL,
     cli_jobs_run_list, &import_kind},
    {"import", "status", "ID", 1, 1, NULL, "Show one import job.", NULL, cli_jobs_run_status,
     &import_kind},
    {"import", "watch", "ID", 1, 1, NULL, "Follow an import job until it ends.",
     "Exits 1 if validation or the import fails, or the job is cancelled.", cli_jobs_run_watch,
     &import_kind},
    {"import", "delete", "ID", 1, 1, NULL, "Delete an import job and its uploaded package.",
     NULL, cli_jobs_run_delete, &import_kind},
    {"import", "cancel", "ID", 1, 1, NULL, "Cancel a running import job.", NULL,
     cli_jobs_run_cancel, &import_kind},
    {"import", "undo", "ID", 1, 1, undo_opts,
     "Undo a completed import: put back the data as it was before it.",
     "Within the server's undo window (--import-undo-window-hours, default 168 h) after the\n"
     "import completed.  The job becomes UNDOING, then UNDONE; it goes back to COMPLETED,\n"
     "with the reason as its error and nothing changed, when something the import wrote\n"
     "was changed or deleted since (a later import, DeleteAllData).",
     run_undo, NULL},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL},
};
