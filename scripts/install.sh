#!/usr/bin/env bash
# Installs what is missing, builds crfs, installs it under /usr/local and
# mounts it at /crfs (or $1). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
mnt=${1:-/crfs}

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
cmake --install build --prefix /usr/local >/dev/null
ldconfig

if mountpoint -q "$mnt" 2>/dev/null; then
  echo "crfs is already mounted at $mnt (restart: fusermount3 -u $mnt && crfsd $mnt)"
else
  /usr/local/sbin/crfsd "$mnt"
  echo "crfs mounted at $mnt; try: cat $mnt/self/reason"
fi
