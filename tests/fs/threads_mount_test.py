#!/usr/bin/env python3
"""Multi-threaded processes through the mounted tree (issue 10):

    cp /crfs/PID/image snap.img; kill -9 PID
    mkdir /crfs/PID && cp snap.img /crfs/PID/image     # every thread, same tids

The issue's 8-thread pthread program and a python3 ThreadPoolExecutor check
themselves after the restore; threads come back only with their original
tids, so a restore under a fresh name, and any restore by a normal user
(who may not choose pids), is EPERM with the reason (docs/trees.md). Starts
its own crfsd (always unmounted); users are created with the crfsth prefix
and always removed.

usage: threads_mount_test.py BUILD_DIR  (any unittest args after)
"""
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
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import users  # noqa: E402
from users import unprivileged_user  # noqa: E402
from roundtrip_mount_test import TIMEOUT, Base, read, sh, wait_for  # noqa: E402

USER = "crfsth1"
PID_USER, PID_GROUP = "crfsth2", "crfsthg"

POOL = r"""
import concurrent.futures, os, signal, threading
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
def squares(n):
    return sum(i * i for i in range(n))
def closed(n):
    return (n - 1) * n * (2 * n - 1) // 6
k, bad = 0, 0
# progress: one file kept open and rewritten in place with a fixed width (a
# temporary file renamed over it could be open at the checkpoint and gone by
# the restore, which then rightly refuses the image).
with open("progress.new", "w") as f:
    f.write(f"{0:12d} {threading.active_count():3d}\n")
os.rename("progress.new", "progress")
progress = os.open("progress", os.O_WRONLY)
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    while not stop.is_set():
        futs = [ex.submit(squares, 20000 + k + i) for i in range(8)]
        bad += sum(f.result() != closed(20000 + k + i) for i, f in enumerate(futs))
        k += 8
        os.pwrite(progress, f"{k:12d} {threading.active_count():3d}\n".encode(), 0)
with open("result.tmp", "w") as f:
    f.write(f"PASS {k}" if bad == 0 else f"FAIL {bad} wrong results")
os.rename("result.tmp", "result")
"""


def add_user_in_group(user, group):
    """A fresh `user` (no home) in a fresh `group`; nothing left on failure."""
    users.create([user], "-N", "-G", group, groups=[group])


def remove_user_and_group(user, group):
    users.remove([user], [group])


class UserInGroup:
    """A test class's fresh user (cls.user) in a fresh group (cls.group), made
    before its tests and removed after them; put it first among the bases."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        add_user_in_group(cls.user, cls.group)

    @classmethod
    def tearDownClass(cls):
        remove_user_and_group(cls.user, cls.group)
        super().tearDownClass()

    def crfsd_for_group(self):
        """This test's crfsd, mounted with -o restore_pid_group=<the group>."""
        self.crfs = roundtrip_mount_test.Crfsd(["-o", f"restore_pid_group={self.group}"])
        self.m = self.crfs.mnt


def tids(pid):
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))


def workload_as(user, groups):
    """threads_workload run as `user` in a directory of its own: (passwd
    entry, setpriv prefix, directory, Popen)."""
    pw = pwd.getpwnam(user)
    as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", groups]
    d = tempfile.mkdtemp(prefix=f"crfs-threads-{user}-")
    os.chown(d, pw.pw_uid, pw.pw_gid)
    proc = subprocess.Popen(
        as_user + [os.path.join(roundtrip_mount_test.BUILD, "tests/workloads/threads_workload"), d],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        close_fds=True, cwd=d)
    return pw, as_user, d, proc


class Threads(Base):
    def workload(self):
        return self.task([os.path.join(roundtrip_mount_test.BUILD, "tests/workloads/threads_workload"),
                          "@DIR@"])

    def test_eight_threads_come_back_with_their_tids_and_finish_together(self):
        t = self.workload()
        before = tids(t.pid)
        self.assertEqual(len(before), 9)
        self.assertEqual(read(f"{self.m}/{t.pid}/reason"), "")
        img = t.checkpoint()
        pid = t.pid
        t.kill9()
        t.restore(img, str(pid))
        self.assertEqual(t.pid, pid)
        self.assertEqual(tids(pid), before)
        self.assertEqual(t.finish(), "PASS")

    def test_stopped_threads_stay_stopped_and_run_on_after_sigcont(self):
        t = self.workload()
        os.kill(t.pid, signal.SIGSTOP)
        thread_states = lambda pid: {roundtrip_mount_test.state_of(f"{pid}/task/{x}")
                                     for x in tids(pid)}
        wait_for(lambda: thread_states(t.pid) == {"T"}, "every thread stopped")
        before = tids(t.pid)
        img = t.checkpoint()
        # Left as it was: each thread the detach woke goes back into its group
        # stop in the kernel (R for a moment, never user code); one the
        # checkpoint let run would not come back to T.
        wait_for(lambda: thread_states(t.pid) == {"T"}, "every thread stopped again")
        pid = t.pid
        t.kill9()
        t.restore(img, str(pid))
        self.assertEqual(tids(pid), before)
        wait_for(lambda: thread_states(pid) == {"T"}, "every restored thread stopped")
        os.kill(pid, signal.SIGCONT)
        self.assertEqual(t.finish(), "PASS")

    def test_a_fresh_name_is_refused(self):
        t = self.workload()
        img = t.checkpoint()
        r = sh(f"mkdir {self.m}/fresh && cp {img} {self.m}/fresh/image")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Operation not permitted", r.stderr)
        status = read(f"{self.m}/fresh/status")
        self.assertIn("threads come back only with their original tids", status)
        self.assertIn(f"restore it into /crfs/{t.pid}", status)
        self.assertEqual(self.crfs.children(), [])
        self.assertEqual(t.finish(), "PASS")  # the original, untouched

    def test_python_thread_pool_continues_its_verified_work(self):
        t = self.task(["/usr/bin/python3", "-c", POOL], ready="progress")
        wait_for(lambda: len(tids(t.pid)) == 5, "the pool's four threads")
        img = t.checkpoint()
        pid = t.pid
        t.kill9()
        done = int(read(t.path("progress")).split()[0])
        t.restore(img, str(pid))
        self.assertEqual(len(tids(pid)), 5)
        wait_for(lambda: int(read(t.path("progress")).split()[0]) >= done + 64, "more work")
        self.assertEqual(read(t.path("progress")).split()[1], "5")
        self.assertEqual(t.finish().split()[0], "PASS")


class HostileThreadRecords(Base):
    """Edited thread records (checksum fixed, crfs-imgedit) fail at close()
    with the errno and words naming them, and leave nothing behind; the
    checkpointed task, still running, is untouched."""

    def edited(self, img, *edits):
        out = img + f".{len(os.listdir(os.path.dirname(img)))}"
        subprocess.run([os.path.join(roundtrip_mount_test.BUILD,
                                     "tests/security/restore/crfs-imgedit"), img, out, *edits],
                       check=True, capture_output=True)
        return out

    def refused(self, img, slot, errtext, status_text):
        r = sh(f"mkdir {self.m}/{slot} && cp {img} {self.m}/{slot}/image")
        self.assertNotEqual(r.returncode, 0, read(f"{self.m}/{slot}/status"))
        self.assertIn(errtext, r.stderr)
        self.assertIn(status_text, read(f"{self.m}/{slot}/status"))
        self.assertEqual(self.crfs.children(), [], "a task was left after a failed restore")

    def free_pid(self):
        p = subprocess.Popen(["true"])
        p.wait()
        return p.pid

    def test_edited_thread_records(self):
        t = self.task([os.path.join(roundtrip_mount_test.BUILD, "tests/workloads/threads_workload"),
                       "@DIR@"])
        img = t.checkpoint()
        victim = tids(t.pid)
        # The main thread moved to a free pid, the others keep tids the
        # running original holds: clone3 refuses the first one, nothing stays.
        free = self.free_pid()
        self.refused(self.edited(img, f"task.pid={free}", f"thread#0.tid={free}",
                                 f"thread-attrs#0.tid={free}"), str(free),
                     "File exists", f"creating thread {victim[1]}")
        # A thread id out of range, a thread's rip outside code, a robust
        # list head of another size, rseq misaligned, an odd tid address.
        self.refused(self.edited(img, "thread#3.tid=-3", "thread-attrs#3.tid=-3"), "neg",
                     "Invalid argument", "thread id -3")
        self.refused(self.edited(img, "regs#2.rip=0x1000"), "rip", "Invalid argument",
                     f"thread {victim[2]}: rip 0x1000")
        self.refused(self.edited(img, "thread#1.robust_len=4096"), "robust", "Invalid argument",
                     "robust list")
        self.refused(self.edited(img, "thread#1.rseq_addr=0x1008"), "rseq", "Invalid argument",
                     "rseq area 0x1008")
        self.refused(self.edited(img, "thread#4.clear_child_tid=0x1001"), "cctid",
                     "Invalid argument", "clear_child_tid 0x1001")
        # Two threads with one tid, and a thread with the main thread's.
        self.refused(self.edited(img, f"thread#2.tid={victim[1]}",
                                 f"thread-attrs#2.tid={victim[1]}"), "twice", "Bad message",
                     f"thread {victim[1]} twice")
        self.refused(self.edited(img, f"thread#2.tid={t.pid}", f"thread-attrs#2.tid={t.pid}"),
                     "main", "Bad message", f"thread {t.pid} twice")
        self.assertEqual(t.finish(), "PASS")


class NormalUser(Base):
    """As a real unprivileged user: checkpoint works, restore is EPERM."""

    @classmethod
    def setUpClass(cls):
        cls.enterClassContext(unprivileged_user(USER, "-N"))

    def test_normal_user_cannot_restore_threads(self):
        pw, as_user, d, proc = workload_as(USER, "--clear-groups")
        try:
            wait_for(lambda: os.path.exists(f"{d}/ready"), "the workload to be ready")
            pid = proc.pid
            run = lambda cmd: subprocess.run(as_user + ["sh", "-c", cmd], capture_output=True,
                                             text=True, timeout=TIMEOUT)
            r = run(f"cp {self.m}/{pid}/image {d}/snap.img")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = run(f"mkdir {self.m}/mine && cp {d}/snap.img {self.m}/mine/image")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("Operation not permitted", r.stderr)
            self.assertIn("threads come back only with their original tids",
                          read(f"{self.m}/mine/status"))
            os.kill(pid, signal.SIGTERM)  # the original was left alone
            wait_for(lambda: os.path.exists(f"{d}/result"), "the verdict")
            self.assertEqual(read(f"{d}/result").strip(), "PASS")
            proc.wait(TIMEOUT)
            # Its own pid back: choosing pids is not a normal user's right.
            r = run(f"mkdir {self.m}/{pid} && cp {d}/snap.img {self.m}/{pid}/image")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("Operation not permitted", r.stderr)
            if os.path.exists(f"{self.m}/{pid}/status"):  # mkdir itself may be the EPERM
                self.assertTrue(read(f"{self.m}/{pid}/status").startswith("error: "))
            self.assertEqual(self.crfs.children(), [])
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(TIMEOUT)
            shutil.rmtree(d, ignore_errors=True)


class PidGroupUser(Base):
    """A normal user in the group named by -o restore_pid_group may choose
    pids, so its multi-threaded task comes back with its tids; every thread
    ends with the user's credentials and no capability."""

    @classmethod
    def setUpClass(cls):
        add_user_in_group(PID_USER, PID_GROUP)

    @classmethod
    def tearDownClass(cls):
        remove_user_and_group(PID_USER, PID_GROUP)

    def setUp(self):
        self.crfs = roundtrip_mount_test.Crfsd(["-o", f"restore_pid_group={PID_GROUP}"])
        self.m = self.crfs.mnt
        self.tasks = []

    def test_pid_group_member_restores_its_threads(self):
        pw, as_user, d, proc = workload_as(PID_USER, "--init-groups")
        pid = proc.pid
        try:
            wait_for(lambda: os.path.exists(f"{d}/ready"), "the workload to be ready")
            before = tids(pid)
            run = lambda cmd: subprocess.run(as_user + ["sh", "-c", cmd], capture_output=True,
                                             text=True, timeout=TIMEOUT)
            r = run(f"cp {self.m}/{pid}/image {d}/snap.img")
            self.assertEqual(r.returncode, 0, r.stderr)
            proc.kill()
            proc.wait(TIMEOUT)
            r = run(f"mkdir {self.m}/{pid} && cp {d}/snap.img {self.m}/{pid}/image")
            self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pid}/status"))
            self.assertEqual(tids(pid), before)
            for tid in before:
                st = read(f"/proc/{pid}/task/{tid}/status")
                self.assertIn(f"Uid:\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}", st)
                self.assertIn("CapEff:\t0000000000000000", st)
                self.assertIn("CapPrm:\t0000000000000000", st)
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: os.path.exists(f"{d}/result"), "the verdict")
            self.assertEqual(read(f"{d}/result").strip(), "PASS")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(TIMEOUT)
            self.crfs.kill_children()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
