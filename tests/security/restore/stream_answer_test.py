#!/usr/bin/env python3
"""A streamed restore answers each write before it uses the bytes (issue 13,
docs/performance.md "Restore: the FUSE write path profiled"): once the task
waits for its pages, crfsd answers a write of the image first and then copies
its page data into the task, so the writer's next write(2), and the kernel's
copy of it into another FUSE worker, overlap that copy. The contract, as the
real unprivileged user `s16fw1` (made in setup, removed after):

  - a write whose bytes turn out bad after its answer (a page run written
    twice) is refused, with its errno and the slot's status saying why, and
    leaves no task of the daemon's and no process of the writer's uid. Since
    session 17 (pagetwice) such a run is found before a byte of it is copied
    (common/page_set.h) and refused at close, as a spooled restore refuses
    it (EBADMSG); before, its UFFDIO_COPY found the page there and the
    writer's next write and close failed with EINVAL;
  - an image written in pieces of 5,000 bytes, each piece of page data answered
    before it is copied, restores exactly: every page outside the stack
    reads back as the image has it.

  - a copy into the task that fails after its write was answered (the test
    hook CRFS_TEST_STREAM_COPY_FAIL: no image edit makes a copy fail since
    session 17, each run is checked first) fails the writer's next write and
    its close with the copy's errno, and leaves nothing.

Against the code before session 16 (or crfsd with CRFS_SLOT_ANSWER_LATE=1)
the third fails: the write of the failing run itself is refused.

usage: stream_answer_test.py BUILD_DIR  (any unittest args after)
"""
import errno
import os
import struct
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import restore_attacks_test as ra  # noqa: E402
from restore_attacks_test import rt  # noqa: E402
import stream_attacks_test as sa  # noqa: E402
import stream_fail_test as sf  # noqa: E402  (both set the module's user: set again below)
from stream_attacks_test import records  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s16fw1")

PAGES, STATS = sf.PAGES, sf.STATS

WRITER = """import os, sys
d = open(sys.argv[1], 'rb').read()
f = os.open(sys.argv[2], os.O_WRONLY)
cuts = [0] + [int(x) for x in sys.argv[3].split(',')] + [len(d)]
for a, b in zip(cuts, cuts[1:]):
    v = memoryview(d)[a:b]
    try:
        while v:
            v = v[os.write(f, v):]
        print('write ok', flush=True)
    except OSError as e:
        print('write', e.errno, flush=True)
try:
    os.close(f)
    print('close ok', flush=True)
except OSError as e:
    print('close', e.errno, flush=True)
"""


class StreamAnswer(ra.SlotAttackCase):
    write = sa.StreamAttacks.write
    nothing_left = sf.StreamFail.nothing_left
    gone = sf.StreamFail.gone
    assert_pages_as_imaged = sf.StreamFail.assert_pages_as_imaged
    assert_restored_exactly = sf.StreamFail.assert_restored_exactly

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(f"{cls.d}/snap.img", "rb") as f:
            cls.snap = f.read()
        cls.runs = [struct.unpack_from("<QQ", cls.snap, o + 16) + (o + 32,)
                    for o, t, _ in records(cls.snap) if t == PAGES]

    def write_in_pieces(self, img, cuts, crfs=None):
        """`img` written into a new slot of `crfs` (the class's daemon by
        default) by the user, one write(2) loop per piece between `cuts`;
        each piece's outcome and the close's ("write ok", "write 22", …,
        "close …") and the slot's status."""
        crfs = crfs or self.crfs
        slot = f"w{self.n}"
        type(self).n += 1
        script = f"{self.d}/piece_writer.py"
        with open(script, "w") as f:
            f.write(WRITER)
        os.chmod(script, 0o644)
        r = ra.run_as(f"mkdir {crfs.mnt}/{slot} && exec /usr/bin/python3 {script} "
                      f"{img} {crfs.mnt}/{slot}/image {','.join(map(str, cuts))}")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines(), rt.read(f"{crfs.mnt}/{slot}/status")

    def smallest_anon_run(self, recs, skip=0):
        """(offset, length) of the smallest pages record of private anonymous
        memory (vma kind 1; not the stack) but the first `skip` pages records:
        one FUSE write (≤ 1 MiB)."""
        anon = [(v["start"], v["end"]) for v in self.records
                if v["type"] == "vma" and v["kind"] == 1 and v["path"] != "[stack]"]
        o, _, n = min((r for r in [r for r in recs if r[1] == PAGES][skip:]
                       if any(lo <= struct.unpack_from("<Q", self.snap, r[0] + 16)[0] < hi
                              for lo, hi in anon)), key=lambda r: r[2])
        self.assertLessEqual(16 + n, 1 << 20)
        return o, n

    def test_run_written_twice_is_refused_after_its_answer(self):
        recs = records(self.snap)
        pages = [i for i, r in enumerate(recs) if r[1] == PAGES]
        self.assertEqual(recs[pages[-1] + 1][1], STATS)
        # The smallest run of private anonymous memory again, after the
        # last: one FUSE write, found twice before a byte of it is copied.
        o, n = self.smallest_anon_run(recs)
        parts = [self.snap[o2:o2 + 16 + n2] for o2, t, n2 in recs[:-1]]
        parts.insert(pages[-1] + 1, self.snap[o:o + 16 + n])
        img = sf.rebuilt(self.snap, parts)
        head = struct.unpack_from("<I", self.snap, 12)[0]
        dup_at = head + sum(len(p) for p in parts[:pages[-1] + 1])
        got, status = self.write_in_pieces(self.write(img), [dup_at, dup_at + 16 + n])
        # Everything before: written; the run twice: answered, not copied;
        # the rest: written; the close: refused as the decode names it.
        self.assertEqual(got, ["write ok", "write ok", "write ok", f"close {errno.EBADMSG}"],
                         status)
        self.assertTrue(status.startswith("error: bad image: "), status)
        self.assertIn("(a page twice)", status)
        self.assertEqual(self.crfs.children(), [], "a task was left after a failed restore")
        self.nothing_left()

    def test_copy_that_fails_after_its_answer_fails_the_next_write(self):
        # A daemon whose copy of one run into the task fails (EIO; the hook
        # stands for a copy the kernel refuses: no image edit gives one): the
        # write holding that run alone is answered before the copy, so it
        # succeeds; the next write and the close fail with the copy's error.
        # With CRFS_SLOT_ANSWER_LATE=1 the run's own write fails.
        # Not the first pages record: the task waits for its pages once that
        # one has come (before, writes are spooled and answered after).
        o, n = self.smallest_anon_run(records(self.snap), skip=1)
        vaddr = struct.unpack_from("<Q", self.snap, o + 16)[0]
        crfs = rt.Crfsd(env=dict(os.environ, CRFS_TEST_STREAM_COPY_FAIL=f"{vaddr:x}"))
        self.addCleanup(crfs.stop)
        got, status = self.write_in_pieces(f"{self.d}/snap.img", [o, o + 16 + n], crfs)
        self.assertEqual(got, ["write ok", "write ok", f"write {errno.EIO}",
                               f"close {errno.EIO}"], status)
        self.assertTrue(status.startswith("error: "), status)
        self.assertIn("CRFS_TEST_STREAM_COPY_FAIL", status)
        self.assertEqual(crfs.children(), [], "a task was left after a failed restore")
        self.nothing_left()

    def test_small_answered_pieces_restore_exactly(self):
        cuts = list(range(5000, len(self.snap), 5000))
        self.assertGreater(len(cuts), 4)
        got, status = self.write_in_pieces(f"{self.d}/snap.img", cuts)
        self.assertEqual(got, ["write ok"] * (len(cuts) + 1) + ["close ok"], status)
        self.assertTrue(status.startswith("restored "), status)
        self.assertIn(" (streamed)", rt.read(self.crfs.log.name))
        self.assert_restored_exactly(int(status.split()[1]))


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
