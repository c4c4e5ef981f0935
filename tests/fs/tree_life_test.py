#!/usr/bin/env python3
"""The life cycle of a process tree through the mounted tree (issue 10,
docs/trees.md "Sessions and groups"):

    set -m; sleep | sleep &        # a group led by a sibling
    kill the first sleep           # the group's leader is gone: an orphaned group
    cp /crfs/PID/image snap.img; kill -9 every process
    mkdir /crfs/PID && cp snap.img /crfs/PID/image   # same pids, sids and pgids

A group led by a sibling comes back by ordering (its leader first), a group
whose leader exited through a placeholder leader that makes it and leaves;
every process keeps /proc/PID/stat's ppid, pgid and sid, and the shell's
`wait` still gets its job's status. A python3 ThreadPoolExecutor child,
checkpointed mid-work, finishes with the right answer. Edited images (a
placeholder pid that is taken, a group led by a member of another session)
are refused with nothing made. Starts its own crfsd (always unmounted); this
process is a child subreaper and reaps.

usage: tree_life_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
import trees_mount_test  # noqa: E402
from roundtrip_mount_test import read, sh, wait_for  # noqa: E402
from trees_mount_test import gone, stat, tree_of  # noqa: E402

QUIET = "</dev/null >/dev/null 2>&1"

POOL = r"""
import concurrent.futures, os
def squares(n):
    return sum(i * i for i in range(n))
k, total = 0, 0
# progress: one file kept open, rewritten in place with a fixed width (a
# renamed temporary file could be open at the checkpoint and gone at restore).
with open("progress.new", "w") as f:
    f.write(f"{0:12d}\n")
os.rename("progress.new", "progress")
progress = os.open("progress", os.O_WRONLY)
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    while not os.path.exists("enough"):
        futs = [ex.submit(squares, 20000 + k + i) for i in range(8)]
        total += sum(f.result() for f in futs)
        k += 8
        os.pwrite(progress, f"{k:12d}\n".encode(), 0)
with open("answer.tmp", "w") as f:
    f.write(f"{k} {total}")
os.rename("answer.tmp", "answer")
os._exit(5)
"""


# The middle of a three-level tree: two zombie children (exit 7, SIGUSR1), a
# child alone in a group whose leader it reaped (an orphaned group); once
# `go` exists it waits for each and writes the statuses it got.
MID = r"""
import json, os, signal, time
def quiet():
    fd = os.open("/dev/null", os.O_RDWR)
    for i in range(3):
        os.dup2(fd, i)
z1 = os.fork()
if z1 == 0:
    os._exit(7)
z2 = os.fork()
if z2 == 0:
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGUSR1)
    os._exit(99)
r, w = os.pipe()
a = os.fork()
if a == 0:
    os.setpgid(0, 0)
    os.write(w, b"a")
    time.sleep(1000)
os.read(r, 1)
b = os.fork()
if b == 0:
    os.setpgid(0, a)
    quiet()
    os.write(w, b"b")
    os.close(r)
    os.close(w)
    while True:
        time.sleep(1000)
os.read(r, 1)
os.close(r)
os.close(w)
os.kill(a, signal.SIGKILL)
os.waitpid(a, 0)
for z in (z1, z2):
    os.waitid(os.P_PID, z, os.WEXITED | os.WNOWAIT)
with open("ready.tmp", "w") as f:
    json.dump({"mid": os.getpid(), "z1": z1, "z2": z2, "a": a, "b": b}, f)
os.rename("ready.tmp", "ready")
while not os.path.exists("go"):
    time.sleep(0.01)
s1 = os.waitpid(z1, 0)[1]
s2 = os.waitpid(z2, 0)[1]
os.kill(b, signal.SIGTERM)
s3 = os.waitpid(b, 0)[1]
with open("result.tmp", "w") as f:
    f.write(f"{s1} {s2} {s3}")
os.rename("result.tmp", "result")
"""


# A root with a zombie child (exit 3) and a sleeping one.
ZROOT = r"""
import os, time
z = os.fork()
if z == 0:
    os._exit(3)
s = os.fork()
if s == 0:
    fd = os.open("/dev/null", os.O_RDWR)
    for i in range(3):
        os.dup2(fd, i)
    os.close(fd)
    time.sleep(1000)
os.waitid(os.P_PID, z, os.WEXITED | os.WNOWAIT)
with open("ready.tmp", "w") as f:
    f.write(f"{s} {z}")
os.rename("ready.tmp", "ready")
time.sleep(1000)
"""


def closed(n):
    return (n - 1) * n * (2 * n - 1) // 6


class Life(trees_mount_test.TreeBase):
    def fields(self, pids):
        """ppid, pgid, sid of each (stat fields 4-6)."""
        return {p: stat(p)[1:] for p in pids}

    def test_a_sibling_led_group_then_an_orphaned_group(self):
        # set -m: the pipeline is a job, its first sleep leads the group and
        # the second joins it (a group led by a sibling).
        proc = self.start(f"set -m; sleep 1000 {QUIET} | sleep 1000 {QUIET} & "
                          "wait $!; echo $? > out", 3)
        top, first, second = tree_of(proc.pid)
        self.assertEqual(stat(second)[2], first, "the second sleep is in the first's group")
        self.assertEqual(read(f"{self.m}/{top}/reason"), "")
        before = self.fields([first, second])
        img = self.checkpoint(top)
        self.kill_all(proc, [top, first, second])
        r = self.restore(img, str(top))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        self.assertEqual(self.fields([first, second]), before)
        # The leader exits and bash reaps it: the group has no leader now.
        os.kill(first, signal.SIGTERM)
        wait_for(lambda: tree_of(top) == [top, second], "bash to reap the group's leader")
        self.assertFalse(os.path.exists(f"/proc/{first}"))
        self.assertEqual(stat(second)[2], first, "the group outlives its leader")
        self.assertEqual(read(f"{self.m}/{top}/reason"), "")
        before = self.fields([top, second])
        img = self.checkpoint(top)
        self.kill_all(None, [top, second])
        self.assertEqual(sh(f"rmdir {self.m}/{top}").returncode, 0)
        r = self.restore(img, str(top))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        # Same parent, group and session; the placeholder leader is gone and
        # bash has only its job as a child.
        self.assertEqual(self.fields([top, second]), before)
        self.assertFalse(os.path.exists(f"/proc/{first}"), "the placeholder left")
        self.assertEqual(tree_of(top), [top, second])
        self.assertEqual(self.out(), "")
        os.kill(second, signal.SIGTERM)
        wait_for(lambda: self.out() == "143\n" and gone(top), "bash's wait to return")

    def test_three_levels_with_zombies_and_an_orphaned_group(self):
        with open(os.path.join(self.dir, "mid.py"), "w") as f:
            f.write(MID)
        # set -m: the python3 job leads a group of its own.
        proc = subprocess.Popen(["bash", "-c", f"set -m; /usr/bin/python3 mid.py {QUIET} & "
                                 "wait $!; echo top $? > out"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, close_fds=True, cwd=self.dir)
        self.procs.append(proc)
        self.pids.append(proc.pid)
        ready = os.path.join(self.dir, "ready")
        wait_for(lambda: os.path.exists(ready) or proc.poll() is not None, "the tree")
        ids = json.loads(read(ready))
        top, mid, z1, z2, b = proc.pid, ids["mid"], ids["z1"], ids["z2"], ids["b"]
        self.pids += [mid, b]
        pids = [top, mid, z1, z2, b]
        self.assertEqual(sorted(tree_of(top)), sorted(pids))
        before = {p: stat(p) for p in pids}
        self.assertEqual([before[z][0] for z in (z1, z2)], ["Z", "Z"])
        self.assertEqual(before[b][2], ids["a"], "b's group is the one its reaped leader made")
        self.assertFalse(os.path.exists(f"/proc/{ids['a']}"))
        self.assertEqual(read(f"{self.m}/{top}/reason"), "")
        img = self.checkpoint(top)
        self.assertEqual([p["flags"] for p in trees_mount_test.processes(self.crfs_build(), img)],
                         [0, 0, 0, 2, 2])
        self.kill_all(proc, [top, mid, b, z1, z2])
        r = self.restore(img, str(top))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        # Every field of stat 3-6 (state, ppid, pgid, sid) as it was, the root's group and session.
        for p in pids[1:]:  # running or sleeping, the others; zombies zombies
            self.assertEqual(stat(p)[1:], before[p][1:], f"pid {p}")
        self.assertEqual([stat(z)[0] for z in (z1, z2)], ["Z", "Z"])
        self.assertEqual(stat(top)[2:], before[top][2:])
        self.assertFalse(os.path.exists(f"/proc/{ids['a']}"), "the placeholder left")
        open(os.path.join(self.dir, "go"), "w").close()
        result = os.path.join(self.dir, "result")
        wait_for(lambda: os.path.exists(result) and self.out() == "top 0\n" and gone(top),
                 "the tree to finish")
        # The middle process's waitpid got exactly each status.
        self.assertEqual(read(result), f"{7 << 8} {signal.SIGUSR1} {signal.SIGTERM}")

    def test_edited_zombies_are_refused_and_leave_nothing(self):
        with open(os.path.join(self.dir, "zroot.py"), "w") as f:
            f.write(ZROOT)
        proc = subprocess.Popen(["/usr/bin/python3", "zroot.py"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                close_fds=True, cwd=self.dir)
        self.procs.append(proc)
        self.pids.append(proc.pid)
        ready = os.path.join(self.dir, "ready")
        wait_for(lambda: os.path.exists(ready) or proc.poll() is not None, "the tree")
        top = proc.pid
        s, z = map(int, read(ready).split())
        self.pids.append(s)
        img = self.checkpoint(top)
        self.kill_all(proc, [top, s, z])
        outside = self.outsider()
        bad_status = "is not one a process ends with (exited, or killed by a signal that ends it"
        cases = [
            (["zombie#0.exit_code=134"], f"process {z}: zombie exit status 0x86 {bad_status}"),
            (["zombie#0.exit_code=17"], f"process {z}: zombie exit status 0x11 {bad_status}"),
            (["zombie#0.exit_code=65536"], f"zombie exit status 0x10000 {bad_status}"),
            ([f"process#1.ppid={z}", f"task#1.ppid={z}"],
             f"process {s} has parent {z}, which is no earlier process"),
            (["process#2.flags=3"], "bad image: process record 2"),
            (["process#2.flags=0"], "zombie record out of place"),
            # a zombie with a page section (version 16): refused by the decode
            (["process#1.flags=2"], "member-pages record out of place or of no live process"),
            ([f"process#2.pid={outside}"], f"pid {outside} is in use (it would be a zombie"),
        ]
        for edits, expect in cases:
            self.refused(img, top, edits, expect)
            for p in (top, s, z):
                self.assertFalse(os.path.exists(f"/proc/{p}"), edits)
        r = self.restore(img, str(top))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        self.assertEqual(stat(z)[:2], ("Z", top))

    def test_python_thread_pool_checkpointed_mid_work_finishes_right(self):
        with open(os.path.join(self.dir, "pool.py"), "w") as f:
            f.write(POOL)
        proc = self.start(f"/usr/bin/python3 pool.py {QUIET} & wait $!; echo $? > out", 2)
        top, py = tree_of(proc.pid)
        progress = os.path.join(self.dir, "progress")
        wait_for(lambda: os.path.exists(progress) and
                 len(os.listdir(f"/proc/{py}/task")) == 5, "the pool to work")
        img = self.checkpoint(top)
        at = int(read(progress))
        self.kill_all(proc, [top, py])
        r = self.restore(img, str(top))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{top}/status"))
        wait_for(lambda: int(read(progress)) > at + 16, "the restored pool to go on")
        open(os.path.join(self.dir, "enough"), "w").close()
        wait_for(lambda: self.out() == "5\n" and gone(top), "the pool to finish")
        k, total = map(int, read(os.path.join(self.dir, "answer")).split())
        self.assertGreater(k, at)
        self.assertEqual(total, sum(closed(20000 + i) for i in range(k)))

    def test_edited_groups_are_refused_and_leave_nothing(self):
        proc = self.start(f"set -m; sleep 1000 {QUIET} | sleep 1000 {QUIET} & wait $!", 3)
        top, first, second = tree_of(proc.pid)
        img = self.checkpoint(top)
        self.kill_all(proc, [top, first, second])
        outside = self.outsider()
        cases = [
            # The second sleep's group, its leader gone, numbered as a live process.
            ([f"process#2.pgid={outside}", f"task#2.pgid={outside}"],
             f"pid {outside} is in use (it would be the placeholder leader"),
            # Its group led by a member that is in another session.
            ([f"process#1.sid={first}", f"task#1.sid={first}"],
             f"process {second}: process group {first} is not led by pid {first} of the tree "
             "in its session"),
            # A member leading a session but not its group.
            ([f"process#1.sid={first}", f"task#1.sid={first}", f"process#2.sid={first}",
              f"task#2.sid={first}", f"process#1.pgid={second}", f"task#1.pgid={second}"],
             f"process {first}: leads session {first} but not its group"),
        ]
        for edits, expect in cases:
            self.refused(img, top, edits, expect)
            for p in (top, first, second):
                self.assertFalse(os.path.exists(f"/proc/{p}"), edits)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = trees_mount_test.roundtrip_mount_test.BUILD = \
        os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
