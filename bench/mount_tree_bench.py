#!/usr/bin/env python3
"""A process tree through the mount (issue 10's aim: a tree costs its
processes' memory plus 1 ms per process), as a user runs it, with cp:

    bench/mount_tree_bench.py [--build DIR] [--rounds N] [--before-crfsd PATH]
                              [--before-env VAR=VAL ...] [--shared-kib K]
                              [--memfd-kib K] [--reason] [--no-restore] [--to-null]
                              [--warm-mib N] [--kernel-floor] [PxM ...]
    (default: build, 5 rounds, 16x16 64x1: P processes of M MiB each)

Mounts DIR/fs/crfsd on a temporary directory (root: a tree comes back with
its pids). Each round starts a fresh tree (bench/tree_holder.c: a root and
P-1 children, each holding M MiB of its own, stdio on /dev/null), then times
  checkpoint  cp /crfs/ROOT/image FILE
  restore     (every process killed and reaped) mkdir /crfs/ROOT &&
              cp FILE /crfs/ROOT/image   (close() returns once the tree runs)
and, in the same run, a memcpy of the image's bytes and the FUSE floor of
moving them (DIR/bench/fuse_limit, as bench/mount_checkpoint_bench.py uses
it: the same libfuse setup as crfsd serving a file of the image's size from
memory): `cp` of its file into a new FILE (the checkpoint's floor: the FUSE
read and the file system's write of the bytes) and a 1 MiB `dd` of FILE into
it (the restore's: the FUSE write and one copy into fresh memory), timed in
each round after the tree's. FILE is a new file in every round (unlinked
before the timed `cp`, untimed), as `cp /crfs/ROOT/image FILE` makes one:
over the last round's image the `cp` would also time the file system
freeing its blocks; and `sync` (untimed) comes before each timed `cp` into
a file, so that none times the writeback of the one before. After one warm-up
round, prints the best and the median of the rounds: time, time / memcpy,
(time - memcpy) / P in ms, the cost per process beyond memory (the aim:
<= 1), and (time - floor) / P, beyond moving the bytes through FUSE (best
of each, median of each); and the checkpoint's CPU time (the daemon's and
its reaped worker's, crfs-ckpt, from /proc ticks: less swayed by the load
than the wall clock).

`--before-crfsd PATH` mounts a second daemon (another build's crfsd, its
crfs-ckpt next to it) and runs every round through "before" then "after"
(this build's), each on a fresh tree of its own: before/after interleaved,
back to back, the order alternating from round to round. The load average is printed with each round.
`--before-env VAR=VAL` (repeatable) starts "before" with these variables in
its environment; without --before-crfsd, "before" is this build's crfsd too
(a switch to an old path: the same binary, before/after).
`--shared-kib K`: the root maps K KiB of shared anonymous memory before its
forks, so every member maps one shmem object (as a pre-fork server does).
`--memfd-kib K`: the root makes a K KiB memfd, maps it shared and keeps its
fd before its forks, so every member holds and maps one memfd.
`--warm-mib N`: right before each timed step (the checkpoint, the restore,
the two floors; untimed) the bench touches N MiB of fresh huge-page memory
and frees it, so that the step's fresh memory (the worker's buffer, the
restored members, the page cache) is the guest's warm free memory rather
than pages this VM's host took back (their first touch costs ~1.5-2.8 ms per
MiB here: docs/performance.md, session 30); the memcpy baseline is always
between warm buffers. 0 (the default): no warming, as a cold machine is.
`--to-null`: the checkpoint's `cp` and the floor's read go to /dev/null, so
that neither times the file system's write of the bytes (the page cache's
fresh memory, whose first touch swings by seconds on this VM: session 37);
the image the restore and the floor use comes from a second, untimed
checkpoint of the same tree.
`--kernel-floor`: each round also times DIR/bench/tree_kernel_floor on the
tree right after its checkpoint (untimed for it, before the tree is
killed; 4 threads, as crfs's tracers): at least what a checkpoint asks the
kernel of each process (its seize and stop, its /proc files, registers,
three injected syscalls as the parasite's three stops, its detach), with
nothing of crfs and no memory moved: a lower bound of the per-process cost,
printed beside "over FUSE" (bench/tree_kernel_floor.c says what it does).
`--reason`: each round also times `cat /crfs/ROOT/reason` (before the
checkpoint, on the same tree), which must be empty. `--no-restore`: the
checkpoint (and reason) only; restore is shown as 0.
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
from mount_checkpoint_bench import (MiB, memcpy_seconds, mount, unlink_if_there,  # noqa: E402
                                    unmount, wait_for, wait_reaped)


def daemon_cpu(pid):
    """CPU seconds of the daemon and its reaped children (the checkpoint workers)."""
    with open(f"/proc/{pid}/stat") as f:
        ticks = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fs"))
from trees_mount_test import reap, tree_of  # noqa: E402  (we are a subreaper)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


def warm(mib):
    """Touches `mib` MiB of fresh memory (huge pages where the kernel gives
    them) and frees it: the next fresh allocations of the machine reuse warm
    pages (see --warm-mib)."""
    if not mib:
        return
    n = mib * MiB
    addr = _libc.mmap(None, n, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    if addr in (None, ctypes.c_void_p(-1).value):
        raise SystemExit(f"warm: mmap of {mib} MiB failed")
    _libc.madvise(addr, n, 14)  # MADV_HUGEPAGE
    _libc.memset(addr, 1, n)
    _libc.munmap(addr, n)


def kill_all(pids):
    """Kills them all and waits until every pid is free (reaped: a zombie holds its pid)."""
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in pids:
        wait_for(lambda: (reap(), not os.path.exists(f"/proc/{p}"))[1], f"pid {p} to be free")


class Tree:
    """One fresh tree of `procs` processes of `mib` MiB, ready (every member touched)."""

    def __init__(self, holder, procs, mib, tmp, shared_kib=0, memfd_kib=0):
        self.dir = tempfile.mkdtemp(dir=tmp)
        extra = [str(shared_kib)] if shared_kib or memfd_kib else []
        extra += [str(memfd_kib)] if memfd_kib else []
        self.proc = subprocess.Popen([holder, str(procs), str(mib), self.dir] + extra,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=True)
        self.pids = [self.proc.pid]
        wait_for(lambda: len(os.listdir(self.dir)) >= procs and
                 not any(n.endswith(".tmp") for n in os.listdir(self.dir)) or
                 self.proc.poll() is not None, "the tree to be ready", 300)
        if self.proc.poll() is not None:
            raise SystemExit(f"tree_holder exited with {self.proc.returncode}")
        self.pids = tree_of(self.proc.pid)
        if len(self.pids) != procs:
            raise SystemExit(f"the tree has {len(self.pids)} processes, not {procs}")

    def kill(self):
        kill_all(self.pids)
        subprocess.run(["rm", "-rf", self.dir])


def kernel_floor(prog, pids):
    """Seconds bench/tree_kernel_floor takes over `pids` (see --kernel-floor)."""
    out = subprocess.run([prog, "4", "3"] + [str(p) for p in pids],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0 or out.stderr:
        raise SystemExit(f"tree_kernel_floor exited {out.returncode}: {out.stderr.strip()}")
    return float(out.stdout) / 1e3


def one_round(mnt, daemon, holder, procs, mib, tmp, img, shared_kib=0, memfd_kib=0,
              reason=False, restore=True, warm_mib=0, to_null=False, floor_prog=None):
    """(checkpoint s, restore s, image bytes, reason s or None, checkpoint CPU s, kernel
    floor s or None) of one fresh tree through `mnt`, served by the daemon of pid `daemon`;
    the kernel floor with `floor_prog` (--kernel-floor)."""
    tree = Tree(holder, procs, mib, tmp, shared_kib, memfd_kib)
    root = tree.pids[0]
    restored = []
    try:
        t_reason = None
        if reason:
            t = time.perf_counter()
            why = subprocess.run(["cat", f"{mnt}/{root}/reason"], check=True,
                                 capture_output=True, text=True).stdout
            t_reason = time.perf_counter() - t
            if why:
                raise SystemExit(f"the tree has reasons: {why}")
        unlink_if_there(img)  # a new file, as a user's cp makes one
        os.sync()  # the last round's writeback is not timed here
        cpu = daemon_cpu(daemon)
        warm(warm_mib)
        t = time.perf_counter()
        subprocess.run(["cp", f"{mnt}/{root}/image", os.devnull if to_null else img], check=True)
        t_ckpt = time.perf_counter() - t
        wait_reaped(daemon)  # the worker: its CPU time is then the daemon's
        cpu = daemon_cpu(daemon) - cpu
        if to_null:  # the image for the restore and the floor: untimed
            subprocess.run(["cp", f"{mnt}/{root}/image", img], check=True)
            wait_reaped(daemon)
        t_kernel = kernel_floor(floor_prog, tree.pids) if floor_prog else None
        tree.kill()
        if not restore:
            return t_ckpt, 0.0, os.path.getsize(img), t_reason, cpu, t_kernel
        slot = f"{mnt}/{root}"
        warm(warm_mib)
        t = time.perf_counter()
        os.mkdir(slot)
        subprocess.run(["cp", img, slot + "/image"], check=True)
        t_rest = time.perf_counter() - t
        restored = tree_of(root)
        if len(restored) != procs:
            raise SystemExit(f"restored {len(restored)} processes, not {procs}")
        return t_ckpt, t_rest, os.path.getsize(img), t_reason, cpu, t_kernel
    finally:
        clean_round(mnt, tree, restored)


def clean_round(mnt, tree, restored):
    """Kills the round's tree and what was restored, and removes its slot."""
    tree.kill()
    kill_all(restored)
    try:
        os.rmdir(f"{mnt}/{tree.pids[0]}")
    except OSError:
        pass


class FuseFloor:
    """Each round: fuse_limit serving a file of the round's image size (it
    varies by a few bytes), the image's bytes read from it into a new file
    and written into it."""

    def __init__(self, limit, tmp, log, warm_mib=0, to_null=False):
        self.limit, self.tmp, self.log, self.warm_mib = limit, tmp, log, warm_mib
        self.to_null = to_null
        self.lim = os.path.join(tmp, "lim")
        self.proc, self.rd, self.wr = None, [], []

    def round(self, img):
        os.makedirs(self.lim, exist_ok=True)
        self.proc = mount([self.limit, self.lim, str(os.path.getsize(img))], self.lim, self.log)
        out = os.path.join(self.tmp, "floor.img")
        try:
            unlink_if_there(out)
            os.sync()
            warm(self.warm_mib)
            t = time.perf_counter()
            subprocess.run(["cp", self.lim + "/data", os.devnull if self.to_null else out],
                           check=True)
            self.rd.append(time.perf_counter() - t)
            unlink_if_there(out)
            warm(self.warm_mib)
            t = time.perf_counter()
            subprocess.run(["dd", "if=" + img, "of=" + self.lim + "/data", "bs=1M",
                            "status=none", "conv=notrunc"], check=True)
            self.wr.append(time.perf_counter() - t)
        finally:
            self.close()

    def close(self):
        if self.proc:
            unmount(self.proc, self.lim)
            self.proc = None


def report(name, procs, times, mc, floor):
    best, med = min(times), statistics.median(times)
    per = lambda s, base: (s - base) / procs * 1e3
    return (f"{name} best {best * 1e3:8.1f} ms ({best / mc:5.1f}x memcpy, "
            f"{per(best, mc):+7.2f} ms/proc; over FUSE {per(best, min(floor)):+7.2f})"
            f"  median {med * 1e3:8.1f} ms ({med / mc:5.1f}x, {per(med, mc):+7.2f} ms/proc;"
            f" over FUSE {per(med, statistics.median(floor)):+7.2f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before-crfsd", default=None)
    ap.add_argument("--before-env", action="append", default=[])
    ap.add_argument("--shared-kib", type=int, default=0)
    ap.add_argument("--memfd-kib", type=int, default=0)
    ap.add_argument("--reason", action="store_true")
    ap.add_argument("--warm-mib", type=int, default=0)
    ap.add_argument("--no-restore", action="store_true")
    ap.add_argument("--to-null", action="store_true")
    ap.add_argument("--kernel-floor", action="store_true")
    ap.add_argument("trees", nargs="*", default=["16x16", "64x1"])
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: a tree comes back with its pids")
    ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans of killed roots reap here
    holder = os.path.join(a.build, "bench", "tree_holder")
    limit = os.path.join(a.build, "bench", "fuse_limit")
    floor_prog = os.path.join(a.build, "bench", "tree_kernel_floor") if a.kernel_floor else None
    daemons = [("after", [os.path.join(a.build, "fs", "crfsd")])]
    if a.before_env and not a.before_crfsd:
        a.before_crfsd = daemons[0][1][0]
    if a.before_crfsd:
        env = ["env"] + a.before_env if a.before_env else []  # env execs it: the same pid
        daemons.insert(0, ("before", env + [a.before_crfsd]))
    tmp = tempfile.mkdtemp(prefix="crfs-tree-bench-")
    os.chmod(tmp, 0o755)
    log = open(os.path.join(tmp, "crfsd.log"), "w")
    mounted, floors = [], []
    try:
        for name, crfsd in daemons:
            mnt = os.path.join(tmp, "mnt-" + name)
            os.mkdir(mnt)
            mounted.append((name, mount(crfsd + ["-f", "-o", f"state_dir={tmp}/state-{name}", mnt],
                                        mnt, log), mnt))
        img = os.path.join(tmp, "tree.img")
        for spec in a.trees:
            procs, mib = (int(x) for x in spec.split("x"))
            times = {name: ([], [], [], []) for name, _, _ in mounted}
            size = 0
            kernel = []  # --kernel-floor: every round's, both daemons' trees
            floor = FuseFloor(limit, tmp, log, a.warm_mib, a.to_null)
            floors.append(floor)
            for r in range(a.rounds + 1):  # round 0: warm-up
                line = []
                # Before/after in alternating order: the first of a round was
                # seen slower whichever daemon it was.
                for name, proc, mnt in (mounted if r % 2 else mounted[::-1]):
                    c, t, size, why, cpu, k = one_round(mnt, proc.pid, holder, procs, mib, tmp,
                                                        img, a.shared_kib, a.memfd_kib, a.reason,
                                                        not a.no_restore, a.warm_mib, a.to_null,
                                                        floor_prog)
                    line.append(f"{name} " + (f"reason {why * 1e3:8.1f} " if a.reason else "") +
                                f"checkpoint {c * 1e3:8.1f} (cpu {cpu * 1e3:5.0f}) "
                                f"restore {t * 1e3:8.1f} ms" +
                                (f" kernel floor {k * 1e3:6.1f} ms" if k is not None else ""))
                    if r:
                        if k is not None:
                            kernel.append(k)
                        times[name][0].append(c)
                        times[name][1].append(t)
                        times[name][3].append(cpu)
                        if a.reason:
                            times[name][2].append(why)
                if r:
                    floor.round(img)
                    line.append(f"FUSE floor read {floor.rd[-1] * 1e3:8.1f} write"
                                f" {floor.wr[-1] * 1e3:8.1f} ms")
                print(f"{spec} round {r or 'warm-up'}: " + "; ".join(line) +
                      f"; load {os.getloadavg()[0]:.1f}", flush=True)
            floor.close()
            mc = memcpy_seconds(size)
            rd, wr = floor.rd, floor.wr
            print(f"{spec}: {procs} processes x {mib} MiB, image {size / MiB:.1f} MiB,"
                  f" memcpy {mc * 1e3:.1f} ms, {a.rounds} rounds, warmed {a.warm_mib} MiB"
                  f" before each step; FUSE floor (best / median):"
                  f" read into a new file {min(rd) * 1e3:.1f} / {statistics.median(rd) * 1e3:.1f}"
                  f" ms, write {min(wr) * 1e3:.1f} / {statistics.median(wr) * 1e3:.1f} ms",
                  flush=True)
            if kernel:
                print(f"  kernel floor (bench/tree_kernel_floor, 4 threads, no memory moved: a"
                      f" lower bound) best {min(kernel) * 1e3:.1f} ms"
                      f" ({min(kernel) / procs * 1e3:.2f} ms/proc)  median"
                      f" {statistics.median(kernel) * 1e3:.1f} ms"
                      f" ({statistics.median(kernel) / procs * 1e3:.2f} ms/proc)")
            for name, _, _ in mounted:
                if a.reason:
                    rs = times[name][2]
                    print(f"  {name:>6} reason     best {min(rs) * 1e3:8.1f} ms"
                          f"  median {statistics.median(rs) * 1e3:8.1f} ms")
                print("  " + report(f"{name:>6} checkpoint", procs, times[name][0], mc, rd))
                cpus = times[name][3]
                print(f"  {name:>6} checkpoint CPU (daemon + worker) best {min(cpus) * 1e3:6.0f}"
                      f" ms  median {statistics.median(cpus) * 1e3:6.0f} ms")
                print("  " + report(f"{name:>6} restore   ", procs, times[name][1], mc, wr),
                      flush=True)
    finally:
        for f in floors:
            f.close()
        for _, proc, mnt in mounted:
            unmount(proc, mnt)
        log.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
