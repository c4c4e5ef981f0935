#!/usr/bin/env python3
"""Delta images through the mount (docs/incremental.md): /crfs/<pid>/delta,
chains restored by concatenation, and hostile chains refused.

A self-checking workload (tests/workloads/delta_writer.c) changes ~1% of its
pages, maps, discards and unmaps areas between reads; after restore of
`cat base d1 d2 d3` it checks every page. Sizes are bounded by page counts.

usage: delta_mount_test.py BUILD_DIR
"""
import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Task, Base, wait_for)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from users import unprivileged_user  # noqa: E402

MIB = 64
PAGES = MIB * 256
USER = "s4in1"


def show(img):
    r = rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def as_user(cmd):
    """A shell command as USER: full credentials of an unprivileged user, no capability."""
    return subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={GID}", "--init-groups",
                           "--inh-caps=-all", "sh", "-c", cmd],
                          capture_output=True, text=True, timeout=rt.TIMEOUT,
                          stdin=subprocess.DEVNULL)


def setUpModule():
    global UID, GID
    pw = unittest.enterModuleContext(unprivileged_user(USER, "-N", "-g", "nogroup"))
    UID, GID = pw.pw_uid, pw.pw_gid


def tearDownModule():
    """The user goes with the module's cleanups (unprivileged_user)."""


class Delta(rt.Base):
    def writer(self, user=False):
        argv = [os.path.join(rt.BUILD, "tests/workloads/delta_writer"), "@DIR@", str(MIB)]
        if user:  # its directory (0700, root's) opened to the user first
            argv = ["sh", "-c", 'chmod 777 "$1" && shift && exec "$@"', "sh", "@DIR@", "setpriv",
                    f"--reuid={UID}", f"--regid={GID}", "--init-groups", "--inh-caps=-all", *argv]
        t = self.task(argv)
        t.user = user
        return t

    def sh_as(self, t, cmd):
        return as_user(cmd) if t.user else rt.sh(cmd)

    def delta(self, t, name):
        img = t.path(name)
        r = self.sh_as(t, f"cat {self.m}/{t.pid}/delta > {img}")
        if r.returncode != 0:
            r.stderr += rt.sh(f"cat {self.m}/{t.pid}/reason").stdout
        self.assertEqual(r.returncode, 0, r.stderr)
        return img

    def round(self, t, k):
        os.kill(t.pid, signal.SIGUSR1)
        rt.wait_for(lambda: os.path.exists(t.path(f"round{k}")), f"round {k}")

    def chain(self, t):
        """base, an idle delta, then a delta after each of rounds 1-3; sizes bounded."""
        base = self.delta(t, "base.img")
        full = os.path.getsize(base)
        self.assertGreater(full, PAGES * 4096)
        meta = full - PAGES * 4096  # what is not the workload's pages
        # Idle: only what the task touched while waiting (its stack), not its pages.
        idle = self.delta(t, "d0.img")
        self.assertLess(os.path.getsize(idle), meta + 64 * 4096)
        parts = [base, idle]
        for k in (1, 2, 3):
            self.round(t, k)
            d = self.delta(t, f"d{k}.img")
            # ~1% of the pages (i % 97 == k), the round's new area, and slack
            # for the task's own stack and heap: never the whole memory.
            changed = (PAGES + 96) // 97
            self.assertLess(os.path.getsize(d), meta + (changed + 64) * 4096 + (changed + 64) * 32)
            parts.append(d)
        b, d1 = show(base), show(parts[2])
        self.assertEqual(b["chain"]["base_id"], 0)
        self.assertEqual(d1["chain"]["base_id"], show(idle)["chain"]["id"])
        self.assertGreater(d1["chain"]["pages_kept"], PAGES // 2)
        return parts

    def restore_fails(self, t, slot, *parts, want):
        r = self.sh_as(t, f"mkdir {self.m}/{slot} && cat {' '.join(parts)} > {self.m}/{slot}/image")
        self.assertNotEqual(r.returncode, 0, f"{slot} restored")
        self.assertIn(want, rt.read(f"{self.m}/{slot}/status"))
        self.assertEqual(rt.sh(f"cat {self.m}/{slot}/pid").stdout, "")

    def restore_chain(self, t, parts):
        """The chain through a pipe: the last state, every page checked by the task."""
        r = self.sh_as(t, f"mkdir {self.m}/chain && cat {' '.join(parts)} | tee /dev/null > "
                        f"{self.m}/chain/image && cat {self.m}/chain/pid")
        self.assertEqual(r.returncode, 0, r.stderr)
        t.pid = int(r.stdout)
        self.assertEqual(t.finish(), "PASS")

    def test_chain_restores_the_last_state(self):
        t = self.writer()
        parts = self.chain(t)
        # An `image` read of a tracked task: complete, and the chain goes on.
        full = t.checkpoint("full.img")
        self.assertNotIn("chain", show(full))
        self.round(t, 4)
        parts.append(self.delta(t, "d4.img"))
        t.kill9()
        self.restore_chain(t, parts)

    def test_user_chain_and_hostile_chains(self):
        t = self.writer(user=True)
        parts = self.chain(t)
        base, idle = parts[0], parts[1]
        t.kill9()
        # Hostile chains, each written by the user: refused, nothing restored.
        self.restore_fails(t, "alone", parts[2], want="delta")
        self.restore_fails(t, "skipped", base, parts[2], want="part 2")
        self.restore_fails(t, "swapped", base, idle, parts[3], parts[2], want="part 3")
        self.restore_fails(t, "first", idle, base, want="part 1")
        self.restore_fails(t, "twice", base, idle, idle, want="part 3")
        # A delta's keep record edited to claim pages outside its areas (checksum fixed).
        edit = os.path.join(rt.BUILD, "tests/security/restore/crfs-imgedit")
        out = t.path("edited.img")
        r = self.sh_as(t, f"{edit} {parts[2]} {out} 'keep#0@0:8=0x10000'")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.restore_fails(t, "outside", base, idle, out, want="outside every VMA")
        self.restore_chain(t, parts)

if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
