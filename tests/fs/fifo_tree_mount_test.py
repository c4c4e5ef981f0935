#!/usr/bin/env python3
"""A FIFO that several processes of a tree opened separately (issue 11,
docs/trees.md "FIFOs between members"), through the mounted tree:

    mkfifo p; consumer < p & producer > p; wait     # bytes in flight in p
    cp /crfs/BASH/image snap.img; kill -9 the tree
    mkdir /crfs/BASH && cp snap.img /crfs/BASH/image
    -> each reopens p with its own mode, the bytes are in p once,
       and the consumer's byte count and CRC are exact

in both orders (the reader first in the image, holding the bytes, or the
writer). A normal user (in the -o restore_pid_group group) restores such a
tree as itself, and its image edited so the joining process's path names a
FIFO the user may not open, or a file that is no FIFO, fails with the
kernel's error (or ESTALE) and leaves nothing running. Users: the s12fi prefix.

usage: fifo_tree_mount_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import subprocess
import sys
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, sh, wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, tree_of  # noqa: E402
# The pipeline's stages: the producer writes TOTAL bytes to fd 1, the consumer
# reads EARLY bytes from fd 0, waits for the file `go`, reads the rest.
from tree_share_mount_test import CONSUMER, EARLY, PRODUCER, TOTAL, kcmp_file  # noqa: E402,F401
import unix_tree_mount_test  # noqa: E402

USER, GROUP = "s12fiu1", "s12fig"  # test users: the s12fi prefix
PY = "/usr/bin/python3"
FIFO_JOIN = 46  # fd kind: a FIFO an earlier process restores

# The reader first (it holds the bytes in the image), or the writer first.
READER_FIRST = f"mkfifo p; {PY} cons.py < p & {PY} prod.py > p; wait; echo done > out"
WRITER_FIRST = f"mkfifo p; {PY} prod.py > p & {PY} cons.py < p; wait; echo done > out"


def expected():
    buf = bytes((i * 7 + 3) & 0xff for i in range(4096))
    return f"{TOTAL} {zlib.crc32((buf * (TOTAL // 4096 + 1))[:TOTAL])}"


def flags(pid, fd):
    """The fd's open flags (fdinfo, octal)."""
    line = [x for x in read(f"/proc/{pid}/fdinfo/{fd}").splitlines() if x.startswith("flags:")]
    return int(line[0].split()[1], 8)


def comm(pid):
    return read(f"/proc/{pid}/cmdline").split("\0")[1]


class FifoTree(trees_mount_test.TreeBase):
    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)

    def pipeline(self, script, user_prefix=()):
        """bash, the producer and the consumer, the FIFO full, the consumer waiting."""
        self.write("prod.py", PRODUCER)
        self.write("cons.py", CONSUMER)
        proc = self.start(script, 3, user_prefix=user_prefix)
        pids = tree_of(proc.pid)
        wait_for(lambda: os.path.exists(self.path("early")), "the consumer's first bytes")
        prod = [p for p in pids[1:] if comm(p) == "prod.py"][0]
        cons = [p for p in pids[1:] if comm(p) == "cons.py"][0]
        # (the kernel's function is pipe_write or anon_pipe_write)
        wait_for(lambda: read(f"/proc/{prod}/wchan").endswith("pipe_write"), "the FIFO to fill")
        return proc, pids, prod, cons

    def check_joined(self, prod, cons):
        """One FIFO at p again, two descriptions of it with their own modes."""
        fifo = os.stat(self.path("p")).st_ino
        self.assertEqual(os.stat(f"/proc/{prod}/fd/1").st_ino, fifo)
        self.assertEqual(os.stat(f"/proc/{cons}/fd/0").st_ino, fifo)
        self.assertEqual(os.readlink(f"/proc/{cons}/fd/0"), self.path("p"))
        self.assertNotEqual(kcmp_file(prod, 1, cons, 0), 0, "two descriptions")
        self.assertEqual(flags(prod, 1) & 0o3777, os.O_WRONLY)  # no O_NONBLOCK
        self.assertEqual(flags(cons, 0) & 0o3777, os.O_RDONLY)

    def finish(self, pids):
        self.write("go", "")
        wait_for(lambda: os.path.exists(self.path("cons.out")) and self.out() == "done\n" and
                 gone(pids[0]), "the pipeline to finish")
        self.assertEqual(read(self.path("cons.out")), expected())

    def round_trip_fifo(self, script):
        proc, pids, prod, cons = self.pipeline(script)
        self.round_trip(proc, pids)
        self.check_joined(prod, cons)
        self.finish(pids)

    def test_reader_first_fifo_comes_back_with_its_bytes_once(self):
        self.round_trip_fifo(READER_FIRST)

    def test_writer_first_fifo_comes_back_with_its_bytes_once(self):
        self.round_trip_fifo(WRITER_FIRST)


class UserFifo(unix_tree_mount_test.InGroup, FifoTree):
    """A normal user in the group named by -o restore_pid_group: every FIFO
    is reopened by the user's processes with the user's credentials."""

    user, group, prefix, mode = USER, GROUP, "crfs-fifo-", 0o755

    def join_fd(self, img):
        """The index among the image's fd records of the joining process's FIFO fd."""
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        r = subprocess.run([edit, img, "--list"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        fds = [json.loads(line) for line in r.stdout.splitlines() if '"type":"fd"' in line]
        joins = [i for i, f in enumerate(fds) if f["kind"] == FIFO_JOIN]
        self.assertEqual(len(joins), 1, r.stdout)
        return joins[0]

    def test_user_restores_its_fifo_tree_and_edited_paths_fail_as_the_kernel_says(self):
        pw, as_user, run = self.as_user(USER, "--init-groups")
        proc, pids, prod, cons = self.pipeline(READER_FIRST, user_prefix=as_user)
        img = self.path("tree.img")
        r = run(f"cp {self.m}/{pids[0]}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/reason"))
        self.kill_all(proc, pids)
        join = self.join_fd(img)
        # A FIFO the user may not open (root's, 0600), and a file that is no FIFO.
        secret = self.path("secret")
        os.mkfifo(secret, 0o600)
        self.write("plain", "")
        os.chown(self.path("plain"), pw.pw_uid, pw.pw_gid)
        step = "a FIFO another process of the tree restores, by its path (is it still that FIFO?)"
        edit = os.path.join(roundtrip_mount_test.BUILD, "tests/security/restore/crfs-imgedit")
        for edit_one, expect in (
                (f"fd#{join}.path={secret}", f"{step}: Permission denied"),
                (f"fd#{join}.path={self.path('plain')}", f"{step}: Stale file handle"),
                (f"fd#{join}.path=p", "FIFO path not absolute"),
                (f"fd#{join}.open_flags=1025", "FIFO open flags 02001"),  # O_APPEND
                (f"fd#{join}.open_flags=3", "fd 1: open flags 03"),
                (f"fd#{join}.dev=1", "whose bytes no earlier process of the tree holds")):
            bad = self.path("bad.img")
            r = subprocess.run(as_user + [edit, img, bad, edit_one],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = run(f"mkdir {self.m}/{pids[0]} && cp {bad} {self.m}/{pids[0]}/image")
            self.assertNotEqual(r.returncode, 0, edit_one)
            self.assertIn(expect, read(f"{self.m}/{pids[0]}/status"), edit_one)
            # Made and killed in stage 1: the orphans are reaped here (a subreaper).
            for p in pids:
                wait_for(lambda: gone(p), f"pid {p} of the failed restore to go")
            self.assertEqual(run(f"rmdir {self.m}/{pids[0]}").returncode, 0)
        r = run(f"mkdir {self.m}/{pids[0]} && cp {img} {self.m}/{pids[0]}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        for p in pids:
            self.assertIn(f"Uid:\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}\t{pw.pw_uid}",
                          read(f"/proc/{p}/status"))
        self.check_joined(prod, cons)
        self.finish(pids)

    test_reader_first_fifo_comes_back_with_its_bytes_once = None
    test_writer_first_fifo_comes_back_with_its_bytes_once = None


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
