#!/usr/bin/env python3
"""A parent and its child made with clone(CLONE_FILES | CLONE_FS) come back
sharing ONE fd table and ONE fs struct (issue 10, docs/trees.md "Clones
sharing their fd table or fs"), through the mounted tree:

    share_clone_prog DIR            # parent + CLONE_FILES|CLONE_FS child
    round 0: the child opens a file at fd 50 and chdirs; the parent sees both
             (and the parent's fd 70 and umask are the child's)
    cp /crfs/PARENT/image snap.img; kill -9 both
    mkdir /crfs/PARENT && cp snap.img /crfs/PARENT/image
    round 1: the same, by the restored processes (kcmp: one table, one fs)

A fresh name is EPERM (a tree keeps its pids). Edited share-task records (a
pid not in the image, a later process: a cycle, a process that is itself a
sharer, a cwd that differs, other credentials, fd records of its own) are
refused with nothing made; a normal user in the pid group restores the edited
images the same way (EINVAL, nothing made; other credentials are its EPERM
first) and the intact one.

usage: share_clone_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, sh, wait_for  # noqa: E402
import threads_mount_test  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import tree_of  # noqa: E402

GROUP_USER, GROUP = "s10sh1", "s10shg"  # test users: the s10sh prefix


def kcmp(a, b, kind):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(312, a, b, kind, 0, 0)  # SYS_kcmp


class ShareClone(trees_mount_test.TreeBase):
    def prog(self):
        return os.path.join(roundtrip_mount_test.BUILD, "tests/fs/share_clone_prog")

    def p(self, name):
        return os.path.join(self.dir, name)

    def begin(self, user_prefix=()):
        proc = self.start(None, 2, argv=list(user_prefix) + [self.prog(), self.dir])
        wait_for(lambda: os.path.exists(self.p("parent.ready")) and
                 os.path.exists(self.p("child.ready")), "the parent and its child")
        return proc, tree_of(proc.pid)

    def round(self, n):
        with open(self.p(f"go.{n}"), "w") as f:
            f.write("go\n")
        wait_for(lambda: any(os.path.exists(self.p(f"{w}.{n}")) for w in ("ok", "bad")) and
                 any(os.path.exists(self.p(f"{w}.{n}")) for w in ("child_ok", "child_bad")),
                 f"round {n}")
        for w in ("bad", "child_bad"):
            if os.path.exists(self.p(f"{w}.{n}")):
                self.fail(f"round {n}: " + read(self.p(f"{w}.{n}")))
        self.assertEqual(read(self.p(f"child.{n}")), "from the parent\n")

    def test_parent_and_clone_keep_one_fd_table_and_one_fs(self):
        proc, pids = self.begin()
        parent, child = pids
        self.assertEqual(kcmp(parent, child, 2), 0)  # KCMP_FILES
        self.round(0)
        self.round_trip(proc, pids)
        self.assertEqual(kcmp(parent, child, 2), 0, "one fd table after the restore")
        self.assertEqual(kcmp(parent, child, 3), 0, "one fs after the restore")
        self.round(1)
        self.round(2)
        # The child's table is the parent's: the same fds, nothing of the restore's left.
        self.assertEqual(sorted(os.listdir(f"/proc/{parent}/fd")),
                         sorted(os.listdir(f"/proc/{child}/fd")))
        self.assertFalse([f for f in os.listdir(f"/proc/{parent}/fd") if int(f) > 72],
                         os.listdir(f"/proc/{parent}/fd"))

    def test_fresh_name_is_eperm(self):
        proc, pids = self.begin()
        img = self.checkpoint(pids[0])
        r = self.restore(img, "fresh-share")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("tree comes back only with its original pids",
                      read(f"{self.m}/fresh-share/status"))

    def edits(self, pids, user=False):
        parent, child = pids
        return [
            (["share-task@0:4=4194999"], "not in the image"),
            (["share-task@4:4=4194999"], "not in the image"),
            (["share-task@0:4=" + str(child)], "which is not an earlier process of the tree"),
            (["share-task@0:4=0", "share-task@4:4=0"], "share-task record"),
            (["share-task@8:4=1"], "share-task record"),
            (["fs#1.path=/"], "but its cwd or umask differs"),
            (["process#1.pid=" + str(parent)], "twice"),
        ] + ([] if user else [(["creds#1@0:4=4242", "creds#1@4:4=4242"],
                               "which has other credentials")])

    def test_edited_share_task_records_are_refused_and_leave_nothing(self):
        proc, pids = self.begin()
        img = self.checkpoint(pids[0])
        self.kill_all(proc, pids)
        for edits, expect in self.edits(pids):
            self.refused(img, pids[0], edits, expect)
            for p in pids:
                self.assertFalse(os.path.exists(f"/proc/{p}"), edits)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(kcmp(pids[0], pids[1], 2), 0)


class GroupWriter(threads_mount_test.UserInGroup, ShareClone):
    """A normal user in the group named by -o restore_pid_group: its own
    sharing tree comes back shared; its edited images are refused."""

    user, group = GROUP_USER, GROUP

    def setUp(self):
        super().setUp()
        self.crfs.stop()
        self.crfsd_for_group()

    def test_parent_and_clone_keep_one_fd_table_and_one_fs(self):
        pw, as_user, run = self.as_user(GROUP_USER, "--init-groups")
        self.run = run
        proc, pids = self.begin(as_user)
        self.round(0)
        self.assertEqual(read(f"{self.m}/{pids[0]}/reason"), "")
        r = run(f"cp {self.m}/{pids[0]}/image {self.dir}/tree.img")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.kill_all(proc, pids)
        for edits, expect in self.edits(pids, user=True):
            bad = os.path.join(self.dir, "bad.img")
            edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
            e = subprocess.run([edit, f"{self.dir}/tree.img", bad] + edits, capture_output=True,
                               text=True)
            self.assertEqual(e.returncode, 0, e.stderr)
            r = run(f"mkdir {self.m}/{pids[0]} && cp {bad} {self.m}/{pids[0]}/image")
            self.assertNotEqual(r.returncode, 0, edits)
            self.assertIn(expect, read(f"{self.m}/{pids[0]}/status"), edits)
            self.assertEqual(run(f"rmdir {self.m}/{pids[0]}").returncode, 0)
            for p in pids:
                self.assertFalse(os.path.exists(f"/proc/{p}"), edits)
        r = run(f"mkdir {self.m}/{pids[0]} && cp {self.dir}/tree.img {self.m}/{pids[0]}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(tree_of(pids[0]), pids)
        self.assertEqual(kcmp(pids[0], pids[1], 2), 0)
        self.assertEqual(kcmp(pids[0], pids[1], 3), 0)
        self.round(1)

    def test_fresh_name_is_eperm(self):
        pass  # the root writer's test covers it

    def test_edited_share_task_records_are_refused_and_leave_nothing(self):
        pass  # covered as the user above


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
