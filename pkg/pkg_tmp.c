/*
 * pkg_tmp: see internal/pkg_tmp.h.
 */
#include "pkg_tmp.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool pkg_tmp_file(FILE **out, const char *root, const char *prefix, const char *what,
                  fzip_error_t *error) {
  char path[PATH_MAX];
  int fd;
  *out = NULL;
  if ((size_t)snprintf(path, sizeof path, "%s/%sXXXXXX", root, prefix) >= sizeof path)
    return fzip_error_set(error, FZIP_DOMAIN_SYS, FZIP_ERR_INVALID_ARGUMENT,
                          "%s: temporary directory name too long", what);
  errno = 0;
  if ((fd = mkstemp(path)) < 0)
    return fzip_tmp_error(error, what, "creating", root);
  unlink(path); /* nothing to clean up, whatever happens next */
  if (!(*out = fdopen(fd, "w+b"))) {
    int e = errno;
    close(fd);
    errno = e;
    return fzip_tmp_error(error, what, "opening", root);
  }
  return true;
}
