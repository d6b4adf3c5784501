/*
 * fzip: the command-line client of fzipd.
 *
 *   fzip [GLOBAL OPTIONS] GROUP COMMAND [ARGS] [OPTIONS]
 *
 * Commands are rows of per-group tables (cli_export.c, cli_import.c,
 * cli_data.c, cli_package.c); this file only finds the row and runs it.
 * Global options may come before or after the group and command words:
 * they are collected with the command's own options in one parse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <zip.h>

#include "cli_args.h"
#include "cli_complete.h"
#include "cli_ctx.h"
#include "cli_data.h"
#include "cli_export.h"
#include "cli_help.h"
#include "cli_import.h"
#include "cli_key.h"
#include "cli_package.h"
#include "cli_retention.h"
#include "cli_schedule.h"
#include "fzip/v1/export_service.pb-c.h"
#include "fzip_version.h"
#include "pkg_writer.h"

static const cli_group_t groups[] = {
    {"export", cli_export_commands, "create, follow and download export packages"},
    {"schedule", cli_schedule_commands, "scheduled exports and what they keep"},
    {"retention", cli_retention_commands, "apply a schedule's retention policy now"},
    {"import", cli_import_commands, "upload, validate and restore packages"},
    {"data", cli_data_commands, "read your current data on the server"},
    {"package", cli_package_commands, "inspect and verify a package file, offline"},
    {"key", cli_key_commands, "make key pairs for encrypted packages, offline"},
};
#define N_GROUPS (sizeof groups / sizeof groups[0])

/* What `fzip --help` lists besides the groups' commands. */
static const struct {
  const char *usage;
  const char *summary;
} extras[] = {
    {"help [TOPIC]", "Help topics: auth, tls, output, exit-codes, packages, environment."},
    {"completion bash|zsh", "Print a shell completion script (see docs/CLIENT.md)."},
    {"--version", "Versions of fzip, the API, the package format and the libraries."},
};
#define N_EXTRAS (sizeof extras / sizeof extras[0])

static void print_group_commands(FILE *f, const cli_group_t *g) {
  for (const cli_command_t *c = g->commands; c->group; c++) {
    char left[48];
    snprintf(left, sizeof left, "%s %s %s", g->name, c->name, c->arg_usage);
    fprintf(f, "  fzip %-28s %s\n", left, c->summary);
  }
}

static void print_help(FILE *f) {
  fprintf(f, "fzip: command-line client of fzipd (fzip.v1 backup and restore).\n\n"
             "Usage: fzip [GLOBAL OPTIONS] GROUP COMMAND [ARGS] [OPTIONS]\n\nCommands:\n");
  for (size_t i = 0; i < N_GROUPS; i++)
    print_group_commands(f, &groups[i]);
  fprintf(f, "\nAlso:\n");
  for (size_t i = 0; i < N_EXTRAS; i++)
    fprintf(f, "  fzip %-28s %s\n", extras[i].usage, extras[i].summary);
  fprintf(f, "\nGlobal options (flags override environment variables):\n");
  cli_args_print_options(f, cli_global_opts);
  fprintf(f, "\n`fzip GROUP COMMAND --help` describes one command; `fzip help` lists the\n"
             "help topics; `fzip --version` prints versions.\n\n");
  cli_help_print_topic(f, "exit-codes");
}

/* The API is named after the services' protobuf package, so it cannot
 * drift from what the client was built against. */
static int print_version(void) {
  const fzip_version_row_t rows[] = {
      {"api", fzip__v1__export_service__descriptor.package},
      {"package format", PKG_FORMAT_VERSION},
      {"grpc core", grpc_version_string()},
      {"protobuf-c", protobuf_c_version()},
      {"libzip", zip_libzip_version()},
  };
  fzip_version_print(stdout, "fzip", rows, sizeof rows / sizeof rows[0]);
  return CLI_EXIT_OK;
}

/* `--version` before the group word (after it, it is a command's unknown
 * option). */
static bool wants_version(int argc, char **argv, int gi) {
  for (int i = 1; i < gi; i++)
    if (strcmp(argv[i], "--version") == 0)
      return true;
  return false;
}

static const cli_group_t *find_group(const char *name) {
  for (size_t i = 0; i < N_GROUPS; i++)
    if (strcmp(groups[i].name, name) == 0)
      return &groups[i];
  return NULL;
}

static const cli_command_t *find_command(const cli_group_t *g, const char *name) {
  for (const cli_command_t *c = g->commands; c->group; c++)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

/* Index of the next non-option word from `from`, skipping the values of
 * global value options; argc if none. */
static int next_word(int argc, char **argv, int from) {
  for (int i = from; i < argc; i++) {
    const char *w = argv[i];
    if (w[0] != '-' || strcmp(w, "-") == 0)
      return i;
    for (const cli_opt_t *o = cli_global_opts; o->name; o++)
      if (o->kind == CLI_OPT_VALUE && strcmp(w, o->name) == 0)
        i++;
  }
  return argc;
}

static bool wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
      return true;
  return false;
}

static int unknown_command(const char *word) {
  fprintf(stderr, "fzip: unknown command '%s' (see fzip --help)\n", word);
  return CLI_EXIT_USAGE;
}

/* Runs the command with argv minus its group and command words. */
static int run_command(const cli_command_t *cmd, int argc, char **argv, int gi, int ci) {
  cli_args_t args;
  cli_ctx_t ctx;
  fzip_error_t error = {0};
  char **rest = calloc((size_t)argc, sizeof *rest);
  int n = 0, rc;
  if (!rest)
    return CLI_EXIT_FAILED;
  for (int i = 1; i < argc; i++)
    if (i != gi && i != ci)
      rest[n++] = argv[i];
  if (!cli_args_parse(&args, cmd, cli_global_opts, n, rest, &error)) {
    free(rest);
    fprintf(stderr, "fzip %s %s: %s\n", cmd->group, cmd->name, error.message);
    return CLI_EXIT_USAGE;
  }
  if (args.help) {
    cli_args_print_command_help(stdout, cmd);
    free(rest);
    return CLI_EXIT_OK;
  }
  if (!cli_ctx_init(&ctx, &args, &error)) {
    free(rest);
    return cli_fail(NULL, &error);
  }
  rc = cmd->run(&ctx, &args);
  cli_ctx_cleanup(&ctx);
  free(rest);
  return rc;
}

/* `fzip help [TOPIC]`: the topic list, or one topic; an unknown topic
 * is a usage error that shows the list. */
static int run_help(int argc, char **argv, int hi) {
  int ti = next_word(argc, argv, hi + 1);
  if (ti == argc) {
    cli_help_print_topics(stdout);
    return CLI_EXIT_OK;
  }
  if (cli_help_print_topic(stdout, argv[ti]))
    return CLI_EXIT_OK;
  fprintf(stderr, "fzip: no help topic '%s'\n", argv[ti]);
  cli_help_print_topics(stderr);
  return CLI_EXIT_USAGE;
}

/* `fzip completion SHELL`: the script is generated from the same tables
 * main dispatches on. */
static int run_completion(int argc, char **argv, int wi) {
  static const cli_complete_word_t words[] = {
      {"help", cli_help_topic_word},
      {"completion", cli_complete_shell_word},
  };
  const cli_complete_spec_t spec = {
      .groups = groups,
      .n_groups = N_GROUPS,
      .words = words,
      .n_words = sizeof words / sizeof words[0],
      .globals = cli_global_opts,
      .top_options = "--version",
  };
  int si = next_word(argc, argv, wi + 1);
  if (si < argc && cli_complete_print(stdout, argv[si], &spec))
    return CLI_EXIT_OK;
  fprintf(stderr, "fzip: usage: fzip completion bash|zsh\n");
  return CLI_EXIT_USAGE;
}

int main(int argc, char **argv) {
  int gi = next_word(argc, argv, 1);
  if (wants_version(argc, argv, gi))
    return print_version();
  if (gi == argc) {
    print_help(wants_help(argc, argv) ? stdout : stderr);
    return wants_help(argc, argv) ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  }
  if (strcmp(argv[gi], "help") == 0)
    return wants_help(argc, argv) ? (print_help(stdout), CLI_EXIT_OK) : run_help(argc, argv, gi);
  if (strcmp(argv[gi], "completion") == 0)
    return wants_help(argc, argv) ? (print_help(stdout), CLI_EXIT_OK)
                                  : run_completion(argc, argv, gi);
  const cli_group_t *g = find_group(argv[gi]);
  if (!g)
    return unknown_command(argv[gi]);
  int ci = next_word(argc, argv, gi + 1);
  if (ci == argc) {
    bool help = wants_help(argc, argv);
    fprintf(help ? stdout : stderr, "%s: %s\n\n", g->name, g->summary);
    print_group_commands(help ? stdout : stderr, g);
    return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  }
  const cli_command_t *cmd = find_command(g, argv[ci]);
  if (!cmd)
    return unknown_command(argv[ci]);
  return run_command(cmd, argc, argv, gi, ci);
}
