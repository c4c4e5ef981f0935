#!/usr/bin/env python3
"""A deleted file held by two open file descriptions of one task (fd kind 40,
state/file_reopen.cc) restored through the mount by a real unprivileged user
`s15dt1` (made in setup, removed after), and hostile edits of the later
description's fd record (crfs-imgedit, checksum fixed).

The user's own task, tests/probes/files `deleted_twice_modes` (fd 3 read-only
at offset 3, fd 4 write-only O_APPEND|O_NONBLOCK with a flock, its dup fd 20
close-on-exec; the file unlinked), runs with a regular file of the user's as
its stdin (fd 0) and is checkpointed through the mount. Unedited, the image
holds the file once (fd 3, kind 2) and fd 4 as kind 40 naming fd 3; it
restores as the user with fds 3 and 4 on one inode, two descriptions, and the
probe checks itself (PASS). A later fd that names a regular file's fd, a
later fd, itself or another inode, or has flags a reopen cannot give, is
EINVAL before anything is made; a file mode that denies the second
description's access mode is the kernel's EACCES to the user, and no task is
left. A kind 40 may also name a memfd: files/memfd_twice's second memfd fd
edited into one restores as one memfd with two descriptions.

usage: deltwice_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import sys
import unittest

import restore_attacks_test as rat  # (SlotAttackCase, run_as; it finds roundtrip_mount_test)

rt = rat.rt
setUpModule, tearDownModule = rat.attacks_as("s15dt1")

REOPENED = 40
LATER = (4, 20)  # the second description and its dup, which repeats its fields
NO_FIRST = "which is no earlier fd of its own description of a deleted file, directory or memfd"


class DeletedTwiceAttacks(rat.SlotAttackCase):
    @classmethod
    def victim_command(cls, d):
        with open(f"{d}/stdin", "w") as f:  # fd 0: a regular file (kind 1)
            f.write("in\n")
        os.chmod(f"{d}/stdin", 0o644)
        probe = os.path.join(rat.BUILD, "tests/probes/probe_files")
        return f'sh -c "exec <{d}/stdin; exec {probe} deleted_twice_modes {d}"'  # run_as: in ' quotes

    def later(self, edit):
        return [self.fd(n) + "." + edit for n in LATER]

    def kinds(self):
        return {r["fd"]: r["kind"] for r in self.records if r["type"] == "fd"}

    def leftovers(self):
        return sorted(n for n in os.listdir(self.d) if n.startswith("twice"))

    def test_the_image_holds_the_file_once_and_a_reopened_description(self):
        kinds = self.kinds()
        self.assertEqual((kinds[0], kinds[3], kinds[4], kinds[20]), (1, 2, REOPENED, REOPENED))
        self.assertEqual(len([r for r in self.records if r["type"] == "fd-data"]), 1)

    def test_unedited_image_restores_one_file_with_two_descriptions(self):
        pid = self.restore_sleeping(f"{self.d}/snap.img")
        a, b = os.stat(f"/proc/{pid}/fd/3"), os.stat(f"/proc/{pid}/fd/4")
        self.assertEqual((a.st_dev, a.st_ino, a.st_nlink, a.st_uid), (b.st_dev, b.st_ino, 0, rat.UID))
        self.assertNotEqual(self.same_description(pid, 3, 4), 0)
        self.assertEqual(self.same_description(pid, 4, 20), 0)
        self.assertEqual(self.leftovers(), [])
        self.assert_probe_passes(pid)

    def test_a_later_fd_naming_no_earlier_deleted_file_is_einval(self):
        for first, what in ((0, "a regular file"), (4, "itself"), (20, "a later fd"),
                            (7, "no fd"), (1 << 40, "a huge number")):
            with self.subTest(what):
                self.refused(*self.later(f"rdev={first}"),
                             why=f"fd 4: opened again from fd {first}, {NO_FIRST}")
        self.refused(*self.later(f"ino={1 << 40}"), why=f"fd 4: opened again from fd 3, {NO_FIRST}")
        self.assertEqual(self.leftovers(), [])

    def test_flags_a_reopen_cannot_give_are_einval(self):
        for flags in (os.O_WRONLY | os.O_TRUNC, 3, os.O_WRONLY | os.O_ASYNC):
            with self.subTest(flags=oct(flags)):
                self.refused(*self.later(f"open_flags={flags}"),
                             why=f"fd 4: opened again from fd 3 with open flags 0{flags:o}")

    def test_a_mode_denying_the_second_access_is_the_kernels_eacces(self):
        # 0400: the first (read-only) opens, the second (write-only) may not.
        edits = [self.fd(3) + f".mode={0o100400}"] + self.later(f"mode={0o100400}")
        status = self.assert_refused(self.edited(*edits), "Permission denied")
        self.assertIn("opening fd 4 again through /proc/self/fd of fd 3, as another open file "
                      "description of its deleted file or memfd", status)
        self.assertEqual(self.leftovers(), [])


class MemfdFirst(rat.SlotAttackCase):
    """A kind 40 may name a memfd (kind 36), which the checkpoint writes as two kind 36
    fds (state/memfd.cc): edited so, the user's files/memfd_twice still restores as one
    memfd with two descriptions."""
    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(rat.BUILD, 'tests/probes/probe_files')} memfd_twice {d}"

    def test_a_memfds_second_description_as_kind_40_restores(self):
        kinds = {r["fd"]: r["kind"] for r in self.records if r["type"] == "fd"}
        self.assertEqual((kinds[3], kinds[4]), (36, 36))
        img = self.edited(self.fd(4) + f".kind={REOPENED}", self.fd(4) + ".rdev=3",
                          self.fd(4) + ".path=/memfd:twice (deleted)")
        pid = self.restore_sleeping(img)
        a, b = os.stat(f"/proc/{pid}/fd/3"), os.stat(f"/proc/{pid}/fd/4")
        self.assertEqual((a.st_dev, a.st_ino), (b.st_dev, b.st_ino))
        self.assertNotEqual(self.same_description(pid, 3, 4), 0)
        self.assert_probe_passes(pid)


if __name__ == "__main__":
    rat.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
