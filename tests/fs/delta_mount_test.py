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

MIB = 64
PAGES = MIB * 256
USER = "s4in1"


def show(img):
    r = rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Delta(rt.Base):
    def writer(self):
        return self.task([os.path.join(rt.BUILD, "tests/workloads/delta_writer"), "@DIR@", str(MIB)])

    def delta(self, t, name):
        img = t.path(name)
        r = rt.sh(f"cat {self.m}/{t.pid}/delta > {img}")
        if r.returncode != 0:
            r.stderr += rt.sh(f"cat {self.m}/{t.pid}/reason").stdout
        self.assertEqual(r.returncode, 0, r.stderr)
        return img

    def round(self, t, k):
        os.kill(t.pid, signal.SIGUSR1)
        rt.wait_for(lambda: os.path.exists(t.path(f"round{k}")), f"round {k}")

    def restore_fails(self, slot, *parts, want):
        r = rt.sh(f"mkdir {self.m}/{slot} && cat {' '.join(parts)} > {self.m}/{slot}/image")
        self.assertNotEqual(r.returncode, 0, f"{slot} restored")
        status = rt.read(f"{self.m}/{slot}/status")
        self.assertIn(want, status)
        self.assertEqual(rt.sh(f"cat {self.m}/{slot}/pid").stdout, "")

    def test_chain_restores_the_last_state_and_hostile_chains_are_refused(self):
        t = self.writer()
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
        t.kill9()

        # Hostile chains, as an unprivileged user: nothing restored, each refused.
        for p in parts:
            os.chmod(p, 0o644)
        os.chmod(t.dir, 0o755)
        self.restore_fails("alone", parts[2], want="delta")
        self.restore_fails("skipped", base, parts[2], want="part 2")
        self.restore_fails("swapped", base, idle, parts[3], parts[2], want="part 3")
        self.restore_fails("first", idle, base, want="part 1")

        # The chain, through a pipe: the last state, every page checked by the task.
        r = rt.sh(f"mkdir {self.m}/chain && cat {' '.join(parts)} | tee /dev/null > {self.m}/chain/image "
                  f"&& cat {self.m}/chain/pid")
        self.assertEqual(r.returncode, 0, r.stderr)
        t.pid = int(r.stdout)
        self.assertEqual(t.finish(), "PASS")


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
