/*
 * cli_schedule: `fzip schedule ...`, scheduled exports.
 */
#ifndef CLI_SCHEDULE_H
#define CLI_SCHEDULE_H

#include "cli_args.h"

/* NULL-group-terminated. */
extern const cli_command_t cli_schedule_commands[];

#endif
