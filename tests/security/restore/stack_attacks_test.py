#!/usr/bin/env python3
"""A hostile image against `crfsd -s` (single-threaded): a restore's blob
area put right below the daemon's main-thread stack (docs/performance.md,
"Trees: the cost per process"; fs/single_loop.h).

A restore maps each process's blob area in the daemon, at the top of the
highest gap that process's areas leave (state/memory_restore.cc
map_blob_area), and a tree's restore nests one restore_image call per
process on the daemon thread's stack (state/tree_restore.h). The user s11tr1,
in the group crfsd was told may restore pids (-o restore_pid_group=s11trg),
checkpoints its tree (bash and 31 sleeps) through the mount and edits the
image: bash's [stack] area is stretched to run from just above the daemon's
main-thread stack to the top of the address space, so the one gap left below
it puts bash's blob area right under that stack, which the kernel then does
not let grow (its stack guard gap); the nested restores of the other 31
processes need it to. The daemon's stack address is read here, as root,
from /proc: it stands for an attacker who guessed or learned it. The image
is written into a slot through the mount as the user.

Before fs/single_loop.cc, the restore ran on that main thread and the daemon
died (SIGSEGV); now the loop runs on a thread of a fixed stack: the daemon
survives, and the user's plain image restores after it.

usage: stack_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import tempfile
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import roundtrip_mount_test as rt  # noqa: E402
from threads_mount_test import UserInGroup  # noqa: E402
from trees_mount_test import TreeBase, read, tree_of  # noqa: E402

PAGE = 4096
USER_TOP = 0x7ffffffff000  # state/check.h kUserTop
SPECIALS = ("[vdso]", "[vvar]", "[vvar_vclock]")
SLEEPS = 31  # the nested restores of 32 processes grow the daemon's stack past its first 132 KiB


def maps(pid):
    """[(start, end, name)] of /proc/PID/maps."""
    out = []
    for line in read(f"/proc/{pid}/maps").splitlines():
        f = line.split()
        s, e = (int(x, 16) for x in f[0].split("-"))
        out.append((s, e, f[5] if len(f) > 5 else ""))
    return out


class SingleThreadedStack(UserInGroup, TreeBase):
    user, group = "s11tr1", "s11trg"

    def setUp(self):
        self.crfs = rt.Crfsd(["-s", "-o", f"restore_pid_group={self.group}"])
        self.m = self.crfs.mnt
        self.tasks = []
        self.dir = tempfile.mkdtemp(prefix="s11tr-")
        os.chmod(self.dir, 0o755)
        self.pids, self.procs = [], []
        self.edit = os.path.join(rt.BUILD, "tests/security/restore/crfs-imgedit")

    def tearDown(self):
        if self.crfs.proc.poll() is not None:  # died: nothing of it to list, its mount detached
            self.crfs.children = lambda: []
            subprocess.run(["umount", "-l", self.m], capture_output=True, timeout=60)
        super().tearDown()

    def daemon_stack(self):
        """(bottom of the daemon's main-thread stack, bytes of its vdso and vvar)."""
        m = maps(self.crfs.proc.pid)
        return ([s for s, e, n in m if n == "[stack]"][0],
                sum(e - s for s, e, n in m if n in SPECIALS))

    def user_tree(self, as_user, run):
        """The user's tree checkpointed: (image, its root's [stack] record and
        that area's start, the tree's pids)."""
        img = os.path.join(self.dir, "tree.img")
        script = f"for i in $(seq {SLEEPS}); do sleep 1000 </dev/null >/dev/null 2>&1 & done; wait"
        proc = self.start(script, SLEEPS + 1, user_prefix=as_user)
        pids = tree_of(proc.pid)
        r = run(f"cp {self.m}/{proc.pid}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{proc.pid}/reason"))
        self.kill_all(proc, pids)
        recs = [eval(line, {}, {}) for line in subprocess.run(
            [self.edit, img, "--list"], capture_output=True, text=True,
            check=True).stdout.splitlines()]
        stack = [r for r in recs if r["type"] == "vma" and r["path"] == "[stack]"][0]  # bash's
        return img, f"vma#{stack['n']}", stack["start"], pids

    def gap_top_below(self, start, tries):
        """Where the gap below the stretched stack must end so that bash's blob
        area ends 256 KiB below the daemon's main stack, inside the kernel's
        1 MiB stack guard gap (the area ends a page and the specials' room
        below the gap's end). A daemon whose stack is so low that this is
        above `start` (the stretched area must still hold bash's pages) is
        started again, `tries` times at most: its stack is elsewhere (ASLR).
        None: no daemon fitted (bash's own stack may be the low one)."""
        for _ in range(tries):
            bottom, specials = self.daemon_stack()
            top = bottom - (256 << 10) + PAGE + specials
            if top <= start:
                return bottom, top
            self.crfs.stop()
            self.crfs = rt.Crfsd(["-s", "-o", f"restore_pid_group={self.group}"])
            self.m = self.crfs.mnt
        return None

    def test_blob_area_below_the_main_stack_does_not_kill_the_daemon(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        # Both stacks are placed at random (ASLR): a tree whose bash stack is
        # low fits few daemons, so the tree is made again too (bounded).
        for _ in range(20):
            img, stack, start, pids = self.user_tree(as_user, run)
            fit = self.gap_top_below(start, 3)
            if fit:
                break
        else:
            self.fail("no crfsd whose stack is below the user's bash stack in 20 x 3 starts")
        bottom, top = fit
        bad = os.path.join(self.dir, "bad.img")
        r = subprocess.run([self.edit, img, bad, f"{stack}.start={top}", f"{stack}.end={USER_TOP}"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chmod(bad, 0o644)
        self.assertEqual(self.daemon_stack()[0], bottom, "the daemon's stack moved meanwhile")
        r = run(f"mkdir {self.m}/{pids[0]} && cp {bad} {self.m}/{pids[0]}/image")
        try:
            status = read(f"{self.m}/{pids[0]}/status")
        except OSError as e:  # ENOTCONN: the daemon is gone
            try:
                self.crfs.proc.wait(30)
            finally:
                self.fail(f"crfsd stopped serving ({e}; it exited with {self.crfs.proc.returncode})"
                          f" at the restore ({r.stderr.strip()}): " + read(self.crfs.log.name))
        print(f"the edited tree's restore: {status.strip() or r.stderr.strip()}", file=sys.stderr)
        self.kill_all(None, [p for p in pids if os.path.exists(f"/proc/{p}")])
        self.assertEqual(run(f"rmdir {self.m}/{pids[0]}").returncode, 0)
        # It serves on: the user's plain image brings the whole tree back.
        r = run(f"mkdir {self.m}/{pids[0]} && cp {img} {self.m}/{pids[0]}/image")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{pids[0]}/status"))
        self.assertEqual(sorted(tree_of(pids[0])), sorted(pids))
        self.kill_all(None, pids)

    def test_sigterm_ends_the_single_threaded_daemon(self):
        """The loop's thread sleeps in its read of /dev/fuse; the main thread
        gets the signal and passes it on (fs/single_loop.cc)."""
        # An ASan build's leak check at exit would change the code (the
        # listing's directory handle may still be open: its release is
        # asynchronous); the exit code is the point here.
        self.crfs.stop()
        asan = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = (asan or "") + ":detect_leaks=0"
        try:
            self.crfs = rt.Crfsd(["-s"])
        finally:
            if asan is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = asan
        self.m = self.crfs.mnt
        self.assertIn(str(os.getpid()), os.listdir(self.m))  # it serves
        self.crfs.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.crfs.proc.wait(30), 0, read(self.crfs.log.name))
        self.assertFalse(os.path.ismount(self.m))


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
