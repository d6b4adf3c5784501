#!/bin/sh
# Builds the Go client of tests/gen_clients: installs protoc-gen-go and
# protoc-gen-go-grpc at pinned versions (Go module proxy, idempotent),
# generates Go code from proto/ with Debian's protoc, and builds
# cmd/fzip-summary against the committed go.mod/go.sum (-mod=readonly: the
# dependency set cannot drift silently).
#
#   build_go.sh SOURCE_DIR PROTO_DIR GOBIN OUT_DIR
set -eu
src=$1
protos=$2
gobin=$(mkdir -p "$3" && cd "$3" && pwd)
out=$(mkdir -p "$4" && cd "$4" && pwd)
install=$(dirname "$0")/../lib/go_install.sh

sh "$install" "$gobin" protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.34.2
sh "$install" "$gobin" protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.4.0

rm -rf "$out/gen" "$out/cmd"
cp "$src/go.mod" "$src/go.sum" "$out/"
cp -r "$src/cmd" "$out/"
PATH="$gobin:$PATH" protoc --proto_path="$protos" \
  --go_out="$out" --go_opt=module=github.com/housef3/fzip \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/housef3/fzip \
  "$protos"/fzip/v1/*.proto
cd "$out"
go build -mod=readonly -o "$out/fzip-summary" ./cmd/fzip-summary
echo "built $out/fzip-summary"
