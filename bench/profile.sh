#!/bin/sh
# profile.sh: where fzipd's time goes in one benchmark phase (perf, cpu-clock
# sampling: this machine's perf has no hardware counters).
#
#   bench/profile.sh BUILD_DIR STORE_URI USER export|download|import
#
# import exports USER, then records the import of that package into a new,
# empty user (fail_on_conflict).
# Starts fzipd on STORE_URI (a store bench.py left behind, e.g.
# sqlite:build-bench/bench-work-sqlite/sqlite-100000/fzip.db), records the
# phase with `perf record -g -p <fzipd>`, and prints the top of
# `perf report --no-children` for fzipd and for the client side, then
# fzipd's threads second by second (bench/threads.py: time on a CPU and
# time waiting for one, which shows the stretches where one stage of a
# pipeline runs alone).
set -eu
build=$1 store=$2 user=$3 what=$4
here=$(dirname "$0")
work=$(mktemp -d "${TMPDIR:-/tmp}/fzip-profile-XXXXXX")
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secret"
"$build/server/fzipd" serve --listen 127.0.0.1:0 --store "$store" --jwt-secret-file "$work/secret" \
  --temp-dir "$work" --log-level warn >"$work/out" 2>"$work/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
i=0
until grep -q '^port=' "$work/out" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 300 ] || { echo "fzipd did not start" >&2; exit 1; }
  sleep 0.1
done
# fzipd's samples and its threads' timeline, from now until the end.
record_server() {
  perf record -e cpu-clock -g -o "$work/server.data" -p $pid 2>/dev/null &
  rec=$!
  python3 "$here/threads.py" $pid >"$work/threads" &
  thr=$!
  sleep 0.5
}
target=127.0.0.1:$(sed -n 's/^port=//p' "$work/out")
token=$("$build/server/fzipd" token --secret-file "$work/secret" --user "$user")
client="$build/bench/bench_client $target $token"
if [ "$what" = download ]; then
  id=$($client export | python3 -c 'import json,sys; print(json.load(sys.stdin)["export_id"])')
  record_server
  perf record -e cpu-clock -g -o "$work/client.data" $client download "$id" "$work/pkg" 2>/dev/null
elif [ "$what" = import ]; then
  id=$($client export | python3 -c 'import json,sys; print(json.load(sys.stdin)["export_id"])')
  $client download "$id" "$work/pkg" >/dev/null
  token=$("$build/server/fzipd" token --secret-file "$work/secret" --user "profile-$$")
  client="$build/bench/bench_client $target $token"
  imp=$($client upload "$work/pkg" | python3 -c 'import json,sys; print(json.load(sys.stdin)["import_id"])')
  record_server
  $client import "$imp" 1 0
else
  record_server
  $client export
fi
kill -INT $rec; wait $rec || true
kill -INT $thr; wait $thr || true
echo "== fzipd ($what) =="
perf report -i "$work/server.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null |
  grep -E '^ +[0-9]' | sed 's/  */ /g' | cut -c1-90 | head -25
echo "== fzipd ($what), by library =="
perf report -i "$work/server.data" --no-children -g none --sort dso --stdio 2>/dev/null |
  grep -E '^ +[0-9]' | sed 's/  */ /g' | head -10
if [ -f "$work/client.data" ]; then
  echo "== bench_client ($what) =="
  perf report -i "$work/client.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | sed 's/  */ /g' | cut -c1-90 | head -15
fi
echo "== fzipd ($what), threads second by second =="
cat "$work/threads"
