#!/usr/bin/env python3
"""A page given twice in one image (issue 13/security; docs/image-format.md,
`pages`): crfs never writes one, and every restore refuses it the same way.

A real unprivileged user `s17pt1` (made in setup, removed after) runs
pagetwice_victim.c, which holds a marker in a private anonymous page, on its
stack and in a dirty page of a private file mapping, and checkpoints it
through the mount. The image is then edited: the page holding one marker is
given again by a one-page pages record right after the one that gives it,
the marker changed in that copy (the trailer's count and checksum made
right). Written as the user into a slot of a streaming crfsd and of a
spooling one (CRFS_RESTORE_NO_STREAM=1), each such image must be refused at
close() with EBADMSG and the same status on both, no task left. Before, the
streamed restore refused only the anonymous page (at the write, with its own
message) and restored the other two with the later copy; the spooled restore
restored all three with it.

usage: pagetwice_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import struct
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import restore_attacks_test as ra  # noqa: E402
from restore_attacks_test import rt  # noqa: E402
from stream_attacks_test import TRAILER_TYPE, records  # noqa: E402
from stream_fail_test import rebuilt  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s17pt1")

PAGES, PAGE = 6, 4096
MARKS = {"anon": b"<PTANON17>", "stack": b"<PTSTACK17>", "file": b"<PTFILE17>"}


def page_twice(b, mark):
    """Image `b` with the page holding `mark` given again, right after the
    pages record that gives it, "PT" changed to "LT" in the copy."""
    parts, found = [], []
    for off, t, n in records(b):
        if t == TRAILER_TYPE:
            continue
        parts.append(b[off:off + 16 + n])
        if t != PAGES:
            continue
        vaddr = struct.unpack_from("<Q", b, off + 16)[0]
        data = b[off + 32:off + 16 + n]
        at = data.find(mark)
        while at >= 0:
            page = at // PAGE
            copy = data[page * PAGE:(page + 1) * PAGE].replace(mark, mark.replace(b"PT", b"LT"))
            parts.append(struct.pack("<IIQQII", PAGES, 0, 16 + PAGE, vaddr + page * PAGE, 1, 0) +
                         copy)
            found.append(vaddr + page * PAGE)
            at = data.find(mark, (page + 1) * PAGE)
    assert len(found) == 1, f"{mark} in {len(found)} pages of the image"
    return rebuilt(b, parts)


class PageTwice(ra.SlotAttackCase):
    VICTIM = "pagetwice_victim"

    @classmethod
    def setUpClass(cls):
        os.environ["CRFS_RESTORE_TRACE"] = "1"  # the streaming daemon logs its prefix decode
        try:
            super().setUpClass()
        finally:
            del os.environ["CRFS_RESTORE_TRACE"]
        try:
            cls.spooled = rt.Crfsd(env=dict(os.environ, CRFS_RESTORE_NO_STREAM="1"))
        except BaseException:
            super().tearDownClass()
            raise
        with open(f"{cls.d}/snap.img", "rb") as f:
            cls.snap = f.read()

    @classmethod
    def tearDownClass(cls):
        cls.spooled.stop()
        super().tearDownClass()

    def tearDown(self):
        self.spooled.kill_children()
        rt.wait_for(lambda: not self.spooled.children(), "crfsd to reap its children")
        super().tearDown()

    def write(self, data):
        type(self).n += 1
        out = f"{self.d}/x{self.n}.img"
        with open(out, "wb") as f:
            f.write(data)
        os.chmod(out, 0o644)
        return out

    def restore_on(self, crfs, img):
        """img written into a new slot of `crfs` as the user: (close ok, stderr, status, pid)."""
        type(self).n += 1
        slot = f"s{self.n}"
        r = ra.run_as(f"mkdir {crfs.mnt}/{slot} && cp {img} {crfs.mnt}/{slot}/image")
        status = rt.read(f"{crfs.mnt}/{slot}/status")
        pid = int(status.split()[1]) if status.startswith("restored") else 0
        return r.returncode == 0, r.stderr, status, pid

    def streamed(self):
        """Restores of the streaming daemon that streamed and succeeded (its
        trace is logged on success only)."""
        return rt.read(self.crfs.log.name).count("decode-prefix")

    def spooled_instead(self):
        """Restores of the streaming daemon that fell back to the spool."""
        return rt.read(self.crfs.log.name).count("restore not streamed")

    def test_good_image_restores_on_both(self):
        img = self.write(self.snap)
        for crfs in (self.crfs, self.spooled):
            before = self.streamed()
            ok, err, status, pid = self.restore_on(crfs, img)
            self.assertTrue(ok and pid, err + status)
            if crfs is self.crfs:
                self.assertGreater(self.streamed(), before, "the restore was not streamed")
            self.assertEqual(self.poke(pid),
                             "anon <PTANON17>\nstack <PTSTACK17>\nfile <PTFILE17>\n")
            os.unlink(f"{self.d}/report")

    def refused_alike(self, kind):
        img = self.write(page_twice(self.snap, MARKS[kind]))
        statuses = []
        for crfs in (self.crfs, self.spooled):
            before = self.spooled_instead()
            ok, err, status, pid = self.restore_on(crfs, img)
            if pid:
                report = self.poke(pid)
                os.unlink(f"{self.d}/report")
                self.fail(f"restored ({crfs is self.crfs and 'streamed' or 'spooled'}): {report}")
            self.assertFalse(ok, status)
            self.assertIn("Bad message", err)
            self.assertTrue(status.startswith("error: bad image: "), status)
            self.assertIn("(a page twice)", status)
            self.assertEqual(crfs.children(), [], "a task was left after a failed restore")
            # The records before the pages are the good image's, which
            # streams (test_good_image_restores_on_both): so did this one.
            self.assertEqual(self.spooled_instead(), before, "the restore was not streamed")
            statuses.append(status)
        self.assertEqual(statuses[0], statuses[1])

    def test_anonymous_page_twice_is_refused_alike(self):
        self.refused_alike("anon")

    def test_stack_page_twice_is_refused_alike(self):
        self.refused_alike("stack")

    def test_file_mapping_page_twice_is_refused_alike(self):
        self.refused_alike("file")


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
