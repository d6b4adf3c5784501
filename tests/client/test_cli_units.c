/*
 * Unit tests of the fzip CLI's pure parts: option parsing against the
 * command tables (flags, values, "=" form, environment fallback, usage
 * errors), dates and sizes, descriptor-driven JSON output and field
 * access, enum names, help topics.  The client end to end is in test_fzip_e2e.py.
 */
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_ctx.h"
#include "cli_help.h"
#include "cli_msg.h"
#include "cli_select.h"
#include "cli_xfer.h"
#include "fzip/v1/entities.pb-c.h"
#include "fzip/v1/export_service.pb-c.h"
#include "fzip/v1/jobs.pb-c.h"
#include "fzip_test.h"

static const cli_opt_t opts[] = {
    {"--type", 0, CLI_OPT_VALUE, "T", NULL, "type"},
    {"--output", 'o', CLI_OPT_VALUE, "FILE", NULL, "out"},
    {"--wait", 0, CLI_OPT_FLAG, NULL, NULL, "wait"},
    {"--from", 0, CLI_OPT_VALUE, "DATE", NULL, "from"},
    {"--to", 0, CLI_OPT_VALUE, "DATE", NULL, "to"},
    {"--accounts", 0, CLI_OPT_VALUE, "IDS", NULL, "ids"},
    {NULL, 0, 0, NULL, NULL, NULL},
};
static const cli_command_t cmd = {"export", "download", "ID", 1, 1, opts, "s", NULL, NULL,
                                   NULL};

static bool parse(cli_args_t *args, fzip_error_t *err, int argc, char **argv) {
  return cli_args_parse(args, &cmd, cli_global_opts, argc, argv, err);
}

static void test_args_take_values_flags_short_and_equals_forms(void) {
  cli_args_t a;
  fzip_error_t err = {0};
  char *argv[] = {"ID1", "--type=complete", "-o", "f.fzip", "--wait", "--addr", "h:1"};
  CHECK_OK(parse(&a, &err, 7, argv), err);
  CHECK(a.n_positional == 1 && strcmp(a.positional[0], "ID1") == 0);
  CHECK(strcmp(cli_args_get(&a, "--type"), "complete") == 0);
  CHECK(strcmp(cli_args_get(&a, "--output"), "f.fzip") == 0);
  CHECK(cli_args_flag(&a, "--wait"));
  CHECK(strcmp(cli_args_get(&a, "--addr"), "h:1") == 0);
  CHECK(cli_args_get(&a, "--token") == NULL || getenv("FZIP_TOKEN"));
}

static void test_args_reject_unknown_missing_and_extra(void) {
  cli_args_t a;
  fzip_error_t err = {0};
  char *unknown[] = {"ID", "--nope"};
  CHECK_FAILS(parse(&a, &err, 2, unknown), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK(strstr(err.message, "--nope") != NULL);
  char *missing_value[] = {"ID", "--type"};
  CHECK_FAILS(parse(&a, &err, 2, missing_value), err, FZIP_ERR_INVALID_ARGUMENT);
  char *extra[] = {"ID", "ID2"};
  CHECK_FAILS(parse(&a, &err, 2, extra), err, FZIP_ERR_INVALID_ARGUMENT);
  char *none[] = {"--wait"};
  CHECK_FAILS(parse(&a, &err, 1, none), err, FZIP_ERR_INVALID_ARGUMENT);
  char *flag_value[] = {"ID", "--wait=1"};
  CHECK_FAILS(parse(&a, &err, 2, flag_value), err, FZIP_ERR_INVALID_ARGUMENT);
}

/* A command whose maximum exceeds the array still stops at the array. */
static void test_args_positionals_stop_at_the_array_size(void) {
  static const cli_command_t many = {"x", "many", "ARG...", 0, CLI_ARGS_MAX_POSITIONAL * 2,
                                     opts, "s", NULL, NULL, NULL};
  char *argv[CLI_ARGS_MAX_POSITIONAL + 1];
  cli_args_t a;
  fzip_error_t err = {0};
  for (int i = 0; i <= CLI_ARGS_MAX_POSITIONAL; i++)
    argv[i] = "p";
  CHECK_OK(cli_args_parse(&a, &many, cli_global_opts, CLI_ARGS_MAX_POSITIONAL, argv, &err), err);
  CHECK(a.n_positional == CLI_ARGS_MAX_POSITIONAL);
  CHECK_FAILS(cli_args_parse(&a, &many, cli_global_opts, CLI_ARGS_MAX_POSITIONAL + 1, argv, &err),
              err, FZIP_ERR_INVALID_ARGUMENT);
}

static void test_args_help_skips_positional_check(void) {
  cli_args_t a;
  fzip_error_t err = {0};
  char *argv[] = {"--help"};
  CHECK_OK(parse(&a, &err, 1, argv), err);
  CHECK(a.help);
}

static void test_args_environment_fallback_and_flag_precedence(void) {
  cli_args_t a;
  fzip_error_t err = {0};
  setenv("FZIP_ADDR", "env:1", 1);
  char *plain[] = {"ID"};
  CHECK_OK(parse(&a, &err, 1, plain), err);
  CHECK(strcmp(cli_args_get(&a, "--addr"), "env:1") == 0);
  char *flag[] = {"ID", "--addr", "flag:2"};
  CHECK_OK(parse(&a, &err, 3, flag), err);
  CHECK(strcmp(cli_args_get(&a, "--addr"), "flag:2") == 0);
  unsetenv("FZIP_ADDR");
}

static void test_dates_parse_utc_days_inclusive_and_reject_garbage(void) {
  int64_t ms = 0;
  fzip_error_t err = {0};
  CHECK_OK(cli_select_date(&ms, "2024-01-02", false, &err), err);
  CHECK(ms == 1704153600000LL);
  CHECK_OK(cli_select_date(&ms, "2024-01-02", true, &err), err);
  CHECK(ms == 1704153600000LL + 86400000LL - 1);
  CHECK_OK(cli_select_date(&ms, "2024-01-02T03:04:05Z", true, &err), err);
  CHECK(ms == 1704153600000LL + (3 * 3600 + 4 * 60 + 5) * 1000LL);
  CHECK_OK(cli_select_date(&ms, "1700000000000", false, &err), err);
  CHECK(ms == 1700000000000LL);
  CHECK_FAILS(cli_select_date(&ms, "2024-13-01", false, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(cli_select_date(&ms, "2024-01-02x", false, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  CHECK_FAILS(cli_select_date(&ms, "yesterday", false, &err), err, FZIP_ERR_INVALID_ARGUMENT);
}

static void test_selection_splits_accounts_and_orders_range(void) {
  cli_args_t a;
  cli_select_t sel;
  fzip_error_t err = {0};
  char *argv[] = {"ID", "--accounts", "a,b,,c", "--from", "2024-01-01", "--to", "2024-01-31"};
  CHECK_OK(parse(&a, &err, 7, argv), err);
  bool ok = cli_select_parse(&sel, &a, &err);
  CHECK(ok && sel.n_ids == 3 && strcmp(sel.ids[2], "c") == 0);
  CHECK(sel.has_range && sel.range.has_from && sel.range.has_to && sel.range.from < sel.range.to);
  cli_select_cleanup(&sel);
  char *backwards[] = {"ID", "--from", "2024-02-01", "--to", "2024-01-01"};
  CHECK_OK(parse(&a, &err, 5, backwards), err);
  CHECK_FAILS(cli_select_parse(&sel, &a, &err), err, FZIP_ERR_INVALID_ARGUMENT);
  cli_select_cleanup(&sel);
}

static void test_sizes_accept_suffixes_and_bounds(void) {
  static const cli_opt_t size_opts[] = {{"--limit-rate", 0, CLI_OPT_VALUE, "N", NULL, "r"},
                                        {NULL, 0, 0, NULL, NULL, NULL}};
  static const cli_command_t c = {"x", "y", "", 0, 0, size_opts, "s", NULL, NULL, NULL};
  cli_args_t a;
  fzip_error_t err = {0};
  int64_t v = 0;
  char *k[] = {"--limit-rate", "512k"};
  CHECK_OK(cli_args_parse(&a, &c, NULL, 2, k, &err), err);
  CHECK_OK(cli_args_size(&v, &a, "--limit-rate", 1, 1LL << 40, &err), err);
  CHECK(v == 512 * 1024);
  char *m[] = {"--limit-rate", "4M"};
  CHECK_OK(cli_args_parse(&a, &c, NULL, 2, m, &err), err);
  CHECK_OK(cli_args_size(&v, &a, "--limit-rate", 1, 1LL << 40, &err), err);
  CHECK(v == 4 * 1024 * 1024);
  char *bad[] = {"--limit-rate", "4X"};
  CHECK_OK(cli_args_parse(&a, &c, NULL, 2, bad, &err), err);
  CHECK_FAILS(cli_args_size(&v, &a, "--limit-rate", 1, 1LL << 40, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
  char *big[] = {"--limit-rate", "5M"};
  CHECK_OK(cli_args_parse(&a, &c, NULL, 2, big, &err), err);
  CHECK_FAILS(cli_args_size(&v, &a, "--limit-rate", 1, 4 * 1024 * 1024, &err), err,
              FZIP_ERR_INVALID_ARGUMENT);
}

/* JSON of a message: captured through a memory stream. */
static char *json_of(const ProtobufCMessage *m) {
  char *buf = NULL;
  size_t len = 0;
  fzip_error_t err = {0};
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  bool ok = cli_msg_print_json(f, m, &err);
  fclose(f);
  if (!ok) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void test_json_writes_enums_by_name_nested_and_escaped(void) {
  Fzip__V1__ExportJob job = FZIP__V1__EXPORT_JOB__INIT;
  Fzip__V1__JobError jerr = FZIP__V1__JOB_ERROR__INIT;
  job.export_id = "id-1";
  job.status = FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_FAILED;
  job.package_size = 5000000000LL;
  job.description = "quote \" and \n newline";
  jerr.code = "DATA_LOSS";
  job.error = &jerr;
  char *s = json_of(&job.base);
  CHECK(s != NULL);
  bool ok = strstr(s, "\"export_id\":\"id-1\"") && strstr(s, "\"status\":\"EXPORT_STATUS_FAILED\"") &&
            strstr(s, "\"package_size\":\"5000000000\"") &&
            strstr(s, "\"description\":\"quote \\\" and \\n newline\"") &&
            strstr(s, "\"error\":{\"code\":\"DATA_LOSS\"") && strstr(s, "\"events\":[]") &&
            !strstr(s, "\"data_summary\"") && s[strlen(s) - 1] == '\n';
  if (!ok)
    fprintf(stderr, "  json: %s", s);
  free(s);
  CHECK(ok);
}

static void test_json_writes_oneof_bytes_as_base64(void) {
  Fzip__V1__DownloadExportResponse r = FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__INIT;
  r.payload_case = FZIP__V1__DOWNLOAD_EXPORT_RESPONSE__PAYLOAD_CHUNK;
  r.chunk.data = (uint8_t *)"hello";
  r.chunk.len = 5;
  char *s = json_of(&r.base);
  CHECK(s != NULL);
  bool ok = strcmp(s, "{\"chunk\":\"aGVsbG8=\"}\n") == 0;
  if (!ok)
    fprintf(stderr, "  json: %s", s);
  free(s);
  CHECK(ok);
}

/* int64 beyond 2^53 (a transactionHash) must survive a JavaScript or jq
 * reader: proto3 JSON writes 64-bit integers as strings. */
static void test_json_writes_int64_as_exact_strings(void) {
  Fzip__V1__Transaction t = FZIP__V1__TRANSACTION__INIT;
  t.transaction_hash = 9007199254740993LL; /* 2^53 + 1: not a double */
  t.date = -1;
  char *s = json_of(&t.base);
  CHECK(s != NULL);
  bool ok = strstr(s, "\"transaction_hash\":\"9007199254740993\"") &&
            strstr(s, "\"date\":\"-1\"") && strstr(s, "\"created_at\":\"0\"");
  if (!ok)
    fprintf(stderr, "  json: %s", s);
  free(s);
  CHECK(ok);
}

static void test_field_access_and_enum_names(void) {
  Fzip__V1__ExportJob job = FZIP__V1__EXPORT_JOB__INIT;
  Fzip__V1__GetExportRequest req = FZIP__V1__GET_EXPORT_REQUEST__INIT;
  job.export_id = "x";
  job.progress = 42;
  job.status = FZIP__V1__EXPORT_STATUS__EXPORT_STATUS_COMPLETED;
  CHECK(strcmp(cli_msg_string(&job.base, "export_id"), "x") == 0);
  CHECK(cli_msg_int(&job.base, "progress") == 42);
  CHECK(strcmp(cli_msg_enum_short(&job.base, "status"), "COMPLETED") == 0);
  CHECK(cli_msg_sub(&job.base, "error") == NULL);
  CHECK(strcmp(cli_msg_string(&job.base, "no_such_field"), "") == 0);
  CHECK(cli_msg_set_string(&req.base, "export_id", "y") && strcmp(req.export_id, "y") == 0);
  CHECK(!cli_msg_set_string(&req.base, "import_id", "y"));
  int v = 0;
  CHECK(cli_msg_enum_parse(&v, &fzip__v1__export_type__descriptor, "transactions_only"));
  CHECK(v == FZIP__V1__EXPORT_TYPE__EXPORT_TYPE_TRANSACTIONS_ONLY);
  CHECK(cli_msg_enum_parse(&v, &fzip__v1__merge_strategy__descriptor, "MERGE_STRATEGY_OVERWRITE"));
  CHECK(v == FZIP__V1__MERGE_STRATEGY__MERGE_STRATEGY_OVERWRITE);
  CHECK(!cli_msg_enum_parse(&v, &fzip__v1__export_type__descriptor, "everything"));
}

static void test_exit_status_per_error_code(void) {
  CHECK(cli_exit_status(FZIP_ERR_UNAVAILABLE) == CLI_EXIT_UNAVAILABLE);
  CHECK(cli_exit_status(FZIP_ERR_DEADLINE_EXCEEDED) == CLI_EXIT_UNAVAILABLE);
  CHECK(cli_exit_status(FZIP_ERR_UNAUTHENTICATED) == CLI_EXIT_AUTH);
  CHECK(cli_exit_status(FZIP_ERR_DATA_LOSS) == CLI_EXIT_VERIFY);
  CHECK(cli_exit_status(FZIP_ERR_NOT_FOUND) == CLI_EXIT_FAILED);
}

/* Every word completion offers is a topic that prints, aliases included,
 * and an unknown one prints nothing. */
static void test_help_topics_print_by_name_and_alias(void) {
  char *buf = NULL;
  size_t len = 0, n = 0;
  for (const char *w; (w = cli_help_topic_word(n)) != NULL; n++) {
    FILE *f = open_memstream(&buf, &len);
    CHECK(cli_help_print_topic(f, w));
    fclose(f);
    CHECK(len > 0);
    free(buf);
    buf = NULL;
  }
  CHECK(n == 7); /* six topics and the alias json */
  FILE *f = open_memstream(&buf, &len);
  CHECK(!cli_help_print_topic(f, "nope"));
  CHECK(cli_help_print_topic(f, "environment"));
  fclose(f);
  CHECK(strstr(buf, "FZIP_TOKEN_FILE") != NULL); /* from the global options' table */
  free(buf);
}

int main(void) {
  RUN(test_args_take_values_flags_short_and_equals_forms);
  RUN(test_args_reject_unknown_missing_and_extra);
  RUN(test_args_positionals_stop_at_the_array_size);
  RUN(test_args_help_skips_positional_check);
  RUN(test_args_environment_fallback_and_flag_precedence);
  RUN(test_dates_parse_utc_days_inclusive_and_reject_garbage);
  RUN(test_selection_splits_accounts_and_orders_range);
  RUN(test_sizes_accept_suffixes_and_bounds);
  RUN(test_json_writes_enums_by_name_nested_and_escaped);
  RUN(test_json_writes_oneof_bytes_as_base64);
  RUN(test_json_writes_int64_as_exact_strings);
  RUN(test_field_access_and_enum_names);
  RUN(test_exit_status_per_error_code);
  RUN(test_help_topics_print_by_name_and_alias);
  return fzip_test_summary();
}
