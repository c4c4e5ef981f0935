#!/usr/bin/env python3
"""A tree's members are captured together, each by one of a few tracer
threads (docs/performance.md, "Trees: members captured together"); a member
whose capture fails fails the checkpoint and leaves every member as it was.

A python3 root with 12 children (every third with a second thread) that
each append their pid to `out` on SIGUSR1. crfsd runs with
CRFS_TEST_CAPTURE_FAIL=FILE: while FILE holds N, the capture of member N
fails right after its parasite ran, while other members' captures are under
way on other threads. Each `cp /crfs/ROOT/image` then fails, and at once
after it every process of the tree is untraced (TracerPid 0), not stopped,
with the signal mask it had, and runs its handler on SIGUSR1. With FILE
emptied the same tree checkpoints: its processes in the image are the tree's,
parents first, as the serial capture (CRFS_TREE_CAPTURE_SERIAL=1) writes them.

usage: tree_capture_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import Crfsd, read, sh, wait_for  # noqa: E402
from trees_mount_test import TreeBase, processes, tree_of  # noqa: E402

KIDS = 12
TREE = r"""
import os, signal, sys, threading
out = sys.argv[1]
def note(sig, frame):
    with open(out, "a") as f:
        f.write(f"{os.getpid()}\n")
signal.signal(signal.SIGUSR1, note)
for i in range(%d):
    if os.fork() == 0:
        if i %% 3 == 0:
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        break
while True:
    signal.pause()
""" % KIDS


def status(pid):
    """{field: value} of /proc/PID/status."""
    return dict(line.split(":\t", 1) for line in read(f"/proc/{pid}/status").splitlines()
                if ":\t" in line)


def threads_of(pid):
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


class MembersTogether(TreeBase):
    def setUp(self):
        self.faultdir = tempfile.mkdtemp(prefix="crfs-fault-")
        self.fault = os.path.join(self.faultdir, "member")
        open(self.fault, "w").close()
        # TreeBase's setUp with a daemon that fails members on demand.
        self.crfs = Crfsd(env=dict(os.environ, CRFS_TEST_CAPTURE_FAIL=self.fault))
        self.m = self.crfs.mnt
        self.tasks, self.pids, self.procs = [], [], []
        self.dir = tempfile.mkdtemp(prefix="crfs-tree-")
        os.chmod(self.dir, 0o755)

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for f in os.listdir(self.faultdir):
                os.unlink(os.path.join(self.faultdir, f))
            os.rmdir(self.faultdir)

    def fail_member(self, n):
        with open(self.fault, "w") as f:
            f.write("" if n is None else str(n))

    def as_found(self, pids):
        """Each thread's tracer, state and blocked signals."""
        out = {}
        for p in pids:
            for t in threads_of(p):
                st = status(f"{p}/task/{t}")
                out[t] = (st["TracerPid"], st["State"][0], st["SigBlk"])
        return out

    def test_a_failing_member_leaves_every_member_running_untraced(self):
        out = os.path.join(self.dir, "out")
        proc = self.start(None, KIDS + 1, argv=["python3", "-c", TREE, out])
        pids = tree_of(proc.pid)
        # Every thread asleep, untraced: a member just made may still run its
        # start (seen in CI: one 'R' with every signal blocked).
        wait_for(lambda: all(v[0] == "0" and v[1] == "S" for v in self.as_found(pids).values()),
                 "every member to sleep")
        before = self.as_found(pids)
        for n in (7, 0, KIDS, 1):  # in the middle, the root, the last, the first child
            self.fail_member(n)
            r = sh(f"cp {self.m}/{proc.pid}/image {self.dir}/fail.img")
            self.assertNotEqual(r.returncode, 0, f"member {n}")
            self.assertIn("CRFS_TEST_CAPTURE_FAIL", read(self.crfs.log.name), f"member {n}")
            # Released before cp returned; each then goes back into its pause.
            self.assertTrue(all(v[0] == "0" for v in self.as_found(pids).values()), f"member {n}")
            wait_for(lambda: self.as_found(pids) == before, f"every member as it was ({n})")
            if os.path.exists(out):
                os.unlink(out)
            for p in pids:
                os.kill(p, signal.SIGUSR1)
            wait_for(lambda: os.path.exists(out) and
                     sorted(int(x) for x in read(out).split()) == sorted(pids),
                     f"every member's handler after member {n} failed")
        self.fail_member(None)
        img = self.checkpoint(proc.pid)
        self.assertEqual([p["pid"] for p in processes(self.crfs_build(), img)], pids)
        wait_for(lambda: self.as_found(pids) == before, "every member as it was")


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main()
