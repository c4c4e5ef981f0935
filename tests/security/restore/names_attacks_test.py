#!/usr/bin/env python3
"""Hostile names of anonymous memory (state/vma_names.h), as a real
unprivileged user.

A name is carried in the VMA record's own path (`[anon:NAME]`, or
`[anon_shmem:NAME]` of shared anonymous memory), so its range is the VMA's
by construction: there is no range of its own to point outside it. The user
`s7nm1` (made in setup, removed after) checkpoints its own victim, rewrites
the path of a plain anonymous VMA with crfs-imgedit (checksum fixed) and
writes it into restore slots. A name longer than the kernel takes, holding a
NUL (which would cut it short) or empty is refused before anything is made
(EINVAL naming the VMA, no task left); a byte the kernel refuses is the
kernel's EINVAL, named in `status`; a good name comes back on the same range
where the kernel names memory, and is an error naming the area where it does
not (never dropped).

usage: names_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "probes"))
import restore_attacks_test as ra  # noqa: E402
import roundtrip_mount_test as rt  # noqa: E402
from run_probes import kernel_names_vmas  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s7nm1")


class NamesImages(ra.SlotAttackCase):
    def anon(self):
        """A plain private anonymous VMA of the victim (kind 1, no path)."""
        return self.rec("vma", lambda r: r["kind"] == 1 and r["path"] == "")

    def vma_range(self, rec):
        n = int(rec.split("#")[1])
        r = next(r for r in self.records if r["type"] == "vma" and r["n"] == n)
        return r["start"], r["end"]

    def test_bad_names_are_einval_and_nothing_is_made(self):
        v = self.anon()
        start, end = self.vma_range(v)
        for path, words in [("[anon:" + "n" * 80 + "]",
                             "an anonymous memory name of 80 bytes (the kernel takes at most 79)"),
                            ("[anon:" + "n" * 4000 + "]", "an anonymous memory name of 4000 bytes"),
                            ("[anon:a\\x00b]", "an anonymous memory name holding a NUL byte"),
                            ("[anon:]", "an empty or unterminated anonymous memory name"),
                            ("[anon:x", "an empty or unterminated anonymous memory name")]:
            with self.subTest(path=path[:20]):
                st = self.assert_refused(self.edited(f"{v}.path={path}"), "Invalid argument")
                self.assertIn(f"VMA {start:x}-{end:x}: {words}", st)

    def test_a_byte_the_kernel_refuses_is_its_einval(self):
        v = self.anon()
        start, end = self.vma_range(v)
        for name in ("a\\x01b", "a$b", "a\\x7fb"):
            with self.subTest(name=name):
                st = self.assert_refused(self.edited(f"{v}.path=[anon:{name}]"),
                                         "Invalid argument")
                self.assertIn(f"naming {start:x}-{end:x} ", st)
                self.assertIn("(PR_SET_VMA_ANON_NAME)", st)

    def test_a_good_name_comes_back_or_is_an_error(self):
        v = self.anon()
        start, end = self.vma_range(v)
        img = self.edited(f"{v}.path=[anon:crfs ok]")
        if not kernel_names_vmas():  # the name cannot be set: an error, not a loss
            st = self.assert_refused(img, "Invalid argument")
            self.assertIn(f'naming {start:x}-{end:x} "crfs ok" (PR_SET_VMA_ANON_NAME)', st)
            return
        ok, err, status, pid = self.restore(img)
        self.assertTrue(ok, f"{err} {status}")
        lines = [ln for ln in rt.read(f"/proc/{pid}/maps").splitlines()
                 if ln.startswith(f"{start:x}-{end:x} ")]
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].endswith(" [anon:crfs ok]"), lines[0])


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
