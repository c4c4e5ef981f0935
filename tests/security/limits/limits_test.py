#!/usr/bin/env python3
"""Slots and per-user bounds, attacked by real unprivileged users (issue 8,
items 9 (slots), 13, 14, 15, 16, 18; issue 14's slot items; crfsd's command line).

Users crfslm1, crfslm2 and crfslm3 (crfslm3 in group crfslmg, the group the
mount names with restore_pid_group) are made in setUpModule and removed in
its module cleanup. Every test mounts its own crfsd with small limits and always
unmounts it; every wait is bounded and waits for a state.

usage: limits_test.py BUILD_DIR VERSION  (any unittest args after)
"""
import ctypes
import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../fs"))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import alive, pid_free, read, wait_for  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../support"))
import users  # noqa: E402

BUILD = None
VERSION = None
TIMEOUT = 60  # only a guard against hangs, never a pass criterion
USERS = ["crfslm1", "crfslm2", "crfslm3"]
GROUP = "crfslmg"  # restore_pid_group of the mounts; crfslm3 is a member
PY = "/usr/bin/python3"  # `python3` on PATH may be a root-only shim


def setUpModule():
    users.create(USERS, "-U", groups=[GROUP])
    unittest.addModuleCleanup(users.remove, USERS, [GROUP])
    subprocess.run(["usermod", "-aG", GROUP, USERS[2]], check=True)


def uid(user):
    return int(subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout)


def as_user(user, cmd, timeout=TIMEOUT):
    """Runs `sh -c cmd` as `user` with its own groups and no capability."""
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                           "sh", "-c", cmd], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def free_pid():
    """A pid no task uses now, well away from where new pids are handed out."""
    pid_max = int(read("/proc/sys/kernel/pid_max"))
    while True:
        pid = random.randrange(pid_max // 2, pid_max - 1)
        if pid_free(pid):
            return pid


class Crfsd(roundtrip_mount_test.Crfsd):
    """The round-trip tests' daemon (children(), stop()), started with mount options."""

    def __init__(self, opts=(), debug=False):
        self.dir = tempfile.mkdtemp(prefix="crfs-lm-")
        os.chmod(self.dir, 0o755)
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)
        self.work = os.path.join(self.dir, "work")  # for files of the test users
        os.mkdir(self.work)
        os.chmod(self.work, 0o1777)
        self.log = open(os.path.join(self.dir, "crfsd.log"), "w")
        o = ",".join([f"state_dir={self.dir}/state", f"restore_pid_group={GROUP}", *opts])
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "fs/crfsd"), "-f", *(["-d"] if debug else []), "-o", o,
             self.mnt], stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            close_fds=True,
            preexec_fn=lambda: ctypes.CDLL(None).prctl(1, signal.SIGTERM))  # PR_SET_PDEATHSIG
        try:
            wait_for(lambda: os.path.ismount(self.mnt) or self.proc.poll() is not None,
                     "the mount")
            assert os.path.ismount(self.mnt), read(self.log.name)
        except BaseException:
            self.stop()
            raise

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def logtext(self):
        self.log.flush()
        return read(self.log.name)


class Base(unittest.TestCase):
    OPTS = ()
    DEBUG = False

    def setUp(self):
        self.crfs = Crfsd(self.OPTS, self.DEBUG)
        self.m = self.crfs.mnt
        self.procs = []  # Popen objects of tasks the test started, killed at the end

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(TIMEOUT)
        self.crfs.stop()

    def user_image(self, user, name):
        """Checkpoints a `sleep` of `user`, as `user`; returns the image's path."""
        img = os.path.join(self.crfs.work, name)
        script = (f"sleep 1000 </dev/null >/dev/null 2>&1 & p=$!; "
                  "until [ \"$(cat /proc/$p/comm)\" = sleep ]; do sleep 0.01; done; "
                  f"cp {self.m}/$p/image {img}; rc=$?; kill -9 $p; wait $p; exit $rc")
        r = as_user(user, script)
        self.assertEqual(r.returncode, 0, r.stderr)
        return img

    def restore_as(self, user, img, slot):
        r = as_user(user, f"mkdir {self.m}/{slot} && cp {img} {self.m}/{slot}/image && "
                          f"cat {self.m}/{slot}/pid")
        self.assertEqual(r.returncode, 0, r.stderr)
        return int(r.stdout)


class SlotNames(Base):
    def test_numeric_slot_needs_root_or_the_restore_pid_group(self):
        pid = free_pid()
        r = as_user(USERS[0], f"mkdir {self.m}/{pid}")
        self.assertNotEqual(r.returncode, 0, "a normal user made a slot named after pid "
                                             f"{pid}: it could squat the pid")
        self.assertIn("Operation not permitted", r.stderr)
        self.assertFalse(os.path.exists(f"{self.m}/{pid}"))
        self.assertIn(f"slot {pid}: a numeric name", self.crfs.logtext())
        # A member of the group the mount names, and root, may.
        self.assertEqual(as_user(USERS[2], f"mkdir {self.m}/{pid}").returncode, 0)
        pid2 = free_pid()
        os.mkdir(f"{self.m}/{pid2}")
        self.assertEqual(read(f"{self.m}/{pid2}/status"), "empty\n")

    def test_live_task_wins_over_another_users_slot(self):
        for _ in range(20):  # a free pid may be taken by someone else before we spawn at it
            pid = free_pid()
            r = as_user(USERS[2], f"mkdir {self.m}/{pid}")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.addCleanup(lambda p=pid: alive(p) and os.kill(p, signal.SIGKILL))
            victim = subprocess.Popen(
                [os.path.join(BUILD, "tests/security/limits/spawn_at_pid"), str(pid), "setpriv",
                 f"--reuid={USERS[1]}", f"--regid={USERS[1]}", "--init-groups", "sleep", "1000"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(victim)
            wait_for(lambda: victim.poll() is not None or
                     (alive(pid) and read(f"/proc/{pid}/comm") == "sleep\n"), "the victim")
            if victim.poll() is None:
                break
            self.assertEqual(victim.returncode, 3)  # clone3: the pid was taken meanwhile
            os.rmdir(f"{self.m}/{pid}")
        self.assertTrue(alive(pid))
        # The victim sees its own task at /crfs/<pid>, not the squatter's slot.
        r = as_user(USERS[1], f"stat -c %u {self.m}/{pid}; cat {self.m}/{pid}/image | wc -c; "
                              f"cat {self.m}/{pid}/nocr; "
                              f"echo 1 > {self.m}/{pid}/nocr && cat {self.m}/{pid}/nocr")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split()
        self.assertEqual(lines[0], str(uid(USERS[1])), r.stdout)
        self.assertGreater(int(lines[1]), 0, r.stderr)
        self.assertEqual(lines[2:], ["0", "1"], r.stdout)
        self.assertEqual(sorted(os.listdir(f"{self.m}/{pid}")), ["delta", "image", "nocr", "reason"])
        self.assertEqual(os.listdir(self.m).count(str(pid)), 1)
        st = os.stat(f"{self.m}/{pid}")
        self.assertEqual(st.st_uid, uid(USERS[1]))
        # Its maker removes the hidden slot; the task stays.
        self.assertEqual(as_user(USERS[2], f"rmdir {self.m}/{pid}").returncode, 0)
        self.assertEqual(read(f"{self.m}/{pid}/nocr"), "1\n")
        self.assertEqual(as_user(USERS[0], f"rmdir {self.m}/{pid}").stderr.count(
            "Operation not permitted"), 1)

    def test_root_inside_unshare_cannot_use_other_users_slots(self):
        self.assertEqual(as_user(USERS[0], f"mkdir {self.m}/mine").returncode, 0)
        for cmd in [f"cat {self.m}/mine/status", f"rmdir {self.m}/mine",
                    f"echo x > {self.m}/mine/image"]:
            r = as_user(USERS[1], f"unshare -Ur sh -c '{cmd}'")
            self.assertNotEqual(r.returncode, 0, cmd)
            self.assertIn("Permission denied", r.stderr, cmd)
        self.assertEqual(as_user(USERS[0], f"cat {self.m}/mine/status").stdout, "empty\n")


class SlotCount(Base):
    OPTS = ("user_slots=3",)

    def test_slots_per_user(self):
        for i in range(3):
            self.assertEqual(as_user(USERS[0], f"mkdir {self.m}/a{i}").returncode, 0)
        r = as_user(USERS[0], f"mkdir {self.m}/a3")
        self.assertIn("Too many open files", r.stderr)
        self.assertIn(f"uid {uid(USERS[0])}: at its limit of 3 slots (user_slots)",
                      self.crfs.logtext())
        # Another user does not notice; root is not bounded.
        for i in range(3):
            self.assertEqual(as_user(USERS[1], f"mkdir {self.m}/b{i}").returncode, 0)
        for i in range(5):
            os.mkdir(f"{self.m}/r{i}")
        # A removed slot counts no more.
        self.assertEqual(as_user(USERS[0], f"rmdir {self.m}/a0 && mkdir {self.m}/a3").returncode,
                         0)


class Defaults(Base):
    def test_default_slot_limit(self):
        r = as_user(USERS[0], f"cd {self.m} && i=0; while [ $i -lt 64 ]; do "
                              "mkdir s$i || exit 1; i=$((i+1)); done; mkdir s64")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.count("Too many open files"), 1, r.stderr)
        self.assertIn("at its limit of 64 slots (user_slots)", self.crfs.logtext())


class SlotFds(Base):
    OPTS = ("user_slots=1000",)

    def test_empty_slots_hold_no_fd(self):
        before = self.crfs.fds()
        r = as_user(USERS[0], f"cd {self.m} && i=0; while [ $i -lt 300 ]; do "
                              "mkdir s$i || exit 1; i=$((i+1)); done")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(self.crfs.fds() - before, 20, "each empty slot holds a descriptor")


class Spool(Base):
    OPTS = ("user_spool=4M",)

    def test_spool_bytes_per_user(self):
        # User A fills its share with zeros and gets ENOSPC past it.
        r = as_user(USERS[0], f"mkdir {self.m}/a && "
                              f"dd if=/dev/zero of={self.m}/a/image bs=64k count=80 status=none")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("No space left on device", r.stderr)
        self.assertNotIn("Bad message", r.stderr)  # close() says ENOSPC too, not a bad image
        why = f"uid {uid(USERS[0])}: at its limit of 4194304 spool bytes (user_spool)"
        self.assertIn(why, self.crfs.logtext())
        self.assertEqual(read(f"{self.m}/a/status"), f"error: slot a: {why}\n")
        # While A holds it, B round trips a task of its own.
        img = self.user_image(USERS[1], "b.img")
        self.assertLess(os.path.getsize(img), 4 << 20)
        pid = self.restore_as(USERS[1], img, "b")
        self.assertEqual(read(f"{self.m}/b/status"), f"restored {pid}\n")
        os.kill(pid, signal.SIGKILL)
        # Root is not bounded.
        os.mkdir(f"{self.m}/r")
        r = subprocess.run(["sh", "-c", f"dd if=/dev/zero of={self.m}/r/image bs=64k count=80 "
                                        "status=none"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        self.assertNotIn("No space left on device", r.stderr)
        # A's bytes come back with its slot.
        r = as_user(USERS[0], f"rmdir {self.m}/a && mkdir {self.m}/a && "
                              f"dd if=/dev/zero of={self.m}/a/image bs=64k count=60 status=none")
        self.assertNotIn("No space left on device", r.stderr)
        self.assertIn("error: ", read(f"{self.m}/a/status"))  # zeros are no image


class ImageHandles(Base):
    OPTS = ("user_image_handles=2",)

    HOLDER = r"""
import errno, os, subprocess, sys, time
m, sync = sys.argv[1], sys.argv[2]
p = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
try:
    while open(f"/proc/{p.pid}/comm").read() != "sleep\n":
        time.sleep(0.01)
    img = f"{m}/{p.pid}/image"
    held = [os.open(img, os.O_RDONLY), os.open(img, os.O_RDONLY)]
    try:
        os.open(img, os.O_RDONLY)
        print("third open succeeded")
    except OSError as e:
        print("third", errno.errorcode[e.errno])
    open(f"{sync}/held", "w").close()
    end = time.monotonic() + 60
    while not os.path.exists(f"{sync}/go") and time.monotonic() < end:
        time.sleep(0.01)
    os.close(held.pop())
    # close() returns before FUSE's release of the handle reaches the daemon
    # (the kernel sends it in the background): wait for the release, bounded.
    end = time.monotonic() + 60
    while True:
        try:
            os.close(os.open(img, os.O_RDONLY))
            print("after close ok")
            break
        except OSError as e:
            if e.errno != errno.EMFILE or time.monotonic() > end:
                print("after close", errno.errorcode[e.errno])
                break
            time.sleep(0.01)
finally:
    p.kill()
    p.wait()
"""

    def test_open_image_handles_per_user(self):
        sync = os.path.join(self.crfs.work, "sync")
        os.mkdir(sync)
        os.chmod(sync, 0o777)
        holder = subprocess.Popen(
            ["setpriv", f"--reuid={USERS[0]}", f"--regid={USERS[0]}", "--init-groups", PY, "-c",
             self.HOLDER, self.m, sync], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.procs.append(holder)
        wait_for(lambda: os.path.exists(f"{sync}/held") or holder.poll() is not None,
                 "user A to hold its handles")
        # While A is at its limit, B checkpoints a task of its own.
        self.user_image(USERS[1], "b.img")
        open(f"{sync}/go", "w").close()
        out, err = holder.communicate(timeout=TIMEOUT)
        self.assertEqual(out.splitlines(), ["third EMFILE", "after close ok"], err)
        self.assertIn(f"uid {uid(USERS[0])}: at its limit of 2 open image handles "
                      "(user_image_handles)", self.crfs.logtext())


class NoneAtOnce(Base):
    """Limits of 0 make the concurrency errors deterministic (no race to set up);
    the counting itself is in limits_unit_tests."""
    OPTS = ("user_checkpoints=0", "user_restores=0")

    def test_checkpoints_and_restores_at_once(self):
        r = as_user(USERS[0], "sleep 1000 </dev/null >/dev/null 2>&1 & p=$!; "
                              "until [ \"$(cat /proc/$p/comm)\" = sleep ]; do sleep 0.01; done; "
                              f"cat {self.m}/$p/image > /dev/null; rc=$?; kill -9 $p; exit $rc")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Device or resource busy", r.stderr)  # a read's EAGAIN (fs/ops.cc)
        r = as_user(USERS[0], f"mkdir {self.m}/x && head -c 4096 /dev/zero > {self.m}/x/image")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(read(f"{self.m}/x/status"), f"error: uid {uid(USERS[0])}: at its limit "
                                                     "of 0 concurrent restores (user_restores)\n")
        log = self.crfs.logtext()
        self.assertIn("concurrent checkpoints (user_checkpoints)", log)
        self.assertIn("slot x: restore failed: uid", log)
        # Root is not bounded.
        wl = self.crfs.work
        p = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_for(lambda: read(f"/proc/{p.pid}/comm") == "sleep\n", "sleep")
        r = subprocess.run(["sh", "-c", f"cp {self.m}/{p.pid}/image {wl}/root.img"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)


class SlotStatus(Base):
    def test_status_after_the_restored_task_exits(self):
        img = self.user_image(USERS[0], "a.img")
        pid = self.restore_as(USERS[0], img, "k")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: read(f"{self.m}/k/status") != f"restored {pid}\n", "the exit")
        self.assertEqual(read(f"{self.m}/k/status"), "killed by SIGKILL\n")
        self.assertFalse(os.path.exists(f"{self.m}/k/nocr"))
        # A workload that exits 0 on SIGTERM.
        wl = os.path.join(self.crfs.work, "wl")
        os.mkdir(wl)
        p = subprocess.Popen([os.path.join(BUILD, "tests/cr/ckpt_workload"), wl, "busy", "2"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=wl,
                             # An ASan build's leak check at exit would change the code.
                             env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        self.procs.append(p)
        wait_for(lambda: os.path.exists(f"{wl}/ready"), "the workload")
        r = subprocess.run(["sh", "-c", f"cp {self.m}/{p.pid}/image {wl}/snap.img"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        p.kill()
        p.wait(TIMEOUT)
        os.mkdir(f"{self.m}/z")
        shutil.copyfile(f"{wl}/snap.img", f"{self.m}/z/image")
        pid = int(read(f"{self.m}/z/pid"))
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: read(f"{self.m}/z/status") != f"restored {pid}\n", "the exit")
        self.assertEqual(read(f"{self.m}/z/status"), "exited 0\n")
        self.assertEqual(read(f"{wl}/result").strip(), "PASS")

    def test_closing_an_empty_image_is_an_error(self):
        r = as_user(USERS[0], f"mkdir {self.m}/e && cp /dev/null {self.m}/e/image")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("No data available", r.stderr)
        r = as_user(USERS[0], f"zstdcat {self.crfs.work}/missing.zst > {self.m}/e/image")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(read(f"{self.m}/e/status"),
                         "error: slot e: image closed with nothing written\n")
        # It is no state the slot is stuck in: an image still restores.
        img = self.user_image(USERS[0], "a.img")
        r = as_user(USERS[0], f"cp {img} {self.m}/e/image && cat {self.m}/e/status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("restored "), r.stdout)

    def test_failed_restore_is_logged_with_the_slot_name(self):
        r = as_user(USERS[0], f"mkdir {self.m}/junk && head -c 4096 /dev/urandom > "
                              f"{self.m}/junk/image")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("slot junk: restore failed", self.crfs.logtext())


class Escapes(Base):
    DEBUG = True

    def test_log_and_status_escape_control_bytes(self):
        # A name with a terminal escape, looked up: the debug log names it.
        name = "a\x1b]0;owned\x07b\x01"
        r = as_user(USERS[0], f"ls {self.m}/'{name}'")
        self.assertNotEqual(r.returncode, 0)
        log = self.crfs.logtext()
        self.assertIn(r"a\x1b]0;owned\x07b\x01", log)
        for b in "\x1b\x07\x01":
            self.assertNotIn(b, log)
        # An image whose task's cwd has control bytes, restored after the
        # directory is gone: status names the path, escaped.
        cwd = os.path.join(self.crfs.work, "d\x1b[31m\x7f")
        os.mkdir(cwd)
        os.chmod(cwd, 0o777)
        img = os.path.join(self.crfs.work, "c.img")
        r = as_user(USERS[0], f"cd '{cwd}' && sleep 1000 </dev/null >/dev/null 2>&1 & p=$!; "
                              "until [ \"$(cat /proc/$p/comm)\" = sleep ]; do sleep 0.01; done; "
                              f"cp {self.m}/$p/image {img}; rc=$?; kill -9 $p; wait $p; exit $rc")
        self.assertEqual(r.returncode, 0, r.stderr)
        os.rmdir(cwd)
        r = as_user(USERS[0], f"mkdir {self.m}/c && cp {img} {self.m}/c/image")
        self.assertNotEqual(r.returncode, 0)
        status = read(f"{self.m}/c/status", "rb")
        self.assertTrue(status.startswith(b"error: "), status)
        self.assertIn(rb"d\x1b[31m\x7f", status)
        self.assertFalse(any(b < 0x20 or b == 0x7f for b in status[:-1]), status)
        log = self.crfs.logtext()
        self.assertNotIn("\x1b", log)
        self.assertNotIn("\x7f", log)


class CommandLine(unittest.TestCase):
    def test_unknown_option_is_named(self):
        d = tempfile.mkdtemp(prefix="crfs-lm-")
        os.mkdir(f"{d}/state")
        lock = open(f"{d}/state/crfsd.lock", "w")
        try:
            # Another crfsd holds the state dir: the option is still what is named.
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            r = subprocess.run([os.path.join(BUILD, "fs/crfsd"), "-f", "-o",
                                f"state_dir={d}/state,bogus=1", f"{d}/mnt"],
                               capture_output=True, text=True, timeout=TIMEOUT,
                               stdin=subprocess.DEVNULL)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("bogus", r.stderr)
            self.assertNotIn("in use", r.stderr)
            self.assertFalse(os.path.ismount(f"{d}/mnt"))
        finally:
            lock.close()
            if os.path.ismount(f"{d}/mnt"):
                subprocess.run(["umount", "-l", f"{d}/mnt"])
            shutil.rmtree(d, ignore_errors=True)

    def test_bad_limit_values_are_named(self):
        for opt in ["user_spool=lots", "user_slots=-1", "user_restores=0x", "restore_pid_group="
                    "no-such-group-crfslm"]:
            r = subprocess.run([os.path.join(BUILD, "fs/crfsd"), "-f", "-o", opt, "/nonexistent"],
                               capture_output=True, text=True, timeout=TIMEOUT,
                               stdin=subprocess.DEVNULL)
            self.assertNotEqual(r.returncode, 0, opt)
            self.assertIn(opt.split("=")[0], r.stderr, opt)

    def test_version(self):
        r = subprocess.run([os.path.join(BUILD, "fs/crfsd"), "--version"], capture_output=True,
                           text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith(f"crfsd {VERSION}\n") or
                        r.stdout.startswith(f"crfsd {VERSION},"), r.stdout)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv[1])
    VERSION = sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
