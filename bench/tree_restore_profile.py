#!/usr/bin/env python3
"""Where a tree's restore spends its time per process, through the mount
(session 15, s15-clonecost):

    bench/tree_restore_profile.py [--build DIR] [--env VAR=VAL ...] [--rounds N]
        [--perf FILE | --strace FILE | --maps] [PxM]   (default 64x1)

Mounts DIR/fs/crfsd (with CRFS_RESTORE_TRACE=1 and the --env variables) on a
temporary directory, and for each round makes a fresh tree
(bench/tree_holder), checkpoints it with cp, kills it and restores it with
cp, the restore wrapped in one of:
  --perf FILE    perf record -g -p <crfsd> at 20 kHz (crfsd and every member:
                 each is crfsd's clone; read it with perf report --sort)
  --strace FILE  strace -f -c -p <crfsd> (every member is crfsd's clone)
  --maps         after the restore, crfsd's own mappings: what each member
                 is cloned from (largest anonymous ones first)
Prints each restore's time, the load average and the phases of the members'
traces (median, microseconds); with --env CRFS_TREE_CLONE_SMAPS=1 what the
root's clone copies of crfsd (session 16, state/tree_restore.cc) and
malloc's arenas then (session 17: each one's heap, top, bins, fastbins, kB).
"""
import argparse
import collections
import ctypes
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mount_checkpoint_bench import mount, unmount  # noqa: E402
from mount_tree_bench import Tree, clean_round  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fs"))
from trees_mount_test import tree_of  # noqa: E402


def daemon_maps(pid):
    """(kB anonymous, kB rss, line) of each of crfsd's mappings, largest first."""
    out, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                cur = [0, 0, line.strip()]
                out.append(cur)
            elif line.startswith("Anonymous:"):
                cur[0] = int(line.split()[1])
            elif line.startswith("Rss:"):
                cur[1] = int(line.split()[1])
    return sorted(out, reverse=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--perf")
    ap.add_argument("--strace")
    ap.add_argument("--maps", action="store_true")
    ap.add_argument("tree", nargs="?", default="64x1")
    a = ap.parse_args()
    ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    procs, mib = (int(x) for x in a.tree.split("x"))
    holder = os.path.join(a.build, "bench", "tree_holder")
    tmp = tempfile.mkdtemp(prefix="crfs-tree-profile-")
    os.chmod(tmp, 0o755)
    env = dict(os.environ, CRFS_RESTORE_TRACE="1")
    for kv in a.env:
        k, v = kv.split("=", 1)
        env[k] = v
    logname = os.path.join(tmp, "crfsd.log")
    log = open(logname, "w")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    proc = None
    try:
        os.environ.update(env)  # mount() starts crfsd with ours
        proc = mount([os.path.join(a.build, "fs", "crfsd"), "-f", "-o",
                      f"state_dir={tmp}/state", mnt], mnt, log)
        img = os.path.join(tmp, "tree.img")
        for r in range(a.rounds):
            tree = Tree(holder, procs, mib, tmp)
            root = tree.pids[0]
            restored = []
            try:
                subprocess.run(["cp", f"{mnt}/{root}/image", img], check=True)
                tree.kill()
                os.mkdir(f"{mnt}/{root}")
                wrap = []
                if a.perf:
                    wrap = ["perf", "record", "-q", "-F", "20000", "-g", "-p", str(proc.pid),
                            "-o", a.perf, "--"]
                elif a.strace:
                    wrap = ["strace", "-f", "-c", "-o", a.strace, "-p", str(proc.pid), "--"]
                    # strace -p ... -- cmd: traces both; the cp's share is small
                t = time.perf_counter()
                subprocess.run(wrap + ["cp", img, f"{mnt}/{root}/image"], check=True)
                took = time.perf_counter() - t
                restored = tree_of(root)
                print(f"round {r}: restore {took * 1e3:.1f} ms, {len(restored)} processes, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
                if a.maps:
                    for anon, rss, line in daemon_maps(proc.pid)[:40]:
                        print(f"  anon {anon:6d} kB rss {rss:6d} kB  {line}")
            finally:
                clean_round(mnt, tree, restored)
    finally:
        if proc:
            unmount(proc, mnt)
        log.close()
        phases = collections.defaultdict(list)
        with open(logname) as f:
            for line in f:
                for what in ("tree clone copies", "tree clone malloc arenas"):
                    if what in line:  # CRFS_TREE_CLONE_SMAPS=1 (--env)
                        print("  " + line[line.index(what):].strip()[:400])
                m = re.search(r"restore \d+ \(us\):(.*)", line)
                if m:
                    w = m.group(1).split()
                    for name, us in zip(w[::2], w[1::2]):
                        phases[name].append(int(us))
        for name, v in phases.items():
            print(f"  {name:14s} n {len(v):3d} median {statistics.median(v):8.0f} us "
                  f"mean {statistics.mean(v):8.0f} us")
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
