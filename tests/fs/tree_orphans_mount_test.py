#!/usr/bin/env python3
"""An orphan that comes to crfsd while it is a child subreaper is reaped
(issue 10, docs/trees.md "A failed restore"; common/own_children.h).

crfsd is a subreaper only while it kills a failed tree restore. Meanwhile a
process of another restored tree whose parent ends is re-parented to crfsd,
not to init. Tree A (a bash with two sleeps) is restored and runs; tree B's
restore fails in its middle process, and CRFS_TEST_HOLD_SUBREAPER holds crfsd
in that window. A's bash is killed: both sleeps are crfsd's children then.
One ends inside the window (a zombie when the window closes), the other after
it (still crfsd's child until then). Both are reaped: their pids are free
(before: zombies holding their pids until crfsd ended). Outside the window an
orphan goes to the subreaper above crfsd (this test), not to crfsd, also when
crfsd was started a subreaper (it gives that up at start). Starts its own
crfsd (always unmounted).

usage: tree_orphans_mount_test.py BUILD_DIR  (any unittest args after)
"""
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import Crfsd, pid_free, read, sh, wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import stat, tree_of  # noqa: E402


class OrphansOfAFailedTreesWindow(trees_mount_test.TreeBase):
    def setUp(self):
        self.holddir = tempfile.mkdtemp(prefix="crfs-s19or-")
        self.hold = os.path.join(self.holddir, "hold")
        env = dict(os.environ, CRFS_TEST_HOLD_SUBREAPER=self.hold)
        with mock.patch.object(roundtrip_mount_test, "Crfsd", functools.partial(Crfsd, env=env)):
            super().setUp()

    def tearDown(self):
        if os.path.exists(self.hold):
            os.unlink(self.hold)  # the held close goes on (crfsd stops then)
        try:
            super().tearDown()
        finally:
            shutil.rmtree(self.holddir, ignore_errors=True)

    def image(self, script, size, name):
        """Starts, checkpoints (into `name`) and kills a tree; its pids."""
        proc = self.start(script, size)
        pids = tree_of(proc.pid)
        img = os.path.join(self.dir, name)
        os.rename(self.checkpoint(proc.pid), img)
        self.kill_all(proc, pids)
        return img, pids

    def test_orphans_of_a_restored_tree_in_the_window_are_reaped(self):
        a_img, a = self.image("sleep 1000 </dev/null >/dev/null 2>&1 & "
                              "sleep 1000 </dev/null >/dev/null 2>&1 & wait", 3, "a.img")
        b_img, b = self.image("set -m; (exec </dev/null >/dev/null 2>&1; "
                              "sleep 1000 </dev/null >/dev/null 2>&1 & wait $!) & wait $!", 3,
                              "b.img")
        bad = os.path.join(self.dir, "bad.img")
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        r = subprocess.run([edit, b_img, bad, "fs#1.path=/nonexistent-s19or"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.restore(a_img, str(a[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{a[0]}/status"))
        bash, early, late = a
        self.assertEqual(tree_of(bash), a)
        crfsd = self.crfs.proc.pid

        open(self.hold, "w").close()
        cp = subprocess.Popen(["sh", "-c", f"mkdir {self.m}/{b[0]} && cp {bad} "
                               f"{self.m}/{b[0]}/image"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: os.path.exists(self.hold + ".held"), "crfsd to hold the window")
            os.kill(bash, signal.SIGKILL)
            wait_for(lambda: all(stat(p)[1] == crfsd for p in (early, late)),
                     "the sleeps to be crfsd's children")
            os.kill(early, signal.SIGKILL)
            wait_for(lambda: stat(early)[0] == "Z", "the early sleep to be a zombie")
        finally:
            os.unlink(self.hold)
            cp.wait(60)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn(f"process {b[1]}: restore: chdir to /nonexistent-s19or",
                      read(f"{self.m}/{b[0]}/status"))
        self.assertEqual(sh(f"rmdir {self.m}/{b[0]}").returncode, 0)
        self.assertFalse(os.path.exists(self.hold + ".held"))
        # Ended in the window: reaped when it closed.
        wait_for(lambda: pid_free(early), f"crfsd to reap the orphan {early}")
        # Alive after it: crfsd's child until it ends, then reaped.
        self.assertEqual(stat(late)[:2], ("S", crfsd))
        os.kill(late, signal.SIGKILL)
        wait_for(lambda: pid_free(late), f"crfsd to reap the orphan {late}")
        self.assertEqual([p for p in a + b if not pid_free(p)], [])
        # Outside the window crfsd is no subreaper: the intact B restores, and
        # the child of its killed middle process goes to this test (the
        # subreaper above crfsd), as it would have on the original machine.
        r = self.restore(b_img, str(b[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{b[0]}/status"))
        self.assertEqual(tree_of(b[0]), b)
        os.kill(b[1], signal.SIGKILL)
        wait_for(lambda: pid_free(b[1]), "crfsd's restored middle process to be reaped")
        self.assertEqual(stat(b[2])[1], os.getpid())


class CrfsdStartedASubreaper(trees_mount_test.TreeBase):
    """crfsd started as a child subreaper (by a wrapper that set it and exec'd
    crfsd: execve keeps it) gives it up: it reaps only its own children, so an
    orphan of a restored tree that came to it would stay a zombie, holding its
    pid until crfsd ended (before: it stayed one)."""

    def setUp(self):
        with mock.patch.object(roundtrip_mount_test, "Crfsd",
                               functools.partial(Crfsd, subreaper=True)):
            super().setUp()

    def test_an_orphan_of_a_restored_tree_goes_to_the_subreaper_above(self):
        proc = self.start("set -m; (exec </dev/null >/dev/null 2>&1; "
                          "sleep 1000 </dev/null >/dev/null 2>&1 & wait $!) & wait $!", 3)
        pids = tree_of(proc.pid)
        img = self.checkpoint(proc.pid)
        self.kill_all(proc, pids)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(tree_of(pids[0]), pids)
        os.kill(pids[1], signal.SIGKILL)
        wait_for(lambda: pid_free(pids[1]), "the restored middle process to be reaped")
        wait_for(lambda: stat(pids[2])[1] != pids[1], "the orphan to be re-parented")
        self.assertEqual(stat(pids[2])[1], os.getpid(), "not this test's (the subreaper above)")


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
