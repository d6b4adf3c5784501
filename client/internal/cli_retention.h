/*
 * cli_retention: `fzip retention apply`, a schedule's retention policy
 * applied (or listed with --dry-run) on demand.
 */
#ifndef CLI_RETENTION_H
#define CLI_RETENTION_H

#include "cli_args.h"

/* NULL-group-terminated. */
extern const cli_command_t cli_retention_commands[];

#endif
