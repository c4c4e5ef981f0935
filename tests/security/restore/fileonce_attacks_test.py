#!/usr/bin/env python3
"""One open for a file's mappings in a row (session 18: the file policy's
check and the blob open a file once for the mappings of it that follow one
another, docs/restore.md "Memory details"), against hostile images written
by a real unprivileged user `s18sr1` (made in setup, removed after): each
later mapping of the same file is still checked and mapped on its own terms.

- the second of libc's mappings made a writable shared one: the blob must
  open libc again for writing, which the user may not (no task is left);
- the second mapping's fingerprint edited (bytes under it, or its content
  hash with the file's identity): refused as changed, though the file was
  opened for the first mapping already.

usage: fileonce_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import restore_attacks_test as ra  # noqa: E402
from restore_attacks_test import rt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s18sr1")

FILE_SHARED, VMA_WRITE = 3, 1 << 1


class FileOnceAttacks(ra.SlotAttackCase):
    def libc(self):
        """The vma records of libc, in the image's order, and the second's content record."""
        vmas = [r for r in self.records
                if r["type"] == "vma" and r["path"].endswith("/libc.so.6")]
        self.assertGreaterEqual(len(vmas), 2)
        second = vmas[1]
        self.assertEqual(vmas[0]["end"], second["start"], "libc's mappings follow one another")
        content = [r for r in self.records
                   if r["type"] == "vma-content" and r["start"] == second["start"]]
        return second, content[0] if content else None

    def test_unedited_image_restores(self):
        ok, err, status, pid = self.restore(f"{self.d}/snap.img")
        self.assertTrue(ok, err + status)
        self.assertIn(f"uid {ra.UID}\n", self.poke(pid))

    def test_second_mapping_made_writable_shared_opens_the_file_again(self):
        second, _ = self.libc()
        img = self.edited(f"vma#{second['n']}.kind={FILE_SHARED}",
                          f"vma#{second['n']}.flags={second['flags'] | VMA_WRITE}")
        status = self.assert_refused(img, "Permission denied")
        self.assertIn("opening the file of mapping", status)

    def test_second_mapping_bytes_edited_is_refused(self):
        second, content = self.libc()
        self.assertIsNotNone(content, "libc's second mapping has a fingerprint")
        img = self.edited(f"vma-content#{content['n']}.bytes=4096")
        self.assertIn("changed since the checkpoint", self.assert_refused(img, "Stale"))

    def test_second_mapping_hash_edited_is_refused(self):
        second, content = self.libc()
        self.assertIsNotNone(content, "libc's second mapping has a fingerprint")
        # Its identity no longer the file's, so the hash is compared.
        img = self.edited(f"vma-content#{content['n']}.ctime_nsec=1",
                          f"vma-content#{content['n']}.hash=1")
        self.assertIn("content differs", self.assert_refused(img, "Stale"))


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
