#!/usr/bin/env python3
"""A removed directory held open (state/dir_deleted.cc, fd kind 39) restored
through the mount by a real unprivileged user `s14dd1` (made in setup,
removed after), and hostile edits of its fd record (crfs-imgedit, checksum
fixed).

The user's own task, tests/probes/kobj_a `dir_deleted` (fd 3 and its dup fd
4: DIR/gone, mode 02751, opened O_RDONLY|O_DIRECTORY|O_NONBLOCK, read to its
end, removed, mtime set), is checkpointed through the mount. Unedited, it
restores as the user into DIR (the fd's link reads DIR/gone (deleted) again,
owned by the user, nlink 0, nothing left in DIR) and the probe checks itself
(PASS). The daemon makes the directory again as the writer: a parent the
user may not write to fails with EACCES and nothing is made there; a parent
that is gone is ENOENT; a relative path, `..` or `.` names, an empty name, a
mode that is no directory's, write access or unknown flags are EINVAL
before anything is made.

usage: deldir_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import sys
import tempfile
import unittest

import restore_attacks_test as rat  # (SlotAttackCase, run_as; it finds roundtrip_mount_test)

rt = rat.rt
setUpModule, tearDownModule = rat.attacks_as("s14dd1")

O_RDWR = 0o2
O_DIRECTORY = 0o200000


class DeletedDirAttacks(rat.SlotAttackCase):
    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(rat.BUILD, 'tests/probes/probe_kobj_a')} dir_deleted {d}"

    def both(self, edit):
        """`edit` ("path=...") of fd 3 and of its dup fd 4, which repeats its fields."""
        return [self.fd(3) + "." + edit, self.fd(4) + "." + edit]

    def leftovers(self, d):
        return sorted(n for n in os.listdir(d) if n == "gone" or n.startswith(".crfs-deldir-"))

    def test_unedited_image_restores_as_the_user_into_its_directory(self):
        pid = self.restore_sleeping(f"{self.d}/snap.img")
        st = os.stat(f"/proc/{pid}/fd/3")
        self.assertEqual((st.st_uid, st.st_nlink, oct(st.st_mode)), (rat.UID, 0, oct(0o42751)))
        self.assertEqual(os.readlink(f"/proc/{pid}/fd/3"), f"{self.d}/gone (deleted)")
        self.assertEqual(self.same_description(pid, 3, 4), 0)
        self.assertEqual(self.leftovers(self.d), [])
        self.assert_probe_passes(pid)

    def test_parent_the_user_may_not_write_is_refused_and_nothing_made(self):
        secret = tempfile.mkdtemp(prefix="s14dd-secret-", dir="/var/tmp")
        os.chmod(secret, 0o755)  # searchable, not writable by the user
        try:
            status = self.assert_refused(self.edited(*self.both(f"path={secret}/gone")),
                                         "Permission denied")
            self.assertIn("mkdir in " + secret, status)
            self.assertEqual(os.listdir(secret), [])
        finally:
            shutil.rmtree(secret)

    def test_parent_in_root_is_refused(self):
        before = self.leftovers("/root")
        self.assert_refused(self.edited(*self.both("path=/root/gone")), "Permission denied")
        self.assertEqual(self.leftovers("/root"), before)

    def test_parent_that_is_gone_is_refused(self):
        status = self.assert_refused(self.edited(*self.both("path=/nonexistent-s14dd/gone")),
                                     "No such file or directory")
        self.assertIn("/nonexistent-s14dd", status)

    def test_dot_dot_names_are_refused(self):
        for path in (f"{self.d}/../gone", f"{self.d}/x/..", f"{self.d}/./gone",
                     f"{self.d}//gone", f"{self.d}/", "/"):
            with self.subTest(path=path):
                self.refused(*self.both(f"path={path}"), why="deleted directory path")
        self.assertEqual(self.leftovers(os.path.dirname(self.d)), [])

    def test_relative_path_is_refused(self):
        self.refused(*self.both("path=gone"), why="deleted directory path")

    def test_mode_of_a_regular_file_is_refused(self):
        self.refused(*self.both(f"mode={0o100644}"), why="deleted directory mode")
        self.refused(*self.both(f"mode={0o40000 | 0o10000}"), why="deleted directory mode")

    def test_write_access_and_unknown_flags_are_refused(self):
        self.refused(*self.both(f"open_flags={O_DIRECTORY | O_RDWR}"),
                     why="deleted directory open flags")
        self.refused(*self.both(f"open_flags={O_DIRECTORY | 0o1000}"),  # O_TRUNC
                     why="open flags")
        self.assertEqual(self.leftovers(self.d), [])


if __name__ == "__main__":
    rat.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
