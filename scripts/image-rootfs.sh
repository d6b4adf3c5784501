#!/usr/bin/env bash
# image-rootfs.sh BUILD_DIR ROOTFS: the root filesystem of the fzipd image.
#
# BUILD_DIR's server/fzipd and client/fzip in /usr/local/bin, exactly the
# shared libraries they load (ldd) at the paths the loader maps them from,
# the loader, the CA bundle, the IANA zones (/usr/share/zoneinfo), a
# passwd/group with user fzip (65532), /tmp (1777) and /var/lib/fzip
# (owned by 65532).  Nothing else: no shell, no package manager.  Used by
# scripts/build-image.sh (offline, umoci) and by the Dockerfile's build
# stage, so both images hold the same files.
set -euo pipefail

build=$(cd "$1" && pwd)
root=$2
readonly UID_GID=65532
readonly PROGRAMS=("$build/server/fzipd" "$build/client/fzip")
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/var/lib/fzip"
chmod 1777 "$root/tmp"

for p in "${PROGRAMS[@]}"; do
  [ -x "$p" ] || { echo "image-rootfs.sh: $p missing: build fzipd and fzip first" >&2; exit 1; }
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
# IANA zones for schedules and retention (core/fzip_tz.c reads TZif files;
# links resolved into files).  Not right/ (leap-second zones, refused) nor
# posix/ (a copy of the rest).
mkdir -p "$root/usr/share"
cp -rL /usr/share/zoneinfo "$root/usr/share/zoneinfo"
rm -rf "$root/usr/share/zoneinfo/right" "$root/usr/share/zoneinfo/posix"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nfzip:x:%d:%d:fzip:/nonexistent:/usr/sbin/nologin\n' \
  $UID_GID $UID_GID >"$root/etc/passwd"
printf 'root:x:0:\nfzip:x:%d:\n' $UID_GID >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chown $UID_GID:$UID_GID "$root/var/lib/fzip"
chmod 0750 "$root/var/lib/fzip"

