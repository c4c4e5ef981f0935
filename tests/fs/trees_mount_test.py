#!/usr/bin/env python3
"""Process trees through the mounted tree (issue 10, docs/trees.md):

    cp /crfs/PID/image snap.img      # PID and every descendant, frozen together
    kill -9 every process of the tree
    mkdir /crfs/PID && cp snap.img /crfs/PID/image   # the same pids, parents, groups

`bash -c 'sleep 1000 & wait $!; echo $?'` comes back and its `wait` gets the
restored sleep's exit status; a three-level tree with a process group of its
own keeps its groups and a stopped child stays stopped; edited process records
are refused and leave nothing behind; a normal user's tree restore is EPERM
with the documented reason. Starts its own crfsd (always unmounted); this
process is a child subreaper so that killed originals are reaped here; users
are created with the crfstr prefix and always removed.

usage: trees_mount_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from users import unprivileged_user  # noqa: E402
import threads_mount_test  # noqa: E402
from roundtrip_mount_test import Base, read, sh, wait_for  # noqa: E402

USER = "crfstr1"
PID_USER, PID_GROUP = "crfstr2", "crfstrg"


def reap():
    """Reaps whatever exited among our children (we are a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def gone(pid):
    """Exited and reaped: a zombie still holds its pid (a restore into it is EBUSY)."""
    reap()
    return not os.path.exists(f"/proc/{pid}")


def holder(pid):
    """What keeps a pid: its state, parent and tracer (for a failure's message)."""
    try:
        st = read(f"/proc/{pid}/status")
    except OSError:
        return "gone"
    return ", ".join(line for line in st.splitlines()
                     if line.split(":")[0] in ("Name", "State", "PPid", "TracerPid"))


def stat(pid):
    """(state, ppid, pgid, sid) of /proc/PID/stat."""
    f = read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return f[0], int(f[1]), int(f[2]), int(f[3])


def children(pid):
    """pid's children now; none when pid (or a thread of it) is gone meanwhile
    (a short-lived process of a starting tree: the caller waits for a state)."""
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            out += [int(p) for p in read(f"/proc/{pid}/task/{t}/children").split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def tree_of(pid):
    """pid and its descendants, parents first."""
    out = [pid]
    for p in out:
        out += children(p)
    return out


def dontfork(pid):
    """The mappings of pid marked MADV_DONTFORK (VmFlags dc), as maps lines."""
    out, head = [], None
    for line in read(f"/proc/{pid}/smaps").splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
            head = line
        elif line.startswith("VmFlags:") and "dc" in line.split()[1:]:
            out.append(head)
    return out


def processes(build, img):
    r = subprocess.run([os.path.join(build, "tools/crfs"), "show", "--json", img],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout).get("processes", [])


class TreeBase(Base):
    """A tree's helpers: started, checkpointed, killed, restored."""

    @classmethod
    def setUpClass(cls):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: the killed originals are reaped here

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="crfs-tree-")
        os.chmod(self.dir, 0o755)
        self.pids = []  # every process of the trees we made, killed at the end
        self.procs = []

    def tearDown(self):
        try:
            for pid in reversed(self.pids):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for proc in self.procs:
                proc.wait(60)
            for pid in self.pids:
                try:
                    wait_for(lambda: gone(pid), f"pid {pid} to go")
                except AssertionError as e:
                    raise AssertionError(f"{e}: {holder(pid)}") from None
        finally:  # the daemon stopped and its log shown even when a pid stays
            shutil.rmtree(self.dir, ignore_errors=True)
            super().tearDown()

    def outsider(self):
        """A live pid outside the tree that leads none of its groups or sessions
        (the test's own pid can be the tree's group: in a pid namespace of its
        own the test runs as pid 2, leading its group)."""
        proc = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pids.append(proc.pid)
        self.procs.append(proc)
        return proc.pid

    def start(self, script, size, argv=None, user_prefix=()):
        """Runs `bash -c script` in self.dir; waits until its tree has `size` processes."""
        proc = subprocess.Popen(list(user_prefix) + (argv or ["bash", "-c", script]),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True, cwd=self.dir)
        self.pids.append(proc.pid)
        self.procs.append(proc)
        wait_for(lambda: len(tree_of(proc.pid)) == size and
                 all(stat(p)[0] in "S" for p in tree_of(proc.pid)), "the tree")
        self.pids += tree_of(proc.pid)[1:]
        return proc

    def checkpoint(self, pid):
        img = os.path.join(self.dir, "tree.img")
        r = sh(f"cp {self.m}/{pid}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pid}/reason"))
        return img

    def kill_all(self, proc, pids):
        """Kills and reaps them all: every pid is free again (a zombie still holds its pid,
        and a multi-threaded one is a zombie a while before it can be reaped)."""
        for p in pids:  # parents first: a parent must not see its child die
            os.kill(p, signal.SIGKILL)
        if proc:
            proc.wait(60)
        for p in pids:
            wait_for(lambda: (reap(), not os.path.exists(f"/proc/{p}"))[1], f"pid {p} to be free")

    def round_trip(self, proc, pids):
        """reason empty, checkpoint, kill -9 all, restore into the same pids."""
        self.assertEqual(read(f"{self.m}/{pids[0]}/reason"), "")
        img = self.checkpoint(pids[0])
        self.kill_all(proc, pids)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(tree_of(pids[0]), pids)

    def restore(self, img, slot):
        return sh(f"mkdir {self.m}/{slot} && cp {img} {self.m}/{slot}/image && "
                  f"cat {self.m}/{slot}/pid")

    def as_user(self, name, groups="--clear-groups"):
        """(passwd entry, setpriv prefix, run(cmd) as that user); self.dir becomes theirs."""
        pw = pwd.getpwnam(name)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", groups]
        return pw, prefix, lambda cmd: subprocess.run(prefix + ["sh", "-c", cmd],
                                                      capture_output=True, text=True, timeout=60)

    def out(self):
        p = os.path.join(self.dir, "out")
        return read(p) if os.path.exists(p) else ""

    def crfs_build(self):
        return roundtrip_mount_test.BUILD

    def refused(self, img, top, edits, expect):
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        bad = os.path.join(self.dir, "bad.img")
        r = subprocess.run([edit, img, bad] + edits, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.restore(bad, str(top))
        self.assertNotEqual(r.returncode, 0, edits)
        self.assertIn(expect, read(f"{self.m}/{top}/status"), edits)
        self.assertEqual(sh(f"rmdir {self.m}/{top}").returncode, 0)


class Tree(TreeBase):
    def test_bash_wait_gets_the_exit_status_of_its_restored_sleep(self):
        proc = self.start("sleep 1000 </dev/null >/dev/null 2>&1 & wait $!; echo $? > out", 2)
        pids = tree_of(proc.pid)
        before = {p: stat(p) for p in pids}
        self.assertEqual(read(f"{self.m}/{proc.pid}/reason"), "")
        img = self.checkpoint(proc.pid)
        self.assertEqual([(p["pid"], p["ppid"]) for p in processes(self.crfs_build(), img)],
                         [(p, before[p][1]) for p in pids])
        self.kill_all(proc, pids)
        r = self.restore(img, str(proc.pid))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(int(r.stdout), proc.pid)
        bash, sleep = pids
        self.assertEqual(stat(sleep)[1], bash, "the sleep's parent is the restored bash")
        self.assertEqual(stat(sleep)[2:], before[sleep][2:])
        self.assertEqual(self.out(), "")
        os.kill(sleep, signal.SIGTERM)
        wait_for(lambda: self.out() == "143\n" and gone(bash), "bash's wait to return")
        self.assertEqual(self.out(), "143\n")  # 128 + SIGTERM: wait got the sleep's status

    def test_three_levels_a_process_group_and_a_stopped_child(self):
        # set -m: the background subshell leads a process group of its own;
        # its sleep (the third level) is in that group.
        script = ("set -m; (exec </dev/null >/dev/null 2>&1; "
                  "sleep 1000 </dev/null >/dev/null 2>&1 & wait $!; echo mid $? >> out) & "
                  "wait $!; echo top $? >> out")
        proc = self.start(script, 3)
        pids = tree_of(proc.pid)
        top, mid, leaf = pids
        self.assertEqual(stat(mid)[2], mid, "the subshell leads its own group")
        self.assertEqual(stat(leaf)[2], mid)
        os.kill(leaf, signal.SIGSTOP)
        wait_for(lambda: stat(leaf)[0] == "T", "the sleep to stop")
        before = {p: stat(p) for p in pids}
        img = self.checkpoint(proc.pid)
        self.assertEqual(stat(leaf)[0], "T", "still stopped after the checkpoint")
        self.assertEqual([p["flags"] for p in processes(self.crfs_build(), img)], [0, 0, 1])
        self.kill_all(proc, pids)
        r = self.restore(img, str(top))
        self.assertEqual(r.returncode, 0, r.stderr)
        for p in (mid, leaf):
            self.assertEqual(stat(p)[1:], before[p][1:], f"pid {p}: parent, group, session")
        self.assertEqual(stat(leaf)[0], "T", "the stopped child is stopped")
        wait_for(lambda: stat(mid)[0] == "S", "the middle process to sleep again")
        os.kill(leaf, signal.SIGCONT)
        os.kill(leaf, signal.SIGTERM)
        wait_for(lambda: "top" in self.out() and gone(top), "the tree to finish")
        self.assertEqual(self.out(), "mid 143\ntop 0\n")

    def test_a_multi_threaded_child_comes_back_with_its_threads(self):
        # Each thread's blob waits for the go with the rest of the tree.
        prog = ("import os, signal, threading, time\n"
                "stop = threading.Event()\n"
                "signal.signal(signal.SIGTERM, lambda *a: stop.set())\n"
                "ts = [threading.Thread(target=stop.wait) for _ in range(3)]\n"
                "[t.start() for t in ts]\n"
                "while not stop.wait(0.05): pass\n"
                "[t.join() for t in ts]\n"
                "os._exit(7)\n")
        with open(os.path.join(self.dir, "prog.py"), "w") as f:
            f.write(prog)
        proc = self.start("/usr/bin/python3 prog.py </dev/null >/dev/null 2>&1 & "
                          "wait $!; echo $? > out", 2)
        wait_for(lambda: len(os.listdir(f"/proc/{tree_of(proc.pid)[1]}/task")) == 4,
                 "the threads")
        pids = tree_of(proc.pid)
        tids = sorted(os.listdir(f"/proc/{pids[1]}/task"))
        img = self.checkpoint(proc.pid)
        self.kill_all(proc, pids)
        r = self.restore(img, str(proc.pid))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(os.listdir(f"/proc/{pids[1]}/task")), tids)
        self.assertEqual(stat(pids[1])[1], pids[0])
        os.kill(pids[1], signal.SIGTERM)
        wait_for(lambda: self.out() == "7\n" and gone(pids[0]), "bash's wait to return")

    def test_no_process_comes_back_with_a_mapping_marked_dontfork(self):
        # treeclone: a process's clone takes only its own blob area and those of
        # the processes it makes (MADV_DONTFORK on the others', in its maker);
        # its own area, whose code pages stay in the restored task, is never
        # marked. Two levels under the root, two children of the root.
        script = ("sleep 1000 </dev/null >/dev/null 2>&1 & "
                  "(exec </dev/null >/dev/null 2>&1; sleep 1000 & wait) & wait")
        proc = self.start(script, 4)
        pids = tree_of(proc.pid)
        before = {p: dontfork(p) for p in pids}
        self.round_trip(proc, pids)
        self.assertEqual({p: dontfork(p) for p in pids}, before)

    def test_fresh_name_is_eperm(self):
        proc = self.start("sleep 1000 </dev/null >/dev/null 2>&1 & wait $!", 2)
        img = self.checkpoint(proc.pid)
        r = self.restore(img, "fresh")
        self.assertIn("Operation not permitted", r.stderr)
        self.assertIn("a tree comes back only with its original pids",
                      read(f"{self.m}/fresh/status"))

    def test_edited_process_records_are_refused_and_leave_nothing(self):
        proc = self.start("set -m; (exec </dev/null >/dev/null 2>&1; "
                          "sleep 1000 </dev/null >/dev/null 2>&1 & wait $!) & wait $!", 3)
        pids = tree_of(proc.pid)
        top, mid, leaf = pids
        sid = stat(leaf)[3]
        img = self.checkpoint(proc.pid)
        self.kill_all(proc, pids)
        cases = [
            (["process#2.ppid=1"], "which is no earlier process of the tree"),
            (["process#1.pid=%d" % top], f"process {top} twice"),
            (["task#2.pgid=1"], "is not its process record"),
            (["process#2.pgid=1", "task#2.pgid=1"], "pid 1 is in use (it would be the placeholder"),
            (["process#1.sid=%d" % mid, "task#1.sid=%d" % mid],
             f"session {sid} is neither its own nor its parent's"),
            # a zombie with a page section (version 16): refused by the decode
            (["process#0.flags=2"], "member-pages record out of place or of no live process"),
        ]
        for edits, expect in cases:
            self.refused(img, top, edits, expect)
            for p in pids:  # nothing was made
                self.assertFalse(os.path.exists(f"/proc/{p}"), edits)
        # The image itself restores; its processes end children first, each
        # reaped by its restored parent.
        r = self.restore(img, str(top))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(stat(leaf)[1], mid)
        for p in reversed(pids):  # a parent in `wait $!` may end on its own
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_for(lambda: not os.path.exists(f"/proc/{p}"), f"pid {p} to be reaped")
        self.assertEqual(sh(f"rmdir {self.m}/{top}").returncode, 0)
        # Fails in the middle process's stage 1, after the root was made: every
        # process is killed and reaped by the daemon before cp returns (nothing
        # reaps here meanwhile), none stays as a zombie.
        self.refused(img, top, ["fs#1.path=/nonexistent-crfstr"],
                     f"process {mid}: restore: chdir to /nonexistent-crfstr")
        self.assertEqual([p for p in pids if os.path.exists(f"/proc/{p}")], [])


    def test_the_first_failing_member_is_the_one_reported(self):
        """Two members fail in stage 1 (a hostile image: both cwds are gone): the
        user reads the root's words, the first cause, not the last member's."""
        proc = self.start("set -m; (exec </dev/null >/dev/null 2>&1; "
                          "sleep 1000 </dev/null >/dev/null 2>&1 & wait $!) & wait $!", 3)
        pids = tree_of(proc.pid)
        top, mid, _ = pids
        img = self.checkpoint(proc.pid)
        self.kill_all(proc, pids)
        edits = ["fs#0.path=/nonexistent-s9ck-root", "fs#1.path=/nonexistent-s9ck-mid"]
        self.refused(img, top, edits, "restore: chdir to /nonexistent-s9ck-root")
        for p in pids:
            wait_for(lambda: gone(p), f"pid {p} to be free")
        # The middle one alone fails: its words, naming it, as before.
        self.refused(img, top, ["fs#1.path=/nonexistent-s9ck-mid"],
                     f"process {mid}: restore: chdir to /nonexistent-s9ck-mid")
        for p in pids:
            wait_for(lambda: gone(p), f"pid {p} to be free")


class Unprivileged(TreeBase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.enterClassContext(unprivileged_user(USER, "-N"))

    def test_normal_users_tree_restore_is_eperm(self):
        _, as_user, run = self.as_user(USER)
        proc = self.start("sleep 1000 </dev/null >/dev/null 2>&1 & wait $!", 2,
                          user_prefix=as_user)
        pids = tree_of(proc.pid)
        img = os.path.join(self.dir, "tree.img")
        r = run(f"cp {self.m}/{proc.pid}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr)  # a user checkpoints their own tree
        self.kill_all(proc, pids)
        for slot in (str(proc.pid), "fresh"):
            r = run(f"mkdir {self.m}/{slot} && cp {img} {self.m}/{slot}/image")
            self.assertIn("Operation not permitted", r.stderr, slot)
            if os.path.exists(f"{self.m}/{slot}/status"):  # a numeric slot may be refused at mkdir
                self.assertIn("choosing pids needs root", read(f"{self.m}/{slot}/status"), slot)
        for p in pids:
            self.assertTrue(gone(p), f"pid {p}")


class SetuidChild(Unprivileged):
    def test_a_setuid_descendant_is_a_reason_and_nothing_is_frozen(self):
        # The user's shell runs su (setuid root, waiting for a password on a
        # pipe we hold): the caller may not inspect it, so the tree is refused
        # with that reason and nothing of su is read or frozen.
        _, as_user, run = self.as_user(USER)
        proc = subprocess.Popen(as_user + ["bash", "-c", "/usr/bin/su root -c true; echo done"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True, cwd=self.dir)
        self.pids.append(proc.pid)
        self.procs.append(proc)
        wait_for(lambda: len(children(proc.pid)) == 1 and stat(children(proc.pid)[0])[0] == "S",
                 "su to wait for a password")
        su = children(proc.pid)[0]
        self.pids.append(su)
        r = run(f"cat {self.m}/{proc.pid}/reason")
        self.assertIn(f"pid {su} (task): cannot be inspected with the caller's rights", r.stdout,
                      r.stderr)
        r = run(f"cp {self.m}/{proc.pid}/image {self.dir}/x.img")
        self.assertIn("Device or resource busy", r.stderr)
        self.assertEqual(stat(su)[0], "S")
        self.assertNotIn("TracerPid:\t" + str(proc.pid), read(f"/proc/{su}/status"))
        self.assertIn("TracerPid:\t0", read(f"/proc/{su}/status"))
        proc.stdin.close()

    test_normal_users_tree_restore_is_eperm = None


class PidGroupUser(threads_mount_test.UserInGroup, TreeBase):
    """A normal user in the group named by -o restore_pid_group may choose
    pids: its tree comes back, every process with the user's credentials; a
    member edited to root is refused and nothing is made."""

    user, group = PID_USER, PID_GROUP

    def setUp(self):
        self.crfsd_for_group()
        self.tasks = []
        self.dir = tempfile.mkdtemp(prefix="crfs-tree-")
        os.chmod(self.dir, 0o755)
        self.pids, self.procs = [], []

    def test_pid_group_member_restores_its_tree_and_not_a_root_member(self):
        pw, as_user, run = self.as_user(PID_USER, "--init-groups")
        proc = self.start("sleep 1000 </dev/null >/dev/null 2>&1 & wait $!; echo $? > out", 2,
                          user_prefix=as_user)
        pids = tree_of(proc.pid)
        img = os.path.join(self.dir, "tree.img")
        r = run(f"cp {self.m}/{proc.pid}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.kill_all(proc, pids)
        # A member edited to root: refused as the writer, nothing made.
        bad = os.path.join(self.dir, "bad.img")
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        r = subprocess.run([edit, img, bad] + [f"creds#1.uid{i}=0" for i in range(4)],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chmod(bad, 0o644)
        r = run(f"mkdir {self.m}/{proc.pid} && cp {bad} {self.m}/{proc.pid}/image")
        self.assertIn("Operation not permitted", r.stderr)
        self.assertIn(f"process {pids[1]}: image credentials", read(f"{self.m}/{proc.pid}/status"))
        for p in pids:
            self.assertFalse(os.path.exists(f"/proc/{p}"))
        self.assertEqual(run(f"rmdir {self.m}/{proc.pid}").returncode, 0)
        # The image itself: both come back, as the user, without capabilities.
        r = run(f"mkdir {self.m}/{proc.pid} && cp {img} {self.m}/{proc.pid}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{proc.pid}/status"))
        for p in pids:
            st = read(f"/proc/{p}/status")
            self.assertIn(f"Uid:\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}", st)
            self.assertIn("CapEff:\t0000000000000000", st)
        self.assertEqual(stat(pids[1])[1], pids[0])
        os.kill(pids[1], signal.SIGTERM)
        wait_for(lambda: self.out() == "143\n" and gone(pids[0]), "bash's wait to return")


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
