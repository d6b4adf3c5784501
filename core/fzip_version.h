/*
 * fzip_version: what `fzip --version` and `fzipd --version` say.
 *
 * The project version comes from CMake's PROJECT_VERSION, compiled into
 * fzip_version.c alone (core/CMakeLists.txt is the one place it is
 * passed), so a version bump rebuilds one file; the git commit is the one
 * checked out when CMake last configured, "" when unknown.  Each program
 * adds its own rows (API, package format, the libraries it links), since
 * core links none of them.
 */
#ifndef FZIP_VERSION_H
#define FZIP_VERSION_H

#include <stddef.h>
#include <stdio.h>

/* One "name version" row of the report; both strings borrowed. */
typedef struct {
  const char *name;
  const char *version;
} fzip_version_row_t;

/* "0.1.0"; static. */
const char *fzip_version(void);
/* Abbreviated git commit at configure time, or ""; static. */
const char *fzip_version_commit(void);

/* Prints "<program> <version> (commit <c>)" then one "  <name> <version>"
 * line per row (rows with a NULL version are skipped). */
void fzip_version_print(FILE *f, const char *program, const fzip_version_row_t *rows,
                        size_t n_rows);

#endif
