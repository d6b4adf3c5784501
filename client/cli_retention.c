/*
 * cli_retention: `fzip retention apply SCHEDULE_ID [--dry-run]`
 * (docs/EXPORT.md "Retention").  The server decides and acts
 * (ApplyRetention); this prints its decisions newest first, one line
 * each, and the counts.
 */
#include "cli_retention.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli_ctx.h"
#include "cli_msg.h"
#include "fzip/v1/schedule_service.pb-c.h"

/* "keep   <id>  <completed>  daily,weekly  (increment on <id>)". */
static void print_decision(const Fzip__V1__RetentionDecision *d) {
  char when[40];

  cli_msg_format_time(when, sizeof when, d->completed_at);
  printf("%-6s %-36s  %s", d->keep ? "keep" : "delete", d->export_id, when);
  for (size_t i = 0; i < d->n_reasons; i++)
    printf("%s%s", i ? "," : "  ", d->reasons[i]);
  if (d->base_export_id && d->base_export_id[0])
    printf("  (increment on %s)", d->base_export_id);
  printf("\n");
}

static int run_apply(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__ApplyRetentionRequest req = FZIP__V1__APPLY_RETENTION_REQUEST__INIT;
  Fzip__V1__ApplyRetentionResponse *r = NULL;
  ProtobufCMessage *resp = NULL;
  fzip_error_t error = {0};
  size_t going = 0;

  req.schedule_id = (char *)args->positional[0];
  req.dry_run = cli_args_flag(args, "--dry-run");
  if (!cli_ctx_unary(&resp, ctx, "/fzip.v1.ScheduleService/ApplyRetention", &req.base,
                     &fzip__v1__apply_retention_response__descriptor, &error))
    return cli_fail(ctx, &error);
  r = (Fzip__V1__ApplyRetentionResponse *)resp;
  if (ctx->json) {
    if (!cli_msg_print_json(stdout, resp, &error)) {
      protobuf_c_message_free_unpacked(resp, NULL);
      return cli_fail(ctx, &error);
    }
  } else {
    for (size_t i = 0; i < r->n_decisions; i++) {
      print_decision(r->decisions[i]);
      going += !r->decisions[i]->keep;
    }
    if (req.dry_run)
      printf("dry run: %" PRId64 " kept, %zu would be deleted\n", r->kept, going);
    else
      printf("%" PRId64 " kept, %" PRId64 " deleted\n", r->kept, r->deleted);
  }
  fflush(stdout);
  protobuf_c_message_free_unpacked(resp, NULL);
  return CLI_EXIT_OK;
}

static const cli_opt_t apply_opts[] = {
    {"--dry-run", 0, CLI_OPT_FLAG, NULL, NULL, "only list what would be kept and deleted"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

const cli_command_t cli_retention_commands[] = {
    {"retention", "apply", "SCHEDULE_ID", 1, 1, apply_opts,
     "Apply a schedule's retention policy now (or list it with --dry-run).",
     "Of the schedule's COMPLETED exports, those its policy keeps (keep-last, the newest of\n"
     "each hour/day/ISO week/month/year in its zone, keep-within of the newest; every\n"
     "base a kept increment needs) stay and never expire; the others are deleted with\n"
     "their packages.  Prints every decision, newest first, with its reasons.  The\n"
     "server also applies it after each run (docs/EXPORT.md \"Retention\").",
     run_apply, NULL},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL},
};
