#!/usr/bin/env python3
"""System V message queues and semaphore sets through the mounted tree
(issue 11, state/sysv_msg.h, state/sysv_sem.h):

    sysv_ipc_prog DIR KEY        # a queue of KEY holding 4 messages, a set of
                                 # KEY of 3 semaphores, left on the host
    cp /crfs/PID/image snap.img; kill -9 PID
    mkdir /crfs/PID && cp snap.img /crfs/PID/image   # refused: both live on
    ipcrm -q ID; ipcrm -s ID; restore again          # same ids, keys, messages, values

A key in use is refused and the object that holds it is left alone. As a real
user (s11sm prefix): the user checkpoints its own task (read as the user:
msgrcv MSG_COPY, semctl GETALL), root restores the user's image (the queue
and set are the user's again); the user's own restore cannot choose the id
(msg_next_id is root's) and is refused with words saying so, leaving nothing;
a task that sent to a queue the user cannot read is a reason; images edited
to name another user's key or id, or out of range, are refused and the other
user's objects untouched.

usage: sysv_ipc_mount_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import pid_free, read, sh  # noqa: E402
from sysv_mount_test import SysvBase, SysvUserBase, kill_members, records, sysvipc, verdicts  # noqa: E402

USER = "s11sm1"  # test users: the s11sm prefix
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT, IPC_EXCL, IPC_RMID = 0o1000, 0o2000, 0


def queues():
    """/proc/sysvipc/msg as {msqid: (key, perms, cbytes, qnum, uid, cuid)}."""
    return sysvipc("msg", (0, 2, 3, 4, 7, 9))


def sets():
    """/proc/sysvipc/sem as {semid: (key, perms, nsems, uid, cuid)}."""
    return sysvipc("sem", (0, 2, 3, 4, 6))


def with_key(key):
    return [i for i, q in queues().items() if q[0] == key]


def sets_with_key(key):
    return [i for i, s in sets().items() if s[0] == key]


def remove_key(key):
    for i in with_key(key):
        libc.msgctl(i, IPC_RMID, None)
    for i in sets_with_key(key):
        libc.semctl(i, 0, IPC_RMID)


class MsgBase(SysvBase):
    PROG = "tests/fs/sysv_ipc_prog"
    KEY_BASE = 0x51180000

    def remove_key(self, key):
        remove_key(key)


class Msg(MsgBase):
    def test_queue_and_set_come_back_with_their_ids_once_the_originals_are_gone(self):
        t = self.task(self.prog())
        qid, sid = map(int, read(t.path("ready")).split())
        self.assertEqual(read(f"{self.m}/{t.pid}/reason"), "")
        img = t.checkpoint()
        pid = t.pid
        t.kill9()
        # read without consuming: the queue still holds its 4 messages (30 bytes)
        before = queues()[qid]
        self.assertEqual(before[2:4], (30, 4))
        self.refused_restore(img, pid, f"System V message queue id {qid} is in use")
        self.assertEqual(queues()[qid], before)
        self.assertEqual(libc.msgctl(qid, IPC_RMID, None), 0)
        before = sets()[sid]
        self.refused_restore(img, pid, f"System V semaphore set id {sid} is in use")
        self.assertEqual(sets()[sid], before)
        self.assertEqual(with_key(self.key), [])  # the queue it made first: removed again
        self.assertEqual(libc.semctl(sid, 0, IPC_RMID), 0)
        t.restore(img, str(pid))
        self.assertEqual(with_key(self.key), [qid])
        self.assertEqual(sets_with_key(self.key), [sid])
        self.assertEqual(t.finish(), "PASS")

    def test_a_key_in_use_is_refused_and_its_queue_left_alone(self):
        t = self.task(self.prog())
        qid, sid = map(int, read(t.path("ready")).split())
        img = t.checkpoint()
        pid = t.pid
        t.kill9()
        libc.msgctl(qid, IPC_RMID, None)
        libc.semctl(sid, 0, IPC_RMID)
        other = libc.msgget(self.key, IPC_CREAT | IPC_EXCL | 0o600)
        self.assertGreaterEqual(other, 0)
        self.refused_restore(img, pid, "the key is in use")
        self.assertEqual(with_key(self.key), [other])
        # The id asked of the kernel was taken and freed again: no other creator gets it.
        self.assertEqual(read("/proc/sys/kernel/msg_next_id").strip(), "-1")


class MsgUser(MsgBase, SysvUserBase):
    """The queue and set of a real user; hostile edits of its image."""
    USER = USER

    def user_task(self, *extra):
        t = self.start_user_task(*extra)
        return t, [int(i) for i in read(t.path("ready")).split()]

    def user_image(self):
        t, (qid, sid) = self.user_task()
        self.assertEqual(queues()[qid][4:], (self.pw.pw_uid, self.pw.pw_uid))
        self.assertEqual(sets()[sid][3:], (self.pw.pw_uid, self.pw.pw_uid))
        # The user checkpoints its own task: the queue is read as the user.
        self.assertEqual(sh(" ".join(self.as_user) + f" cat {self.m}/{t.pid}/reason").stdout, "")
        img = os.path.join(self.udir, "snap.img")
        r = sh(" ".join(self.as_user) + f" cp {self.m}/{t.pid}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chmod(img, 0o644)
        t.kill9()
        libc.msgctl(qid, IPC_RMID, None)
        libc.semctl(sid, 0, IPC_RMID)
        return t, (qid, sid), img

    def test_root_restores_a_users_queue_and_set_as_the_users(self):
        t, (qid, sid), img = self.user_image()
        t.restore(img, "sysvipc-root")
        self.assertEqual(queues()[qid][4:], (self.pw.pw_uid, self.pw.pw_uid))
        self.assertEqual(sets()[sid][3:], (self.pw.pw_uid, self.pw.pw_uid))
        self.assertEqual(t.finish(), "PASS")

    def test_the_users_own_restore_cannot_choose_the_id_and_leaves_nothing(self):
        t, _, img = self.user_image()
        r = sh(" ".join(self.as_user) + f" sh -c 'mkdir {self.m}/sysvipc-u && cp {img} {self.m}/sysvipc-u/image'")
        if r.returncode == 0:  # the kernel happened to give the same id: then it is exact
            t.pid = int(read(f"{self.m}/sysvipc-u/pid"))
            self.assertEqual(t.finish(), "PASS")
            return
        self.assertIn("only root of the IPC namespace's user namespace may choose it (msg_next_id)",
                      read(f"{self.m}/sysvipc-u/status"))
        self.assertEqual(with_key(self.key), [])
        self.assertEqual(sets_with_key(self.key), [])

    def test_a_queue_the_user_cannot_read_is_a_reason(self):
        # root's queue the user may write to but not read; the user's task sends to it
        theirs = libc.msgget(self.other_key, IPC_CREAT | IPC_EXCL | 0o622)
        self.assertGreaterEqual(theirs, 0)
        t, ids = self.user_task(str(theirs))
        self.assertEqual(ids, [theirs])
        reason = sh(" ".join(self.as_user) + f" cat {self.m}/{t.pid}/reason").stdout
        self.assertIn(f"message queue {theirs} (key {self.other_key:#x}) was last used by the "
                      "task: the caller cannot read it (IPC_STAT: Permission denied)", reason)
        r = sh(" ".join(self.as_user) + f" cp {self.m}/{t.pid}/image {self.udir}/x.img")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(queues()[theirs][3], 1)  # its message still there
        self.assertEqual(t.finish(), "PASS")

    def test_edited_images_are_refused_and_another_users_objects_left_alone(self):
        t, _, img = self.user_image()
        # root's queue and set of another key (and their ids), which the user's image
        # is edited to name
        theirs = libc.msgget(self.other_key, IPC_CREAT | IPC_EXCL | 0o600)
        self.assertGreaterEqual(theirs, 0)
        their_set = libc.semget(self.other_key, 1, IPC_CREAT | IPC_EXCL | 0o600)
        self.assertGreaterEqual(their_set, 0)
        before, set_before = queues()[theirs], sets()[their_set]
        # sysv-msg: key@0 msqid@4 mode@8 uid@12 gid@16 cuid@20 cgid@24 nmsgs@28 qbytes@32
        # cbytes@40, then {type, length} pairs from 48
        cases = [
            (["sysv-msg@0:4=" + str(self.other_key)], "the key is in use"),
            (["sysv-msg@4:4=" + str(theirs)], f"id {theirs} is in use"),
            (["sysv-msg@4:4=" + str(2**32 - 5)], "negative id"),
            (["sysv-msg@8:4=" + str(0o4777)], "mode 4777"),
            (["sysv-msg@28:4=5"], "5 messages of 30 bytes"),
            (["sysv-msg@28:4=" + str(2**32 - 1)], "messages of 30 bytes"),
            (["sysv-msg@40:8=" + str(2**63)], "messages of"),
            (["sysv-msg@32:8=0"], "qbytes 0"),
            (["sysv-msg@32:8=" + str(2**40)], "qbytes"),
            (["sysv-msg@48:8=0"], "message 0: type 0"),
            (["sysv-msg@56:8=31"], "message 0: type 5, 31 bytes"),
            (["sysv-msg@56:8=" + str(2**64 - 1)], "message 0: type 5, -1 bytes"),
            (["sysv-msg@56:8=9"], "messages of 29 bytes, texts of 30"),
            # sysv-sem: key@0 semid@4 mode@8 uid@12 gid@16 cuid@20 cgid@24 nsems@28, values
            # (u16) from 32
            # the user cannot choose the queue's id, so root's restore reaches the set;
            # the queue it made is removed again
            (["sysv-sem@4:4=" + str(their_set)], f"id {their_set} is in use", ()),
            (["sysv-sem@0:4=" + str(self.other_key)], "the key is in use", ()),
            (["sysv-sem@4:4=" + str(2**32 - 1)], "negative id"),
            (["sysv-sem@8:4=" + str(0o1777)], "mode 1777"),
            (["sysv-sem@28:4=2"], "2 semaphores in a record of 38 bytes"),
            (["sysv-sem@28:4=0"], "0 semaphores"),
            (["sysv-sem@28:4=" + str(2**32 - 1)], "4294967295 semaphores"),
            (["sysv-sem@34:2=40000"], "semaphore 1: value 40000"),
        ]
        for edits, expect, *who in cases:
            who = who[0] if who else self.as_user
            self.refused_restore(self.edited(img, *edits), "sysvipc-bad", expect, who)
            self.assertEqual(queues()[theirs], before, edits)
            self.assertEqual(sets()[their_set], set_before, edits)
            self.assertEqual(with_key(self.key), [], edits)
            self.assertEqual(sets_with_key(self.key), [], edits)
        libc.msgctl(theirs, IPC_RMID, None)
        libc.semctl(their_set, 0, IPC_RMID)


class MsgTree(MsgBase):
    """sysvtree: a parent's queue and set, used by it and its child (the
    child sends and raises, the parent takes and raises): recorded once, by
    the parent, and made once (tests/fs/sysv_ipc_tree_prog.c)."""
    PROG = "tests/fs/sysv_ipc_tree_prog"

    def setUp(self):
        super().setUp()
        libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: the killed child is reaped here

    def test_a_queue_and_a_set_of_two_members_come_back_once(self):
        t = self.task(self.prog())
        qid, sid, *pids = map(int, read(t.path("ready")).split())
        self.assertEqual(read(f"{self.m}/{t.pid}/reason"), "")
        img = t.checkpoint()
        kinds = [rec["type"] for rec in records(img)]
        self.assertEqual((kinds.count("sysv-msg"), kinds.count("sysv-sem")), (1, 1))
        kill_members(t, pids)
        self.refused_restore(img, pids[0], f"System V message queue id {qid} is in use")
        self.assertEqual(sh(f"ipcrm -q {qid} -s {sid}").returncode, 0)
        t.restore(img, str(pids[0]))
        self.assertEqual(with_key(self.key), [qid])
        self.assertEqual(sets_with_key(self.key), [sid])
        self.assertEqual(queues()[qid][3], 2)  # qnum: the child's messages 2 and 3
        self.assertEqual(verdicts(t, pids), ["PASS", "PASS"])

    def test_a_member_that_fails_takes_the_queue_and_set_with_it(self):
        t = self.task(self.prog())
        qid, sid, *pids = map(int, read(t.path("ready")).split())
        img = t.checkpoint()
        kill_members(t, pids)
        sh(f"ipcrm -q {qid} -s {sid}")
        # The parent makes both; the child's registers are edited (no
        # executable mapping at its rip): the tree is refused and what the
        # parent made is removed again.
        bad = img + ".bad"
        r = subprocess.run([os.path.join(roundtrip_mount_test.BUILD,
                                         "tests/security/restore/crfs-imgedit"), img, bad,
                            "regs#1.rip=0x10000"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.refused_restore(bad, pids[0], f"process {pids[1]}")
        self.assertEqual(with_key(self.key), [])
        self.assertEqual(sets_with_key(self.key), [])
        self.assertTrue(all(pid_free(p) for p in pids))
        t.restore(img, str(pids[0]))  # the image itself comes back
        self.assertEqual(verdicts(t, pids), ["PASS", "PASS"])


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
