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

`--targets`: sizes 16 256 1024 4096 (unless given) and the small line at 16,
then one line per issue 13 target of dump and restore, as measured in this
run and met or missed (the 30,000-area target is bench/mount_vma_bench.py's).
At 4 GiB the memcpy column is 4x a 1 GiB memcpy (two 4 GiB buffers beside the
rest would crowd the machine); memory peaks near 3x the largest size.

`--restore-ab` (restore only, before/after interleaved in one run): two
daemons are mounted, "after" (this build's, or --crfsd) and "before"
(--before-crfsd PATH, or the same binary with --before-env VAR=VALUE in its
environment, default CRFS_RESTORE_PLAIN_SPOOL=1: the spool without page data
set apart; CRFS_RESTORE_NO_STREAM=1: spooled, not streamed; "CRFS_SLOT_ANSWER_LATE=1
CRFS_XXH3_SSE2=1": session 16's write path undone); for each size one image is taken,
then each of --rounds rounds restores it through before and after (before
first in odd rounds, after first in even ones: the first restore of a round
meets the freshest memory, which this VM makes slow), and writes
it into fuse_limit (FUSE wr), and into a fuse_limit that keeps no byte
(FUSE_LIMIT_DISCARD=1: the FUSE write path alone, "floor"), in that order;
every round's figures, the medians and the ratios to FUSE wr are printed with
the load average.
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
signal.signal(signal.SIGUSR1, lambda *_: None)  # let_run: one run, nothing more
open(sys.argv[2], 'w').write('ready')
while True: signal.pause()
"""


def voluntary_switches(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise SystemExit(f"/proc/{pid}/status: no voluntary_ctxt_switches")


def let_run(pid, timeout=60):
    """Lets a HOLDER run once (SIGUSR1: its no-op handler, then pause() again)
    and returns how long that took (s): the signal until it sleeps again (one
    more voluntary context switch). A holder idle between reads would
    otherwise pay the last live snapshot's after-cost inside the next one's
    frozen window: on this VM a task's first run after its page table
    entries were write-protected and released (every entry changed twice)
    stalls, ~80 ms at 1 GiB (the hypervisor's shadow page tables;
    docs/performance.md), and an idle holder's first run is the next
    checkpoint's first injected syscall. A task that runs pays it after the
    thaw, as the holder does here."""
    before = voluntary_switches(pid)
    t = time.perf_counter()
    os.kill(pid, signal.SIGUSR1)
    end = t + timeout
    while voluntary_switches(pid) == before:
        if time.perf_counter() > end:
            raise SystemExit(f"timed out waiting for holder {pid} to run")
        time.sleep(0.0002)
    return time.perf_counter() - t


def wait_for(pred, what, timeout=120):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.01)


def memcpy_seconds(nbytes, cap=None):
    """Best of 3 copies of `nbytes` between two touched buffers; past `cap`
    bytes, a copy of `cap` bytes scaled (copies are linear at these sizes)."""
    if cap and nbytes > cap:
        return memcpy_seconds(cap) * nbytes / cap
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


def idle_spare(pid):
    """Whether the daemon's child `pid` is its spare checkpoint worker, waiting
    for a request (checkpoint/worker.h: `crfs-ckpt spare`, `taken` once used)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return argv[0].endswith(b"/crfs-ckpt") and argv[1:2] == [b"spare"]


def daemon_children(daemon_pid):
    """The daemon's children (its workers, restored tasks), not its spare."""
    out = []
    for t in os.listdir(f"/proc/{daemon_pid}/task"):
        try:  # a thread of the daemon may end meanwhile
            with open(f"/proc/{daemon_pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return [c for c in out if not idle_spare(c)]


def has_children(daemon_pid):
    """Whether the daemon has a child (a worker, a restored task)."""
    return bool(daemon_children(daemon_pid))


def wait_reaped(daemon_pid):
    """Until the daemon has no child left (its restored task reaped: its CPU
    time is then the daemon's)."""
    wait_for(lambda: not has_children(daemon_pid), "the daemon's children to be reaped")


def cpu_of(daemon_pid, rounds, fn):
    """Least CPU time of `rounds` calls of fn (daemon, its worker, cp): less
    swayed by other load than the wall clock. Waits (bounded) for the
    handle's worker to be reaped, so its time is counted."""
    best = float("inf")
    for _ in range(rounds):
        c = cpu_seconds(daemon_pid)
        fn()
        wait_for(lambda: not has_children(daemon_pid), "the worker to be reaped")
        best = min(best, cpu_seconds(daemon_pid) - c)
    return best


def best_of(rounds, fn, before=None):
    """The best of `rounds` timed calls of `fn` after one warm-up; `before`,
    if given, runs ahead of each call, untimed."""
    best = float("inf")
    for i in range(rounds + 1):
        if before:
            before()
        t = time.perf_counter()
        fn()
        if i:  # 0: the warm-up
            best = min(best, time.perf_counter() - t)
    return best


def unlink_if_there(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
    for c in daemon_children(pid):
        try:
            total += rss_kib(c)
        except FileNotFoundError:
            pass
    return total


def mount(argv, mnt, log, env=None):
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
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
            ["cp", f"{mnt}/{holder.pid}/image", out], check=True),
            # a new file, as the big sizes' dump; the holder run first (let_run)
            before=lambda: (unlink_if_there(out), let_run(holder.pid)))
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
    return t_dump, t_restore


def restore_ab(a, crfsd, limit, tmp, mnt, lim, log):
    """Restore before/after interleaved, with the FUSE write limit (see --restore-ab)."""
    mnt_b = os.path.join(tmp, "mnt-before")
    os.mkdir(mnt_b)
    env = dict(os.environ)
    before = a.before_crfsd or crfsd
    if not a.before_crfsd:  # "VAR=VALUE VAR2=VALUE2 ..."
        env.update(kv.partition("=")[::2] for kv in a.before_env.split())
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
            lim0 = os.path.join(tmp, "lim-floor")
            os.makedirs(lim0, exist_ok=True)
            lim0d = mount([limit, lim0, str(img)], lim0, log,
                          dict(os.environ, FUSE_LIMIT_DISCARD="1"))
            rb, ra, rw, r0 = [], [], [], []
            wr = lambda: subprocess.run(["dd", "if=" + out, "of=" + lim + "/data", "bs=1M",
                                         "status=none", "conv=notrunc"], check=True)
            w0 = lambda: subprocess.run(["dd", "if=" + out, "of=" + lim0 + "/data", "bs=1M",
                                         "status=none", "conv=notrunc"], check=True)
            cb, ca = [], []  # CPU of each restore: the daemon, its reaped task, cp
            try:
                steps = [(restorer(mnt_b, f"b{size}", out, restored), rb, cb, proc.pid),
                         (restorer(mnt, f"a{size}", out, restored), ra, ca, a.daemon_pid),
                         (wr, rw, None, 0), (w0, r0, None, 0)]
                for fn, *_ in steps:  # warm-up
                    fn()
                    kill_restored(restored)
                for r in range(a.rounds):
                    # before first in odd rounds, after first in even ones: the
                    # first restore of a round takes the freshest memory
                    order = steps if r % 2 == 0 else [steps[1], steps[0], *steps[2:]]
                    for fn, times, cpus, pid in order:
                        c = cpu_seconds(pid) if pid else 0
                        t = time.perf_counter()
                        fn()
                        times.append(time.perf_counter() - t)
                        kill_restored(restored)
                        if pid:
                            wait_reaped(pid)
                            cpus.append(cpu_seconds(pid) - c)
                    print(f"{size:>5} MiB round {r + 1}: before {ms(rb[-1])} ms  after"
                          f" {ms(ra[-1])} ms  FUSE wr {ms(rw[-1])} ms  floor {ms(r0[-1])} ms"
                          f"  (cpu before {ms(cb[-1])} after {ms(ca[-1])} ms)"
                          f"  load {os.getloadavg()[0]:.1f}", flush=True)
            finally:
                unmount(limd, lim)
                unmount(lim0d, lim0)
                os.unlink(out)
            mb, ma, mw, m0 = (statistics.median(x) for x in (rb, ra, rw, r0))
            print(f"{size:>5} MiB ({img / MiB:.0f}M image) median: before {ms(mb)} ms"
                  f" ({mb / mw:.2f}x FUSE wr)  after {ms(ma)} ms ({ma / mw:.2f}x)"
                  f"  FUSE wr {ms(mw)} ms  floor {ms(m0)} ms  after/before {ma / mb:.2f}"
                  f"  after/floor {ma / m0:.2f}  cpu before {ms(statistics.median(cb))}"
                  f" after {ms(statistics.median(ca))} ms", flush=True)
    finally:
        kill_left(restored)
        unmount(proc, mnt_b)


def print_targets(res, small):
    """Issue 13's dump and restore targets, one line each: as measured in this
    run (best of its rounds) and met or missed."""
    print(f"targets (issue 13), this run's best rounds, load average"
          f" {' '.join(f'{x:.1f}' for x in os.getloadavg())}:")

    def line(what, value, met):
        verdict = "not run" if met is None else "met" if met else "missed"
        print(f"  {what:<44} {value:>22}  {verdict}", flush=True)

    ms = lambda s: f"{s * 1e3:,.1f} ms"
    g, m = res.get(1024), res.get(16)
    line("dump 1 GiB to a file <= 380 ms", ms(g["file"]) if g else "-",
         g["file"] <= 0.380 if g else None)
    if g:
        print(f"  dump 1 GiB to a file: {g['file'] / g['rdf']:.2f}x the FUSE read into a new "
              f"file ({ms(g['rdf'])})", flush=True)
    line("dump 1 GiB to /dev/null >= 70% of FUSE rd", f"{g['rd'] / g['null']:.0%}" if g else "-",
         g["rd"] / g["null"] >= 0.70 if g else None)
    d16 = small.get(16)
    line("dump 16 MiB <= 10 ms (small line)", ms(d16[0]) if d16 else "-",
         d16[0] <= 0.010 if d16 else None)
    line("frozen 1 GiB <= 20 ms", ms(g["frozen"]) if g else "-",
         g["frozen"] <= 0.020 if g else None)
    f4 = res.get(4096)
    flat = f4["frozen"] / m["frozen"] if f4 and m and m["frozen"] > 0 else None
    line("frozen flat: 4 GiB / 16 MiB <= 2x", f"{flat:.1f}x" if flat else "-",
         flat <= 2 if flat else None)
    line("restore 1 GiB <= 500 ms", ms(g["restore"]) if g else "-",
         g["restore"] <= 0.500 if g else None)
    worst = max(res, key=lambda k: res[k]["restore"] / res[k]["wr"]) if res else None
    r = res[worst]["restore"] / res[worst]["wr"] if res else None
    line("restore <= 1.5x FUSE wr (worst size)", f"{r:.2f}x at {worst} MiB" if res else "-",
         r <= 1.5 if res else None)
    r16 = small.get(16)
    line("restore 16 MiB <= 10 ms (small line)", ms(r16[1]) if r16 else "-",
         r16[1] <= 0.010 if r16 else None)
    if f4 and g:
        print(f"  restore 4 GiB: {ms(f4['restore'])} ({f4['restore'] / g['restore']:.2f}x 1 GiB,"
              f" {f4['restore'] / f4['wr']:.2f}x FUSE wr)", flush=True)
    print("  restore 30,000 VMAs <= 250 ms: bench/mount_vma_bench.py 30000", flush=True)


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
    ap.add_argument("--targets", action="store_true")
    ap.add_argument("sizes", nargs="*", type=int, default=None)
    a = ap.parse_args()
    if not a.sizes:
        a.sizes = [16, 256, 1024, 4096] if a.targets else [16, 256, 1024]
    if a.targets and not a.small_only:
        a.small = a.small if 16 in a.small else a.small + [16]
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
    res, small = {}, {}  # per size: what the targets are read from
    try:
        if a.restore_ab:
            a.daemon_pid = daemon.pid
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
                # Each dump after one run of the holder (let_run), as below.
                t_null = best_of(a.rounds, lambda: subprocess.run(["cp", image, "/dev/null"],
                                                                  check=True),
                                 before=lambda: let_run(holder.pid))
                c_null = cpu_of(daemon.pid, a.rounds, lambda: subprocess.run(
                    ["cp", image, "/dev/null"], check=True))
                # A new file each time, as `cp /crfs/PID/image snap.img` makes one (and
                # CRIU a new directory): cp over the last round's image would also
                # time the file system freeing its blocks (discard, here).
                # The holder runs before each (let_run): the frozen time read
                # from the last one's stats is not the last snapshot's after-cost.
                t_file = best_of(a.rounds, lambda: subprocess.run(["cp", image, out], check=True),
                                 before=lambda: (unlink_if_there(out), let_run(holder.pid)))
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
                # The file dump's yardstick: the same FUSE read into a new file.
                rd_file = os.path.join(tmp, "rd-file")
                t_rdf = best_of(a.rounds, lambda: subprocess.run(["cp", lim + "/data", rd_file],
                                                                 check=True),
                                before=lambda: unlink_if_there(rd_file))
                unlink_if_there(rd_file)
                t_wr = best_of(a.rounds, lambda: subprocess.run(
                    ["dd", "if=" + out, "of=" + lim + "/data", "bs=1M", "status=none",
                     "conv=notrunc"], check=True))
            finally:
                unmount(limd, lim)
            os.unlink(out)
            mc = memcpy_seconds(img, cap=1 << 30)
            res[size] = dict(null=t_null, file=t_file, frozen=stats["frozen_ns"] / 1e9,
                             restore=t_restore, rd=t_rd, wr=t_wr, rdf=t_rdf)
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
            small[size] = small_line(size, tmp, mnt, restored, a.rounds)
        if a.targets:
            print_targets(res, small)
    finally:
        kill_left(restored)
        unmount(daemon, mnt)
        log.close()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
