#!/usr/bin/env python3
"""`make -j2` checkpointed mid-build (issue 10), through the mounted tree:

    bash -c 'make -j2 >log 2>&1; echo $? > out'    # a.o and b.o both running,
                                                   # each waiting for `go`
    cp /crfs/BASH/image snap.img; kill -9 the tree
    mkdir /crfs/BASH && cp snap.img /crfs/BASH/image; touch go
    -> make exits 0 and its `prog` equals (cmp) a clean build's

The tree is bash, make and make's two jobs; make's jobserver pipe is live (its
one token taken by the second job) and make, its jobs and bash write one log
through one description.

usage: make_mount_test.py BUILD_DIR  (any unittest args after)
"""
import filecmp
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, tree_of  # noqa: E402
from tree_share_mount_test import kcmp_file  # noqa: E402

PY = "/usr/bin/python3"

WAIT = """
import os, sys, time
open(sys.argv[1] + ".waiting", "w").close()
while not os.path.exists("go"):  # the test's signal to go on, a file
    time.sleep(0.01)
"""

# No shell metacharacters in the wait lines: make runs them itself (no sh between).
MAKEFILE = f"""
CC = gcc
CFLAGS = -O2 -g0
prog: a.o b.o main.o
\t$(CC) -o $@ a.o b.o main.o
a.o: a.c
\t{PY} wait.py a
\t$(CC) $(CFLAGS) -c -o $@ a.c
b.o: b.c
\t{PY} wait.py b
\t$(CC) $(CFLAGS) -c -o $@ b.c
main.o: main.c
\t$(CC) $(CFLAGS) -c -o $@ main.c
"""

SOURCES = {
    "a.c": "int twice(int x) { return 2 * x; }\n",
    "b.c": "int thrice(int x) { return 3 * x; }\n",
    "main.c": ("#include <stdio.h>\nint twice(int);\nint thrice(int);\n"
               "int main(void) { printf(\"%d\\n\", twice(7) + thrice(5)); return 0; }\n"),
    "wait.py": WAIT,
    "Makefile": MAKEFILE,
}


def cmdline(pid):
    try:
        return read(f"/proc/{pid}/cmdline", "rb").split(b"\0")
    except OSError:
        return []


class Make(trees_mount_test.TreeBase):
    def project(self, sub):
        d = os.path.join(self.dir, sub)
        os.mkdir(d)
        for name, text in SOURCES.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        return d

    def clean_build(self):
        d = self.project("clean")
        open(os.path.join(d, "go"), "w").close()
        r = subprocess.run(["make", "-j2"], cwd=d, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return os.path.join(d, "prog")

    def test_make_j2_mid_build_comes_back_and_builds_the_same_binary(self):
        clean = self.clean_build()
        d = self.project("build")
        proc = self.start("cd build && make -j2 >log 2>&1; echo $? > ../out", 4)
        bash, make, job1, job2 = pids = tree_of(proc.pid)
        wait_for(lambda: all(os.path.exists(os.path.join(d, n + ".waiting")) for n in "ab"),
                 "both jobs to wait")
        self.assertEqual(sorted(cmdline(job1)[2:3] + cmdline(job2)[2:3]), [b"a", b"b"])
        self.assertEqual(cmdline(make)[:2], [b"make", b"-j2"])
        # make, its jobs and bash write the log through one description.
        for p in (make, job1, job2):
            self.assertEqual(kcmp_file(bash, 1, p, 1), 0, p)
        self.assertEqual(read(f"{self.m}/{bash}/reason"), "")
        img = self.checkpoint(bash)
        self.kill_all(proc, pids)
        r = self.restore(img, str(bash))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{bash}/status"))
        self.assertEqual(tree_of(bash), pids)
        open(os.path.join(d, "go"), "w").close()
        wait_for(lambda: self.out() != "" and gone(bash), "make to finish")
        log = read(os.path.join(d, "log"))
        self.assertEqual(self.out(), "0\n", log)
        self.assertTrue(filecmp.cmp(clean, os.path.join(d, "prog"), shallow=False), log)
        self.assertEqual(subprocess.run([os.path.join(d, "prog")], capture_output=True,
                                        text=True).stdout, "29\n")


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
