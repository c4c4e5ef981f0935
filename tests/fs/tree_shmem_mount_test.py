#!/usr/bin/env python3
"""Shared anonymous memory between the processes of a tree comes back shared
(issues 10 and 11, docs/trees.md "Shared memory between members"), through
the mounted tree:

    python3: m = mmap.mmap(-1, 4096)    # MAP_SHARED|MAP_ANONYMOUS
             fork two workers; each counts to TOTAL in its slot of m,
             stopping half-way until a file `go` exists
    cp /crfs/PARENT/image snap.img; kill -9 the tree
    mkdir /crfs/PARENT && cp snap.img /crfs/PARENT/image; touch go
    -> the workers continue from HALF; the parent sees both counts reach TOTAL
       (their writes land in its memory) and they see the parent's flag;
the same with the page a memfd's (`os.memfd_create`, fd 3 inherited):
one memfd again, one description (kcmp), its mapping its inode

One object again: every process's maps line of it has the same inode, shown
as "/dev/zero (deleted)" as before. Edited images (a taker claiming an object
no earlier process owns, pages its owner does not map, two owners, a taker's
mapping made private) are refused with nothing made.

usage: tree_shmem_mount_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, wait_for  # noqa: E402
import threads_mount_test  # noqa: E402
import trees_mount_test  # noqa: E402
import tree_share_mount_test  # noqa: E402
from trees_mount_test import gone, tree_of  # noqa: E402

TOTAL, HALF = 300_000, 100_000
GROUP_USER, GROUP = "s6sh1", "s6shg"  # test users: the s6sh prefix

# Slots of the shared page (8-byte counters): 0, 1 the workers', 2 the
# parent's flag (set once `go` exists), 3 a count of workers that saw it.
ANON = "m = mmap.mmap(-1, 4096)  # MAP_SHARED | MAP_ANONYMOUS"
MEMFD = """fd = os.memfd_create("counters")  # fd 3, inherited by the workers
os.ftruncate(fd, 4096)
m = mmap.mmap(fd, 4096)  # MAP_SHARED"""

PROGRAM = f"""
import mmap, os, struct, time
MAPPING
def get(i):
    return struct.unpack_from("q", m, 8 * i)[0]
def put(i, v):
    struct.pack_into("q", m, 8 * i, v)
def worker(i):
    n = get(i)
    while n < {TOTAL}:
        n += 1
        put(i, n)
        if n == {HALF}:
            open(f"w{{i}}.half", "w").close()
            while not os.path.exists("go"):  # a state: the test's file
                time.sleep(0.01)
    while get(2) != 1:  # the parent's write, seen here
        time.sleep(0.01)
    put(3 + i, 1)
    os._exit(0)
kids = []
for i in range(2):
    pid = os.fork()
    if pid == 0:
        worker(i)
    kids.append(pid)
while not os.path.exists("go"):
    time.sleep(0.01)
put(2, 1)
status = [os.waitpid(k, 0)[1] for k in kids]
open("result", "w").write(f"{{get(0)}} {{get(1)}} {{get(3)}} {{get(4)}} {{status}}")
"""


def shmem_flags(pid):
    """The VmFlags of each shared anonymous mapping of `pid`."""
    out, cur = [], None
    for line in read(f"/proc/{pid}/smaps").splitlines():
        if line[:1] in "0123456789abcdef" and "-" in line.split()[0]:
            cur = line.endswith("/dev/zero (deleted)")
        elif cur and line.startswith("VmFlags:"):
            out.append(line)
    return out


def shmem_lines(pid):
    return [line for line in read(f"/proc/{pid}/maps").splitlines()
            if line.endswith("/dev/zero (deleted)")]


class SharedMemory(trees_mount_test.TreeBase):
    def path(self, name):
        return os.path.join(self.dir, name)

    def counters(self, mapping=ANON):
        with open(self.path("prog.py"), "w") as f:
            f.write(PROGRAM.replace("MAPPING", mapping))
        proc = self.start(None, 3, argv=["/usr/bin/python3", "prog.py"])
        pids = tree_of(proc.pid)
        wait_for(lambda: os.path.exists(self.path("w0.half")) and
                 os.path.exists(self.path("w1.half")), "both workers half-way")
        wait_for(lambda: all(trees_mount_test.stat(p)[0] == "S" for p in pids), "the tree asleep")
        return proc, pids

    def finish(self, pids, go=None):
        """`go`, then the parent's verdict: both counts exact, both flags seen."""
        (go or (lambda: open(self.path("go"), "w").close()))()
        wait_for(lambda: os.path.exists(self.path("result")) and gone(pids[0]), "the parent")
        self.assertEqual(read(self.path("result")), f"{TOTAL} {TOTAL} 1 1 [0, 0]")

    def edited(self, mapping, kind, count):
        """The workers checkpointed and killed: (image, pids, indexes of the vma
        records of `kind`, of which there must be `count`)."""
        proc, pids = self.counters(mapping)
        img = self.checkpoint(pids[0])
        self.kill_all(proc, pids)
        vmas = self.vmas(img)
        found = [i for i, v in enumerate(vmas) if v.get("kind") == kind]
        self.assertEqual(len(found), count, vmas)
        return img, pids, found

    def test_workers_counters_continue_shared_after_restore(self):
        proc, pids = self.counters()
        inode = {p: shmem_lines(p)[0].split()[4] for p in pids}
        self.assertEqual(len(set(inode.values())), 1, "one object before")
        before = {p: ([line.split(None, 5)[:4] for line in shmem_lines(p)], shmem_flags(p))
                  for p in pids}
        self.round_trip(proc, pids)
        for p in pids:  # address, perms, offset, device; VmFlags: as a fresh mapping's
            after = ([line.split(None, 5)[:4] for line in shmem_lines(p)], shmem_flags(p))
            self.assertEqual(after, before[p], f"pid {p}")
            self.assertEqual(len(after[1]), 1, after)
        lines = {p: shmem_lines(p) for p in pids}
        for p in pids:
            self.assertEqual(len(lines[p]), 1, f"pid {p}: {lines[p]}")
        self.assertEqual(len({lines[p][0].split()[4] for p in pids}), 1, "one object after")
        self.finish(pids)

    def test_workers_counters_in_a_memfd_continue_shared_after_restore(self):
        proc, pids = self.counters(MEMFD)
        self.round_trip(proc, pids)
        for p in pids:
            self.assertEqual(os.readlink(f"/proc/{p}/fd/3"), "/memfd:counters (deleted)")
            self.assertEqual(tree_share_mount_test.kcmp_file(pids[0], 3, p, 3), 0, "one fd")
            maps = [line for line in read(f"/proc/{p}/maps").splitlines()
                    if line.endswith("/memfd:counters (deleted)")]
            self.assertEqual(len(maps), 1, maps)
            self.assertEqual(maps[0].split()[4], str(os.stat(f"/proc/{p}/fd/3").st_ino))
        self.finish(pids)

    def test_edited_memfd_mapping_is_refused_and_leaves_nothing(self):
        img, pids, mapped = self.edited(MEMFD, 8, 3)
        self.refused(img, pids[0], [f"vma#{mapped[1]}.ino=12345"],
                     "memfd 12345 that no earlier process of the tree records")
        for p in pids:
            self.assertFalse(os.path.exists(f"/proc/{p}"))
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.finish(pids)

    def vmas(self, img):
        """(index among vma records, record) of every vma record of the image."""
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        r = subprocess.run([edit, img, "--list"], capture_output=True, text=True, check=True)
        out = [json.loads(line) for line in r.stdout.splitlines()]
        return [rec for rec in out if rec.get("type") == "vma"]

    def test_edited_shared_memory_records_are_refused_and_leave_nothing(self):
        img, pids, owner = self.edited(ANON, 14, 1)
        taken = [i for i, v in enumerate(self.vmas(img)) if v.get("kind") == 15]
        self.assertEqual(len(taken), 2)
        o, t = owner[0], taken[0]
        cases = [
            ([f"vma#{t}.ino=12345"], "that no earlier process of the tree owns"),
            ([f"vma#{o}.kind=15"], "in a mapping of shared memory another process owns"),
            ([f"vma#{t}.pgoff=1"], "which its owner (process"),
            ([f"vma#{t}.kind=14"], f"is owned by process {pids[0]} and"),
            ([f"vma#{t}.flags=3"], "shared memory in a private mapping"),
        ]
        for edits, expect in cases:
            self.refused(img, pids[0], edits, expect)
            for p in pids:
                self.assertFalse(os.path.exists(f"/proc/{p}"), edits)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.finish(pids)


class GroupWriter(threads_mount_test.UserInGroup, SharedMemory):
    """A normal user in the group named by -o restore_pid_group restores its
    own workers (checkpointed by root: reading shared memory through
    map_files needs CAP_CHECKPOINT_RESTORE): the object is made by the daemon,
    mapped by the user's processes, which hold the user's credentials."""

    user, group = GROUP_USER, GROUP

    def setUp(self):
        super().setUp()
        self.crfs.stop()
        self.crfsd_for_group()

    def test_group_member_restores_its_shared_counters_as_itself(self):
        pw, as_user, run = self.as_user(GROUP_USER, "--init-groups")
        with open(self.path("prog.py"), "w") as f:
            f.write(PROGRAM.replace("MAPPING", ANON))
        os.chmod(self.path("prog.py"), 0o644)
        proc = self.start(None, 3, argv=["/usr/bin/python3", "prog.py"], user_prefix=as_user)
        pids = tree_of(proc.pid)
        wait_for(lambda: os.path.exists(self.path("w0.half")) and
                 os.path.exists(self.path("w1.half")), "both workers half-way")
        img = self.checkpoint(pids[0])
        os.chmod(img, 0o644)
        self.kill_all(proc, pids)
        r = run(f"mkdir {self.m}/{pids[0]} && cp {img} {self.m}/{pids[0]}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        for p in pids:
            self.assertIn(f"Uid:\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}",
                          read(f"/proc/{p}/status"))
            self.assertIn("CapEff:\t0000000000000000", read(f"/proc/{p}/status"))
        self.assertEqual(len({shmem_lines(p)[0].split()[4] for p in pids}), 1, "one object")
        for p in pids:  # owned by the user, as the user's mmap made it
            st = os.stat(f"/proc/{p}/map_files/{shmem_lines(p)[0].split()[0]}")
            self.assertEqual((st.st_uid, st.st_gid), (pw.pw_uid, pw.pw_gid))
        self.finish(pids, lambda: run(f"touch {self.path('go')}"))

    test_workers_counters_continue_shared_after_restore = None
    test_edited_shared_memory_records_are_refused_and_leave_nothing = None
    test_workers_counters_in_a_memfd_continue_shared_after_restore = None
    test_edited_memfd_mapping_is_refused_and_leaves_nothing = None


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
