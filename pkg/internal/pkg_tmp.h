/*
 * pkg_tmp: the one way pkg/ picks its scratch directory and makes an
 * unlinked temporary file there (the validator's duplicate-id runs,
 * pkg_idrun; the import's entity spool, pkg_spool), and says what went
 * wrong with one.
 */
#ifndef PKG_TMP_H
#define PKG_TMP_H

#include <stdbool.h>
#include <stdio.h>

#include "fzip_error.h"

/* dir when set and not empty, else $TMPDIR when set and not empty, else
 * /tmp.  The result is dir's, the environment's or static. */
const char *pkg_tmp_root(const char *dir);

/* A new file root/<prefix>XXXXXX opened "w+b" and unlinked at once, so
 * nothing is left behind whatever happens next; *out is the caller's
 * (fclose).  `what` names the user in an error ("entity spool"). */
bool pkg_tmp_file(FILE **out, const char *root, const char *prefix, const char *what,
                  fzip_error_t *error);

/* errno after a failed call on such a file as an error of FZIP_DOMAIN_SYS:
 * RESOURCE_EXHAUSTED when the disk is full, INTERNAL otherwise ("short
 * read" when errno is 0), "<what>: <doing> its temporary file in <root>:
 * <reason>".  Returns false. */
bool pkg_tmp_error(fzip_error_t *error, const char *what, const char *doing, const char *root);

#endif
