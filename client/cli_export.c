/*
 * cli_export: `fzip export ...`.  create and download are specific to
 * exports; the other commands are the shared job commands (cli_jobs)
 * with the ExportService's descriptor.
 *
 * Download is resumable and verified: bytes go to FILE.part, a partial
 * FILE.part is resumed by asking for offset = its size (its bytes are
 * hashed first, so the final sha256 covers the whole file), and FILE
 * appears only once the whole package matches the size and sha256 the
 * server announced in its first message.  A mismatch removes FILE.part
 * (its bytes cannot be trusted for another resume) and exits 3.
 */
#include "cli_export.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_jobs.h"
#include "cli_key.h"
#include "cli_msg.h"
#include "cli_progress.h"
#include "cli_select.h"
#include "cli_xfer.h"
#include "fzip/v1/export_service.pb-c.h"
#include "fzip_util.h"

#define PATH_MAX_LEN 4096
/* A download goes to FILE.part until it is whole and verified. */
#define PART_SUFFIX ".part"
#define DESCRIPTION_MAX 1024

#define SVC "/fzip.v1.ExportService/"
#define M(name, snake)                                                                    \
  { SVC name, &fzip__v1__##snake##_request__descriptor, &fzip__v1__##snake##_response__descriptor }

static bool export_failed(int status) {
  return status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_FAILED ||
         status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_CANCELLED ||
         status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_EXPIRED;
}

static const cli_job_kind_t export_kind = {
    .noun = "export",
    .id_field = "export_id",
    .get = M("GetExport", get_export),
    .list = M("ListExports", list_exports),
    .del = M("DeleteExport", delete_export),
    .cancel = M("CancelExport", cancel_export),
    .watch = M("WatchExport", watch_export),
    .failed = export_failed,
};

/* ---- create --------------------------------------------------------------- */

static bool build_create(Fzip__V1__CreateExportRequest *req, Fzip__V1__ExportFilters *filters,
                         cli_select_t *sel, cli_key_encryption_t *enc, const cli_args_t *args,
                         fzip_error_t *error) {
  const char *type = cli_args_get(args, "--type");
  const char *description = cli_args_get(args, "--description");
  const char *request_id = cli_args_get(args, "--request-id");
  const char *base = cli_args_get(args, "--incremental");
  int value = 0;
  if (type && !cli_msg_enum_parse(&value, &fzip__v1__export_type__descriptor, type))
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--type: unknown export type '%s'", type);
  req->export_type = (Fzip__V1__ExportType)value;
  req->include_analytics = cli_args_flag(args, "--analytics");
  req->include_csv = cli_args_flag(args, "--csv");
  if (description && strlen(description) > DESCRIPTION_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--description: longer than %d bytes", DESCRIPTION_MAX);
  req->description = (char *)(description ? description : "");
  /* The server checks it (1 to 128 printable ASCII bytes); a retry of
   * this command with the same id answers with the same job. */
  req->request_id = (char *)(request_id ? request_id : "");
  /* The server gives an increment its base's selection and refuses a
   * different one: the selection options may be left out. */
  req->incremental_base_id = (char *)(base ? base : "");
  if (!cli_args_int(&req->pinned_timestamp, args, "--pin-timestamp", 0, INT64_MAX, error) ||
      !cli_select_parse(sel, args, error) ||
      !cli_key_encryption(&req->encryption, enc, args, error))
    return false;
  if (sel->n_ids || sel->has_range) {
    filters->n_account_ids = sel->n_ids;
    filters->account_ids = sel->ids;
    filters->date_range = sel->has_range ? &sel->range : NULL;
    req->filters = filters;
  }
  return true;
}

static int run_create(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__CreateExportRequest req = FZIP__V1__CREATE_EXPORT_REQUEST__INIT;
  Fzip__V1__ExportFilters filters = FZIP__V1__EXPORT_FILTERS__INIT;
  cli_select_t sel;
  cli_key_encryption_t enc;
  ProtobufCMessage *resp = NULL;
  fzip_error_t error = {0};
  int rc;
  memset(&sel, 0, sizeof sel);
  if (!build_create(&req, &filters, &sel, &enc, args, &error) ||
      !cli_ctx_unary(&resp, ctx, SVC "CreateExport", &req.base,
                     &fzip__v1__create_export_response__descriptor, &error)) {
    rc = cli_fail(ctx, &error);
    goto done;
  }
  const ProtobufCMessage *job = cli_msg_sub(resp, "job");
  if (cli_args_flag(args, "--wait") && job) {
    if (!ctx->quiet)
      fprintf(stderr, "export %s created\n", cli_msg_string(job, "export_id"));
    rc = cli_jobs_watch(ctx, &export_kind, cli_msg_string(job, "export_id"));
  } else {
    rc = cli_jobs_report(ctx, &export_kind, job);
  }
done:
  cli_select_cleanup(&sel);
  if (resp)
    protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

/* ---- download ------------------------------------------------------------- */

typedef struct {
  const char *id;
  char path[PATH_MAX_LEN];
  char part[PATH_MAX_LEN + sizeof PART_SUFFIX];
  int64_t chunk_size;
  int64_t rate;
  FILE *out;             /* FILE.part, appending */
  fzip_sha256_t *hash;   /* over the whole file, resumed bytes first */
  int64_t offset;        /* where this run started */
  int64_t written;       /* bytes in FILE.part */
  int64_t size;          /* announced by the server */
  char sha256[FZIP_SHA256_HEX_LEN + 1];
} download_t;

/* Opens FILE.part, hashing what an earlier run left in it. */
static bool open_part(download_t *d, fzip_error_t *error) {
  struct stat st;
  d->offset = stat(d->part, &st) == 0 ? (int64_t)st.st_size : 0;
  d->out = fopen(d->part, d->offset > 0 ? "r+b" : "wb");
  if (!d->out)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", d->part,
                          strerror(errno));
  if (d->offset > 0 && !cli_xfer_hash_stream(d->hash, d->out, d->offset, d->part, error))
    return false;
  if (fseeko(d->out, d->offset, SEEK_SET) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: seek: %s", d->part,
                          strerror(errno));
  d->written = d->offset;
  return true;
}

/* The first message: size, sha256, and where the chunks start (msg is
 * NULL when the stream began with a chunk). */
static bool take_info(download_t *d, const Fzip__V1__DownloadExportResponse *msg,
                      fzip_error_t *error) {
  if (!msg || msg->payload_case != FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_INFO || !msg->info)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_DATA_LOSS,
                          "download stream did not start with its info message");
  const Fzip__V1__DownloadInfo *info = msg->info;
  if (info->offset != d->offset || info->size < d->offset ||
      strlen(info->sha256) != FZIP_SHA256_HEX_LEN)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_DATA_LOSS,
                          "download info does not fit the request (offset %" PRId64
                          ", size %" PRId64 ", asked offset %" PRId64 ")",
                          info->offset, info->size, d->offset);
  d->size = info->size;
  memcpy(d->sha256, info->sha256, FZIP_SHA256_HEX_LEN + 1);
  return true;
}

/* A chunk's bytes, lent in pieces (rpc_client_call_read_bytes). */
static bool take_chunk(download_t *d, const rpc_client_bytes_t *chunk, fzip_error_t *error) {
  if ((int64_t)chunk->len > d->size - d->written)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_DATA_LOSS,
                          "server sent more than the %" PRId64 " bytes it announced", d->size);
  for (size_t i = 0; i < chunk->count; i++) {
    if (fwrite(chunk->iov[i].iov_base, 1, chunk->iov[i].iov_len, d->out) != chunk->iov[i].iov_len)
      return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: write: %s", d->part,
                            strerror(errno));
    fzip_sha256_update(d->hash, chunk->iov[i].iov_base, chunk->iov[i].iov_len);
  }
  if (fflush(d->out) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: write: %s", d->part,
                          strerror(errno));
  d->written += (int64_t)chunk->len;
  return true;
}

/* A chunk read_bytes could not lend (one beside other fields), unpacked:
 * as one piece. */
static bool take_unpacked_chunk(download_t *d, const Fzip__V1__DownloadExportResponse *r,
                                fzip_error_t *error) {
  if (r->payload_case != FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_CHUNK)
    return fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_DATA_LOSS,
                          "unexpected second info message in the download stream");
  struct iovec piece = {.iov_base = r->chunk.data, .iov_len = r->chunk.len};
  rpc_client_bytes_t one = {.present = true, .len = r->chunk.len, .count = 1, .iov = &piece};
  return take_chunk(d, &one, error);
}

static bool stream_download(download_t *d, cli_ctx_t *ctx, fzip_error_t *error) {
  Fzip__V1__DownloadExportRequest req = FZIP__V1__DOWNLOAD_EXPORT_REQUEST__INIT;
  rpc_call_options_t o = cli_ctx_call_options(ctx, false);
  rpc_client_t *client = NULL;
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL; /* lent by the call: valid until the next read */
  rpc_client_bytes_t chunk;     /* likewise */
  bool ok = false, have_info = false;
  int64_t started = fzip_monotonic_ms();
  cli_progress_t *progress = cli_progress_new(cli_ctx_progress_mode(ctx), "download");
  req.export_id = (char *)d->id;
  req.offset = d->offset;
  req.chunk_size = (int32_t)d->chunk_size;
  if (!cli_ctx_client(&client, ctx, error) ||
      !rpc_client_call_open_with(&call, client, SVC "DownloadExport", &o, &req.base,
                                 &fzip__v1__download_export_response__descriptor, error))
    goto done;
  for (;;) {
    if (!rpc_client_call_read_bytes(&msg, &chunk, call,
                                    FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_CHUNK, error))
      goto done;
    if (!msg && !chunk.present)
      break;
    const Fzip__V1__DownloadExportResponse *r = (const Fzip__V1__DownloadExportResponse *)msg;
    bool took;
    if (!have_info)
      took = take_info(d, r, error);
    else if (chunk.present)
      took = take_chunk(d, &chunk, error);
    else
      took = take_unpacked_chunk(d, r, error);
    if (!took)
      goto done;
    have_info = true;
    cli_progress_bytes(progress, d->written, d->size, d->offset);
    cli_xfer_throttle(d->written - d->offset, started, d->rate);
  }
  if (!have_info || d->written != d->size) {
    fzip_error_set(error, FZIP_DOMAIN_RPC, FZIP_ERR_DATA_LOSS,
                   "download ended at %" PRId64 " of %" PRId64 " bytes; run it again to resume",
                   d->written, d->size);
    goto done;
  }
  ok = true;
done:
  cli_progress_destroy(progress);
  rpc_client_call_destroy(call);
  return ok;
}

/* Compares the whole file's sha256 with the server's and renames. */
static bool finish_download(download_t *d, fzip_error_t *error) {
  char got[FZIP_SHA256_HEX_LEN + 1];
  fzip_sha256_final_hex(d->hash, got);
  if (fsync(fileno(d->out)) != 0 || fclose(d->out) != 0) {
    d->out = NULL;
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", d->part,
                          strerror(errno));
  }
  d->out = NULL;
  if (strcmp(got, d->sha256) != 0) {
    unlink(d->part);
    return fzip_error_set(error, FZIP_DOMAIN_PACKAGE, FZIP_ERR_DATA_LOSS,
                          "sha256 mismatch: the downloaded file has %s, the server announced %s "
                          "(%s removed)",
                          got, d->sha256, d->part);
  }
  if (rename(d->part, d->path) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "rename %s -> %s: %s",
                          d->part, d->path, strerror(errno));
  memcpy(d->sha256, got, sizeof got);
  return true;
}

static bool download_options(download_t *d, const cli_args_t *args, fzip_error_t *error) {
  const char *out = cli_args_get(args, "--output");
  d->id = args->positional[0];
  d->chunk_size = 0;
  if (!cli_args_size(&d->chunk_size, args, "--chunk-size", 1, CLI_XFER_CHUNK_MAX, error) ||
      !cli_args_size(&d->rate, args, "--limit-rate", 1, CLI_XFER_RATE_MAX, error))
    return false;
  int n = out ? snprintf(d->path, sizeof d->path, "%s", out)
              : snprintf(d->path, sizeof d->path, "fzip-export-%s.fzip", d->id);
  if (n < 0 || (size_t)n + sizeof PART_SUFFIX > sizeof d->path)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "output path too long");
  snprintf(d->part, sizeof d->part, "%s%s", d->path, PART_SUFFIX);
  return true;
}

/* A FILE.part longer than the package (left by another export under the
 * same name) makes the server answer OUT_OF_RANGE: start over once. */
static bool restartable(const download_t *d, const fzip_error_t *error) {
  return d->offset > 0 && d->written == d->offset && error->code == FZIP_ERR_OUT_OF_RANGE;
}

static bool restart(download_t *d, cli_ctx_t *ctx, fzip_error_t *error) {
  if (!ctx->quiet)
    fprintf(stderr, "%s does not fit this export (%s); starting over\n", d->part, error->message);
  fzip_error_clear(error);
  fzip_sha256_reset(d->hash);
  if (fflush(d->out) != 0 || ftruncate(fileno(d->out), 0) != 0 || fseeko(d->out, 0, SEEK_SET) != 0)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: truncate: %s", d->part,
                          strerror(errno));
  d->offset = 0;
  d->written = 0;
  return stream_download(d, ctx, error);
}

static void report_download(const cli_ctx_t *ctx, const download_t *d) {
  if (ctx->json)
    printf("{\"export_id\":\"%s\",\"file\":\"%s\",\"size\":\"%" PRId64
           "\",\"sha256\":\"%s\",\"resumed_from\":\"%" PRId64 "\"}\n", /* int64: strings */
           d->id, d->path, d->size, d->sha256, d->offset);
  else
    printf("downloaded %s: %" PRId64 " bytes, sha256 %s%s\n", d->path, d->size, d->sha256,
           d->offset > 0 ? " (resumed)" : "");
  fflush(stdout);
}

static int run_download(cli_ctx_t *ctx, const cli_args_t *args) {
  download_t d;
  fzip_error_t error = {0};
  int rc = CLI_EXIT_OK;
  memset(&d, 0, sizeof d);
  d.hash = fzip_sha256_new();
  if (!d.hash) {
    fzip_error_oom(&error, NULL);
    goto failed;
  }
  if (!download_options(&d, args, &error) || !open_part(&d, &error))
    goto failed;
  if (d.offset > 0 && !ctx->quiet)
    fprintf(stderr, "resuming %s at byte %" PRId64 "\n", d.part, d.offset);
  if (!stream_download(&d, ctx, &error) && !(restartable(&d, &error) && restart(&d, ctx, &error)))
    goto failed;
  if (!finish_download(&d, &error))
    goto failed;
  report_download(ctx, &d);
  goto done;
failed:
  rc = cli_fail(ctx, &error);
done:
  if (d.out)
    fclose(d.out);
  fzip_sha256_destroy(d.hash);
  return rc;
}

static const cli_opt_t create_opts[] = {
    {"--type", 0, CLI_OPT_VALUE, "TYPE", NULL,
     "complete|accounts_only|transactions_only|categories_only|selective (default complete)"},
    {"--accounts", 0, CLI_OPT_VALUE, "ID,...", NULL, "only these accounts (selective)"},
    {"--from", 0, CLI_OPT_VALUE, "DATE", NULL, "transactions from DATE (YYYY-MM-DD or epoch ms)"},
    {"--to", 0, CLI_OPT_VALUE, "DATE", NULL, "transactions up to DATE, inclusive"},
    {"--analytics", 0, CLI_OPT_FLAG, NULL, NULL, "include analytics"},
    {"--csv", 0, CLI_OPT_FLAG, NULL, NULL,
     "add csv/ tables of accounts, categories and transactions (FORMAT.md 13)"},
    {"--description", 0, CLI_OPT_VALUE, "TEXT", NULL, "free text kept with the job"},
    {"--pin-timestamp", 0, CLI_OPT_VALUE, "MS", NULL,
     "manifest timestamp (epoch ms): same data gives a byte-identical package"},
    {"--wait", 0, CLI_OPT_FLAG, NULL, NULL, "follow the job until it ends"},
    {"--request-id", 0, CLI_OPT_VALUE, "ID", NULL,
     "idempotency key: the same ID within 24 h returns the same job, not a new one"},
    {"--incremental", 0, CLI_OPT_VALUE, "BASE_ID", NULL,
     "only what changed since completed export BASE_ID (its type and filters; no --csv)"},
    CLI_KEY_RECIPIENT_OPTS,
    {NULL, 0, 0, NULL, NULL, NULL},
};

static const cli_opt_t download_opts[] = {
    {"--output", 'o', CLI_OPT_VALUE, "FILE", NULL, "where to write (default fzip-export-ID.fzip)"},
    {"--chunk-size", 0, CLI_OPT_VALUE, "BYTES", NULL, "bytes per message (server default 1M, max 4M)"},
    {"--limit-rate", 0, CLI_OPT_VALUE, "BYTES", NULL, "at most BYTES per second (e.g. 512k)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

const cli_command_t cli_export_commands[] = {
    {"export", "create", "", 0, 0, create_opts, "Start an export job (prints the job).",
     "With --wait, follows the job and exits 1 if it fails.  --incremental BASE_ID makes\n"
     "an increment (docs/EXPORT.md \"Incremental exports\"): restore it with\n"
     "`fzip package apply BASE INC... --output FILE`, never alone.", run_create, NULL},
    {"export", "list", "", 0, 0, NULL, "List your export jobs, newest first.", NULL,
     cli_jobs_run_list, &export_kind},
    {"export", "status", "ID", 1, 1, NULL, "Show one export job.", NULL, cli_jobs_run_status,
     &export_kind},
    {"export", "watch", "ID", 1, 1, NULL, "Follow an export job until it ends.",
     "Exits 1 if the job fails, is cancelled or expired.", cli_jobs_run_watch, &export_kind},
    {"export", "download", "ID", 1, 1, download_opts, "Download a finished export's package.",
     "Writes FILE.part and renames it to FILE once the whole package matches the size\n"
     "and sha256 the server announced (exit 3 if not).  An interrupted download is\n"
     "resumed from the size of FILE.part when the command is run again.",
     run_download, NULL},
    {"export", "delete", "ID", 1, 1, NULL, "Delete an export job and its package.", NULL,
     cli_jobs_run_delete, &export_kind},
    {"export", "cancel", "ID", 1, 1, NULL, "Cancel a running export job.", NULL,
     cli_jobs_run_cancel, &export_kind},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL},
};
