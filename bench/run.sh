#!/bin/sh
# run.sh: build fzip in Release and run the benchmark (docs/BENCHMARKS.md).
#
#   bench/run.sh [--sizes 1000,10000,100000,1000000] [--stores sqlite,mongodb]
#                [--mongo-sizes 1000,10000] [--phase-timeout S] [--mongo-phase-timeout S]
#                [--out results.json]
#                [--mongodump PATH --mongorestore PATH]
#
# Builds in $FZIP_BENCH_BUILD (default: build-bench beside this directory),
# then hands every argument to bench.py.  Results: one JSON file (--out,
# default $FZIP_BENCH_BUILD/bench-results.json) and a Markdown summary
# next to it (report.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${FZIP_BENCH_BUILD:-$src/build-bench}

# -O3 makes gcc 12 see maybe-uninitialized / truncation warnings that -O2
# (the default build) does not; they must not stop a benchmark build, so
# only those stay warnings here.
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_C_FLAGS=-Wno-error=maybe-uninitialized -Wno-error=format-truncation -Wno-error=stringop-truncation -Wno-error=stringop-overflow -Wno-error=array-bounds" >/dev/null
cmake --build "$build" -j2 --target fzipd bench_client bench_floor bench_tcp bench_grpc_floor

out="$build/bench-results.json"
prev=""
for arg in "$@"; do
  [ "$prev" = "--out" ] && out=$arg
  prev=$arg
done
python3 "$here/bench.py" --bin-dir "$build" --out "$out" "$@"
python3 "$here/report.py" "$out" >"${out%.json}.md"
echo "bench: results in $out and ${out%.json}.md"
