#!/bin/sh
# fetch-sqlite.sh OUT_DIR: puts the SQLite amalgamation fzip builds its
# embedded store with (OUT_DIR/sqlite3.c, OUT_DIR/sqlite3.h).  CMake runs it
# at configure time (CMakeLists.txt, FZIP_SQLITE_DIR).
#
# Why not Debian's libsqlite3: bookworm's 3.40.1 is built without
# SQLITE_DIRECT_OVERFLOW_READ, so every page of a blob went through
# SQLite's page cache (a read into the cache, then a copy out of it), and
# the download of a package cost twice the copying it needs
# (docs/BENCHMARKS.md run AE, docs/STORAGE.md "SQLite build").
#
# Where from: only registries this project may use are reachable, and
# sqlite.org is not one; the Go module proxy serves mattn/go-sqlite3, whose
# sqlite3-binding.c/.h are the unmodified amalgamation inside an
# `#ifndef USE_LIBSQLITE3` guard (never defined here).  The module zip is
# checked by the go command against the checksum database, and the two
# files against the sha256 pinned below, so an upgrade is an edit here.
set -eu

MODULE=github.com/mattn/go-sqlite3
MODULE_VERSION=v1.14.53 # SQLite 3.54.1
SQLITE_C_SHA256=758343f1464f3ee8c7c601d5b0cde415b52dcdf43a44ed884a62d19ec416e824
SQLITE_H_SHA256=ca1f8da8e3e044c2856e51c9e2e7800d00bf0eca95443d65dd525c7c3afd6206

die() {
  echo "fetch-sqlite: $*" >&2
  exit 1
}

[ $# -eq 1 ] || die "usage: fetch-sqlite.sh OUT_DIR"
out=$1
# CMake runs this at every configure: a directory that already holds this
# version is left alone (a new copy would rebuild SQLite each time).
if [ -f "$out/sqlite3.c" ] && [ "$(cat "$out/VERSION" 2>/dev/null)" = "$MODULE@$MODULE_VERSION" ]; then
  exit 0
fi
command -v go >/dev/null 2>&1 ||
  die "go not found: it fetches SQLite from the Go module proxy (scripts/setup-deps.sh installs it)"

# Outside any module: `go mod download` of one module@version into the
# module cache; -json names the unpacked directory.
json=$(cd / && go mod download -json "$MODULE@$MODULE_VERSION") ||
  die "go mod download $MODULE@$MODULE_VERSION failed"
dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[ -n "$dir" ] && [ -f "$dir/sqlite3-binding.c" ] || die "no sqlite3-binding.c in '$dir'"

check() { # file sha256
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || die "$1: sha256 $got, expected $2"
}
check "$dir/sqlite3-binding.c" "$SQLITE_C_SHA256"
check "$dir/sqlite3-binding.h" "$SQLITE_H_SHA256"

# Into a temporary directory first, so an interrupted copy never leaves a
# sqlite3.c that CMake would take as complete.
mkdir -p "$out"
tmp=$(mktemp -d "$out/.fetch-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$dir/sqlite3-binding.c" "$tmp/sqlite3.c"
cp "$dir/sqlite3-binding.h" "$tmp/sqlite3.h"
chmod 644 "$tmp/sqlite3.c" "$tmp/sqlite3.h" # the module cache is read-only
echo "$MODULE@$MODULE_VERSION" > "$tmp/VERSION"
mv -f "$tmp/sqlite3.h" "$tmp/VERSION" "$out/"
mv -f "$tmp/sqlite3.c" "$out/"
echo "fetch-sqlite: SQLite from $MODULE@$MODULE_VERSION in $out"
