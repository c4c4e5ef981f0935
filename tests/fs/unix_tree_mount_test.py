#!/usr/bin/env python3
"""Unix connections between the processes of one tree through the mount
(issue 11, docs/trees.md "Unix connections between members"): cp
/crfs/PID/image, kill -9 the whole tree, restore into the same pids.

  - tests/workloads/unix_tree.c: a server listening at a path (stream) and at
    an abstract name (seqpacket), two accepted clients in child processes with
    bytes queued both ways (one shut down for sending), a third client waiting
    in the backlog. Every process compares what getsockname/getpeername say
    after the restore with what they said before, and the totals are exact.
  - redis-server (--port 0 --unixsocket PATH) and a /usr/bin/python3 client
    in the same tree, one connection open with a reply not yet read: the data
    set and the connection survive.
  - hostile edits of the new records are refused and leave nothing behind.
  - a producer and its consumer child sharing a POSIX message queue,
    checkpointed mid-work with the queue full, restored with the queue made
    again from the image: the consumer's count and sum are exact.

usage: unix_tree_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import socket
import struct
from stat import S_ISSOCK
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, wait_for  # noqa: E402
import threads_mount_test  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, reap, stat, tree_of  # noqa: E402
from tree_share_mount_test import kcmp_file  # noqa: E402

KEYS = 500  # redis keys set before the checkpoint

# The client: keeps one connection to redis open across the checkpoint, with
# the reply to a GET unread in its socket; after SIGUSR1 reads it, checks every
# key, adds one, and shuts redis down. Writes PASS or FAIL to its stdout.
CLIENT = f"""
import os, signal, socket, sys
KEYS = {KEYS}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("redis.sock")
buf = b""
def reply():
    global buf
    while b"\\r\\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise SystemExit("FAIL connection closed")
        buf += d
    line, rest = buf.split(b"\\r\\n", 1)
    if line[:1] == b"$" and int(line[1:]) >= 0:
        n = int(line[1:])
        while len(rest) < n + 2:
            rest += s.recv(65536)
        buf = rest[n + 2:]
        return rest[:n]
    buf = rest
    return line
def cmd(*args):
    out = b"*%d\\r\\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\\r\\n%s\\r\\n" % (len(a), a)
    s.sendall(out)
for i in range(KEYS):
    cmd("SET", f"k{{i}}", f"value-{{i}}-" + "x" * (i % 50))
for i in range(KEYS):
    if reply() != b"+OK":
        raise SystemExit("FAIL set")
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
peer = s.getpeername()
cmd("GET", "k7")  # its reply waits in the socket across the checkpoint
open("paused", "w").close()
signal.sigwait({{signal.SIGUSR1}})
bad = []
if reply() != b"value-7-" + b"x" * 7:
    bad.append("pending reply")
if s.getpeername() != peer:
    bad.append(f"peer name {{s.getpeername()!r}}")
for i in range(KEYS):
    cmd("GET", f"k{{i}}")
    if reply() != f"value-{{i}}-".encode() + b"x" * (i % 50):
        bad.append(f"k{{i}}")
        break
cmd("SET", "after", "restore")
cmd("DBSIZE")
ok, size = reply(), reply()
if ok != b"+OK" or size != b":%d" % (KEYS + 1):
    bad.append(f"dbsize {{size!r}}")
print("FAIL " + "; ".join(bad) if bad else f"PASS {{KEYS + 1}}", flush=True)
cmd("SHUTDOWN", "NOSAVE")
"""


class UnixTree(trees_mount_test.TreeBase):
    def path(self, name):
        return os.path.join(self.dir, name)

    def server(self):
        """The server and its three clients, set up and waiting."""
        exe = os.path.join(roundtrip_mount_test.BUILD, "tests/workloads/unix_tree")
        proc = self.start(None, 4, argv=[exe, self.dir])
        wait_for(lambda: os.path.exists(self.path("ready")), "the tree to be set up")
        return proc, tree_of(proc.pid)

    def go(self, pids):
        for p in pids:
            os.kill(p, 10)
        wait_for(lambda: os.path.exists(self.path("result")) and all(gone(p) for p in pids),
                 "the tree to finish")
        # client 1: 5000 + 7000 bytes, client 2: 8 messages of 100, client 3: 7000
        self.assertEqual(read(self.path("result")), "PASS 12000 800 7000\n")

    def test_unrestored_tree_passes(self):
        """The workload's own check, without crfs: it can fail, and does not."""
        proc, pids = self.server()
        self.go(pids)

    def test_server_clients_and_backlog_come_back_in_the_same_pids(self):
        proc, pids = self.server()
        self.round_trip(proc, pids)
        self.assertTrue(S_ISSOCK(os.lstat(self.path("srv.sock")).st_mode), "srv.sock bound again")
        for p in pids:  # back in their waits (a restored task runs a moment first)
            wait_for(lambda: stat(p)[0] == "S", f"pid {p} to sleep again")
        self.go(pids)

    def image_facts(self, img):
        """Walks the image's records (docs/image-format.md: header, then
        {u32 type, u32 reserved, u64 length} frames): per process, its fds
        {fd: (fd record index, kind, ino, share-fd index or None)} and the
        unix-bound records {ino: (index, role, peer, type, listener, name)}."""
        with open(img, "rb") as f:
            data = f.read()
        off = struct.unpack_from("<I", data, 12)[0]
        procs, nth = [], {}
        while off < len(data):
            kind, _, length = struct.unpack_from("<IIQ", data, off)
            body = data[off + 16:off + 16 + length]
            off += 16 + length
            n = nth.get(kind, 0)
            nth[kind] = n + 1
            if kind == 0xffffffff:
                break
            if kind == 64 or not procs:  # process: a tree's member starts
                procs.append({"fds": {}, "bound": {}})
            if kind == 14:  # fd
                fd, fkind = struct.unpack_from("<iI", body, 0)
                ino = struct.unpack_from("<Q", body, 40)[0]
                procs[-1]["fds"][fd] = [n, fkind, ino, None]
            elif kind == 108:  # share-fd
                procs[-1]["fds"][struct.unpack_from("<i", body, 0)[0]][3] = n
            elif kind == 74:  # unix-bound
                ino, peer, typ = struct.unpack_from("<QQI", body, 0)
                role, _, listener = struct.unpack_from("<IIQ", body, 64)
                name_len = struct.unpack_from("<I", body, 84)[0]
                procs[-1]["bound"][ino] = (n, role, peer, typ, listener,
                                           body[104:104 + min(name_len, 108)])
        return procs

    def test_edited_unix_tree_records_are_refused_and_leave_nothing(self):
        proc, pids = self.server()
        img = self.checkpoint(pids[0])
        self.kill_all(proc, pids)
        procs = self.image_facts(img)
        # Every client's record is the server's (process 0); each client's
        # socket fd is a shared fd given by it.
        bound = procs[0]["bound"]
        self.assertEqual(sorted(b[1] for b in bound.values()), [1, 1, 2, 2, 3, 4, 4], bound)
        self.assertEqual([p["bound"] for p in procs[1:]], [{}, {}, {}])
        by_role = {b[1]: ino for ino, b in bound.items()}  # one of each role
        server_fds = {f[2]: fd for fd, f in procs[0]["fds"].items()}
        listener = next(ino for ino, b in bound.items() if b[1] == 1 and b[3] == socket.SOCK_STREAM)
        # children: client 1 (accepted, stream), client 2 (seqpacket), client 3 (waiting)
        c1 = next(f for f in procs[1]["fds"].values() if f[2] in bound)
        c3 = next(f for f in procs[3]["fds"].values() if f[2] in bound)
        self.assertEqual((bound[c1[2]][1], bound[c3[2]][1], c1[1], c3[1]), (4, 3, 52, 52))
        accepted = bound[c1[2]][2]
        s, w, client = c1[3], c3[3], c1[2]
        given = "which is no accepted connection or listening socket that socket is the client of"
        cases = [
            # the client of an accepted socket asked of the listener, and the reverse
            ([f"share-fd#{s}.owner_fd={server_fds[listener]}"], given),
            ([f"share-fd#{w}.owner_fd={server_fds[accepted]}"], given),
            # another socket than its own: the waiting client, a socket the server holds
            ([f"fd#{c1[0]}.ino={c3[2]}"], given),
            ([f"fd#{c1[0]}.ino={listener}"], given),
            # open flags of a socket it is given
            ([f"fd#{c1[0]}.open_flags=0"], given),
            # the records moved to the server: a client made plain, a waiting place out of range
            ([f"unix-bound#{bound[client][0]}.role=0"], "image field out of range: unix-bound"),
            ([f"unix-bound#{bound[c3[2]][0]}.order=3"], "waiting places"),
            ([f"unix-bound#{bound[c3[2]][0]}.listener={client}"], "waiting in"),
            # an option bit crfs does not know
            ([f"unix-bound#{bound[listener][0]}.options=2"], "image field out of range: unix-bound"),
            # one client given to two processes: each would connect it (state/unix_tree.h)
            ([f"fd#{c3[0]}.ino={client}", f"share-fd#{w}.owner_fd={server_fds[accepted]}"],
             f"unix socket {client} given to two processes"),
        ]
        for edits, expect in cases:
            self.refused(img, pids[0], edits, expect)
            for p in pids:
                self.assertFalse(os.path.exists(f"/proc/{p}"), edits)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.go(pids)


USER, GROUP = "s6uxu1", "s6uxg1"


def abstract_free(name):
    """No socket holds the abstract unix name `name` (a bind to it works)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.bind(name)
            return True
        except OSError:
            return False


def python_tree(test, name, source, *args, size=2, user_prefix=()):
    """Runs `source` as /usr/bin/python3 NAME ARGS (`size` processes) in test's
    directory until it writes `half` and every process waits: (proc, pids)."""
    with open(test.path(name), "w") as f:
        f.write(source)
    proc = test.start(None, size, argv=["/usr/bin/python3", name, *args], user_prefix=user_prefix)
    wait_for(lambda: os.path.exists(test.path("half")), "the tree's pause")
    pids = tree_of(proc.pid)
    wait_for(lambda: all(stat(p)[0] == "S" for p in pids), "all to wait")
    return proc, pids


class InGroup(threads_mount_test.UserInGroup):
    """A user in the group named by -o restore_pid_group, made for the class
    and removed after it; each test has a crfsd of its own with that option."""

    def setUp(self):
        self.crfsd_for_group()
        self.tasks = []
        self.dir = tempfile.mkdtemp(prefix=self.prefix)
        os.chmod(self.dir, self.mode)
        self.pids, self.procs = [], []

    def user_round(self, as_user, run, name, source):
        """Runs `source` as /usr/bin/python3 NAME (two processes) as the user until
        it writes `half` and both wait, checkpoints it as the user and kills it:
        (pids, image, UnixTree.image_facts of the image)."""
        proc, pids = python_tree(self, name, source, user_prefix=as_user)
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        return pids, img, UnixTree.image_facts(self, img)

    def checkpoint_as(self, run, top):
        """The user (`run`) checkpoints the tree of `top` into tree.img."""
        img = self.path("tree.img")
        r = run(f"cp {self.m}/{top}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/reason"))
        return img

    def restore_as(self, run, pw, img, pids):
        """The user (`run`, passwd entry `pw`) restores `img` into the same
        pids: the same tree, every process with the user's ids."""
        top = pids[0]
        r = run(f"mkdir {self.m}/{top} && cp {img} {self.m}/{top}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        self.assertEqual(tree_of(top), pids)
        for p in pids:
            self.assertIn(f"Uid:\t{pw.pw_uid}\t{pw.pw_uid}", read(f"/proc/{p}/status"))

    def refused_as_user(self, as_user, run, img, pids, edits, expect, made=False):
        """The user edits `img` (crfs-imgedit EDITS) and restores it into
        pids[0]: refused with `expect` in the status, none of `pids` left, not
        even as a zombie, when cp returns (`made`: refused in a member's stage
        1, after the members were made: the daemon killed and reaped them all;
        nothing reaps here meanwhile)."""
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        bad, top = self.path("bad.img"), pids[0]
        r = subprocess.run(as_user + [edit, img, bad] + edits, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(f"mkdir {self.m}/{top} && cp {bad} {self.m}/{top}/image")
        self.assertNotEqual(r.returncode, 0, edits)
        self.assertIn(expect, read(f"{self.m}/{top}/status"), edits)
        left = [read(f"/proc/{p}/stat") for p in pids if os.path.exists(f"/proc/{p}")]
        self.assertEqual(left, [], f"{edits}: a refused restore left these behind")
        self.assertEqual(run(f"rmdir {self.m}/{top}").returncode, 0)


class GroupUser(InGroup, UnixTree):
    """A normal user in the group named by -o restore_pid_group: its server
    tree comes back with the user's credentials (srv.sock bound by the user),
    and the user's edited image (a client handed another client's socket:
    before check_unix_given, the restore gave the waiting client's socket to
    both clients) is refused with nothing made."""

    user, group, prefix, mode = USER, GROUP, "crfs-s6ux-", 0o755

    def test_group_member_restores_its_server_tree_and_its_edits_are_refused(self):
        pw, as_user, run = self.as_user(USER, "--init-groups")
        exe = os.path.join(roundtrip_mount_test.BUILD, "tests/workloads/unix_tree")
        proc = self.start(None, 4, argv=[exe, self.dir], user_prefix=as_user)
        wait_for(lambda: os.path.exists(self.path("ready")), "the tree to be set up")
        pids = tree_of(proc.pid)
        img = self.path("tree.img")
        r = run(f"cp {self.m}/{pids[0]}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/reason"))
        self.kill_all(proc, pids)
        procs = self.image_facts(img)
        bound = procs[0]["bound"]
        c1 = next(f for f in procs[1]["fds"].values() if f[2] in bound)
        c3 = next(f for f in procs[3]["fds"].values() if f[2] in bound)
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        bad = self.path("bad.img")
        r = subprocess.run(as_user + [edit, img, bad, f"fd#{c1[0]}.ino={c3[2]}"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        top = pids[0]
        r = run(f"mkdir {self.m}/{top} && cp {bad} {self.m}/{top}/image")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("which is no accepted connection or listening socket",
                      read(f"{self.m}/{top}/status"))
        for p in pids:
            self.assertFalse(os.path.exists(f"/proc/{p}"))
        self.assertEqual(run(f"rmdir {self.m}/{top}").returncode, 0)
        r = run(f"mkdir {self.m}/{top} && cp {img} {self.m}/{top}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        self.assertEqual(tree_of(top), pids)
        for p in pids:
            self.assertIn(f"Uid:\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}",
                          read(f"/proc/{p}/status"))
        self.assertEqual(os.lstat(self.path("srv.sock")).st_uid, pw.pw_uid)
        self.go(pids)

    test_unrestored_tree_passes = None
    test_server_clients_and_backlog_come_back_in_the_same_pids = None
    test_edited_unix_tree_records_are_refused_and_leave_nothing = None


class Redis(trees_mount_test.TreeBase):
    def path(self, name):
        return os.path.join(self.dir, name)

    def redis_tree(self):
        with open(self.path("client.py"), "w") as f:
            f.write(CLIENT)
        script = ("redis-server --port 0 --unixsocket redis.sock --save '' --appendonly no "
                  "--daemonize no --logfile redis.log & "
                  "for i in $(seq 2000); do [ -S redis.sock ] && break; sleep 0.01; done; "
                  "/usr/bin/python3 client.py > out 2> err; wait")
        proc = self.start(script, 3)
        wait_for(lambda: os.path.exists(self.path("paused")), "the client's pause")
        pids = tree_of(proc.pid)
        self.assertEqual(len(pids), 3, pids)
        self.assertIn("redis-server", read(f"/proc/{pids[1]}/cmdline"))
        return proc, pids

    def ask(self, *args):
        """One command from outside the tree (redis-cli), its output."""
        r = subprocess.run(["redis-cli", "-s", self.path("redis.sock")] + list(args),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def finish(self, pids):
        os.kill(pids[2], 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertEqual(self.out(), f"PASS {KEYS + 1}\n", read(self.path("err")))

    def test_unrestored_redis_tree_passes(self):
        proc, pids = self.redis_tree()
        self.finish(pids)

    def test_redis_and_its_client_come_back_with_the_data_set_and_connection(self):
        proc, pids = self.redis_tree()
        self.round_trip(proc, pids)
        self.assertEqual(self.ask("DBSIZE"), str(KEYS), "a new connection sees the data set")
        self.assertEqual(self.ask("GET", "k499"), "value-499-" + "x" * 49)
        self.finish(pids)


# unix: a producer and its consumer child sharing one POSIX message queue
# (state/mqueue.cc). The producer sends N numbered messages of priorities
# i % 3 (blocking when the queue of 4 is full); the consumer takes 5, writes
# `half` and waits for SIGUSR1, then takes the rest: per priority they must
# come in increasing order (FIFO), and the count and sum are exact.
MQ_N = 40
MQ_TREE = f"""
import ctypes, os, signal, sys
N = {MQ_N}
libc = ctypes.CDLL(None, use_errno=True)
class Attr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long),
                ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]
name = sys.argv[1].encode()
libc.mq_unlink(name)
q = libc.mq_open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, ctypes.byref(Attr(0, 4, 32, 0)))
if q < 0:
    raise SystemExit("mq_open: " + os.strerror(ctypes.get_errno()))
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
kid = os.fork()
if kid == 0:
    if sys.argv[2:] == ["separately"]:  # a description of its own, for reading only
        mine = libc.mq_open(name, os.O_RDONLY)
        if mine < 0 or libc.mq_close(q) != 0:
            raise SystemExit("mq_open in the child: " + os.strerror(ctypes.get_errno()))
        q = mine
        open("opened", "w").close()
    buf = ctypes.create_string_buffer(32)
    prio = ctypes.c_uint()
    last, got, total, bad = {{}}, 0, 0, []
    while True:
        if got == 5:
            open("half", "w").close()
            signal.sigwait({{signal.SIGUSR1}})
        n = libc.mq_receive(q, buf, 32, ctypes.byref(prio))
        if n < 0:
            bad.append("mq_receive: " + os.strerror(ctypes.get_errno()))
            break
        i = int(buf.raw[:n])
        if i < 0:
            break
        if prio.value != i % 3 or last.get(prio.value, -1) >= i:
            bad.append(f"{{i}} at priority {{prio.value}} after {{last.get(prio.value)}}")
        last[prio.value] = i
        got += 1
        total += i
    with open("out", "w") as f:
        f.write("FAIL " + "; ".join(bad) + "\\n" if bad else f"PASS {{got}} {{total}}\\n")
    os._exit(0)
if sys.argv[2:] == ["separately"]:  # the consumer's own description (mqtree), then unlinked
    while not os.path.exists("opened"):
        signal.sigtimedwait({{signal.SIGUSR2}}, 0.01)
if sys.argv[2:] in (["unlinked"], ["separately"]):  # its descriptions are all that name it
    if libc.mq_unlink(name) != 0:
        raise SystemExit("mq_unlink: " + os.strerror(ctypes.get_errno()))
for i in range(N):
    b = str(i).encode()
    if libc.mq_send(q, b, len(b), i % 3) != 0:
        raise SystemExit("mq_send: " + os.strerror(ctypes.get_errno()))
if libc.mq_send(q, b"-1", 2, 0) != 0:
    raise SystemExit("mq_send end")
os.waitpid(kid, 0)
libc.mq_unlink(name)
"""


class MqueueTree(trees_mount_test.TreeBase):
    def path(self, name):
        return os.path.join(self.dir, name)

    def mq_tree(self, *mode):
        self.name = "/s9un-mqtree-" + os.path.basename(self.dir)  # unique on the host
        return python_tree(self, "mq.py", MQ_TREE, self.name, *mode)

    def finish(self, pids):
        os.kill(pids[1], 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertEqual(self.out(), f"PASS {MQ_N} {MQ_N * (MQ_N - 1) // 2}\n")

    def tearDown(self):
        import ctypes
        ctypes.CDLL(None).mq_unlink(getattr(self, "name", "/").encode())
        super().tearDown()

    @staticmethod
    def mqueue_records(img):
        """[(name, nmsgs)] of the image's mqueue records (type 76: MqueueRecord,
        nmsgs at 32, name_len at 36, the name after its 56 bytes)."""
        with open(img, "rb") as f:
            data = f.read()
        off, out = struct.unpack_from("<I", data, 12)[0], []
        while off < len(data):
            kind, _, length = struct.unpack_from("<IIQ", data, off)
            if kind == 0xffffffff:
                break
            if kind == 76:
                nmsgs, name_len = struct.unpack_from("<II", data, off + 16 + 32)
                out.append((data[off + 16 + 56:off + 16 + 56 + name_len], nmsgs))
            off += 16 + length
        return out

    def test_unrestored_mqueue_tree_passes(self):
        proc, pids = self.mq_tree()
        self.finish(pids)

    def test_mqueue_workers_come_back_with_the_queued_messages(self):
        """Checkpointed mid-work with the queue full and the producer blocked in
        mq_send; the queue is removed after the kill, so the restore makes it
        again from the image."""
        import ctypes
        proc, pids = self.mq_tree()
        self.assertEqual(read(f"{self.m}/{pids[0]}/reason"), "")
        img = self.checkpoint(pids[0])
        self.assertEqual(self.mqueue_records(img), [(self.name.encode(), 4)])
        self.kill_all(proc, pids)
        self.assertEqual(ctypes.CDLL(None).mq_unlink(self.name.encode()), 0)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(tree_of(pids[0]), pids)
        self.finish(pids)

    def unlinked_round(self, mode):
        """The tree in `mode` with its queue unlinked: checkpointed (one queue
        record, its 4 messages), killed, restored into its pids (the name still
        free): (pids, its fds on the queue before, after: fds_on)."""
        import ctypes
        proc, pids = self.mq_tree(mode)
        before = fds_on(pids, self.name + " (deleted)")
        self.assertEqual(read(f"{self.m}/{pids[0]}/reason"), "")
        img = self.checkpoint(pids[0])
        self.assertEqual(self.mqueue_records(img), [(self.name.encode(), 4)])
        self.kill_all(proc, pids)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(tree_of(pids[0]), pids)
        self.assertLess(ctypes.CDLL(None).mq_unlink(self.name.encode()), 0, "unlinked again")
        return pids, before, fds_on(pids, self.name + " (deleted)")

    def test_unlinked_mqueue_workers_come_back_sharing_one_queue(self):
        """The producer unlinks the queue right after the fork: the one
        description both hold (inherited) is all that names it. Made once at
        restore (one record, its 4 messages once) and handed to the consumer:
        two queues would leave the consumer waiting for messages sent to the
        other."""
        pids, _, _ = self.unlinked_round("unlinked")
        self.finish(pids)

    def test_queue_opened_by_each_before_the_unlink_comes_back_as_two_descriptions(self):
        """mqtree: the consumer opened the queue itself (O_RDONLY) before the
        producer unlinked it: two descriptions of one queue that no name
        reaches. The producer's record makes it (its 4 messages once); the
        producer opens it again through /proc/self/fd with the consumer's flags
        and hands that over: still two descriptions (kcmp), one queue (the
        consumer gets all 40), the consumer's read-only."""
        pids, before, after = self.unlinked_round("separately")
        self.assertEqual([(p, f & 3) for p, _, f, _ in before], [(pids[0], 2), (pids[1], 0)])
        # O_LARGEFILE aside: open(2) through /proc/self/fd sets it (a queue ignores
        # it; docs/trees.md "Objects with no name opened by two members").
        self.assertEqual([(p, fd, f & ~0o100000) for p, fd, f, _ in after],
                         [(p, fd, f & ~0o100000) for p, fd, f, _ in before])
        self.assertEqual(read(f"{self.m}/{pids[0]}/reason"), "", "it checkpoints again")
        (pa, fa, _, _), (pb, fb, _, _) = after
        self.assertEqual(os.stat(f"/proc/{pa}/fd/{fa}").st_ino, os.stat(f"/proc/{pb}/fd/{fb}").st_ino)
        self.assertIn(kcmp_file(pa, fa, pb, fb), (1, 2), "two open file descriptions")
        self.finish(pids)

# mqtree: a deleted log that two processes opened separately before the
# unlink: the parent appends numbered lines (O_WRONLY | O_APPEND), the child
# reads them through its own read-only description. The child reads the first
# DL_READ lines, writes `half` and waits for SIGUSR1 (the parent waits too,
# with DL_N // 2 lines written); then the parent appends the rest and "-1",
# and the child reads on from its offset: every line once, in order, the
# count and sum exact, its offset what it was.
DL_N, DL_READ = 40, 7
DELETED_TREE = f"""
import os, signal
N, K = {DL_N}, {DL_READ}
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
log = os.open("log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
kid = os.fork()
if kid == 0:
    os.close(log)
    r = os.open("log", os.O_RDONLY)  # a description of its own
    open("opened", "w").close()
    while not os.path.exists("appended"):
        signal.sigtimedwait({{signal.SIGUSR2}}, 0.01)
    want = sum(len(f"{{i}}\\n") for i in range(K))
    first = os.read(r, want).decode().split()
    at = os.lseek(r, 0, os.SEEK_CUR)
    open("half", "w").close()
    signal.sigwait({{signal.SIGUSR1}})
    bad = [] if at == os.lseek(r, 0, os.SEEK_CUR) else ["offset moved"]
    if os.get_blocking(r) is not True or os.fstat(r).st_nlink != 0:
        bad.append("flags or link count")
    rest = b""
    while not rest.endswith(b"-1\\n"):
        b = os.read(r, 4096)
        rest += b
        if not b:
            signal.sigtimedwait({{signal.SIGUSR2}}, 0.01)
    nums = [int(x) for x in first + rest.decode().split()[:-1]]
    if nums != list(range(N)):
        bad.append(f"lines {{nums[:3]}}... ({{len(nums)}})")
    with open("kid-out", "w") as f:
        f.write("FAIL " + "; ".join(bad) + "\\n" if bad else f"PASS {{len(nums)}} {{sum(nums)}} {{at}}\\n")
    os._exit(0)
while not os.path.exists("opened"):
    signal.sigtimedwait({{signal.SIGUSR2}}, 0.01)
os.unlink("log")
for i in range(N // 2):
    os.write(log, f"{{i}}\\n".encode())
open("appended", "w").close()
signal.sigwait({{signal.SIGUSR1}})
end = os.lseek(log, 0, os.SEEK_CUR)
for i in range(N // 2, N):
    os.write(log, f"{{i}}\\n".encode())
os.write(log, b"-1\\n")
os.waitpid(kid, 0)
with open("kid-out") as f:
    theirs = f.read()
ok = end == os.fstat(log).st_size - sum(len(f"{{i}}\\n") for i in range(N // 2, N)) - 3
with open("out", "w") as f:
    f.write(theirs if ok else "FAIL parent offset " + str(end) + "\\n")
"""


def fds_on(pids, link):
    """[(pid, fd, flags, pos)] of every fd of pids whose link is `link`, or
    (`link` None) ends with " (deleted)": a restored deleted file is a copy
    with a name of its own (state/file_deleted.cc)."""
    out = []
    for p in pids:
        for fd in sorted(int(n) for n in os.listdir(f"/proc/{p}/fd")):
            try:
                at = os.readlink(f"/proc/{p}/fd/{fd}")
                if at != link and (link or not at.endswith(" (deleted)")):
                    continue
            except OSError:
                continue
            with open(f"/proc/{p}/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
            out.append((p, fd, int(info["flags"], 8) & ~0o2000000, int(info["pos"])))  # no O_CLOEXEC
    return out


class DeletedTree(trees_mount_test.TreeBase):
    """mqtree: a deleted log two python processes opened separately (an
    appender and a reader, each its own offset), checkpointed mid-read,
    killed and restored into its pids: the parent's record makes the file,
    the parent opens it again through /proc/self/fd with the reader's flags
    and offset and hands that over."""

    def path(self, name):
        return os.path.join(self.dir, name)

    def deleted_tree(self):
        return python_tree(self, "dl.py", DELETED_TREE)

    def finish(self, pids):
        for p in pids:
            os.kill(p, 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        at = sum(len(f"{i}\n") for i in range(DL_READ))
        self.assertEqual(self.out(), f"PASS {DL_N} {DL_N * (DL_N - 1) // 2} {at}\n")

    def test_unrestored_deleted_tree_passes(self):
        proc, pids = self.deleted_tree()
        self.finish(pids)

    def test_deleted_log_opened_by_each_comes_back_as_two_descriptions(self):
        proc, pids = self.deleted_tree()
        before = fds_on(pids, None)
        self.assertEqual([os.readlink(f"/proc/{p}/fd/{fd}") for p, fd, _, _ in before],
                         [self.path("log") + " (deleted)"] * 2)
        self.assertEqual([(p, f & 0o3) for p, _, f, _ in before], [(pids[0], 1), (pids[1], 0)])
        self.round_trip(proc, pids)
        after = fds_on(pids, None)
        self.assertEqual(after, before)  # flags (O_APPEND, access) and offsets
        (pa, fa, _, _), (pb, fb, _, _) = after
        self.assertEqual(os.stat(f"/proc/{pa}/fd/{fa}").st_ino, os.stat(f"/proc/{pb}/fd/{fb}").st_ino)
        self.assertIn(kcmp_file(pa, fa, pb, fb), (1, 2), "two open file descriptions")
        self.finish(pids)


# mqtree: a read-only deleted file (mode 0444) that a normal user's parent and
# child each opened read-only before the unlink; the child's offset is 5.
RO_TREE = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
w = os.open("ro", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
os.write(w, b"read only\\n")
os.close(w)
r = os.open("ro", os.O_RDONLY)
kid = os.fork()
if kid == 0:
    os.close(r)
    mine = os.open("ro", os.O_RDONLY)
    os.lseek(mine, 5, os.SEEK_SET)
    open("opened", "w").close()
    signal.sigwait({signal.SIGUSR1})
    ok = os.lseek(mine, 0, os.SEEK_CUR) == 5 and os.read(mine, 9) == b"only\\n"
    with open("out", "w") as f:
        f.write("PASS\\n" if ok and os.fstat(mine).st_nlink == 0 else "FAIL\\n")
    os._exit(0)
while not os.path.exists("opened"):
    signal.sigtimedwait({signal.SIGUSR2}, 0.01)
os.unlink("ro")
open("half", "w").close()
signal.sigwait({signal.SIGUSR1})
os.waitpid(kid, 0)
"""
REOPEN_USER, REOPEN_GROUP = "s12mqu1", "s12mqg1"


class ReopenUser(InGroup, DeletedTree):
    """mqtree: a normal user in the restore_pid_group group restores its own
    tree of two descriptions of a deleted read-only file as itself, and its
    edits of the child's description are refused with nothing made: write
    access the file's mode does not give (the kernel refuses the reopen),
    another fd of the parent (no object without a name), a giver that is not
    earlier, another inode, flags or an offset out of range."""

    user, group, prefix, mode = REOPEN_USER, REOPEN_GROUP, "crfs-s12mq-", 0o755

    def test_group_member_restores_its_reopened_file_and_its_edits_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        pids, img, procs = self.user_round(as_user, run, "ro.py", RO_TREE)
        # the child's own description of "ro" (fds 0-2: the parent's, given as they are)
        (fd, (n, kind, ino, share)), = [(k, v) for k, v in procs[1]["fds"].items()
                                        if v[1] == 52 and k > 2]
        self.assertIsNotNone(share)
        for flags in (1, 2):  # write access: the kernel refuses the parent's reopen
            self.refused_as_user(as_user, run, img, pids, [f"fd#{n}.open_flags={flags}"],
                                 "again (/proc/self/fd) for another process of the tree that "
                                 "opened it itself: Permission denied", made=True)
        for edits, expect in [
            ([f"share-fd#{share}.owner_fd=0"], "which is no unlinked queue, deleted file or directory or memfd"),
            ([f"share-fd#{share}.owner=1"], "which is not an earlier process of the tree"),
            ([f"fd#{n}.ino={ino + 1}"], "which is no unlinked queue, deleted file or directory or memfd"),
            ([f"fd#{n}.open_flags={0o10000000}"], "which is no unlinked queue, deleted file"),
            ([f"fd#{n}.pos=-1"], "which is no unlinked queue, deleted file or directory or memfd"),
            ([f"share-fd#{share}.end=5"], "share end 5"),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
        self.restore_as(run, pw, img, pids)
        self.assertIn(kcmp_file(pids[0], 3, pids[1], fd), (1, 2), "two open file descriptions")
        for p in pids:
            os.kill(p, 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertEqual(self.out(), "PASS\n")

    test_unrestored_deleted_tree_passes = None
    test_deleted_log_opened_by_each_comes_back_as_two_descriptions = None


DG_N = 16  # datagrams each way on each socket, half queued across the checkpoint (max_dgram_qlen: 10)

# A parent and its child exchange datagrams over a SOCK_DGRAM socketpair and
# over a bound socket (r.sock, the parent's) that the child's named socket
# (c.sock) is connected to. Each side sends half (the child first), writes its
# marker and waits for SIGUSR1 (the parent's passes it on) with the other's
# datagrams unread, then reads them, sends the other half and reads the rest:
# in order, each from its sender's address, with a CRC over the payloads.
DGRAM_TREE = f"""
import os, signal, socket, zlib
N = {DG_N}
def payload(who, sock, i):
    return f"{{who}}{{sock}}{{i}}:".encode() + bytes((i * 7 + j) % 251 for j in range(i * 13 % 200))
def read_all(s, who, sock, want_from, bad, crc, part):
    for i in range(part * N // 2, (part + 1) * N // 2):
        d, a = s.recvfrom(4096)
        if d != payload(who, sock, i):
            bad.append(f"{{sock}} datagram {{i}} from {{who}}: {{d[:12]!r}}")
        if a != want_from:
            bad.append(f"{{sock}} datagram {{i}} from {{a!r}}, not {{want_from!r}}")
        crc = zlib.crc32(d, crc)
    return crc
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
pa, pb = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
r.bind("r.sock")
kid = os.fork()
if kid == 0:
    pa.close()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.bind("c.sock")
    c.connect("r.sock")
    for i in range(N // 2):
        pb.send(payload("k", "p", i))
        c.send(payload("k", "c", i))
    open("kid-half", "w").close()
    signal.sigwait({{signal.SIGUSR1}})
    bad, crc = [], 0
    for part in (0, 1):  # what was queued, then the second half (queues stay below 10)
        crc = read_all(pb, "p", "p", None, bad, crc, part)
        crc = read_all(c, "p", "c", "r.sock", bad, crc, part)
        for i in range(N // 2, N) if part == 0 else ():
            pb.send(payload("k", "p", i))
            c.send(payload("k", "c", i))
    ok = not bad and c.getpeername() == "r.sock" and c.getsockname() == "c.sock"
    with open("kid-out", "w") as f:
        f.write(f"{{crc}}\\n" if ok else "FAIL " + "; ".join(bad) + "\\n")
    os._exit(0)
pb.close()
while not os.path.exists("kid-half"):  # c.sock is bound
    signal.sigtimedwait({{signal.SIGUSR1}}, 0.01)
for i in range(N // 2):
    pa.send(payload("p", "p", i))
    r.sendto(payload("p", "c", i), "c.sock")
open("half", "w").close()
signal.sigwait({{signal.SIGUSR1}})
os.kill(kid, signal.SIGUSR1)
bad, crc = [], 0
for part in (0, 1):
    crc = read_all(pa, "k", "p", None, bad, crc, part)
    crc = read_all(r, "k", "c", "c.sock", bad, crc, part)
    for i in range(N // 2, N) if part == 0 else ():
        pa.send(payload("p", "p", i))
        r.sendto(payload("p", "c", i), "c.sock")
os.waitpid(kid, 0)
with open("kid-out") as f:
    theirs = f.read().strip()
with open("out", "w") as f:
    f.write("FAIL " + "; ".join(bad) + " " + theirs + "\\n" if bad or not theirs.isdigit()
            else f"PASS {{4 * N}} {{crc}} {{theirs}}\\n")
"""


class DgramBase(trees_mount_test.TreeBase):
    """A python3 datagram tree (`tree()`) that ends writing `PASS {passes} ...`
    to out when its top gets SIGUSR1."""

    def path(self, name):
        return os.path.join(self.dir, name)

    def finish(self, pids):
        os.kill(pids[0], 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertTrue(self.out().startswith(f"PASS {self.passes} "), self.out())
        return self.out()

    def restored_as_without_crfs(self, sock, files):
        """Checkpoint, kill, restore into the same pids (`sock` bound again),
        then the same run without crfs (`files` removed first) says the same."""
        proc, pids = self.tree()
        self.round_trip(proc, pids)
        self.assertTrue(S_ISSOCK(os.lstat(self.path(sock)).st_mode), f"{sock} bound again")
        restored = self.finish(pids)
        for f in files:
            os.unlink(self.path(f))
        proc, pids = self.tree()
        self.assertEqual(self.finish(pids), restored)

    def restored_as_user(self, run, pw, img, pids, sock):
        """The user (`run`, passwd entry `pw`) restores `img` into the same
        pids: every process has the user's ids, `sock` is bound again by the
        user, and the tree ends with PASS."""
        if os.path.lexists(self.path(sock)):  # the original's; a refused restore removed its own
            os.unlink(self.path(sock))  # the user binds it again
        # The refused restores before made and killed these sockets, and removed the
        # socket files they bound (any left: EADDRINUSE below); one that was in flight
        # on a hand-over channel is freed by the kernel's unix GC after the close. Wait
        # until every abstract name of the image is free again.
        abstract = [b[5] for p in UnixTree.image_facts(self, img) for b in p["bound"].values()
                    if b[5].startswith(b"\0")]
        wait_for(lambda: all(abstract_free(n) for n in abstract), f"{abstract} to be free")
        self.restore_as(run, pw, img, pids)
        self.assertEqual(os.lstat(self.path(sock)).st_uid, pw.pw_uid)
        self.finish(pids)


class DgramTree(DgramBase):
    """Datagrams between a parent and its child (docs/trees.md "Datagrams
    between members"), checkpointed with datagrams queued both ways."""

    passes = 4 * DG_N

    def tree(self):
        return python_tree(self, "dg.py", DGRAM_TREE)

    def test_dgram_tree_comes_back_with_its_queued_datagrams(self):
        self.restored_as_without_crfs(
            "c.sock", ("r.sock", "c.sock", "half", "kid-half", "kid-out", "out"))


DG_USER, DG_GROUP = "s10dgu1", "s10dgg1"


class DgramUser(InGroup, DgramTree):
    """A normal user in the restore_pid_group group restores its own datagram
    tree as itself (c.sock bound again by the user), and its edits of the
    handed-over datagram socket are refused with nothing made: the child's fd
    naming the parent's receiver (a socket the giver holds itself), the given
    socket's record connected to an unknown socket instead of the receiver
    (connected to itself, it would still be in the receiver's group through
    the datagrams the receiver queued at it: s12), a sender that is no
    unix-bound socket of the image."""

    user, group, prefix, mode = DG_USER, DG_GROUP, "crfs-s10dg-", 0o777

    def test_group_member_restores_its_dgram_tree_and_its_edits_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        with open(self.path("dg.py"), "w") as f:
            f.write(DGRAM_TREE)
        proc = self.start(None, 2, argv=["/usr/bin/python3", "dg.py"], user_prefix=as_user)
        wait_for(lambda: os.path.exists(self.path("half")), "both to pause")
        pids = tree_of(proc.pid)
        wait_for(lambda: all(stat(p)[0] == "S" for p in pids), "both to wait")
        img = self.path("tree.img")
        r = run(f"cp {self.m}/{pids[0]}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/reason"))
        self.kill_all(proc, pids)
        procs = UnixTree.image_facts(self, img)
        bound = procs[0]["bound"]
        # the child's socket: its record moved to the parent's, connected to the receiver
        c = next(f for f in procs[1]["fds"].values() if f[2] in bound and bound[f[2]][2])
        rcv = bound[c[2]][2]
        self.assertEqual((c[1], bound[c[2]][1], bound[c[2]][3], bound[rcv][2]),
                         (52, 0, socket.SOCK_DGRAM, 0), bound)
        self.assertEqual(procs[1]["bound"], {})
        given = "no datagram socket of its group"
        for edits, expect in [
            ([f"fd#{c[0]}.ino={rcv}"], given),
            ([f"unix-bound#{bound[c[2]][0]}.peer=12345"], f"unix-bound {c[2]}: peer 12345"),
            (["unix-sender#0.sender=1"], "sender record for"),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
        self.restored_as_user(run, pw, img, pids, "c.sock")

    test_dgram_tree_comes_back_with_its_queued_datagrams = None


# Unconnected senders (a syslog-like service): the parent binds srv.sock, its
# children bind a.sock and an abstract name and sendto() it without
# connecting, ABAB... one at a time (each queued before the next), and the
# parent answers each with sendto() to its address. Checkpointed with DGU_N/2
# queued at srv.sock and DGU_N/4 at each child's; then each side reads what
# was queued (in order, from the right address), sends the second half and
# reads it: a CRC over every payload, in the order read (the second half per
# sender, their interleaving being the kernel's).
DGU_N = 8  # datagrams each way per child; srv.sock holds DGU_N (max_dgram_qlen: 10)
DGU_TREE = f"""
import os, signal, socket, zlib
N = {DGU_N}
NAMES = {{"a": "a.sock", "b": b"\\0crfs-dgu-%d" % os.getpid()}}
def payload(who, i):
    return f"{{who}}{{i}}:".encode() + bytes((i * 7 + j) % 251 for j in range(i * 13 % 200))
def check(d, a, who, i, want_from, bad):
    if d != payload(who, i):
        bad.append(f"datagram {{i}} of {{who}}: {{d[:12]!r}}")
    if a != want_from:
        bad.append(f"datagram {{i}} of {{who}} from {{a!r}}, not {{want_from!r}}")
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
srv.bind("srv.sock")
kids, chans = {{}}, {{}}
for who in "ab":
    mine, theirs = socket.socketpair()
    kid = os.fork()
    if kid == 0:
        for ch in list(chans.values()) + [mine, srv]:
            ch.close()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        c.bind(NAMES[who])
        i = 0
        while theirs.recv(1):  # one datagram each time the parent asks
            c.sendto(payload(who, i), "srv.sock")
            i += 1
            theirs.send(b"y")
        theirs.close()
        signal.sigwait({{signal.SIGUSR1}})
        bad, crc = [], 0
        for part in (0, 1):
            for i in range(part * N // 2, (part + 1) * N // 2):
                d, a = c.recvfrom(4096)
                check(d, a, "s" + who, i, "srv.sock", bad)
                crc = zlib.crc32(d, crc)
            for i in range(N // 2, N) if part == 0 else ():
                c.sendto(payload(who, i), "srv.sock")
        if c.getsockname() != NAMES[who]:
            bad.append(f"getsockname {{c.getsockname()!r}}")
        with open(f"kid-{{who}}-out", "w") as f:
            f.write(f"{{crc}}\\n" if not bad else "FAIL " + "; ".join(bad) + "\\n")
        os._exit(0)
    theirs.close()
    kids[who], chans[who] = kid, mine
for i in range(N):  # a, b, a, b, ...: each queued before the next
    chans["ab"[i % 2]].send(b"x")
    chans["ab"[i % 2]].recv(1)
for ch in chans.values():
    ch.close()
for i in range(N // 2):
    for who in "ab":
        srv.sendto(payload("s" + who, i), NAMES[who])
open("half", "w").close()
signal.sigwait({{signal.SIGUSR1}})
for k in kids.values():
    os.kill(k, signal.SIGUSR1)
bad, crc, addr = [], 0, {{}}
for i in range(N // 2):  # queued across the checkpoint: a, b, a, b, ...
    for who in "ab":
        d, a = srv.recvfrom(4096)
        check(d, a, who, i, NAMES[who], bad)
        addr[who] = a
        crc = zlib.crc32(d, crc)
for i in range(N // 2, N):
    for who in "ab":
        srv.sendto(payload("s" + who, i), addr.get(who, NAMES[who]))  # its address, as received
got = {{"a": [], "b": []}}
for _ in range(N):
    d, a = srv.recvfrom(4096)
    got["a" if a == NAMES["a"] else "b"].append((d, a))
for who in "ab":
    for i, (d, a) in zip(range(N // 2, N), got[who]):
        check(d, a, who, i, NAMES[who], bad)
        crc = zlib.crc32(d, crc)
theirs = []
for who in "ab":
    os.waitpid(kids[who], 0)
    with open(f"kid-{{who}}-out") as f:
        theirs.append(f.read().strip())
with open("out", "w") as f:
    f.write("FAIL " + "; ".join(bad) + " " + " ".join(theirs) + "\\n"
            if bad or not all(t.isdigit() for t in theirs)
            else f"PASS {{4 * N}} {{crc}} {{' '.join(theirs)}}\\n")
"""


class DgramUnconnected(DgramBase):
    """Unconnected senders in children (docs/trees.md "Datagrams between
    members"): the parent makes the children's sockets at restore (their
    datagram group's maker), sends each queued datagram from its sender and
    hands the sockets over."""

    passes = 4 * DGU_N

    def tree(self, user_prefix=()):
        return python_tree(self, "dgu.py", DGU_TREE, size=3, user_prefix=user_prefix)

    def test_unconnected_senders_come_back_with_their_queued_datagrams(self):
        self.restored_as_without_crfs(
            "a.sock", ("srv.sock", "a.sock", "half", "kid-a-out", "kid-b-out", "out"))


DGU_USER, DGU_GROUP = "s12dgu1", "s12dgg1"


def name_edits(n, name, dev=None, ino=None):
    """crfs-imgedit edits that bind unix-bound record `n` to `name` (bytes)
    instead (and record the socket file dev/ino a stale path must have)."""
    edits = [f"unix-bound#{n}.name_len={len(name)}"]
    padded = name + b"\0" * (-len(name) % 8)
    for k in range(0, len(padded), 8):
        edits.append(f"unix-bound#{n}@{104 + k}:8=0x{int.from_bytes(padded[k:k + 8], 'little'):x}")
    if dev is not None:
        edits += [f"unix-bound#{n}.path_dev={dev}", f"unix-bound#{n}.path_ino={ino}"]
    return edits


class DgramUnconnectedUser(InGroup, DgramUnconnected):
    """A normal user in the restore_pid_group group restores its own tree of
    unconnected senders as itself (a.sock bound again by the user, made by
    the parent), and its edits of a handed-over sender are refused with
    nothing made: the sender's name made another user's live socket path, or
    a stale socket file of root's in a directory the user cannot write (the
    unlink is the kernel's to refuse, and the file stays), or another
    member's name (srv.sock, the other child's abstract name); a datagram's
    sender or the taker's socket an unknown socket."""

    user, group, prefix, mode = DGU_USER, DGU_GROUP, "crfs-s12dgu-", 0o777

    def test_group_member_restores_its_senders_and_its_edits_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = self.tree(as_user)
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        procs = UnixTree.image_facts(self, img)
        bound = procs[0]["bound"]
        # both children's sockets: records moved to the parent's, given (share-fd)
        given = {b[5]: (f, b) for p in procs[1:] for f in p["fds"].values()
                 if f[2] in bound and f[1] == 52 for b in [bound[f[2]]]}
        self.assertEqual(sorted(given), [b"\0crfs-dgu-%d" % pids[0], b"a.sock"], bound)
        self.assertEqual([p["bound"] for p in procs[1:]], [{}, {}])
        a_fd, a = given[b"a.sock"]
        other = tempfile.mkdtemp(prefix="crfs-s12dgu-root-")  # root's, 0700 -> 0755
        os.chmod(other, 0o755)
        live = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        live.bind(os.path.join(other, "live.sock"))
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        stale_path = os.path.join(other, "stale.sock")
        stale.bind(stale_path)
        stale.close()  # its file stays: a stale socket file of root's
        os.chmod(stale_path, 0o777)  # connect() says ECONNREFUSED: only the unlink is refused
        st = os.lstat(stale_path)
        try:
            for edits, expect, made in [
                (name_edits(a[0], os.path.join(other, "live.sock").encode()),
                 "taken by another file or a live socket", False),
                (name_edits(a[0], stale_path.encode(), st.st_dev, st.st_ino), "Permission denied",
                 True),
                (name_edits(a[0], b"srv.sock"), "Address already in use", True),
                (name_edits(a[0], b"\0crfs-dgu-%d" % pids[0]), "Address already in use", True),
                (["unix-sender#0.sender=12345"], "sender record for", False),
                ([f"fd#{a_fd[0]}.ino=12345"], "no datagram socket of its group", False),
            ]:
                self.refused_as_user(as_user, run, img, pids, edits, expect, made)
                self.assertTrue(S_ISSOCK(os.lstat(stale_path).st_mode), "root's file stays")
        finally:
            live.close()
            os.unlink(os.path.join(other, "live.sock"))
            os.unlink(stale_path)
            os.rmdir(other)
        self.restored_as_user(run, pw, img, pids, "a.sock")

    test_unconnected_senders_come_back_with_their_queued_datagrams = None


# A parent makes a socketpair, gives one end to each of two children and
# closes both: SO_PEERCRED of each end names the parent. Each child queues
# bytes to the other, writes its marker and waits for SIGUSR1 (the parent
# waits for both); then checks SO_PEERCRED (the parent's pid and the ids),
# reads what was queued, sends and reads a second round: "ok" or "FAIL ...".
# B's end has SO_KEEPALIVE set (a unix-options record, moved to A's records).
PAIR_N = 3000  # bytes each way, queued across the checkpoint
PAIR_TREE = f"""
import os, signal, socket, struct
N = {PAIR_N}
signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
def kid(mine, other, name):
    other.close()
    if name == "B":
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    mine.sendall(name.encode() * N)
    open(name + "-half", "w").close()
    signal.sigwait({{signal.SIGUSR1}})
    bad = []
    pid, uid, gid = struct.unpack("3i", mine.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if (pid, uid, gid) != (os.getppid(), os.geteuid(), os.getegid()):
        bad.append(f"SO_PEERCRED {{pid}} {{uid}} {{gid}}")
    if mine.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != (name == "B"):
        bad.append("SO_KEEPALIVE")
    them = "B" if name == "A" else "A"
    for rnd in (0, 1):
        got = b""
        while len(got) < N:
            d = mine.recv(N - len(got))
            if not d:
                break
            got += d
        if got != them.encode() * N:
            bad.append(f"round {{rnd}}: {{len(got)}} bytes")
        if rnd == 0:
            mine.sendall(name.encode() * N)
    with open(name + "-out", "w") as f:
        f.write("FAIL " + "; ".join(bad) if bad else "ok")
    os._exit(0)
kids = []
for mine, other, name in ((a, b, "A"), (b, a, "B")):
    k = os.fork()
    if k == 0:
        kid(mine, other, name)
    kids.append(k)
a.close()
b.close()
while not (os.path.exists("A-half") and os.path.exists("B-half")):
    signal.sigtimedwait({{signal.SIGUSR1}}, 0.01)
open("half", "w").close()
for k in kids:
    os.waitpid(k, 0)
outs = [open(n + "-out").read() for n in ("A", "B")]
with open("out", "w") as f:
    f.write("PASS\\n" if outs == ["ok", "ok"] else "FAIL " + " ".join(outs) + "\\n")
"""


class PairTree(trees_mount_test.TreeBase):
    """A socketpair made by the parent, held by its two children (docs/trees.md
    "Sharing between members"): the parent makes it again at restore."""

    def path(self, name):
        return os.path.join(self.dir, name)

    def pair_tree(self, user_prefix=()):
        with open(self.path("pair.py"), "w") as f:
            f.write(PAIR_TREE)
        proc = self.start(None, 3, argv=["/usr/bin/python3", "pair.py"], user_prefix=user_prefix)
        wait_for(lambda: os.path.exists(self.path("half")), "the tree's pause")
        pids = tree_of(proc.pid)
        wait_for(lambda: all(stat(p)[0] == "S" for p in pids), "all three to wait")
        return proc, pids

    def finish(self, pids):
        for p in pids[1:]:
            os.kill(p, 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertEqual(self.out(), "PASS\n")

    def makers(self, img, kind=101):
        """The unix-maker records (type 101; 103: unix-options) per process:
        [(ino, maker or options)]."""
        with open(img, "rb") as f:
            data = f.read()
        off = struct.unpack_from("<I", data, 12)[0]
        procs = []
        while off < len(data):
            typ, _, length = struct.unpack_from("<IIQ", data, off)
            if typ == 0xffffffff:
                break
            if typ == 64 or not procs:
                procs.append([])
            if typ == kind:
                procs[-1].append(struct.unpack_from("<QI", data, off + 16))
            off += 16 + length
        return procs

    def test_unrestored_pair_tree_passes(self):
        """The workload's own check, without crfs: it can fail, and does not."""
        proc, pids = self.pair_tree()
        self.finish(pids)

    def test_parent_makes_its_childrens_socketpair_again(self):
        proc, pids = self.pair_tree()
        self.assertEqual(read(f"{self.m}/{pids[0]}/reason"), "")
        img = self.checkpoint(pids[0])
        makers = self.makers(img)
        self.assertEqual([len(m) for m in makers], [0, 1, 0], makers)
        self.assertEqual(makers[1][0][1], 0, makers)
        options = self.makers(img, 103)  # B's end, its record moved to A's
        self.assertEqual([[o[1] for o in p] for p in options], [[], [1], []], options)
        self.kill_all(proc, pids)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(tree_of(pids[0]), pids)
        self.finish(pids)


PAIR_USER, PAIR_GROUP = "s11sku1", "s11skg1"


class PairUser(InGroup, PairTree):
    """A normal user in the restore_pid_group group restores its own pair tree
    as itself (SO_PEERCRED names its uid), and its edits of the unix-maker
    record are refused with nothing made: a maker that is not an earlier
    process (the taker itself, a later one, none), a socket the image does not
    record, a reserved field set; and of the unix-options record of B's end
    (an unknown option bit, reserved set, a socket the image does not
    record). Child A alone is refused at checkpoint (its
    sibling holds the other end)."""

    user, group, prefix, mode = PAIR_USER, PAIR_GROUP, "crfs-s11sk-", 0o755

    def test_group_member_restores_its_pair_tree_and_its_edits_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = self.pair_tree(as_user)
        img = self.path("tree.img")
        r = run(f"cp {self.m}/{pids[0]}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/reason"))
        r = run(f"cp {self.m}/{pids[1]}/image {self.path('one.img')}")  # child A alone
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("a socket shared with another process", read(f"{self.m}/{pids[1]}/reason"))
        self.kill_all(proc, pids)
        ino = self.makers(img)[1][0][0]
        top = pids[0]
        for edits, expect in [
            (["unix-maker#0.maker=1"], "which is not an earlier process of the tree"),
            (["unix-maker#0.maker=2"], "which is not an earlier process of the tree"),
            (["unix-maker#0.maker=4294967295"], "which is not an earlier process of the tree"),
            ([f"unix-maker#0.ino={ino + 1000000}"], "no such socket"),
            (["unix-maker#0.reserved=1"], "no such socket"),
            (["unix-options#0.options=2"], "unix-options record for unix socket"),
            (["unix-options#0.reserved=1"], "unix-options record for unix socket"),
            ([f"unix-options#0.ino={ino + 1000000}"], "unix-options record for unix socket"),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
        r = run(f"mkdir {self.m}/{top} && cp {img} {self.m}/{top}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        self.assertEqual(tree_of(top), pids)
        for p in pids:
            self.assertIn(f"Uid:\t{pw.pw_uid}\t{pw.pw_uid}", read(f"/proc/{p}/status"))
        self.finish(pids)

    test_unrestored_pair_tree_passes = None
    test_parent_makes_its_childrens_socketpair_again = None


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
