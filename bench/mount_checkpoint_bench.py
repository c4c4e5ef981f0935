#!/usr/bin/env python3
"""Dump and restore through the mount, as a user runs them, against the limits
measured in the same run (issue 13).

    bench/mount_checkpoint_bench.py [--build DIR] [--limit FUSE_LIMIT] [--rounds N] [MiB ...]
    (default: build, build/bench/fuse_limit, 3 rounds, 16 256 1024)

Mounts DIR/fs/crfsd on a temporary directory; for each size starts a process
holding that much non-zero memory (stdio on /dev/null: nothing in it is a
reason), then, after one warm-up round, takes the best of N rounds of:
  dump      cp /crfs/PID/image /dev/null      and      cp /crfs/PID/image FILE
  frozen    the frozen time the image records (crfs show --json)
  restore   mkdir /crfs/rK && cp FILE /crfs/rK/image   (close() returns once it runs)
and in the same run the limits:
  memcpy    a copy of the image's bytes between two touched buffers
  FUSE rd   cp of a file of the image's size served from memory by fuse_limit
            (the same libfuse setup as crfsd: 1 MiB requests, direct_io)
  FUSE wr   cp of FILE into fuse_limit, which copies it into fresh memory
            (the restore's bound: FUSE write plus one copy into new pages)
  daemon/h  the daemon's memory for an open image handle that has read its
            first MiB: its VmRSS plus the machine's Shmem (a memfd it holds is
            not in its RSS), so other load on the machine shows too
  worker/h  the RSS of the checkpoint worker still alive for that handle
  null cpu  the least CPU time (daemon, its worker, cp) of a dump to /dev/null:
            less swayed by other load on the machine than the wall clock
Ratios: dump to /dev/null as a share of the FUSE read limit; restore over the
FUSE write limit; both over memcpy. FILE lives in the same directory as the
mount (/tmp here).

Then the small-task lines (issue 13: dump and restore of 16 MiB <= 10 ms each),
for --small sizes (default 1 16): best of N `cp /crfs/PID/image FILE` and
`mkdir` + `cp FILE /crfs/SLOT/image`, each over the 10 ms target and over a
memcpy of the image's bytes. `--small-only` prints only these; `--crfsd PATH`
benches another build's daemon (its crfs-ckpt next to it), e.g. before/after.

`--restore-ab` (restore only, before/after interleaved in one run): two
daemons are mounted, "after" (this build's, or --crfsd) and "before"
(--before-crfsd PATH, or the same binary with --before-env VAR=VALUE in its
environment, default CRFS_RESTORE_PLAIN_SPOOL=1: the spool without page data
set apart; CRFS_RESTORE_NO_STREAM=1: spooled, not streamed); for each size one image is taken,
then each of --rounds rounds restores it through before, after, and writes
it into fuse_limit (FUSE wr), in that order; every round's three figures,
the medians and the ratios to FUSE wr are printed with the load average.
"""
import statistics
import argparse
import json
import resource
import os
import signal
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
PY = "/usr/bin/python3"  # `python3` on PATH may be a root-only shim

HOLDER = r"""
import os, signal, sys
buf = bytearray(b'\x5a') * (int(sys.argv[1]) << 20)
for i in range(0, len(buf), 4096): buf[i] = (i >> 12) & 0xff or 1
open(sys.argv[2], 'w').write('ready')
signal.pause()
"""


def wait_for(pred, what, timeout=120):
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
        dst[:] = src
        best = min(best, time.perf_counter() - t)
    return best


def cpu_seconds(daemon_pid):
    """CPU time of the daemon and its reaped workers, and of our reaped children (cp)."""
    with open(f"/proc/{daemon_pid}/stat") as f:
        ticks = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15])
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ticks / os.sysconf("SC_CLK_TCK") + ru.ru_utime + ru.ru_stime


def cpu_of(daemon_pid, rounds, fn):
    """Least CPU time of `rounds` calls of fn (daemon, its worker, cp): less
    swayed by other load than the wall clock. Waits (bounded) for the
    handle's worker to be reaped, so its time is counted."""
    best = float("inf")
    for _ in range(rounds):
        c = cpu_seconds(daemon_pid)
        fn()
        wait_for(lambda: not any(open(f"/proc/{daemon_pid}/task/{t}/children").read().split()
                                 for t in os.listdir(f"/proc/{daemon_pid}/task")),
                 "the worker to be reaped")
        best = min(best, cpu_seconds(daemon_pid) - c)
    return best


def best_of(rounds, fn):
    fn()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:  # exited meanwhile
        pass
    return 0


def shmem_kib():
    """Shared memory of the whole machine: a memfd the daemon holds (unmapped,
    so not in its RSS) shows here."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    return 0


def children_rss_kib(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/children") as f:
            for c in f.read().split():
                try:
                    total += rss_kib(int(c))
                except FileNotFoundError:
                    pass
    return total


def mount(argv, mnt, log):
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, "the mount " + mnt)
    if not os.path.ismount(mnt):
        raise SystemExit(f"{argv[0]} did not mount")
    return proc


def unmount(proc, mnt):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    # A daemon that died leaves its mount behind (ENOTCONN): detach it.
    subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def start_holder(size, tmp):
    ready = os.path.join(tmp, f"ready{size}")
    if os.path.exists(ready):  # an earlier holder's of this size
        os.unlink(ready)
    holder = subprocess.Popen([PY, "-c", HOLDER, str(size), ready],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, close_fds=True)
    try:
        wait_for(lambda: os.path.exists(ready), "the memory holder", 300)
    except BaseException:
        holder.kill()
        holder.wait()
        raise
    return holder


def kill_restored(restored):
    for slot, pid in restored:
        os.kill(pid, signal.SIGKILL)
    def gone(pid):
        try:  # reaped between the two looks: gone too
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except (FileNotFoundError, ProcessLookupError):
            return True

    for slot, pid in restored:
        wait_for(lambda: gone(pid), "the restored task to die")
    restored.clear()


def kill_left(restored):
    """On the way out: whatever restored task is left, killed."""
    for slot, pid in restored:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def restorer(mnt, prefix, image, restored):
    """One restore per call: mkdir a new slot, cp `image` into it (close()
    returns once the task runs); the slot and its pid go into `restored`."""
    n = [0]

    def restore():
        n[0] += 1
        slot = f"{mnt}/{prefix}-{n[0]}"
        os.mkdir(slot)
        subprocess.run(["cp", image, slot + "/image"], check=True)
        with open(slot + "/pid") as f:
            restored.append((slot, int(f.read())))

    return restore


def small_line(size, tmp, mnt, restored, rounds):
    """Issue 13's small-task target: dump and restore each <= 10 ms."""
    holder = start_holder(size, tmp)
    out = os.path.join(tmp, f"small{size}.img")
    try:
        t_dump = best_of(rounds, lambda: subprocess.run(
            ["cp", f"{mnt}/{holder.pid}/image", out], check=True))
    finally:
        holder.kill()
        holder.wait()
    try:
        t_restore = best_of(rounds, restorer(mnt, f"s{size}", out, restored))
    finally:
        kill_restored(restored)
    img = os.path.getsize(out)
    os.unlink(out)
    mc = memcpy_seconds(img)
    ms = lambda s: f"{s * 1e3:6.1f}ms"
    print(f"small | {size:>3} {img / MiB:>6.1f}M | {ms(t_dump)} {t_dump / 0.010:>4.1f}x"
          f" {t_dump / mc:>6.1f}x | {ms(t_restore)} {t_restore / 0.010:>4.1f}x"
          f" {t_restore / mc:>6.1f}x | {ms(mc)}", flush=True)


def restore_ab(a, crfsd, limit, tmp, mnt, lim, log):
    """Restore before/after interleaved, with the FUSE write limit (see --restore-ab)."""
    mnt_b = os.path.join(tmp, "mnt-before")
    os.mkdir(mnt_b)
    env = dict(os.environ)
    before = a.before_crfsd or crfsd
    var, _, val = a.before_env.partition("=")
    if not a.before_crfsd:
        env[var] = val
    proc = subprocess.Popen([before, "-f", "-o", "state_dir=" + tmp + "/state-b", mnt_b],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    wait_for(lambda: os.path.ismount(mnt_b) or proc.poll() is not None, "the mount " + mnt_b)
    restored = []
    ms = lambda s: f"{s * 1e3:7.1f}"
    try:
        print(f"before: {before}{'' if a.before_crfsd else ' with ' + a.before_env};"
              f" after: {crfsd}", flush=True)
        for size in a.sizes:
            holder = start_holder(size, tmp)
            out = os.path.join(tmp, "snap.img")
            try:
                subprocess.run(["cp", f"{mnt}/{holder.pid}/image", out], check=True)
            finally:
                holder.kill()
                holder.wait()
            img = os.path.getsize(out)
            limd = mount([limit, lim, str(img)], lim, log)
            rb, ra, rw = [], [], []
            wr = lambda: subprocess.run(["dd", "if=" + out, "of=" + lim + "/data", "bs=1M",
                                         "status=none", "conv=notrunc"], check=True)
            try:
                steps = [(restorer(mnt_b, f"b{size}", out, restored), rb),
                         (restorer(mnt, f"a{size}", out, restored), ra), (wr, rw)]
                for fn, _ in steps:  # warm-up
                    fn()
                    kill_restored(restored)
                for r in range(a.rounds):
                    for fn, times in steps:
                        t = time.perf_counter()
                        fn()
                        times.append(time.perf_counter() - t)
                        kill_restored(restored)
                    print(f"{size:>5} MiB round {r + 1}: before {ms(rb[-1])} ms  after"
                          f" {ms(ra[-1])} ms  FUSE wr {ms(rw[-1])} ms  load"
                          f" {os.getloadavg()[0]:.1f}", flush=True)
            finally:
                unmount(limd, lim)
                os.unlink(out)
            mb, ma, mw = (statistics.median(x) for x in (rb, ra, rw))
            print(f"{size:>5} MiB ({img / MiB:.0f}M image) median: before {ms(mb)} ms"
                  f" ({mb / mw:.2f}x FUSE wr)  after {ms(ma)} ms ({ma / mw:.2f}x)"
                  f"  FUSE wr {ms(mw)} ms  after/before {ma / mb:.2f}", flush=True)
    finally:
        kill_left(restored)
        unmount(proc, mnt_b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--limit", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small", type=int, nargs="*", default=[1, 16])
    ap.add_argument("--small-only", action="store_true")
    ap.add_argument("--crfsd", default=None)
    ap.add_argument("--restore-ab", action="store_true")
    ap.add_argument("--before-crfsd", default=None)
    ap.add_argument("--before-env", default="CRFS_RESTORE_PLAIN_SPOOL=1")
    ap.add_argument("sizes", nargs="*", type=int, default=[16, 256, 1024])
    a = ap.parse_args()
    if a.small_only:
        a.sizes = []
    crfsd = a.crfsd or os.path.join(a.build, "fs", "crfsd")
    crfs = os.path.join(a.build, "tools", "crfs")
    limit = a.limit or os.path.join(a.build, "bench", "fuse_limit")
    tmp = tempfile.mkdtemp(prefix="crfs-bench-")
    os.chmod(tmp, 0o755)
    mnt, lim = os.path.join(tmp, "mnt"), os.path.join(tmp, "lim")
    os.mkdir(mnt)
    os.mkdir(lim)
    log = open(os.path.join(tmp, "crfsd.log"), "w")
    daemon = mount([crfsd, "-f", "-o", "state_dir=" + tmp + "/state", mnt], mnt, log)
    restored = []
    try:
        if a.restore_ab:
            restore_ab(a, crfsd, limit, tmp, mnt, lim, log)
            a.sizes, a.small = [], []
        if a.sizes:
            print(f"{'MiB':>5} {'image':>7} | {'dump null':>9} {'dump file':>9} {'frozen':>7} |"
                  f" {'restore':>8} | {'memcpy':>7} {'FUSE rd':>8} {'FUSE wr':>8} |"
                  f" {'null/rd':>7} {'rest/wr':>7} {'dump/mc':>7} {'rest/mc':>7} |"
                  f" {'daemon/h':>8} {'worker/h':>8} | {'null cpu':>8}")
        for size in a.sizes:
            holder = start_holder(size, tmp)
            try:
                image = f"{mnt}/{holder.pid}/image"
                out = os.path.join(tmp, "snap.img")
                t_null = best_of(a.rounds, lambda: subprocess.run(["cp", image, "/dev/null"],
                                                                  check=True))
                c_null = cpu_of(daemon.pid, a.rounds, lambda: subprocess.run(
                    ["cp", image, "/dev/null"], check=True))
                t_file = best_of(a.rounds, lambda: subprocess.run(["cp", image, out], check=True))
                stats = json.loads(subprocess.run([crfs, "show", "--json", out], check=True,
                                                  capture_output=True).stdout)["stats"]
                img = os.path.getsize(out)

                # Memory of an open handle that has read its first MiB: the
                # daemon's (its RSS and the memfds it holds) and the worker's.
                # One handle: a second one of the same task waits while a live
                # snapshot's stream is open (docs/performance.md).
                base = rss_kib(daemon.pid) + shmem_kib()
                fd = os.open(image, os.O_RDONLY)
                os.read(fd, MiB)
                per_handle = (rss_kib(daemon.pid) + shmem_kib() - base) / 1024
                per_worker = children_rss_kib(daemon.pid) / 1024
                os.close(fd)
            finally:
                holder.kill()
                holder.wait()

            t_restore = best_of(a.rounds, restorer(mnt, f"r{size}", out, restored))
            kill_restored(restored)

            limd = mount([limit, lim, str(img)], lim, log)
            try:
                t_rd = best_of(a.rounds, lambda: subprocess.run(["cp", lim + "/data", "/dev/null"],
                                                                check=True))
                t_wr = best_of(a.rounds, lambda: subprocess.run(
                    ["dd", "if=" + out, "of=" + lim + "/data", "bs=1M", "status=none",
                     "conv=notrunc"], check=True))
            finally:
                unmount(limd, lim)
            os.unlink(out)
            mc = memcpy_seconds(img)
            ms = lambda s: f"{s * 1e3:6.1f}ms"
            print(f"{size:>5} {img / MiB:>6.0f}M | {ms(t_null):>9} {ms(t_file):>9}"
                  f" {stats['frozen_ns'] / 1e6:>5.1f}ms | {ms(t_restore):>8} |"
                  f" {ms(mc):>7} {ms(t_rd):>8} {ms(t_wr):>8} |"
                  f" {t_rd / t_null:>6.0%} {t_restore / t_wr:>6.2f}x {t_null / mc:>6.1f}x"
                  f" {t_restore / mc:>6.1f}x | {per_handle:>7.1f}M {per_worker:>7.1f}M |"
                  f" {ms(c_null):>8}", flush=True)
        if a.small:
            print(f"small | {'MiB':>3} {'image':>7} | {'dump':>7} {'/10ms':>5} {'/memcpy':>7} |"
                  f" {'restore':>7} {'/10ms':>5} {'/memcpy':>7} | {'memcpy':>7}")
        for size in a.small:
            small_line(size, tmp, mnt, restored, a.rounds)
    finally:
        kill_left(restored)
        unmount(daemon, mnt)
        log.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
