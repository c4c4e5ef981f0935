#!/usr/bin/env python3
"""cwdtree (state/fs_tree.cc): a removed directory that is the cwd of two
processes of a tree, and the child's own description of it, through the
mount: cp /crfs/PID/image, kill -9 the whole tree, restore into the same pids.

  - CwdTree (root): a python parent makes `gone`, chdirs into it and forks;
    the child inherits the cwd and opens "." (a description of its own);
    the parent removes `gone`. After the restore the parent's cwd, the
    child's cwd and the child's fd are ONE removed directory (made once by
    the parent's restore: the child's cwd is record 132 deleted-cwd-from, its
    fd kind 43), each process checks getcwd (ENOENT), an O_CREAT in it
    (ENOENT) and nlink 0 itself and writes PASS; the old code refused the tree
    (`... is also pid M's cwd; a removed directory two processes of the tree
    hold not supported yet`).
  - CwdTreeUser: the same tree run, checkpointed and restored by a normal user
    `s16cwu1` in the restore_pid_group group `s16cwg1` (made for the class,
    removed after): the directory is made as the user; edits of the new
    records are refused with nothing left (a giver that is not earlier, an
    fd the giver lacks, another mode, an offset above 2^63-1, flags a reopen
    cannot give: O_RDWR, FASYNC).
  - cwdoffset: the child reads part of the directory (40 files, 128 bytes of
    getdents) before the parent empties and removes it (CwdTree's
    test_child_description_read_before_the_rmdir_keeps_its_offset, and the
    user's tree): its fd's offset, an ext4 hash cookie, is the same after the
    restore and getdents fails ENOENT (opened and seeked by the parent's
    restore before its rmdir); the old code refused the tree (`... is at
    offset O ...; such a description not supported yet`).
  - fdshare (session 19): the child's description read before the rmdir
    opened O_NOFOLLOW (opened by the directory's name by the parent's restore,
    which takes the flag), and a second description of its own (kind 40
    naming its kind 43), read further: both offsets and flags the same after
    the restore (CwdTree, as root; CwdTwiceUser `s19fsu1` as a user, whose
    edits of the kind 40 record, an offset of 2^63, O_RDWR, FASYNC, a first
    that is fd 0, another mode, are refused with nothing left); refused on
    the code before (`which a removed directory opened again cannot take`;
    `opened again from fd N with open flags ..., offset ...`: a bad image).
  - share39 (FdTree, FdTreeUser `s18shu1`): the twin for an fd. The parent
    holds `gone` as an fd (its cwd elsewhere), the child opens a description
    of its own through /proc/self/fd and reads part of it, the parent empties
    and removes it: the child's fd is the tree's share-fd end 4 at an offset,
    opened and seeked by the parent's restore (its kind 39 fd's plan) before
    the rmdir. After the restore one inode, two descriptions (kcmp), the
    child's offset the same, getdents ENOENT; the old code refused the tree
    (`one object, opened separately by two processes of the tree`). The
    user's edits (an offset above 2^63-1, flags a reopen cannot give, a giver
    that is not earlier, another fd of the parent) are refused with nothing
    left. FdTree's grandchild test: the parent's removed cwd, the child's fd
    of it (kind 43) and the grandchild's own description opened from that fd
    and read in part: end 4 at an offset given from a kind 43 fd, opened by
    the parent's (the cwd's maker's) plan; refused on the code before.

usage: cwd_tree_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone  # noqa: E402
from tree_share_mount_test import kcmp_file  # noqa: E402
import unix_tree_mount_test as utm  # noqa: E402

FASYNC = 0o20000  # no open gives it (O_NOFOLLOW at an offset is restored: fdshare)

# getdents64 of 128 bytes: (its return, errno).
GETDENTS = """
def getdents(fd):
    buf = ctypes.create_string_buffer(128)
    n = libc.syscall(217, fd, buf, 128)
    return n, ctypes.get_errno()
"""

# The parent's part of every tree here: once a child wrote `opened`, empties
# and removes `gone`, pauses (`half`), and on SIGUSR1 reaps the child `kid`.
REMOVE_AND_WAIT = """
while not os.path.exists(top + "/opened"):
    signal.sigtimedwait({signal.SIGUSR2}, 0.01)
for name in names:
    os.unlink(name)
os.rmdir(top + "/gone")
open(top + "/half", "w").close()
signal.sigwait({signal.SIGUSR1})
os.waitpid(kid, 0)
"""

CWD_TREE = """
import ctypes, errno, os, signal
READ = 0  # cwdoffset: the child reads part of the directory before the rmdir
TWICE = 0  # fdshare: and a second description of its own, read further (kind 40)
FLAGS = 0  # fdshare: O_NOFOLLOW (at an offset: opened by the name before the rmdir)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
libc = ctypes.CDLL(None, use_errno=True)
top = os.getcwd()
os.mkdir("gone", 0o750)
os.chdir("gone")
names = ["f%02d" % i for i in range(40 if READ else 0)]
for name in names:
    open(name, "w").close()
""" + GETDENTS + """def check(extra):
    ok = extra and os.stat(".").st_nlink == 0 and (os.stat(".").st_mode & 0o7777) == 0o750
    try:
        os.getcwd()
        ok = False
    except FileNotFoundError:
        pass
    try:
        os.open("x", os.O_CREAT | os.O_WRONLY, 0o600)
        ok = False
    except FileNotFoundError:
        pass
    return ok
kid = os.fork()
if kid == 0:
    mine = os.open(".", os.O_RDONLY | os.O_DIRECTORY | FLAGS)
    if READ and getdents(mine)[0] <= 0:
        os._exit(3)
    pos = os.lseek(mine, 0, os.SEEK_CUR)
    if TWICE:
        second = os.open(".", os.O_RDONLY | os.O_DIRECTORY | FLAGS)
        if getdents(second)[0] <= 0 or getdents(second)[0] <= 0:
            os._exit(3)
        pos2 = os.lseek(second, 0, os.SEEK_CUR)
    open(top + "/opened", "w").close()
    signal.sigwait({signal.SIGUSR1})
    ok = check(os.fstat(mine).st_ino == os.stat(".").st_ino and os.fstat(mine).st_nlink == 0)
    ok = ok and os.lseek(mine, 0, os.SEEK_CUR) == pos and getdents(mine) == (-1, errno.ENOENT)
    if TWICE:
        ok = ok and os.fstat(second).st_ino == os.fstat(mine).st_ino
        ok = ok and os.lseek(second, 0, os.SEEK_CUR) == pos2
        ok = ok and getdents(second) == (-1, errno.ENOENT)
    with open(top + "/kid", "w") as f:
        f.write("PASS\\n" if ok else "FAIL\\n")
    os._exit(0)
""" + REMOVE_AND_WAIT + """
ok = check(open(top + "/kid").read() == "PASS\\n")
with open(top + "/out", "w") as f:
    f.write("PASS\\n" if ok else "FAIL\\n")
"""


def one_directory(test, pids, count=1):
    """The parent's cwd, the child's cwd and the child's fd of it: one removed
    directory; the child's fd (its lowest above 2) a description of its own
    (`count` 2: two fds of it, each a description of its own: both)."""
    cwds = [os.stat(f"/proc/{p}/cwd") for p in pids]
    kid_fds = [int(n) for n in os.listdir(f"/proc/{pids[1]}/fd") if int(n) > 2]
    mine = sorted(n for n in kid_fds
                  if os.stat(f"/proc/{pids[1]}/fd/{n}").st_ino == cwds[0].st_ino)
    test.assertEqual(len(mine), count, kid_fds)
    fds = [os.stat(f"/proc/{pids[1]}/fd/{n}") for n in mine]
    test.assertEqual({(s.st_dev, s.st_ino, s.st_nlink) for s in cwds + fds},
                     {(cwds[0].st_dev, cwds[0].st_ino, 0)}, "one removed directory")
    test.assertTrue(os.readlink(f"/proc/{pids[0]}/cwd").endswith("/gone (deleted)"))
    if count == 2:
        test.assertNotEqual(kcmp_file(pids[1], mine[0], pids[1], mine[1]), 0, "two descriptions")
    return mine[0] if count == 1 else mine


class CwdTree(trees_mount_test.TreeBase):
    def path(self, name):
        return os.path.join(self.dir, name)

    def cwd_tree(self, user_prefix=(), read=False, twice=False, flags=0):
        code = CWD_TREE.replace("READ = 0", "READ = 1") if read else CWD_TREE
        code = code.replace("TWICE = 0", "TWICE = 1") if twice else code
        code = code.replace("FLAGS = 0", f"FLAGS = {flags}")
        return utm.python_tree(self, "cwd.py", code, user_prefix=user_prefix)

    def finish(self, pids):
        for p in pids:
            os.kill(p, 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertEqual(self.out(), "PASS\n")
        self.assertEqual(sorted(n for n in os.listdir(self.dir) if "gone" in n or "deldir" in n),
                         [], "nothing left in the parent")

    def test_unrestored_cwd_tree_passes(self):
        proc, pids = self.cwd_tree()
        self.finish(pids)

    def test_removed_cwd_of_parent_and_child_comes_back_as_one_directory(self):
        proc, pids = self.cwd_tree()
        fd = one_directory(self, pids)
        self.round_trip(proc, pids)
        self.assertEqual(one_directory(self, pids), fd)
        self.finish(pids)

    def test_child_description_read_before_the_rmdir_keeps_its_offset(self):
        """cwdoffset: the child read part of the directory before the rmdir
        (its offset an ext4 hash cookie, which a removed directory takes no
        more): opened and seeked by the parent's restore before its rmdir."""
        proc, pids = self.cwd_tree(read=True)
        fd = one_directory(self, pids)
        pos = fdinfo_pos(pids[1], fd)
        self.assertNotEqual(pos, 0, "read before the rmdir")
        self.round_trip(proc, pids)
        self.assertEqual(one_directory(self, pids), fd)
        self.assertEqual(fdinfo_pos(pids[1], fd), pos)
        self.finish(pids)

    def test_child_description_opened_nofollow_and_read_keeps_its_flags(self):
        """fdshare: the child's description read before the rmdir, opened
        O_NOFOLLOW: opened by the parent's restore by the directory's name
        before its rmdir, which takes the flag (refused before: `which a
        removed directory opened again cannot take`)."""
        proc, pids = self.cwd_tree(read=True, flags=os.O_NOFOLLOW)
        fd = one_directory(self, pids)
        before = fdinfo(pids[1], fd)
        self.assertTrue(int(before[1], 8) & os.O_NOFOLLOW and int(before[0]) != 0, before)
        self.round_trip(proc, pids)
        self.assertEqual(one_directory(self, pids), fd)
        self.assertEqual(fdinfo(pids[1], fd), before)
        self.finish(pids)

    def test_child_second_description_read_before_the_rmdir_keeps_its_offset(self):
        """fdshare: the child holds two descriptions of the parent's removed
        cwd (kind 43 and kind 40 naming it), each read in part before the
        rmdir: both opened and seeked by the parent's restore before its
        rmdir (a bad image at restore before: `opened again from fd N with
        open flags ..., offset ...`)."""
        proc, pids = self.cwd_tree(read=True, twice=True)
        fds = one_directory(self, pids, 2)
        before = [fdinfo(pids[1], fd) for fd in fds]
        self.assertTrue(all(int(pos) for pos, _ in before), before)
        self.assertNotEqual(before[0], before[1])
        self.round_trip(proc, pids)
        self.assertEqual(one_directory(self, pids, 2), fds)
        self.assertEqual([fdinfo(pids[1], fd) for fd in fds], before)
        self.finish(pids)


def fdinfo_pos(pid, fd):
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        return int(f.readline().split()[1])


def fdinfo(pid, fd):
    """(pos, flags) of pid's fd, as fdinfo prints them."""
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        lines = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    return lines["pos"].strip(), lines["flags"].strip()


class CwdTreeUser(utm.InGroup, CwdTree):
    user, group, prefix, mode = "s16cwu1", "s16cwg1", "crfs-s16cw-", 0o755

    test_unrestored_cwd_tree_passes = None
    test_removed_cwd_of_parent_and_child_comes_back_as_one_directory = None
    test_child_description_read_before_the_rmdir_keeps_its_offset = None
    test_child_description_opened_nofollow_and_read_keeps_its_flags = None
    test_child_second_description_read_before_the_rmdir_keeps_its_offset = None

    def test_user_restores_its_cwd_tree_and_its_edits_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = self.cwd_tree(user_prefix=as_user, read=True)  # cwdoffset: at an offset
        fd = one_directory(self, pids)
        pos = fdinfo_pos(pids[1], fd)
        self.assertNotEqual(pos, 0, "read before the rmdir")
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        facts = utm.UnixTree.image_facts(self, img)
        n = facts[1]["fds"][fd][0]
        self.assertEqual(facts[1]["fds"][fd][1], 43, "the child's fd: kind 43")
        bad_flags = os.O_DIRECTORY | os.O_RDWR
        for edits, expect in [
            (["deleted-cwd-from#0.member=1"], "which is not an earlier process of the tree"),
            (["deleted-cwd-from#0.fd=7"], f"is not process {pids[0]}'s fd 7"),
            (["deleted-cwd#1.mode=16832"], f"is not process {pids[0]}'s removed cwd"),  # 040700
            (["deleted-cwd#1.fd=" + str(fd)], f"fd {fd} is no removed directory"),
            ([f"fd#{n}.rdev=1"], "which is not an earlier process of the tree"),
            ([f"fd#{n}.mode=16832"], f"is not process {pids[0]}'s removed cwd"),
            ([f"fd#{n}.pos={1 << 63}"], f"fd {fd}: a removed directory of process 0's cwd"),
            ([f"fd#{n}.open_flags={bad_flags}"], f"fd {fd}: a removed directory of process"),
            ([f"fd#{n}.open_flags={os.O_DIRECTORY | FASYNC}"],
             f"fd {fd}: a removed directory of process"),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
            self.assertEqual([x for x in os.listdir(self.dir) if "gone" in x or "deldir" in x], [])
        self.restore_as(run, pw, img, pids)
        self.assertEqual(one_directory(self, pids), fd)
        self.assertEqual(fdinfo_pos(pids[1], fd), pos)
        self.assertEqual(os.stat(f"/proc/{pids[0]}/cwd").st_uid, pw.pw_uid)
        self.finish(pids)


class CwdTwiceUser(utm.InGroup, CwdTree):
    """fdshare: the child's two descriptions of the parent's removed cwd (kind
    43 and kind 40 naming it), opened O_NOFOLLOW and each read in part before
    the rmdir, as the user s19fsu1 (group s19fsg1): restored as the user
    (both opened by name and seeked by the parent's restore before its
    rmdir); its edits of the kind 40 record are refused with nothing left."""
    user, group, prefix, mode = "s19fsu1", "s19fsg1", "crfs-s19fs-", 0o755

    test_unrestored_cwd_tree_passes = None
    test_removed_cwd_of_parent_and_child_comes_back_as_one_directory = None
    test_child_description_read_before_the_rmdir_keeps_its_offset = None
    test_child_description_opened_nofollow_and_read_keeps_its_flags = None
    test_child_second_description_read_before_the_rmdir_keeps_its_offset = None

    def test_user_restores_two_descriptions_and_its_edits_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = self.cwd_tree(user_prefix=as_user, read=True, twice=True,
                                   flags=os.O_NOFOLLOW)
        fds = one_directory(self, pids, 2)
        before = [fdinfo(pids[1], fd) for fd in fds]
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        facts = utm.UnixTree.image_facts(self, img)
        n, kind = facts[1]["fds"][fds[1]][:2]
        self.assertEqual((facts[1]["fds"][fds[0]][1], kind), (43, 40), "kind 40 of a kind 43")
        again = f"fd {fds[1]}: opened again from fd"
        for edits, expect in [
            ([f"fd#{n}.pos={1 << 63}"], again),
            ([f"fd#{n}.open_flags={os.O_DIRECTORY | os.O_RDWR}"], again),
            ([f"fd#{n}.open_flags={os.O_DIRECTORY | FASYNC}"], again),
            ([f"fd#{n}.rdev=0"], f"{again} 0, which is no earlier fd"),  # its first: fd 0
            ([f"fd#{n}.mode=16832"], again),  # 040700: not its first's
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
            self.assertEqual([x for x in os.listdir(self.dir) if "gone" in x or "deldir" in x], [])
        self.restore_as(run, pw, img, pids)
        self.assertEqual(one_directory(self, pids, 2), fds)
        self.assertEqual([fdinfo(pids[1], fd) for fd in fds], before)
        self.finish(pids)


# share39: the parent's removed directory held as an fd, the child's own
# description of it read in part before the rmdir (share-fd end 4 at an offset).
HEAD = """
import ctypes, errno, os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
libc = ctypes.CDLL(None, use_errno=True)
top = os.getcwd()
os.mkdir("gone", 0o750)
names = [top + "/gone/f%02d" % i for i in range(40)]
for name in names:
    open(name, "w").close()
""" + GETDENTS + """def result(name, ok):
    with open(top + "/" + name, "w") as f:
        f.write("PASS\\n" if ok else "FAIL\\n")
def read_own(fd):
    # A description of its own of fd's directory, read in part; then `opened`
    # and the wait for SIGUSR1: (that fd, its offset).
    own = os.open("/proc/self/fd/%d" % fd, os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    if getdents(own)[0] <= 0:
        os._exit(3)
    pos = os.lseek(own, 0, os.SEEK_CUR)
    open(top + "/opened", "w").close()
    signal.sigwait({signal.SIGUSR1})
    return own, pos
"""
FD_TREE = HEAD + """
held = os.open("gone", os.O_RDONLY | os.O_DIRECTORY)
def removed(fd, pos):
    return (os.fstat(fd).st_nlink == 0 and os.lseek(fd, 0, os.SEEK_CUR) == pos and
            getdents(fd) == (-1, errno.ENOENT))
kid = os.fork()
if kid == 0:
    result("kid", removed(*read_own(held)))
    os._exit(0)
""" + REMOVE_AND_WAIT + """
result("out", removed(held, 0) and open("kid").read() == "PASS\\n")
"""


def two_descriptions(test, pids):
    """The parent's fd and the child's of the removed directory: one inode
    (nlink 0), two descriptions (kcmp): [(pid, fd, flags, pos)] of both."""
    fds = utm.fds_on(pids, os.path.join(test.dir, "gone") + " (deleted)")
    test.assertEqual([p for p, *_ in fds], pids, fds)
    sts = {(s.st_dev, s.st_ino, s.st_nlink) for s in
           (os.stat(f"/proc/{p}/fd/{fd}") for p, fd, *_ in fds)}
    test.assertEqual(len(sts), 1, "one removed directory")
    test.assertEqual(sts.pop()[2], 0)
    test.assertNotEqual(kcmp_file(pids[0], fds[0][1], pids[1], fds[1][1]), 0, "two descriptions")
    test.assertNotEqual(fds[1][3], 0, "the child's read before the rmdir")
    return fds


# share39: the parent's removed cwd, the child's own description of it (fd
# kind 43), and the grandchild's own, opened from the child's through
# /proc/self/fd and read in part before the rmdir: share-fd end 4 at an offset
# given from a kind 43 fd, opened by the parent's (the cwd's maker's) plan.
GRANDKID_TREE = HEAD + """
os.chdir("gone")
kid = os.fork()
if kid == 0:
    mine = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    gkid = os.fork()
    if gkid == 0:
        own, pos = read_own(mine)
        result("gkid", os.lseek(own, 0, os.SEEK_CUR) == pos and
               getdents(own) == (-1, errno.ENOENT))
        os._exit(0)
    signal.sigwait({signal.SIGUSR1})
    os.waitpid(gkid, 0)
    result("kid", open(top + "/gkid").read() == "PASS\\n" and
           getdents(mine) == (-1, errno.ENOENT))
    os._exit(0)
""" + REMOVE_AND_WAIT + """
result("out", open(top + "/kid").read() == "PASS\\n")
"""


class FdTree(CwdTree):
    test_unrestored_cwd_tree_passes = None
    test_removed_cwd_of_parent_and_child_comes_back_as_one_directory = None
    test_child_description_read_before_the_rmdir_keeps_its_offset = None
    test_child_description_opened_nofollow_and_read_keeps_its_flags = None
    test_child_second_description_read_before_the_rmdir_keeps_its_offset = None

    def test_child_description_of_a_removed_dir_fd_keeps_its_offset(self):
        proc, pids = utm.python_tree(self, "fd.py", FD_TREE)
        before = two_descriptions(self, pids)
        self.round_trip(proc, pids)
        self.assertEqual(two_descriptions(self, pids), before)
        self.finish(pids)

    def test_grandchild_description_given_from_a_kind_43_fd_keeps_its_offset(self):
        proc, pids = utm.python_tree(self, "gkid.py", GRANDKID_TREE, size=3)
        link = os.path.join(self.dir, "gone") + " (deleted)"
        before = utm.fds_on(pids[2:], link)
        self.assertEqual(len(before), 1, before)
        self.assertNotEqual(before[0][3], 0, "the grandchild's read before the rmdir")
        self.round_trip(proc, pids)
        self.assertEqual(utm.fds_on(pids[2:], link), before)
        kid, gkid = utm.fds_on(pids[1:2], link)[0], before[0]
        self.assertEqual(os.stat(f"/proc/{kid[0]}/fd/{kid[1]}").st_ino,
                         os.stat(f"/proc/{gkid[0]}/fd/{gkid[1]}").st_ino, "one directory")
        self.assertNotEqual(kcmp_file(kid[0], kid[1], gkid[0], gkid[1]), 0, "two descriptions")
        self.finish(pids)


class FdTreeUser(utm.InGroup, FdTree):
    user, group, prefix, mode = "s18shu1", "s18shg1", "crfs-s18sh-", 0o755

    test_child_description_of_a_removed_dir_fd_keeps_its_offset = None
    test_grandchild_description_given_from_a_kind_43_fd_keeps_its_offset = None

    def test_user_restores_its_fd_tree_and_its_edits_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = utm.python_tree(self, "fd.py", FD_TREE, user_prefix=as_user)
        before = two_descriptions(self, pids)
        img = self.checkpoint_as(run, pids[0])
        self.kill_all(proc, pids)
        facts = utm.UnixTree.image_facts(self, img)
        fd = before[1][1]
        n, kind, _, share = facts[1]["fds"][fd]
        self.assertEqual((kind, facts[0]["fds"][before[0][1]][1]), (52, 39), "end 4 of kind 39")
        reopen = "which is no unlinked queue, deleted file or directory or memfd"
        for edits, expect in [
            ([f"fd#{n}.pos={1 << 63}"], reopen),
            ([f"fd#{n}.open_flags={os.O_DIRECTORY | FASYNC}"], reopen),
            ([f"fd#{n}.open_flags={os.O_DIRECTORY | os.O_RDWR}"], reopen),
            ([f"share-fd#{share}.owner=1"], "which is not an earlier process of the tree"),
            ([f"share-fd#{share}.owner_fd=0"], reopen),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
            self.assertEqual([x for x in os.listdir(self.dir) if "gone" in x or "deldir" in x], [])
        self.restore_as(run, pw, img, pids)
        self.assertEqual(two_descriptions(self, pids), before)
        self.finish(pids)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
