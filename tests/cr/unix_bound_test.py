#!/usr/bin/env python3
"""A unix server in one process (tests/workloads/unix_server.c: a listening
socket at a path, a connection waiting in its queue, an accepted connection
with bytes queued both ways, a datagram socket with an abstract name holding
messages from a named and an unnamed sender) through the mount: cp
/crfs/PID/image, kill -9, restore with the same pid and under a fresh name.
After each restore a new client from the test is served at the path and the
workload checks every queue itself (issue 11, state/unix_bound.cc).

usage: unix_bound_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fs"))
import roundtrip_mount_test as rt  # noqa: E402


class UnixServer(rt.Base):
    def server(self):
        return self.task([os.path.join(rt.BUILD, "tests/workloads/unix_server"), "@DIR@"])

    def serve_then_verdict(self, t):
        os.kill(t.pid, signal.SIGUSR1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(rt.TIMEOUT)  # a guard against hangs only
            s.connect(t.path("srv.sock"))
            s.sendall(b"hello")
            got = b""
            while len(got) < len(b"echo:hello"):
                chunk = s.recv(64)
                if not chunk:
                    break
                got += chunk
        self.assertEqual(got, b"echo:hello")
        rt.wait_for(lambda: os.path.exists(t.path("served")), "the server to serve the client")
        self.assertEqual(t.finish(), "PASS")

    def test_runs_without_checkpoint(self):
        self.serve_then_verdict(self.server())

    def test_same_pid(self):
        t = self.server()
        self.assertEqual(rt.read(f"{self.m}/{t.pid}/reason"), "")
        pid = t.pid
        img = t.checkpoint()
        t.kill9()
        # kill -9 leaves the socket files behind: the restore takes them back.
        self.assertTrue(os.path.exists(t.path("srv.sock")))
        t.restore(img, str(pid))
        self.assertEqual(t.pid, pid)
        self.serve_then_verdict(t)

    def test_fresh_name_after_the_name_is_free_again(self):
        t = self.server()
        img = t.checkpoint()
        # The original still listens at the path: a restore must not take it.
        r = rt.sh(f"mkdir {self.m}/busy && cp {img} {self.m}/busy/image")
        self.assertNotEqual(r.returncode, 0)
        status = rt.read(f"{self.m}/busy/status")
        self.assertIn("srv.sock: taken by another file or a live socket", status)
        self.assertIn("Address already in use", r.stderr)
        t.kill9()
        t.restore(img, "fresh")
        self.serve_then_verdict(t)

    def test_another_file_at_the_path_is_left_alone(self):
        t = self.server()
        img = t.checkpoint()
        t.kill9()
        os.unlink(t.path("srv.sock"))
        with open(t.path("srv.sock"), "w") as f:  # not the recorded socket file
            f.write("keep me\n")
        r = rt.sh(f"mkdir {self.m}/other && cp {img} {self.m}/other/image")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("srv.sock: taken", rt.read(f"{self.m}/other/status"))
        self.assertEqual(rt.read(t.path("srv.sock")), "keep me\n")


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv[1])
    import unittest
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
