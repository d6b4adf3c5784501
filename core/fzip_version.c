/*
 * fzip_version: see fzip_version.h.  FZIP_PROJECT_VERSION and
 * FZIP_GIT_COMMIT are compile definitions of this file only.
 */
#include "fzip_version.h"

#ifndef FZIP_PROJECT_VERSION
#error "FZIP_PROJECT_VERSION must come from CMake (core/CMakeLists.txt)"
#endif
#ifndef FZIP_GIT_COMMIT
#define FZIP_GIT_COMMIT ""
#endif

const char *fzip_version(void) {
  return FZIP_PROJECT_VERSION;
}

const char *fzip_version_commit(void) {
  return FZIP_GIT_COMMIT;
}

void fzip_version_print(FILE *f, const char *program, const fzip_version_row_t *rows,
                        size_t n_rows) {
  const char *commit = fzip_version_commit();
  fprintf(f, "%s %s", program, fzip_version());
  if (commit[0])
    fprintf(f, " (commit %s)", commit);
  fputc('\n', f);
  for (size_t i = 0; i < n_rows; i++)
    if (rows[i].version)
      fprintf(f, "  %-16s %s\n", rows[i].name, rows[i].version);
}
