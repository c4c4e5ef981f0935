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
    pid outside the image (pid 1), the holder itself (the parent's, the
    child's).
  - pidfd2: a tree whose members hold pidfds of members that do not exist
    yet when their fds are made (a sibling, earlier or later in the image, a
    grandchild, a nephew): after the restore each names its process, a
    SIGTERM through the grandchild's ends it and its parent reaps it through
    its own pidfd; a normal user's edits (a pid outside the image, the holder
    itself) are refused with nothing made.

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

# Both trees' scripts: SIGUSR1 blocked (sigwait), fdinfo lines.
PRELUDE = """
import os, select, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
def info(fd, key):
    for line in open(f"/proc/self/fdinfo/{fd}"):
        if line.startswith(key):
            return line.split()[1]
"""

# The parent (pids[0]): a child holding a pidfd of the parent, a zombie child
# (exit 7, not reaped); the parent holds a PIDFD_NONBLOCK pidfd of the child
# and one of the zombie. After SIGUSR1 each checks its pidfds; the parent
# writes PASS to `out` when both did.
TREE = PRELUDE + """
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

# pidfd2: pidfds of members that do not exist yet when the holder's fds are
# made. The parent P forks A, A forks G (P's grandchild), P forks B. A holds
# a pidfd of G (its child) and a PIDFD_NONBLOCK one of B (its later sibling),
# B one of A (its earlier sibling) and of G (its nephew), P one of G (its
# grandchild) and of its children. After SIGUSR1 to P: A checks its pidfd of
# B, B its pidfds of A and G (pidfd_send_signal 0), then P kills G through
# its pidfd (SIGTERM) and waits for the pidfd to say G ended, A reaps G with
# waitid P_PIDFD (killed by SIGTERM), P reaps B and A through theirs.
KIN = PRELUDE + """
def names(fd, pid, nonblock=False):
    signal.pidfd_send_signal(fd, 0)
    return (int(info(fd, "Pid:")) == pid and
            bool(int(info(fd, "flags:"), 8) & os.O_NONBLOCK) == nonblock)
def wait_file(name):
    while not os.path.exists(name):
        signal.sigtimedwait({signal.SIGUSR2}, 0.01)
def put(name, text=""):
    with open(name + ".t", "w") as f:
        f.write(text)
    os.rename(name + ".t", name)
def pid_of(name):
    wait_file(name)
    return int(open(name).read())
a = os.fork()
if a == 0:
    g = os.fork()
    if g == 0:
        signal.sigwait({signal.SIGUSR1})  # never sent: SIGTERM ends it
        os._exit(0)
    put("g", str(g))
    gfd = os.pidfd_open(g)
    b = pid_of("b")
    bfd = os.pidfd_open(b, os.O_NONBLOCK)
    put("a.ready")
    signal.sigwait({signal.SIGUSR1})
    ok = names(bfd, b, True)
    put("a.checked")
    st = os.waitid(os.P_PIDFD, gfd, os.WEXITED)
    ok = ok and st.si_pid == g and st.si_code == os.CLD_KILLED and st.si_status == signal.SIGTERM
    put("a.out", "PASS" if ok else f"FAIL {ok} {st}")
    os._exit(0)
g = pid_of("g")
b = os.fork()
if b == 0:
    afd = os.pidfd_open(a)
    gfd = os.pidfd_open(g)
    put("b.ready")
    signal.sigwait({signal.SIGUSR1})
    put("b.out", "PASS" if names(afd, a) and names(gfd, g) else
        f"FAIL {info(afd, 'Pid:')} {info(gfd, 'Pid:')}")
    os._exit(0)
put("b", str(b))
wait_file("a.ready")
wait_file("b.ready")
down_a, down_b = os.pidfd_open(a), os.pidfd_open(b)
gfd = os.pidfd_open(g, os.O_NONBLOCK)
put("half")
signal.sigwait({signal.SIGUSR1})
why = [] if names(gfd, g, True) else [f"g {info(gfd, 'Pid:')}"]
signal.pidfd_send_signal(down_a, signal.SIGUSR1)
wait_file("a.checked")
signal.pidfd_send_signal(down_b, signal.SIGUSR1)
kb = os.waitid(os.P_PIDFD, down_b, os.WEXITED)
signal.pidfd_send_signal(gfd, signal.SIGTERM)
p = select.poll()
p.register(gfd, select.POLLIN)
p.poll()
ka = os.waitid(os.P_PIDFD, down_a, os.WEXITED)
if (kb.si_pid, kb.si_status, ka.si_pid, ka.si_status) != (b, 0, a, 0):
    why.append(f"waitid {kb} {ka}")
said = open("a.out").read() + " " + open("b.out").read()
with open("out", "w") as f:
    f.write("PASS\\n" if not why and said == "PASS PASS" else f"FAIL {why} {said}\\n")
"""


def imgedit():
    return os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")


class PidfdTree(trees_mount_test.TreeBase):
    def run_script(self, name, script, user_prefix):
        """/usr/bin/python3 running `script` (saved as `name`) until it writes
        `half`: (proc, the pids of its tree)."""
        with open(self.path(name), "w") as f:
            f.write(script)
        proc = subprocess.Popen(list(user_prefix) + ["/usr/bin/python3", name],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True, cwd=self.dir)
        self.pids.append(proc.pid)
        self.procs.append(proc)
        wait_for(lambda: os.path.exists(self.path("half")), "the tree's pause")
        pids = tree_of(proc.pid)
        self.pids += pids[1:]
        return proc, pids

    def pidfd_tree(self, user_prefix=()):
        """The tree of TREE, run until it writes `half`: (proc, [parent, kid, zombie])."""
        proc, pids = self.run_script("pf.py", TREE, user_prefix)
        wait_for(lambda: [stat(p)[0] for p in pids] == ["S", "S", "Z"], "the tree to wait")
        return proc, pids

    def path(self, name):
        return os.path.join(self.dir, name)

    def finish(self, pids, signalled=2):
        """SIGUSR1 to the first `signalled` pids; the tree ends and says PASS."""
        for p in pids[:signalled]:
            os.kill(p, 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertEqual(self.out(), "PASS\n")

    def kin_tree(self, user_prefix=()):
        """The tree of KIN, run until it writes `half`: (proc, pids, {name: pid})."""
        proc, pids = self.run_script("kin.py", KIN, user_prefix)
        kin = {"p": proc.pid, "g": int(read(self.path("g"))), "b": int(read(self.path("b")))}
        kin["a"] = next(p for p in pids[1:] if p not in (kin["g"], kin["b"]))
        self.assertEqual(sorted(pids), sorted(kin.values()))
        wait_for(lambda: all(stat(p)[0] == "S" for p in pids), "the tree to wait")
        return proc, pids, kin

    def test_unrestored_kin_tree_passes(self):
        proc, pids, _ = self.kin_tree()
        self.finish(pids, 1)

    def test_pidfds_of_siblings_a_grandchild_and_a_nephew_name_the_restored_processes(self):
        proc, pids, _ = self.kin_tree()
        self.round_trip(proc, pids)
        self.finish(pids, 1)

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
            ([f"pidfd-target#2.pid={kid}"], f"pidfd of pid {kid}, not another process"),
            (["pidfd-target#2.fd=9"], "has no record of its own before it"),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
        self.restore_as(run, pw, img, pids)
        self.finish(pids)

    def test_user_restores_its_kin_tree_and_edited_targets_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids, kin = self.kin_tree(user_prefix=as_user)
        img = self.checkpoint_as(run, kin["p"])
        self.kill_all(proc, pids)
        p, a, b, g = kin["p"], kin["a"], kin["b"], kin["g"]
        # P's (its children, its grandchild), A's (its child, its later sibling), B's
        self.assertEqual([pid for _, pid in self.targets(img)], [a, b, g, g, b, a, g])
        for edits, expect in [
            (["pidfd-target#5.pid=1"], "pidfd of pid 1, not another process of this image"),
            ([f"pidfd-target#5.pid={b}"], f"pidfd of pid {b}, not another process"),
            ([f"pidfd-target#4.pid={a}"], f"pidfd of pid {a}, not another process"),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
        self.restore_as(run, pw, img, pids)
        self.finish(pids, 1)

    test_unrestored_pidfd_tree_passes = None
    test_pidfds_of_child_parent_and_zombie_name_the_restored_processes = None
    test_unrestored_kin_tree_passes = None
    test_pidfds_of_siblings_a_grandchild_and_a_nephew_name_the_restored_processes = None


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
