#!/usr/bin/env python3
"""A task's `reason` read while another image of it is being taken: the
checkpoint worker that holds it attached and frozen (crfs-ckpt, crfsd's
child; for a tree, the root's worker holds every member) is a checkpoint in
progress, not the task's reason (docs/decisions.md "TracerPid").

CRFS_TEST_HOLD_FROZEN (checkpoint/checkpoint.cc) holds a capture, the task
attached and frozen, until the test lets it go. Before: root's `reason`
of a task so held said "task: being traced by pid <the worker>" (and a
parent's said it of its child), though the image being read then succeeded,
and the next read of `reason` was empty. Starts its own crfsd (always
unmounted).

usage: busy_reason_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test as rt  # noqa: E402

# A process with a second thread (each thread's tracer is looked at too);
# with an argument, a child like itself first.
THREADED = r"""
import os, signal, subprocess, sys, threading, time
if len(sys.argv) > 1:
    os.mkdir("child")
    subprocess.Popen([sys.executable, "-c", sys.argv[1]], cwd="child")
    while not os.path.exists("child/ready"):
        time.sleep(0.01)
threading.Thread(target=signal.pause, daemon=True).start()
open("ready", "w").close()
while True:
    signal.pause()
"""


class BusyReason(rt.Base):
    def setUp(self):
        self.holddir = tempfile.mkdtemp(prefix="crfs-busy-")
        os.chmod(self.holddir, 0o777)  # an unprivileged caller's worker makes hold.held
        self.addCleanup(shutil.rmtree, self.holddir, ignore_errors=True)
        self.hold = os.path.join(self.holddir, "hold")
        self.crfs = rt.Crfsd(env=dict(os.environ, CRFS_TEST_HOLD_FROZEN=self.hold))
        self.m = self.crfs.mnt
        self.tasks = []

    def tearDown(self):
        open(self.hold, "w").close()  # a held capture goes on (crfsd stops then)
        super().tearDown()

    def reason_while_held(self, imaged, asked, t, user=()):
        """`asked`'s reason, read by `user` while the image of `imaged`, read by
        the same user, holds `imaged` frozen; that image is read in full after."""
        img = t.path("held.img")
        with open(img, "wb") as out:
            cp = subprocess.Popen([*user, "cat", f"{self.m}/{imaged}/image"], stdout=out,
                                  stderr=subprocess.PIPE, text=True)
        try:
            rt.wait_for(lambda: os.path.exists(self.hold + ".held") or cp.poll() is not None,
                        "the checkpoint to hold the task")
            if cp.poll() is not None:
                self.fail("the image was read without a hold: " + cp.stderr.read())
            self.assertIn(rt.state_of(imaged), "tT", "the held task is not stopped")
            reason = subprocess.run([*user, "cat", f"{self.m}/{asked}/reason"],
                                    capture_output=True, text=True, timeout=rt.TIMEOUT)
        finally:
            open(self.hold, "w").close()
        self.assertEqual(cp.wait(rt.TIMEOUT), 0, cp.stderr.read())
        self.assertEqual(rt.sh(f"{rt.BUILD}/tools/crfs verify {img}").returncode, 0)
        return reason.returncode, reason.stdout, reason.stderr

    def test_roots_reason_of_a_task_its_image_holds(self):
        t = self.task(["python3", "-c", THREADED])
        self.assertEqual(self.reason_while_held(t.pid, t.pid, t), (0, "", ""))

    def test_users_reason_of_a_task_its_image_holds(self):
        # Its directory is made (0700) as the task starts: opened first.
        t = self.task(["sh", "-c", 'chmod 777 "$1" && shift && exec "$@"', "sh", "@DIR@",
                       *rt.NOBODY, "/usr/bin/python3", "-c", THREADED])
        self.assertEqual(self.reason_while_held(t.pid, t.pid, t, user=rt.NOBODY), (0, "", ""))

    def test_parents_reason_while_its_childs_image_holds_the_child(self):
        t = self.task(["python3", "-c", THREADED, THREADED])
        child = int(rt.read(f"/proc/{t.pid}/task/{t.pid}/children").split()[0])
        self.assertEqual(self.reason_while_held(child, t.pid, t), (0, "", ""))


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
