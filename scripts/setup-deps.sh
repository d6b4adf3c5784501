#!/usr/bin/env bash
# setup-deps.sh: install the Debian packages fzip builds and tests with.
# Idempotent: does nothing (not even apt-get update) when all are present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
  protobuf-compiler-grpc grpc-proto
  libzip-dev libmongoc-dev libbson-dev libjwt-dev libsqlite3-dev libssl-dev
  python3-grpcio python3-protobuf
  zip unzip openssl
)
# Go (for the FerretDB test fixture) is often installed outside apt.
if ! command -v go >/dev/null 2>&1; then
  PACKAGES+=(golang-go)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "setup-deps: installing ${missing[*]}"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
