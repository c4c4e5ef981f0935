#!/usr/bin/env python3
"""A removed cwd (state/fs.cc, record 131 deleted-cwd) restored through the
mount by a real unprivileged user `s15dc1` (made in setup, removed after),
and hostile edits of its records (crfs-imgedit, checksum fixed).

The user's own task, tests/probes/probe_task `deleted_cwd` (cwd DIR/sub, mode
02751, removed, mtime set; umask 027), is checkpointed through the mount.
Unedited, it restores as the user into DIR (/proc/PID/cwd reads "DIR/sub
(deleted)" again, owned by the user, nlink 0, nothing left in DIR) and the
probe checks itself (PASS). The daemon makes the directory again as the
writer: a parent the user may not write to (a root-owned directory, /root)
fails with EACCES and nothing is made there; a parent that is gone is ENOENT;
`..`, `.` or empty names, a mode that is no directory's, a bad mtime or an fd
that is no removed directory are EINVAL before anything is made. `deleted_cwd_fd`
(the cwd also held as fd 3) comes back as one directory.

usage: delcwd_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import sys
import tempfile
import unittest

import restore_attacks_test as rat  # (SlotAttackCase, run_as; it finds roundtrip_mount_test)

rt = rat.rt
setUpModule, tearDownModule = rat.attacks_as("s15dc1")


def leftovers(d):
    return sorted(n for n in os.listdir(d) if n == "sub" or n.startswith(".crfs-deldir-"))


class DeletedCwdAttacks(rat.SlotAttackCase):
    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(rat.BUILD, 'tests/probes/probe_task')} deleted_cwd {d}"

    def cwd(self, path):
        return f"{self.rec('fs')}.path={path}"

    def test_unedited_image_restores_as_the_user_into_its_directory(self):
        pid = self.restore_sleeping(f"{self.d}/snap.img")
        st = os.stat(f"/proc/{pid}/cwd")
        self.assertEqual((st.st_uid, st.st_nlink, oct(st.st_mode)), (rat.UID, 0, oct(0o42751)))
        self.assertEqual(os.readlink(f"/proc/{pid}/cwd"), f"{self.d}/sub (deleted)")
        self.assertEqual(leftovers(self.d), [])
        self.assert_probe_passes(pid)

    def test_parent_the_user_may_not_write_is_refused_and_nothing_made(self):
        secret = tempfile.mkdtemp(prefix="s15dc-secret-", dir="/var/tmp")
        os.chmod(secret, 0o755)  # searchable, not writable by the user
        try:
            status = self.assert_refused(self.edited(self.cwd(f"{secret}/sub")),
                                         "Permission denied")
            self.assertIn("cwd: mkdir in " + secret, status)
            self.assertEqual(os.listdir(secret), [])
        finally:
            shutil.rmtree(secret)

    def test_parent_in_root_is_refused_and_nothing_made(self):
        before = leftovers("/root")
        self.assert_refused(self.edited(self.cwd("/root/sub")), "Permission denied")
        self.assertEqual(leftovers("/root"), before)

    def test_symlink_into_root_is_refused(self):
        link = f"{self.d}/to-root"
        os.symlink("/root", link)
        try:
            before = leftovers("/root")
            self.assert_refused(self.edited(self.cwd(f"{link}/sub")), "Permission denied")
            self.assertEqual(leftovers("/root"), before)
        finally:
            os.unlink(link)

    def test_parent_that_is_gone_is_refused(self):
        status = self.assert_refused(self.edited(self.cwd("/nonexistent-s15dc/sub")),
                                     "No such file or directory")
        self.assertIn("/nonexistent-s15dc", status)

    def test_dot_dot_names_are_refused(self):
        for path in (f"{self.d}/../sub", f"{self.d}/x/..", f"{self.d}/./sub", f"{self.d}//sub",
                     f"{self.d}/", "/", "/root/.."):
            with self.subTest(path=path):
                self.refused(self.cwd(path), why="deleted cwd: path")
        self.assertEqual(leftovers(os.path.dirname(self.d)), [])
        self.assertEqual(leftovers(self.d), [])

    def test_relative_path_is_refused(self):
        self.refused(self.cwd("sub"), why="cwd not absolute")

    def test_mode_of_a_regular_file_is_refused(self):
        rec = self.rec("deleted-cwd")
        self.refused(f"{rec}.mode={0o100644}", why="deleted directory mode")
        self.refused(f"{rec}.mode={0o40000 | 0o10000}", why="deleted directory mode")

    def test_mtime_and_fd_out_of_range_are_refused(self):
        rec = self.rec("deleted-cwd")
        self.refused(f"{rec}.mtime_nsec=1000000000", why="mtime nanoseconds")
        self.refused(f"{rec}.fd=-2", why="deleted cwd: fd -2")
        self.refused(f"{rec}.fd=0", why="fd 0 is no removed directory")  # /dev/null
        self.refused(f"{rec}.fd=77", why="fd 77: no such fd record")
        self.assertEqual(leftovers(self.d), [])


class DeletedCwdWithFd(rat.SlotAttackCase):
    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(rat.BUILD, 'tests/probes/probe_task')} deleted_cwd_fd {d}"

    def test_cwd_and_fd_come_back_as_one_directory(self):
        pid = self.restore_sleeping(f"{self.d}/snap.img")
        cwd, fd = os.stat(f"/proc/{pid}/cwd"), os.stat(f"/proc/{pid}/fd/3")
        self.assertEqual((cwd.st_dev, cwd.st_ino), (fd.st_dev, fd.st_ino))
        self.assertEqual(leftovers(self.d), [])
        self.assert_probe_passes(pid)

    def test_fd_of_another_file_is_refused(self):
        rec = self.rec("deleted-cwd")
        self.refused(f"{rec}.fd=0", why="fd 0 is no removed directory")


if __name__ == "__main__":
    rat.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
