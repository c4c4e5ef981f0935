#!/usr/bin/env python3
"""Hostile records of an O_TMPFILE file (state/file_deleted.cc) written into
restore slots by a real unprivileged user `s9fi1` (made in setup, removed
after).

The user's own task, tests/probes/files `tmpfile` (fd 3: a file made with
O_TMPFILE in the probe's directory, mode 0640, 4 bytes, offset 4), is
checkpointed through the mount; crfs-imgedit edits its fd record (checksum
fixed). The restore makes the file again with O_TMPFILE in the directory the
image names, as the writer: a directory the writer may not write to fails
with EACCES (never falls back to another directory, never made by root);
flags O_TMPFILE cannot have are EINVAL naming the field. The unedited image
restores as the user and the probe checks itself (PASS).

usage: files_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import sys
import tempfile
import unittest

import restore_attacks_test as rat  # (SlotAttackCase, run_as; it finds roundtrip_mount_test)

rt = rat.rt
setUpModule, tearDownModule = rat.attacks_as("s9fi1")

O_TMPFILE = 0o20200000
O_RDWR = 0o2
O_LARGEFILE = 0o100000


class TmpfileAttacks(rat.SlotAttackCase):
    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(rat.BUILD, 'tests/probes/probe_files')} tmpfile {d}"

    def test_unedited_image_restores_as_the_user_and_checks_itself(self):
        pid = self.restore_sleeping(f"{self.d}/snap.img")
        st = os.stat(f"/proc/{pid}/fd/3")
        self.assertEqual((st.st_uid, st.st_nlink), (rat.UID, 0))
        self.assert_probe_passes(pid)

    def test_tmpfile_in_a_root_only_directory_is_refused(self):
        secret = tempfile.mkdtemp(prefix="s9fi-secret-", dir="/var/tmp")
        os.chmod(secret, 0o700)
        try:
            status = self.assert_refused(self.edited(self.fd(3) + f".path={secret}/#1"),
                                         "Permission denied")
            self.assertIn("O_TMPFILE in " + secret, status)
        finally:
            shutil.rmtree(secret)

    def test_tmpfile_in_a_directory_that_is_gone_is_refused(self):
        status = self.assert_refused(self.edited(self.fd(3) + ".path=/nonexistent-s9fi/#1"),
                                     "No such file or directory")
        self.assertIn("O_TMPFILE in /nonexistent-s9fi", status)

    def test_tmpfile_read_only(self):
        self.refused(self.fd(3) + f".open_flags={O_TMPFILE | O_LARGEFILE}",
                     why="O_TMPFILE with open flags")

    def test_tmpfile_bit_without_o_directory(self):
        self.refused(self.fd(3) + f".open_flags={(O_TMPFILE & ~0o200000) | O_RDWR}",
                     why="O_TMPFILE with open flags")

    def test_tmpfile_turned_into_a_regular_file(self):
        # Its fd-data records then name no deleted fd: the decoder refuses them
        # (O_TMPFILE on a regular fd is EINVAL: fields_test TmpfileFlags...).
        self.assert_refused(self.edited(self.fd(3) + ".kind=1"), "Bad message")


if __name__ == "__main__":
    rat.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
