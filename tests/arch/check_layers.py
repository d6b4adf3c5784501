#!/usr/bin/env python3
"""arch.layers: no file includes from a higher layer (docs/ARCHITECTURE.md).

Every project header is owned by the folder it lives in; generated protobuf
headers belong to proto/.  Headers in <layer>/internal/ may be included by
that layer only (CMake puts that directory on its PRIVATE include path).  A file in folder F may include headers of F and of
the folders ALLOWED[F] names, nothing else.  System headers (<...>) are not
checked.  Usage: check_layers.py SOURCE_DIR (the check runs a self-test first)
"""
import os
import re
import sys

# Lowest first.  The order of this table is the order of the layers.
ALLOWED = {
    "core": set(),
    "proto": set(),
    "pkg": {"core"},
    "storage": {"core"},
    "rpc": {"core", "proto"},  # proto: google.rpc.Status only (rpc_details.c)
    "jobs": {"core", "storage", "rpc", "proto"},
    "export": {"core", "pkg", "storage", "rpc", "jobs", "proto"},
    "import": {"core", "pkg", "storage", "rpc", "jobs", "proto"},
    "tools/seed": {"core", "storage"},
    "server": {"core", "pkg", "storage", "rpc", "jobs", "export", "import",
               "tools/seed", "proto"},
    "client": {"core", "pkg", "rpc", "proto"},
    "fuzz": {"core", "pkg"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# Headers generated into the build tree by proto/CMakeLists.txt.
GENERATED = re.compile(r'(\.pb-c\.h|^fzip_descriptors\.h)$')


INTERNAL_DIR = "internal"  # <layer>/internal/: headers only that layer may include


def owner_of_headers(root):
    """header name -> (owning layer, internal?)"""
    owners = {}
    for folder in ALLOWED:
        base = os.path.join(root, folder)
        for dirpath, _, files in os.walk(base):
            internal = os.path.relpath(dirpath, base).split(os.sep)[0] == INTERNAL_DIR
            for name in files:
                if name.endswith(".h"):
                    prev = owners.setdefault(name, (folder, internal))
                    if prev[0] != folder:
                        sys.exit("arch.layers: header %s exists in %s and %s" % (name, prev[0], folder))
    return owners


def check(root):
    owners = owner_of_headers(root)
    bad, checked = [], 0
    for folder, allowed in ALLOWED.items():
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                for inc in INCLUDE.findall(text):
                    checked += 1
                    base = os.path.basename(inc)
                    dep, internal = ("proto", False) if GENERATED.search(base) else \
                        owners.get(base, (None, False))
                    if dep is None:
                        bad.append("%s: includes \"%s\", which no layer owns" % (rel, inc))
                    elif internal and dep != folder:
                        bad.append("%s: includes \"%s\", internal to %s/" % (rel, inc, dep))
                    elif dep != folder and dep not in allowed:
                        bad.append("%s: includes \"%s\" from %s/, a layer %s/ may not use"
                                   " (allowed: %s)" % (rel, inc, dep, folder,
                                                      ", ".join(sorted(allowed)) or "none"))
    return bad, checked


def self_test():
    """The check refuses an upward include and accepts a downward one."""
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        files = {"core/low.h": "", "core/internal/secret.h": "",
                 "server/high.h": '#include "low.h"\n',
                 "server/peek.c": '#include "secret.h"\n',
                 "core/bad.c": '#include "high.h"\n#include "low.h"\n#include "secret.h"\n'}
        for rel, text in files.items():
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text)
        bad, checked = check(root)
    want = ['core/bad.c: includes "high.h"', 'server/peek.c: includes "secret.h", internal to core/']
    if checked != 5 or len(bad) != 2 or not all(b.startswith(w) for b, w in zip(sorted(bad), want)):
        print("self-test failed: %d checked, refused %s" % (checked, bad))
        return False
    return True


def table_is_ordered():
    """Each layer may use only layers listed before it, so the table is a
    ranking with no cycle: an edit that adds an upward or cyclic edge fails
    here even before any file uses it."""
    order = list(ALLOWED)
    bad = ["%s may use %s, which is not below it" % (layer, dep)
           for i, layer in enumerate(order) for dep in sorted(ALLOWED[layer])
           if dep not in order[:i]]
    for line in bad:
        print("arch.layers: table: " + line)
    return not bad


def main():
    if not self_test() or not table_is_ordered():
        return 1
    if sys.argv[1:] == ["--self-test"]:
        return 0
    bad, checked = check(os.path.abspath(sys.argv[1]))
    for line in bad:
        print(line)
    print("arch.layers: %d includes checked in %d layers, %d refused"
          % (checked, len(ALLOWED), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
