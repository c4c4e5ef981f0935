#!/usr/bin/env python3
"""Hostile pipe records (issue 11, state/pipe.cc) written into restore slots
by a real unprivileged user `crfskb1` (made in setup, removed after).

The user's own task, tests/probes/kobj_b `pipe_data` (a pipe with bytes in
flight, an 8 KiB size, a dup and a second description of its write end), is
checkpointed through the mount; crfs-imgedit edits its fd and pipe records
(checksum fixed). Each edit must fail at close() with EINVAL naming the
field, and leave no task; the unedited image restores as the user and the
probe checks itself (PASS).

usage: kobj_b_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import signal
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import restore_attacks_test as rat  # noqa: E402  (SlotAttackCase, run_as, the user)
import roundtrip_mount_test as rt  # noqa: E402

rat.USER = "crfskb1"


def setUpModule():
    rat.setUpModule()


def tearDownModule():
    rat.tearDownModule()


class PipeAttacks(rat.SlotAttackCase):
    @classmethod
    def setUpClass(cls):
        cls.crfs = rt.Crfsd()
        try:
            cls.d = tempfile.mkdtemp(prefix="crfskb-")
            os.chmod(cls.d, 0o755)
            os.chown(cls.d, rat.UID, rat.GID)
            probe = os.path.join(rat.BUILD, "tests/probes/probe_kobj_b")
            cls.edit = os.path.join(rat.BUILD, "tests/security/restore/crfs-imgedit")
            m, d = cls.crfs.mnt, cls.d
            r = rat.run_as(f"cd {d} && {probe} pipe_data {d} </dev/null >/dev/null 2>&1 & p=$!; "
                           f"until [ -e {d}/ready ]; do sleep 0.01; done; "
                           f"cp {m}/$p/image {d}/snap.img && kill -9 $p && wait $p; "
                           f"rm {d}/ready; chmod 644 {d}/snap.img")
            assert os.path.exists(f"{d}/snap.img"), r.stderr
            cls.records = [eval(line, {}, {}) for line in rat.subprocess.run(
                [cls.edit, f"{d}/snap.img", "--list"], capture_output=True, text=True,
                check=True).stdout.splitlines()]
        except BaseException:
            cls.crfs.stop()
            raise
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        cls.crfs.stop()
        shutil.rmtree(cls.d, ignore_errors=True)

    # probe_kobj_b pipe_data: fd 3 read end (O_NONBLOCK), 4 write end, 5 its dup,
    # 6 the write end reopened (O_NONBLOCK).
    def pipe_fd(self, flags):
        """The fd record of the pipe end with these open flags (own description)."""
        return self.fd({0o4000: 3, 0o1: 4}[flags])

    def refused(self, *edits, why="image field out of range"):
        status = self.assert_refused(self.edited(*edits), "Invalid argument")
        self.assertIn(why, status)

    def test_unedited_image_restores_as_the_user_and_checks_itself(self):
        ok, err, status, pid = self.restore(f"{self.d}/snap.img")
        self.assertTrue(ok, err + status)
        os.kill(pid, signal.SIGTERM)
        rt.wait_for(lambda: os.path.exists(f"{self.d}/result"), "the probe's verdict")
        self.assertEqual(rt.read(f"{self.d}/result").strip(), "PASS")
        os.unlink(f"{self.d}/result")

    def test_pipe_size_not_a_power_of_two(self):
        self.refused("pipe#0.pipe_size=12288", why="size 12288")

    def test_pipe_size_above_the_limit(self):
        self.refused(f"pipe#0.pipe_size={1 << 30}", why="size 1073741824")

    def test_pipe_unknown_flags_and_reserved(self):
        self.refused("pipe#0.flags=2", why="flags 0x2")
        self.refused("pipe#0.reserved=1", why="flags 0x0")

    def test_pipe_size_zero(self):
        self.refused("pipe#0.pipe_size=0", why="size 0")

    def test_pipe_record_of_no_fd(self):
        self.refused("pipe#0.ino=4242", why="no record of pipe")

    def test_regular_fd_turned_into_a_pipe_end(self):
        self.refused(self.fd(0) + ".kind=12", why="a pipe with a path")

    def test_pipe_end_with_o_async(self):
        self.refused(self.pipe_fd(0o4000) + f".open_flags={0o4000 | 0o20000}",
                     why="pipe open flags 024000")

    def test_pipe_end_read_write(self):
        self.refused(self.pipe_fd(0o4000) + ".open_flags=2", why="pipe open flags 02")

    def test_buffer_lengths_that_do_not_add_up(self):
        # The first buffer length (after the 32-byte record) grown by one: the
        # decoder refuses it before anything else.
        status = self.assert_refused(self.edited("pipe#0@32:4=13"), "Bad message")
        self.assertIn("buffers of 13 bytes hold 12", status)


if __name__ == "__main__":
    rat.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
