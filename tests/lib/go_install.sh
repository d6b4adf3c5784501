#!/bin/sh
# Installs a Go command at a pinned version into GOBIN (a build-tree
# directory), through the Go module proxy.  Idempotent: a binary already
# built from the same module@version (recorded in a stamp file) is kept.
# Shared by the grpcurl, helm and generated-client tests.
#
#   go_install.sh GOBIN BINARY MODULE_PATH@VERSION
set -eu
gobin=$(mkdir -p "$1" && cd "$1" && pwd) # go install wants it absolute
binary=$2
spec=$3
stamp="$gobin/.$binary.version"
if [ -x "$gobin/$binary" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$spec" ]; then
  echo "$binary: $spec already installed in $gobin"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "$binary: go not found (needed to build $spec)" >&2
  exit 1
fi
GOBIN="$gobin" GOFLAGS=-mod=mod go install "$spec"
echo "$spec" > "$stamp"
echo "$binary: installed $spec into $gobin"
