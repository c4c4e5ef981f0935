#!/usr/bin/env python3
"""Dump and restore of a task with many memory areas, through the mount
(issue 13: 30,000 areas in <= 250 ms each, linear in the number of areas).

    bench/mount_vma_bench.py [--build DIR] [--rounds N] [--trace] [--fill-ab | --before DIR]
                             [--dump-only] [N_VMAS ...]
    (default: build, 3 rounds, 1000 10000 30000 60000)

Mounts DIR/fs/crfsd on a temporary directory. For each N a holder maps N
adjacent one-page private anonymous areas with alternating protections
(read-write, read-only: the kernel cannot merge them), each holding 64
non-zero bytes, then, after one warm-up round, takes the best of R rounds of:
  dump      cp /crfs/PID/image FILE
  restore   mkdir /crfs/SLOT && cp FILE /crfs/SLOT/image   (close() returns
            once the task runs)
The columns per VMA stay flat when the cost is linear. References:
  smaps     one read of the holder's /proc/PID/smaps (what the kernel spends
            describing the areas: no dump that records VmFlags reads less)
  build     the holder's own setup (bench/vma_holder.c): one mmap, N first
            touches, N/2 mprotect (the kernel building the areas: a restore's floor)
`--fill-ab` (restore only, before/after interleaved): a second daemon of the
same build runs with CRFS_RESTORE_FILL_BY_RUN=1 (the blob copies one page run
at a time, as before runs were grouped); each round restores the image
through both, before first in odd rounds, after first in even ones; every
round and the medians are printed. `--before DIR` does the same with DIR's
crfsd (another build, e.g. main's) as "before". Both A/B modes print, per
restore, the wall time, crfsd's CPU time (utime + stime over the restore,
10 ms ticks) and the restored task's own CPU time (its blob's fill) before it
is killed, and the time it spent runnable waiting for a CPU (both from
/proc/PID/task/*/schedstat, in ns).
With `--before` the dump is compared first the same way (each round
dumps the same holder through both daemons, the order alternating, into a
new file; wall time, crfsd's CPU and its checkpoint workers' CPU, 10 ms
ticks); `--dump-only` skips the restores.
Otherwise both are measured in the same run, and CRIU's figures from issue 13 (CRIU 4.2,
same machine class, ANOTHER run) where the issue has that N. Needs root;
N near vm.max_map_count (65530) fails.
"""
import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mount_checkpoint_bench import (best_of, let_run, mount, unlink_if_there, unmount,  # noqa: E402
                                    wait_for)

# Issue 13's CRIU 4.2 figures (dump ms, restore ms) by number of areas.
CRIU = {1000: (111, 62), 8000: (248, 132), 30000: (760, 245)}



def smaps_seconds(pid):
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        with open(f"/proc/{pid}/smaps", "rb") as f:
            while f.read(1 << 20):
                pass
        best = min(best, time.perf_counter() - t)
    return best


def state_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


def sched_ms(pid):
    """(CPU, waiting for a CPU) of a process's live threads so far, in ms:
    the first two fields of /proc/PID/task/TID/schedstat (ns; utime and
    stime in /proc/PID/stat count 10 ms ticks). Threads that have exited
    are not counted: for the restored task, alive when it is read."""
    run = wait = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e6, wait / 1e6


def stat_ms(pid, first):
    """Fields `first` and `first + 1` of /proc/PID/stat (after the command)
    added, in ms (clock ticks: 10 ms steps); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[first]) + int(fields[first + 1])) * 1e3 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    """utime + stime of a process so far, in ms, its exited threads included:
    crfsd's FUSE workers come and go."""
    return stat_ms(pid, 11)


def children_cpu_ms(pid):
    """cutime + cstime of a process so far, in ms: its children that it
    waited for, here crfsd's checkpoint workers (crfs-ckpt)."""
    return stat_ms(pid, 13)


def workers_of(pid):
    """crfsd's children (any thread's) still there: its checkpoint workers."""
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += f.read().split()
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids


def dump_ab(n, pid, out, mnt, mnt_b, daemons, rounds):
    """Dumps of one holder through both daemons, interleaved (before first in
    even rounds), each `cp /crfs/PID/image` into a new file (the last one's
    removed first, untimed); prints each round (wall, crfsd CPU and its
    workers' CPU, load) and the medians."""
    def dump(where):
        if os.path.exists(out):
            os.unlink(out)
        let_run(pid)  # the last dump's after-cost paid outside this one (let_run)
        d = daemons[where].pid
        c0, w0 = cpu_ms(d), children_cpu_ms(d)
        t = time.perf_counter()
        subprocess.run(["cp", f"{where}/{pid}/image", out], check=True)
        took = time.perf_counter() - t
        # the worker's CPU shows in cutime once crfsd reaped it
        wait_for(lambda: not workers_of(d), "the checkpoint worker's exit", 30)
        return took, cpu_ms(d) - c0, children_cpu_ms(d) - w0

    dump(mnt_b), dump(mnt)  # warm-up
    res = {mnt: [], mnt_b: []}
    for r in range(rounds):
        for where in ((mnt_b, mnt) if r % 2 == 0 else (mnt, mnt_b)):
            res[where].append(dump(where))
        b, a = res[mnt_b][-1], res[mnt][-1]
        print(f"{n:>6} dump round {r + 1}: before {b[0] * 1e3:7.1f} ms (cpu crfsd {b[1]:.0f},"
              f" worker {b[2]:.0f})  after {a[0] * 1e3:7.1f} ms (cpu crfsd {a[1]:.0f},"
              f" worker {a[2]:.0f})  load {os.getloadavg()[0]:.1f}", flush=True)
    med = lambda where, i: statistics.median(x[i] for x in res[where])
    mb, ma = med(mnt_b, 0), med(mnt, 0)
    print(f"{n:>6} dump median before {mb * 1e3:.1f} ms ({mb * 1e6 / n:.1f} us/area) after"
          f" {ma * 1e3:.1f} ms ({ma * 1e6 / n:.1f} us/area) (after/before {ma / mb:.2f});"
          f" best before {min(x[0] for x in res[mnt_b]) * 1e3:.1f} after"
          f" {min(x[0] for x in res[mnt]) * 1e3:.1f} ms; median CPU ms crfsd before"
          f" {med(mnt_b, 1):.0f} after {med(mnt, 1):.0f}, worker before {med(mnt_b, 2):.0f}"
          f" after {med(mnt, 2):.0f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trace", action="store_true",
                    help="print crfsd's phase times (CRFS_CHECKPOINT_TRACE, CRFS_RESTORE_TRACE)")
    ap.add_argument("--fill-ab", action="store_true")
    ap.add_argument("--before", help="another build dir: its crfsd is the 'before' of an A/B run")
    ap.add_argument("--dump-only", action="store_true",
                    help="with --before or --fill-ab: the dump A/B only, no restores")
    ap.add_argument("counts", nargs="*", type=int, default=[1000, 10000, 30000, 60000])
    a = ap.parse_args()
    crfsd = os.path.join(a.build, "fs", "crfsd")
    holder_exe = os.path.join(a.build, "bench", "vma_holder")
    tmp = tempfile.mkdtemp(prefix="crfs-vma-bench-")
    os.chmod(tmp, 0o755)
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    log = open(os.path.join(tmp, "crfsd.log"), "w")
    if a.trace:
        os.environ["CRFS_CHECKPOINT_TRACE"] = os.environ["CRFS_RESTORE_TRACE"] = "1"
    daemon = mount([crfsd, "-f", "-o", "state_dir=" + tmp + "/state", mnt], mnt, log)
    mnt_b, daemon_b = os.path.join(tmp, "mnt-before"), None
    ab = a.fill_ab or a.before
    if ab:
        os.mkdir(mnt_b)
        if a.fill_ab:
            os.environ["CRFS_RESTORE_FILL_BY_RUN"] = "1"
        crfsd_b = os.path.join(a.before, "fs", "crfsd") if a.before else crfsd
        try:
            log_b = open(os.path.join(tmp, "crfsd-before.log"), "w")
            daemon_b = mount([crfsd_b, "-f", "-o", "state_dir=" + tmp + "/state-b", mnt_b], mnt_b,
                             log_b)
        finally:
            os.environ.pop("CRFS_RESTORE_FILL_BY_RUN", None)
    daemons = {mnt: daemon, mnt_b: daemon_b}
    restored = []
    serial = itertools.count()

    def kill_restored():
        for pid in restored:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in restored:
            wait_for(lambda: state_of(pid) in ("Z", "gone"), "the restored task to die")
        restored.clear()

    try:
        if not ab:
            print(f"{'VMAs':>6} {'image':>7} | {'dump':>8} {'us/VMA':>6} {'restore':>8}"
                  f" {'us/VMA':>6} | {'smaps':>7} {'build':>7} | {'dump/smaps':>10}"
                  f" {'rest/build':>10} | {'dump/CRIU':>9} {'rest/CRIU':>9}", flush=True)
        for n in a.counts:
            ready = os.path.join(tmp, f"ready{n}")
            holder = subprocess.Popen([holder_exe, str(n), ready],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, close_fds=True)
            out = os.path.join(tmp, "snap.img")
            try:
                wait_for(lambda: os.path.exists(ready) or holder.poll() is not None,
                         "the area holder", 300)
                if holder.poll() is not None:
                    raise SystemExit(f"the holder of {n} areas failed")
                with open(ready) as f:
                    t_build = int(f.read()) / 1e9
                t_smaps = smaps_seconds(holder.pid)
                image = f"{mnt}/{holder.pid}/image"
                if ab:
                    dump_ab(n, holder.pid, out, mnt, mnt_b, daemons, a.rounds)
                # a new file each round, as `cp /crfs/PID/image snap.img` makes one
                # and the holder run once before each (let_run)
                t_dump = best_of(a.rounds, lambda: subprocess.run(["cp", image, out], check=True),
                                 before=lambda: (unlink_if_there(out), let_run(holder.pid)))
            finally:
                holder.kill()
                holder.wait()
            cpu = {}  # the last restore's (crfsd CPU ms, restored task CPU ms)

            def restore(where=mnt):  # seconds from mkdir to cp's exit; the task is killed after
                d0 = cpu_ms(daemons[where].pid)
                t = time.perf_counter()
                slot = f"{where}/v{n}-{next(serial)}"
                os.mkdir(slot)
                subprocess.run(["cp", out, slot + "/image"], check=True)
                took = time.perf_counter() - t
                d1 = cpu_ms(daemons[where].pid)
                with open(slot + "/pid") as f:
                    restored.append(int(f.read()))
                cpu[where] = (d1 - d0, *sched_ms(restored[-1]))
                kill_restored()  # one at a time: 60,000 areas twice may pass max_map_count
                return took

            if ab and a.dump_only:
                os.unlink(out)
                continue
            if ab:
                restore(mnt_b), restore()  # warm-up
                tb, ta, cb, ca = [], [], [], []
                for r in range(a.rounds):  # the order alternates: neither always goes first
                    for where in ((mnt, mnt_b) if r % 2 else (mnt_b, mnt)):
                        (ta if where == mnt else tb).append(restore(where))
                        (ca if where == mnt else cb).append(cpu[where])
                    print(f"{n:>6} round {r + 1}: before {tb[-1] * 1e3:7.1f} ms (cpu crfsd"
                          f" {cb[-1][0]:.1f} task {cb[-1][1]:.1f}, waited {cb[-1][2]:.1f})"
                          f"  after {ta[-1] * 1e3:7.1f} ms (cpu crfsd {ca[-1][0]:.1f}"
                          f" task {ca[-1][1]:.1f}, waited {ca[-1][2]:.1f})"
                          f"  load {os.getloadavg()[0]:.1f}", flush=True)
                mb, ma = statistics.median(tb), statistics.median(ta)
                med = lambda c, i: statistics.median(x[i] for x in c)
                print(f"{n:>6} best before {min(tb) * 1e3:.1f} ms after {min(ta) * 1e3:.1f} ms;"
                      f" median before {mb * 1e3:.1f} ms ({mb * 1e6 / n:.1f} us/area)"
                      f" after {ma * 1e3:.1f} ms ({ma * 1e6 / n:.1f} us/area)"
                      f" (after/before {ma / mb:.2f}); median CPU ms crfsd before"
                      f" {med(cb, 0):.1f} after {med(ca, 0):.1f}, task before {med(cb, 1):.1f}"
                      f" after {med(ca, 1):.1f} (waited for a CPU before {med(cb, 2):.1f}"
                      f" after {med(ca, 2):.1f})", flush=True)
                os.unlink(out)
                continue
            restore()  # warm-up
            t_restore = min(restore() for _ in range(a.rounds))
            img = os.path.getsize(out)
            os.unlink(out)
            crit = CRIU.get(n)
            ratio = (lambda t, c: f"{t * 1e3 / c:>8.2f}x") if crit else (lambda t, c: f"{'-':>9}")
            ms = lambda s: f"{s * 1e3:6.1f}ms"
            us = lambda s: f"{s * 1e6 / n:6.1f}"
            print(f"{n:>6} {img / (1 << 20):>6.1f}M | {ms(t_dump)} {us(t_dump)} {ms(t_restore):>8}"
                  f" {us(t_restore)} | {ms(t_smaps):>7} {ms(t_build):>7} |"
                  f" {t_dump / t_smaps:>9.1f}x {t_restore / t_build:>9.1f}x |"
                  f" {ratio(t_dump, crit[0] if crit else 0)} {ratio(t_restore, crit[1] if crit else 0)}",
                  flush=True)
    finally:
        kill_restored()
        if daemon_b:
            unmount(daemon_b, mnt_b)
            log_b.close()
        unmount(daemon, mnt)
        log.close()
        if a.trace:
            for name in ("crfsd-before.log", "crfsd.log") if ab else ("crfsd.log",):
                with open(os.path.join(tmp, name)) as f:
                    sys.stdout.write(name + ":\n" + "".join(
                        l for l in f if ("phase" in l and not ab) or "restore " in l))
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
