#!/usr/bin/python3
"""Checks that docs/FORMAT.md's limits table is the one in the code.

Usage: check_limits_doc.py PRINT_PKG_LIMITS FORMAT_MD

PRINT_PKG_LIMITS --markdown prints pkg/pkg_limits.h's table; FORMAT.md
must hold exactly those lines between "<!-- limits:begin -->" and
"<!-- limits:end -->".
"""
import difflib
import subprocess
import sys

BEGIN, END = "<!-- limits:begin -->", "<!-- limits:end -->"


def main():
    printer, doc = sys.argv[1], sys.argv[2]
    code = subprocess.run([printer, "--markdown"], check=True, capture_output=True,
                          text=True).stdout.splitlines()
    with open(doc, encoding="utf-8") as f:
        text = f.read().splitlines()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        print("%s: needs exactly one %s and one %s" % (doc, BEGIN, END))
        return 1
    table = text[text.index(BEGIN) + 1:text.index(END)]
    if table != code:
        print("FORMAT.md's limits table differs from pkg/pkg_limits.h "
              "(paste `print_pkg_limits --markdown` between the markers):")
        sys.stdout.writelines(l + "\n" for l in difflib.unified_diff(
            table, code, "FORMAT.md", "pkg_limits.h", lineterm=""))
        return 1
    print("%d limits agree" % (len(code) - 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
