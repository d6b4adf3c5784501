/*
 * cli_progress: progress of a transfer or a job on stderr.
 *
 * On a terminal one line is redrawn in place (bar, bytes, rate, ETA); when
 * stderr is a file or a pipe, plain lines are written at most once per
 * PLAIN_INTERVAL and at each change of phase, so logs stay short and
 * readable.  A quiet progress prints nothing.
 */
#ifndef CLI_PROGRESS_H
#define CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
  CLI_PROGRESS_OFF,   /* print nothing */
  CLI_PROGRESS_PLAIN, /* occasional lines */
  CLI_PROGRESS_TTY,   /* one redrawn line */
} cli_progress_mode_t;

typedef struct cli_progress cli_progress_t;

/* `label` is copied.  *out is the caller's to destroy.  Returns NULL on
 * allocation failure (callers then go without progress). */
cli_progress_t *cli_progress_new(cli_progress_mode_t mode, const char *label);
void cli_progress_destroy(cli_progress_t *p); /* ends the line; accepts NULL */

/* Bytes moved out of `total` (0: unknown).  `start` is where a resumed
 * transfer began, so the rate counts only this run's bytes. */
void cli_progress_bytes(cli_progress_t *p, int64_t done, int64_t total, int64_t start);
/* A job's state: percent 0-100, status and phase names. */
void cli_progress_job(cli_progress_t *p, int percent, const char *status, const char *phase);

#endif
