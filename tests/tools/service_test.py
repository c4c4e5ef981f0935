#!/usr/bin/env python3
"""crfs.service and fstab mounts, without systemd as PID 1 (CI runs in a plain
VM): runs the unit's own command lines as systemd would, on a temporary mount
point and state directory instead of /crfs and /run/crfs.

- ExecStart serves in the foreground (Type=simple: the started process is the
  daemon, it logs to stderr, i.e. the journal) and ExecStop, the unit's stop,
  unmounts and the daemon exits 0.
- After a crash (SIGKILL) ExecStart alone cannot mount again (dead mount);
  ExecStopPost, which systemd runs before Restart=on-failure, clears it and
  the restart serves. ExecStopPost leaves a live mount alone.
- `mount -t fuse CRFSD# DIR` (the fstab form, through mount.fuse3) serves,
  and umount stops the daemon.

usage: service_test.py BUILD_DIR  (any unittest args after)
"""
import configparser
import ctypes
import errno
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fs"))
from roundtrip_mount_test import wait_for  # noqa: E402

BUILD = None
TIMEOUT = 60  # a guard against hangs only, as wait_for's
# In the ASan build crfsd leaks libfuse's copies of its options at exit
# (fs/main.cc: the strdup'd state_dir, the fuse_args on --version): the
# leak report would turn its exit 0 into 1. This test is about the unit.
CRFSD_ENV = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")


def unit():
    """The built unit's [Service] section (systemd syntax is close enough to INI)."""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(os.path.join(BUILD, "dist", "crfs.service"))
    return cp


def serving(mnt):
    try:
        return os.path.ismount(mnt) and os.path.exists(os.path.join(mnt, "self", "reason"))
    except OSError:
        return False


def dead_mount(mnt):
    try:
        os.listdir(mnt)  # opendir asks the daemon; stat may answer from the cache
        return False
    except OSError as e:
        return e.errno == errno.ENOTCONN


class Unit(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="crfs-unit-")
        self.mnt = os.path.join(self.dir, "crfs")
        self.state = os.path.join(self.dir, "state")
        self.procs = []
        self.svc = unit()["Service"]

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(TIMEOUT)
        if os.path.ismount(self.mnt) or dead_mount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt])
        shutil.rmtree(self.dir, ignore_errors=True)

    def localize(self, line):
        """A unit command line on our mount point; the installed crfsd is the built one."""
        line = re.sub(r"/crfs(?=[\s']|$)", self.mnt, line)
        return re.sub(r"\S*/sbin/crfsd", os.path.join(BUILD, "fs", "crfsd"), line)

    def exec_start(self):
        argv = shlex.split(self.localize(self.svc["ExecStart"]))
        argv[1:1] = ["-o", f"state_dir={self.state}"]  # never the real /run/crfs
        libc = ctypes.CDLL(None, use_errno=True)
        with open(os.path.join(self.dir, "journal"), "a") as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 close_fds=True, env=CRFSD_ENV, preexec_fn=lambda: libc.prctl(1, signal.SIGTERM))
        self.procs.append(p)
        return p

    def exec_stop(self):
        return subprocess.run(shlex.split(self.localize(self.svc["ExecStop"])), timeout=TIMEOUT,
                              capture_output=True, text=True)

    def exec_stop_post(self):
        line = self.svc["ExecStopPost"]
        self.assertTrue(line.startswith("-"))  # its failure is ignored
        return subprocess.run(shlex.split(self.localize(line[1:])), timeout=TIMEOUT,
                              capture_output=True, text=True)

    def journal(self):
        with open(os.path.join(self.dir, "journal")) as f:
            return f.read()

    def test_the_units_settings(self):
        self.assertEqual(self.svc["Type"], "simple")
        self.assertEqual(self.svc["Restart"], "on-failure")
        self.assertEqual(self.svc["KillMode"], "process")
        self.assertNotIn("KillSignal", self.svc)  # SIGTERM
        self.assertIn(" -f ", self.svc["ExecStart"])
        self.assertEqual(unit()["Install"]["WantedBy"], "multi-user.target")

    def test_start_serves_in_the_foreground_and_stop_unmounts_cleanly(self):
        p = self.exec_start()
        wait_for(lambda: serving(self.mnt) or p.poll() is not None, "the mount")
        self.assertTrue(serving(self.mnt), self.journal())
        with open(f"/proc/{p.pid}/comm") as f:
            self.assertEqual(f.read(), "crfsd\n")  # the main process is the daemon itself
        self.assertIn(f"serving {self.mnt}", self.journal())  # its log reaches the journal
        r = self.exec_stop()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(p.wait(int(self.svc["TimeoutStopSec"])), 0, self.journal())
        self.assertFalse(os.path.ismount(self.mnt))
        self.assertIn(f"unmounted {self.mnt}", self.journal())

    def test_restart_after_a_crash_needs_and_gets_the_stop_post_cleanup(self):
        p = self.exec_start()
        wait_for(lambda: serving(self.mnt) or p.poll() is not None, "the mount")
        # ExecStopPost leaves a live mount alone.
        self.exec_stop_post()
        self.assertTrue(serving(self.mnt))
        p.kill()
        p.wait(TIMEOUT)
        self.assertTrue(dead_mount(self.mnt))
        again = self.exec_start()
        self.assertEqual(again.wait(TIMEOUT), 1)
        self.assertIn("unmount it first", self.journal())  # a dead mount (or, cached, "a mount point")
        self.exec_stop_post()
        self.assertFalse(dead_mount(self.mnt))
        self.assertFalse(os.path.ismount(self.mnt))
        restarted = self.exec_start()
        wait_for(lambda: serving(self.mnt) or restarted.poll() is not None, "the mount")
        self.assertTrue(serving(self.mnt), self.journal())
        self.assertEqual(self.exec_stop().returncode, 0)
        self.assertEqual(restarted.wait(TIMEOUT), 0)


def crfsd_serving(mnt):
    """Pids of crfsd processes whose command line names mnt."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"crfsd") and os.fsencode(mnt) in argv:
            out.append(int(d))
    return out


class Fstab(unittest.TestCase):
    def test_mount_t_fuse_with_the_program_as_source(self):
        d = tempfile.mkdtemp(prefix="crfs-fstab-")
        mnt = os.path.join(d, "mnt")
        os.mkdir(mnt)
        try:
            crfsd = os.path.join(BUILD, "fs", "crfsd")
            r = subprocess.run(["mount", "-t", "fuse", crfsd + "#", mnt, "-o",
                                f"state_dir={d}/state,nosuid,nodev"],
                               capture_output=True, text=True, timeout=TIMEOUT, env=CRFSD_ENV)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(serving(mnt))
            with open("/proc/self/mounts") as f:
                line = next(x for x in f if x.split()[1] == mnt)
            self.assertEqual(line.split()[2], "fuse.crfsd")
            self.assertIn("nosuid", line.split()[3])
            self.assertEqual(len(crfsd_serving(mnt)), 1)
            with open(os.path.join(mnt, "self", "nocr")) as f:
                self.assertEqual(f.read(), "0\n")
            r = subprocess.run(["umount", mnt], capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stderr)
            wait_for(lambda: not crfsd_serving(mnt), "crfsd to exit after umount")
        finally:
            if os.path.ismount(mnt) or dead_mount(mnt):
                subprocess.run(["umount", "-l", mnt])
            for pid in crfsd_serving(mnt):
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
