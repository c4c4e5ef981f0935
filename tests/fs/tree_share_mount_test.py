#!/usr/bin/env python3
"""What the processes of a tree share comes back shared (issues 10 and 11,
docs/trees.md "Sharing between members"), through the mounted tree:

    producer | filter | consumer     # under one bash, bytes in flight in both pipes
    cp /crfs/BASH/image snap.img; kill -9 the tree
    mkdir /crfs/BASH && cp snap.img /crfs/BASH/image
    -> the consumer's byte count and CRC are exact

and a parent and its child writing one log through ONE open file description
(`exec >log 2>&1; child & ...`, no O_APPEND: separate descriptions would
overwrite each other's lines) are one description again after the restore
(kcmp KCMP_FILE) and keep writing at the shared offset. Edited share-fd
records (a giver that is not earlier, out of range, an fd it does not have, a
chain, a bad end, a pipe end or socketpair peer of a file) are refused with
nothing made.

usage: tree_share_mount_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import os
import subprocess
import sys
import tempfile
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, sh, wait_for  # noqa: E402
import threads_mount_test  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, stat, tree_of  # noqa: E402

GROUP_USER, GROUP = "s4sh1", "s4shg"  # test users: the s4sh prefix
TOTAL = 1 << 20       # bytes the producer writes
EARLY = 100_000       # bytes the consumer reads before it waits for `go`

PRODUCER = f"""
import os
fd = 1
buf = bytes((i * 7 + 3) & 0xff for i in range(4096))
left = {TOTAL}
while left:
    chunk = buf[:min(left, 4096)]
    done = 0
    while done < len(chunk):
        done += os.write(fd, chunk[done:])
    left -= len(chunk)
"""

FILTER = """
import os
total = 0
while True:
    b = os.read(0, 4096)
    if not b:
        break
    out = bytes(x ^ 0x5a for x in b)
    done = 0
    while done < len(out):
        done += os.write(1, out[done:])
    total += len(b)
open("filter.out", "w").write(str(total))
"""

CONSUMER = f"""
import os, time, zlib
total, crc = 0, 0
def take(limit):
    global total, crc
    while total < limit:
        b = os.read(0, min(4096, limit - total))
        if not b:
            return False
        total += len(b)
        crc = zlib.crc32(b, crc)
    return True
take({EARLY})
open("early", "w").write(str(total))
while not os.path.exists("go"):  # the test's signal to go on, a file
    time.sleep(0.01)
while take(total + 4096):
    pass
open("cons.out", "w").write(f"{{total}} {{crc}}")
"""

WRITER = """
import os, signal, sys
name = sys.argv[1]
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGTERM])
open(name + ".ready", "w").close()
n = 0
while signal.sigwait([signal.SIGUSR1, signal.SIGTERM]) == signal.SIGUSR1:
    n += 1
    os.write(1, f"{name:6} {n}\\n".encode())
"""


def expected():
    buf = bytes((i * 7 + 3) & 0xff for i in range(4096))
    data = (buf * (TOTAL // 4096 + 1))[:TOTAL]
    return TOTAL, zlib.crc32(bytes(x ^ 0x5a for x in data))


def kcmp_file(pid1, fd1, pid2, fd2):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(312, pid1, pid2, 0, fd1, fd2)  # SYS_kcmp, KCMP_FILE


class Share(trees_mount_test.Tree):
    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def path(self, name):
        return os.path.join(self.dir, name)

    def pipeline(self):
        for name, text in (("prod.py", PRODUCER), ("filt.py", FILTER), ("cons.py", CONSUMER)):
            self.write(name, text)
        py = "/usr/bin/python3"
        proc = self.start(f"{py} prod.py | {py} filt.py | {py} cons.py; echo done > out", 4)
        bash, prod, filt, cons = tree_of(proc.pid)
        # Mid-stream: the consumer has read EARLY bytes and waits; both pipes fill up.
        wait_for(lambda: os.path.exists(self.path("early")), "the consumer's first bytes")
        # (the kernel's function is pipe_write or anon_pipe_write)
        wait_for(lambda: read(f"/proc/{prod}/wchan").endswith("pipe_write") and
                 read(f"/proc/{filt}/wchan").endswith("pipe_write"), "both pipes to be full")
        return proc, [bash, prod, filt, cons]

    def test_pipeline_with_bytes_in_flight_comes_back_exact(self):
        proc, pids = self.pipeline()
        self.round_trip(proc, pids)
        # The producer's write end and the filter's read end are one pipe again.
        prod, filt, cons = pids[1:]
        self.assertEqual(os.stat(f"/proc/{prod}/fd/1").st_ino, os.stat(f"/proc/{filt}/fd/0").st_ino)
        self.assertEqual(os.stat(f"/proc/{filt}/fd/1").st_ino, os.stat(f"/proc/{cons}/fd/0").st_ino)
        self.assertEqual(kcmp_file(pids[0], 2, cons, 2), 0, "bash's stderr is the consumer's")
        self.write("go", "")
        wait_for(lambda: os.path.exists(self.path("cons.out")) and self.out() == "done\n" and
                 gone(pids[0]), "the pipeline to finish")
        total, crc = expected()
        self.assertEqual(read(self.path("cons.out")), f"{total} {crc}")
        self.assertEqual(read(self.path("filter.out")), str(TOTAL))

    def log_tree(self):
        self.write("w.py", WRITER)
        py = "/usr/bin/python3"
        proc = self.start(f"exec >log 2>&1; {py} w.py child & exec {py} w.py parent", 2)
        parent, child = tree_of(proc.pid)
        wait_for(lambda: os.path.exists(self.path("parent.ready")) and
                 os.path.exists(self.path("child.ready")), "the writers")
        return proc, [parent, child]

    def lines(self):
        return read(self.path("log")).splitlines()

    def test_parent_and_child_keep_one_log_description(self):
        proc, pids = self.log_tree()
        parent, child = pids
        self.assertEqual(kcmp_file(parent, 1, child, 1), 0)
        os.kill(parent, 10)
        wait_for(lambda: len(self.lines()) == 1, "the parent's line")
        os.kill(child, 10)
        wait_for(lambda: len(self.lines()) == 2, "the child's line")
        self.assertEqual(read(f"{self.m}/{parent}/reason"), "")
        img = self.checkpoint(parent)
        self.kill_all(proc, pids)
        r = self.restore(img, str(parent))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{parent}/status"))
        self.assertEqual(kcmp_file(parent, 1, child, 1), 0, "one description again")
        self.assertEqual(kcmp_file(parent, 1, child, 2), 0)
        self.assertEqual(stat(child)[1], parent)
        os.kill(parent, 10)
        wait_for(lambda: len(self.lines()) == 3, "the parent's second line")
        os.kill(child, 10)
        wait_for(lambda: len(self.lines()) == 4, "the child's second line")
        self.assertEqual(self.lines(), ["parent 1", "child  1", "parent 2", "child  2"])
        self.assertEqual(os.lseek(os.open(f"/proc/{child}/fd/1", os.O_RDONLY), 0, os.SEEK_END),
                         4 * 9)

    def test_a_big_trees_log_descriptions_come_back_as_they_were(self):
        """Eleven processes, 22 fds of one log: five children write through bash's
        description, five opened their own (and keep bash's as stderr). A tree
        this big has its kcmp sorts made ahead on the tracers (checkpoint.cc
        Presort, session 47): which fds share a description is the same after."""
        self.write("w.py", WRITER)
        py = "/usr/bin/python3"
        script = (f"exec >log 2>&1; for i in 1 2 3 4 5; do {py} w.py s$i & done; "
                  f"for i in 6 7 8 9 10; do (exec >>log; exec {py} w.py o$i) & done; wait")
        proc = self.start(script, 11)
        pids = tree_of(proc.pid)
        wait_for(lambda: all(os.path.exists(self.path(f"{n}.ready")) for n in
                             [f"s{i}" for i in range(1, 6)] + [f"o{i}" for i in range(6, 11)]),
                 "the writers")
        fds = [(p, fd) for p in pids for fd in (1, 2)]

        def shared():
            return [[kcmp_file(a, fa, b, fb) == 0 for (b, fb) in fds] for (a, fa) in fds]
        before = shared()
        self.assertEqual(sum(row.count(True) for row in before), 17 * 17 + 5 * 1,
                         "bash's description held 17 times, five of their own")
        self.round_trip(proc, pids)
        self.assertEqual(shared(), before)

    def test_edited_share_records_are_refused_and_leave_nothing(self):
        proc, pids = self.log_tree()
        parent, child = pids
        img = self.checkpoint(parent)
        self.kill_all(proc, pids)
        cases = [
            (["share-fd#0.owner=1"], "which is not an earlier process of the tree"),
            (["share-fd#0.owner=7"], "which is not an earlier process of the tree"),
            (["share-fd#0.owner_fd=99"], "which has no description of its own there"),
            (["share-fd#0.end=5"], "share end 5"),
            (["share-fd#0.end=1"], "which is no pipe"),
            (["share-fd#0.end=3"], "which is no socketpair end"),
            (["share-fd#0.fd=0"], "kernel-object records for a file"),
            # process 0's fd 1 given in turn: a chain (and a cycle with the child's).
            (["fd#1.kind=52", "fd#1.path="], "a shared fd needs one share-fd record"),
        ]
        for edits, expect in cases:
            self.refused(img, parent, edits, expect)
            for p in pids:
                self.assertFalse(os.path.exists(f"/proc/{p}"), edits)
        r = self.restore(img, str(parent))
        self.assertEqual(r.returncode, 0, r.stderr)




class GroupWriter(threads_mount_test.UserInGroup, Share):
    """A normal user in the group named by -o restore_pid_group restores its
    own tree with a shared log: every description is opened by the user's
    processes with the user's credentials, and comes back as one."""

    user, group = GROUP_USER, GROUP

    def setUp(self):
        self.crfsd_for_group()
        self.tasks = []
        self.dir = tempfile.mkdtemp(prefix="crfs-share-")
        os.chmod(self.dir, 0o755)
        self.pids, self.procs = [], []

    def test_group_member_restores_its_shared_log_as_itself(self):
        pw, as_user, run = self.as_user(GROUP_USER, "--init-groups")
        self.write("w.py", WRITER)
        proc = self.start("exec >log 2>&1; /usr/bin/python3 w.py child & "
                          "exec /usr/bin/python3 w.py parent", 2, user_prefix=as_user)
        parent, child = pids = tree_of(proc.pid)
        wait_for(lambda: os.path.exists(self.path("parent.ready")) and
                 os.path.exists(self.path("child.ready")), "the writers")
        os.kill(parent, 10)
        wait_for(lambda: len(self.lines()) == 1, "the parent's line")
        img = os.path.join(self.dir, "tree.img")
        r = run(f"cp {self.m}/{parent}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.kill_all(proc, pids)
        r = run(f"mkdir {self.m}/{parent} && cp {img} {self.m}/{parent}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{parent}/status"))
        for p in pids:
            self.assertIn(f"Uid:\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}",
                          read(f"/proc/{p}/status"))
        self.assertEqual(kcmp_file(parent, 1, child, 1), 0, "one description again")
        os.kill(child, 10)
        wait_for(lambda: len(self.lines()) == 2, "the child's line")
        self.assertEqual(self.lines(), ["parent 1", "child  1"])

    test_pipeline_with_bytes_in_flight_comes_back_exact = None
    test_parent_and_child_keep_one_log_description = None
    test_edited_share_records_are_refused_and_leave_nothing = None


for _name in dir(trees_mount_test.Tree):  # Tree's own tests run in trees_mount
    if _name.startswith("test_"):
        setattr(Share, _name, None)
        setattr(GroupWriter, _name, None)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
