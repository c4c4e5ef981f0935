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

Against the code before session 16 (or crfsd with CRFS_SLOT_ANSWER_LATE=1)
the first failed: the write of the bad run itself was refused. Since session
17 no edit of an image makes a copy fail after its answer (each run is
checked first), so the first no longer tells an early answer from a late
one: a copy that fails for another reason still would.

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

    def write_in_pieces(self, img, cuts):
        """`img` written into a new slot by the user, one write(2) loop per
        piece between `cuts`; each piece's outcome and the close's
        ("write ok", "write 22", …, "close …") and the slot's status."""
        slot = f"w{self.n}"
        type(self).n += 1
        script = f"{self.d}/piece_writer.py"
        with open(script, "w") as f:
            f.write(WRITER)
        os.chmod(script, 0o644)
        r = ra.run_as(f"mkdir {self.crfs.mnt}/{slot} && exec /usr/bin/python3 {script} "
                      f"{img} {self.crfs.mnt}/{slot}/image {','.join(map(str, cuts))}")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines(), rt.read(f"{self.crfs.mnt}/{slot}/status")

    def test_run_written_twice_is_refused_after_its_answer(self):
        recs = records(self.snap)
        pages = [i for i, r in enumerate(recs) if r[1] == PAGES]
        self.assertEqual(recs[pages[-1] + 1][1], STATS)
        # The smallest run of private anonymous memory (vma kind 1; not the
        # stack) again, after the last: one FUSE write (≤ 1 MiB), answered
        # once the task waits for its pages, whose copy (UFFDIO_COPY) then
        # finds them there.
        anon = [(v["start"], v["end"]) for v in self.records
                if v["type"] == "vma" and v["kind"] == 1 and v["path"] != "[stack]"]
        o, _, n = min((recs[i] for i in pages
                       if any(lo <= struct.unpack_from("<Q", self.snap, recs[i][0] + 16)[0] < hi
                              for lo, hi in anon)), key=lambda r: r[2])
        self.assertLessEqual(16 + n, 1 << 20)
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
