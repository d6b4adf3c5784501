/*
 * cli_schedule: `fzip schedule create|get|list|update|delete`, scheduled
 * exports (docs/EXPORT.md "Schedules and retention").
 *
 * A spec is built from options over a starting spec: an empty one for
 * create, the schedule as the server has it for update, so `update ID
 * --pause` changes only what it names.  update sends the version it read
 * as expected_version, so a change made in between is refused (ABORTED)
 * rather than overwritten.  The export options are those of `export
 * create` (the same selection and recipient parsers).
 */
#include "cli_schedule.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli_key.h"
#include "cli_msg.h"
#include "cli_select.h"
#include "fzip/v1/schedule_service.pb-c.h"

#define SVC "/fzip.v1.ScheduleService/"
#define LIST_PAGE_SIZE 100
#define LIST_PAGES_MAX 10 /* far beyond the per-user limit of schedules */
#define KEEP_MAX 1000000  /* a keep_* count; the server takes any int32 >= 0 */

/* A spec and the storage its pointers use. */
typedef struct {
  Fzip__V1__ScheduleSpec spec;
  Fzip__V1__RetentionPolicy retention;
  Fzip__V1__ExportFilters filters;
  Fzip__V1__TimeRange range; /* filters.date_range when set */
  cli_select_t sel;
  cli_key_encryption_t enc;
} spec_build_t;

/* "90m", "36h", "30d", "2w" (or plain milliseconds) into ms. */
static bool parse_duration(int64_t *out, const char *text, fzip_error_t *error) {
  static const struct {
    char unit;
    int64_t ms;
  } UNITS[] = {{'m', 60000}, {'h', 3600000}, {'d', 86400000}, {'w', 7 * 86400000LL}};
  char *end = NULL;
  long long n = strtoll(text, &end, 10);
  int64_t mult = 1;

  if (end != text && n >= 0 && end[0] && !end[1]) {
    for (size_t i = 0; i < sizeof UNITS / sizeof UNITS[0]; i++)
      if (end[0] == UNITS[i].unit)
        mult = UNITS[i].ms;
    if (mult == 1)
      end = (char *)text; /* unknown unit */
    else
      end++;
  }
  if (end == text || *end || n < 0 || n > INT64_MAX / mult)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--keep-within: '%s' is not a duration (e.g. 90m, 36h, 30d, 2w)", text);
  *out = (int64_t)n * mult;
  return true;
}

static bool keep_opt(int32_t *field, const cli_args_t *args, const char *name,
                     fzip_error_t *error) {
  int64_t v = *field;
  if (!cli_args_int(&v, args, name, 0, KEEP_MAX, error))
    return false;
  *field = (int32_t)v;
  return true;
}

static bool retention_opts(spec_build_t *b, const cli_args_t *args, fzip_error_t *error) {
  Fzip__V1__RetentionPolicy *r = &b->retention;
  const char *within = cli_args_get(args, "--keep-within");
  if (!keep_opt(&r->keep_last, args, "--keep-last", error) ||
      !keep_opt(&r->keep_hourly, args, "--keep-hourly", error) ||
      !keep_opt(&r->keep_daily, args, "--keep-daily", error) ||
      !keep_opt(&r->keep_weekly, args, "--keep-weekly", error) ||
      !keep_opt(&r->keep_monthly, args, "--keep-monthly", error) ||
      !keep_opt(&r->keep_yearly, args, "--keep-yearly", error) ||
      (within && !parse_duration(&r->keep_within_ms, within, error)))
    return false;
  b->spec.retention = r;
  return true;
}

static bool export_opts(spec_build_t *b, const cli_args_t *args, fzip_error_t *error) {
  const char *type = cli_args_get(args, "--type");
  Fzip__V1__EncryptionOptions *enc = NULL;
  int value = 0;

  if (type) {
    if (!cli_msg_enum_parse(&value, &fzip__v1__export_type__descriptor, type))
      return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                            "--type: unknown export type '%s'", type);
    b->spec.export_type = (Fzip__V1__ExportType)value;
  }
  if (cli_args_flag(args, "--analytics"))
    b->spec.include_analytics = true;
  if (!cli_select_parse(&b->sel, args, error) || !cli_key_encryption(&enc, &b->enc, args, error))
    return false;
  /* Overlaid part by part: the server replaces the whole spec, so an
   * `update --to` must still send the accounts and --from it read. */
  if (b->sel.n_ids) {
    b->filters.n_account_ids = b->sel.n_ids;
    b->filters.account_ids = b->sel.ids;
  }
  if (b->sel.range.has_from) {
    b->range.has_from = true;
    b->range.from = b->sel.range.from;
  }
  if (b->sel.range.has_to) {
    b->range.has_to = true;
    b->range.to = b->sel.range.to;
  }
  if (b->sel.has_range) {
    if (b->range.has_from && b->range.has_to && b->range.from > b->range.to)
      return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                            "the range would start after it ends (--from/--to with the "
                            "schedule's other bound)");
    b->filters.date_range = &b->range;
  }
  if (b->sel.n_ids || b->sel.has_range)
    b->spec.filters = &b->filters;
  if (enc)
    b->spec.encryption = enc;
  return true;
}

/* Overlays the options given on b->spec. */
static bool spec_opts(spec_build_t *b, const cli_args_t *args, fzip_error_t *error) {
  const char *cron = cli_args_get(args, "--cron");
  const char *tz = cli_args_get(args, "--time-zone");
  const char *description = cli_args_get(args, "--description");
  int64_t full_every = b->spec.full_every;

  if (cron)
    b->spec.cron = (char *)cron;
  if (tz)
    b->spec.time_zone = (char *)tz;
  if (description)
    b->spec.description = (char *)description;
  if (cli_args_flag(args, "--paused") || cli_args_flag(args, "--pause"))
    b->spec.paused = true;
  if (cli_args_flag(args, "--resume"))
    b->spec.paused = false;
  if (!cli_args_int(&full_every, args, "--full-every", 0, INT32_MAX, error))
    return false;
  b->spec.full_every = (int32_t)full_every;
  return export_opts(b, args, error) && retention_opts(b, args, error);
}

/* b->spec starts as `from` (NULL: empty); its pointers stay into `from`,
 * except retention and filters (with its date range), which are copied
 * into b so that options can overlay them field by field. */
static void spec_init(spec_build_t *b, const Fzip__V1__ScheduleSpec *from) {
  memset(b, 0, sizeof *b);
  fzip__v1__schedule_spec__init(&b->spec);
  fzip__v1__retention_policy__init(&b->retention);
  fzip__v1__export_filters__init(&b->filters);
  fzip__v1__time_range__init(&b->range);
  if (!from)
    return;
  b->spec = *from;
  if (from->retention)
    b->retention = *from->retention;
  if (from->filters) {
    b->filters = *from->filters;
    if (from->filters->date_range) {
      b->range = *from->filters->date_range;
      b->filters.date_range = &b->range;
    }
    b->spec.filters = &b->filters;
  }
}

static int report(cli_ctx_t *ctx, const ProtobufCMessage *schedule) {
  fzip_error_t error = {0};
  if (!schedule) {
    fprintf(stderr, "fzip: the server returned no schedule\n");
    return CLI_EXIT_FAILED;
  }
  if (!cli_msg_print(stdout, schedule, ctx->json, &error))
    return cli_fail(ctx, &error);
  fflush(stdout);
  return CLI_EXIT_OK;
}

/* One unary call whose response's "schedule" is reported. */
static int call_report(cli_ctx_t *ctx, const char *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *resp_desc) {
  ProtobufCMessage *resp = NULL;
  fzip_error_t error = {0};
  int rc;
  if (!cli_ctx_unary(&resp, ctx, method, req, resp_desc, &error))
    return cli_fail(ctx, &error);
  rc = report(ctx, cli_msg_sub(resp, "schedule"));
  protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

static int run_create(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__CreateScheduleRequest req = FZIP__V1__CREATE_SCHEDULE_REQUEST__INIT;
  const char *request_id = cli_args_get(args, "--request-id");
  fzip_error_t error = {0};
  spec_build_t b;
  int rc;

  spec_init(&b, NULL);
  if (!cli_args_get(args, "--cron")) {
    fzip_error_set(&error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "--cron is required (e.g. --cron @daily or --cron '30 2 * * *')");
    rc = cli_fail(ctx, &error);
    goto done;
  }
  if (!spec_opts(&b, args, &error)) {
    rc = cli_fail(ctx, &error);
    goto done;
  }
  req.spec = &b.spec;
  req.request_id = (char *)(request_id ? request_id : "");
  rc = call_report(ctx, SVC "CreateSchedule", &req.base,
                   &fzip__v1__create_schedule_response__descriptor);
done:
  cli_select_cleanup(&b.sel);
  return rc;
}

/* GetSchedule ID; *resp is the caller's. */
static bool get(ProtobufCMessage **resp, cli_ctx_t *ctx, const char *id, fzip_error_t *error) {
  Fzip__V1__GetScheduleRequest req = FZIP__V1__GET_SCHEDULE_REQUEST__INIT;
  req.schedule_id = (char *)id;
  return cli_ctx_unary(resp, ctx, SVC "GetSchedule", &req.base,
                       &fzip__v1__get_schedule_response__descriptor, error);
}

static int run_get(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__GetScheduleRequest req = FZIP__V1__GET_SCHEDULE_REQUEST__INIT;
  req.schedule_id = (char *)args->positional[0];
  return call_report(ctx, SVC "GetSchedule", &req.base,
                     &fzip__v1__get_schedule_response__descriptor);
}

static int run_update(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__UpdateScheduleRequest req = FZIP__V1__UPDATE_SCHEDULE_REQUEST__INIT;
  Fzip__V1__GetScheduleResponse *cur = NULL;
  ProtobufCMessage *resp = NULL;
  fzip_error_t error = {0};
  spec_build_t b;
  int rc;

  spec_init(&b, NULL);
  if (!get(&resp, ctx, args->positional[0], &error)) {
    rc = cli_fail(ctx, &error);
    goto done;
  }
  cur = (Fzip__V1__GetScheduleResponse *)resp;
  if (!cur->schedule) {
    fprintf(stderr, "fzip: the server returned no schedule\n");
    rc = CLI_EXIT_FAILED;
    goto done;
  }
  spec_init(&b, cur->schedule->spec);
  req.expected_version = cur->schedule->version;
  if (!cli_args_int(&req.expected_version, args, "--expected-version", 1, INT64_MAX, &error) ||
      !spec_opts(&b, args, &error)) {
    rc = cli_fail(ctx, &error);
    goto done;
  }
  req.schedule_id = (char *)args->positional[0];
  req.spec = &b.spec;
  rc = call_report(ctx, SVC "UpdateSchedule", &req.base,
                   &fzip__v1__update_schedule_response__descriptor);
done:
  cli_select_cleanup(&b.sel);
  if (resp)
    protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

static int run_delete(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__DeleteScheduleRequest req = FZIP__V1__DELETE_SCHEDULE_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  fzip_error_t error = {0};

  req.schedule_id = (char *)args->positional[0];
  req.delete_packages = cli_args_flag(args, "--delete-packages");
  if (!cli_ctx_unary(&resp, ctx, SVC "DeleteSchedule", &req.base,
                     &fzip__v1__delete_schedule_response__descriptor, &error))
    return cli_fail(ctx, &error);
  protobuf_c_message_free_unpacked(resp, NULL);
  if (ctx->json)
    printf("{\"schedule_id\":\"%s\",\"deleted\":true}\n", req.schedule_id);
  else
    printf("deleted schedule %s%s\n", req.schedule_id,
           req.delete_packages ? " and its exports" : "");
  return CLI_EXIT_OK;
}

static bool list_row(void *arg, const cli_ctx_t *ctx, const ProtobufCMessage *s) {
  const ProtobufCMessage *spec = cli_msg_sub(s, "spec");
  const ProtobufCMessage *err = cli_msg_sub(s, "last_error");
  char next[40];
  fzip_error_t error = {0};

  (void)arg;
  if (ctx->json) {
    if (!cli_msg_print_json(stdout, s, &error))
      fprintf(stderr, "fzip: %s\n", error.message);
    return true;
  }
  if (cli_msg_int(s, "next_run_at") > 0)
    cli_msg_format_time(next, sizeof next, cli_msg_int(s, "next_run_at"));
  else
    snprintf(next, sizeof next, "paused");
  printf("%-36s  %-16s %-16s next %s  runs %" PRId64 "%s%s\n", cli_msg_string(s, "schedule_id"),
         spec ? cli_msg_string(spec, "cron") : "",
         spec && cli_msg_string(spec, "time_zone")[0] ? cli_msg_string(spec, "time_zone") : "UTC",
         next, cli_msg_int(s, "runs"), err ? "  last run failed: " : "",
         err ? cli_msg_string(err, "message") : "");
  return true;
}

static int run_list(cli_ctx_t *ctx, const cli_args_t *args) {
  fzip_error_t error = {0};
  int rc = CLI_EXIT_OK;

  (void)args;
  if (!cli_ctx_list_all(ctx, SVC "ListSchedules", &fzip__v1__list_schedules_request__descriptor,
                        &fzip__v1__list_schedules_response__descriptor, "schedules",
                        LIST_PAGE_SIZE, LIST_PAGES_MAX, list_row, NULL, &error))
    rc = cli_fail(ctx, &error);
  fflush(stdout);
  return rc;
}

#define EXPORT_SPEC_OPTS                                                                        \
  {"--time-zone", 0, CLI_OPT_VALUE, "ZONE", NULL,                                               \
   "IANA zone the cron fields and retention buckets use (default UTC)"},                        \
  {"--type", 0, CLI_OPT_VALUE, "TYPE", NULL,                                                    \
   "complete|accounts_only|transactions_only|categories_only|selective (default complete)"},   \
  {"--accounts", 0, CLI_OPT_VALUE, "ID,...", NULL, "only these accounts (selective)"},          \
  {"--from", 0, CLI_OPT_VALUE, "DATE", NULL, "transactions from DATE (YYYY-MM-DD or epoch ms)"}, \
  {"--to", 0, CLI_OPT_VALUE, "DATE", NULL, "transactions up to DATE, inclusive"},               \
  {"--analytics", 0, CLI_OPT_FLAG, NULL, NULL, "include analytics"},                            \
  {"--full-every", 0, CLI_OPT_VALUE, "N", NULL,                                                 \
   "every N-th run complete, the runs between increments (0: all complete)"},                   \
  {"--keep-last", 0, CLI_OPT_VALUE, "N", NULL, "retention: keep the newest N exports"},         \
  {"--keep-hourly", 0, CLI_OPT_VALUE, "N", NULL, "retention: newest of each of N hours"},       \
  {"--keep-daily", 0, CLI_OPT_VALUE, "N", NULL, "retention: newest of each of N days"},         \
  {"--keep-weekly", 0, CLI_OPT_VALUE, "N", NULL, "retention: newest of each of N ISO weeks"},   \
  {"--keep-monthly", 0, CLI_OPT_VALUE, "N", NULL, "retention: newest of each of N months"},     \
  {"--keep-yearly", 0, CLI_OPT_VALUE, "N", NULL, "retention: newest of each of N years"},       \
  {"--keep-within", 0, CLI_OPT_VALUE, "DURATION", NULL,                                         \
   "retention: every export within 90m|36h|30d|2w of the newest"},                              \
  {"--description", 0, CLI_OPT_VALUE, "TEXT", NULL, "free text kept with each export"},         \
  CLI_KEY_RECIPIENT_OPTS

static const cli_opt_t create_opts[] = {
    {"--cron", 0, CLI_OPT_VALUE, "SPEC", NULL,
     "when: 'minute hour day-of-month month day-of-week' or @hourly|@daily|@weekly|@monthly"},
    EXPORT_SPEC_OPTS,
    {"--paused", 0, CLI_OPT_FLAG, NULL, NULL, "create it paused (no runs until resumed)"},
    {"--request-id", 0, CLI_OPT_VALUE, "ID", NULL,
     "idempotency key: the same ID within 24 h returns the same schedule"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static const cli_opt_t update_opts[] = {
    {"--cron", 0, CLI_OPT_VALUE, "SPEC", NULL, "new cron spec"},
    EXPORT_SPEC_OPTS,
    {"--pause", 0, CLI_OPT_FLAG, NULL, NULL, "stop running it"},
    {"--resume", 0, CLI_OPT_FLAG, NULL, NULL, "run it again (from the next due time)"},
    {"--expected-version", 0, CLI_OPT_VALUE, "N", NULL,
     "refuse the change unless the schedule is at version N (default: the version read)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static const cli_opt_t delete_opts[] = {
    {"--delete-packages", 0, CLI_OPT_FLAG, NULL, NULL,
     "also delete every export it created (default: they go back to the normal expiry)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

const cli_command_t cli_schedule_commands[] = {
    {"schedule", "create", "", 0, 0, create_opts, "Create a scheduled export (prints it).",
     "Runs are exports like `fzip export create`, made by the server at each due time in\n"
     "the schedule's zone; a missed run is caught up once.  After each run the retention\n"
     "options decide which of its exports stay (docs/EXPORT.md \"Schedules and retention\").",
     run_create, NULL},
    {"schedule", "get", "ID", 1, 1, NULL, "Show one schedule.", NULL, run_get, NULL},
    {"schedule", "list", "", 0, 0, NULL, "List your schedules.", NULL, run_list, NULL},
    {"schedule", "update", "ID", 1, 1, update_opts, "Change a schedule (only the options given).",
     "Reads the schedule and sends it back changed, checked against the version read:\n"
     "a change made meanwhile is refused (exit status of ABORTED), never overwritten.",
     run_update, NULL},
    {"schedule", "delete", "ID", 1, 1, delete_opts, "Delete a schedule.", NULL, run_delete, NULL},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL},
};
