#!/usr/bin/env python3
"""A tree's copy under its stream (docs/trees.md, image version 17): the
image of a tree whose members are all copied while frozen starts going out
as soon as every member is captured; each member's pages are copied while
the sections before it go out, and the tree is thawed after the last copy.
So each member's stats (its frozen time) are known only after the sections:
they come after the last one, in member-stats records.

A python3 root with KIDS children, each holding 1 MiB of random bytes and
their hash (crfsd with CRFS_TREE_LIVE_MIN_KIB=1048576: none is snapshotted
live, as members under 4 MiB are not); on SIGUSR1 each appends "PID OK" to `out`, OK saying whether its
bytes still hash to what they did.

- crfsd with CRFS_TEST_COPY_HOLD=FILE: the worker stops before copying the
  last member. While it waits, `cp` has already written bytes of the image,
  and every member is still traced (the tree is frozen together). Once FILE
  is made the image completes; its layout is as described, every process has
  stats, and the tree restores with every byte.
- crfsd with CRFS_TEST_COPY_FAIL=FILE and CRFS_TREE_COPY_THREADS=3 (three
  threads copy the members): while FILE holds N, the copy of member N fails,
  after the image's first bytes went out. The `cp` fails, and when it
  returns every member is untraced and then runs its handler; with FILE
  emptied the same tree checkpoints.
- A reader that takes the image's first 64 KiB and goes away: every member
  is released and runs its handler, and the next checkpoint works.
- The tree's arena is warmed before the freeze for what its members held
  (PageArena::warm): the trace says how much, about their RssAnon + RssShmem
  + VmSwap, and the tree restores with every byte; with CRFS_TREE_ARENA_COLD=1 it is not
  warmed, and restores the same.

usage: tree_copy_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import Crfsd, read, sh, wait_for  # noqa: E402
from trees_mount_test import TreeBase, processes, tree_of  # noqa: E402

KIDS = 6
TREE = r"""
import hashlib, os, signal, sys
out = sys.argv[1]
for i in range(%d):
    if os.fork() == 0:
        break
data = bytearray(os.urandom(1 << 20))
digest = hashlib.sha256(data).hexdigest()
def note(sig, frame):
    with open(out, "a") as f:
        f.write(f"{os.getpid()} {hashlib.sha256(data).hexdigest() == digest}\n")
signal.signal(signal.SIGUSR1, note)
while True:
    signal.pause()
""" % KIDS

# The root's SHARED_MIB, written before the forks: every member maps the
# same pages, copy-on-write, and none writes them.
SHARED_MIB = 8
SHARED_TREE = r"""
import hashlib, os, signal, sys
out = sys.argv[1]
data = bytearray(os.urandom(%d << 20))
digest = hashlib.sha256(data).hexdigest()
for i in range(%d):
    if os.fork() == 0:
        break
def note(sig, frame):
    with open(out, "a") as f:
        f.write(f"{os.getpid()} {hashlib.sha256(data).hexdigest() == digest}\n")
signal.signal(signal.SIGUSR1, note)
open(out + ".%%d" %% os.getpid(), "w").close()
while True:
    signal.pause()
""" % (SHARED_MIB, KIDS)

MEMBER_PAGES, STATS, MEMBER_STATS, TRAILER = 65, 16, 66, 0xFFFFFFFF


def private_dirty_kib(pid):
    for line in read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    raise AssertionError(f"no Private_Dirty for {pid}")


def records(path):
    """[(type, payload)] of an image, the trailer left out."""
    with open(path, "rb") as f:
        b = f.read()
    header_size = struct.unpack_from("<I", b, 12)[0]
    at, out = header_size, []
    while True:
        rtype, _, length = struct.unpack_from("<IIQ", b, at)
        if rtype == TRAILER:
            return out
        out.append((rtype, b[at + 16:at + 16 + length]))
        at += 16 + length


def tracer(pid):
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no TracerPid for {pid}")


class MemberHandlers:
    """For a TreeBase whose members answer SIGUSR1 in `out` (TREE, SHARED_TREE)."""

    def handlers_run(self, pids, out, what):
        """SIGUSR1 to each: each answers that its bytes are whole."""
        if os.path.exists(out):
            os.unlink(out)
        for p in pids:
            os.kill(p, signal.SIGUSR1)
        wait_for(lambda: os.path.exists(out) and len(read(out).split("\n")) > len(pids),
                 f"every member's handler ({what})")
        self.assertEqual(sorted(read(out).split("\n")[:-1]), sorted(f"{p} True" for p in pids),
                         what)

    def checkpoint_shared_tree(self):
        """SHARED_TREE checkpointed: no member's Private_Dirty grew by a copy
        of what it shares. (proc, pids, out, image)."""
        out = os.path.join(self.dir, "out")
        proc = self.start(None, KIDS + 1, argv=["python3", "-c", SHARED_TREE, out])
        pids = tree_of(proc.pid)
        wait_for(lambda: all(os.path.exists(f"{out}.{p}") for p in pids), "every member ready")
        before = {p: private_dirty_kib(p) for p in pids}
        img = self.checkpoint(proc.pid)
        grew = {p: private_dirty_kib(p) - before[p] for p in pids}
        # Each child's copy of the shared bytes would be SHARED_MIB more; the
        # checkpoint itself (the parasite's two pages) writes almost nothing.
        self.assertTrue(all(g < SHARED_MIB * 1024 // 4 for g in grew.values()), grew)
        return proc, pids, out, img

    def restored_whole(self, proc, pids, out, img):
        """The tree killed and restored from img: the same pids, and every
        member's bytes as they were."""
        self.kill_all(proc, pids)
        r = self.restore(img, str(proc.pid))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.pids += pids
        self.assertEqual(tree_of(proc.pid), pids)
        self.handlers_run(pids, out, "restored")


class CopyUnderStream(MemberHandlers, TreeBase):
    def setUp(self):
        self.ctl = tempfile.mkdtemp(prefix="crfs-copy-")
        self.hold = os.path.join(self.ctl, "hold")
        self.fault = os.path.join(self.ctl, "fault")
        open(self.fault, "w").close()
        # Every member copied while frozen (a python3 process holds more than
        # the 4 MiB that would snapshot it live).
        env = dict(os.environ, CRFS_TEST_COPY_FAIL=self.fault, CRFS_TREE_LIVE_MIN_KIB="1048576")
        if "arena" in self._testMethodName:
            env["CRFS_CHECKPOINT_TRACE"] = "1"
        if "cold" in self._testMethodName:
            env["CRFS_TREE_ARENA_COLD"] = "1"
        if "hold" in self._testMethodName:
            env["CRFS_TEST_COPY_HOLD"] = self.hold
        else:  # the members copied by three threads at once, in image order
            env["CRFS_TREE_COPY_THREADS"] = "3"
        # TreeBase's setUp with a daemon that holds or fails copies on demand.
        self.crfs = Crfsd(env=env)
        self.m = self.crfs.mnt
        self.tasks, self.pids, self.procs = [], [], []
        self.dir = tempfile.mkdtemp(prefix="crfs-tree-")
        os.chmod(self.dir, 0o755)
        self.cp = None

    def tearDown(self):
        try:
            if self.cp and self.cp.poll() is None:
                open(self.hold, "w").close()  # let the worker go on
                self.cp.wait(60)
            super().tearDown()
        finally:
            for f in os.listdir(self.ctl):
                os.unlink(os.path.join(self.ctl, f))
            os.rmdir(self.ctl)

    def start_tree(self):
        out = os.path.join(self.dir, "out")
        proc = self.start(None, KIDS + 1, argv=["python3", "-c", TREE, out])
        return proc, tree_of(proc.pid), out

    def test_hold_bytes_go_out_while_the_tree_is_frozen_and_stats_come_last(self):
        proc, pids, out = self.start_tree()
        img = os.path.join(self.dir, "tree.img")
        self.cp = subprocess.Popen(["cp", f"{self.m}/{proc.pid}/image", img],
                                   stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.exists(self.hold + ".held"), "the copy of the last member")
        wait_for(lambda: os.path.exists(img) and os.path.getsize(img) > 0,
                 "the image's first bytes in the file")
        self.assertTrue(all(tracer(p) != 0 for p in pids), "every member held by the worker")
        open(self.hold, "w").close()
        self.assertEqual(self.cp.wait(60), 0, self.cp.stderr.read())
        self.assertTrue(all(tracer(p) == 0 for p in pids), "every member released")

        recs = records(img)
        types = [t for t, _ in recs]
        self.assertNotIn(STATS, types)
        sections = [struct.unpack_from("<I", p)[0] for t, p in recs if t == MEMBER_PAGES]
        self.assertEqual(sections, list(range(KIDS + 1)))
        tail = recs[-(KIDS + 1):]
        self.assertEqual([t for t, _ in tail], [MEMBER_STATS] * (KIDS + 1))
        self.assertEqual([struct.unpack_from("<I", p)[0] for _, p in tail], list(range(KIDS + 1)))
        procs = processes(self.crfs_build(), img)
        self.assertEqual([p["pid"] for p in procs], pids)
        for p in procs:
            st = p["stats"]
            self.assertGreater(st["frozen_ns"], 0, p)
            self.assertGreaterEqual(st["total_ns"], st["frozen_ns"], p)
            self.assertGreaterEqual(st["pages_copied"], 256, p)  # its 1 MiB at least

        self.restored_whole(proc, pids, out, img)

    def warmed_and_restored(self):
        """Checkpoints and restores the tree, every byte checked; the KiB the
        trace says its arena was warmed with (None: not warmed), and the KiB
        its members held just before."""
        proc, pids, out = self.start_tree()
        held = 0
        for p in pids:
            for line in read(f"/proc/{p}/status").splitlines():
                if line.split(":")[0] in ("RssAnon", "RssShmem", "VmSwap"):
                    held += int(line.split()[1])
        img = self.checkpoint(proc.pid)
        self.crfs.log.flush()
        warmed = re.findall(r"arena warmed ahead: (\d+) KiB", read(self.crfs.log.name))
        self.assertLessEqual(len(warmed), 1)
        self.restored_whole(proc, pids, out, img)
        return (int(warmed[0]) if warmed else None), held

    def test_the_arena_warmed_ahead_keeps_every_members_bytes(self):
        warmed, held = self.warmed_and_restored()
        self.assertIsNotNone(warmed, "the arena was not warmed ahead")
        self.assertGreaterEqual(warmed, (KIDS + 1) * 1024)  # their random MiB at least
        # What they held when listed ahead of the freeze: python's own
        # allocations may have moved a little since.
        self.assertLess(abs(warmed - held), held // 4, (warmed, held))

    def test_a_cold_arena_keeps_every_members_bytes_too(self):
        warmed, _ = self.warmed_and_restored()
        self.assertIsNone(warmed, "CRFS_TREE_ARENA_COLD=1: warmed all the same")

    def test_pages_shared_copy_on_write_stay_shared_through_a_checkpoint(self):
        """A forked tree's shared pages are read, not copied into each member:
        process_vm_readv pins pages, and the kernel gives a process its own
        copy of a shared copy-on-write page before it is pinned."""
        proc, pids, out, img = self.checkpoint_shared_tree()
        self.handlers_run(pids, out, "after the checkpoint")
        self.restored_whole(proc, pids, out, img)

    def test_a_failed_copy_fails_the_read_and_leaves_the_tree_running(self):
        proc, pids, out = self.start_tree()
        for n in (3, 0, KIDS):  # a child, the root, the last
            with open(self.fault, "w") as f:
                f.write(str(n))
            r = sh(f"cp {self.m}/{proc.pid}/image {self.dir}/fail.img")
            self.assertNotEqual(r.returncode, 0, f"member {n}")
            self.assertIn("CRFS_TEST_COPY_FAIL", read(self.crfs.log.name), f"member {n}")
            # Released before cp returned.
            self.assertTrue(all(tracer(p) == 0 for p in pids), f"member {n}")
            self.handlers_run(pids, out, f"after member {n}'s copy failed")
        open(self.fault, "w").close()
        img = self.checkpoint(proc.pid)
        self.assertEqual([p["pid"] for p in processes(self.crfs_build(), img)], pids)

    def test_a_reader_that_goes_away_leaves_the_tree_running(self):
        proc, pids, out = self.start_tree()
        for n in range(3):
            # head takes the image's first 64 KiB (the records) and goes.
            r = sh(f"head -c 65536 {self.m}/{proc.pid}/image | wc -c")
            self.assertEqual(r.stdout.strip(), "65536", r.stderr)
            wait_for(lambda: all(tracer(p) == 0 for p in pids), f"every member released ({n})")
            self.handlers_run(pids, out, f"after reader {n} went away")
        img = self.checkpoint(proc.pid)
        self.assertEqual([p["pid"] for p in processes(self.crfs_build(), img)], pids)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main()
