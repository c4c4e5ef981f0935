#!/usr/bin/env python3
"""Hostile posix-timer-thread records (state/timers.cc, record 104), as a real
unprivileged user.

The user `s8tm1` (made in setup, removed after) runs its own task with a POSIX
timer signalling a second thread (tests/probes/timer_thread.c thread_target),
checkpoints it through the mount and edits the image with crfs-imgedit
(checksum fixed). A target that is not one of the image's other threads, or a
target for a timer that signals no thread, is EINVAL naming the timer before
anything is made (no task left); a record that follows no timer of its id is
a bad image.

usage: timer_thread_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import exact_attacks_test as ex  # noqa: E402  (the probe-as-victim fixture)
import restore_attacks_test as ra  # noqa: E402
import roundtrip_mount_test as rt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s8tm1")


class ThreadTimerImages(ex.TimerImages):
    """Timers 0 (SIGEV_NONE) and 2 (to the probe's second thread)."""
    PROBE = "probe_timer_thread"
    VARIANT = "thread_target"
    # A task with threads comes back only into its own pid: not these tests'.
    test_user_restores_the_timers = None
    test_signal_out_of_range_is_refused = None
    test_unknown_clock_and_notification_are_refused = None
    test_alarm_clock_is_the_kernels_to_refuse = None
    test_ids_out_of_order_are_a_bad_image = None

    @classmethod
    def take_image(cls, p):
        cls.pid = p.pid
        cls.tids = sorted(int(t) for t in os.listdir(f"/proc/{p.pid}/task"))
        super().take_image(p)

    def target(self):
        return self.rec("posix-timer-thread")

    def test_the_image_names_the_target_thread(self):
        self.assertEqual([r["type"] for r in self.records].count("posix-timer-thread"), 1)
        self.assertEqual(len(self.tids), 2)

    def test_a_target_outside_the_threads_is_einval(self):
        for tid in (self.pid, 1, 0, -1, 1 << 30):
            with self.subTest(tid=tid):
                status = self.assert_refused(self.edited(self.target() + f".tid={tid}"),
                                             "Invalid argument")
                self.assertIn(f"POSIX timer 2: target thread {tid} is not one of the other "
                              "threads", status)

    def test_a_target_of_a_timer_signalling_no_thread_is_einval(self):
        timer2 = self.rec("posix-timer", lambda r: r["n"] == 1)
        for notify in (0, 1):  # SIGEV_SIGNAL, SIGEV_NONE
            with self.subTest(notify=notify):
                status = self.assert_refused(self.edited(timer2 + f"@8:4={notify}"),
                                             "Invalid argument")
                self.assertIn("POSIX timer 2: a target thread for a timer that signals no thread",
                              status)

    def test_a_record_following_no_timer_of_its_id_is_a_bad_image(self):
        for tid_id in (0, 1, 3):
            with self.subTest(id=tid_id):
                ok, err, status, pid = self.restore(self.edited(self.target() + f".id={tid_id}"))
                self.assertFalse(ok, status)
                self.assertIn("bad image", status)
                self.assertIn("not right after the posix-timer", status)
                self.assertEqual(self.crfs.children(), [])


if __name__ == "__main__":
    ra.BUILD = os.path.abspath(sys.argv[1])
    rt.BUILD = ra.BUILD
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
