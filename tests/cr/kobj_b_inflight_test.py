#!/usr/bin/env python3
"""A real program with bytes always in flight in a self-pipe, a stream and a
datagram socketpair (tests/workloads/kobj_b_inflight.c), through the mounted
tree: `cp /crfs/PID/image` mid-stream (the program goes on and must still
finish with PASS: the checkpoint took nothing from its pipe or sockets), then
the snapshot restored into a fresh slot twice, each run finishing with PASS
(every record after the snapshot exactly once, in order).

usage: kobj_b_inflight_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fs"))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, sh, wait_for, read)

BUILD = None
ROUNDS = 1500
LAG_BYTES = 64 * 16  # records in flight in each channel, 16 bytes each


class InFlight(unittest.TestCase):
    def setUp(self):
        self.crfs = rt.Crfsd()
        self.d = tempfile.mkdtemp(prefix="crfskb-inflight-")

    def tearDown(self):
        self.crfs.kill_children()
        self.crfs.stop()
        shutil.rmtree(self.d, ignore_errors=True)

    def result(self):
        path = f"{self.d}/result"
        rt.wait_for(lambda: os.path.exists(path), "the program's result")
        text = rt.read(path).strip()
        os.unlink(path)
        return text

    def test_snapshot_mid_stream_then_restore_twice(self):
        m, d = self.crfs.mnt, self.d
        prog = subprocess.Popen([os.path.join(BUILD, "tests/cr/kobj_b_inflight"), d, str(ROUNDS)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True, cwd=d)
        try:
            rt.wait_for(lambda: os.path.exists(f"{d}/ready"), "the program to be ready")
            self.assertEqual(rt.read(f"{m}/{prog.pid}/reason"), "")
            r = rt.sh(f"cp {m}/{prog.pid}/image {d}/snap.img")
            self.assertEqual(r.returncode, 0, r.stderr + rt.read(f"{m}/{prog.pid}/reason"))
            self.assertEqual(prog.wait(rt.TIMEOUT), 0)
        finally:
            if prog.poll() is None:
                prog.kill()
                prog.wait(rt.TIMEOUT)
        self.assertEqual(self.result(), f"PASS {ROUNDS}", "the program after the snapshot")

        show = json.loads(subprocess.run([os.path.join(BUILD, "tools/crfs"), "show", "--json",
                                          f"{d}/snap.img"], capture_output=True, text=True,
                                         check=True).stdout)
        self.assertEqual(len(show["pipes"]), 1)
        self.assertGreaterEqual(show["pipes"][0]["data_bytes"], LAG_BYTES)
        queued = sorted(u["data_bytes"] for u in show["unix_sockets"])
        self.assertEqual(len(queued), 4)
        self.assertGreaterEqual(queued[-1] + queued[-2], 2 * LAG_BYTES)  # one reader end each

        for run in ("one", "two"):
            r = rt.sh(f"mkdir {m}/{run} && cp {d}/snap.img {m}/{run}/image")
            self.assertEqual(r.returncode, 0, r.stderr + rt.read(f"{m}/{run}/status"))
            self.assertTrue(rt.read(f"{m}/{run}/status").startswith("restored "))
            self.assertEqual(self.result(), f"PASS {ROUNDS}", f"restore {run}")


if __name__ == "__main__":
    BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
