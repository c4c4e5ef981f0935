#!/usr/bin/env python3
"""Open file descriptions shared with a process outside the image
(state/shared_desc.h), through the mounted tree: `(prog; true) >log` leaves
the subshell holding prog's stdout, so prog is refused with a reason naming
the subshell, and `cp` of its image fails with EBUSY; `exec prog >log`
shares nothing and round-trips.

usage: shared_desc_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import roundtrip_mount_test
from roundtrip_mount_test import Base, read, sh, wait_for


def children(pid):
    try:
        return [int(p) for p in read(f"/proc/{pid}/task/{pid}/children").split()]
    except OSError:
        return []


def comm(pid):
    try:
        return read(f"/proc/{pid}/comm").strip()
    except OSError:
        return None


class SharedOutside(Base):
    def start(self, script):
        """`sh -c script` in a directory and session of its own; its sleep's pid."""
        d = tempfile.mkdtemp(prefix="crfs-shared-")
        self.addCleanup(shutil.rmtree, d, True)
        p = subprocess.Popen(["sh", "-c", script], cwd=d, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)

        def stop():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self.addCleanup(stop)

        def sleeper():
            """The sleep among p's descendants, once its stdout is the log."""
            todo = [p.pid]
            while todo:
                pid = todo.pop()
                try:
                    if comm(pid) == "sleep" and os.readlink(f"/proc/{pid}/fd/1").endswith("/log"):
                        return pid
                except OSError:  # exec or exit meanwhile
                    pass
                todo += children(pid)
            return None
        wait_for(lambda: sleeper() is not None, "the sleep with its log")
        return sleeper(), d

    def test_subshell_holding_the_log_is_refused_naming_it(self):
        pid, d = self.start("(sleep 1000; true) >log 2>/dev/null")
        parent = int(read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[1])
        self.assertEqual(os.readlink(f"/proc/{parent}/fd/1"), os.path.join(d, "log"))
        reason = read(f"{self.m}/{pid}/reason")
        self.assertIn(f"fd 1: the same open file description is held by pid {parent} (sh) fd 1, "
                      "outside the image; its offset would no longer be shared\n", reason)
        r = sh(f"cp {self.m}/{pid}/image {d}/snap.img")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Device or resource busy", r.stderr)

    def test_exec_into_the_log_shares_nothing_and_checkpoints(self):
        pid, d = self.start("exec sleep 1000 >log 2>/dev/null")
        self.assertEqual(read(f"{self.m}/{pid}/reason"), "")
        r = sh(f"cp {self.m}/{pid}/image {d}/snap.img")
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
