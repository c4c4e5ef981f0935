#!/usr/bin/env python3
"""Real servers through the mounted tree (issue 12; docs/network.md, "Real
programs"): each is checkpointed with a client connected from outside the
tree, killed with SIGKILL, restored in place, and the client goes on on the
same connection.

  - `python3 -m http.server` serving a 24 MiB file to a slow client that is
    mid-download at the checkpoint: the download completes and its sha256 is
    the file's;

usage: net_programs_test.py BUILD_DIR  (any unittest args after)
"""
import hashlib
import os
import select
import socket
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fs"))
sys.path.insert(0, HERE)
import roundtrip_mount_test as rt  # noqa: E402
import net_mount_test as nm  # noqa: E402  (tcp_queues)

BUILD = None
TIMEOUT = 60  # a guard against hangs only
SIZE = 24 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer(rt.Base):
    def test_download_completes_with_the_right_bytes_after_restore(self):
        port = free_port()
        t = self.task(["/usr/bin/python3", "-c",
                       "import os,sys,runpy\n"
                       "d=sys.argv[1]\n"
                       "open(d+'/big','wb').write(os.urandom(%d))\n"
                       "open(d+'/ready','w').close()\n"
                       "sys.argv=['http.server','--bind','127.0.0.1','-d',d,sys.argv[2]]\n"
                       "runpy.run_module('http.server',run_name='__main__')\n" % SIZE,
                       "@DIR@", str(port)])
        want = hashlib.sha256(rt.read(t.path("big"), "rb")).hexdigest()
        rt.wait_for(lambda: nm.listening(port), "the server to listen")
        c = socket.socket()
        self.addCleanup(c.close)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.connect(("127.0.0.1", port))
        c.sendall(b"GET /big HTTP/1.0\r\nHost: x\r\n\r\n")
        c.settimeout(TIMEOUT)
        got = bytearray()
        while len(got) < (1 << 20):  # a first part, then the client stops reading
            chunk = c.recv(65536)
            self.assertTrue(chunk, "closed early")
            got += chunk
        rt.wait_for(lambda: nm.tcp_queues(t.pid, port)[0] > 0, "the server's send queue to fill")
        img = t.checkpoint()
        t.kill9()
        t.restore(img, str(t.pid))
        while True:
            chunk = c.recv(1 << 20)  # a reset raises here
            if not chunk:
                break
            got += chunk
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        self.assertEqual(len(body), SIZE)
        self.assertEqual(hashlib.sha256(body).hexdigest(), want)


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Redis(rt.Base):
    def command(self, c, *args):
        """One command on connection c; its reply line (bulk strings: the value)."""
        c.sendall(resp(*args))
        buf = b""
        while not buf.endswith(b"\r\n") or (buf.startswith(b"$") and buf.count(b"\r\n") < 2
                                               and not buf.startswith(b"$-1")):
            chunk = c.recv(65536)  # a reset raises here
            self.assertTrue(chunk, "the connection was closed")
            buf += chunk
        if buf.startswith(b"$") and not buf.startswith(b"$-1"):
            return buf.split(b"\r\n")[1]
        return buf.strip()

    def test_client_goes_on_on_the_same_connection_and_the_data_survives(self):
        port = free_port()
        t = self.task(["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--daemonize", "no"], ready=None)
        rt.wait_for(lambda: nm.listening(port), "redis to listen")
        c = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.addCleanup(c.close)
        for i in range(1000):
            c.sendall(resp("SET", f"key:{i}", f"value-{i * i}"))
        replies = b""
        while replies.count(b"+OK\r\n") < 1000:
            chunk = c.recv(65536)
            self.assertTrue(chunk)
            replies += chunk
        self.assertEqual(self.command(c, "INCR", "counter"), b":1")
        reason = rt.read(f"{self.m}/{t.pid}/reason")
        self.assertEqual(reason, "", reason)
        img = t.checkpoint()
        t.kill9()
        t.restore(img, str(t.pid))
        self.assertEqual(self.command(c, "PING"), b"+PONG")
        self.assertEqual(self.command(c, "INCR", "counter"), b":2")
        self.assertEqual(self.command(c, "DBSIZE"), b":1001")
        for i in (0, 17, 999):
            self.assertEqual(self.command(c, "GET", f"key:{i}"), f"value-{i * i}".encode())
        self.assertEqual(self.command(c, "SET", "after", "restore"), b"+OK")
        self.assertEqual(self.command(c, "GET", "after"), b"restore")


if __name__ == "__main__":
    BUILD = rt.BUILD = nm.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
