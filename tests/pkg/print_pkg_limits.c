/*
 * print_pkg_limits: prints the limits table of pkg/pkg_limits.h as the
 * Markdown table docs/FORMAT.md section 9 holds between its
 * "limits:begin" and "limits:end" markers.  check_limits_doc.py (test
 * pkg.limits_doc) compares the two, so the document cannot drift
 * from the code; to update the document after changing a limit:
 *
 *   build/tests/pkg/print_pkg_limits --markdown
 *
 * and paste the output between the markers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pkg_validate.h"

#define VALUE_MAX 64

/* 100007 -> "100,007" */
static void with_commas(char out[VALUE_MAX], uint64_t v) {
  char digits[32];
  size_t n = (size_t)snprintf(digits, sizeof digits, "%" PRIu64, v), o = 0;
  for (size_t i = 0; i < n; i++) {
    if (i && (n - i) % 3 == 0)
      out[o++] = ',';
    out[o++] = digits[i];
  }
  out[o] = '\0';
}

static void format_value(char out[VALUE_MAX], const pkg_limit_t *l) {
  static const struct {
    uint64_t size;
    const char *unit;
  } units[] = {{PKG_GIB, "GiB"}, {PKG_MIB, "MiB"}, {PKG_KIB, "KiB"}};
  char n[VALUE_MAX];
  if (l->unit == PKG_UNIT_BYTES) {
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
      if (l->value >= units[i].size && l->value % units[i].size == 0) {
        with_commas(n, l->value / units[i].size);
        snprintf(out, VALUE_MAX, "%s %s", n, units[i].unit);
        return;
      }
    }
    with_commas(n, l->value);
    snprintf(out, VALUE_MAX, "%s bytes", n);
    return;
  }
  with_commas(out, l->value);
}

int main(int argc, char **argv) {
  size_t n;
  const pkg_limit_t *rows = pkgv_limits(&n);
  char value[VALUE_MAX];

  if (argc != 2 || strcmp(argv[1], "--markdown") != 0) {
    fprintf(stderr, "usage: print_pkg_limits --markdown\n");
    return 2;
  }
  printf("| constant | value | what |\n| --- | --- | --- |\n");
  for (size_t i = 0; i < n; i++) {
    format_value(value, &rows[i]);
    printf("| `%s` | %s | %s |\n", rows[i].name, value, rows[i].what);
  }
  return 0;
}
