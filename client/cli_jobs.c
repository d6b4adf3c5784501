/*
 * cli_jobs: see cli_jobs.h.  Requests are built through their descriptors
 * (every job request is "{<id_field>: id}" or a page request), so one
 * function serves both services.  Watching draws progress from each
 * snapshot and reports the last one; a stream that ends without a final
 * status is reported as such, not as success.
 *
 * Ctrl-C while watching stops fzip, not the job: the job runs on the
 * server.  Since the watch blocks inside gRPC, the SIGINT handler is the
 * whole reaction: it writes a message made before it was installed and
 * _exits (both async-signal-safe), leaving the server to drop the stream.
 */
#include "cli_jobs.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_msg.h"
#include "cli_progress.h"

#define LIST_PAGE_SIZE 100
#define LIST_PAGES_MAX 1000 /* 100k jobs: far beyond any retention */
/* The Ctrl-C message: three lines naming the job twice. */
#define INTERRUPT_MSG_MAX 1024

/* A zeroed, initialised request; the caller frees it with free(). */
static ProtobufCMessage *new_request(const ProtobufCMessageDescriptor *desc, fzip_error_t *error) {
  ProtobufCMessage *m = calloc(1, desc->sizeof_message);
  if (!m) {
    fzip_error_oom(error, NULL);
    return NULL;
  }
  protobuf_c_message_init(desc, m);
  return m;
}

static ProtobufCMessage *id_request(const cli_method_t *m, const cli_job_kind_t *kind,
                                    const char *id, fzip_error_t *error) {
  ProtobufCMessage *req = new_request(m->req, error);
  if (req && !cli_msg_set_string(req, kind->id_field, id)) {
    free(req);
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s has no %s", m->req->name,
                   kind->id_field);
    return NULL;
  }
  return req;
}

int cli_jobs_report(cli_ctx_t *ctx, const cli_job_kind_t *kind, const ProtobufCMessage *job) {
  fzip_error_t error = {0};
  if (!job) {
    fprintf(stderr, "fzip: the server returned no %s job\n", kind->noun);
    return CLI_EXIT_FAILED;
  }
  if (!cli_msg_print(stdout, job, ctx->json, &error))
    return cli_fail(ctx, &error);
  int status = (int)cli_msg_int(job, "status");
  if (kind->failed(status)) {
    const ProtobufCMessage *e = cli_msg_sub(job, "error");
    fprintf(stderr, "fzip: %s %s ended %s%s%s\n", kind->noun, cli_msg_string(job, kind->id_field),
            cli_msg_enum_short(job, "status"), e ? ": " : "", e ? cli_msg_string(e, "message") : "");
    return CLI_EXIT_FAILED;
  }
  return CLI_EXIT_OK;
}

/* Calls a "{id} -> {job}" method and reports the job. */
static int id_call_report(cli_ctx_t *ctx, const cli_job_kind_t *kind, const cli_method_t *m,
                          const char *id) {
  fzip_error_t error = {0};
  ProtobufCMessage *resp = NULL;
  int rc;
  ProtobufCMessage *req = id_request(m, kind, id, &error);
  if (!req || !cli_ctx_unary(&resp, ctx, m->method, req, m->resp, &error)) {
    rc = cli_fail(ctx, &error);
    goto done;
  }
  rc = cli_jobs_report(ctx, kind, cli_msg_sub(resp, "job"));
done:
  free(req);
  if (resp)
    protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

static int jobs_delete(cli_ctx_t *ctx, const cli_job_kind_t *kind, const char *id) {
  fzip_error_t error = {0};
  ProtobufCMessage *resp = NULL;
  int rc = CLI_EXIT_OK;
  ProtobufCMessage *req = id_request(&kind->del, kind, id, &error);
  if (!req || !cli_ctx_unary(&resp, ctx, kind->del.method, req, kind->del.resp, &error)) {
    rc = cli_fail(ctx, &error);
    goto done;
  }
  if (ctx->json)
    printf("{\"%s\":\"%s\",\"deleted\":true}\n", kind->id_field, id);
  else
    printf("deleted %s %s\n", kind->noun, id);
done:
  free(req);
  if (resp)
    protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

static void list_row(const cli_ctx_t *ctx, const cli_job_kind_t *kind, const ProtobufCMessage *job) {
  char when[40];
  fzip_error_t error = {0};
  if (ctx->json) {
    if (!cli_msg_print_json(stdout, job, &error))
      fprintf(stderr, "fzip: %s\n", error.message);
    return;
  }
  cli_msg_format_time(when, sizeof when, cli_msg_int(job, "created_at"));
  printf("%-36s  %-18s %3d%%  %s  %s\n", cli_msg_string(job, kind->id_field),
         cli_msg_enum_short(job, "status"), (int)cli_msg_int(job, "progress"), when,
         cli_msg_string(job, "description")[0] ? cli_msg_string(job, "description")
                                               : cli_msg_string(job, "file_name"));
}

static bool job_row(void *arg, const cli_ctx_t *ctx, const ProtobufCMessage *job) {
  list_row(ctx, arg, job);
  return true;
}

static int jobs_list(cli_ctx_t *ctx, const cli_job_kind_t *kind) {
  fzip_error_t error = {0};
  int rc = CLI_EXIT_OK;
  if (!cli_ctx_list_all(ctx, kind->list.method, kind->list.req, kind->list.resp, "jobs",
                        LIST_PAGE_SIZE, LIST_PAGES_MAX, job_row, (void *)kind, &error))
    rc = cli_fail(ctx, &error);
  fflush(stdout);
  return rc;
}

static char interrupt_msg[INTERRUPT_MSG_MAX];
static size_t interrupt_len;

static void on_interrupt(int sig) {
  ssize_t n = write(STDERR_FILENO, interrupt_msg, interrupt_len);
  (void)n; /* nothing left to do about a failed write: exiting anyway */
  _exit(CLI_EXIT_INTERRUPTED);
}

/* Installs the Ctrl-C handler for watching job `id`, saving the old one
 * in *old; false (Ctrl-C keeps its default) if the id is too long to
 * quote in the message. */
static bool arm_interrupt(struct sigaction *old, const cli_ctx_t *ctx, const cli_job_kind_t *kind,
                          const char *id) {
  struct sigaction sa;
  int n = snprintf(interrupt_msg, sizeof interrupt_msg,
                   "%sfzip: interrupted; %s %s is not cancelled: it continues on the server.\n"
                   "fzip: re-attach with: fzip %s watch %s\n"
                   "fzip: cancel it with: fzip %s cancel %s\n",
                   ctx->progress_tty ? "\n" : "", kind->noun, id, kind->noun, id, kind->noun, id);
  if (n < 0 || (size_t)n >= sizeof interrupt_msg)
    return false;
  interrupt_len = (size_t)n;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGINT, &sa, old) == 0;
}

int cli_jobs_watch(cli_ctx_t *ctx, const cli_job_kind_t *kind, const char *id) {
  fzip_error_t error = {0};
  rpc_client_t *client = NULL;
  rpc_client_call_t *call = NULL;
  ProtobufCMessage *last = NULL; /* ours: a copy of the last message read */
  ProtobufCMessage *msg = NULL;  /* lent by the call */
  rpc_call_options_t o = cli_ctx_call_options(ctx, false);
  char label[64];
  struct sigaction old_sigint;
  bool armed = arm_interrupt(&old_sigint, ctx, kind, id);
  int rc;
  snprintf(label, sizeof label, "%s %.8s", kind->noun, id);
  cli_progress_t *progress = cli_progress_new(cli_ctx_progress_mode(ctx), label);
  ProtobufCMessage *req = id_request(&kind->watch, kind, id, &error);
  if (!req || !cli_ctx_client(&client, ctx, &error) ||
      !rpc_client_call_open_with(&call, client, kind->watch.method, &o, req, kind->watch.resp,
                                 &error))
    goto failed;
  for (;;) {
    if (!rpc_client_call_read(&msg, call, &error))
      goto failed;
    if (!msg)
      break;
    const ProtobufCMessage *job = cli_msg_sub(msg, "job");
    if (job)
      cli_progress_job(progress, (int)cli_msg_int(job, "progress"),
                       cli_msg_enum_short(job, "status"), cli_msg_string(job, "current_phase"));
    /* msg is lent until the next read; the report needs the last one
     * after the stream's end. */
    if (last)
      protobuf_c_message_free_unpacked(last, NULL);
    last = NULL;
    if (!rpc_client_message_copy(&last, msg, &error))
      goto failed;
  }
  cli_progress_destroy(progress);
  progress = NULL;
  rc = cli_jobs_report(ctx, kind, last ? cli_msg_sub(last, "job") : NULL);
  goto done;
failed:
  cli_progress_destroy(progress);
  progress = NULL;
  rc = cli_fail(ctx, &error);
done:
  if (armed)
    sigaction(SIGINT, &old_sigint, NULL);
  cli_progress_destroy(progress);
  rpc_client_call_destroy(call);
  free(req);
  if (last)
    protobuf_c_message_free_unpacked(last, NULL);
  return rc;
}

/* ---- the shared command rows' handlers -------------------------------------- */

static const cli_job_kind_t *kind_of(const cli_args_t *args) {
  return args->cmd->data;
}

int cli_jobs_run_status(cli_ctx_t *ctx, const cli_args_t *args) {
  return id_call_report(ctx, kind_of(args), &kind_of(args)->get, args->positional[0]);
}

int cli_jobs_run_cancel(cli_ctx_t *ctx, const cli_args_t *args) {
  return id_call_report(ctx, kind_of(args), &kind_of(args)->cancel, args->positional[0]);
}

int cli_jobs_run_watch(cli_ctx_t *ctx, const cli_args_t *args) {
  return cli_jobs_watch(ctx, kind_of(args), args->positional[0]);
}

int cli_jobs_run_list(cli_ctx_t *ctx, const cli_args_t *args) {
  return jobs_list(ctx, kind_of(args));
}

int cli_jobs_run_delete(cli_ctx_t *ctx, const cli_args_t *args) {
  return jobs_delete(ctx, kind_of(args), args->positional[0]);
}
