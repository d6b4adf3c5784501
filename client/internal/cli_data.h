/*
 * cli_data: the `fzip data ...` commands, as rows of the command table
 * (see cli_args.h); fzip_main.c dispatches to them.
 */
#ifndef CLI_DATA_H
#define CLI_DATA_H

#include "cli_args.h"

/* NULL-group-terminated. */
extern const cli_command_t cli_data_commands[];

#endif
