/*
 * bench_client: the benchmark's gRPC client, on client/rpc_client.h, so
 * that no Python or CLI overhead sits inside the timed transfers.
 *
 *   bench_client TARGET TOKEN export [BASE_EXPORT_ID]
 *   bench_client TARGET TOKEN download EXPORT_ID OUT_FILE|-
 *   bench_client TARGET TOKEN upload IN_FILE
 *   bench_client TARGET TOKEN import IMPORT_ID STRATEGY VALIDATE_ONLY
 *
 * Each command prints one JSON object on stdout: the wall time it measured
 * (monotonic clock, around the RPCs only), the bytes moved and the job's
 * final state.  Job commands poll Get*() every BENCH_POLL_MS: the job time
 * is "create/start until the poll that saw it terminal", so it carries at
 * most one poll interval of slack, which is why the server's own
 * started_at/completed_at are printed beside it.
 *
 * download to "-" counts the bytes and drops them, as the gRPC floor's
 * client does (bench_grpc_floor.c), so that the two compare the same work;
 * written to /dev/null they cost ~38 write(2) calls per 1 MiB message (one
 * per piece gRPC received), which the floor's client does not make.
 *
 * export with BASE_EXPORT_ID is an incremental export on that export
 * (docs/EXPORT.md "Incremental exports").  Every export's JSON carries
 * its change_seq, chain_length and transactions_count (for an increment:
 * the changed transactions it holds; deletions are not printed).
 * STRATEGY is 1 (fail_on_conflict), 2 (skip_existing) or 3 (overwrite);
 * VALIDATE_ONLY is 0 or 1.  Exit status 0 when the job reached the state a
 * benchmark wants (COMPLETED, or VALIDATION_PASSED for validate-only),
 * 1 otherwise, with the reason in the JSON "error" field.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fzip/v1/export_service.pb-c.h"
#include "fzip/v1/import_service.pb-c.h"
#include "fzip_entity.h"
#include "fzip_error.h"
#include "fzip_util.h"
#include "rpc_client.h"

#define BENCH_POLL_MS 20
#define BENCH_CHUNK (1024 * 1024)      /* bytes per upload message / download chunk asked */
#define BENCH_JOB_TIMEOUT_MS (4 * 3600 * 1000LL)
#define BENCH_AUTH_MAX 4096
#define BENCH_MSG_MAX (8 * 1024 * 1024)

typedef struct {
  rpc_client_t *client;
  rpc_call_options_t call;
  char auth[BENCH_AUTH_MAX];
} bench_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Messages may be NULL (not received yet); the cast avoids &NULL->base. */
static void free_msg(void *msg) {
  if (msg)
    protobuf_c_message_free_unpacked((ProtobufCMessage *)msg, NULL);
}

/* Messages from the server end up in JSON: keep them to safe characters. */
static void json_str(FILE *out, const char *s) {
  fputc('"', out);
  for (; s && *s; s++)
    fputc((*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) ? '?' : *s, out);
  fputc('"', out);
}

static int print_error(const char *cmd, const fzip_error_t *error) {
  printf("{\"cmd\": \"%s\", \"ok\": false, \"error\": ", cmd);
  json_str(stdout, error->message);
  printf("}\n");
  return 1;
}

/* ---- export ------------------------------------------------------------ */

static bool get_export(Fzip__V1__GetExportResponse **out, bench_t *b, const char *id,
                       fzip_error_t *error) {
  Fzip__V1__GetExportRequest req = FZIP__V1__GET_EXPORT_REQUEST__INIT;
  req.export_id = (char *)id;
  return rpc_client_unary((ProtobufCMessage **)out, b->client, "/fzip.v1.ExportService/GetExport",
                          &b->call, &req.base, &fzip__v1__get_export_response__descriptor, error);
}

static int cmd_export(bench_t *b, const char *base) {
  Fzip__V1__CreateExportRequest req = FZIP__V1__CREATE_EXPORT_REQUEST__INIT;
  Fzip__V1__CreateExportResponse *created = NULL;
  Fzip__V1__GetExportResponse *got = NULL;
  fzip_error_t error = {0};
  char id[FZIP_ID_MAX + 1] = "";
  int rc = 1;
  int64_t polls = 0;
  double t0 = now_s(), elapsed = 0;

  req.export_type = FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_COMPLETE;
  req.include_analytics = true;
  req.description = "bench";
  req.incremental_base_id = (char *)(base ? base : "");
  if (!rpc_client_unary((ProtobufCMessage **)&created, b->client,
                        "/fzip.v1.ExportService/CreateExport", &b->call, &req.base,
                        &fzip__v1__create_export_response__descriptor, &error))
    goto done;
  snprintf(id, sizeof id, "%s", created->job->export_id);
  for (;;) {
    free_msg(got), got = NULL;
    if (!get_export(&got, b, id, &error))
      goto done;
    polls++;
    int s = got->job->status;
    if (s == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED ||
        s == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_FAILED ||
        s == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_CANCELLED ||
        s == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_EXPIRED)
      break;
    if ((now_s() - t0) * 1000 > BENCH_JOB_TIMEOUT_MS) {
      fzip_error_set(&error, FZIP_DOMAIN_SYS, FZIP_ERR_DEADLINE_EXCEEDED, "export %s timed out",
                     id);
      goto done;
    }
    fzip_sleep_ms(BENCH_POLL_MS);
  }
  elapsed = now_s() - t0;
  Fzip__V1__ExportJob *j = got->job;
  rc = j->status == FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED ? 0 : 1;
  printf("{\"cmd\": \"export\", \"ok\": %s, \"export_id\": \"%s\", \"seconds\": %.3f, "
         "\"server_ms\": %" PRId64 ", \"polls\": %" PRId64 ", \"package_size\": %" PRId64
         ", \"package_sha256\": \"%s\", \"status\": %d, \"change_seq\": %" PRIu64
         ", \"chain_length\": %d, \"transactions_count\": %" PRId64 ", \"error\": ",
         rc == 0 ? "true" : "false", id, elapsed,
         j->completed_at && j->started_at ? j->completed_at - j->started_at : (int64_t)-1, polls,
         j->package_size, j->package_sha256 ? j->package_sha256 : "", j->status, j->change_seq,
         (int)j->chain_length, j->data_summary ? j->data_summary->transactions_count : (int64_t)-1);
  json_str(stdout, j->error ? j->error->message : "");
  printf("}\n");
done:
  free_msg(created);
  free_msg(got);
  return fzip_error_is_set(&error) ? print_error("export", &error) : rc;
}

/* ---- download ---------------------------------------------------------- */

static int cmd_download(bench_t *b, const char *export_id, const char *path) {
  Fzip__V1__DownloadExportRequest req = FZIP__V1__DOWNLOAD_EXPORT_REQUEST__INIT;
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *msg = NULL; /* lent by the call: valid until the next read */
  rpc_client_bytes_t chunk;     /* likewise */
  fzip_error_t error = {0};
  FILE *out = NULL;
  int64_t bytes = 0, size = -1, messages = 0;
  double t0 = 0, elapsed = 0;
  int rc = 1;

  if (strcmp(path, "-") != 0 && !(out = fopen(path, "wb"))) {
    fzip_error_set(&error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", path, strerror(errno));
    goto done;
  }
  req.export_id = (char *)export_id;
  req.chunk_size = BENCH_CHUNK;
  t0 = now_s();
  if (!rpc_client_call_open_with(&call, b->client, "/fzip.v1.ExportService/DownloadExport",
                                 &b->call, &req.base,
                                 &fzip__v1__download_export_response__descriptor, &error))
    goto done;
  for (;;) {
    /* Chunks come as the pieces gRPC received, uncopied (the fzip CLI
     * reads them the same way). */
    if (!rpc_client_call_read_bytes(&msg, &chunk, call,
                                    FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_CHUNK, &error))
      goto done;
    if (!msg && !chunk.present)
      break;
    Fzip__V1__DownloadExportResponse *r = (Fzip__V1__DownloadExportResponse *)msg;
    if (r && r->payload_case == FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_INFO) {
      size = r->info->size;
    } else if (chunk.present) {
      /* The write to the page cache is part of what a real client does. */
      for (size_t i = 0; out && i < chunk.count; i++) {
        if (fwrite(chunk.iov[i].iov_base, 1, chunk.iov[i].iov_len, out) != chunk.iov[i].iov_len) {
          fzip_error_set(&error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: write failed", path);
          goto done;
        }
      }
      bytes += (int64_t)chunk.len;
      messages++;
    }
  }
  elapsed = now_s() - t0;
  rc = bytes == size ? 0 : 1;
  printf("{\"cmd\": \"download\", \"ok\": %s, \"bytes\": %" PRId64 ", \"size\": %" PRId64
         ", \"messages\": %" PRId64 ", \"seconds\": %.4f, \"mib_per_s\": %.2f}\n",
         rc == 0 ? "true" : "false", bytes, size, messages, elapsed,
         elapsed > 0 ? (double)bytes / 1048576.0 / elapsed : 0.0);
done:
  rpc_client_call_destroy(call);
  if (out && fclose(out) != 0 && !fzip_error_is_set(&error))
    fzip_error_set(&error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: close failed", path);
  return fzip_error_is_set(&error) ? print_error("download", &error) : rc;
}

/* ---- upload ------------------------------------------------------------ */

static int cmd_upload(bench_t *b, const char *path) {
  Fzip__V1__UploadImportRequest req = FZIP__V1__UPLOAD_IMPORT_REQUEST__INIT;
  Fzip__V1__ImportOptions o = FZIP__V1__IMPORT_OPTIONS__INIT;
  Fzip__V1__UploadImportResponse *resp = NULL;
  rpc_client_call_t *call = NULL;
  fzip_error_t error = {0};
  unsigned char *buf = NULL;
  FILE *in = NULL;
  int64_t bytes = 0;
  double t0 = 0, elapsed = 0;
  size_t n = 0;

  in = fopen(path, "rb");
  buf = malloc(BENCH_CHUNK);
  if (!in || !buf) {
    fzip_error_set(&error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s: %s", path,
                   in ? "out of memory" : strerror(errno));
    goto done;
  }
  o.file_name = "bench.fzip";
  req.payload_case = FZIP__V1__UPLOAD_IMPORT_REQUEST__PAYLOAD_OPTIONS;
  req.options = &o;
  t0 = now_s();
  if (!rpc_client_call_open(&call, b->client, "/fzip.v1.ImportService/UploadImport", &b->call,
                            &fzip__v1__upload_import_response__descriptor, &error) ||
      !rpc_client_call_write(call, &req.base, &error))
    goto done;
  req.payload_case = FZIP__V1__UPLOAD_IMPORT_REQUEST__PAYLOAD_CHUNK;
  while ((n = fread(buf, 1, BENCH_CHUNK, in)) > 0) {
    req.chunk.data = buf;
    req.chunk.len = n;
    if (!rpc_client_call_write(call, &req.base, &error))
      goto done;
    bytes += (int64_t)n;
  }
  if (!rpc_client_call_finish((ProtobufCMessage **)&resp, call, &error))
    goto done;
  elapsed = now_s() - t0;
  printf("{\"cmd\": \"upload\", \"ok\": true, \"import_id\": \"%s\", \"bytes\": %" PRId64
         ", \"seconds\": %.4f, \"mib_per_s\": %.2f, \"status\": %d}\n",
         resp && resp->job ? resp->job->import_id : "", bytes, elapsed,
         elapsed > 0 ? (double)bytes / 1048576.0 / elapsed : 0.0,
         resp && resp->job ? (int)resp->job->status : -1);
done:
  free_msg(resp);
  rpc_client_call_destroy(call);
  free(buf);
  if (in)
    fclose(in);
  return fzip_error_is_set(&error) ? print_error("upload", &error) : 0;
}

/* ---- import ------------------------------------------------------------ */

static bool import_terminal(int s) {
  return s == FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_VALIDATION_PASSED ||
         s == FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_VALIDATION_FAILED ||
         s == FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_COMPLETED ||
         s == FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_FAILED ||
         s == FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_CANCELLED;
}

static int cmd_import(bench_t *b, const char *import_id, int strategy, bool validate_only) {
  Fzip__V1__StartImportRequest req = FZIP__V1__START_IMPORT_REQUEST__INIT;
  Fzip__V1__GetImportRequest get = FZIP__V1__GET_IMPORT_REQUEST__INIT;
  Fzip__V1__StartImportResponse *started = NULL;
  Fzip__V1__GetImportResponse *got = NULL;
  fzip_error_t error = {0};
  int64_t polls = 0;
  double t0 = now_s(), elapsed = 0;
  int rc = 1;

  req.import_id = (char *)import_id;
  req.merge_strategy = (Fzip__V1__MergeStrategy)strategy;
  req.validate_only = validate_only;
  get.import_id = (char *)import_id;
  if (!rpc_client_unary((ProtobufCMessage **)&started, b->client,
                        "/fzip.v1.ImportService/StartImport", &b->call, &req.base,
                        &fzip__v1__start_import_response__descriptor, &error))
    goto done;
  for (;;) {
    free_msg(got), got = NULL;
    if (!rpc_client_unary((ProtobufCMessage **)&got, b->client, "/fzip.v1.ImportService/GetImport",
                          &b->call, &get.base, &fzip__v1__get_import_response__descriptor,
                          &error))
      goto done;
    polls++;
    if (import_terminal(got->job->status))
      break;
    if ((now_s() - t0) * 1000 > BENCH_JOB_TIMEOUT_MS) {
      fzip_error_set(&error, FZIP_DOMAIN_SYS, FZIP_ERR_DEADLINE_EXCEEDED, "import %s timed out",
                     import_id);
      goto done;
    }
    fzip_sleep_ms(BENCH_POLL_MS);
  }
  elapsed = now_s() - t0;
  Fzip__V1__ImportJob *j = got->job;
  int want = validate_only ? FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_VALIDATION_PASSED
                           : FZIP__V1__IMPORT_STATUS__IMPORT_STATUS_COMPLETED;
  rc = (int)j->status == want ? 0 : 1;
  printf("{\"cmd\": \"import\", \"ok\": %s, \"import_id\": \"%s\", \"seconds\": %.3f, "
         "\"server_ms\": %" PRId64 ", \"polls\": %" PRId64 ", \"status\": %d, \"error\": ",
         rc == 0 ? "true" : "false", import_id, elapsed,
         j->completed_at && j->started_at ? j->completed_at - j->started_at : (int64_t)-1, polls,
         j->status);
  json_str(stdout, j->error ? j->error->message : "");
  printf("}\n");
done:
  free_msg(started);
  free_msg(got);
  return fzip_error_is_set(&error) ? print_error("import", &error) : rc;
}

/* ---- main -------------------------------------------------------------- */

static int usage(void) {
  fprintf(stderr, "usage: bench_client TARGET TOKEN export [BASE_EXPORT_ID]\n"
                  "       bench_client TARGET TOKEN download EXPORT_ID OUT_FILE|-\n"
                  "       bench_client TARGET TOKEN upload IN_FILE\n"
                  "       bench_client TARGET TOKEN import IMPORT_ID STRATEGY VALIDATE_ONLY\n");
  return 2;
}

int main(int argc, char **argv) {
  rpc_client_options_t options = {0};
  fzip_error_t error = {0};
  bench_t b;
  int rc = 2;

  if (argc < 4)
    return usage();
  memset(&b, 0, sizeof b);
  snprintf(b.auth, sizeof b.auth, "Bearer %s", argv[2]);
  b.call.authorization = b.auth;
  options.target = argv[1];
  options.max_recv_message = BENCH_MSG_MAX;
  options.max_send_message = BENCH_MSG_MAX;
  if (!rpc_client_new(&b.client, &options, &error))
    return print_error(argv[3], &error);
  if (strcmp(argv[3], "export") == 0 && (argc == 4 || argc == 5))
    rc = cmd_export(&b, argc == 5 ? argv[4] : NULL);
  else if (strcmp(argv[3], "download") == 0 && argc == 6)
    rc = cmd_download(&b, argv[4], argv[5]);
  else if (strcmp(argv[3], "upload") == 0 && argc == 5)
    rc = cmd_upload(&b, argv[4]);
  else if (strcmp(argv[3], "import") == 0 && argc == 7)
    rc = cmd_import(&b, argv[4], atoi(argv[5]), atoi(argv[6]) != 0);
  else
    rc = usage();
  rpc_client_destroy(b.client);
  return rc;
}
