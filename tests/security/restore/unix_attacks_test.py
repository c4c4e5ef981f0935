#!/usr/bin/env python3
"""Hostile unix-bound and unix-sender records (issue 11, state/unix_bound.cc),
written into restore slots by a real unprivileged user `s4ux1` (made in
setup, removed after, even on failure).

The user's own probe (tests/probes/unix_bound `listen`: a listener at
DIR/listen.sock, an accepted pair, two waiting clients; `dgram_queue`: a
datagram socket at a path with messages from two senders) is checkpointed
through the mount and killed with -9 (its socket files stay behind).
crfs-imgedit then edits the records (checksum fixed):
  - a name moved to a directory the user cannot write, onto root's dead
    socket file (with the recorded inode made to match it, so crfs takes it
    for the task's own leftover) in sticky /tmp and in a root-only directory,
    or onto root's regular file: the restore binds and unlinks as the user,
    the kernel refuses, root's files stay;
  - fields out of range: each fails at close() with EINVAL naming the field,
    and leaves no task.
The unedited image restores as the user and the probe checks itself.

usage: unix_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import unittest

import kobj_b_attacks_test as kb  # ProbeVictim: checkpoints a probe, restores it unedited
import restore_attacks_test as rat  # (SlotAttackCase, run_as; it finds roundtrip_mount_test)

rt = rat.rt
setUpModule, tearDownModule = rat.attacks_as("s4ux1")

NAME_AT = 104  # UnixBoundRecord.name


class ProbeVictim(kb.ProbeVictim):
    """The user's probe_unix_bound VARIANT checkpointed to snap.img."""

    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(rat.BUILD, 'tests/probes/probe_unix_bound')} {cls.VARIANT} {d}"

    def bound(self, n):
        return f"unix-bound#{n}"

    def name_edits(self, n, name, st=None):
        """Edits that set record n's name (and the recorded socket file)."""
        raw = name.encode().ljust(((len(name) + 7) // 8) * 8, b"\0")
        out = [f"{self.bound(n)}.name_len={len(name)}"]
        for i in range(0, len(raw), 8):
            out.append(f"{self.bound(n)}@{NAME_AT + i}:8={struct.unpack('<Q', raw[i:i + 8])[0]}")
        if st:
            out += [f"{self.bound(n)}.path_dev={st.st_dev}", f"{self.bound(n)}.path_ino={st.st_ino}"]
        return out


def dead_socket(path, mode):
    """A socket file at `path` (root's) with no socket behind it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    os.chmod(path, mode)
    return os.lstat(path)


class ListenAttacks(ProbeVictim):
    # probe_unix_bound listen: fd 3 the listener (record 0), 4 the client,
    # 5 the accepted end, 6 and 7 waiting clients.
    VARIANT = "listen"

    def renamed(self, path, st=None):
        """The listener (record 0) and its accepted end (record 2) named `path`."""
        return self.edited(*self.name_edits(0, path, st), *self.name_edits(2, path, st))

    def test_root_dead_socket_in_sticky_tmp_is_not_unlinked(self):
        path = tempfile.mktemp(prefix="s4ux-", suffix=".sock", dir="/tmp")
        st = dead_socket(path, 0o777)  # connect() reaches it: nothing listens there
        try:
            status = self.assert_refused(self.renamed(path, st),
                                         "Operation not permitted")
            self.assertIn("fd 3", status)
            self.assertEqual(os.lstat(path).st_ino, st.st_ino)
        finally:
            os.unlink(path)

    def test_root_only_directory(self):
        d = tempfile.mkdtemp(prefix="s4ux-root-")
        os.chmod(d, 0o755)
        try:
            # Nothing there: bind itself is the writer's, and fails.
            self.assert_refused(self.renamed(f"{d}/new.sock"),
                                "Permission denied")
            self.assertEqual(os.listdir(d), [])
            # Root's dead socket there, recorded as the task's own: not unlinked.
            st = dead_socket(f"{d}/old.sock", 0o777)
            self.assert_refused(self.renamed(f"{d}/old.sock", st),
                                "Permission denied")
            self.assertEqual(os.lstat(f"{d}/old.sock").st_ino, st.st_ino)
        finally:
            shutil.rmtree(d)

    def test_root_regular_file_at_the_name(self):
        path = tempfile.mktemp(prefix="s4ux-", dir="/tmp")
        with open(path, "w") as f:
            f.write("root's\n")
        st = os.lstat(path)
        try:
            status = self.assert_refused(self.renamed(path, st),
                                         "Address already in use")
            self.assertIn("taken by another file or a live socket", status)
            self.assertEqual(rt.read(path), "root's\n")
        finally:
            os.unlink(path)

    def test_role_and_options(self):
        self.refused(f"{self.bound(0)}.role=9", why="role 9")
        self.refused(f"{self.bound(0)}.options=2", why="role 1")  # bit 0: SO_KEEPALIVE

    def test_name_too_long_or_empty(self):
        self.refused(f"{self.bound(0)}.name_len=109", why="name length 109")
        self.refused(f"{self.bound(0)}.name_len=0", why="listening socket")

    def test_backlog_out_of_range(self):
        self.refused(f"{self.bound(0)}.backlog={1 << 31}", why="listening socket")

    def test_type_and_listener(self):
        self.refused(f"{self.bound(0)}.type=3", why="type 3")
        self.refused(f"{self.bound(2)}.listener=4242", why="accepted from 4242")
        self.refused(f"{self.bound(3)}.listener=4242", why="waiting in 4242")

    def test_waiting_places(self):
        self.refused(f"{self.bound(4)}.order=0", why="waiting in")
        self.refused(f"{self.bound(4)}.order=5", why="waiting places")

    def test_peer_that_is_not_its_pair(self):
        self.refused(f"{self.bound(1)}.peer=77", why="client of 77")

    def test_queue_lengths_that_do_not_add_up(self):
        status = self.assert_refused(self.edited(f"{self.bound(2)}@216:4=10"), "Bad message")
        self.assertIn("messages of 10 bytes hold", status)

    def test_two_descriptions_of_one_socket(self):
        out = rat.subprocess.run([os.path.join(rat.BUILD, "tools/crfs"), "show", "--json",
                                  f"{self.d}/snap.img"], capture_output=True, text=True,
                                 check=True).stdout
        ino = json.loads(out)["unix_bound"][0]["ino"]
        self.refused(self.fd(4) + f".ino={ino}", why="a second open file description")


class SenderAttacks(ProbeVictim):
    # probe_unix_bound dgram_queue: fd 3 the receiver at DIR/dgram.sock,
    # 4 the abstract sender, 5 an unnamed one, 6 a client connected to 3.
    VARIANT = "dgram_queue"

    def test_sender_range(self):
        self.refused("unix-sender#0.count=70000", why="sender record")
        self.refused("unix-sender#0.first=4294967295", why="sender record")
        self.refused("unix-sender#0.sender=4242", why="sender record")
        self.refused("unix-sender#1.first=0", why="sender record")

    def test_message_count_out_of_range(self):
        status = self.assert_refused(self.edited(f"{self.bound(0)}.nmsgs=70000"), "Bad message")
        self.assertIn("70000", status)


if __name__ == "__main__":
    rat.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
