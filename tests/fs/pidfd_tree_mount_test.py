#!/usr/bin/env python3
"""pidfd: pidfds between the processes of one tree through the mount (issue
11, docs/trees.md "pidfds between members"): cp /crfs/PID/image, kill -9 the
whole tree, restore into the same pids.

  - /usr/bin/python3 holding a pidfd of its child (PIDFD_NONBLOCK) and of a
    zombie child, the child a pidfd of its parent: after the restore each
    pidfd names the restored process (fdinfo Pid:, pidfd_send_signal), its
    flags kept; the parent learns its child's end by polling its pidfd and
    reaps both children through their pidfds (waitid P_PIDFD: the zombie's
    exit status 7).
  - a normal user in the restore_pid_group group restores its own tree, and
    its edits of the pidfd-target records are refused with nothing made: a
    pid outside the image (pid 1), the holder itself, a process in another
    branch (the child's pidfd made to name its sibling).

usage: pidfd_tree_mount_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, stat, tree_of  # noqa: E402
import unix_tree_mount_test  # noqa: E402

# The parent (pids[0]): a child holding a pidfd of the parent, a zombie child
# (exit 7, not reaped); the parent holds a PIDFD_NONBLOCK pidfd of the child
# and one of the zombie. After SIGUSR1 each checks its pidfds; the parent
# writes PASS to `out` when both did.
TREE = """
import os, select, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
def info(fd, key):
    for line in open(f"/proc/self/fdinfo/{fd}"):
        if line.startswith(key):
            return line.split()[1]
me = os.getpid()
kid = os.fork()
if kid == 0:
    up = os.pidfd_open(me)
    open("kid", "w").close()
    signal.sigwait({signal.SIGUSR1})
    ok = int(info(up, "Pid:")) == me and int(info(up, "flags:"), 8) & os.O_NONBLOCK == 0
    signal.pidfd_send_signal(up, 0)
    with open("kid.out", "w") as f:
        f.write("PASS\\n" if ok else f"FAIL {info(up, 'Pid:')} {info(up, 'flags:')}\\n")
    os._exit(0)
dead = os.fork()  # after the child: zombies come last in the image, and are made last
if dead == 0:
    os._exit(7)
down = os.pidfd_open(kid, os.O_NONBLOCK)
zfd = os.pidfd_open(dead)
while not os.path.exists("kid"):
    signal.sigtimedwait({signal.SIGUSR2}, 0.01)
os.waitid(os.P_PIDFD, zfd, os.WEXITED | os.WNOWAIT)
open("half", "w").close()
signal.sigwait({signal.SIGUSR1})
why = []
if int(info(down, "Pid:")) != kid or not int(info(down, "flags:"), 8) & os.O_NONBLOCK:
    why.append(f"down {info(down, 'Pid:')} {info(down, 'flags:')}")
if int(info(zfd, "Pid:")) != dead:
    why.append(f"zombie {info(zfd, 'Pid:')}")
signal.pidfd_send_signal(down, 0)
p = select.poll()
p.register(down, select.POLLIN)
p.poll()
k = os.waitid(os.P_PIDFD, down, os.WEXITED)
z = os.waitid(os.P_PIDFD, zfd, os.WEXITED)
if k.si_pid != kid or k.si_status != 0 or z.si_pid != dead or z.si_status != 7:
    why.append(f"waitid {k} {z}")
kid_said = open("kid.out").read()
with open("out", "w") as f:
    f.write("PASS\\n" if not why and kid_said == "PASS\\n" else f"FAIL {why} {kid_said}\\n")
"""


def imgedit():
    return os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")


class PidfdTree(trees_mount_test.TreeBase):
    def pidfd_tree(self, user_prefix=()):
        """The tree of TREE, run until it writes `half`: (proc, [parent, kid, zombie])."""
        with open(self.path("pf.py"), "w") as f:
            f.write(TREE)
        proc = subprocess.Popen(list(user_prefix) + ["/usr/bin/python3", "pf.py"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True, cwd=self.dir)
        self.pids.append(proc.pid)
        self.procs.append(proc)
        wait_for(lambda: os.path.exists(self.path("half")), "the tree's pause")
        pids = tree_of(proc.pid)
        self.pids += pids[1:]
        wait_for(lambda: [stat(p)[0] for p in pids] == ["S", "S", "Z"], "the tree to wait")
        return proc, pids

    def path(self, name):
        return os.path.join(self.dir, name)

    def finish(self, pids):
        for p in pids[:2]:
            os.kill(p, 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertEqual(self.out(), "PASS\n")

    def test_unrestored_pidfd_tree_passes(self):
        proc, pids = self.pidfd_tree()
        self.finish(pids)

    def test_pidfds_of_child_parent_and_zombie_name_the_restored_processes(self):
        proc, pids = self.pidfd_tree()
        self.round_trip(proc, pids)
        self.finish(pids)


USER, GROUP = "s12pfu1", "s12pfg1"


class PidfdUser(unix_tree_mount_test.InGroup, PidfdTree):
    """A normal user in the restore_pid_group group: its pidfd tree comes back
    as the user, and its edited pidfd targets are refused, nothing made."""

    user, group, prefix, mode = USER, GROUP, "crfs-s12pf-", 0o755

    def targets(self, img):
        """The image's pidfd-target records, in order: [(fd, pid)]."""
        r = subprocess.run([imgedit(), img, "--list"], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        return [(t["fd"], t["pid"]) for t in recs if t["type"] == "pidfd-target"]

    def test_user_restores_its_pidfd_tree_and_edited_targets_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = self.pidfd_tree(user_prefix=as_user)
        top, kid, dead = pids
        img = self.checkpoint_as(run, top)
        self.kill_all(proc, pids)
        # the parent's two (child, zombie), then the child's (its parent)
        self.assertEqual([pid for _, pid in self.targets(img)], [kid, dead, top])
        for edits, expect in [
            (["pidfd-target#0.pid=1"], "pidfd of pid 1, not another process of this image"),
            ([f"pidfd-target#1.pid={top}"], f"pidfd of pid {top}, not another process"),
            ([f"pidfd-target#2.pid={dead}"],
             f"pidfd of pid {dead}, neither an ancestor nor a child of the task"),
            (["pidfd-target#2.fd=9"], "has no record of its own before it"),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
        self.restore_as(run, pw, img, pids)
        self.finish(pids)

    test_unrestored_pidfd_tree_passes = None
    test_pidfds_of_child_parent_and_zombie_name_the_restored_processes = None


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
