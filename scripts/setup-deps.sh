#!/usr/bin/env bash
# setup-deps.sh: install the Debian packages fzip builds and tests with.
# Idempotent: does nothing (not even apt-get update) when all are present.
set -euo pipefail

# Every tool a test runs is here: a test must find what it needs, not skip.
PACKAGES=(
  # build (build-essential brings gcc's ASan/UBSan runtimes)
  build-essential cmake ninja-build pkg-config git
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
  protobuf-compiler-grpc grpc-proto
  libzip-dev libmongoc-dev libbson-dev libjwt-dev libssl-dev
  # HouseF3 application packages with LZMA zip entries (pkg/pkg_housef3.c)
  liblzma-dev
  # encrypted packages, the FZIPENC1 envelope (pkg/pkg_seal.c)
  libsodium-dev
  # fzipd's /metrics endpoint (--metrics-listen)
  libmicrohttpd-dev
  # IANA time zones of schedules and retention (core/fzip_tz.c reads
  # /usr/share/zoneinfo at run time)
  tzdata
  # test drivers: grpcio clients, jsonschema (pkg.writer checks packages
  # against docs/schema), yaml (helm renders)
  python3 python3-grpcio python3-protobuf python3-jsonschema python3-yaml
  # a venv for PyPI tools: kubernetes-validate (the chart vs Kubernetes schemas)
  python3-venv
  zip unzip openssl
  # the offline container image (scripts/build-image.sh) and its run test
  umoci runc
  # client.operator runs the generated zsh completion (bash is always there)
  zsh
  # `go install`/`go build` fetch modules over HTTPS from the module proxy
  ca-certificates
  # the libFuzzer build of fuzz/ (clang 14 and its libFuzzer runtime)
  clang libclang-rt-14-dev
)
# Go (SQLite's amalgamation comes from the Go module proxy, scripts/
# fetch-sqlite.sh; the FerretDB test fixture) is often installed outside apt.
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
# Other users of the machine may hold the dpkg lock: wait for it, bounded.
APT_LOCK_WAIT_S=600
$SUDO apt-get -o DPkg::Lock::Timeout=$APT_LOCK_WAIT_S update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=$APT_LOCK_WAIT_S \
  install -y "${missing[@]}"
