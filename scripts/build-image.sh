#!/usr/bin/env bash
# build-image.sh BUILD_DIR LAYOUT [TAG]: an OCI image of fzipd, offline.
#
# The Dockerfile needs a Docker engine and Docker Hub; this machine has
# neither.  This script makes the same image from the programs in BUILD_DIR
# (server/fzipd, client/fzip) and exactly the shared libraries they load
# (ldd), with umoci (Debian package): one layer on an empty base (`FROM
# scratch`), no shell, no package manager.  The result is an OCI image
# layout directory LAYOUT holding fzipd:TAG (default: the project version),
# which `skopeo copy oci:LAYOUT:TAG docker://REGISTRY/fzipd:TAG` pushes.
#
# Image config, as in the Dockerfile: user 65532:65532, entrypoint fzipd,
# command serve, port 50051, working dir /var/lib/fzip (owned by 65532),
# FZIP_LISTEN=0.0.0.0:50051, FZIP_STORE=sqlite:/var/lib/fzip/fzip.db.
set -euo pipefail

build=$(cd "$1" && pwd)
layout=$2
tag=${3:-$(sed -n 's/^project(fzip VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../CMakeLists.txt")}
readonly UID_GID=65532
readonly PROGRAMS=("$build/server/fzipd" "$build/client/fzip")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/var/lib/fzip"
chmod 1777 "$root/tmp"

for p in "${PROGRAMS[@]}"; do
  [ -x "$p" ] || { echo "build-image.sh: $p missing: build fzipd and fzip first" >&2; exit 1; }
  install -m 0755 "$p" "$root/usr/local/bin/"
done

# Every library the loader maps, at the path it maps it from (symlinks
# resolved into files), and the loader itself.
ldd "${PROGRAMS[@]}" | awk '/=> \// {print $3} /^\t\/[^ ]*ld-linux/ {print $1}' | sort -u |
  while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
# merged /usr: the loader path /lib64 and /lib are links on Debian 12.
for d in lib lib64; do
  if [ -L "/$d" ] && [ -d "$root/$d" ] && [ ! -L "$root/$d" ]; then
    mkdir -p "$root/usr/$d" && cp -a "$root/$d/." "$root/usr/$d/" && rm -rf "${root:?}/$d"
    ln -s "usr/$d" "$root/$d"
  fi
done

cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nfzip:x:%d:%d:fzip:/nonexistent:/usr/sbin/nologin\n' \
  $UID_GID $UID_GID >"$root/etc/passwd"
printf 'root:x:0:\nfzip:x:%d:\n' $UID_GID >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chown $UID_GID:$UID_GID "$root/var/lib/fzip"
chmod 0750 "$root/var/lib/fzip"

rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci insert --image "$layout:$tag" "$root" /
umoci config --image "$layout:$tag" \
  --config.user "$UID_GID:$UID_GID" \
  --config.entrypoint fzipd --config.cmd serve \
  --config.env PATH=/usr/local/bin \
  --config.env FZIP_LISTEN=0.0.0.0:50051 \
  --config.env FZIP_STORE=sqlite:/var/lib/fzip/fzip.db \
  --config.exposedports 50051/tcp \
  --config.workingdir /var/lib/fzip \
  --config.label org.opencontainers.image.title=fzipd \
  --config.label "org.opencontainers.image.version=$tag" \
  --os linux --architecture amd64
umoci gc --layout "$layout"
echo "build-image.sh: $layout:$tag ($(du -sh "$layout" | cut -f1))"
