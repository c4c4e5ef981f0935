#!/usr/bin/env python3
"""Hostile mqueue records and queues in the way (state/mqueue.cc, record 76),
as a real unprivileged user.

The user `s9un1` (made in setup, removed after) runs its own task holding a
named POSIX message queue with five messages (tests/probes/mqueue.c mq_named),
checkpoints it through the mount and edits the image with crfs-imgedit
(checksum fixed). Every field out of range is EINVAL before anything is made;
a queue of that name that exists with other messages or owner is an error
naming it and is left exactly as it was (never merged); root's queue of that
name is the kernel's EACCES to the user.

usage: mqueue_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import exact_attacks_test as ex  # noqa: E402  (the probe-as-victim fixture)
import restore_attacks_test as ra  # noqa: E402
import roundtrip_mount_test as rt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s9un1")

LIBC = ctypes.CDLL(None, use_errno=True)
NAME_AT = 56  # MqueueRecord: the name follows its 56 bytes


class MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long),
                ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long),
                ("pad", ctypes.c_long * 4)]


def mq_make(name, maxmsg, msgsize, mode, messages):
    """Root's queue `name` holding `messages` ([(bytes, prio)]); returns its fd."""
    a = MqAttr(0, maxmsg, msgsize, 0)
    fd = LIBC.mq_open(name.encode(), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode, ctypes.byref(a))
    assert fd >= 0, os.strerror(ctypes.get_errno())
    os.fchmod(fd, mode)
    for text, prio in messages:
        assert LIBC.mq_send(fd, text, len(text), prio) == 0
    return fd


def mq_contents(name):
    """[(bytes, prio)] of queue `name`, received and sent back; None: no queue."""
    fd = LIBC.mq_open(name.encode(), os.O_RDWR | os.O_NONBLOCK)
    if fd < 0:
        return None
    out = []
    buf = ctypes.create_string_buffer(1 << 16)
    prio = ctypes.c_uint()
    while True:
        n = LIBC.mq_receive(fd, buf, len(buf), ctypes.byref(prio))
        if n < 0:
            break
        out.append((buf.raw[:n], prio.value))
    for text, p in out:
        LIBC.mq_send(fd, text, len(text), p)
    os.close(fd)
    return out


class MqueueImages(ex.TimerImages):
    """The user's task with queue /crfs-probe-mq-PID-DIR on fd 3."""
    PROBE = "probe_mqueue"
    VARIANT = "mq_named"

    @classmethod
    def take_image(cls, p):
        cls.name = f"/crfs-probe-mq-{p.pid}-{os.path.basename(cls.d)[:40]}"
        super().take_image(p)

    def setUp(self):
        LIBC.mq_unlink(self.name.encode())  # the probe's, left by its kill

    def tearDown(self):
        super().tearDown()
        LIBC.mq_unlink(self.name.encode())

    def mq(self):
        return self.rec("mqueue")

    def test_the_user_restores_the_queue(self):
        ok, err, status, pid = self.restore(f"{self.d}/snap.img")
        self.assertTrue(ok, f"{err} {status}")
        self.assertEqual(self.verdict(pid), "PASS")

    def test_fields_out_of_range_are_einval(self):
        name_len = len(self.name)
        pair0 = NAME_AT + name_len
        for edit, words in (
                ("@16:8=0", "mqueue of 0 messages"),             # maxmsg
                ("@16:8=1048576", "mqueue of 1048576 messages"),
                ("@24:8=1099511627776", "mqueue of 7 messages of 1099511627776"),  # msgsize
                ("@24:8=4", "mqueue message 3: priority 2, 5 bytes"),  # shorter than "three"
                ("@32:4=8", "mqueue name of"),                   # nmsgs: the record's size
                ("@36:4=300", "mqueue name of 300 bytes"),
                ("@40:4=2", "mqueue mode 0640 deleted 2"),
                (f"@4:4={0o10640}", "mqueue mode 010640"),
                (f"@{NAME_AT + 1}:1=47", "mqueue name //"),      # a second '/'
                (f"@{NAME_AT}:1=120", "mqueue name x"),          # no leading '/'
                (f"@{pair0}:4=32768", "mqueue message 0: priority 32768"),
                (f"@{pair0 + 4}:4=65", "mqueue message 0: priority 9, 65 bytes"),
                (f"@{pair0 + 4}:4=3", "mqueue messages of 14 bytes, data of 15"),
        ):
            with self.subTest(edit=edit):
                status = self.assert_refused(self.edited(self.mq() + edit), "Invalid argument")
                self.assertIn("image field out of range: fd 3: " + words, status)
                self.assertIsNone(mq_contents(self.name), "a queue was made")

    def test_an_existing_queue_with_other_messages_is_an_error_not_a_merge(self):
        fd = mq_make(self.name, 7, 64, 0o640, [(b"other", 3)])
        try:
            os.fchown(fd, ra.UID, ra.GID)  # the user's own queue, as the image's
            status = self.assert_refused(f"{self.d}/snap.img", "File exists")
            self.assertIn(f"fd 3, POSIX message queue {self.name}: a queue of that name exists "
                          "with other attributes, owner or messages", status)
            self.assertEqual(mq_contents(self.name), [(b"other", 3)])
        finally:
            os.close(fd)

    def test_an_existing_queue_of_another_owner_is_an_error(self):
        fd = mq_make(self.name, 7, 64, 0o666, [])
        try:
            status = self.assert_refused(f"{self.d}/snap.img", "File exists")
            self.assertIn("a queue of that name exists with other attributes", status)
            self.assertEqual(mq_contents(self.name), [])
        finally:
            os.close(fd)

    def test_roots_queue_of_that_name_is_the_kernels_eacces(self):
        fd = mq_make(self.name, 7, 64, 0o600, [(b"root's", 1)])
        try:
            status = self.assert_refused(f"{self.d}/snap.img", "Permission denied")
            self.assertIn(f"creating or opening by its name fd 3, POSIX message queue "
                          f"{self.name}", status)
            self.assertEqual(mq_contents(self.name), [(b"root's", 1)])
        finally:
            os.close(fd)

    def test_an_owner_edited_to_root_is_eperm_and_no_queue_is_left(self):
        status = self.assert_refused(self.edited(self.mq() + "@8:4=0"),
                                     "Operation not permitted")
        self.assertIn(f"giving its mode, owner and messages to fd 3, POSIX message queue "
                      f"{self.name}", status)
        self.assertIsNone(mq_contents(self.name))


for _name in dir(ex.TimerImages):  # the fixture's own tests are not this file's
    if _name.startswith("test_"):
        setattr(MqueueImages, _name, None)


if __name__ == "__main__":
    ra.BUILD = os.path.abspath(sys.argv[1])
    rt.BUILD = ra.BUILD
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
