/*
 * cli_import: the `fzip import ...` commands, as rows of the command table
 * (see cli_args.h); fzip_main.c dispatches to them.
 */
#ifndef CLI_IMPORT_H
#define CLI_IMPORT_H

#include "cli_args.h"

/* NULL-group-terminated. */
extern const cli_command_t cli_import_commands[];

#endif
