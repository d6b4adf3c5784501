/*
 * cli_data: `fzip data summary` and `fzip data list KIND`.
 *
 * The five list methods differ only in names and in which selection they
 * accept, so KIND is looked up in a table of (name, method, messages,
 * repeated field, selection support) and one pager serves them all.
 */
#include "cli_data.h"

#include <stdlib.h>
#include <string.h>

#include "cli_ctx.h"
#include "cli_msg.h"
#include "cli_select.h"
#include "fzip/v1/data_service.pb-c.h"

#define SVC "/fzip.v1.DataService/"
#define PAGE_SIZE_MAX 1000
#define DEFAULT_LIMIT 100
#define LIMIT_MAX 10000000

typedef struct {
  const char *kind;  /* "accounts" */
  const char *method;
  const ProtobufCMessageDescriptor *req;
  const ProtobufCMessageDescriptor *resp;
  const char *items; /* repeated field of the response */
  bool by_account;   /* request has account_ids */
  bool by_date;      /* request has date_range */
} list_kind_t;

#define KIND(k, method, snake, items, acc, date)                                         \
  {k, SVC method, &fzip__v1__##snake##_request__descriptor,                              \
   &fzip__v1__##snake##_response__descriptor, items, acc, date}

static const list_kind_t kinds[] = {
    KIND("accounts", "ListAccounts", list_accounts, "accounts", false, false),
    KIND("transactions", "ListTransactions", list_transactions, "transactions", true, true),
    KIND("categories", "ListCategories", list_categories, "categories", false, false),
    KIND("file-maps", "ListFileMaps", list_file_maps, "file_maps", false, false),
    KIND("files", "ListTransactionFiles", list_transaction_files, "files", true, false),
};

/* Every count, zeros included: "0 transactions" is an answer, not silence
 * (the generic printer leaves out fields at their default). */
static void print_summary(const ProtobufCMessage *summary) {
  const ProtobufCMessageDescriptor *d = &fzip__v1__data_summary__descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    int64_t v = summary ? *(const int64_t *)((const char *)summary + f->offset) : 0;
    if (f->type == PROTOBUF_C_TYPE_INT64)
      printf("%s: %lld\n", f->name, (long long)v);
  }
}

static int run_summary(cli_ctx_t *ctx, const cli_args_t *args) {
  Fzip__V1__GetDataSummaryRequest req = FZIP__V1__GET_DATA_SUMMARY_REQUEST__INIT;
  ProtobufCMessage *resp = NULL;
  fzip_error_t error = {0};
  int rc = CLI_EXIT_OK;
  if (!cli_ctx_unary(&resp, ctx, SVC "GetDataSummary", &req.base,
                     &fzip__v1__get_data_summary_response__descriptor, &error))
    return cli_fail(ctx, &error);
  const ProtobufCMessage *summary = cli_msg_sub(resp, "summary");
  if (ctx->json) {
    if (!cli_msg_print_json(stdout, summary ? summary : resp, &error))
      rc = cli_fail(ctx, &error);
  } else {
    print_summary(summary);
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

static const list_kind_t *find_kind(const char *name) {
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(kinds[i].kind, name) == 0)
      return &kinds[i];
  return NULL;
}

/* The request of one page; free() it. */
static ProtobufCMessage *page_request(const list_kind_t *k, const cli_select_t *sel,
                                      int32_t page_size, const char *token) {
  ProtobufCMessage *req = calloc(1, k->req->sizeof_message);
  if (!req)
    return NULL;
  protobuf_c_message_init(k->req, req);
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(k->req, "page_size");
  *(int32_t *)((char *)req + f->offset) = page_size;
  if (token[0])
    cli_msg_set_string(req, "page_token", token);
  if (k->by_account && sel->n_ids) {
    f = protobuf_c_message_descriptor_get_field_by_name(k->req, "account_ids");
    *(size_t *)((char *)req + f->quantifier_offset) = sel->n_ids;
    *(char *const **)((char *)req + f->offset) = sel->ids;
  }
  if (k->by_date && sel->has_range) {
    f = protobuf_c_message_descriptor_get_field_by_name(k->req, "date_range");
    *(const Fzip__V1__TimeRange **)((char *)req + f->offset) = &sel->range;
  }
  return req;
}

static void print_item(const cli_ctx_t *ctx, const ProtobufCMessage *item) {
  fzip_error_t error = {0};
  if (!ctx->json)
    cli_msg_print_line(stdout, item);
  else if (!cli_msg_print_json(stdout, item, &error))
    fprintf(stderr, "fzip: %s\n", error.message);
}

/* Prints one page, at most *left items; *token becomes the next token. */
/* Prints items while the --limit budget lasts. */
static bool limited_row(void *arg, const cli_ctx_t *ctx, const ProtobufCMessage *item) {
  int64_t *left = arg;
  if (*left <= 0)
    return false;
  print_item(ctx, item);
  (*left)--;
  return true;
}

/* One page; *token becomes the next page's ("" at the end). */
static bool list_page(char **token, int64_t *left, cli_ctx_t *ctx, const list_kind_t *k,
                      const cli_select_t *sel, fzip_error_t *error) {
  int32_t page = *left < PAGE_SIZE_MAX ? (int32_t)*left : PAGE_SIZE_MAX;
  ProtobufCMessage *req = page_request(k, sel, page, *token);
  char *next = NULL;
  bool ok;
  if (!req)
    return fzip_error_oom(error, NULL);
  ok = cli_ctx_list_page(&next, ctx, k->method, req, k->resp, k->items, limited_row, left, error);
  free(req);
  if (ok) {
    free(*token);
    *token = next;
  }
  return ok;
}

static bool check_selection(const list_kind_t *k, const cli_select_t *sel, fzip_error_t *error) {
  if (sel->n_ids && !k->by_account)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--accounts does not apply to %s", k->kind);
  if (sel->has_range && !k->by_date)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--from/--to do not apply to %s", k->kind);
  return true;
}

static int run_list(cli_ctx_t *ctx, const cli_args_t *args) {
  fzip_error_t error = {0};
  cli_select_t sel;
  int64_t left = DEFAULT_LIMIT;
  char *token = strdup("");
  int rc = CLI_EXIT_OK;
  const list_kind_t *k = find_kind(args->positional[0]);
  memset(&sel, 0, sizeof sel);
  if (!k) {
    fzip_error_set(&error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                   "unknown kind '%s' (accounts, transactions, categories, file-maps, files)",
                   args->positional[0]);
    goto failed;
  }
  if (!token || !cli_args_int(&left, args, "--limit", 0, LIMIT_MAX, &error) ||
      !cli_select_parse(&sel, args, &error) || !check_selection(k, &sel, &error))
    goto failed;
  if (left == 0)
    left = LIMIT_MAX;
  do {
    if (!list_page(&token, &left, ctx, k, &sel, &error))
      goto failed;
  } while (left > 0 && token[0]);
  fflush(stdout);
  goto done;
failed:
  rc = cli_fail(ctx, &error);
done:
  free(token);
  cli_select_cleanup(&sel);
  return rc;
}

static const cli_opt_t list_opts[] = {
    {"--accounts", 0, CLI_OPT_VALUE, "ID,...", NULL, "only these accounts (transactions, files)"},
    {"--from", 0, CLI_OPT_VALUE, "DATE", NULL, "transactions from DATE (YYYY-MM-DD or epoch ms)"},
    {"--to", 0, CLI_OPT_VALUE, "DATE", NULL, "transactions up to DATE, inclusive"},
    {"--limit", 0, CLI_OPT_VALUE, "N", NULL, "print at most N items (default 100, 0: all)"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

const cli_command_t cli_data_commands[] = {
    {"data", "summary", "", 0, 0, NULL, "Counts of your accounts, transactions, files...", NULL,
     run_summary, NULL},
    {"data", "list", "KIND", 1, 1, list_opts,
     "List your data: accounts, transactions, categories, file-maps or files.",
     "Text output is one line per item; --json one object per line.", run_list,
     NULL},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL},
};
