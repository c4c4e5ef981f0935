#!/usr/bin/env python3
"""A memfd behind an fd, a shared and a private mapping, and shared anonymous
memory (tests/workloads/shared_mem.c, issue 11, state/memfd.cc) through the
mount: `cat /crfs/PID/image | cat >` an image, kill -9, restore into the same
pid, then under a fresh name; after each restore a write through the fd is
seen through the mappings and one through the shared mapping through the fd,
the private mapping keeps its own page, and the shared anonymous count goes on.

usage: kobj_c_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fs"))
import roundtrip_mount_test as rt  # noqa: E402


class SharedMemory(rt.Base):
    def round(self, t, n):
        os.kill(t.pid, signal.SIGUSR1)
        rt.wait_for(lambda: os.path.exists(t.path(f"usr1.{n}")), f"round {n}")
        self.assertEqual(rt.read(t.path(f"usr1.{n}")), "ok")

    def test_writes_seen_through_every_fd_and_mapping_after_restore(self):
        t = self.task([os.path.join(rt.BUILD, "tests/workloads/shared_mem"), "@DIR@"])
        self.round(t, 1)
        self.assertEqual(rt.read(f"{self.m}/{t.pid}/reason"), "")
        pid = t.pid
        img = t.path("snap.img")
        r = rt.sh(f"cat {self.m}/{pid}/image | cat > {img}")
        self.assertEqual(r.returncode, 0, r.stderr)
        shown = rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}").stdout
        self.assertIn('"memfd"', shown)
        t.kill9()
        t.restore(img, str(pid))
        self.assertEqual(t.pid, pid)
        self.assertIn("/memfd:shared-mem (deleted)", rt.read(f"/proc/{pid}/maps"))
        self.round(t, 2)
        self.assertEqual(t.finish(), "PASS")
        for name in ("result", "usr1.2"):  # the second restore writes them anew
            os.unlink(t.path(name))
        t.proc = None
        t.restore(img, "shared-mem")
        self.round(t, 2)
        self.round(t, 3)
        self.assertEqual(t.finish(), "PASS")


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv[1])
    import unittest
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
