#!/usr/bin/env python3
"""The daemon's fingerprint cache (common/hash_cache.h, issue 13) through the mount:

- a second checkpoint of a task hashes none of its files again (the worker's
  trace says so), and its fingerprints are the first one's;
- a file the task reads, and one it maps, changed in place with the same size
  and their mtime put back are hashed again: the third image's fingerprints
  differ from the first's and equal what a daemon with an empty cache records;
  the first image is then refused ("changed since the checkpoint"), the third
  restores.

usage: fingerprint_cache_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Base, sh, read)

# Holds `data` open read-only and `mapme` mapped privately, says ready, waits.
HOLDER = """
import mmap, signal
data = open('data', 'rb')
m = open('mapme', 'rb')
mm = mmap.mmap(m.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
open('ready', 'w').close()
signal.pause()
"""


def trace_counts(log_text):
    """(hits, hashed) of every checkpoint in the daemon's log, in order."""
    return [(int(a), int(b)) for a, b in
            re.findall(r"fingerprint cache: (\d+) hits, (\d+) hashed", log_text)]


class FingerprintCache(rt.Base):
    def setUp(self):
        os.environ["CRFS_CHECKPOINT_TRACE"] = "1"  # the worker's counts, in crfsd's log
        self.addCleanup(os.environ.pop, "CRFS_CHECKPOINT_TRACE", None)
        super().setUp()

    def prints(self, img):
        j = json.loads(subprocess.run([os.path.join(rt.BUILD, "tools/crfs"), "show", "--json", img],
                                      capture_output=True, text=True, check=True).stdout)
        out = {}
        for v in j["vmas"]:
            if "content" in v:
                out[("vma", v.get("path"), v["start"])] = v["content"]["xxh3"]
        for f in j["fds"]:
            if "content" in f:
                out[("fd", f.get("path"), f["fd"])] = f["content"]["xxh3"]
        return out

    def counts(self):
        self.crfs.log.flush()
        return trace_counts(rt.read(self.crfs.log.name))

    def test_unchanged_files_come_from_the_cache_and_changed_ones_are_hashed_again(self):
        t = self.task(["sh", "-c", 'head -c 20000 /dev/urandom > data; '
                       'head -c 12288 /dev/urandom > mapme; exec /usr/bin/python3 -c "$0"',
                       HOLDER])
        img1 = t.checkpoint("one.img")
        img2 = t.checkpoint("two.img")
        counts = self.counts()
        self.assertEqual(len(counts), 2, counts)
        self.assertGreaterEqual(counts[0][1], 2, counts)  # at least data and mapme hashed
        # Every look-up of the first (a range mapped twice is one hash) is a hit now.
        self.assertEqual(counts[1], (sum(counts[0]), 0), "the second checkpoint hashed again")
        p1, p2 = self.prints(img1), self.prints(img2)
        self.assertEqual(p1, p2)
        data, mapme = t.path("data"), t.path("mapme")
        self.assertTrue(any(k[1] == data for k in p1), p1)
        self.assertTrue(any(k[1] == mapme for k in p1), p1)

        # Same size, same inode, mtime put back: other bytes.
        for path in (data, mapme):
            st = os.stat(path)
            with open(path, "r+b") as f:
                f.seek(100)
                b = f.read(1)
                f.seek(100)
                f.write(bytes([b[0] ^ 0xff]))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            self.assertEqual(os.stat(path).st_ino, st.st_ino)
        img3 = t.checkpoint("three.img")
        self.assertEqual(self.counts()[2][1], 2, "the two changed files were not hashed again")
        p3 = self.prints(img3)
        for k, h in p1.items():
            if k[1] in (data, mapme):
                self.assertNotEqual(p3[k], h, f"{k}: the cached fingerprint of the old bytes")
            else:
                self.assertEqual(p3[k], h, k)
        # What a daemon with an empty cache records for the same task now.
        fresh = rt.Crfsd()
        try:
            img4 = t.path("four.img")
            r = rt.sh(f"cp {fresh.mnt}/{t.pid}/image {img4}")
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            fresh.stop()
        self.assertEqual(self.prints(img4), p3)

        t.kill9()
        r = rt.sh(f"mkdir {self.m}/old && cp {img1} {self.m}/old/image")
        self.assertNotEqual(r.returncode, 0, "the image of the old bytes restored")
        self.assertIn("changed since the checkpoint", rt.read(f"{self.m}/old/status"))
        t.restore(img3, "new")


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
