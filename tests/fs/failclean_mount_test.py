#!/usr/bin/env python3
"""A failed restore leaves nothing behind (docs/trees.md "A failed restore"):
a normal user (in the group named by -o restore_pid_group) checkpoints their
python3 tree with cp, kills it, and restores an edited image that fails late,
in the last member's stage 1 after every other member was made and bound its
sockets (its nice value lowered: the kernel refuses the writer). When cp
returns, none of the image's pids exists, not even as a zombie (this test is
a child subreaper and does not reap meanwhile: only the daemon can have), no
socket file the restore bound stays, the abstract names are free, and the
intact image restores at once. The same for a single process.

A POSIX message queue the failed restore created is gone too (s14-mqclean),
and only that one: the queue the kill left (the image's, which the restore
uses as it is) and another user's queue of that name stay.

usage: failclean_mount_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, processes, tree_of  # noqa: E402
from unix_tree_mount_test import InGroup, abstract_free, python_tree  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import users  # noqa: E402

USER, GROUP = "s13fcu1", "s13fcg1"

# A parent and two children: child A listens at the path a.sock, child B at an
# abstract name and has a child G. On SIGUSR1 (the parent passes it on) each
# checks its socket: its name, and a connection to it is accepted; the parent
# writes PASS or FAIL to out once every child said "ok".
TREE = r"""
import os, signal, socket, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
def wait():
    signal.sigwait({signal.SIGUSR1})
def check(s, name, out):
    bad = []
    if s.getsockname() != name:
        bad.append(f"name {s.getsockname()!r}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(name)
        a, _ = s.accept()
        c.send(b"x")
        if a.recv(1) != b"x":
            bad.append("no byte")
        a.close()
    with open(out, "w") as f:
        f.write("FAIL " + "; ".join(bad) if bad else "ok")
def listener(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(name)
    s.listen(4)
    return s
kids = []
a = os.fork()
if a == 0:
    s = listener("a.sock")
    open("a-ready", "w").close()
    wait()
    check(s, "a.sock", "a-out")
    os._exit(0)
b = os.fork()
if b == 0:
    name = b"\0crfs-s13fc-%d" % os.getpid()
    s = listener(name)
    g = os.fork()
    if g == 0:
        open("g-ready", "w").close()
        wait()
        with open("g-out", "w") as f:
            f.write("ok")
        os._exit(0)
    open("b-ready", "w").close()
    wait()
    os.kill(g, signal.SIGUSR1)
    os.waitpid(g, 0)
    check(s, name, "b-out")
    os._exit(0)
while not all(os.path.exists(f) for f in ("a-ready", "b-ready", "g-ready")):
    signal.sigtimedwait({signal.SIGUSR1}, 0.01)
open("half", "w").close()
wait()
for k in (a, b):
    os.kill(k, signal.SIGUSR1)
for k in (a, b):
    os.waitpid(k, 0)
outs = [open(f).read() for f in ("a-out", "b-out", "g-out")]
with open("out", "w") as f:
    f.write("PASS\n" if outs == ["ok"] * 3 else "FAIL " + " ".join(outs) + "\n")
"""

# One process listening at the path one.sock; on SIGUSR1 it checks it as above.
SINGLE = TREE.split("kids = []")[0] + r"""
s = listener("one.sock")
open("half", "w").close()
wait()
check(s, "one.sock", "one-out")
with open("out", "w") as f:
    f.write("PASS\n" if open("one-out").read() == "ok" else "FAIL\n")
"""


class FailedRestore(InGroup, trees_mount_test.TreeBase):
    user, group, prefix, mode = USER, GROUP, "crfs-s13fc-", 0o755

    def path(self, name):
        return os.path.join(self.dir, name)

    def failed_late(self, as_user, run, img, pids, edits, expect, files, abstract=()):
        """The user's edited image fails with `expect`; when cp returns none of
        `pids` exists (nothing reaps here meanwhile), none of `files` (socket
        files the restore bound) exists, and the `abstract` names are free."""
        self.refused_as_user(as_user, run, img, pids, edits, expect, made=True)
        self.assertEqual([f for f in files if os.path.lexists(self.path(f))], [], "files left")
        # A socket in flight is freed by the kernel's unix GC after the close.
        wait_for(lambda: all(abstract_free(n) for n in abstract), f"{abstract} to be free")

    def restored(self, run, img, pids):
        top = pids[0]
        r = run(f"mkdir {self.m}/{top} && cp {img} {self.m}/{top}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        self.assertEqual(tree_of(top), pids)
        os.kill(top, signal.SIGUSR1)
        wait_for(lambda: os.path.exists(self.path("out")) and all(gone(p) for p in pids),
                 "the restored tree to end")
        self.assertEqual(read(self.path("out")), "PASS\n")

    def test_tree_that_fails_in_its_last_member_leaves_nothing(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = python_tree(self, "fc.py", TREE, size=4, user_prefix=as_user)
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        order = [p["pid"] for p in processes(roundtrip_mount_test.BUILD, img)]
        self.assertEqual(sorted(order), sorted(pids))
        g = order[-1]  # the grandchild: the last member, made last
        self.failed_late(as_user, run, img, pids, [f"task#{len(order) - 1}.nice=-20"],
                         f"process {g}: restore: setting nice -20", ["a.sock"],
                         [b"\0crfs-s13fc-%d" % p for p in pids])
        self.restored(run, img, pids)

    def test_single_process_that_fails_late_leaves_nothing(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = python_tree(self, "one.py", SINGLE, size=1, user_prefix=as_user)
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        self.failed_late(as_user, run, img, pids, ["task#0.nice=-20"],
                         "restore: setting nice -20", ["one.sock"])
        self.restored(run, img, pids)


# A named POSIX message queue holding two messages; with "tree", a child that
# inherited it. On SIGUSR1 the parent passes it on, receives both messages and
# unlinks the queue.
MQ = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
class Attr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long),
                ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]
name = sys.argv[1].encode()
q = libc.mq_open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, ctypes.byref(Attr(0, 4, 16, 0)))
if q < 0 or any(libc.mq_send(q, m, len(m), 1) for m in (b"one", b"two")):
    raise SystemExit("mq: " + os.strerror(ctypes.get_errno()))
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
kid = os.fork() if sys.argv[2:] == ["tree"] else None
if kid == 0:
    signal.sigwait({signal.SIGUSR1})
    os._exit(0)
open("half", "w").close()
signal.sigwait({signal.SIGUSR1})
if kid:
    os.kill(kid, signal.SIGUSR1)
    os.waitpid(kid, 0)
buf = ctypes.create_string_buffer(16)
got = []
for _ in range(2):
    n = libc.mq_receive(q, buf, 16, None)
    got.append(buf.raw[:n] if n >= 0 else os.strerror(ctypes.get_errno()))
libc.mq_unlink(name)
with open("out", "w") as f:
    f.write("PASS\n" if got == [b"one", b"two"] else f"FAIL {got}\n")
"""

LIBC = ctypes.CDLL(None, use_errno=True)


def queue(name):
    """(inode, messages) of the POSIX message queue `name` (opened as root),
    or None when there is none."""
    q = LIBC.mq_open(name.encode(), os.O_RDONLY)
    if q < 0:
        if ctypes.get_errno() != 2:  # ENOENT
            raise OSError(ctypes.get_errno(), "mq_open " + name)
        return None
    try:
        attr = (ctypes.c_long * 8)()
        if LIBC.mq_getattr(q, attr) != 0:
            raise OSError(ctypes.get_errno(), "mq_getattr " + name)
        return os.fstat(q).st_ino, attr[3]
    finally:
        os.close(q)


class MqueueFailedRestore(InGroup, trees_mount_test.TreeBase):
    """The user's named POSIX message queue and a restore that fails late
    (state/names_made.h): the queue the restore created goes with it; a
    queue of that name that was there before stays."""

    user, group, prefix, mode = "s14mqu1", "s14mqg1", "crfs-s14mq-", 0o755
    restored = FailedRestore.restored

    def path(self, name):
        return os.path.join(self.dir, name)

    def tearDown(self):
        LIBC.mq_unlink(getattr(self, "name", "/").encode())
        super().tearDown()

    def start_queue(self, *mode, size):
        self.name = "/s14mq-" + os.path.basename(self.dir)  # unique on the host
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = python_tree(self, "mq.py", MQ, self.name, *mode, size=size,
                                 user_prefix=as_user)
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        return as_user, run, img, pids

    def test_tree_removes_the_queue_it_created_and_no_other(self):
        as_user, run, img, pids = self.start_queue("tree", size=2)
        late = lambda: self.refused_as_user(  # noqa: E731
            as_user, run, img, pids, ["task#1.nice=-20"],
            f"process {pids[1]}: restore: setting nice -20", made=True)
        # The queue the kill left, as the image holds it: the restore uses it.
        left = queue(self.name)
        self.assertEqual(left[1], 2)
        late()
        self.assertEqual(queue(self.name), left, "the queue that was there before")
        # Removed: the restore creates it, and takes it away again.
        self.assertEqual(LIBC.mq_unlink(self.name.encode()), 0)
        late()
        self.assertIsNone(queue(self.name), "the queue the failed restore created stays")
        # Another user's (root's) queue of that name: refused on it, it stays.
        q = LIBC.mq_open(self.name.encode(), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, None)
        self.assertGreaterEqual(q, 0)
        os.close(q)
        theirs = queue(self.name)
        self.refused_as_user(as_user, run, img, pids, [], "creating or opening by its name")
        self.assertEqual(queue(self.name), theirs, "another user's queue")
        self.assertEqual(LIBC.mq_unlink(self.name.encode()), 0)
        self.restored(run, img, pids)

    def test_single_process_removes_the_queue_it_created(self):
        as_user, run, img, pids = self.start_queue(size=1)
        self.assertEqual(LIBC.mq_unlink(self.name.encode()), 0)
        self.refused_as_user(as_user, run, img, pids, ["task#0.nice=-20"],
                             "restore: setting nice -20", made=True)
        self.assertIsNone(queue(self.name), "the queue the failed restore created stays")
        self.restored(run, img, pids)


# A parent and two children: A listens at the path a.sock, B (the last
# member) holds the file argv[1] open, the parent the POSIX message queue
# argv[2]. On SIGUSR1 the parent passes it on and writes PASS once both ended.
SWAP = r"""
import ctypes, os, signal, socket, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
a = os.fork()
if a == 0:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("a.sock")
    s.listen(4)
    open("a-ready", "w").close()
    signal.sigwait({signal.SIGUSR1})
    os._exit(0)
b = os.fork()
if b == 0:
    f = open(sys.argv[1], "rb")
    open("b-ready", "w").close()
    signal.sigwait({signal.SIGUSR1})
    os._exit(0)
while not all(os.path.exists(f) for f in ("a-ready", "b-ready")):
    signal.sigtimedwait({signal.SIGUSR1}, 0.01)
libc = ctypes.CDLL(None, use_errno=True)
if libc.mq_open(sys.argv[2].encode(), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, None) < 0:
    raise SystemExit("mq_open: " + os.strerror(ctypes.get_errno()))
open("half", "w").close()
signal.sigwait({signal.SIGUSR1})
for k in (a, b):
    os.kill(k, signal.SIGUSR1)
for k in (a, b):
    os.waitpid(k, 0)
libc.mq_unlink(sys.argv[2].encode())
with open("out", "w") as f:
    f.write("PASS\n")
"""

# Binds a socket at argv[1] after removing what is there: its socket file.
REPLACE = ("import os, socket, sys; os.unlink(sys.argv[1]); "
           "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).bind(sys.argv[1])")
# Makes a POSIX message queue argv[1] after removing the one of that name.
REPLACE_MQ = ("import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
              "n = sys.argv[1].encode(); libc.mq_unlink(n); "
              "sys.exit(libc.mq_open(n, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, None) < 0)")


class SocketFileReplaced(InGroup, trees_mount_test.TreeBase):
    """The socket file a failed restore bound, replaced meanwhile by another
    user's or the writer's own socket file, stays (state/unix_bound.h: removed
    only while its name is the file the bind made); so does a POSIX message
    queue replaced by root's or the writer's (the mqueue root is sticky: no
    other user can remove the writer's; state/mqueue.h) The restore is held
    between the bind (member A) and the failure (member B, the last, its nice
    edited) by holdfs: B's stage 1 opening B's file waits until the test
    says go."""

    user, group, prefix, mode = "s14mqu2", "s14mqg2", "crfs-s14mqs-", 0o755
    other, other_group = "s14mqu3", "s14mqg3"
    restored = FailedRestore.restored

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        users.create([cls.other], "-N", "-G", cls.other_group, groups=[cls.other_group])

    @classmethod
    def tearDownClass(cls):
        users.remove([cls.other], [cls.other_group])
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.fs, self.ctl = tempfile.mkdtemp(prefix="crfs-s14mqfs-"), tempfile.mkdtemp(
            prefix="crfs-s14mqctl-")
        self.holdfs = subprocess.Popen(
            [os.path.join(roundtrip_mount_test.BUILD, "tests/fs/holdfs"), self.fs, self.ctl],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.ismount(self.fs), "holdfs to be mounted")

    def tearDown(self):
        LIBC.mq_unlink(getattr(self, "name", "/").encode())
        open(os.path.join(self.ctl, "go"), "w").close()  # nothing held any more
        self.holdfs.terminate()
        try:
            self.holdfs.wait(60)
        finally:
            if os.path.ismount(self.fs):
                subprocess.run(["umount", "-l", self.fs], capture_output=True, timeout=60)
            self.holdfs.kill()
            self.holdfs.wait(60)
            os.rmdir(self.fs)
            shutil.rmtree(self.ctl, ignore_errors=True)
            super().tearDown()

    def path(self, name):
        return os.path.join(self.dir, name)

    def held_and_replaced(self, as_user, run, bad, pids, attacker, mq_attacker):
        """Restores `bad` (B's nice edited) as the user, held in B's stage 1
        once A bound a.sock and the parent created the queue; `attacker` (a
        setpriv prefix) replaces a.sock with a socket file of its own,
        `mq_attacker` the queue; then the restore goes on and fails. The
        attacker's file and queue are there afterwards, and none of `pids`."""
        top, ctl = pids[0], lambda name: os.path.join(self.ctl, name)
        for name in ("held", "go"):
            if os.path.exists(ctl(name)):
                os.unlink(ctl(name))
        with open(ctl("hold"), "w") as f:
            f.write(str(pids[2]))
        cp = subprocess.Popen(as_user + ["sh", "-c", f"mkdir {self.m}/{top} && cp {bad} "
                                         f"{self.m}/{top}/image"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        try:
            # Members make their fds concurrently: B held, A binds and the parent
            # creates the queue meanwhile.
            wait_for(lambda: os.path.exists(ctl("held")), "B's stage 1 to be held")
            wait_for(lambda: os.path.exists(self.path("a.sock")) and queue(self.name),
                     "A's bind and the parent's queue")
            r = subprocess.run(attacker + ["python3", "-c", REPLACE, self.path("a.sock")],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            theirs = os.lstat(self.path("a.sock"))
            made = queue(self.name)
            r = subprocess.run(mq_attacker + ["python3", "-c", REPLACE_MQ, self.name],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            theirs_mq = queue(self.name)
            self.assertNotEqual(theirs_mq, made)
        finally:
            open(ctl("go"), "w").close()
            cp.wait(60)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn(f"process {pids[2]}: restore: setting nice -20",
                      read(f"{self.m}/{top}/status"))
        self.assertEqual(run(f"rmdir {self.m}/{top}").returncode, 0)
        self.assertEqual([p for p in pids if os.path.exists(f"/proc/{p}")], [])
        self.assertTrue(os.path.lexists(self.path("a.sock")), "the attacker's socket file was removed")
        now = os.lstat(self.path("a.sock"))
        self.assertEqual((now.st_ino, now.st_uid), (theirs.st_ino, theirs.st_uid),
                         "the attacker's socket file was removed")
        os.unlink(self.path("a.sock"))
        self.assertEqual(queue(self.name), theirs_mq, "the attacker's queue was removed")
        self.assertEqual(LIBC.mq_unlink(self.name.encode()), 0)

    def test_a_socket_file_replaced_before_the_cleanup_stays(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        self.name = "/s14mqs-" + os.path.basename(self.dir)  # unique on the host
        proc, pids = python_tree(self, "swap.py", SWAP, os.path.join(self.fs, "file"), self.name,
                                 size=3, user_prefix=as_user)
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        order = [p["pid"] for p in processes(roundtrip_mount_test.BUILD, img)]
        self.assertEqual(order, pids)  # B, the last member, holds the file
        os.unlink(self.path("a.sock"))  # the killed A's: a.sock is then the restore's bind
        self.assertEqual(LIBC.mq_unlink(self.name.encode()), 0)  # the restore creates it
        bad = self.path("bad.img")
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        r = subprocess.run(as_user + [edit, img, bad, "task#2.nice=-20"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Another user, whom the directory lets remove and make names.
        os.chmod(self.dir, 0o777)
        other = pwd.getpwnam(self.other)
        self.held_and_replaced(as_user, run, bad, pids, [
            "setpriv", f"--reuid={other.pw_uid}", f"--regid={other.pw_gid}", "--clear-groups"],
            [])  # the queue: root
        os.chmod(self.dir, 0o755)
        # The writer itself.
        self.held_and_replaced(as_user, run, bad, pids, as_user, as_user)
        os.unlink(os.path.join(self.ctl, "hold"))
        self.restored(run, img, pids)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
