#!/usr/bin/env bash
# Installs what is missing, builds crfs twice (plain, and with ASan+UBSan)
# with warnings as errors, and runs every test in both builds.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
jobs=$(nproc)
status=0

run_build() {
  local dir=$1; shift
  echo "== build $dir ($*)"
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "== test $dir"
  (cd "$dir" && ctest --output-on-failure --timeout 900 -j"$jobs" ${CTEST_ARGS:-}) || status=1
}

run_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
# Sanitizers: every test but those that boot a kernel (they test the module,
# not this build) and the image fuzzer (built by clang with its own ASan+UBSan,
# the same program in both builds: the plain build's run fuzzes for both).
CTEST_ARGS="-LE kernel|fuzz" run_build build-asan -DCMAKE_BUILD_TYPE=Debug -DCRFS_SANITIZE=ON

exit $status
