#!/usr/bin/env python3
"""Hostile thread-attrs records (state/thread_attrs.cc, record 130), as a real
unprivileged user.

The user `s6fd1` (made in setup, removed after) checkpoints its own victim,
edits the main thread's thread-attrs record with crfs-imgedit (checksum
fixed) and writes it into restore slots. Out-of-range values are refused
before anything is made (EINVAL naming the field, no task left); an I/O
class the user may not take (realtime) and securebits (CAP_SETPCAP) are the
kernel's EPERM, named in `status`; an in-range value the user may set comes
back exactly.

usage: thread_attrs_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import restore_attacks_test as ra  # noqa: E402
import roundtrip_mount_test as rt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s6fd1")

IOPRIO_WHO_PROCESS = 1
SYS_IOPRIO_GET = 252


def ioprio(cls, level, hint=0):
    return cls << 13 | hint << 3 | level


class ThreadAttrsImages(ra.SlotAttackCase):
    def attrs(self):
        return self.rec("thread-attrs")

    def test_out_of_range_are_einval_and_nothing_is_made(self):
        a = self.attrs()
        for edit, words in [(".pdeathsig=65", "pdeathsig 65"),
                            (".pdeathsig=-1", "pdeathsig -1"),
                            (".timer_slack_ns=0", "timer slack 0 ns"),
                            (f".timer_slack_ns={1 << 63}", f"timer slack {1 << 63} ns"),
                            (f".ioprio={ioprio(4, 0)}", "I/O priority 0x8000"),
                            (".ioprio=3", "I/O priority none level 3"),
                            (f".ioprio={ioprio(2, 4, 8)}", "I/O priority best-effort level 4 hint 8"),
                            (f".securebits={1 << 12}", "securebits 0x1000")]:
            with self.subTest(edit=edit):
                st = self.assert_refused(self.edited(a + edit), "Invalid argument")
                self.assertIn(words, st)

    def test_a_record_of_another_thread_is_ebadmsg(self):
        self.assert_refused(self.edited(self.attrs() + ".tid=1"), "Bad message")

    def test_realtime_io_class_is_the_kernels_eperm(self):
        st = self.assert_refused(self.edited(self.attrs() + f".ioprio={ioprio(1, 4)}"),
                                 "Operation not permitted")
        self.assertIn("setting I/O priority realtime level 4", st)

    def test_securebits_are_the_kernels_eperm(self):
        """The user's task has no CAP_SETPCAP: securebits edited in are refused
        by the kernel, not set by the daemon's rights."""
        st = self.assert_refused(self.edited(self.attrs() + ".securebits=1"),
                                 "Operation not permitted")
        self.assertIn("setting securebits 0x1 of thread", st)

    def test_an_idle_io_class_the_user_may_take_comes_back(self):
        ok, err, status, pid = self.restore(self.edited(self.attrs() + f".ioprio={ioprio(3, 0)}"))
        self.assertTrue(ok, f"{err} {status}")
        libc = ctypes.CDLL(None, use_errno=True)
        self.assertEqual(libc.syscall(SYS_IOPRIO_GET, IOPRIO_WHO_PROCESS, pid), ioprio(3, 0))


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
