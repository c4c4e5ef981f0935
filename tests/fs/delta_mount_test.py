#!/usr/bin/env python3
"""Delta images through the mount (docs/incremental.md): /crfs/<pid>/delta,
chains restored by concatenation, and hostile chains refused; of one process
and of a tree (a parent and two children, each with pages of its own).

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
import trees_mount_test as tm  # noqa: E402  (TreeBase: a subreaper, trees started and killed)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from users import unprivileged_user  # noqa: E402

MIB = 64
PAGES = MIB * 256
USER = "s11td1"
TREE_MIB = 16  # each of the tree's three processes
TREE_PAGES = TREE_MIB * 256


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

class TreeDelta(tm.TreeBase):
    """A chain of a tree: every member tracked, each delta holding only what
    each member wrote; restored into the same pids, every member checks its
    pages; a tree whose processes changed starts a new chain."""

    def start_writer(self, user=None):
        """delta_writer with two children (tests/workloads/delta_writer.c); waits for it."""
        argv = [os.path.join(rt.BUILD, "tests/workloads/delta_writer"), self.dir, str(TREE_MIB),
                "2"]
        prefix = []
        if user:
            os.chown(self.dir, UID, GID)
            prefix = ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--init-groups",
                      "--inh-caps=-all"]
        proc = self.start(None, 3, argv=argv, user_prefix=prefix)
        rt.wait_for(lambda: os.path.exists(os.path.join(self.dir, "ready")), "the tree ready")
        self.user = user
        return proc, tm.tree_of(proc.pid)

    def cmd(self, cmd):
        return as_user(cmd) if self.user else rt.sh(cmd)

    def delta(self, root, name):
        img = os.path.join(self.dir, name)
        r = self.cmd(f"cat {self.m}/{root}/delta > {img}")
        self.assertEqual(r.returncode, 0, r.stderr + tm.read(f"{self.m}/{root}/reason"))
        return img

    def round(self, pids, k):
        """Every member (of `pids`) writes ~1% of its pages, its round k."""
        for i, p in enumerate(pids):
            os.kill(p, signal.SIGUSR1)
        for i, _ in enumerate(pids):
            note = os.path.join(self.dir, (f"c{i}." if i else "") + f"round{k}")
            rt.wait_for(lambda: os.path.exists(note), f"round {k} of member {i}")

    def tree_chain(self, root, pids, rounds=2):
        """base, then a delta after each round; each much smaller than the base."""
        parts = [self.delta(root, "base.img")]
        b = show(parts[0])
        self.assertEqual(b["chain"]["base_id"], 0)
        self.assertEqual([p["pid"] for p in b["processes"]], pids)
        full = os.path.getsize(parts[0])
        self.assertGreater(full, 3 * TREE_PAGES * 4096)
        for k in range(1, rounds + 1):
            self.round(pids, k)
            parts.append(self.delta(root, f"d{k}.img"))
            # ~1% of each member's pages changed: the delta is under a tenth of the base
            # (the measure is the size ratio; every process's other state is whole in it).
            self.assertLess(os.path.getsize(parts[-1]) * 10, full)
        return parts

    def chain_parts(self, *parts):
        """crfs show of the concatenation: each part's chain record and page counts."""
        cat = os.path.join(self.dir, "chain.img")
        rt.sh(f"cat {' '.join(parts)} > {cat}")
        r = rt.sh(f"{rt.BUILD}/tools/crfs verify {cat}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"a chain of {len(parts)} images", r.stdout)
        return show(cat)["chain_parts"]

    def refused(self, slot, *parts, want):
        r = self.cmd(f"mkdir {self.m}/{slot} && cat {' '.join(parts)} > {self.m}/{slot}/image")
        self.assertNotEqual(r.returncode, 0, f"{slot} restored")
        status = tm.read(f"{self.m}/{slot}/status")
        self.assertIn(want, status)
        self.assertEqual(rt.sh(f"cat {self.m}/{slot}/pid").stdout, "")
        return status

    def restore_tree(self, root, pids, parts):
        r = rt.sh(f"mkdir {self.m}/{root} && cat {' '.join(parts)} | tee /dev/null > "
                  f"{self.m}/{root}/image && cat {self.m}/{root}/pid")
        self.assertEqual(r.returncode, 0, r.stderr + tm.read(f"{self.m}/{root}/status"))
        self.assertEqual(int(r.stdout), root)
        self.assertEqual(tm.tree_of(root), pids)
        os.kill(root, signal.SIGTERM)  # the parent ends its children, each checking its pages
        rt.wait_for(lambda: os.path.exists(os.path.join(self.dir, "result")), "the verdict")
        self.assertEqual(tm.read(os.path.join(self.dir, "result")).strip(), "PASS")
        for i in (1, 2):
            note = os.path.join(self.dir, f"c{i}.result")
            if os.path.exists(note):
                self.assertEqual(tm.read(note).strip(), "PASS", f"child {i}")

    def test_tree_chain_restores_every_member(self):
        proc, pids = self.start_writer()
        parts = self.tree_chain(pids[0], pids)
        info = self.chain_parts(*parts)
        self.assertEqual([p["processes"] for p in info], [3, 3, 3])
        self.assertEqual(info[0]["pages_kept"], 0)
        for k in (1, 2):  # every member's unchanged pages left to the base
            self.assertEqual(info[k]["base_id"], info[k - 1]["id"])
            self.assertGreater(info[k]["pages_kept"], 3 * TREE_PAGES * 9 // 10)
            self.assertLess(info[k]["pages_stored"], 3 * TREE_PAGES // 10)
        self.kill_all(proc, pids)
        self.restore_tree(pids[0], pids, parts)

    def test_tree_membership_change_starts_a_new_chain(self):
        proc, pids = self.start_writer()
        root = pids[0]
        base, d1 = self.tree_chain(root, pids, rounds=1)
        os.kill(pids[2], signal.SIGKILL)  # a member leaves: a zombie its parent has not reaped
        rt.wait_for(lambda: tm.stat(pids[2])[0] == "Z", "the child to be a zombie")
        new = self.delta(root, "new.img")
        n = show(new)
        self.assertEqual(n["chain"]["base_id"], 0)  # complete, a new chain
        self.assertEqual(n["chain"]["pages_kept"], 0)
        self.assertGreater(os.path.getsize(new), 2 * TREE_PAGES * 4096)
        self.round(pids[:2], 2)
        d2 = self.delta(root, "d2.img")
        self.assertEqual(show(d2)["chain"]["base_id"], n["chain"]["id"])
        self.assertLess(os.path.getsize(d2) * 10, os.path.getsize(new))
        # The old chain and the new part: refused, nothing restored.
        self.kill_all(proc, pids)
        self.refused("old1", base, d1, new, want="part 3 is no delta")
        self.refused("old2", base, d1, d2, want="part 3 is a delta")
        # The new image made to name the old chain as its base: its processes are not the base's.
        ids = show(d1)["chain"]["id"]
        forged = os.path.join(self.dir, "forged.img")
        edit = os.path.join(rt.BUILD, "tests/security/restore/crfs-imgedit")
        r = rt.sh(f"{edit} {new} {forged} 'chain#0@8:8={ids}'")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.refused("forged", base, d1, forged, want="a delta is of the very processes")
        self.restore_tree(root, pids, [new, d2])  # the zombie comes back a zombie

    def test_user_tree_hostile_chains(self):
        """As the tree's owner, an unprivileged user: each hostile chain EINVAL, nothing runs."""
        proc, pids = self.start_writer(user=True)
        root = pids[0]
        parts = self.tree_chain(root, pids)
        self.kill_all(proc, pids)
        edit = os.path.join(rt.BUILD, "tests/security/restore/crfs-imgedit")
        # A delta whose second process is one the base does not hold (the pid edited, the
        # checksum fixed): its kept pages would have no base.
        stranger = os.path.join(self.dir, "stranger.img")
        r = self.cmd(f"{edit} {parts[1]} {stranger} 'process#1.pid={self.outsider()}'")
        self.assertEqual(r.returncode, 0, r.stderr)
        for slot, chain, want in (("alone", [parts[1]], "restore it after its base"),
                                  ("skipped", [parts[0], parts[2]], "part 2"),
                                  ("swapped", [parts[0], parts[2], parts[1]], "part 2"),
                                  ("stranger", [parts[0], stranger, parts[2]],
                                   "a delta is of the very processes")):
            self.refused(slot, *chain, want=want)
        self.assertEqual([p for p in pids if os.path.exists(f"/proc/{p}")], [])


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
