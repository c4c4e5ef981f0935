#!/usr/bin/env python3
"""The FUSE write limit two ways, interleaved (issue 13, docs/performance.md
"Streaming restore: measured, not built"):

    bench/fuse_wr_uffd_bench.py BUILD_DIR [MiB ...]   (default 16 256 1024)

For each size, a file of that many MiB is written with `cp` into two
build/bench/fuse_limit mounts, five rounds after a warm-up, alternating:
"memcpy" (each FUSE write copied into fresh memory of fuse_limit: the bench's
FUSE wr) and "uffd" (FUSE_LIMIT_UFFD=1: each FUSE write copied with
UFFDIO_COPY into fresh memory of a child, as a restore writing pages straight
into the new task would). Medians and minimums, with the load average."""
import os, subprocess, sys, tempfile, time, statistics
B = sys.argv[1]
sizes = [int(x) for x in sys.argv[2:]] or [16, 256, 1024]
d = tempfile.mkdtemp(prefix="crfs-fuse-wr-")
procs = []
def mount(mnt, size, uffd):
    os.mkdir(mnt)
    env = dict(os.environ)
    if uffd: env["FUSE_LIMIT_UFFD"] = "1"
    p = subprocess.Popen([f"{B}/bench/fuse_limit", mnt, str(size)], env=env,
                         stdin=subprocess.DEVNULL)
    procs.append((p, mnt))
    end = time.monotonic() + 60
    while not os.path.ismount(mnt):
        if time.monotonic() > end or p.poll() is not None: raise SystemExit("no mount")
        time.sleep(0.01)
def unmount_all():
    for p, mnt in procs:
        subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
        try: p.wait(10)
        except subprocess.TimeoutExpired: p.kill(); p.wait()
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        os.rmdir(mnt)
    procs.clear()
try:
    print("load average %.2f %.2f %.2f" % os.getloadavg())
    for mib in sizes:
        f = f"{d}/f{mib}"
        with open(f, "wb") as fh:
            chunk = bytes(range(256)) * 4096
            for _ in range(mib): fh.write(chunk)
        size = os.path.getsize(f)
        mount(f"{d}/a{mib}", size, False); mount(f"{d}/b{mib}", size, True)
        t = {"memcpy": [], "uffd": []}
        for r in range(6):
            for k, m in (("memcpy", f"{d}/a{mib}"), ("uffd", f"{d}/b{mib}")):
                s = time.perf_counter()
                subprocess.run(["cp", f, m + "/data"], check=True)
                if r: t[k].append((time.perf_counter() - s) * 1e3)  # round 0: warm-up
        unmount_all()
        os.unlink(f)
        print(f"{mib:5} MiB  FUSE wr memcpy {statistics.median(t['memcpy']):8.1f} ms (min {min(t['memcpy']):.1f})"
              f"  FUSE wr uffd {statistics.median(t['uffd']):8.1f} ms (min {min(t['uffd']):.1f})"
              f"  memcpy/uffd {statistics.median(t['memcpy'])/statistics.median(t['uffd']):.2f}x")
    print("load average after %.2f %.2f %.2f" % os.getloadavg())
finally:
    unmount_all()
    subprocess.run(["rm", "-rf", d])
