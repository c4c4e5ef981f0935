#!/usr/bin/env python3
"""A tree's restore streamed through the mount (issue 10, docs/trees.md
"Streaming a tree's restore"): an image of version 16 holds every process's
records before its page sections, so `cp tree.img /crfs/PID/image` makes the
whole tree at the first page and each section's pages go straight into its
own process as the writes arrive.

- Three processes (a parent, its child and a grandchild), each with 8 MiB of
  private anonymous memory of its own pattern (every page names its process
  and its place) and a dirty page of a private file mapping (written through
  the process's /proc/PID/mem, not its userfaultfd): restored streamed (the
  daemon's log says so), each checks its own memory and reports.
- Sections edited so that the decode at close refuses them: one process's
  section given to the next (its pages, inside that process's VMAs too: the
  two are forks of one bash, copied into the wrong process while the image
  arrives), a section's reserved field set. Each is refused at close with the
  decode's words, after streaming (no "not streamed" in the log), and no
  process of the tree is left.

Starts its own crfsd (always unmounted); a child subreaper, so that the
killed originals are reaped here.

usage: tree_stream_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, wait_for  # noqa: E402
from trees_mount_test import TreeBase, gone, tree_of  # noqa: E402

# Each process: role 0 (the root), 1 (its child), 2 (the grandchild).
PROGRAM = r"""
import mmap, os, signal, sys
MIB, PAGE = 8, 4096
def fill(role):
    mem = bytearray(MIB << 20)
    for i in range(0, len(mem), PAGE):
        tag = b"role %d page %d;" % (role, i // PAGE)
        mem[i:i + len(tag)] = tag
    f = open("data.bin", "rb")
    priv = mmap.mmap(f.fileno(), 65536, flags=mmap.MAP_PRIVATE,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)
    priv[8192:8192 + 16] = (b"private role %d!" % role).ljust(16)
    return mem, priv
def check(role, mem, priv):
    for i in range(0, len(mem), PAGE):
        tag = b"role %d page %d;" % (role, i // PAGE)
        if mem[i:i + len(tag)] != tag:
            return "page %d holds %r" % (i // PAGE, bytes(mem[i:i + 24]))
    if priv[8192:8192 + 16] != (b"private role %d!" % role).ljust(16):
        return "private page holds %r" % priv[8192:8192 + 16]
    if priv[0:4] != b"file":
        return "file page holds %r" % priv[0:4]
    return "ok"
def run(role):
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    mem, priv = fill(role)
    child = os.fork() if role < 2 else 0
    if child == 0 and role < 2:
        run(role + 1)
        os._exit(0)
    open("ready.%d" % role, "w").close()
    signal.sigwait([signal.SIGUSR1])
    with open("out.%d" % role, "w") as out:
        out.write(check(role, mem, priv))
    if child:
        os.waitpid(child, 0)
    os._exit(0)
run(0)
"""


def state_of(pid):
    """pid, its state and its parent, from /proc/PID/stat (or why not)."""
    try:
        fields = read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
        return (pid, fields[0], int(fields[1]))
    except (OSError, IndexError) as e:
        return (pid, str(e))


class TreeStream(TreeBase):
    def start_three(self):
        with open(os.path.join(self.dir, "data.bin"), "wb") as f:
            f.write(b"file" + b"\0" * (65536 - 4))
        with open(os.path.join(self.dir, "prog.py"), "w") as f:
            f.write(PROGRAM)
        proc = self.start(None, 3, argv=["/usr/bin/python3", "prog.py"])
        wait_for(lambda: all(os.path.exists(os.path.join(self.dir, f"ready.{r}"))
                             for r in range(3)), "every process to fill its memory")
        return proc, tree_of(proc.pid)

    def log(self):
        self.crfs.log.flush()
        return read(self.crfs.log.name)

    def test_each_process_gets_its_own_pages_streamed(self):
        proc, pids = self.start_three()
        self.round_trip(proc, pids)
        self.assertIn(f"slot {pids[0]}: restored pid {pids[0]} (streamed)", self.log())
        for p in pids:
            os.kill(p, signal.SIGUSR1)
        for r in range(3):
            out = os.path.join(self.dir, f"out.{r}")
            wait_for(lambda: os.path.exists(out) and read(out) != "", f"process {r}'s check")
            self.assertEqual(read(out), "ok", f"process {r}")
        for p in pids:
            wait_for(lambda: gone(p), f"pid {p} to end")

    def test_edited_sections_are_refused_after_streaming_and_leave_nothing(self):
        proc = self.start("(exec </dev/null >/dev/null 2>&1; "
                          "sleep 1000 </dev/null >/dev/null 2>&1 & wait $!) & wait $!", 3)
        pids = tree_of(proc.pid)
        img = self.checkpoint(proc.pid)
        self.kill_all(proc, pids)
        cases = [
            # process 1's section named process 2's: its pages go to process 2
            # as they arrive; the decode at close finds process 2's section twice.
            (["member-pages#1.process=2"], "member-pages record out of place"),
            (["member-pages#1.reserved=1"], "member-pages record out of place"),
        ]
        for edits, expect in cases:
            spooled = self.log().count("not streamed")
            named = self.log().count(f"slot {pids[0]}: restore failed: bad image: ")
            self.refused(img, pids[0], edits, expect)
            # The image's fault, named as a spooled restore names it: no process's.
            self.assertEqual(self.log().count(f"slot {pids[0]}: restore failed: bad image: "),
                             named + 1, edits)
            self.assertEqual(self.log().count("not streamed"), spooled, edits)
            left = [p for p in pids if os.path.exists(f"/proc/{p}")]
            # What is left, and what crfsd said (a failure here once in a full
            # `ctest -j2`, not seen again in 100 runs alone or under load).
            self.assertEqual(left, [], f"{edits}: {[state_of(p) for p in left]}; "
                                       f"crfsd's log ends: {self.log()[-3000:]}")
        # The image itself restores, streamed.
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(tree_of(pids[0]), pids)
        self.assertIn(f"slot {pids[0]}: restored pid {pids[0]} (streamed)", self.log())


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
