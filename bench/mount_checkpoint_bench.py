#!/usr/bin/env python3
"""Checkpoint through the mount, as a user takes it, against memcpy.

    bench/mount_checkpoint_bench.py [BUILD_DIR] [MiB ...]   (default: build 16 256 1024)

Mounts BUILD_DIR/fs/crfsd on a temporary directory; for each size starts a
process holding that much non-zero dirty memory (stdio on /dev/null: nothing
in it is a reason), then times, best of 3 after a warm-up:
  cp /crfs/<pid>/image /dev/null      and      cp /crfs/<pid>/image FILE
and reads the frozen time from the image (crfs show --json). In the same run
it times a memcpy of the same bytes (a bytes copy in this process, warmed).
Prints throughput, frozen time, image size and the ratios of the targets:
end-to-end throughput >= 40% of memcpy bandwidth at 1 GiB, frozen time <= 2x
the memcpy time of the stored bytes.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

build = sys.argv[1] if len(sys.argv) > 1 else "build"
sizes = [int(x) for x in sys.argv[2:]] or [16, 256, 1024]
crfsd = os.path.join(build, "fs", "crfsd")
crfs = os.path.join(build, "tools", "crfs")
MiB = 1 << 20

HOLDER = r"""
import os, signal, sys
buf = bytearray(b'\x5a') * (int(sys.argv[1]) << 20)
for i in range(0, len(buf), 4096): buf[i] = (i >> 12) & 0xff or 1
open(sys.argv[2], 'w').write('ready')
signal.pause()
"""


def wait_for(pred, what, timeout=60):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.01)


def memcpy_seconds(nbytes):
    src = bytearray(b"\x5a") * nbytes
    dst = bytearray(nbytes)
    dst[:] = src  # warm: the first touch of fresh memory is slow here
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        dst[:] = src  # a memcpy between two touched buffers
        best = min(best, time.perf_counter() - t)
    return best


def main():
    tmp = tempfile.mkdtemp(prefix="crfs-bench-")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    daemon = subprocess.Popen([crfsd, "-f", "-o", "state_dir=" + tmp + "/state", mnt],
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.ismount(mnt), "the mount")
        print(f"{'MiB':>6} {'to /dev/null':>14} {'to file':>14} {'frozen':>10} {'image':>10}"
              f" {'memcpy':>10} {'tput/memcpy':>12} {'frozen/memcpy':>14}")
        for size in sizes:
            ready = os.path.join(tmp, f"ready{size}")
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(size), ready],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, close_fds=True)
            try:
                wait_for(lambda: os.path.exists(ready), "the memory holder", 300)
                image = f"{mnt}/{holder.pid}/image"
                out = os.path.join(tmp, "snap.img")

                def timed(dest):
                    subprocess.run(["cp", image, dest], check=True)  # warm-up
                    best = float("inf")
                    for _ in range(3):
                        t = time.perf_counter()
                        subprocess.run(["cp", image, dest], check=True)
                        best = min(best, time.perf_counter() - t)
                    return best

                t_null = timed("/dev/null")
                t_file = timed(out)
                stats = json.loads(subprocess.run([crfs, "show", "--json", out], check=True,
                                                  capture_output=True).stdout)["stats"]
                img = os.path.getsize(out)
                os.unlink(out)
                mc = memcpy_seconds(size * MiB)
                frozen = stats["frozen_ns"] / 1e9
                mc_stored = mc * stats["page_bytes"] / (size * MiB)
                print(f"{size:>6} {size / t_null:>9.0f} MiB/s {size / t_file:>9.0f} MiB/s"
                      f" {frozen * 1e3:>7.1f} ms {img / MiB:>7.1f} MiB {mc * 1e3:>7.1f} ms"
                      f" {(size / t_null) / (size / mc):>11.0%} {frozen / mc_stored:>13.2f}x")
            finally:
                holder.kill()
                holder.wait()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", mnt])
        subprocess.run(["rm", "-rf", tmp])


main()
