/*
 * fzip_failpoint: named fault-injection points for tests, off unless the
 * FZIP_FAILPOINTS environment variable is set when the process starts.
 *
 *   FZIP_FAILPOINTS="store.put_tagged=error@3,store.put_tagged=delay:200"
 *   FZIP_FAILPOINTS="store.put_tagged=hold:/tmp/t/release@2"
 *
 * "name=error@N" makes the N-th and every later hit of `name` fail;
 * "name=delay:MS" sleeps MS milliseconds at every hit;
 * "name=hold:PATH@N" holds the N-th and every later hit until the file
 * PATH (no comma or @ in it) exists ("@N" left out: every hit), so a test can act while a run
 * is at a known point and let it go on when it is done: a timed delay
 * leaves a window a loaded machine can miss.  Production code
 * calls fzip_failpoint() at the few places where the import's
 * all-or-nothing promise must be proven under failure (docs/IMPORT.md),
 * or where a test holds a run to watch it mid-way;
 * with the variable unset it costs one relaxed atomic load.
 */
#ifndef FZIP_FAILPOINT_H
#define FZIP_FAILPOINT_H

#include <stdbool.h>

#include "fzip_error.h"

#define FZIP_FAILPOINTS_MAX 8
#define FZIP_FAILPOINT_NAME_MAX 64

/* Returns false (error set to UNAVAILABLE naming the failpoint) when the
 * failpoint says to fail here; sleeps first if it says to delay. */
bool fzip_failpoint(const char *name, fzip_error_t *error);

#endif
