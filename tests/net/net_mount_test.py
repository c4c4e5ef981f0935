#!/usr/bin/env python3
"""Inet sockets through the mounted tree (issue 12; docs/network.md).

A single-process echo server (tests/workloads/net_echo.c) is checkpointed with
`cp /crfs/PID/image`, killed with SIGKILL and restored in place
(`mkdir /crfs/PID && cp img /crfs/PID/image`):
  - listening TCP over IPv4, IPv6 and dual-stack keeps its address, backlog and
    options (the workload checks them itself) and answers new connections;
  - an established connection with bytes queued both ways (the client outside
    the task pauses its reads) goes on after the restore: every byte comes back
    once, in order, and the client never sees a reset;
  - UDP answers after the restore;
  - a listener moved into another network namespace (made with a veth pair
    here and always removed) answers there;
  - a real unprivileged user (crfsnt1, made and removed here) gets a reason
    naming CAP_NET_ADMIN for an established connection and EBUSY from the
    image, and round-trips its listener once the connection is closed;
  - the network lock (an nftables table owned by the daemon) is gone once the
    daemon is killed with SIGKILL;
  - a connection in CLOSE_WAIT is refused with its reason;
  - a server and its client in one process tree (tests/workloads/tcp_tree.c),
    bytes queued both ways, come back together and finish their exchange;
  - hostile edits of the socket records are EINVAL at close, with no task left.
Every wait is bounded and waits for a state; the daemon is always stopped.

usage: net_mount_test.py BUILD_DIR  (any unittest args after)
"""
import errno
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fs"))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Task, wait_for, read, sh)
sys.path.insert(0, os.path.join(HERE, "..", "support"))
from users import unprivileged_user  # noqa: E402

BUILD = None
USER = "crfsnt1"
NETNS = "crfsnt_b"
TIMEOUT = 60  # a guard against hangs only
PAYLOAD = 2 << 20


def echo_server(test, mode):
    return test.task([os.path.join(BUILD, "tests/workloads/net_echo"), "@DIR@", mode])


def show(img):
    out = subprocess.run([os.path.join(BUILD, "tools/crfs"), "show", "--json", img],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
    return [f for f in json.loads(out)["fds"] if "socket" in f]


def processes_of(img):
    out = subprocess.run([os.path.join(BUILD, "tools/crfs"), "show", "--json", img],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
    return json.loads(out).get("processes", [])


def tcp_queues(pid, port):
    """(tx, rx) of the task's established socket on local `port`, from /proc."""
    for name in ("tcp", "tcp6"):
        for row in rt.read(f"/proc/{pid}/net/{name}").splitlines()[1:]:
            f = row.split()
            if f[1].endswith(f":{port:04X}") and f[3] == "01":
                tx, rx = f[4].split(":")
                return int(tx, 16), int(rx, 16)
    return 0, 0


def listening(port):
    """Is something listening on 127.0.0.1:`port` (this namespace)?"""
    for row in rt.read("/proc/net/tcp").splitlines()[1:]:
        f = row.split()
        if f[1] == f"0100007F:{port:04X}" and f[3] == "0A":
            return True
    return False


def restore_in_place(test, t, img):
    t.kill9()
    return t.restore(img, str(t.pid))


class Base(rt.Base):
    def connected_echo(self):
        """An IPv4 echo server, its port, and a client connection that has echoed once."""
        t = echo_server(self, "tcp4")
        port = int(rt.read(t.path("port")))
        c = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.addCleanup(c.close)
        c.sendall(b"x")
        self.assertEqual(c.recv(1), b"x")
        return t, port, c

    def echo_once(self, addr, family=socket.AF_INET):
        with socket.socket(family, socket.SOCK_STREAM) as c:
            c.settimeout(TIMEOUT)
            c.connect(addr)
            c.sendall(b"ping")
            self.assertEqual(c.recv(16), b"ping")


class Listening(Base):
    def round_trip(self, mode, family, host):
        t = echo_server(self, mode)
        port = int(rt.read(t.path("port")))
        img = t.checkpoint()
        (sock,) = show(img)
        self.assertEqual(sock["kind"], "tcp")
        self.assertTrue(sock["socket"]["listening"])
        self.assertEqual(sock["socket"]["backlog"], 7)
        self.assertEqual(sock["socket"]["local"]["port"], port)
        restore_in_place(self, t, img)
        self.echo_once((host, port), family)
        self.assertEqual(t.finish(), "PASS")

    def test_ipv4_listener_keeps_address_backlog_and_options(self):
        self.round_trip("tcp4", socket.AF_INET, "127.0.0.1")

    def test_ipv6_listener(self):
        self.round_trip("tcp6", socket.AF_INET6, "::1")

    def test_dual_stack_listener_answers_ipv4(self):
        self.round_trip("dual", socket.AF_INET, "127.0.0.1")

    def test_udp_answers_after_restore(self):
        t = echo_server(self, "udp4")
        port = int(rt.read(t.path("port")))
        img = t.checkpoint()
        self.assertEqual(show(img)[0]["kind"], "udp")
        restore_in_place(self, t, img)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(TIMEOUT)
            c.sendto(b"datagram", ("127.0.0.1", port))
            self.assertEqual(c.recvfrom(64)[0], b"datagram")
        self.assertEqual(t.finish(), "PASS")


class Established(Base):
    def test_bytes_in_flight_both_ways_arrive_once_in_order_without_reset(self):
        t = echo_server(self, "tcp4")
        port = int(rt.read(t.path("port")))
        data = (bytes(range(251)) * (PAYLOAD // 251 + 1))[:PAYLOAD]
        c = socket.socket()
        self.addCleanup(c.close)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        c.connect(("127.0.0.1", port))
        c.setblocking(False)
        sent = 0
        # Send without reading until the server's queues hold bytes both ways
        # (it cannot write its echo, so it stops reading) and we cannot send.
        deadline = time.monotonic() + TIMEOUT
        while True:
            self.assertLess(time.monotonic(), deadline, "queues never filled")
            tx, rx = tcp_queues(t.pid, port)
            if tx and rx and not select.select([], [c], [], 0)[1]:
                break
            try:
                sent += c.send(data[sent:sent + 4096])
            except BlockingIOError:
                select.select([], [c], [], 0.01)
        img = t.checkpoint()
        conn = [s for s in show(img) if s["socket"]["connected"]]
        self.assertEqual(len(conn), 1)
        tcp = conn[0]["socket"]["tcp"]
        self.assertGreater(tcp["send_bytes"], 0)
        self.assertGreater(tcp["recv_bytes"], 0)
        restore_in_place(self, t, img)
        got = bytearray()
        deadline = time.monotonic() + TIMEOUT
        while len(got) < PAYLOAD:
            self.assertLess(time.monotonic(), deadline, f"{len(got)} of {PAYLOAD} bytes back")
            r, w, _ = select.select([c], [c] if sent < PAYLOAD else [], [], 1)
            if r:
                chunk = c.recv(65536)  # a reset raises ConnectionResetError here
                self.assertTrue(chunk, "the connection was closed")
                got += chunk
            if w:
                try:
                    sent += c.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
        self.assertEqual(bytes(got), data)
        # The lock is gone: a new connection and the old one both work.
        self.echo_once(("127.0.0.1", port))
        self.assertEqual(t.finish(), "PASS")

    def test_the_network_lock_goes_with_the_daemon(self):
        t, port, _ = self.connected_echo()
        t.checkpoint()
        table = ["nft", "list", "table", "inet", f"crfs_{self.crfs.proc.pid}"]
        listed = subprocess.run(table, capture_output=True, text=True, timeout=TIMEOUT)
        self.assertIn(f"127.0.0.1 . {port} . 127.0.0.1", listed.stdout)
        self.crfs.proc.kill()  # SIGKILL: no cleanup of its own
        self.crfs.proc.wait(TIMEOUT)
        rt.wait_for(lambda: subprocess.run(table, capture_output=True,
                                           timeout=TIMEOUT).returncode != 0,
                    "the kernel to drop the table of a dead owner")
        # A live daemon again for tearDown.
        old = self.crfs
        subprocess.run(["umount", "-l", old.mnt], capture_output=True, timeout=TIMEOUT)
        old.log.close()
        shutil.rmtree(old.dir, ignore_errors=True)
        self.crfs = rt.Crfsd()
        self.m = self.crfs.mnt

    def test_close_wait_is_refused_with_its_reason(self):
        py = ("import socket,os,time\n"
              "l=socket.create_server(('127.0.0.1',0))\n"
              "c=socket.create_connection(l.getsockname()); a,_=l.accept(); c.close()\n"
              "open(os.sys.argv[1]+'/ready','w').close()\n"
              "time.sleep(1000)\n")
        t = self.task(["/usr/bin/python3", "-c", py, "@DIR@"])
        rt.wait_for(lambda: "CLOSE_WAIT" in rt.read(f"{self.m}/{t.pid}/reason"), "the reason")
        self.assertIn("in state CLOSE_WAIT not supported yet",
                      rt.read(f"{self.m}/{t.pid}/reason"))
        r = rt.sh(f"cat {self.m}/{t.pid}/image > /dev/null")
        self.assertIn("Device or resource busy", r.stderr)


def reap_orphans():
    """Reaps what we inherited as a child subreaper (a killed tree's orphans)."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


class SameTree(Base):
    """A TCP echo server and its client in one tree (tests/workloads/tcp_tree.c)."""

    @classmethod
    def setUpClass(cls):
        import ctypes
        ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: the killed client is ours

    def test_server_and_client_in_one_tree_keep_their_connection(self):
        t = self.task([os.path.join(BUILD, "tests/workloads/tcp_tree"), "@DIR@"])
        child = int(rt.read(t.path("child")))
        self.addCleanup(lambda: rt.alive(child) and os.kill(child, signal.SIGKILL))
        # Bytes in flight both ways: the server's end holds queued bytes to
        # send and to read (it sleeps in write(), the client does not read).
        port = int(rt.read(t.path("port")))
        rt.wait_for(lambda: all(tcp_queues(t.pid, port)), "queues full both ways")
        img = t.checkpoint()
        self.assertEqual(len(processes_of(img)), 2)
        os.kill(child, signal.SIGKILL)
        t.kill9()
        rt.wait_for(lambda: (reap_orphans(), rt.pid_free(child))[1], f"pid {child} to go")
        t.restore(img, str(t.pid))
        self.assertTrue(rt.alive(child), "the client did not come back with its pid")
        os.kill(child, signal.SIGTERM)
        rt.wait_for(lambda: os.path.exists(t.path("result")), "the client's verdict")
        self.assertEqual(rt.read(t.path("result")), "PASS")
        rt.wait_for(lambda: not rt.alive(t.pid), "the server to see the end and exit")


class TcpClose(Base):
    def test_slot_tcp_close_gives_the_task_a_reset_connection(self):
        t, port, c = self.connected_echo()
        img = t.checkpoint()
        t.kill9()
        slot = f"{self.m}/{t.pid}"
        os.mkdir(slot)
        self.assertEqual(rt.read(f"{slot}/tcp"), "keep\n")
        fd = os.open(f"{slot}/tcp", os.O_WRONLY)
        with self.assertRaises(OSError) as bad:
            os.write(fd, b"maybe\n")
        os.close(fd)
        self.assertEqual(bad.exception.errno, errno.EINVAL)
        r = rt.sh(f"echo close > {slot}/tcp && cp {img} {slot}/image")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(rt.read(f"{slot}/tcp"), "close\n")
        # The task's next read of the connection fails with ECONNRESET, as
        # after a reset from the peer.
        rt.wait_for(lambda: os.path.exists(t.path("conn_error")), "the task to see the reset")
        self.assertEqual(int(rt.read(t.path("conn_error"))), errno.ECONNRESET)
        # The peer: its next segment reaches no socket and is answered with a reset.
        with self.assertRaises((ConnectionResetError, BrokenPipeError)):
            c.sendall(b"after")
            c.recv(16)
        self.echo_once(("127.0.0.1", port))  # the listener is kept
        self.assertEqual(subprocess.run(["nft", "list", "tables"], capture_output=True,
                                        text=True, timeout=TIMEOUT).stdout.count("crfs_"), 0)
        self.assertEqual(t.finish(), "PASS")


def run_as(cmd):
    return subprocess.run(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups",
                           "--inh-caps=-all", "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)


class Unprivileged(Base):
    def setUp(self):
        self.enterContext(unprivileged_user(USER, "-U"))
        super().setUp()

    def test_established_needs_cap_net_admin_listener_round_trips(self):
        d = tempfile.mkdtemp(prefix="crfsnt-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o777)
        echo, m = os.path.join(BUILD, "tests/workloads/net_echo"), self.m
        # The user's server and the user's client (which holds one connection
        # until d/close exists); then the reason, the image, and after the
        # client is gone the round trip.
        client = ("import socket,os,time,sys\n"
                  "c=socket.create_connection(('127.0.0.1',int(open(sys.argv[1]+'/port').read())))\n"
                  "open(sys.argv[1]+'/connected','w').close()\n"
                  "while not os.path.exists(sys.argv[1]+'/close'): time.sleep(0.01)\n")
        script = (f"cd {d}; {echo} {d} tcp4 </dev/null >/dev/null 2>&1 & p=$!; echo $p > {d}/pid; "
                  f"until [ -e {d}/ready ]; do sleep 0.01; done; "
                  f"/usr/bin/python3 -c \"{client}\" {d} </dev/null >/dev/null 2>&1 & "
                  f"until [ -e {d}/connected ]; do sleep 0.01; done; "
                  f"until grep -q ESTABLISHED {m}/$p/reason 2>/dev/null || grep -q CAP_NET {m}/$p/reason; do sleep 0.01; done; "
                  f"cat {m}/$p/reason > {d}/reason; cp {m}/$p/image {d}/refused.img 2> {d}/cp.err; "
                  f"touch {d}/close; until [ -z \"$(cat {m}/$p/reason)\" ]; do sleep 0.01; done; "
                  f"cp {m}/$p/image {d}/snap.img && kill -9 $p && wait $p; "
                  f"mkdir {m}/mine && cp {d}/snap.img {m}/mine/image && cat {m}/mine/pid")
        r = run_as(script)
        self.assertIn("needs TCP repair, which the kernel allows only with CAP_NET_ADMIN",
                      rt.read(f"{d}/reason"))
        self.assertIn("Device or resource busy", rt.read(f"{d}/cp.err"))
        self.assertEqual(r.returncode, 0, r.stderr)
        pid = int(r.stdout)
        self.assertIn(f"Uid:\t{pwd.getpwnam(USER).pw_uid}", rt.read(f"/proc/{pid}/status"))
        self.echo_once(("127.0.0.1", int(rt.read(f"{d}/port"))))
        os.kill(pid, signal.SIGKILL)
        rt.wait_for(lambda: not self.crfs.children(), "crfsd to reap it")

    def test_another_users_slot_tcp_file_is_not_theirs(self):
        os.mkdir(f"{self.m}/roots")
        r = run_as(f"echo close > {self.m}/roots/tcp")
        self.assertIn("Permission denied", r.stderr)
        r = run_as(f"cat {self.m}/roots/tcp")
        self.assertIn("Permission denied", r.stderr)
        self.assertEqual(rt.read(f"{self.m}/roots/tcp"), "keep\n")

    def test_hostile_socket_records_are_refused_at_close(self):
        d = tempfile.mkdtemp(prefix="crfsnt-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o777)
        echo, m = os.path.join(BUILD, "tests/workloads/net_echo"), self.m
        r = run_as(f"cd {d}; {echo} {d} tcp4 </dev/null >/dev/null 2>&1 & p=$!; "
                   f"until [ -e {d}/ready ]; do sleep 0.01; done; "
                   f"cp {m}/$p/image {d}/snap.img; kill -9 $p; wait $p")
        self.assertTrue(os.path.exists(f"{d}/snap.img"), r.stderr)
        edit = os.path.join(BUILD, "tests/security/restore/crfs-imgedit")
        # (edit, words of the error): family, type, flags, backlog, IPv4
        # padding, an option outside the table, an option of the wrong size.
        attacks = [("inet-socket@4:4=17", "socket family 17"),
                   ("inet-socket@8:4=3", "socket type 3"),
                   ("inet-socket@12:4=0x10", "socket flags 0x10"),
                   ("inet-socket@12:4=0x7", "name no state"),
                   ("inet-socket@52:4=70000", "backlog 70000"),
                   ("inet-socket@20:4=1", "IPv4 address with bytes past the fourth"),
                   ("inet-option@8:4=26", "socket option level 1 name 26"),
                   ("inet-option@12:4=3", "of 3 bytes")]
        for n, (e, words) in enumerate(attacks):
            out = f"{d}/e{n}.img"
            subprocess.run([edit, f"{d}/snap.img", out, e], check=True, capture_output=True)
            os.chmod(out, 0o644)
            r = run_as(f"mkdir {m}/s{n} && cp {out} {m}/s{n}/image")
            self.assertIn("Invalid argument", r.stderr, e)
            self.assertIn(words, rt.read(f"{m}/s{n}/status"), e)
            self.assertEqual(self.crfs.children(), [], e)


class OtherNamespace(Base):
    def setUp(self):
        self.addCleanup(self.teardown_netns)
        self.teardown_netns()
        for cmd in (f"ip netns add {NETNS}",
                    f"ip link add crfsnt_h type veth peer name crfsnt_b0 netns {NETNS}",
                    "ip addr add 10.231.77.1/24 dev crfsnt_h", "ip link set crfsnt_h up",
                    f"ip -n {NETNS} addr add 10.231.77.2/24 dev crfsnt_b0",
                    f"ip -n {NETNS} link set crfsnt_b0 up", f"ip -n {NETNS} link set lo up"):
            subprocess.run(cmd.split(), check=True, timeout=TIMEOUT, capture_output=True)
        super().setUp()

    def teardown_netns(self):
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, timeout=TIMEOUT)
        subprocess.run(["ip", "link", "del", "crfsnt_h"], capture_output=True, timeout=TIMEOUT)

    def test_listener_moved_into_another_namespace_answers_there(self):
        t = echo_server(self, "dual")
        port = int(rt.read(t.path("port")))
        img = t.checkpoint()
        t.kill9()
        r = rt.sh(f"ip netns exec {NETNS} sh -c 'mkdir {self.m}/moved && "
                  f"cp {img} {self.m}/moved/image && cat {self.m}/moved/pid'")
        self.assertEqual(r.returncode, 0, r.stderr)
        t.pid = int(r.stdout)
        self.assertEqual(os.stat(f"/proc/{t.pid}/ns/net").st_ino,
                         os.stat(f"/run/netns/{NETNS}").st_ino)
        self.echo_once(("10.231.77.2", port))
        self.assertEqual(t.finish(), "PASS")


if __name__ == "__main__":
    BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
