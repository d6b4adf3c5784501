/*
 * cli_help: `fzip help TOPIC`, the longer texts that do not belong to one
 * command (authentication, TLS, output, exit statuses, packages,
 * environment).  The topics are one table; `fzip help` lists it, `fzip
 * --help` prints the exit-codes topic from it, and shell completion
 * offers its names, so a topic cannot be listed but missing or the
 * reverse.
 */
#ifndef CLI_HELP_H
#define CLI_HELP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Prints topic `name` (a topic's name or its alias); false when there
 * is no such topic. */
bool cli_help_print_topic(FILE *f, const char *name);
/* The list `fzip help` prints: one line per topic with its summary. */
void cli_help_print_topics(FILE *f);
/* The i-th name a topic answers to (names and aliases), NULL past the
 * last; static strings.  Shell completion reads it. */
const char *cli_help_topic_word(size_t i);

#endif
