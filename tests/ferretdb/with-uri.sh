#!/bin/sh
# with-uri.sh: run a test program against the FerretDB that the `ferretdb`
# CTest fixture started.
#
#   with-uri.sh URI_FILE DATABASE PROGRAM [ARGS...]
#
# Reads the mongodb:// URI from URI_FILE (written by `ferretdb.sh start`),
# appends DATABASE as the URI's database so that every test program gets a
# database of its own, exports it as FZIP_TEST_MONGODB_URI, and replaces any
# argument that is exactly @MONGODB_URI@ with it.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 URI_FILE DATABASE PROGRAM [ARGS...]" >&2; exit 2; }
uri_file=$1 db=$2
shift 2
[ -s "$uri_file" ] || { echo "with-uri.sh: no URI in $uri_file (is the ferretdb fixture running?)" >&2; exit 1; }
base=$(head -n 1 "$uri_file")
FZIP_TEST_MONGODB_URI="${base%/}/$db"
export FZIP_TEST_MONGODB_URI
prog=$1
shift
for arg in "$@"; do
  shift
  if [ "$arg" = "@MONGODB_URI@" ]; then arg=$FZIP_TEST_MONGODB_URI; fi
  set -- "$@" "$arg"
done
exec "$prog" "$@"
