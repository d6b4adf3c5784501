/*
 * pkg_tmp: the one way pkg/ makes an unlinked temporary file (the
 * validator's duplicate-id runs, pkg_idrun; the import's entity spool,
 * pkg_spool) in a scratch directory (fzip_tmp_root) and says what went
 * wrong with one (fzip_tmp_error).
 */
#ifndef PKG_TMP_H
#define PKG_TMP_H

#include <stdbool.h>
#include <stdio.h>

#include "fzip_error.h"
#include "fzip_util.h"

/* A new file root/<prefix>XXXXXX opened "w+b" and unlinked at once, so
 * nothing is left behind whatever happens next; *out is the caller's
 * (fclose).  `what` names the user in an error ("entity spool"). */
bool pkg_tmp_file(FILE **out, const char *root, const char *prefix, const char *what,
                  fzip_error_t *error);

#endif
