#!/usr/bin/env python3
"""Migration of a TCP server between two "hosts" (issue 12; docs/network.md,
"Migration between namespaces").

The test builds three network namespaces and always removes them: hosts A and
B and a client C, whose bridge joins a veth pair to each host (nothing leaves
the machine; nothing is made in the test's own namespace). One crfsd, in the
test's namespace, serves both hosts. An echo server (tests/workloads/net_echo,
listening on 0.0.0.0) runs in A, reached at the service address 10.231.78.10
(A's); a client in C holds one connection to it and checks every answer
against its request. Then, as an administrator would:

    cat /crfs/PID/image | ip netns exec B sh -c 'mkdir /crfs/moved && cat > /crfs/moved/image'
    kill -9 PID                                   # A's copy
    ip -n A addr del 10.231.78.10/24 dev a0; ip -n B addr add 10.231.78.10/24 dev b0
    ip -n C neigh flush dev br0                   # C's ARP entry named A's MAC

and the client's connection goes on: a request sent while the server was
frozen gets its answer, and so does every request after the move; a new
connection reaches the listener in B. The network lock is in A from the
checkpoint until A no longer owns the address, in B during the restore, and
no crfs table is left in any namespace afterwards, nor after a failed
restore. Every wait is bounded and waits for a state.

usage: net_migrate_test.py BUILD_DIR  (any unittest args after)
"""
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fs"))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Task, wait_for, read, sh)

BUILD = None
TIMEOUT = 60  # a guard against hangs only
A, B, C = "crfsnt_A", "crfsnt_B", "crfsnt_C"
SERVICE = "10.231.78.10"

# The client in C: commands on stdin, one answer line each on stdout.
#   connect HOST PORT | run N (N requests, each answer checked) | send | recv
CLIENT = r"""
import os, socket, sys
c, k, pending = None, 0, None
def request():
    global k
    k += 1
    return (b"%08d:" % k) + os.urandom(24).hex().encode() + b"\n"
def answer(req):
    got = b""
    while len(got) < len(req):
        chunk = c.recv(len(req) - len(got))
        if not chunk:
            return "FAIL: the connection was closed after %d bytes" % len(got)
        got += chunk
    return None if got == req else "FAIL: %r for %r" % (got, req)
for line in sys.stdin:
    cmd = line.split()
    try:
        if cmd[0] == "connect":
            c = socket.create_connection((cmd[1], int(cmd[2])), timeout=60)
            out = "ok"
        elif cmd[0] == "run":
            out = "ok"
            for _ in range(int(cmd[1])):
                req = request()
                c.sendall(req)
                out = answer(req) or out
                if out != "ok":
                    break
        elif cmd[0] == "send":
            pending = request()
            c.sendall(pending)
            out = "ok"
        elif cmd[0] == "recv":
            out = answer(pending) or "ok"
    except OSError as e:
        out = "FAIL: %s: %s" % (cmd[0], e)
    print(out, flush=True)
"""


def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=TIMEOUT)


def crfs_tables(ns=None):
    """The crfs tables of namespace `ns` (None: ours)."""
    pre = ["ip", "netns", "exec", ns] if ns else []
    out = subprocess.run(pre + ["nft", "list", "tables"], capture_output=True, text=True,
                         timeout=TIMEOUT).stdout
    return [t for t in out.split() if t.startswith("crfs_")]


class Client:
    def __init__(self, test):
        self.p = subprocess.Popen(["ip", "netns", "exec", C, "/usr/bin/python3", "-c", CLIENT],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        test.addCleanup(self.close)

    def do(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()  # the client's own 60 s timeout bounds it

    def close(self):
        self.p.kill()
        self.p.wait(TIMEOUT)
        self.p.stdin.close()
        self.p.stdout.close()


class Migrate(rt.Base):
    def setUp(self):
        self.addCleanup(self.teardown_hosts)
        self.teardown_hosts()
        steps = [f"netns add {A}", f"netns add {B}", f"netns add {C}",
                 f"-n {C} link add br0 type bridge", f"-n {C} link set br0 up",
                 f"-n {C} addr add 10.231.78.3/24 dev br0"]
        for ns, dev, peer, addr in ((A, "a0", "ca", "10.231.78.1"),
                                    (B, "b0", "cb", "10.231.78.2")):
            steps += [f"-n {ns} link add {dev} type veth peer name {peer} netns {C}",
                      f"-n {C} link set {peer} master br0", f"-n {C} link set {peer} up",
                      f"-n {ns} addr add {addr}/24 dev {dev}", f"-n {ns} link set {dev} up",
                      f"-n {ns} link set lo up"]
        steps.append(f"-n {A} addr add {SERVICE}/24 dev a0")
        for s in steps:
            r = ip(*s.split())
            self.assertEqual(r.returncode, 0, f"ip {s}: {r.stderr}")
        super().setUp()

    def teardown_hosts(self):
        for ns in (A, B, C):
            ip("netns", "del", ns)

    def server(self):
        t = self.task(["ip", "netns", "exec", A, os.path.join(BUILD, "tests/workloads/net_echo"),
                       "@DIR@", "any4"])
        return t, int(rt.read(t.path("port")))

    def move_to_b(self, t, slot):
        """The checkpoint piped into a slot written in B; the restored pid."""
        m = self.m
        r = rt.sh(f"cat {m}/{t.pid}/image | ip netns exec {B} sh -c "
                  f"'mkdir {m}/{slot} && cat > {m}/{slot}/image && cat {m}/{slot}/pid'")
        return r

    def client(self, port, n):
        """A client in C connected to the service, with n requests answered."""
        c = Client(self)
        self.assertEqual(c.do(f"connect {SERVICE} {port}"), "ok")
        self.assertEqual(c.do(f"run {n}"), "ok")
        return c

    def new_connections_answered_and_no_lock_left(self, t, port):
        """The plain case: the listener answers new connections in B."""
        self.client(port, 20)
        self.assertEqual(t.finish(), "PASS")
        self.assertTrue(self.no_tables_anywhere())

    def move_address(self):
        for s in (f"-n {A} addr del {SERVICE}/24 dev a0", f"-n {B} addr add {SERVICE}/24 dev b0",
                  f"-n {C} neigh flush dev br0"):
            r = ip(*s.split())
            self.assertEqual(r.returncode, 0, f"ip {s}: {r.stderr}")

    def no_tables_anywhere(self):
        return not any(crfs_tables(ns) for ns in (None, A, B, C))

    def test_established_connection_goes_on_in_the_other_host(self):
        t, port = self.server()
        client = self.client(port, 50)
        r = self.move_to_b(t, "moved")
        if r.returncode != 0:
            r.stderr += rt.read(f"{self.m}/moved/status") if os.path.exists(
                f"{self.m}/moved") else ""
        self.assertEqual(r.returncode, 0, r.stderr)
        new_pid = int(r.stdout)
        self.assertEqual(os.stat(f"/proc/{new_pid}/ns/net").st_ino,
                         os.stat(f"/run/netns/{B}").st_ino)
        # A request while A's copy is frozen in repair mode: the lock in A
        # drops it, and the client's kernel retransmits it until B answers.
        self.assertEqual(client.do("send"), "ok")
        t.kill9()
        t.pid = new_pid
        # A still owns the address: its lock stays (a packet that reached A
        # would get a reset now that A's copy is gone); B's is gone.
        self.assertEqual(crfs_tables(A), [f"crfs_{self.crfs.proc.pid}"])
        self.assertEqual(crfs_tables(B), [])
        self.assertEqual(crfs_tables(), [])  # the daemon's namespace holds none of it
        self.move_address()
        rt.wait_for(lambda: not crfs_tables(A), "A's lock to go with A's address")
        self.assertEqual(client.do("recv"), "ok")
        self.assertEqual(client.do("run 200"), "ok")
        self.new_connections_answered_and_no_lock_left(t, port)

    def test_listener_moved_with_its_address_answers_in_b(self):
        t, port = self.server()
        self.client(port, 5).close()  # no connection: nothing to lock
        rt.wait_for(lambda: not rt.sh(f"ip netns exec {A} ss -tnH state established "
                                      f"state close-wait").stdout.strip(),
                    "the server to close its end")
        r = self.move_to_b(t, "plain")
        self.assertEqual(r.returncode, 0, r.stderr)
        t.kill9()
        t.pid = int(r.stdout)
        self.move_address()
        self.new_connections_answered_and_no_lock_left(t, port)

    def test_a_failed_restore_leaves_no_lock_anywhere(self):
        t, port = self.server()
        self.client(port, 5)
        # B's port is taken: the restored listener's bind fails there.
        blocker = subprocess.Popen(
            ["ip", "netns", "exec", B, "/usr/bin/python3", "-c",
             "import socket,sys\ns=socket.socket()\ns.bind(('0.0.0.0',int(sys.argv[1])))\n"
             "s.listen()\nprint('ok',flush=True)\nsys.stdin.read()", str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(blocker.wait, TIMEOUT)
        self.addCleanup(blocker.kill)
        self.assertEqual(blocker.stdout.readline().strip(), "ok")
        r = self.move_to_b(t, "failed")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Address already in use", rt.read(f"{self.m}/failed/status"))
        self.assertEqual(self.crfs.children(), [])
        rt.wait_for(self.no_tables_anywhere, "no crfs table in any namespace")


if __name__ == "__main__":
    BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
