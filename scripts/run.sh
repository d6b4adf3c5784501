#!/usr/bin/env bash
# run.sh: build fzipd and fzip into build/ and run fzipd in the foreground on
# the embedded SQLite store.  With no JWT configuration in the environment
# (FZIP_JWT_SECRET_FILE / FZIP_JWT_PUBLIC_KEY_FILE) a development secret is
# created in .dev/ and its path printed with the command that mints a token.
# Extra arguments go to `fzipd serve`.  Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

./scripts/setup-deps.sh
# The same configuration as scripts/test.sh (one build/ for both), but only
# the two programs are built.
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j2 --target fzipd fzip

FZIPD="$ROOT/build/server/fzipd"
mkdir -p "$ROOT/.dev"
if [ -z "${FZIP_JWT_SECRET_FILE:-}" ] && [ -z "${FZIP_JWT_PUBLIC_KEY_FILE:-}" ]; then
  export FZIP_JWT_SECRET_FILE="$ROOT/.dev/jwt.secret"
  if [ ! -f "$FZIP_JWT_SECRET_FILE" ]; then
    (umask 077 && openssl rand -hex 32 >"$FZIP_JWT_SECRET_FILE")
    echo "run.sh: created development JWT secret $FZIP_JWT_SECRET_FILE"
  fi
  echo "run.sh: mint a token with:"
  echo "  $FZIPD token --secret-file $FZIP_JWT_SECRET_FILE --user dev-user"
fi
export FZIP_STORE="${FZIP_STORE:-sqlite:$ROOT/.dev/fzip.db}"
echo "run.sh: fzipd on ${FZIP_LISTEN:-127.0.0.1:50051}, store $FZIP_STORE (Ctrl-C stops)"
exec "$FZIPD" serve "$@"
