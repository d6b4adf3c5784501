#!/usr/bin/env bash
# test.sh: build fzip four ways and run its tests in each:
#
#   build/          RelWithDebInfo (gcc): the whole suite.
#   build-asan/     ASan + UBSan (gcc): tests labelled "heavy" are skipped,
#                   the big-blob streaming test uses 256 MiB instead of
#                   1 GiB, and the end-to-end tests run on the embedded store
#                   only (the MongoDB backend's code runs there through the
#                   storage conformance suite and the DataService test; its
#                   end-to-end runs against the slow FerretDB are in build/).
#   build-release/  Release (gcc -O3, NDEBUG): everything is built; the tests
#                   that run fzip's own code on the embedded store run (unit,
#                   storage, server, client, pkg, export/import e2e, fuzz
#                   replay, bench smoke).  Left out, as they add nothing an
#                   optimised build could break that build/ does not check:
#                   live-db (FerretDB), heavy, helm, and the Go tooling
#                   (go, gen_clients, grpcurl).
#   build-fuzz/     clang with libFuzzer (FZIP_FUZZ=libfuzzer): everything
#                   but the tests is built instrumented; each fuzz target
#                   replays its corpus, then fuzzes for FZIP_FUZZ_SECONDS
#                   (default 60, all targets in parallel); a crash fails.
#
# Exits non-zero if anything fails.  The last line is a CTest-style summary
# line ("N% tests passed, N tests failed out of N") over all four runs; a
# build that fails counts as one failed test there.
set -uo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-deps.sh || exit 1
# Debian's libmongoc initialises itself from a library constructor, before
# main(), and creates /dev/shm/mongoc-PID for its debugging counters.  Tests
# SIGKILL fzipd on purpose, which leaves that file behind; a later process
# that gets the same pid then prints "Falling back to malloc for counters" on
# stderr, before fzipd can route the driver's log into its JSON log.  Nothing
# here reads those counters, so they are off for every process the suite runs
# (the image sets the same variable).
export MONGOC_DISABLE_SHM=1
JOBS="${FZIP_JOBS:-2}"
FUZZ_SECONDS="${FZIP_FUZZ_SECONDS:-60}"
RELEASE_SKIP_LABELS='live-db|heavy|helm|go|gen_clients|grpcurl'
status=0
summary=""

run_suite() {  # dir, extra ctest args...
  local dir=$1
  shift
  local log
  log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure -j"$JOBS" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  summary="$summary$dir: $(grep -E 'tests passed, [0-9]+ tests failed' "$log" | tail -1)"$'\n'
  rm -f "$log"
  return "$rc"
}

build_failed() {  # dir
  echo "test.sh: $1/ failed to build"
  summary="$summary$1: 0% tests passed, 1 tests failed out of 1 (build failed)"$'\n'
  status=1
}

echo "== build/ (RelWithDebInfo)"
if cmake -S . -B build -G Ninja >/dev/null && cmake --build build -j"$JOBS"; then
  run_suite build || status=1
else
  build_failed build
fi

echo "== build-asan/ (ASan + UBSan, without heavy tests and FerretDB end-to-end runs)"
if cmake -S . -B build-asan -G Ninja -DFZIP_SANITIZE=ON >/dev/null &&
  cmake --build build-asan -j"$JOBS"; then
  # A small quarantine: ASan's default 256 MiB of parked frees would read
  # as RSS growth in the tests that check memory stays flat.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=16}" FZIP_TEST_BLOB_MB=256 \
    run_suite build-asan -LE heavy -E '^((import|export|package)\..*|tools\.seed)\.mongodb$' || status=1
else
  build_failed build-asan
fi

echo "== build-release/ (Release, without $RELEASE_SKIP_LABELS)"
if cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null &&
  cmake --build build-release -j"$JOBS"; then
  run_suite build-release -LE "$RELEASE_SKIP_LABELS" || status=1
else
  build_failed build-release
fi

echo "== build-fuzz/ (clang + libFuzzer, ${FUZZ_SECONDS} s per target)"
if cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DFZIP_FUZZ=libfuzzer \
  -DFZIP_BUILD_TESTS=OFF -DFZIP_FUZZ_SECONDS="$FUZZ_SECONDS" >/dev/null &&
  cmake --build build-fuzz -j"$JOBS"; then
  run_suite build-fuzz || status=1
else
  build_failed build-fuzz
fi

printf '%s' "$summary"
if [ $status -ne 0 ]; then
  echo "test.sh: FAILED"
fi
# Last line: one CTest-style summary line over all the runs (a run whose
# summary is missing, i.e. ctest itself broke, counts as one failed test).
printf '%s' "$summary" | awk '
  { n = split($0, w, " "); got = 0
    for (i = 1; i <= n; i++) {
      if (w[i] == "failed" && w[i - 1] == "tests") { f += w[i - 2]; got++ }
      if (w[i] == "of" && w[i - 1] == "out") { t += w[i + 1]; got++ } }
    if (got < 2) { f++; t++ } }
  END { p = t ? (t - f) * 100 / t : 0; if (f > 0 && p > 99) p = 99
        printf "%d%% tests passed, %d tests failed out of %d\n", p + 0.5, f, t }'
exit $status
