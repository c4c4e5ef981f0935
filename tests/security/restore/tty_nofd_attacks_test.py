#!/usr/bin/env python3
"""A controlling terminal with no fd on it (state/tty.cc `open_ctty`,
docs/trees.md "Shell jobs") as a real unprivileged user.

The checkpoint reads such a terminal's settings through the terminal opened
by its path, with the task's ids: a task of the user `s10mq1` (made in
setup, removed after) whose controlling terminal is root's pty (mode 0600:
the user cannot open it), holding no fd on it, is refused with the kernel's
answer (EACCES) in its reason, read by the user or by root (the task's ids
open it, never the reader's), and its image is EBUSY: the daemon never opens
root's terminal on the user's behalf.

usage: tty_nofd_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import restore_attacks_test as ra  # noqa: E402
import roundtrip_mount_test as rt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s10mq1")


class RootsTerminal(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crfs = rt.Crfsd()
        cls.d = tempfile.mkdtemp(prefix="s10mq-")
        os.chmod(cls.d, 0o777)

    @classmethod
    def tearDownClass(cls):
        cls.crfs.stop()
        shutil.rmtree(cls.d, ignore_errors=True)

    def test_roots_terminal_with_no_fd_is_a_reason_with_the_kernels_answer(self):
        master, slave = os.openpty()
        name = os.ttyname(slave)
        os.fchmod(slave, 0o600)  # root's alone

        def become():  # the controlling terminal first, then the user's ids
            os.setsid()
            os.close(os.open(name, os.O_RDWR))
            os.setgroups([])
            os.setresgid(ra.GID, ra.GID, ra.GID)
            os.setresuid(ra.UID, ra.UID, ra.UID)

        proc = subprocess.Popen(["sleep", "1000"], preexec_fn=become, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            pid = proc.pid
            rt.wait_for(lambda: os.stat(f"/proc/{pid}").st_uid == ra.UID and
                        rt.read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0] == "S",
                        "the user's sleep")
            tty_nr = int(rt.read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[4])
            self.assertNotEqual(tty_nr, 0, "a controlling terminal")
            m = self.crfs.mnt
            r = ra.run_as(f"cat {m}/{pid}/reason", check=True)
            self.assertIn(f"tty: controlling terminal {name} (", r.stdout)
            self.assertIn("cannot be opened by its path with the task's ids (Permission denied)",
                          r.stdout)
            # Read by root too: opened with the task's ids, not the reader's.
            self.assertIn("(Permission denied)", rt.read(f"{m}/{pid}/reason"))
            r = ra.run_as(f"cp {m}/{pid}/image {self.d}/snap.img")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("Device or resource busy", r.stderr)
        finally:
            proc.kill()
            proc.wait(rt.TIMEOUT)
            os.close(master)
            os.close(slave)


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
