/*
 * cli_complete: `fzip completion bash|zsh`, shell completion scripts
 * generated from the command tables (groups, commands, each command's
 * options and the global ones), so that completion offers exactly what
 * the parser accepts.
 *
 * The script is small shell functions holding the tables as `case` rows
 * (which words may come next, which options a command has, which of them
 * take a value, which commands take a FILE) and one scanner of the line,
 * all written in the syntax bash and zsh share; only the entry point that
 * reads the shell's line and hands back candidates differs.  Like fzip
 * itself, the scanner finds the group and command words by skipping
 * options and the values of those that take one.
 */
#ifndef CLI_COMPLETE_H
#define CLI_COMPLETE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cli_args.h"

/* A top-level word that is not a group ("help", "completion") and what
 * completes its one argument: the i-th word, NULL past the last. */
typedef struct {
  const char *name;
  const char *(*arg_word)(size_t i);
} cli_complete_word_t;

/* What the script completes; everything borrowed. */
typedef struct {
  const cli_group_t *groups;
  size_t n_groups;
  const cli_complete_word_t *words;
  size_t n_words;
  const cli_opt_t *globals;   /* accepted everywhere */
  const char *top_options;    /* space-separated, only before the group ("--version") */
} cli_complete_spec_t;

/* Writes the completion script for `shell` ("bash" or "zsh"); false, and
 * nothing written, for another shell. */
bool cli_complete_print(FILE *f, const char *shell, const cli_complete_spec_t *spec);
/* The i-th shell cli_complete_print knows, NULL past the last. */
const char *cli_complete_shell_word(size_t i);

#endif
