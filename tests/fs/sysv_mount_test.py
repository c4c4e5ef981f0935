#!/usr/bin/env python3
"""System V shared memory through the mounted tree (issue 11, state/sysv_shm.h):

    sysv_prog DIR KEY            # a segment of KEY, left on the host, counted in
    cp /crfs/PID/image snap.img; kill -9 PID
    mkdir /crfs/PID && cp snap.img /crfs/PID/image   # refused: the segment lives on
    ipcrm -m ID; restore again                       # the same id, key, content

A key in use is refused and the segment that holds it is left alone. As a
real user (s11sv prefix): the user's own checkpoint is a reason (map_files
needs CAP_CHECKPOINT_RESTORE), root's image of the user's task is restored by
root (the segment is the user's again); the user's own restore cannot choose the id (shm_next_id is
root's) and is refused with words saying so, leaving nothing; images edited to
name another user's key or id, another size or mode are refused, the other
user's segment untouched.

usage: sysv_mount_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import Base, read, sh, wait_for  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from users import unprivileged_user  # noqa: E402

USER = "s11sv1"  # test users: the s11sv prefix
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT, IPC_EXCL, IPC_RMID = 0o1000, 0o2000, 0


def segments():
    """/proc/sysvipc/shm as {shmid: (key, perms, nattch, uid, cuid)}."""
    out = {}
    with open("/proc/sysvipc/shm") as f:
        next(f)
        for line in f:
            c = line.split()
            out[int(c[1])] = (int(c[0]), int(c[2], 8), int(c[6]), int(c[7]), int(c[9]))
    return out


def with_key(key):
    return [i for i, s in segments().items() if s[0] == key]


def remove_key(key):
    for i in with_key(key):
        libc.shmctl(i, IPC_RMID, None)


class SysvBase(Base):
    """Keys of this test's own: segments here, queues and sets in
    tests/fs/sysv_ipc_mount_test.py (KEY_BASE apart: ctest runs both at once)."""
    PROG = "tests/fs/sysv_prog"
    KEY_BASE = 0x51170000

    def remove_key(self, key):
        remove_key(key)

    def setUp(self):
        super().setUp()
        self.key = self.KEY_BASE + os.getpid() % 0x8000
        self.other_key = self.key + 0x8000
        for k in (self.key, self.other_key):
            self.remove_key(k)
            self.addCleanup(self.remove_key, k)

    def prog(self, prefix=(), d="@DIR@", *extra):
        return [*prefix, os.path.join(roundtrip_mount_test.BUILD, self.PROG), d, hex(self.key),
                *extra]

    def refused_restore(self, img, slot, expect, as_user=()):
        r = sh(" ".join(as_user) + f" sh -c 'mkdir {self.m}/{slot} && cp {img} {self.m}/{slot}/image'")
        self.assertNotEqual(r.returncode, 0)
        status = read(f"{self.m}/{slot}/status")
        self.assertIn(expect, status)
        self.assertEqual(sh(f"rmdir {self.m}/{slot}").returncode, 0)
        return status


class Sysv(SysvBase):
    def test_segment_comes_back_with_its_id_once_the_original_is_gone(self):
        t = self.task(self.prog())
        sid = int(read(t.path("ready")))
        self.assertEqual(read(f"{self.m}/{t.pid}/reason"), "")
        img = t.checkpoint()
        pid = t.pid
        t.kill9()
        # The segment outlives its task: restoring over it would be a second
        # segment of one key, or the live one reused. Refused, untouched.
        before = segments()[sid]
        self.refused_restore(img, pid, f"System V shared memory id {sid} is in use")
        self.assertEqual(segments()[sid], before)
        self.assertEqual(libc.shmctl(sid, IPC_RMID, None), 0)
        t.restore(img, str(pid))
        self.assertEqual(with_key(self.key), [sid])
        self.assertEqual(t.finish(), "PASS")

    def test_a_delta_chain_brings_the_segment_back(self):
        t = self.task(self.prog())
        sid = int(read(t.path("ready")))
        parts = [t.path("base.img"), t.path("d1.img")]
        for p in parts:  # the first read of delta is a base (docs/incremental.md)
            r = sh(f"cat {self.m}/{t.pid}/delta > {p}")
            self.assertEqual(r.returncode, 0, r.stderr)
        pid = t.pid
        t.kill9()
        self.assertEqual(libc.shmctl(sid, IPC_RMID, None), 0)
        r = sh(f"mkdir {self.m}/{pid} && cat {' '.join(parts)} > {self.m}/{pid}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pid}/status"))
        self.assertEqual(read(f"{self.m}/{pid}/status"), f"restored {pid}\n")
        self.assertEqual(with_key(self.key), [sid])
        self.assertEqual(t.finish(), "PASS")

    def test_a_key_in_use_is_refused_and_its_segment_left_alone(self):
        t = self.task(self.prog())
        sid = int(read(t.path("ready")))
        img = t.checkpoint()
        pid = t.pid
        t.kill9()
        libc.shmctl(sid, IPC_RMID, None)
        other = libc.shmget(self.key, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        self.assertGreaterEqual(other, 0)
        self.refused_restore(img, pid, "the key is in use")
        self.assertEqual(with_key(self.key), [other])
        # The id asked of the kernel was taken and freed again: no other creator gets it.
        self.assertEqual(read("/proc/sys/kernel/shm_next_id").strip(), "-1")


class SysvUserBase(SysvBase):
    """A real user's program; hostile edits of its image."""
    USER = USER

    def setUp(self):
        super().setUp()
        self.pw = self.enterContext(unprivileged_user(self.USER, "-N", "-g", "nogroup"))
        self.as_user = ["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}",
                        "--clear-groups"]
        self.udir = tempfile.mkdtemp(prefix="crfs-sysv-")
        os.chown(self.udir, self.pw.pw_uid, self.pw.pw_gid)
        self.addCleanup(sh, f"rm -rf {self.udir}")

    def start_user_task(self, *extra):
        """The program as the user, its ready file there."""
        d = tempfile.mkdtemp(prefix="crfs-sysv-wl-")
        os.chown(d, self.pw.pw_uid, self.pw.pw_gid)
        t = self.task(self.prog(self.as_user, d, *extra), ready=None)
        os.chmod(t.dir, 0o755)  # its cwd, which a restore as the user enters again
        self.addCleanup(shutil.rmtree, t.dir, True)
        t.dir = d  # the user's: its ready and result files
        wait_for(lambda: os.path.exists(t.path("ready")), "the user's program")
        return t

    def edited(self, img, *edits):
        out = os.path.join(self.udir, "bad.img")
        r = subprocess.run([os.path.join(roundtrip_mount_test.BUILD,
                                         "tests/security/restore/crfs-imgedit"), img, out, *edits],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chmod(out, 0o644)
        return out


class SysvUser(SysvUserBase):
    """The segment of a real user; hostile edits of its image."""

    def user_task(self):
        t = self.start_user_task()
        sid = int(read(t.path("ready")))
        self.assertEqual(segments()[sid][4], self.pw.pw_uid)
        # The user cannot checkpoint it: its content is read through
        # map_files, which the kernel opens only with CAP_CHECKPOINT_RESTORE
        # (as for shared anonymous memory). Root can; the image is the user's.
        self.assertIn("System V shared memory is read through /proc/",
                      sh(" ".join(self.as_user) + f" cat {self.m}/{t.pid}/reason").stdout)
        img = os.path.join(self.udir, "snap.img")
        r = sh(f"cp {self.m}/{t.pid}/image {img} && chmod 644 {img}")
        self.assertEqual(r.returncode, 0, r.stderr)
        t.kill9()
        libc.shmctl(sid, IPC_RMID, None)
        return t, sid, img

    def test_root_restores_a_users_segment_as_the_users(self):
        t, sid, img = self.user_task()
        t.restore(img, "sysv-root")
        self.assertEqual(segments()[sid][3:], (self.pw.pw_uid, self.pw.pw_uid))
        self.assertEqual(t.finish(), "PASS")

    def test_the_users_own_restore_cannot_choose_the_id_and_leaves_nothing(self):
        t, sid, img = self.user_task()
        r = sh(" ".join(self.as_user) + f" sh -c 'mkdir {self.m}/sysv-u && cp {img} {self.m}/sysv-u/image'")
        if r.returncode == 0:  # the kernel happened to give the same id: then it is exact
            t.pid = int(read(f"{self.m}/sysv-u/pid"))
            self.assertEqual(t.finish(), "PASS")
            return
        self.assertIn("only root of the IPC namespace's user namespace may choose it",
                      read(f"{self.m}/sysv-u/status"))
        self.assertEqual(with_key(self.key), [])

    def test_edited_images_are_refused_and_another_users_segment_left_alone(self):
        t, sid, img = self.user_task()
        # root's segment of another key, which the user's image is edited to name
        theirs = libc.shmget(self.other_key, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        self.assertGreaterEqual(theirs, 0)
        before = segments()[theirs]
        cases = [
            (["sysv-shm@0:4=" + str(self.other_key)], "the key is in use"),
            (["sysv-shm@8:8=4096"], "not a whole attach of System V segment"),
            (["sysv-shm@8:8=0"], "sysv-shm"),
            (["sysv-shm@16:4=" + str(0o4777)], "mode 4777"),
            (["sysv-shm@36:4=1"], "reserved field"),
        ]
        for edits, expect in cases:
            self.refused_restore(self.edited(img, *edits), "sysv-bad", expect, self.as_user)
            self.assertEqual(segments()[theirs], before, edits)
            self.assertEqual(with_key(self.key), [], edits)
        libc.shmctl(theirs, IPC_RMID, None)

    def test_an_id_another_user_holds_is_refused_and_left_alone(self):
        t, sid, img = self.user_task()
        # root's segment takes the image's id (root may choose it)
        with open("/proc/sys/kernel/shm_next_id", "w") as f:
            f.write(str(sid))
        theirs = libc.shmget(self.other_key, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        self.assertEqual(theirs, sid)
        before = segments()[sid]
        for who in (self.as_user, ()):  # the user's restore, and root's
            self.refused_restore(img, "sysv-bad", f"id {sid} is in use", who)
            self.assertEqual(segments()[sid], before)
            self.assertEqual(with_key(self.key), [])
        libc.shmctl(theirs, IPC_RMID, None)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
