/*
 * cli_args: the fzip command line as data.
 *
 * Every command is one row of a table (group, name, positional arguments,
 * options, help, handler) and every option one row of its command's option
 * table (name, short name, value or flag, environment variable, help).  The
 * parser, `--help` and dispatch all read those tables, so an option cannot
 * be documented but unparsed or the reverse.  Global options (server
 * address, TLS, token, output mode) are one more table accepted anywhere on
 * the line.  Precedence: environment < flag.
 *
 * Parsed values are borrowed from argv or the environment, which live as
 * long as the process.
 */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fzip_error.h"

#define CLI_ARGS_MAX_VALUES 32     /* options given on one line */
/* positional arguments of one command: `package apply`'s chain (PKGA_CHAIN_MAX) */
#define CLI_ARGS_MAX_POSITIONAL 128

typedef enum { CLI_OPT_FLAG, CLI_OPT_VALUE } cli_opt_kind_t;

typedef struct {
  const char *name;    /* "--type"; NULL ends a table */
  char short_name;     /* 'o', or 0 */
  cli_opt_kind_t kind;
  const char *metavar; /* "FILE" for values */
  const char *env;     /* environment fallback, or NULL */
  const char *help;
} cli_opt_t;

typedef struct {
  const cli_opt_t *opt;
  const char *value; /* "1" for flags */
} cli_value_t;

typedef struct {
  cli_value_t values[CLI_ARGS_MAX_VALUES];
  int n_values;
  const char *positional[CLI_ARGS_MAX_POSITIONAL];
  int n_positional;
  bool help;
  const struct cli_command *cmd; /* the command the line was parsed for */
} cli_args_t;

struct cli_ctx;

typedef struct cli_command {
  const char *group;      /* "export"; NULL ends a table */
  const char *name;       /* "create" */
  const char *arg_usage;  /* "ID", "FILE", or "" */
  int min_positional;
  int max_positional;
  const cli_opt_t *opts;  /* NULL-name-terminated; may be NULL */
  const char *summary;    /* one line */
  const char *details;    /* extra help paragraph, or NULL */
  int (*run)(struct cli_ctx *ctx, const cli_args_t *args);
  /* What `run` needs beyond the line (through args->cmd), or NULL: the
   * job kind of the commands cli_jobs runs for both job services. */
  const void *data;
} cli_command_t;

/* A group of commands, `fzip export ...`: the word, its command table
 * (NULL-group-terminated) and a line for `fzip --help`. */
typedef struct {
  const char *name;
  const cli_command_t *commands;
  const char *summary;
} cli_group_t;

/* Parses argv (after the group and command words) against the command's
 * options and the global ones.  Unknown options, missing values, too many
 * or too few positionals are CONFIG/INVALID_ARGUMENT naming the culprit;
 * `--help` sets args->help and skips the positional count check. */
bool cli_args_parse(cli_args_t *out, const cli_command_t *cmd, const cli_opt_t *globals,
                    int argc, char **argv, fzip_error_t *error);

/* The value of an option by name: the flag's or, failing that, its
 * environment variable's; NULL when neither is set. */
const char *cli_args_get(const cli_args_t *args, const char *name);
bool cli_args_flag(const cli_args_t *args, const char *name);
/* Parses a decimal integer in [min, max]; `*out` keeps its value when the
 * option is absent. */
bool cli_args_int(int64_t *out, const cli_args_t *args, const char *name, int64_t min,
                  int64_t max, fzip_error_t *error);
/* Reads a size option ("1048576", "512k", "4M", "1G": binary multiples)
 * in [min, max]; `*out` keeps its value when the option is absent. */
bool cli_args_size(int64_t *out, const cli_args_t *args, const char *name, int64_t min,
                   int64_t max, fzip_error_t *error);

/* Help for one command, and the option table layout shared by all help. */
void cli_args_print_command_help(FILE *f, const cli_command_t *cmd);
void cli_args_print_options(FILE *f, const cli_opt_t *opts);

#endif
