#!/usr/bin/env bash
# Installs the Debian 12 packages crfs needs to build, run and test, if any
# is missing. Runs apt-get only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config g++ clang libclang-rt-14-dev
  libfuse3-dev fuse3 libproc2-dev libboost-filesystem-dev libxxhash-dev
  nlohmann-json3-dev libfmt-dev libcli11-dev
  libgtest-dev
  scdoc man-db bash-completion systemd
  util-linux procps zstd coreutils python3
  busybox-static
  nftables iproute2
  redis-server redis-tools
  tmux vim
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
