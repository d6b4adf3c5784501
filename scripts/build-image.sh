#!/usr/bin/env bash
# build-image.sh BUILD_DIR LAYOUT [TAG]: an OCI image of fzipd, offline.
#
# The Dockerfile needs a Docker engine and Docker Hub; this machine has
# neither.  This script makes the same image from the programs in BUILD_DIR
# (server/fzipd, client/fzip) and exactly the shared libraries they load
# (ldd), assembled by scripts/image-rootfs.sh (which the Dockerfile runs
# too), packed with umoci (Debian package): one layer on an empty base
# (`FROM scratch`), no shell, no package manager.  The result is an OCI image
# layout directory LAYOUT holding fzipd:TAG (default: the project version),
# which `skopeo copy oci:LAYOUT:TAG docker://REGISTRY/fzipd:TAG` pushes.
#
# Image config, as in the Dockerfile: user 65532:65532, entrypoint fzipd,
# command serve, port 50051, working dir /var/lib/fzip (owned by 65532),
# MONGOC_DISABLE_SHM=1, FZIP_LISTEN=0.0.0.0:50051,
# FZIP_STORE=sqlite:/var/lib/fzip/fzip.db.
set -euo pipefail

build=$(cd "$1" && pwd)
layout=$2
tag=${3:-$(sed -n 's/^project(fzip VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../CMakeLists.txt")}
readonly UID_GID=65532 # the user scripts/image-rootfs.sh creates

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
"$(dirname "$0")/image-rootfs.sh" "$build" "$root"

rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci insert --image "$layout:$tag" "$root" /
umoci config --image "$layout:$tag" \
  --config.user "$UID_GID:$UID_GID" \
  --config.entrypoint fzipd --config.cmd serve \
  --config.env PATH=/usr/local/bin \
  --config.env MONGOC_DISABLE_SHM=1 \
  --config.env FZIP_LISTEN=0.0.0.0:50051 \
  --config.env FZIP_STORE=sqlite:/var/lib/fzip/fzip.db \
  --config.exposedports 50051/tcp \
  --config.workingdir /var/lib/fzip \
  --config.label org.opencontainers.image.title=fzipd \
  --config.label "org.opencontainers.image.version=$tag" \
  --os linux --architecture amd64
umoci gc --layout "$layout"
echo "build-image.sh: $layout:$tag ($(du -sh "$layout" | cut -f1))"
