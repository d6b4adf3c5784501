/*
 * cli_args: see cli_args.h.  Parsing is a single pass over argv: each word
 * is an option of the command, a global option, "--" (the rest are
 * positional) or a positional argument.  Options are looked up in the
 * tables, never matched by hand, so every command gets the same syntax:
 * "--name value", "--name=value", "-o value" and flags without a value.
 */
#include "cli_args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static bool usage_error(fzip_error_t *error, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool usage_error(fzip_error_t *error, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fzip_error_setv(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT, fmt, ap);
  va_end(ap);
  return false;
}

static const cli_opt_t *find_in(const cli_opt_t *table, const char *word, size_t len) {
  for (const cli_opt_t *o = table; o && o->name; o++) {
    if (len == 2 && word[0] == '-' && word[1] == o->short_name && o->short_name)
      return o;
    if (strlen(o->name) == len && strncmp(o->name, word, len) == 0)
      return o;
  }
  return NULL;
}

static bool add_value(cli_args_t *out, const cli_opt_t *opt, const char *value,
                      fzip_error_t *error) {
  if (out->n_values >= CLI_ARGS_MAX_VALUES)
    return usage_error(error, "too many options (at most %d)", CLI_ARGS_MAX_VALUES);
  out->values[out->n_values].opt = opt;
  out->values[out->n_values].value = value;
  out->n_values++;
  return true;
}

/* One option word at argv[*i]; advances *i past a separate value. */
static bool parse_option(cli_args_t *out, const cli_command_t *cmd, const cli_opt_t *globals,
                         int argc, char **argv, int *i, fzip_error_t *error) {
  const char *word = argv[*i];
  const char *eq = strncmp(word, "--", 2) == 0 ? strchr(word, '=') : NULL;
  size_t len = eq ? (size_t)(eq - word) : strlen(word);
  const cli_opt_t *opt = find_in(cmd->opts, word, len);
  if (!opt)
    opt = find_in(globals, word, len);
  if (!opt)
    return usage_error(error, "unknown option %s (see --help)", word);
  if (opt->kind == CLI_OPT_FLAG) {
    if (eq)
      return usage_error(error, "option %s takes no value", opt->name);
    return add_value(out, opt, "1", error);
  }
  if (eq)
    return add_value(out, opt, eq + 1, error);
  if (*i + 1 >= argc)
    return usage_error(error, "option %s needs a value", opt->name);
  (*i)++;
  return add_value(out, opt, argv[*i], error);
}

static const cli_value_t *last_value(const cli_args_t *args, const char *name);

/* Options not on the line take their environment variable, if set, so
 * that lookups need not know where a value came from. */
static bool add_env_values(cli_args_t *out, const cli_opt_t *table, fzip_error_t *error) {
  for (const cli_opt_t *o = table; o && o->name; o++) {
    const char *v = o->env ? getenv(o->env) : NULL;
    if (v && v[0] != '\0' && !last_value(out, o->name) && !add_value(out, o, v, error))
      return false;
  }
  return true;
}

bool cli_args_parse(cli_args_t *out, const cli_command_t *cmd, const cli_opt_t *globals,
                    int argc, char **argv, fzip_error_t *error) {
  bool only_positional = false;
  memset(out, 0, sizeof *out);
  out->cmd = cmd;
  for (int i = 0; i < argc; i++) {
    const char *word = argv[i];
    if (!only_positional && strcmp(word, "--") == 0) {
      only_positional = true;
    } else if (!only_positional && (strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0)) {
      out->help = true;
    } else if (!only_positional && word[0] == '-' && word[1] != '\0') {
      if (!parse_option(out, cmd, globals, argc, argv, &i, error))
        return false;
    } else {
      /* The array's own size too: a command's maximum is not tied to it. */
      if (out->n_positional >= cmd->max_positional ||
          out->n_positional >= CLI_ARGS_MAX_POSITIONAL)
        return usage_error(error, "unexpected argument '%s'", word);
      out->positional[out->n_positional++] = word;
    }
  }
  if (!add_env_values(out, cmd->opts, error) || !add_env_values(out, globals, error))
    return false;
  if (!out->help && out->n_positional < cmd->min_positional)
    return usage_error(error, "missing argument %s", cmd->arg_usage);
  return true;
}

static const cli_value_t *last_value(const cli_args_t *args, const char *name) {
  for (int i = args->n_values - 1; i >= 0; i--)
    if (strcmp(args->values[i].opt->name, name) == 0)
      return &args->values[i];
  return NULL;
}

const char *cli_args_get(const cli_args_t *args, const char *name) {
  const cli_value_t *v = last_value(args, name);
  return v ? v->value : NULL;
}

bool cli_args_flag(const cli_args_t *args, const char *name) {
  const char *v = cli_args_get(args, name);
  return v && strcmp(v, "0") != 0 && strcmp(v, "false") != 0 && v[0] != '\0';
}

/* The binary multiplier a size suffix stands for (k, M, G, either case);
 * 1 for anything else. */
static int64_t size_multiplier(char c) {
  switch (c) {
  case 'k':
  case 'K':
    return 1024;
  case 'm':
  case 'M':
    return 1024 * 1024;
  case 'g':
  case 'G':
    return 1024 * 1024 * 1024;
  default:
    return 1;
  }
}

/* A decimal integer (with `sizes`, a non-negative one with an optional
 * size suffix) whose value lies in [min, max]; *out untouched otherwise. */
static bool parse_number(int64_t *out, const char *s, bool sizes, int64_t min, int64_t max) {
  char *end = NULL;
  int64_t mult = 1;
  long long v;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (sizes && end != s && (mult = size_multiplier(*end)) > 1)
    end++;
  if (errno || end == s || *end != '\0' || (sizes && v < 0) || v > max / mult || v * mult < min)
    return false;
  *out = v * mult;
  return true;
}

/* The one reader of numeric options: absent leaves *out alone. */
static bool number_opt(int64_t *out, const cli_args_t *args, const char *name, int64_t min,
                       int64_t max, bool sizes, fzip_error_t *error) {
  const char *s = cli_args_get(args, name);
  if (!s || parse_number(out, s, sizes, min, max))
    return true;
  return fzip_error_set(error, FZIP_DOMAIN_CONFIG, FZIP_ERR_INVALID_ARGUMENT,
                        "%s: '%s' is not %s in [%lld, %lld]%s", name, s,
                        sizes ? "a size" : "an integer", (long long)min, (long long)max,
                        sizes ? " (suffix k, M or G allowed)" : "");
}

bool cli_args_int(int64_t *out, const cli_args_t *args, const char *name, int64_t min,
                  int64_t max, fzip_error_t *error) {
  return number_opt(out, args, name, min, max, false, error);
}

bool cli_args_size(int64_t *out, const cli_args_t *args, const char *name, int64_t min,
                   int64_t max, fzip_error_t *error) {
  return number_opt(out, args, name, min, max, true, error);
}

void cli_args_print_options(FILE *f, const cli_opt_t *opts) {
  for (const cli_opt_t *o = opts; o && o->name; o++) {
    char left[64];
    if (o->short_name)
      snprintf(left, sizeof left, "-%c, %s%s%s", o->short_name, o->name,
               o->kind == CLI_OPT_VALUE ? " " : "", o->kind == CLI_OPT_VALUE ? o->metavar : "");
    else
      snprintf(left, sizeof left, "%s%s%s", o->name, o->kind == CLI_OPT_VALUE ? " " : "",
               o->kind == CLI_OPT_VALUE ? o->metavar : "");
    fprintf(f, "  %-28s %s", left, o->help);
    if (o->env)
      fprintf(f, " (env %s)", o->env);
    fputc('\n', f);
  }
}

void cli_args_print_command_help(FILE *f, const cli_command_t *cmd) {
  fprintf(f, "Usage: fzip %s %s%s%s [OPTIONS]\n\n%s\n", cmd->group, cmd->name,
          cmd->arg_usage[0] ? " " : "", cmd->arg_usage, cmd->summary);
  if (cmd->details)
    fprintf(f, "\n%s\n", cmd->details);
  if (cmd->opts && cmd->opts->name) {
    fprintf(f, "\nOptions:\n");
    cli_args_print_options(f, cmd->opts);
  }
  fprintf(f, "\nGlobal options (server, TLS, token, output): see `fzip --help`.\n");
}
