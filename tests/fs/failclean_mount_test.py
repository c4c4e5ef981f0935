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

usage: failclean_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, processes, tree_of  # noqa: E402
from unix_tree_mount_test import InGroup, abstract_free, python_tree  # noqa: E402

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


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
