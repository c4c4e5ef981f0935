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
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import Base, alive, pid_free, read, sh, wait_for  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from users import unprivileged_user  # noqa: E402
from trees_mount_test import reap  # noqa: E402
import threads_mount_test  # noqa: E402

USER = "s11sv1"  # test users: the s11sv prefix
TREE_USER, TREE_GROUP = "s12st1", "s12stg"  # sysvtree: the s12st prefix
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT, IPC_EXCL, IPC_RMID = 0o1000, 0o2000, 0


def sysvipc(kind, columns):
    """/proc/sysvipc/KIND as {id: (the numbers in COLUMNS)}; column 2, the
    permissions, is octal."""
    out = {}
    with open(f"/proc/sysvipc/{kind}") as f:
        next(f)
        for line in f:
            c = line.split()
            out[int(c[1])] = tuple(int(c[i], 8 if i == 2 else 10) for i in columns)
    return out


def segments():
    """/proc/sysvipc/shm as {shmid: (key, perms, nattch, uid, cuid)}."""
    return sysvipc("shm", (0, 2, 6, 7, 9))


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


def kill_members(t, pids):
    """kill -9 of a tree's processes (t: its root's Task), reaped (a subreaper)."""
    for p in pids:
        os.kill(p, signal.SIGKILL)
    if t.proc:
        t.proc.wait(60)
        t.proc = None
    wait_for(lambda: reap() or all(pid_free(p) for p in pids), "the tree to be reaped")


def verdicts(t, pids):
    """SIGTERM to each member, then their DIR/result-<i>, once all ended."""
    for p in pids:
        os.kill(p, signal.SIGTERM)
    names = [t.path(f"result-{i}") for i in range(len(pids))]
    wait_for(lambda: all(os.path.exists(n) for n in names) and
             not any(alive(p) for p in pids), "the verdicts")
    return [read(n).strip() for n in names]


class SysvTree(SysvBase):
    """sysvtree: a parent's segment, attached by it and by the two children
    that inherit the attach, comes back as ONE segment with its id, attached
    by all three (tests/fs/sysv_tree_prog.c checks it from inside)."""
    PROG = "tests/fs/sysv_tree_prog"

    def setUp(self):
        super().setUp()
        libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: the killed members are reaped here

    def tree(self):
        t = self.task(self.prog())
        sid, *pids = (int(w) for w in read(t.path("ready")).split())
        self.assertEqual(pids[0], t.pid)
        self.assertEqual(segments()[sid][2], 3)  # nattch
        self.assertEqual(read(f"{self.m}/{t.pid}/reason"), "")
        return t, sid, pids

    def left_nothing(self, pids):
        self.assertEqual(with_key(self.key), [])
        self.assertTrue(all(pid_free(p) for p in pids), [p for p in pids if not pid_free(p)])

    def test_one_segment_of_three_members_comes_back_as_one(self):
        t, sid, pids = self.tree()
        img = t.checkpoint()
        kill_members(t, pids)
        # The segment outlives the tree: refused while it exists, untouched.
        before = segments()[sid]
        self.refused_restore(img, pids[0], f"System V shared memory id {sid} is in use")
        self.assertEqual(segments()[sid], before)
        self.assertEqual(sh(f"ipcrm -m {sid}").returncode, 0)
        t.restore(img, str(pids[0]))
        # One segment, the image's id, attached by the three (the daemon's own
        # attach, held while the members attached it, is gone).
        self.assertEqual(with_key(self.key), [sid])
        self.assertEqual(segments()[sid][2], 3)
        self.assertEqual(verdicts(t, pids), ["PASS"] * 3)

    def test_the_content_is_in_the_image_once(self):
        t, sid, pids = self.tree()
        img = t.checkpoint()
        # Per process (its process record first): its attaches, and the
        # pages records that fall in them (in its page section, version 16).
        member, attaches, with_pages = -1, {}, set()
        for rec in records(img):
            if rec["type"] == "process":
                member += 1
            elif rec["type"] == "member-pages":
                member = rec["process"]
            elif rec["type"] == "vma" and rec["path"].startswith("/SYSV"):
                attaches.setdefault(member, []).append((rec["start"], rec["end"]))
            elif rec["type"] == "pages":
                if any(a <= rec["vaddr"] < b for a, b in attaches.get(member, [])):
                    with_pages.add(member)
        self.assertEqual(sorted(attaches), [0, 1, 2])
        self.assertEqual(with_pages, {0})  # the first member's attach carries the content

    def test_an_attach_outside_the_tree_is_a_reason(self):
        t, sid, pids = self.tree()
        code = ("import ctypes, time\n"
                "libc = ctypes.CDLL(None)\n"
                "libc.shmat.restype = ctypes.c_void_p\n"
                f"assert libc.shmat({sid}, None, 0) not in (None, 2**64 - 1)\n"
                "open('ready', 'w').close()\n"
                "time.sleep(600)\n")
        other = self.task(["python3", "-c", code])
        wait_for(lambda: segments()[sid][2] == 4, "the outside attach")
        self.assertIn(f"segment {sid} (key 0x{self.key:x}) is attached 4 times, 3 by the image's "
                      "processes: another process attaches it too",
                      read(f"{self.m}/{t.pid}/reason"))
        r = sh(f"cp {self.m}/{t.pid}/image {t.path('snap.img')}")
        self.assertIn("Device or resource busy", r.stderr)
        other.kill9()

    def test_edited_members_are_refused_and_leave_nothing(self):
        t, sid, pids = self.tree()
        img = t.checkpoint()
        kill_members(t, pids)
        sh(f"ipcrm -m {sid}")
        # root's segment of another key, which a member's record is edited to name
        theirs = libc.shmget(self.other_key, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        self.assertGreaterEqual(theirs, 0)
        before = segments()[theirs]
        free = next(i for i in range(sid + 1, sid + 1000) if i not in segments())
        vmas = [rec["n"] for rec in records(img) if rec["type"] == "vma" and
                rec["path"].startswith("/SYSV")]
        self.assertEqual(len(vmas), 3)
        cases = [
            # the second member's record: another mode, another size, another key
            (["sysv-shm#1@16:4=" + str(0o600)], "not the segment process"),
            (["sysv-shm#2@8:8=" + str(8 * 4096)], "not a whole attach of System V segment"),
            (["sysv-shm#1@0:4=" + str(self.other_key)], "not the segment process"),
            # another id: the other segment's, attached by the second member
            ([f"sysv-shm#1@4:4={theirs}", f"vma#{vmas[1]}.ino={theirs}"],
             f"id {theirs} is in use"),
            # another id, free, with the other segment's key
            ([f"sysv-shm#2@4:4={free}", f"vma#{vmas[2]}.ino={free}",
              "sysv-shm#2@0:4=" + str(self.other_key)], "the key is in use"),
        ]
        for edits, expect in cases:
            self.refused_restore(self.edited(img, *edits), pids[0], expect)
            self.assertEqual(segments()[theirs], before, edits)
            self.left_nothing(pids)
        libc.shmctl(theirs, IPC_RMID, None)
        t.restore(img, str(pids[0]))  # the image itself still comes back
        self.assertEqual(verdicts(t, pids), ["PASS"] * 3)

    def edited(self, img, *edits):
        out = img + ".bad"
        r = subprocess.run([os.path.join(roundtrip_mount_test.BUILD,
                                         "tests/security/restore/crfs-imgedit"), img, out, *edits],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return out


class SysvTreeUser(threads_mount_test.UserInGroup, SysvTree):
    """sysvtree as a real user who may choose pids (-o restore_pid_group):
    root checkpoints the user's tree (map_files is root's); the user's own
    restore of it, edited or not, is refused (the user cannot choose a
    System V id: shm_next_id is root's) and leaves no segment, no process,
    and root's segment untouched."""
    user, group = TREE_USER, TREE_GROUP

    def setUp(self):
        super().setUp()
        self.crfs.stop()
        self.crfsd_for_group()
        self.pw = pwd.getpwnam(self.user)
        self.as_user = ["setpriv", f"--reuid={self.pw.pw_uid}", f"--regid={self.pw.pw_gid}",
                        "--init-groups"]

    def tree(self):
        d = tempfile.mkdtemp(prefix="crfs-sysvtree-")
        os.chown(d, self.pw.pw_uid, self.pw.pw_gid)
        self.addCleanup(shutil.rmtree, d, True)
        t = self.task(self.prog(self.as_user, d), ready=None)
        os.chmod(t.dir, 0o755)  # its cwd, which a restore as the user enters again
        self.addCleanup(shutil.rmtree, t.dir, True)
        t.dir = d
        wait_for(lambda: os.path.exists(t.path("ready")), "the user's tree")
        sid, *pids = (int(w) for w in read(t.path("ready")).split())
        self.assertEqual(segments()[sid][4], self.pw.pw_uid)
        return t, sid, pids

    def test_the_users_edited_trees_are_refused_and_leave_nothing(self):
        t, sid, pids = self.tree()
        img = t.checkpoint()  # by root
        os.chmod(img, 0o644)
        kill_members(t, pids)
        sh(f"ipcrm -m {sid}")
        theirs = libc.shmget(self.other_key, 4096, IPC_CREAT | IPC_EXCL | 0o600)
        self.assertGreaterEqual(theirs, 0)
        before = segments()[theirs]
        vmas = [rec["n"] for rec in records(img) if rec["type"] == "vma" and
                rec["path"].startswith("/SYSV")]
        cases = [
            [],
            ["sysv-shm#1@16:4=" + str(0o600)],
            [f"sysv-shm#1@4:4={theirs}", f"vma#{vmas[1]}.ino={theirs}"],
            [f"sysv-shm@4:4={theirs}", f"vma#{vmas[0]}.ino={theirs}"],
            ["sysv-shm#2@0:4=" + str(self.other_key)],
        ]
        for edits in cases:
            bad = self.edited(img, *edits) if edits else img
            os.chmod(bad, 0o644)
            self.refused_restore(bad, pids[0], "System V shared memory", self.as_user)
            self.assertEqual(segments()[theirs], before, edits)
            self.left_nothing(pids)
        libc.shmctl(theirs, IPC_RMID, None)

    def test_one_segment_of_three_members_comes_back_as_one(self):
        pass  # root's restore: SysvTree

    def test_the_content_is_in_the_image_once(self):
        pass  # SysvTree

    def test_an_attach_outside_the_tree_is_a_reason(self):
        pass  # SysvTree

    def test_edited_members_are_refused_and_leave_nothing(self):
        pass  # as root: SysvTree; as the user: above


def records(img):
    """The records of `img`, in order (crfs-imgedit --list)."""
    r = subprocess.run([os.path.join(roundtrip_mount_test.BUILD,
                                     "tests/security/restore/crfs-imgedit"), img, "--list"],
                       capture_output=True, text=True, check=True)
    return [json.loads(line) for line in r.stdout.splitlines()]


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
