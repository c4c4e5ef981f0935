#!/usr/bin/env bash
# Installs what is missing (apt-get), builds crfs and installs it under
# $PREFIX (default /usr/local): crfsd, crfs, libcrfs with <crfs/nocr.h> and
# crfs.pc, the man pages, crfs.service and the bash completion. Then mounts
# crfs at /crfs (or $1): through crfs.service (enabled, so at every boot too)
# where systemd runs, else by starting crfsd. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
mnt=${1:-/crfs}
prefix=${PREFIX:-/usr/local}

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null
cmake --build build -j"$(nproc)"
cmake --install build >/dev/null
ldconfig
echo "installed under $prefix: crfsd, crfs ($("$prefix/bin/crfs" --version)), libcrfs, man pages, crfs.service"

systemd=false
[ -d /run/systemd/system ] && systemd=true
$systemd && systemctl daemon-reload

if mountpoint -q "$mnt" 2>/dev/null; then
  echo "crfs is already mounted at $mnt (restart: fusermount3 -u $mnt && crfsd $mnt)"
elif $systemd && [ "$mnt" = /crfs ]; then
  systemctl enable --now crfs.service
  echo "crfs mounted at $mnt by crfs.service (logs: journalctl -u crfs); try: crfs ps"
else
  "$prefix/sbin/crfsd" "$mnt"
  echo "crfs mounted at $mnt; try: cat $mnt/self/reason"
fi
