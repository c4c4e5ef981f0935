#!/usr/bin/env python3
"""The live snapshot of a tree through the mount (docs/trees.md "Live members"):
a tree's member holding at least 4 MiB is write-protected and streamed after
the thaw, as a single process is; a smaller one is copied while frozen. The
tree here: a shell (copied) and two tests/workloads/gen_writer children of
16 MiB each (live), which rewrite every page all the time:

  - the image read while both write on, restored into the same pids, is one
    cut of every member's memory: each restored writer finds every page as
    it left it;
  - crfsd killed in the middle of the read: every member runs on, untraced,
    its memory intact, no area left write-protected;
  - a live member killed before its pages were sent: the read fails, and the
    other members run on.

Runs as root (a task then gets a userfaultfd that handles kernel faults:
live). usage: live_tree_mount_test.py BUILD_DIR
"""
import json
import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test as rt  # noqa: E402
from live_mount_test import peek, tracer  # noqa: E402
from trees_mount_test import TreeBase, tree_of  # noqa: E402
from tree_copy_mount_test import SHARED_MIB, MemberHandlers  # noqa: E402

MIB = 16  # per writer: above the 4 MiB from which a member is live


def write_protected(pid):
    """Whether any area of pid is registered with a userfaultfd for write-protect."""
    return any(ln.startswith("VmFlags:") and " uw" in ln
               for ln in rt.read(f"/proc/{pid}/smaps").splitlines())


class LiveTree(MemberHandlers, TreeBase):
    def writers(self):
        """sh with two gen_writer children (a/, b/); (proc, [sh, a, b], {pid: addr})."""
        gen = os.path.join(rt.BUILD, "tests/workloads/gen_writer")
        script = f'"$0" a {MIB} & "$0" b {MIB} & wait'
        os.mkdir(os.path.join(self.dir, "a"))
        os.mkdir(os.path.join(self.dir, "b"))
        proc = rt.subprocess.Popen(["sh", "-c", script, gen], stdin=rt.subprocess.DEVNULL,
                                   stdout=rt.subprocess.DEVNULL, stderr=rt.subprocess.DEVNULL,
                                   close_fds=True, cwd=self.dir)
        self.pids.append(proc.pid)
        self.procs.append(proc)
        ready = [os.path.join(self.dir, d, "ready") for d in ("a", "b")]
        rt.wait_for(lambda: all(map(os.path.exists, ready)) and len(tree_of(proc.pid)) == 3,
                    "the writers")
        pids = tree_of(proc.pid)
        self.pids += pids[1:]
        addrs = {}
        for p in pids[1:]:
            cwd = os.readlink(f"/proc/{p}/cwd")  # the shell's; the writer's dir is its argument
            d = rt.read(f"/proc/{p}/cmdline").split("\0")[1]
            addrs[p] = int(rt.read(os.path.join(cwd, d, "ready")), 16)
        for p, a in addrs.items():
            rt.wait_for(lambda: (peek(p, a) or (-1,))[0] >= 2, f"writer {p} to run")
        return proc, pids, addrs

    def runs_on_intact(self, pid, addr):
        """Two more generations written, every page found as left, not traced."""
        g0 = peek(pid, addr)[0]
        rt.wait_for(lambda: (peek(pid, addr) or (-1,))[0] >= g0 + 2, f"writer {pid} to write on")
        self.assertEqual(peek(pid, addr)[2], 0, f"writer {pid} found its memory changed")
        self.assertEqual(tracer(pid), 0)

    def open_streaming(self, pid):
        """An image handle whose first bytes were read: its live members
        write-protected, the stream stalled on the reader, the tree thawed or
        being thawed (its records go out before the thaw: checkpoint.cc
        capture_tree, "thaw")."""
        f = open(f"{self.m}/{pid}/image", "rb", buffering=0)
        head = f.read(1 << 16)
        self.assertEqual(head[:7], b"CRFSIMG")
        return f, head

    def test_pages_shared_copy_on_write_stay_shared_through_a_live_checkpoint(self):
        """A forked tree whose members are live (each holds more than 4 MiB,
        SHARED_MIB of it shared copy-on-write with the others): their pages
        are read after the thaw without a copy made in any member (a pin of a
        shared page makes one: state/memory_dump.h readv_can_read), and the
        tree restores with every byte."""
        proc, pids, out, img = self.checkpoint_shared_tree()
        show = rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}")
        self.assertEqual(show.returncode, 0, show.stderr)
        copied = json.loads(show.stdout)["stats"]["pages_copied"]  # the root's
        self.assertLess(copied, SHARED_MIB * 256 // 2, "not a live snapshot")
        self.restored_whole(proc, pids, out, img)

    def test_tree_read_while_its_members_write_restores_one_cut(self):
        self.one_cut()

    def test_members_protected_ahead_of_the_freeze_restore_one_cut(self):
        # ProtectAhead (checkpoint/live_snapshot.h) for any size here: each
        # writer's memory is protected before the tree's freeze while it
        # rewrites every page, and protected again while frozen.
        self.crfs.stop()
        self.crfs = rt.Crfsd(env=dict(os.environ, CRFS_LIVE_AHEAD_MIN_KIB="0",
                                      CRFS_CHECKPOINT_TRACE="1"))
        self.m = self.crfs.mnt
        self.one_cut()
        self.crfs.log.flush()
        self.assertIn("memory protected ahead", rt.read(self.crfs.log.name))

    def test_tree_thawed_before_its_first_byte_restores_one_cut(self):
        # CRFS_TREE_THAW_FIRST=1: the old path, the tree thawed before the
        # image's records go out.
        self.crfs.stop()
        self.crfs = rt.Crfsd(env=dict(os.environ, CRFS_TREE_THAW_FIRST="1"))
        self.m = self.crfs.mnt
        self.one_cut()

    def one_cut(self):
        proc, pids, addrs = self.writers()
        f, head = self.open_streaming(pids[0])
        for p in addrs:  # live: write-protected while the stream runs
            self.assertTrue(write_protected(p), f"writer {p} is not streamed live")
        self.assertFalse(write_protected(pids[0]), "the shell (small) is not copied while frozen")
        for p, a in addrs.items():  # every page not yet sent is rewritten twice
            g0 = peek(p, a)[0]
            rt.wait_for(lambda: peek(p, a)[0] >= g0 + 2, f"writer {p} to write during the read")
        img = os.path.join(self.dir, "tree.img")
        with open(img, "wb") as out:
            out.write(head)
            while chunk := f.read(1 << 20):
                out.write(chunk)
        f.close()
        r = rt.sh(f"{rt.BUILD}/tools/crfs verify {img}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # The root's frozen time (its section's stats), known at the thaw.
        shown = rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        st = json.loads(shown.stdout)["stats"]
        self.assertGreater(st.get("frozen_ns", 0), 0, st)
        self.assertGreaterEqual(st["total_ns"], st["frozen_ns"], st)
        for p, a in addrs.items():
            self.assertEqual(peek(p, a)[2], 0, f"writer {p} found its memory changed")
        self.kill_all(proc, pids)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + rt.read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(tree_of(pids[0]), pids)
        for p, a in addrs.items():
            self.runs_on_intact(p, a)

    def test_daemon_killed_mid_read_lets_every_member_run_on(self):
        proc, pids, addrs = self.writers()
        f, _ = self.open_streaming(pids[0])
        self.crfs.proc.send_signal(signal.SIGKILL)
        self.crfs.proc.wait(rt.TIMEOUT)
        # The dead daemon's mount answers ENOTCONN: detach it here.
        self.crfs.children = lambda: []
        rt.subprocess.run(["umount", "-l", self.m], check=True)
        for p, a in addrs.items():
            self.runs_on_intact(p, a)
            rt.wait_for(lambda: not write_protected(p), f"writer {p} to be let go")
        try:
            f.close()
        except OSError:  # the mount is gone
            pass

    def test_member_killed_before_its_pages_were_sent_fails_the_read(self):
        # The stream is stalled at the start (the shell's records, then the
        # first writer's pages): the second writer's pages are not sent yet.
        proc, pids, addrs = self.writers()
        f, _ = self.open_streaming(pids[0])
        first, second = list(addrs)
        self.assertTrue(write_protected(second))
        os.kill(second, signal.SIGKILL)
        with self.assertRaises(OSError):
            while f.read(1 << 20):
                pass
        f.close()
        self.runs_on_intact(first, addrs[first])
        rt.wait_for(lambda: not write_protected(first), "the first writer to be let go")
        # The daemon serves on: the tree's next image (the shell and one writer).
        r = rt.sh(f"cat {self.m}/{pids[0]}/image > {self.dir}/again.img && "
                  f"{rt.BUILD}/tools/crfs verify {self.dir}/again.img")
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv.pop(1))
    if os.geteuid() != 0:
        print("needs root: skipped")
        sys.exit(0)
    unittest.main()
