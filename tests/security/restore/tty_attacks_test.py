#!/usr/bin/env python3
"""A shell job's terminal (state/tty.h, docs/trees.md "Shell jobs") as a
real unprivileged user.

The user `s8tt1` (made in setup, removed after) runs tests/probes/tty.c
"leader" (a session leader on a pty of its own), checkpoints it through the
mount and kills it. Edited `tty` records (crfs-imgedit, checksum fixed) are
refused before anything is taken or made (EINVAL naming the field); the
unedited image written with a plain `cp` is refused (ENOTTY: cp's standard
input is no terminal); `crfs restore --shell-job` run by the user restores
it on a new terminal taken from its writer as the user (pidfd_getfd), and
the probe finds everything as it was.

usage: tty_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import restore_attacks_test as ra  # noqa: E402
import roundtrip_mount_test as rt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s8tt1")

# TtyRecord offsets (include/crfs/image_format.h).
FLAGS, FG, LINE, IFLAG, ISPEED, RESERVED = 0, 4, 32, 16, 52, 68


class TtyImages(ra.SlotAttackCase):
    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(ra.BUILD, 'tests/probes/probe_tty')} leader {d}"

    def tearDown(self):
        super().tearDown()
        if os.path.exists(f"{self.d}/term.pid"):  # the probe's terminal, if still there
            try:
                os.kill(int(rt.read(f"{self.d}/term.pid")), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def test_edited_tty_records_are_einval_and_nothing_is_made(self):
        tty = self.rec("tty")
        for edits, words in [(f"{tty}@{FLAGS}:4=1", "tty: flags 0x1"),
                            (f"{tty}@{RESERVED}:4=7", "reserved 0x7"),
                            (f"{tty}@{LINE}:1=2", "tty: line discipline 2"),
                            (f"{tty}@{IFLAG}:4=0x10000", "tty: termios flags 0200000"),
                            (f"{tty}@{ISPEED}:4=0xffffffff", "tty: speeds 4294967295"),
                            (f"{tty}@{FG}:4=1", "foreground process group 1, which the tree"),
                            ((f"{self.rec('task')}.pgid=1", f"{self.rec('task')}.sid=1"),
                             "leads neither its session nor")]:
            edits = (edits,) if isinstance(edits, str) else edits
            with self.subTest(edits=edits):
                st = self.assert_refused(self.edited(*edits), "Invalid argument")
                self.assertIn("image field out of range: tty: ", st)
                self.assertIn(words, st)

    def test_plain_cp_is_enotty_with_the_hint(self):
        st = self.assert_refused(f"{self.d}/snap.img", "Inappropriate ioctl for device")
        self.assertIn("the writer's standard input is not a pseudo-terminal", st)
        self.assertIn("crfs restore --shell-job", st)

    def test_the_users_shell_job_restore(self):
        m, d = self.crfs.mnt, self.d
        out = open(f"{d}/cli.out", "w+")
        cli = subprocess.Popen(["setpriv", f"--reuid={ra.UID}", f"--regid={ra.GID}",
                                "--init-groups", "--inh-caps=-all",
                                os.path.join(ra.BUILD, "tools/crfs"), "restore", "--shell-job",
                                f"{d}/snap.img", "mine"],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               env=dict(os.environ, CRFS_ROOT=m))
        try:
            status = f"{m}/mine/status"
            rt.wait_for(lambda: cli.poll() is not None or (
                os.path.exists(status) and rt.read(status).startswith(("restored", "error"))),
                "the restore")
            status = rt.read(status) if os.path.exists(status) else "(no slot)"
            self.assertTrue(status.startswith("restored "), status + rt.read(out.name))
            pid = int(status.split()[1])
            self.assertEqual(os.stat(f"/proc/{pid}").st_uid, ra.UID)
            os.kill(pid, signal.SIGTERM)
            self.assertEqual(cli.wait(rt.TIMEOUT), 0, rt.read(out.name))
            self.assertEqual(rt.read(f"{d}/result").strip(), "PASS")
            self.assertIn("tty probe done", rt.read(out.name))
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
            if os.path.exists(f"{d}/result"):
                os.unlink(f"{d}/result")


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
