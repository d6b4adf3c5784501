/*
 * cli_export: the `fzip export ...` commands, as rows of the command table
 * (see cli_args.h); fzip_main.c dispatches to them.
 */
#ifndef CLI_EXPORT_H
#define CLI_EXPORT_H

#include "cli_args.h"

/* NULL-group-terminated. */
extern const cli_command_t cli_export_commands[];

#endif
