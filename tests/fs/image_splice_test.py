#!/usr/bin/env python3
"""Reading `image` through the mount while crfsd splices the worker's pipe into
its replies (checkpoint/piped_image.h PipedImage::serve with a PipeReply,
fs/ops.cc reply_spliced): readers that ask in odd sizes, a reader that signals
keep interrupting, two readers of one task at once, in the multi-threaded and
the single-threaded (-s) daemon. Each copy is a whole image (`crfs verify`)
and equals a plain `cp` of the same stopped task.

usage: image_splice_test.py BUILD_DIR  (any unittest args after)
"""
import errno
import os
import signal
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Task, Base, wait_for)

# 24 MiB of random bytes: the image is many pipe-fulls and outgrows the window.
HOLDER = ("import os, sys, time\n"
          "b = bytearray(os.urandom(24 << 20))\n"
          "open('ready', 'w').close()\n"
          "time.sleep(1000)\n")
ODD = [1, 4097, (1 << 20) + 3, 65536, 3 << 20, 12289, 333]

# A reader whose reads a timer interrupts every millisecond (SIGALRM with a
# handler, no SA_RESTART: python retries a read that returns EINTR).
INTERRUPTED = r"""
import os, signal, sys
hits = [0]
def on_alarm(sig, frame):
    hits[0] += 1
signal.signal(signal.SIGALRM, on_alarm)
signal.siginterrupt(signal.SIGALRM, True)
signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
src = os.open(sys.argv[1], os.O_RDONLY)
with open(sys.argv[2], "wb") as out:
    while True:
        b = os.read(src, 1 << 20)
        if not b:
            break
        out.write(b)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(hits[0])
"""


def first_difference(a, b):
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if a[:mid] == b[:mid] else (lo, mid)
    return lo


class ImageSplice(rt.Base):
    options = ()

    def setUp(self):
        self.crfs = rt.Crfsd(self.options)
        self.m = self.crfs.mnt
        self.tasks = []
        self.t = self.task(["/usr/bin/python3", "-c", HOLDER])
        # Stopped: every image of it has the same bytes.
        os.kill(self.t.pid, signal.SIGSTOP)
        rt.wait_for(lambda: rt.state_of(self.t.pid) == "T", "the task to stop")
        self.src = f"{self.m}/{self.t.pid}/image"

    def verify(self, img):
        r = subprocess.run([os.path.join(rt.BUILD, "tools/crfs"), "verify", img],
                           capture_output=True, text=True, timeout=rt.TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def reference(self):
        """A plain `cp` of the image. Two of them differ in their last
        records (seen: from ~70 KiB before the end on, at places that vary
        between pairs) even though the task is stopped: the bytes before the
        last 128 KiB, and before the first place two plain copies differ, are
        what every copy must have; `crfs verify` checks the whole of each."""
        refs = []
        for name in ("ref1.img", "ref2.img"):
            img = self.t.checkpoint(name)
            self.verify(img)
            with open(img, "rb") as f:
                refs.append(f.read())
        self.assertGreater(len(refs[0]), 24 << 20)
        self.stable = min(first_difference(*refs), len(refs[0]) - (128 << 10))
        self.assertGreater(self.stable, 24 << 20)
        return refs[0]

    def same(self, got, want, what):
        self.assertEqual(len(got), len(want), what)
        at = first_difference(got, want)
        self.assertGreaterEqual(at, self.stable, f"{what}: differs from byte {at}")

    def read_odd(self):
        fd = os.open(self.src, os.O_RDONLY)
        parts, i = [], 0
        try:
            while b := os.read(fd, ODD[i % len(ODD)]):
                parts.append(b)
                i += 1
        finally:
            os.close(fd)
        return b"".join(parts)

    def test_odd_sizes(self):
        want = self.reference()
        got = self.read_odd()
        self.same(got, want, "read in odd sizes")
        img = self.t.path("odd.img")
        with open(img, "wb") as f:
            f.write(got)
        self.verify(img)

    def test_reader_interrupted_by_signals(self):
        want = self.reference()
        out = self.t.path("intr.img")
        r = subprocess.run([sys.executable, "-c", INTERRUPTED, self.src, out],
                           capture_output=True, text=True, timeout=rt.TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(int(r.stdout), 0, "no signal arrived while it read")
        self.verify(out)
        with open(out, "rb") as f:
            self.same(f.read(), want, "the interrupted reader's copy")

    def test_two_readers_of_one_task(self):
        want = self.reference()
        got = [None, None]

        def reader(k):
            try:
                got[k] = self.read_odd() if k else rt.read(self.src, "rb")
            except OSError as e:  # -s: a second stream of one task is refused, not waited for
                got[k] = e

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(rt.TIMEOUT)
        if self.options == ("-s",):
            got = [g for g in got if not (isinstance(g, OSError) and g.errno == errno.EBUSY)]
            self.assertGreaterEqual(len(got), 1, "both readers refused")
        for k in range(len(got)):
            self.assertIsInstance(got[k], bytes, f"reader {k}")
            self.same(got[k], want, f"reader {k}")
            img = self.t.path(f"reader{k}.img")
            with open(img, "wb") as f:
                f.write(got[k])
            self.verify(img)


class ImageSpliceSingleThreaded(ImageSplice):
    options = ("-s",)


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
