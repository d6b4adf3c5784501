/*
 * cli_package: the `fzip package ...` commands, as rows of the command table
 * (see cli_args.h); fzip_main.c dispatches to them.
 */
#ifndef CLI_PACKAGE_H
#define CLI_PACKAGE_H

#include "cli_args.h"

/* NULL-group-terminated. */
extern const cli_command_t cli_package_commands[];

#endif
