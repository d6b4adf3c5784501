#!/usr/bin/env python3
"""arch.links: the offline CLI and the fuzz targets link no store.

Usage: check_links.py --with-store FZIPD -- BINARY...
Each BINARY must carry no store_* / mongoc_* / sqlite3_* symbol (defined or
undefined, from nm) and need no libmongoc / libsqlite3 (from ldd).  FZIPD is
the positive control: it must show the three symbol families and libmongoc
(SQLite is compiled in, CMakeLists.txt fzip_sqlite3, so no libsqlite3), so
a check that sees nothing (stripped binary, nm missing) fails instead of
passing.
"""
import re
import subprocess
import sys

SYMBOL = re.compile(r"\b(store_[a-z_]+|mongoc_[a-z_]+|sqlite3_[a-z_]+)\b")
LIBRARY = re.compile(r"\b(libmongoc-[0-9.]+\.so|libsqlite3\.so)")


def store_traces(path):
    nm = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    symbols = sorted({m.group(1).split("_")[0] + "_" for m in SYMBOL.finditer(nm)})
    libraries = sorted(set(LIBRARY.findall(ldd)))
    examples = sorted({m.group(1) for m in SYMBOL.finditer(nm)})[:5]
    return symbols, libraries, examples


def main(argv):
    if len(argv) < 4 or argv[0] != "--with-store" or argv[2] != "--":
        sys.exit(__doc__)
    control, binaries = argv[1], argv[3:]
    symbols, libraries, _ = store_traces(control)
    if symbols != ["mongoc_", "sqlite3_", "store_"] or len(libraries) != 1 \
            or not libraries[0].startswith("libmongoc"):
        print("control %s: expected store, mongoc and sqlite3 symbols and libmongoc, saw %s %s"
              % (control, symbols, libraries))
        return 1
    failed = 0
    for path in binaries:
        symbols, libraries, examples = store_traces(path)
        if symbols or libraries:
            failed += 1
            print("%s links a store: symbols %s (e.g. %s), libraries %s"
                  % (path, symbols, ", ".join(examples), libraries))
        else:
            print("%s: no store symbol, no store library" % path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
