/*
 * pkg_idrun: finds the ids that occur more than once in a stream of ids,
 * in memory that does not grow with the stream (the validator's "ids
 * unique in the package" check for transactions and analytics records,
 * which no other entity refers to and which are therefore not kept).
 *
 * Two modes:
 *   - sorted: while ids arrive strictly ascending (byte-wise strcmp), as
 *     fzip's own packages list them (docs/FORMAT.md section 3), an id can
 *     only repeat the one just before it; the run keeps that one id and
 *     nothing else, and never touches the disk;
 *   - external: the first id lower than its predecessor turns the run
 *     external for good.  From then on ids are copied into one buffer of
 *     at most run_max ids and PKG_IDRUN_RUN_BYTES bytes; a full buffer is
 *     sorted and appended as a sorted run to an unlinked temporary file,
 *     and pkg_idrun_finish merges the runs (one read buffer each) and
 *     reports every id met again.  When everything fits the buffer, no
 *     file is created at all.
 * The ids of the sorted prefix (before the switch) were not kept, and the
 * external runs need them: the caller gives them again, in the same
 * order, with pkg_idrun_replay (the validator re-reads the start of the
 * data file).  This keeps fzip's own packages, the common case, free of
 * any temporary file, at the price of a second read of the prefix for a
 * package that is out of order, which is rare and usually out of order
 * from its first ids (a foreign or hand-made package).
 *
 * Memory: one id in sorted mode; in external mode the buffer
 * (run_max pointers + PKG_IDRUN_RUN_BYTES) while ids arrive, then, once
 * that is freed, PKG_IDRUN_READ_BYTES + FZIP_ID_MAX + 1 per run for the
 * merge.  The runs are capped at PKG_IDRUN_RUNS_MAX and the ids at the
 * caller's ids_max (pkg_idrun_add says FULL past either).
 *
 * The temporary file is created in the options' temp_dir ($TMPDIR, else
 * /tmp, when NULL) as fzip-idrun-XXXXXX and unlinked at once, so nothing
 * is left behind whatever happens.  A failure to create, write or read it
 * is an error (FZIP_DOMAIN_SYS: RESOURCE_EXHAUSTED when the disk is full,
 * INTERNAL otherwise, the message naming the directory), never a silent
 * pass.
 *
 * A run belongs to one thread at a time.
 */
#ifndef PKG_IDRUN_H
#define PKG_IDRUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fzip_entity.h"
#include "fzip_error.h"

#define PKG_IDRUN_RUN_MAX 65536                 /* ids per sorted run (default run_max) */
#define PKG_IDRUN_RUN_BYTES (4u * 1024 * 1024)  /* bytes of ids (NULs included) per run */
#define PKG_IDRUN_RUNS_MAX 1024                 /* sorted runs in the temporary file */
#define PKG_IDRUN_READ_BYTES 4096               /* merge read buffer per run */

typedef struct pkg_idrun pkg_idrun_t;

typedef struct {
  const char *temp_dir; /* NULL or "": $TMPDIR, else /tmp; borrowed for the run's life */
  size_t run_max;       /* ids per sorted run, at most (and 0:) PKG_IDRUN_RUN_MAX; tests set it small */
  uint64_t ids_max;     /* ids kept in all; 0: UINT64_MAX */
} pkg_idrun_options_t;

/* *out is the caller's (pkg_idrun_destroy); options NULL: the defaults.
 * Allocates nothing large until the ids go out of order. */
bool pkg_idrun_new(pkg_idrun_t **out, const pkg_idrun_options_t *options, fzip_error_t *error);
void pkg_idrun_destroy(pkg_idrun_t *run); /* accepts NULL; closes the temporary file */

typedef enum {
  PKG_IDRUN_NEW = 1,   /* kept; pkg_idrun_finish reports it if it is met again later */
  PKG_IDRUN_AGAIN = 0, /* equal to the id kept just before it: a duplicate, not kept */
  PKG_IDRUN_FULL = -1, /* ids_max ids or PKG_IDRUN_RUNS_MAX runs already: not kept */
} pkg_idrun_rc_t;

/* Adds `id` (NUL-terminated, 1 to FZIP_ID_MAX bytes).  False with *error
 * (the id too long or empty, out of memory, the temporary file). */
bool pkg_idrun_add(pkg_idrun_rc_t *rc, pkg_idrun_t *run, const char *id, fzip_error_t *error);

/* How many more ids pkg_idrun_replay wants: 0 while the run is sorted,
 * then the number of pkg_idrun_add calls made before the first id out of
 * order (whatever they returned), less those replayed already. */
uint64_t pkg_idrun_replay_wanted(const pkg_idrun_t *run);

/* Gives again the next id of the sorted prefix: the caller passes, in
 * order, the same ids it passed to pkg_idrun_add before the switch,
 * until pkg_idrun_replay_wanted is 0.  Nothing is reported here (those
 * ids were answered when added).  False with *error as pkg_idrun_add,
 * or INVALID_ARGUMENT when no more ids are wanted or the id is not the
 * ascending one expected. */
bool pkg_idrun_replay(pkg_idrun_t *run, const char *id, fzip_error_t *error);

/* Called by pkg_idrun_finish with each id met again in external mode
 * (once per occurrence after the first; `id` borrowed for the call), in
 * ascending id order.  False with *error stops the merge. */
typedef bool (*pkg_idrun_dup_fn)(void *ctx, const char *id, fzip_error_t *error);

/* Ends the stream: in external mode sorts what is buffered, merges the
 * runs and calls `dup` (may be NULL) for each duplicate not already
 * answered AGAIN; *n_dups (may be NULL) gets their number.  Needs the
 * whole prefix replayed (FAILED_PRECONDITION otherwise).  The run may
 * only be destroyed afterwards. */
bool pkg_idrun_finish(uint64_t *n_dups, pkg_idrun_t *run, pkg_idrun_dup_fn dup, void *ctx,
                      fzip_error_t *error);

/* Introspection for tests and logs. */
bool pkg_idrun_external(const pkg_idrun_t *run); /* an id arrived out of order */
size_t pkg_idrun_runs(const pkg_idrun_t *run);   /* sorted runs written to the file so far */

#endif
