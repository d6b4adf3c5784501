#!/usr/bin/env bash
# test.sh: build and run the whole test suite twice: a normal build in
# build/ and an AddressSanitizer + UBSan build in build-asan/.  Under the
# sanitizers, tests labelled "heavy" are skipped, the big-blob streaming
# test uses 256 MiB instead of 1 GiB, and the end-to-end tests run on the
# embedded store only (the MongoDB backend's code runs there through the
# storage conformance suite and the DataService test; its end-to-end runs
# against the slow FerretDB are in the normal build).
# Exits non-zero if anything fails; the last line is CTest's summary.
set -uo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-deps.sh || exit 1
JOBS="${FZIP_JOBS:-2}"
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

echo "== build/ (RelWithDebInfo)"
if cmake -S . -B build -G Ninja >/dev/null && cmake --build build -j"$JOBS"; then
  run_suite build || status=1
else
  echo "test.sh: build/ failed to build"
  status=1
fi

echo "== build-asan/ (ASan + UBSan, without heavy tests)"
if cmake -S . -B build-asan -G Ninja -DFZIP_SANITIZE=ON >/dev/null &&
  cmake --build build-asan -j"$JOBS"; then
  # A small quarantine: ASan's default 256 MiB of parked frees would read
  # as RSS growth in the tests that check memory stays flat.
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=16}" FZIP_TEST_BLOB_MB=256 \
    run_suite build-asan -LE heavy -E '(e2e|seed)\.mongodb' || status=1
else
  echo "test.sh: build-asan/ failed to build"
  status=1
fi

printf '%s' "$summary"
if [ $status -ne 0 ]; then
  echo "test.sh: FAILED"
fi
# Last line: CTest's summary line (the worse of the two runs).
printf '%s' "$summary" | grep -v ' 0 tests failed' | tail -1 | sed 's/^[^:]*: //' | grep . ||
  printf '%s' "$summary" | tail -1 | sed 's/^[^:]*: //'
exit $status
