#!/usr/bin/env python3
"""Hostile mqueue-second records (state/mqueue_second.cc, record 105, fd kind
45), as a real unprivileged user.

The user `s11mq1` (made in setup, removed after) runs its own task holding an
unlinked POSIX message queue through two open file descriptions (fd F, the
first, read-only with the messages; fd 10 write-only and nonblocking, dup'd
to 11: tests/probes/mqueue.c mq_unlinked_two), checkpoints it through the
mount and edits the image with crfs-imgedit (checksum fixed). A record naming
anything but an earlier fd of an unlinked queue, or with reserved bits or
other open flags, is EINVAL before anything is made; a mode that denies the
second description's access is the kernel's EACCES to the user.

usage: mqueue_second_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import mqueue_attacks_test as mq  # noqa: E402  (the mqueue probe as the victim)
import restore_attacks_test as ra  # noqa: E402
import roundtrip_mount_test as rt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s11mq1")

SECOND = 10  # the probe's second description (its dup: 11)


class MqueueSecondImages(mq.MqueueImages):
    """The user's task with queue /crfs-probe-mq-PID-DIR, unlinked, on two descriptions."""
    VARIANT = "mq_unlinked_two"

    def second(self):
        return self.rec("mqueue-second")

    def first_fd(self):
        return next(r["fd"] for r in self.records if r["type"] == "fd" and r["kind"] == 38)

    def test_the_image_holds_one_queue_and_a_second_description(self):
        kinds = {r["fd"]: r["kind"] for r in self.records if r["type"] == "fd"}
        self.assertEqual((kinds[SECOND], kinds[SECOND + 1]), (45, 45))
        self.assertEqual(len([r for r in self.records if r["type"] == "mqueue"]), 1)
        self.assertEqual(len([r for r in self.records if r["type"] == "mqueue-second"]), 1)

    def test_the_user_restores_both_descriptions(self):
        ok, err, status, pid = self.restore(f"{self.d}/snap.img")
        self.assertTrue(ok, f"{err} {status}")
        self.assertEqual(self.verdict(pid), "PASS")

    def test_second_fields_out_of_range_are_einval(self):
        first = self.first_fd()
        no_queue = "which is no earlier unlinked queue"
        both = (self.fd(SECOND), self.fd(SECOND + 1))  # one description: one flags
        for edits, words in (
                ([self.second() + f"@4:4={SECOND}"], f"mqueue-second of fd {SECOND}, {no_queue}"),
                ([self.second() + "@4:4=-1"], f"mqueue-second of fd -1, {no_queue}"),
                ([self.second() + "@4:4=0"], f"mqueue-second of fd 0, {no_queue}"),  # stdin
                ([self.second() + "@4:4=99"], f"mqueue-second of fd 99, {no_queue}"),
                ([self.second() + "@8:4=1"], "mqueue-second reserved 1 0"),
                ([self.second() + "@12:4=7"], "mqueue-second reserved 0 7"),
                ([self.mq() + "@40:4=0"], f"mqueue-second of fd {first}, {no_queue}"),  # named
                ([f + f".open_flags={os.O_WRONLY | os.O_CREAT}" for f in both],
                 "mqueue open flags"),
                ([f + ".open_flags=3" for f in both], "mqueue access mode 3"),
        ):
            with self.subTest(edits=edits):
                status = self.assert_refused(self.edited(*edits), "Invalid argument")
                self.assertIn(f"image field out of range: fd {SECOND}: {words}", status)
                self.assertIsNone(mq.mq_contents(self.name), "a queue was left")

    def test_a_mode_denying_the_second_access_is_the_kernels_eacces(self):
        # 0400: the first (read-only) opens, the second (write-only) may not.
        status = self.assert_refused(self.edited(self.mq() + "@4:4=256"), "Permission denied")
        self.assertIn(f"opening fd {SECOND} again through /proc/self/fd of an earlier fd, as "
                      "another open file description of its unlinked POSIX message queue",
                      status)
        self.assertIsNone(mq.mq_contents(self.name), "a queue was left")


for _name in dir(mq.MqueueImages):  # the named queue's tests are not this file's
    if _name.startswith("test_"):
        setattr(MqueueSecondImages, _name, None)


if __name__ == "__main__":
    ra.BUILD = os.path.abspath(sys.argv[1])
    rt.BUILD = ra.BUILD
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
