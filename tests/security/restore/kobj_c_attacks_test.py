#!/usr/bin/env python3
"""Hostile memfd records (issue 11, state/memfd.cc) written into restore slots
by a real unprivileged user `crfsko1` (made in setup, removed after).

The user's own task, tests/probes/kobj_c `memfd_one` (one memfd with a hole,
seals, a dup, a second description, two shared mappings and a private one
with a page of its own), is checkpointed through the mount; crfs-imgedit
edits its memfd, memfd-data, fd and vma records (checksum fixed). Each edit
must fail at close() naming what is wrong, and leave no task; the unedited
image restores as the user and the probe checks itself (PASS).

usage: kobj_c_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import restore_attacks_test as rat  # noqa: E402  (SlotAttackCase, run_as, the user)
import kobj_b_attacks_test as kb  # noqa: E402  (ProbeVictim)

rat.USER = "crfsko1"


def setUpModule():
    rat.setUpModule()


def tearDownModule():
    rat.tearDownModule()


class MemfdAttacks(kb.ProbeVictim):
    # probe_kobj_c memfd_one: fd 3 the memfd (offset 5), 4 its dup, 5 a second
    # description (O_RDONLY, offset 7); a shared writable mapping, a shared
    # read-only one and a private one, all of its first two pages.
    VARIANT = "memfd_one"

    @classmethod
    def victim_command(cls, d):
        return f"{os.path.join(rat.BUILD, 'tests/probes/probe_kobj_c')} {cls.VARIANT} {d}"

    def memfd_vma(self, kind):
        """The vma record of the memfd mapping of `kind` (8 shared, 9 private)."""
        return self.rec("vma", lambda r: "/memfd:" in r["path"] and r["kind"] == kind)

    def test_unknown_seal(self):
        self.refused("memfd#0.seals=0x43", why="seals 0x43")

    def test_mode_beyond_permission_bits(self):
        self.refused(f"memfd#0.mode={0o100644}", why="mode 0100644")

    def test_reserved(self):
        self.refused("memfd#0.reserved=1", why="reserved 1")

    def test_fds_and_mappings_of_a_memfd_without_a_record(self):
        # The record and its data renamed: the fds and mappings name nothing.
        self.refused("memfd#0.ino=4242", "memfd-data#0.ino=4242", "memfd-data#1.ino=4242",
                     why="has no memfd record")

    def test_nul_in_the_name(self):
        self.refused("memfd#0@32:1=0", why="a NUL in its name")

    def test_size_above_the_limit(self):
        status = self.assert_refused(self.edited(f"memfd#0.size={(1 << 30) + 4096}"), "Bad message")
        self.assertIn("memfd of 1073745920 bytes", status)

    def test_data_beyond_the_size(self):
        status = self.assert_refused(self.edited("memfd-data#1.offset=0x200000"), "Bad message")
        self.assertIn("data of", status)

    def test_data_of_no_memfd(self):
        status = self.assert_refused(self.edited("memfd-data#0.ino=4242"), "Bad message")
        self.assertIn("which has no record before it", status)

    def test_regular_file_fd_turned_into_a_memfd(self):
        self.refused(self.fd(0) + ".kind=36", why="has no memfd record")

    def test_private_pages_written_into_a_shared_mapping(self):
        # The private mapping (its own page two) turned shared: its pages
        # would be written into the memfd every fd and mapping sees.
        self.refused(self.memfd_vma(9) + ".kind=8", why="in a shared memfd mapping")

    def test_write_seal_with_a_writable_shared_mapping_is_the_kernels_to_refuse(self):
        # F_SEAL_WRITE while a writable shared mapping exists: F_ADD_SEALS
        # fails (EBUSY), the restore with it, and no task is left.
        status = self.assert_refused(self.edited("memfd#0.seals=0xc"), "Device or resource busy")
        self.assertIn("sealing memfd 0", status)


    def test_mapped_only_memfd_is_a_reason_for_the_user_and_saved_for_root(self):
        # probe_kobj_c memfd_mapped: a memfd only mapped (its fd closed) is read
        # through /proc/PID/map_files, which needs CAP_CHECKPOINT_RESTORE.
        d = f"{self.d}/mapped"
        rat.run_as(f"mkdir {d}", check=True)
        probe = os.path.join(rat.BUILD, "tests/probes/probe_kobj_c")
        r = rat.run_as(f"{probe} memfd_mapped {d} </dev/null >/dev/null 2>&1 & echo $!; "
                       f"until [ -e {d}/ready ]; do sleep 0.01; done")
        pid = int(r.stdout.split()[0])
        try:
            m = self.crfs.mnt
            why = rat.run_as(f"cat {m}/{pid}/reason").stdout
            self.assertIn("memfd:mapped (mapped, no fd) is read through /proc/%d/map_files" % pid,
                          why)
            self.assertIn("CAP_CHECKPOINT_RESTORE", why)
            cp = rat.run_as(f"cp {m}/{pid}/image {d}/snap.img")
            self.assertIn("Device or resource busy", cp.stderr)
            self.assertEqual(kb.rt.read(f"{m}/{pid}/reason"), "")  # root may
        finally:
            os.kill(pid, 9)


if __name__ == "__main__":
    rat.BUILD = kb.rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
