#!/usr/bin/env python3
"""One multi-threaded process through the mount (issue 10's bench: 8 threads x
128 MiB), as a user runs it, with cp:

    bench/mount_threads_bench.py [--build DIR] [--rounds N] [TxM ...]
    (default: build, 5 rounds, 8x128: T threads of M MiB each)

Mounts DIR/fs/crfsd on a temporary directory (root: the threads come back
with their tids, so the process is restored into its own pid). Starts one
python3 process whose T threads each hold M MiB of their own non-zero memory
and wait on an Event (a futex wait); its main thread holds none and waits in
pause() with a SIGUSR1 handler (stdio on /dev/null). Then, after one warm-up
round, each round times
  checkpoint  cp /crfs/PID/image FILE   (FILE a new file; the process run
              once first, see mount_checkpoint_bench.py let_run)
  restore     (the process killed and reaped) mkdir /crfs/PID &&
              cp FILE /crfs/PID/image   (close() returns once it runs; every
              thread must be back: T + 1 in /proc/PID/task)
so each round checkpoints the process the round before restored. In the same
run: a memcpy of the image's bytes and the FUSE floor of moving them
(mount_tree_bench.py's: DIR/bench/fuse_limit, the same libfuse setup as
crfsd, `cp` of its file into a new FILE and a 1 MiB `dd` of FILE into it),
each round after the process's. Prints the best and the median of the
rounds: time, time / memcpy, and per thread (T + 1 tasks) the cost beyond
memcpy and beyond the FUSE floor (issue 10's aim for a tree: <= 1 ms per
task beyond its memory).
"""
import argparse
import ctypes
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mount_checkpoint_bench import (MiB, PY, let_run, memcpy_seconds, mount,  # noqa: E402
                                    unlink_if_there, unmount, wait_for)
from mount_tree_bench import FuseFloor, report  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fs"))
from trees_mount_test import gone, reap  # noqa: E402  (we are a subreaper)

HOLDER = r"""
import os, signal, sys, threading, time
threads, mib, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = []
def hold():
    buf = bytearray(b'\x5a') * (mib << 20)
    for i in range(0, len(buf), 4096): buf[i] = (i >> 12) & 0xff or 1
    held.append(buf)
    threading.Event().wait()
for _ in range(threads): threading.Thread(target=hold, daemon=True).start()
signal.signal(signal.SIGUSR1, lambda *_: None)  # let_run: one run, nothing more
while len(held) < threads: time.sleep(0.01)
open(ready, 'w').write('ready')
while True: signal.pause()
"""


def task_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def kill_and_reap(pid):
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (reap(), gone(pid))[1], f"pid {pid} to be free")


def bench(spec, mnt, limit, tmp, log, rounds):
    threads, mib = (int(x) for x in spec.split("x"))
    ready = os.path.join(tmp, "ready")
    unlink_if_there(ready)
    holder = subprocess.Popen([PY, "-c", HOLDER, str(threads), str(mib), ready],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, close_fds=True)
    pid = holder.pid
    img = os.path.join(tmp, "threads.img")
    ckpt, rest = [], []
    floor = FuseFloor(limit, tmp, log)
    try:
        wait_for(lambda: os.path.exists(ready) or holder.poll() is not None,
                 "the threads' memory", 600)
        if task_count(pid) != threads + 1:
            raise SystemExit(f"the holder has {task_count(pid)} threads, not {threads + 1}")
        for r in range(rounds + 1):  # round 0: warm-up
            let_run(pid)
            unlink_if_there(img)  # a new file, as a user's cp makes one
            os.sync()  # the last round's writeback is not timed here
            t = time.perf_counter()
            subprocess.run(["cp", f"{mnt}/{pid}/image", img], check=True)
            t_ckpt = time.perf_counter() - t
            kill_and_reap(pid)
            try:
                os.rmdir(f"{mnt}/{pid}")  # the last round's slot
            except OSError:
                pass
            t = time.perf_counter()
            os.mkdir(f"{mnt}/{pid}")
            subprocess.run(["cp", img, f"{mnt}/{pid}/image"], check=True)
            t_rest = time.perf_counter() - t
            if task_count(pid) != threads + 1:
                raise SystemExit(f"restored {task_count(pid)} threads, not {threads + 1}")
            line = f"checkpoint {t_ckpt * 1e3:8.1f} restore {t_rest * 1e3:8.1f} ms"
            if r:
                ckpt.append(t_ckpt)
                rest.append(t_rest)
                floor.round(img)
                line += (f"; FUSE floor read {floor.rd[-1] * 1e3:8.1f}"
                         f" write {floor.wr[-1] * 1e3:8.1f} ms")
            print(f"{spec} round {r or 'warm-up'}: {line}; load {os.getloadavg()[0]:.1f}",
                  flush=True)
        size = os.path.getsize(img)
    finally:
        floor.close()
        if os.path.exists(f"/proc/{pid}"):
            kill_and_reap(pid)
        try:
            os.rmdir(f"{mnt}/{pid}")
        except OSError:
            pass
    mc = memcpy_seconds(size)
    rd, wr = floor.rd, floor.wr
    print(f"{spec}: {threads} threads x {mib} MiB and a main thread, image {size / MiB:.1f} MiB,"
          f" memcpy {mc * 1e3:.1f} ms, {rounds} rounds; FUSE floor (best / median): read into"
          f" a new file {min(rd) * 1e3:.1f} / {statistics.median(rd) * 1e3:.1f} ms, write"
          f" {min(wr) * 1e3:.1f} / {statistics.median(wr) * 1e3:.1f} ms (per task: per thread)")
    print("  " + report("checkpoint", threads + 1, ckpt, mc, rd))
    print("  " + report("restore   ", threads + 1, rest, mc, wr), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("specs", nargs="*", default=["8x128"])
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the threads come back with their tids")
    ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: restored tasks reap here
    limit = os.path.join(a.build, "bench", "fuse_limit")
    tmp = tempfile.mkdtemp(prefix="crfs-threads-bench-")
    os.chmod(tmp, 0o755)
    log = open(os.path.join(tmp, "crfsd.log"), "w")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    proc = mount([os.path.join(a.build, "fs", "crfsd"), "-f", "-o", f"state_dir={tmp}/state",
                  mnt], mnt, log)
    try:
        for spec in a.specs:
            bench(spec, mnt, limit, tmp, log, a.rounds)
    finally:
        unmount(proc, mnt)
        log.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
