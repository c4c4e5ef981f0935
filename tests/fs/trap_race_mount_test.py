#!/usr/bin/env python3
"""A thread-directed SIGTRAP that reaches a task while crfs holds it, after
the check that sends a task with SIGTRAP pending to the single-syscall path
(checkpoint/parasite.h), is the task's after the checkpoint: delivered with
its own siginfo, not taken for the parasite's int3.

The parasite ends in int3, whose SIGTRAP the kernel forces; a SIGTRAP the
thread already has pending takes it in (a standard signal is queued once),
so the stop at the int3 carries the sender's siginfo. crfsd runs with
CRFS_TEST_TRAP_BEFORE_CODE=FILE: while FILE exists, the checkpoint's worker
tkill()s the task with SIGTRAP just before it runs injected code. The task,
a python3 that blocks SIGTRAP (so it stays pending, and the check lets the
parasite run), reads its pending SIGTRAP after the checkpoint
(sigtimedwait): the worker's, by its pid (glibc's sigtimedwait shows
SI_TKILL as SI_USER). Before the fix the checkpoint swallowed it (none
pending).

usage: trap_race_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import TIMEOUT, Crfsd, read, wait_for  # noqa: E402

SI_USER, SI_TKILL = 0, -6
TASK = r"""
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTRAP, signal.SIGUSR1])
print("ready", flush=True)
signal.sigwait([signal.SIGUSR1])
info = signal.sigtimedwait([signal.SIGTRAP], 0)
print("none" if info is None else f"{info.si_code} {info.si_pid}", flush=True)
"""


def tracer_of(pid):
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no TracerPid for {pid}")


class TrapRace(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="crfs-trap-")
        self.trigger = os.path.join(self.dir, "trap")
        self.crfs = Crfsd(env=dict(os.environ, CRFS_TEST_TRAP_BEFORE_CODE=self.trigger))
        self.procs = []

    def tearDown(self):
        try:
            for p in self.procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(TIMEOUT)
            self.crfs.stop()
        finally:
            for f in os.listdir(self.dir):
                os.unlink(os.path.join(self.dir, f))
            os.rmdir(self.dir)

    def task(self):
        """stdout on a file: a pipe to the test would be shared outside the image."""
        self.out = os.path.join(self.dir, "out")
        with open(self.out, "w") as out:
            p = subprocess.Popen(["/usr/bin/python3", "-c", TASK], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_for(lambda: read(self.out) == "ready\n" or p.poll() is not None, "the task")
        self.assertEqual(read(self.out), "ready\n")
        return p

    def report(self, p):
        """What the task finds pending after the checkpoint, once untraced."""
        wait_for(lambda: tracer_of(p.pid) == 0, "the tracer to let go")
        p.send_signal(signal.SIGUSR1)
        p.wait(TIMEOUT)
        return read(self.out).splitlines()[1]

    def checkpoint(self, pid):
        image = os.path.join(self.dir, "image")
        with open(os.path.join(self.crfs.mnt, str(pid), "image"), "rb") as src, \
                open(image, "wb") as dst:
            dst.write(src.read())
        return image

    def test_sigtrap_sent_while_held_is_delivered_after(self):
        p = self.task()
        open(self.trigger, "w").close()
        self.checkpoint(p.pid)
        os.unlink(self.trigger)
        sent = re.search(rf"SIGTRAP sent to task {p.pid} by pid (\d+)", read(self.crfs.log.name))
        self.assertTrue(sent, "the hook did not run")
        got = self.report(p)
        self.assertNotEqual(got, "none", "the task's SIGTRAP was lost")
        code, sender = (int(x) for x in got.split())
        self.assertIn(code, (SI_USER, SI_TKILL), got)
        self.assertEqual(sender, int(sent.group(1)), "not the sender's siginfo")

    def test_without_it_nothing_is_pending(self):
        # The check of the check: the same task and checkpoint, no SIGTRAP.
        p = self.task()
        self.checkpoint(p.pid)
        self.assertEqual(self.report(p), "none")


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
