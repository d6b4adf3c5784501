/*
 * tempdir: fzipd's private scratch directory, and the sweep that removes
 * what crashed processes left behind.
 *
 * Packages being built (fzip-pkg-*: the spools) and imports being
 * validated (fzip-import-*) live in temporary files that a kill -9 leaks.
 * So that a sweep can tell a leak from a file in use, every fzipd works in
 * its own directory <root>/fzipd-<pid>-XXXXXX and holds an exclusive
 * flock(2) on <dir>/.owner.lock for its whole life.  The kernel drops the
 * lock when the process dies, however it dies: a directory whose lock can
 * be taken belongs to nobody and is removed whole.  This holds for several
 * fzipd sharing one root on one host, whatever their pid namespaces (pids
 * are only in the name for people); it does not hold across hosts on a
 * network file system without working flock, which fzipd does not support
 * as a temp dir.
 *
 * Files named as older fzipd versions named them, directly in the root
 * (fzip-import-*, fzip-package-*, fzip-pkg-*), have no owner to ask: they
 * are removed once untouched for TEMPDIR_LEGACY_AGE_MS.
 */
#ifndef FZIP_TEMPDIR_H
#define FZIP_TEMPDIR_H

#include <stdbool.h>
#include <stdint.h>

#include "fzip_error.h"

#define TEMPDIR_PREFIX "fzipd-"
#define TEMPDIR_LOCK_NAME ".owner.lock"
/* Unowned top-level temporaries of older versions go after an hour
 * without a change (a package upload rewrites nothing but finishes well
 * within that). */
#define TEMPDIR_LEGACY_AGE_MS (3600LL * 1000)
/* A private dir without its lock file yet is being created: left alone
 * for this long. */
#define TEMPDIR_CREATING_GRACE_MS (60LL * 1000)

typedef struct tempdir tempdir_t;

typedef struct {
  uint64_t dirs;   /* private dirs of dead processes removed */
  uint64_t legacy; /* old-style top-level temporaries removed */
} tempdir_sweep_stats_t;

/* Creates and locks this process's directory under `root` (NULL or "":
 * $TMPDIR, else /tmp).  *out is the caller's to destroy. */
bool tempdir_new(tempdir_t **out, const char *root, fzip_error_t *error);
/* The private directory (borrowed, valid until destroy). */
const char *tempdir_path(const tempdir_t *t);
/* The root it lives in (borrowed). */
const char *tempdir_root(const tempdir_t *t);
/* Removes the private directory and everything in it; accepts NULL. */
void tempdir_destroy(tempdir_t *t);

/* Removes, under `root` (NULL: the default root), the private dirs no live
 * process holds and old-style temporaries untouched for legacy_age_ms.
 * Entries it cannot remove are logged and skipped; it fails only when the
 * root cannot be read. */
bool tempdir_sweep(tempdir_sweep_stats_t *stats, const char *root, int64_t legacy_age_ms,
                   fzip_error_t *error);

#endif
