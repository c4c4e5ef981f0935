#!/usr/bin/env bash
# Benchmark: the crfs tree against /proc with many sleeping processes.
#
#   bench/tree_bench.sh [BUILD_DIR] [NPROCS]      (defaults: build, 2000)
#
# Mounts the built crfsd on a temporary directory, starts NPROCS sleeping
# processes, and times (median of 5 runs, after a warm-up run):
#   ls -l /proc          vs  ls -l $M
#   cat /proc/*/status   vs  cat $M/*/reason
# Prints each time and the ratio crfs/proc. Aim: within 3x of /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
n=${2:-2000}
crfsd=$build/fs/crfsd
[ -x "$crfsd" ] || { echo "no $crfsd: build first (cmake -S . -B $build && cmake --build $build)"; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null || true
  [ -n "${dpid:-}" ] && kill "$dpid" 2>/dev/null && for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.05; done
  mountpoint -q "$tmp/mnt" 2>/dev/null && umount -l "$tmp/mnt"
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/mnt"
"$crfsd" -f ${CRFSD_ARGS:-} -o state_dir="$tmp/state" "$tmp/mnt" 2>"$tmp/log" &
dpid=$!
for _ in $(seq 200); do mountpoint -q "$tmp/mnt" && break; sleep 0.05; done
mountpoint -q "$tmp/mnt" || { cat "$tmp/log"; exit 1; }

for _ in $(seq "$n"); do sleep 3600 </dev/null >/dev/null 2>&1 & pids+=($!); done
M=$tmp/mnt

# Median wall time in ms of 5 runs of "$@" (after one warm-up).
median_ms() {
  "$@" >/dev/null 2>&1 || true
  local times=()
  for _ in 1 2 3 4 5; do
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p | awk '{printf "%.1f", $1/1000}'
}

procs=$(ls /proc | grep -c '^[0-9]')
echo "processes: $procs (of which $n sleepers)"
ls_proc=$(median_ms ls -l /proc)
ls_crfs=$(median_ms ls -l "$M")
cat_proc=$(median_ms sh -c 'cat /proc/[0-9]*/status')
cat_crfs=$(median_ms sh -c "cat $M/[0-9]*/reason")
printf '%-36s %10s ms\n' "ls -l /proc" "$ls_proc" "ls -l crfs" "$ls_crfs" \
  "cat /proc/*/status" "$cat_proc" "cat crfs/*/reason" "$cat_crfs"
awk -v a="$ls_crfs" -v b="$ls_proc" 'BEGIN{printf "ratio ls -l crfs/proc:          %.2fx (aim <= 3x)\n", a/b}'
awk -v a="$cat_crfs" -v b="$cat_proc" 'BEGIN{printf "ratio cat reason/status:       %.2fx (aim <= 3x)\n", a/b}'
