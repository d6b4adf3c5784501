/*
 * cli_ctx: see cli_ctx.h.  The connection is made lazily so that offline
 * commands (fzip package ...) and --help never need a server, and the
 * token is read once: from --token, FZIP_TOKEN, or --token-file (a file
 * keeps the token out of `ps` and shell history).
 */
#include "cli_ctx.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_msg.h"

#define TOKEN_FILE_MAX (CLI_AUTH_MAX - 16)
#define DEFAULT_TIMEOUT_MS 30000
#define TIMEOUT_MAX_MS (24LL * 3600 * 1000) /* --timeout: at most a day */

const cli_opt_t cli_global_opts[] = {
    {"--addr", 0, CLI_OPT_VALUE, "HOST:PORT", "FZIP_ADDR", "server address (default " CLI_DEFAULT_ADDR ")"},
    {"--token", 0, CLI_OPT_VALUE, "JWT", "FZIP_TOKEN", "bearer token sent with every call"},
    {"--token-file", 0, CLI_OPT_VALUE, "FILE", "FZIP_TOKEN_FILE", "read the token from FILE"},
    {"--tls-ca", 0, CLI_OPT_VALUE, "FILE", "FZIP_TLS_CA", "PEM CA bundle; enables TLS"},
    {"--tls-cert", 0, CLI_OPT_VALUE, "FILE", "FZIP_TLS_CERT", "PEM client certificate (mutual TLS)"},
    {"--tls-key", 0, CLI_OPT_VALUE, "FILE", "FZIP_TLS_KEY", "PEM key of --tls-cert"},
    {"--tls-server-name", 0, CLI_OPT_VALUE, "NAME", "FZIP_TLS_SERVER_NAME", "name to verify in the server certificate"},
    {"--timeout", 0, CLI_OPT_VALUE, "MS", "FZIP_TIMEOUT_MS", "deadline of unary calls (default 30000)"},
    {"--json", 0, CLI_OPT_FLAG, NULL, "FZIP_JSON", "print results as JSON, one object per line"},
    {"--quiet", 'q', CLI_OPT_FLAG, NULL, NULL, "no progress output"},
    {NULL, 0, 0, NULL, NULL, NULL},
};

static bool read_token_file(char *out, size_t cap, const char *path, fzip_error_t *error) {
  FILE *f = fopen(path, "r");
  if (!f)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--token-file %s: cannot open", path);
  size_t n = fread(out, 1, cap - 1, f);
  bool too_big = n == cap - 1 && fgetc(f) != EOF;
  fclose(f);
  if (too_big)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--token-file %s: larger than %zu bytes", path, cap - 1);
  out[n] = '\0';
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
    out[--n] = '\0';
  return true;
}

static bool set_authorization(cli_ctx_t *ctx, fzip_error_t *error) {
  char token[TOKEN_FILE_MAX];
  const char *t = cli_args_get(ctx->args, "--token");
  const char *file = cli_args_get(ctx->args, "--token-file");
  if (!t && file) {
    if (!read_token_file(token, sizeof token, file, error))
      return false;
    t = token;
  }
  ctx->authorization[0] = '\0';
  if (!t || !t[0])
    return true;
  if (strlen(t) > CLI_TOKEN_MAX)
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "token longer than %d bytes", CLI_TOKEN_MAX);
  snprintf(ctx->authorization, sizeof ctx->authorization, "%s%s", CLI_BEARER_PREFIX, t);
  return true;
}

bool cli_ctx_init(cli_ctx_t *ctx, const cli_args_t *args, fzip_error_t *error) {
  memset(ctx, 0, sizeof *ctx);
  ctx->timeout_ms = DEFAULT_TIMEOUT_MS;
  ctx->args = args;
  ctx->json = cli_args_flag(args, "--json");
  ctx->quiet = cli_args_flag(args, "--quiet");
  ctx->progress_tty = !ctx->quiet && isatty(STDERR_FILENO);
  ctx->tls = cli_args_get(args, "--tls-ca") != NULL;
  if (!cli_args_int(&ctx->timeout_ms, args, "--timeout", 1, TIMEOUT_MAX_MS, error))
    return false;
  if (!ctx->tls && (cli_args_get(args, "--tls-cert") || cli_args_get(args, "--tls-key")))
    return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                          "--tls-cert/--tls-key need --tls-ca (the CA of the server)");
  return set_authorization(ctx, error);
}

void cli_ctx_cleanup(cli_ctx_t *ctx) {
  rpc_client_destroy(ctx->client);
  ctx->client = NULL;
}

bool cli_ctx_client(rpc_client_t **out, cli_ctx_t *ctx, fzip_error_t *error) {
  if (!ctx->client) {
    const char *addr = cli_args_get(ctx->args, "--addr");
    rpc_client_options_t o = {
        .target = addr ? addr : CLI_DEFAULT_ADDR,
        .tls_ca_file = cli_args_get(ctx->args, "--tls-ca"),
        .tls_cert_file = cli_args_get(ctx->args, "--tls-cert"),
        .tls_key_file = cli_args_get(ctx->args, "--tls-key"),
        .tls_server_name = cli_args_get(ctx->args, "--tls-server-name"),
    };
    if (!rpc_client_new(&ctx->client, &o, error))
      return false;
  }
  *out = ctx->client;
  return true;
}

rpc_call_options_t cli_ctx_call_options(const cli_ctx_t *ctx, bool bounded) {
  rpc_call_options_t o = {
      .authorization = ctx->authorization[0] ? ctx->authorization : NULL,
      .timeout_ms = bounded ? ctx->timeout_ms : 0,
  };
  return o;
}

bool cli_ctx_unary(ProtobufCMessage **resp, cli_ctx_t *ctx, const char *method,
                   const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                   fzip_error_t *error) {
  rpc_client_t *client = NULL;
  rpc_call_options_t o = cli_ctx_call_options(ctx, true);
  if (!cli_ctx_client(&client, ctx, error))
    return false;
  return rpc_client_unary(resp, client, method, &o, req, resp_desc, error);
}

bool cli_ctx_list_page(char **next, cli_ctx_t *ctx, const char *method,
                       const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                       const char *items, cli_row_fn row, void *arg, fzip_error_t *error) {
  ProtobufCMessage *resp = NULL;
  size_t n = 0;
  bool ok;
  *next = NULL;
  if (!cli_ctx_unary(&resp, ctx, method, req, resp_desc, error))
    return false;
  ProtobufCMessage *const *item = cli_msg_repeated(&n, resp, items);
  for (size_t i = 0; i < n && row(arg, ctx, item[i]); i++) {
  }
  *next = strdup(cli_msg_string(resp, "next_page_token"));
  ok = *next != NULL || fzip_error_oom(error, NULL);
  protobuf_c_message_free_unpacked(resp, NULL);
  return ok;
}

/* A page request: page_size and (unless "") page_token set; free() it. */
static ProtobufCMessage *page_request(const ProtobufCMessageDescriptor *desc, int32_t page_size,
                                      const char *token, fzip_error_t *error) {
  const ProtobufCFieldDescriptor *ps = protobuf_c_message_descriptor_get_field_by_name(desc,
                                                                                       "page_size");
  ProtobufCMessage *req = calloc(1, desc->sizeof_message);
  if (!req) {
    fzip_error_oom(error, NULL);
    return NULL;
  }
  protobuf_c_message_init(desc, req);
  if (ps && ps->type == PROTOBUF_C_TYPE_INT32)
    *(int32_t *)((char *)req + ps->offset) = page_size;
  if (token[0] && !cli_msg_set_string(req, "page_token", token)) {
    free(req);
    fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INTERNAL, "%s has no page_token", desc->name);
    return NULL;
  }
  return req;
}

bool cli_ctx_list_all(cli_ctx_t *ctx, const char *method, const ProtobufCMessageDescriptor *req_desc,
                      const ProtobufCMessageDescriptor *resp_desc, const char *items,
                      int32_t page_size, int max_pages, cli_row_fn row, void *arg,
                      fzip_error_t *error) {
  char *token = strdup("");
  bool ok = token != NULL || fzip_error_oom(error, NULL);

  for (int page = 0; ok && page < max_pages; page++) {
    char *next = NULL;
    ProtobufCMessage *req = page_request(req_desc, page_size, token, error);
    ok = req && cli_ctx_list_page(&next, ctx, method, req, resp_desc, items, row, arg, error);
    free(req);
    if (!ok)
      break;
    free(token);
    token = next;
    if (!token[0])
      break;
  }
  /* A limit is never a silent truncation: the list printed is not all. */
  if (ok && token[0])
    fprintf(stderr, "fzip: stopped after %d pages; more remain\n", max_pages);
  free(token);
  return ok;
}

cli_progress_mode_t cli_ctx_progress_mode(const cli_ctx_t *ctx) {
  if (ctx->quiet)
    return CLI_PROGRESS_OFF;
  return ctx->progress_tty ? CLI_PROGRESS_TTY : CLI_PROGRESS_PLAIN;
}

int cli_exit_status(fzip_code_t code) {
  switch (code) {
  case FZIP_OK:
    return CLI_EXIT_OK;
  case FZIP_ERR_UNAVAILABLE:
  case FZIP_ERR_DEADLINE_EXCEEDED:
    return CLI_EXIT_UNAVAILABLE;
  case FZIP_ERR_UNAUTHENTICATED:
  case FZIP_ERR_PERMISSION_DENIED:
    return CLI_EXIT_AUTH;
  case FZIP_ERR_DATA_LOSS:
    return CLI_EXIT_VERIFY;
  default:
    return CLI_EXIT_FAILED;
  }
}

int cli_fail(const cli_ctx_t *ctx, const fzip_error_t *error) {
  const char *hint = "";
  if (error->domain == FZIP_DOMAIN_CONFIG) {
    fprintf(stderr, "fzip: %s\n", error->message);
    return CLI_EXIT_USAGE;
  }
  if (error->domain == FZIP_DOMAIN_SYS) { /* a local file or memory problem */
    fprintf(stderr, "fzip: %s\n", error->message);
    return CLI_EXIT_FAILED;
  }
  if (error->code == FZIP_ERR_UNAVAILABLE && ctx && !ctx->tls)
    hint = " (if the server uses TLS, pass --tls-ca)";
  else if (error->code == FZIP_ERR_UNAVAILABLE && ctx && ctx->tls)
    hint = " (check --addr, --tls-ca and --tls-server-name)";
  else if (error->code == FZIP_ERR_UNAUTHENTICATED && ctx && !ctx->authorization[0])
    hint = " (no token: pass --token, --token-file or FZIP_TOKEN)";
  fprintf(stderr, "fzip: %s: %s%s\n", fzip_code_name((fzip_code_t)error->code),
          error->message[0] ? error->message : "(no message)", hint);
  return cli_exit_status((fzip_code_t)error->code);
}
