/*
 * cli_ctx: what every fzip command shares: the global options (server
 * address, TLS, token, output mode), the connection made from them on
 * first use, and the one place where an error becomes a message line and
 * an exit status.
 *
 * Exit statuses (documented in docs/CLIENT.md and `fzip --help`):
 *   0 ok; 1 the server refused or a job ended badly; 2 usage; 3 a check
 *   failed (checksum, package verification); 4 server unreachable or the
 *   call timed out; 5 not authenticated or not allowed; 130 Ctrl-C while
 *   following a job (cli_jobs_watch).
 */
#ifndef CLI_CTX_H
#define CLI_CTX_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli_args.h"
#include "cli_progress.h"
#include "fzip_error.h"
#include "rpc_client.h"

enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAILED = 1,
  CLI_EXIT_USAGE = 2,
  CLI_EXIT_VERIFY = 3,
  CLI_EXIT_UNAVAILABLE = 4,
  CLI_EXIT_AUTH = 5,
  CLI_EXIT_INTERRUPTED = 130, /* 128 + SIGINT, as shells report a Ctrl-C */
};

#define CLI_DEFAULT_ADDR "127.0.0.1:50051"
#define CLI_AUTH_MAX 8192 /* bytes of "Bearer <token>" and its NUL */
#define CLI_BEARER_PREFIX "Bearer "
/* Longest token: the prefix and the NUL take the rest of CLI_AUTH_MAX. */
#define CLI_TOKEN_MAX ((int)(CLI_AUTH_MAX - sizeof CLI_BEARER_PREFIX))

typedef struct cli_ctx {
  const cli_args_t *args;   /* the current command's parsed line */
  rpc_client_t *client;     /* made on first cli_ctx_client */
  char authorization[CLI_AUTH_MAX];
  bool json;                /* --json: one JSON object per result on stdout */
  bool progress_tty;        /* stderr is a terminal and not --quiet */
  bool quiet;               /* --quiet: no progress at all */
  bool tls;                 /* a CA was given */
  int64_t timeout_ms;       /* --timeout: deadline of bounded calls */
} cli_ctx_t;

/* The global options' table (NULL-name-terminated). */
extern const cli_opt_t cli_global_opts[];

/* Reads the global options from args; usage errors are CONFIG. */
bool cli_ctx_init(cli_ctx_t *ctx, const cli_args_t *args, fzip_error_t *error);
void cli_ctx_cleanup(cli_ctx_t *ctx);

/* The connection, made on first use; borrowed. */
bool cli_ctx_client(rpc_client_t **out, cli_ctx_t *ctx, fzip_error_t *error);
/* Per-call options: bearer token, and the --timeout deadline when
 * `bounded` (streams that follow a job or move a package are not). */
rpc_call_options_t cli_ctx_call_options(const cli_ctx_t *ctx, bool bounded);
/* One unary call on the connection.  *resp is the caller's. */
bool cli_ctx_unary(ProtobufCMessage **resp, cli_ctx_t *ctx, const char *method,
                   const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                   fzip_error_t *error);

/* One item of a listed page; false stops the page there. */
typedef bool (*cli_row_fn)(void *arg, const cli_ctx_t *ctx, const ProtobufCMessage *item);
/* One page of a List call: `req` (page size and token set by the caller)
 * to `method`; each item of the response's repeated field `items` goes to
 * `row`; *next gets a copy of next_page_token ("" on the last page), the
 * caller's to free. */
bool cli_ctx_list_page(char **next, cli_ctx_t *ctx, const char *method,
                       const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                       const char *items, cli_row_fn row, void *arg, fzip_error_t *error);
/* Every page of a List call, at most `max_pages` (when more remain it
 * says so on stderr and still succeeds): requests of `req_desc` with its
 * page_size and page_token fields set (by name), each page as
 * cli_ctx_list_page. */
bool cli_ctx_list_all(cli_ctx_t *ctx, const char *method, const ProtobufCMessageDescriptor *req_desc,
                      const ProtobufCMessageDescriptor *resp_desc, const char *items,
                      int32_t page_size, int max_pages, cli_row_fn row, void *arg,
                      fzip_error_t *error);

/* Progress display for this run: off with --quiet, a redrawn line on a
 * terminal, plain lines otherwise. */
cli_progress_mode_t cli_ctx_progress_mode(const cli_ctx_t *ctx);

/* Prints "fzip: <STATUS>: <message>" on stderr (with a hint where one
 * helps) and returns the exit status for the error's code. */
int cli_fail(const cli_ctx_t *ctx, const fzip_error_t *error);
/* The exit status for an fzip error code. */
int cli_exit_status(fzip_code_t code);

#endif
