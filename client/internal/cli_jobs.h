/*
 * cli_jobs: the commands export and import jobs have in common (status,
 * watch, list, delete, cancel), written once and driven by a descriptor
 * of the job kind: its method names, message types and id field, and
 * which final statuses count as failures.  The same shape as the server's
 * svc_jobs.
 */
#ifndef CLI_JOBS_H
#define CLI_JOBS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "cli_ctx.h"

typedef struct {
  const char *method;
  const ProtobufCMessageDescriptor *req;
  const ProtobufCMessageDescriptor *resp;
} cli_method_t;

typedef struct {
  const char *noun;     /* "export" */
  const char *id_field; /* "export_id": in requests and in the job */
  cli_method_t get, list, del, cancel, watch;
  /* True when a job that ended in `status` failed (exit status 1). */
  bool (*failed)(int status);
} cli_job_kind_t;

/* Follows job `id` until it ends and reports it (create --wait, upload
 * --wait and the watch command); returns the exit status. */
int cli_jobs_watch(cli_ctx_t *ctx, const cli_job_kind_t *kind, const char *id);
/* (watch, and every --wait that follows a job through it: Ctrl-C leaves
 * the job running on the server, prints on stderr how to follow or
 * cancel it, and exits CLI_EXIT_INTERRUPTED.) */

/* The `run` of the command rows `fzip export|import status|watch|list|
 * delete|cancel`, whose `data` is the service's cli_job_kind_t; each
 * returns the process exit status and prints its own errors. */
int cli_jobs_run_status(cli_ctx_t *ctx, const cli_args_t *args);
int cli_jobs_run_watch(cli_ctx_t *ctx, const cli_args_t *args);
int cli_jobs_run_list(cli_ctx_t *ctx, const cli_args_t *args);
int cli_jobs_run_delete(cli_ctx_t *ctx, const cli_args_t *args);
int cli_jobs_run_cancel(cli_ctx_t *ctx, const cli_args_t *args);

/* Prints a job (JSON line or text) and returns the exit status it
 * implies: 1 if it ended in a failed status. */
int cli_jobs_report(cli_ctx_t *ctx, const cli_job_kind_t *kind, const ProtobufCMessage *job);

#endif
