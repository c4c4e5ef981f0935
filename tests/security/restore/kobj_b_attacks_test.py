#!/usr/bin/env python3
"""Hostile pipe and unix-socket records (issue 11, state/pipe.cc,
state/unix_socket.cc) written into restore slots by a real unprivileged user
`crfskb1` (made in setup, removed after).

The user's own task, tests/probes/kobj_b `pipe_data` (a pipe with bytes in
flight, an 8 KiB size, a dup and a second description of its write end) or
`unix_stream` (a socketpair with queues both ways, shutdown and options), is
checkpointed through the mount; crfs-imgedit edits its fd, pipe and
unix-socket records (checksum fixed). Each edit must fail at close() with EINVAL naming the
field, and leave no task; the unedited image restores as the user and the
probe checks itself (PASS).

usage: kobj_b_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import sys
import tempfile
import unittest

import restore_attacks_test as rat  # (SlotAttackCase, run_as; it finds roundtrip_mount_test)

rt = rat.rt
setUpModule, tearDownModule = rat.attacks_as("crfskb1")


class ProbeVictim(rat.SlotAttackCase):
    """The user's probe_kobj_b VARIANT checkpointed to snap.img."""
    VARIANT = None

    @classmethod
    def setUpClass(cls):
        if cls.VARIANT is None:
            raise unittest.SkipTest("the base of the victims' test cases")
        super().setUpClass()

    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(rat.BUILD, 'tests/probes/probe_kobj_b')} {cls.VARIANT} {d}"

    def test_unedited_image_restores_as_the_user_and_checks_itself(self):
        self.assert_probe_passes(self.restore_sleeping(f"{self.d}/snap.img"))


class PipeAttacks(ProbeVictim):
    VARIANT = "pipe_data"

    # probe_kobj_b pipe_data: fd 3 read end (O_NONBLOCK), 4 write end, 5 its dup,
    # 6 the write end reopened (O_NONBLOCK).
    def pipe_fd(self, flags):
        """The fd record of the pipe end with these open flags (own description)."""
        return self.fd({0o4000: 3, 0o1: 4}[flags])

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


class FifoAttacks(ProbeVictim):
    # probe_kobj_b fifo_data: DIR/fifo open at fd 3 (read, O_NONBLOCK), 4 (write) and
    # 5 (read-write), bytes in it. Reopened by path, as the writer, at restore.
    VARIANT = "fifo_data"

    def test_root_only_fifo_is_opened_as_the_writer(self):
        target = tempfile.mktemp(prefix="crfskb-fifo-", dir="/var/tmp")
        os.mkfifo(target, 0o600)
        try:
            st = os.stat(target)
            edits = []
            for fd in (3, 4, 5):
                edits += [self.fd(fd) + ".path=" + target, self.fd(fd) + f".ino={st.st_ino}",
                          self.fd(fd) + f".dev={st.st_dev}"]
            edits.append(f"pipe#0.ino={st.st_ino}")
            self.assert_refused(self.edited(*edits), "Permission denied")
        finally:
            os.unlink(target)

    def test_relative_fifo_path(self):
        self.refused(self.fd(3) + ".path=fifo", why="FIFO path not absolute")

    def test_one_fifo_named_two_ways(self):
        self.refused(self.fd(4) + ".path=/tmp/x", why="named two ways")

    def test_fifo_holding_someone_elses_bytes(self):
        fd = os.open(f"{self.d}/fifo", os.O_RDWR | os.O_NONBLOCK)
        try:
            os.write(fd, b"root's")
            self.assert_refused(f"{self.d}/snap.img", "Device or resource busy")
        finally:
            os.close(fd)

    def test_another_fifo_at_the_path(self):
        os.rename(f"{self.d}/fifo", f"{self.d}/fifo.real")
        os.mkfifo(f"{self.d}/fifo", 0o600)
        os.chown(f"{self.d}/fifo", rat.UID, rat.GID)
        try:
            self.assert_refused(f"{self.d}/snap.img", "Stale file handle")
        finally:
            os.unlink(f"{self.d}/fifo")
            os.rename(f"{self.d}/fifo.real", f"{self.d}/fifo")


class UnixSocketAttacks(ProbeVictim):
    # probe_kobj_b unix_stream: fds 3 and 4, a socketpair with queues both ways,
    # end 3 shut down for writing, SO_PASSCRED on 3, SO_RCVTIMEO and SO_SNDBUF on 4.
    VARIANT = "unix_stream"

    def test_unknown_type(self):
        self.refused("unix-socket#0.type=3", why="type 3")

    def test_type_differs_from_the_peer(self):
        self.refused("unix-socket#0.type=5", why="is not its pair")

    def test_peer_that_is_not_its_pair(self):
        self.refused("unix-socket#0.peer=77", why="is not its pair")
        self.refused("unix-socket#0.peer=" + str(self.records_ino(0)), why="is not its pair")

    def test_shutdown_and_passcred_out_of_range(self):
        self.refused("unix-socket#0.shutdown=4", why="shutdown 4")
        self.refused("unix-socket#0.passcred=2", why="passcred 2")

    def test_negative_timeout_and_huge_buffers(self):
        self.refused("unix-socket#1.rcvtimeo_usec=-5", why="timeouts -5")
        self.refused(f"unix-socket#1.sndbuf={1 << 31}", why="buffers")

    def test_socket_end_opened_read_only(self):
        self.refused(self.fd(3) + ".open_flags=0", why="socket open flags 0")

    def test_two_descriptions_of_one_end(self):
        # fd 4 made a second, separate description of the end fd 3 holds.
        ino = self.records_ino(0)
        self.refused(self.fd(4) + f".ino={ino}", why="a second open file description")

    def test_queue_lengths_that_do_not_add_up(self):
        status = self.assert_refused(self.edited("unix-socket#0@64:4=10"), "Bad message")
        self.assertIn("messages of 10 bytes hold", status)

    def records_ino(self, n):
        """The ino of unix-socket record n, from crfs show."""
        out = rat.subprocess.run([os.path.join(rat.BUILD, "tools/crfs"), "show", "--json",
                                  f"{self.d}/snap.img"], capture_output=True, text=True,
                                 check=True).stdout
        return json.loads(out)["unix_sockets"][n]["ino"]


if __name__ == "__main__":
    rat.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
