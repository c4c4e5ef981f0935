#!/usr/bin/env python3
"""`make -j2` checkpointed mid-build (issue 10), through the mounted tree:

    bash -c 'make -j2 >log 2>&1; echo $? > out'    # a.o and b.o both running,
                                                   # each waiting for `go`
    cp /crfs/BASH/image snap.img; kill -9 the tree
    mkdir /crfs/BASH && cp snap.img /crfs/BASH/image; touch go
    -> make exits 0 and its `prog` equals (cmp) a clean build's

The tree is bash, make and make's two jobs; make's jobserver pipe is live (its
one token taken by the second job) and make and its jobs write one log
through one description (bash opened it for make).

usage: make_mount_test.py BUILD_DIR  (any unittest args after)
"""
import filecmp
import os
import select
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


def pipe_hangs_up(path):
    """True when the pipe of read end `path` has no writer (POLLHUP)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return any(ev & select.POLLHUP for _, ev in p.poll(0))
    finally:
        os.close(fd)


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
        # make and its jobs write the log through one description.
        for p in (job1, job2):
            self.assertEqual(kcmp_file(make, 1, p, 1), 0, p)
        self.assertEqual(read(f"{self.m}/{bash}/reason"), "")
        img = self.checkpoint(bash)
        self.kill_all(proc, pids)
        r = self.restore(img, str(bash))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{bash}/status"))
        self.assertEqual(tree_of(bash), pids)
        # make's stdin for its jobs: a pipe whose write end is closed, one description
        # of make and a job again, still without a writer.
        piped = [j for j in (job1, job2) if os.readlink(f"/proc/{j}/fd/0").startswith("pipe:")]
        self.assertEqual(len(piped), 1, "the second job's stdin is make's closed pipe")
        stdin = [(p, fd) for p in pids[1:] for fd in os.listdir(f"/proc/{p}/fd")
                 if os.readlink(f"/proc/{p}/fd/{fd}").startswith("pipe:") and
                 os.readlink(f"/proc/{p}/fd/{fd}") == os.readlink(f"/proc/{piped[0]}/fd/0")]
        self.assertEqual([p for p, _ in stdin].count(make), 1, stdin)
        self.assertEqual(kcmp_file(make, int(dict(stdin)[make]), piped[0], 0), 0)
        self.assertTrue(pipe_hangs_up(f"/proc/{piped[0]}/fd/0"))
        open(os.path.join(d, "go"), "w").close()
        wait_for(lambda: self.out() != "" and gone(bash), "make to finish")
        log = read(os.path.join(d, "log"))
        self.assertEqual(self.out(), "0\n", log)
        # Written through the one description: every line once, none overwritten.
        self.assertEqual(sorted(log.splitlines()), sorted(
            [f"{PY} wait.py a", f"{PY} wait.py b", "gcc -o prog a.o b.o main.o"] +
            [f"gcc -O2 -g0 -c -o {n}.o {n}.c" for n in ("a", "b", "main")]))
        self.assertTrue(filecmp.cmp(clean, os.path.join(d, "prog"), shallow=False), log)
        self.assertEqual(subprocess.run([os.path.join(d, "prog")], capture_output=True,
                                        text=True).stdout, "29\n")


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
