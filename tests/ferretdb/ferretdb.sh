#!/bin/sh
# ferretdb.sh: build, start and stop the FerretDB v1 test server (main.go)
# that fzip's MongoDB-backend tests run against.
#
#   ferretdb.sh build OUT_BINARY     go build, skipped when OUT is newer than its sources
#   ferretdb.sh start BINARY DIR     start in the background; when it accepts
#                                    connections DIR/uri holds the mongodb:// URI
#                                    and DIR/pid its process id
#   ferretdb.sh stop DIR             SIGTERM the process in DIR/pid, wait for it
#
# DIR/data holds FerretDB's SQLite files and DIR/ferretdb.log its log; both
# are removed at start so every run begins with an empty server.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
start_timeout_s=${FZIP_FERRETDB_START_TIMEOUT_S:-60}
stop_timeout_s=10

die() { echo "ferretdb.sh: $*" >&2; exit 1; }

cmd_build() {
  out=$1
  case "$out" in /*) ;; *) out="$(pwd)/$out" ;; esac
  if [ -x "$out" ] && [ -z "$(find "$here" -maxdepth 1 \( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$out")" ]; then
    return 0
  fi
  mkdir -p "$(dirname "$out")"
  # -trimpath keeps the binary independent of the checkout location.
  (cd "$here" && go build -trimpath -o "$out.tmp" .) || die "go build failed"
  mv "$out.tmp" "$out"
}

# True once something accepts TCP connections at host:port.
accepts() {
  python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$1" "$2" 2>/dev/null
}

cmd_start() {
  bin=$1 dir=$2
  [ -x "$bin" ] || die "no FerretDB binary at $bin (run: ferretdb.sh build $bin)"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    die "already running (pid $(cat "$dir/pid")); stop it first"
  fi
  rm -rf "$dir/data" "$dir/uri" "$dir/pid" "$dir/ferretdb.log"
  mkdir -p "$dir/data"
  nohup "$bin" -data-dir "$dir/data" -uri-file "$dir/uri.pending" \
    >"$dir/ferretdb.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  waited=0
  while :; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/ferretdb.log" >&2; rm -f "$dir/pid"; die "FerretDB exited at start"; }
    if [ -s "$dir/uri.pending" ]; then
      hostport=$(sed -n 's,^mongodb://\([^/]*\)/.*,\1,p' "$dir/uri.pending")
      if accepts "${hostport%:*}" "${hostport##*:}"; then
        break
      fi
    fi
    [ "$waited" -lt $((start_timeout_s * 10)) ] || { kill "$pid"; die "FerretDB not accepting connections after ${start_timeout_s}s"; }
    sleep 0.1
    waited=$((waited + 1))
  done
  mv "$dir/uri.pending" "$dir/uri"
  echo "FerretDB pid $pid at $(cat "$dir/uri")"
}

cmd_stop() {
  dir=$1
  [ -f "$dir/pid" ] || { echo "ferretdb.sh: nothing to stop in $dir"; return 0; }
  pid=$(cat "$dir/pid")
  if kill "$pid" 2>/dev/null; then
    waited=0
    while kill -0 "$pid" 2>/dev/null; do
      [ "$waited" -lt $((stop_timeout_s * 10)) ] || { kill -9 "$pid" 2>/dev/null || true; break; }
      sleep 0.1
      waited=$((waited + 1))
    done
  fi
  rm -f "$dir/pid" "$dir/uri"
  echo "FerretDB pid $pid stopped"
}

case "${1:-}" in
  build) [ $# -eq 2 ] || die "usage: $0 build OUT_BINARY"; cmd_build "$2" ;;
  start) [ $# -eq 3 ] || die "usage: $0 start BINARY DIR"; cmd_start "$2" "$3" ;;
  stop)  [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  *) die "usage: $0 build OUT_BINARY | start BINARY DIR | stop DIR" ;;
esac
