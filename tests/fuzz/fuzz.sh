#!/bin/bash
# Builds the image decoder fuzzer with clang (libFuzzer + ASan + UBSan), makes a
# seed corpus from real images (checkpoints of a running process, plus cut and
# damaged copies), and fuzzes for a bounded time.
#   fuzz.sh SOURCE_DIR BUILD_DIR CRFS_BINARY SECONDS
set -euo pipefail
src=$1 out=$2/fuzz crfs=$3 secs=${4:-30}
mkdir -p "$out"
clang++ -std=c++2b -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/tests/fuzz/compat" -I"$src" -I"$src/include" \
    "$src/tests/fuzz/image_fuzz.cc" "$src/common/image_reader.cc" "$src/common/image_inet.cc" "$src/common/image_memfd.cc" "$src/common/page_set.cc" -lxxhash -o "$out/image_fuzz"

corpus=$out/corpus
rm -rf "$corpus" && mkdir -p "$corpus"
# A victim with no inherited descriptors (a CI runner's pipes would make it
# uncheckpointable).
victim=$(python3 -c 'import subprocess as s; print(s.Popen(["sleep", "600"], stdin=s.DEVNULL,
    stdout=s.DEVNULL, stderr=s.DEVNULL, close_fds=True).pid)')
trap 'kill $victim 2>/dev/null || true' EXIT
"$crfs" checkpoint $victim > "$corpus/real.img"
kill $victim
"$crfs" verify "$corpus/real.img"
size=$(stat -c %s "$corpus/real.img")
head -c 4096 "$corpus/real.img" > "$corpus/head.img"
head -c $((size / 2)) "$corpus/real.img" > "$corpus/half.img"
python3 - "$corpus/real.img" "$corpus/flip.img" <<'PY'
import sys
d = bytearray(open(sys.argv[1], 'rb').read()); d[300] ^= 1
open(sys.argv[2], 'wb').write(d)
PY
"$out/image_fuzz" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=300000 \
    -artifact_prefix="$out/" "$corpus"
