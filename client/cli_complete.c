/*
 * cli_complete: see cli_complete.h.  The generated functions, in both
 * shells:
 *
 *   _fzip_words GROUP COMMAND    words that may come next (groups, commands,
 *                                help topics...); nothing after a command
 *   _fzip_options GROUP COMMAND  the options accepted there
 *   _fzip_values GROUP COMMAND   those of them that take a value
 *   _fzip_files GROUP COMMAND    true when the command's argument is a FILE
 *   _fzip_scan WORD...           sets _fzip_group, _fzip_command and
 *                                _fzip_skip (1: the next word is a value)
 *
 * GROUP and COMMAND are "" until the line has them, so the table rows are
 * `case "$1 $2"` patterns such as "export " and "export create".
 */
#include "cli_complete.h"

#include <string.h>

#define HELP_OPTION "--help"

typedef void (*emit_fn)(FILE *f, const cli_complete_spec_t *spec);

typedef struct {
  const char *name;
  const char *header; /* how to load it */
  const char *entry;  /* the shell's entry point and registration */
} shell_t;

/* " --a --b", or only those taking a value (short names too: "-o"). */
static void print_opts(FILE *f, const cli_opt_t *opts, bool values_only) {
  for (const cli_opt_t *o = opts; o && o->name; o++) {
    if (values_only && o->kind != CLI_OPT_VALUE)
      continue;
    fprintf(f, " %s", o->name);
    if (values_only && o->short_name)
      fprintf(f, " -%c", o->short_name);
  }
}

static bool has_opts(const cli_opt_t *opts, bool values_only) {
  for (const cli_opt_t *o = opts; o && o->name; o++)
    if (!values_only || o->kind == CLI_OPT_VALUE)
      return true;
  return false;
}

static void row_start(FILE *f, const char *group, const char *command) {
  fprintf(f, "  \"%s %s\") echo", group, command);
}

static void row_end(FILE *f) {
  fprintf(f, " ;;\n");
}

static void emit_words(FILE *f, const cli_complete_spec_t *spec) {
  fprintf(f, "_fzip_words() {\n  case \"$1 $2\" in\n");
  row_start(f, "", "");
  for (size_t i = 0; i < spec->n_groups; i++)
    fprintf(f, " %s", spec->groups[i].name);
  for (size_t i = 0; i < spec->n_words; i++)
    fprintf(f, " %s", spec->words[i].name);
  row_end(f);
  for (size_t i = 0; i < spec->n_groups; i++) {
    row_start(f, spec->groups[i].name, "");
    for (const cli_command_t *c = spec->groups[i].commands; c->group; c++)
      fprintf(f, " %s", c->name);
    row_end(f);
  }
  for (size_t i = 0; i < spec->n_words; i++) {
    const char *w;
    row_start(f, spec->words[i].name, "");
    for (size_t k = 0; spec->words[i].arg_word && (w = spec->words[i].arg_word(k)) != NULL; k++)
      fprintf(f, " %s", w);
    row_end(f);
  }
  fprintf(f, "  esac\n}\n\n");
}

/* One function per question about options: all of them, or those that
 * take a value. */
static void emit_option_rows(FILE *f, const cli_complete_spec_t *spec, bool values_only) {
  fprintf(f, "_fzip_%s() {\n  case \"$1 $2\" in\n", values_only ? "values" : "options");
  if (!values_only) {
    row_start(f, "", "");
    fprintf(f, " %s", spec->top_options);
    row_end(f);
  }
  for (size_t i = 0; i < spec->n_groups; i++)
    for (const cli_command_t *c = spec->groups[i].commands; c->group; c++) {
      if (!has_opts(c->opts, values_only))
        continue;
      row_start(f, c->group, c->name);
      print_opts(f, c->opts, values_only);
      row_end(f);
    }
  fprintf(f, "  esac\n  echo%s", values_only ? "" : " " HELP_OPTION);
  print_opts(f, spec->globals, values_only);
  fprintf(f, "\n}\n\n");
}

static void emit_options(FILE *f, const cli_complete_spec_t *spec) {
  emit_option_rows(f, spec, false);
  emit_option_rows(f, spec, true);
}

static void emit_files(FILE *f, const cli_complete_spec_t *spec) {
  fprintf(f, "_fzip_files() {\n  case \"$1 $2\" in\n");
  for (size_t i = 0; i < spec->n_groups; i++)
    for (const cli_command_t *c = spec->groups[i].commands; c->group; c++)
      if (strcmp(c->arg_usage, "FILE") == 0)
        fprintf(f, "  \"%s %s\") return 0 ;;\n", c->group, c->name);
  fprintf(f, "  esac\n  return 1\n}\n\n");
}

/* The same scan as fzip's main: options are skipped with their values
 * ("--opt=v" is one word; bash splits it at "=", which then announces the
 * value); the first two other words are the group and the command. */
static const char scan_function[] =
    "_fzip_scan() {\n"
    "  _fzip_group= _fzip_command= _fzip_skip=0\n"
    "  local w\n"
    "  for w in \"$@\"; do\n"
    "    if [ \"$w\" = \"=\" ]; then _fzip_skip=1; continue; fi\n"
    "    if [ \"$_fzip_skip\" = 1 ]; then _fzip_skip=0; continue; fi\n"
    "    case $w in\n"
    "    -*=*) ;;\n"
    "    -*) case \" $(_fzip_values \"$_fzip_group\" \"$_fzip_command\") \" in\n"
    "        *\" $w \"*) _fzip_skip=1 ;;\n"
    "        esac ;;\n"
    "    *) if [ -z \"$_fzip_group\" ]; then _fzip_group=$w\n"
    "       elif [ -z \"$_fzip_command\" ]; then _fzip_command=$w; fi ;;\n"
    "    esac\n"
    "  done\n"
    "}\n\n";

/* Candidates for the current word, given the scan: a value or a FILE
 * argument completes file names, "-..." the options, anything else the
 * next words (the options when none can follow). */
static const shell_t shells[] = {
    {"bash",
     "# bash completion for fzip, generated by `fzip completion bash`.\n"
     "# Load it with:  source <(fzip completion bash)\n"
     "# or save it as /etc/bash_completion.d/fzip.\n\n",
     "_fzip() {\n"
     "  local cur=${COMP_WORDS[COMP_CWORD]} cands\n"
     "  _fzip_scan \"${COMP_WORDS[@]:1:COMP_CWORD-1}\"\n"
     "  [ \"$cur\" = \"=\" ] && cur=\n"
     "  if [ \"$_fzip_skip\" = 1 ]; then\n"
     "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
     "  elif [[ $cur == -* ]]; then\n"
     "    COMPREPLY=($(compgen -W \"$(_fzip_options \"$_fzip_group\" \"$_fzip_command\")\" -- "
     "\"$cur\"))\n"
     "  elif _fzip_files \"$_fzip_group\" \"$_fzip_command\"; then\n"
     "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
     "  else\n"
     "    cands=$(_fzip_words \"$_fzip_group\" \"$_fzip_command\")\n"
     "    [ -n \"$cands\" ] || cands=$(_fzip_options \"$_fzip_group\" \"$_fzip_command\")\n"
     "    COMPREPLY=($(compgen -W \"$cands\" -- \"$cur\"))\n"
     "  fi\n"
     "}\n\n"
     "complete -o filenames -F _fzip fzip\n"},
    {"zsh",
     "#compdef fzip\n"
     "# zsh completion for fzip, generated by `fzip completion zsh`.\n"
     "# Load it with:  source <(fzip completion zsh)  (after compinit)\n"
     "# or save it as _fzip in a directory of $fpath.\n\n",
     "_fzip() {\n"
     "  local cur=${words[CURRENT]}\n"
     "  local -a cands\n"
     "  _fzip_scan \"${(@)words[2,CURRENT-1]}\"\n"
     "  if [[ $_fzip_skip == 1 ]]; then\n"
     "    _files\n"
     "  elif [[ $cur == -* ]]; then\n"
     "    cands=($(_fzip_options \"$_fzip_group\" \"$_fzip_command\"))\n"
     "    compadd -a cands\n"
     "  elif _fzip_files \"$_fzip_group\" \"$_fzip_command\"; then\n"
     "    _files\n"
     "  else\n"
     "    cands=($(_fzip_words \"$_fzip_group\" \"$_fzip_command\"))\n"
     "    (( ${#cands} )) || cands=($(_fzip_options \"$_fzip_group\" \"$_fzip_command\"))\n"
     "    compadd -a cands\n"
     "  fi\n"
     "}\n\n"
     "if [ \"$funcstack[1]\" = \"_fzip\" ]; then\n"
     "  _fzip \"$@\"\n"
     "else\n"
     "  compdef _fzip fzip\n"
     "fi\n"},
};
#define N_SHELLS (sizeof shells / sizeof shells[0])

static const emit_fn tables[] = {emit_words, emit_options, emit_files};
#define N_TABLES (sizeof tables / sizeof tables[0])

bool cli_complete_print(FILE *f, const char *shell, const cli_complete_spec_t *spec) {
  for (size_t i = 0; i < N_SHELLS; i++) {
    if (strcmp(shells[i].name, shell) != 0)
      continue;
    fputs(shells[i].header, f);
    for (size_t t = 0; t < N_TABLES; t++)
      tables[t](f, spec);
    fputs(scan_function, f);
    fputs(shells[i].entry, f);
    return true;
  }
  return false;
}

const char *cli_complete_shell_word(size_t i) {
  return i < N_SHELLS ? shells[i].name : NULL;
}
