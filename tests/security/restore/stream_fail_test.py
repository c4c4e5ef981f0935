#!/usr/bin/env python3
"""How a restore ends when its image goes wrong part-way (issue 13, streaming
restore; docs/performance.md "Streaming restore: measured, not built"): the
contract a restore that builds the task while the bytes arrive must keep, and
today's spooled restore keeps. Each image is written into a slot by a real
unprivileged user `s14st1` (made in setup, removed after); each failure must be
reported at close() (errno and `status`) and leave no task of the daemon's and
no process of the writer's uid behind:

  - the trailer's checksum wrong (the last bytes to arrive);
  - the image cut in the middle of its page data;
  - a bad record after the pages: the stats record (crfs writes every record
    that describes the task before the pages; only stats and the trailer
    follow them), and the regs record moved after the pages (any order is an
    image) with rip outside every executable mapping;
  - an fd the new task itself fails to open (a file the writer may not open:
    stage 1, as the writer, once the task exists);
  - the writer killed in the middle of the page data (its close comes from
    the kernel, with half an image).

And the image written in odd pieces (`dd bs=4093`: records, page runs and the
trailer split anywhere) restores exactly: every page the image holds outside
the stack reads back the same from the restored task (which sleeps in pause(),
running none of its own code).

usage: stream_fail_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import struct
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import restore_attacks_test as ra  # noqa: E402
from restore_attacks_test import rt  # noqa: E402
import stream_attacks_test as sa  # noqa: E402  (sets the module's user: set again below)
from stream_attacks_test import XXH, TRAILER_TYPE, records  # noqa: E402

setUpModule, tearDownModule = ra.attacks_as("s14st1")

PAGES, REGS, STATS, THREAD = 6, 7, 16, 17  # record types
SETTINGS = 58


def rebuilt(b, parts):
    """The image of header of `b`, the records `parts` (whole, frames
    included) and a trailer that counts them and checksums them."""
    body = b[:struct.unpack_from("<I", b, 12)[0]] + b"".join(parts)
    return body + struct.pack("<IIQQQ", TRAILER_TYPE, 0, 24, len(parts),
                              XXH.XXH3_64bits(body, len(body))) + b"CRFSEND\n"


def uid_processes(uid):
    """Pids of the processes whose real uid is `uid` (zombies included)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            out.append(int(p))
                        break
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


class StreamFail(ra.SlotAttackCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(f"{cls.d}/snap.img", "rb") as f:
            cls.snap = f.read()
        recs = records(cls.snap)
        # The largest pages record; `mid` a byte in the middle of its data.
        off, _, n = max((r for r in recs if r[1] == PAGES), key=lambda r: r[2])
        cls.mid = off + 32 + (n - 16) // 2
        cls.runs = [struct.unpack_from("<QQ", cls.snap, o + 16) + (o + 32,)
                    for o, t, _ in recs if t == PAGES]

    write = sa.StreamAttacks.write  # x<n>.img in the test directory, readable by all
    restore_in_odd_pieces = sa.StreamAttacks.restore_in_odd_pieces

    def nothing_left(self):
        """No task of the daemon's, and (bounded wait: one may be exiting)
        no process of the writer's uid."""
        self.assertEqual(self.crfs.children(), [], "a task was left after a failed restore")
        rt.wait_for(lambda: not uid_processes(ra.UID), "the writer's processes to be gone")

    def gone(self, pid):
        """The restored task killed and reaped, so that the next test's
        nothing_left sees none of the daemon's tasks."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rt.wait_for(lambda: pid not in self.crfs.children() and pid not in uid_processes(ra.UID),
                    "the restored task to be reaped")

    def refused(self, img, errtext, why):
        status = self.assert_refused(img, errtext)
        self.assertIn(why, status)
        self.nothing_left()

    def test_bad_trailer_checksum(self):
        b = bytearray(self.snap)
        b[-16] ^= 1
        self.refused(self.write(b), "Bad message", "checksum mismatch")

    def test_truncated_in_the_page_data(self):
        self.refused(self.write(self.snap[:self.mid]), "Bad message", "truncated image")

    def test_bad_stats_record_after_the_pages(self):
        # crfs writes every record that describes the task before the pages:
        # only stats and the trailer follow them.
        recs = records(self.snap)
        first = min(i for i, r in enumerate(recs) if r[1] == PAGES)
        after = [r[1] for r in recs[first:]]
        self.assertEqual(after, [PAGES] * (len(after) - 2) + [STATS, TRAILER_TYPE])
        parts = [self.snap[o:o + 16 + n] for o, t, n in recs[:-1]]
        parts[-1] = struct.pack("<IIQ", STATS, 0, 8) + bytes(8)  # shorter than a StatsRecord
        self.refused(self.write(rebuilt(self.snap, parts)), "Bad message", "stats")

    def test_bad_record_moved_after_the_pages(self):
        # Any order is an image (docs/image-format.md): the regs record, with
        # rip outside every executable mapping, after the pages.
        with open(self.edited("regs.rip=0x1000"), "rb") as f:
            b = f.read()
        recs = records(b)
        parts = [b[o:o + 16 + n] for o, t, n in recs[:-1] if t != REGS]
        parts += [b[o:o + 16 + n] for o, t, n in recs if t == REGS]
        st = self.assert_refused(self.write(rebuilt(b, parts)), "Invalid argument")
        self.assertRegex(st, "rip")
        self.nothing_left()

    def test_fd_refused_by_the_new_task(self):
        path = f"/proc/{self.crfs.proc.pid}/maps"  # the writer may not open it
        st = os.stat(path)
        img = self.edited(self.fd(3) + ".path=" + path, self.fd(3) + f".ino={st.st_ino}",
                          self.fd(3) + f".dev={st.st_dev}", self.fd(3) + ".size=0",
                          self.fd(3) + f".mtime_sec={st.st_mtime_ns // 10**9}",
                          self.fd(3) + f".mtime_nsec={st.st_mtime_ns % 10**9}",
                          *self.empty_content(3))
        self.refused(img, "Permission denied", "opening fd 3")

    def test_writer_killed_in_the_page_data(self):
        slot = f"k{self.n}"
        type(self).n += 1
        # The writer writes up to the middle of the page data, then kills
        # itself: the kernel closes its file.
        script = f"{self.d}/half_writer.py"
        with open(script, "w") as f:
            f.write("import os, signal, sys\n"
                    "d = open(sys.argv[1], 'rb').read()[:int(sys.argv[3])]\n"
                    "f = os.open(sys.argv[2], os.O_WRONLY)\n"
                    "if os.write(f, d) == len(d):\n"
                    "    os.kill(os.getpid(), signal.SIGKILL)\n")
        os.chmod(script, 0o644)
        r = ra.run_as(f"mkdir {self.crfs.mnt}/{slot} && exec /usr/bin/python3 {script} "
                      f"{self.d}/snap.img {self.crfs.mnt}/{slot}/image {self.mid}")
        self.assertEqual(r.returncode, -signal.SIGKILL, r.stderr)
        self.refused_at_the_kernels_close(slot)

    def refused_at_the_kernels_close(self, slot):
        """The close of a writer killed in the page data: refused, nothing left."""
        status_file = f"{self.crfs.mnt}/{slot}/status"
        rt.wait_for(lambda: rt.read(status_file) != "empty\n", "the slot to take the close")
        status = rt.read(status_file)
        self.assertTrue(status.startswith("error: "), status)
        self.assertIn("truncated image", status)
        self.nothing_left()

    def half_writer(self, slot, upto, then):
        """Starts the writer: it writes the image up to byte `upto` into
        `slot`, then waits for a line on its stdin and `then` (python: "rest"
        writes the rest and closes, "kill" kills itself)."""
        script = f"{self.d}/paused_writer.py"
        with open(script, "w") as f:
            f.write("import os, signal, sys\n"
                    "d = open(sys.argv[1], 'rb').read()\n"
                    "f = os.open(sys.argv[2], os.O_WRONLY)\n"
                    "k = int(sys.argv[3])\n"
                    "assert os.write(f, d[:k]) == k\n"
                    "sys.stdin.readline()\n"
                    "if sys.argv[4] == 'kill':\n"
                    "    os.kill(os.getpid(), signal.SIGKILL)\n"
                    "v = memoryview(d)[k:]\n"
                    "while v:\n"
                    "    v = v[os.write(f, v):]\n"
                    "os.close(f)\n")
        os.chmod(script, 0o644)
        cmd = (f"mkdir {self.crfs.mnt}/{slot} && exec /usr/bin/python3 {script} "
               f"{self.d}/snap.img {self.crfs.mnt}/{slot}/image {upto} {then}")
        return subprocess.Popen(["setpriv", f"--reuid={ra.UID}", f"--regid={ra.GID}",
                                 "--init-groups", "--inh-caps=-all", "sh", "-c", cmd],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def test_streamed_task_exists_before_the_pages_end(self):
        # stream (fs/slot_stream.h): the task is made at the first pages
        # record and takes its pages as they arrive; it runs only once the
        # whole image arrived and verified.
        slot = f"w{self.n}"
        type(self).n += 1
        before = set(self.crfs.children())  # an earlier test's task may still be exiting
        w = self.half_writer(slot, self.mid, "rest")
        try:
            try:
                rt.wait_for(lambda: set(self.crfs.children()) - before or w.poll() is not None,
                            "the task of a half-written image")
            except AssertionError:
                self.crfs.log.flush()
                raise AssertionError(rt.read(self.crfs.log.name)[-3000:])
            if w.poll() is not None:
                self.fail(w.communicate()[1])
            self.crfs.log.flush()
            if len(set(self.crfs.children()) - before) != 1:
                w.kill()
                out, err = w.communicate()
                self.fail(rt.read(self.crfs.log.name)[-3000:] + err)
            self.assertEqual(rt.read(f"{self.crfs.mnt}/{slot}/status"), "empty\n")
            _, err = w.communicate("go\n", timeout=120)
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()
        self.assertEqual(w.returncode, 0, err)
        status = rt.read(f"{self.crfs.mnt}/{slot}/status")
        self.assertTrue(status.startswith("restored "), status)
        pid = int(status.split()[1])
        self.crfs.log.flush()
        self.assertIn(f"slot {slot}: restored pid {pid} (streamed)", rt.read(self.crfs.log.name))
        self.assert_pages_as_imaged(pid)
        self.assertIn(f"uid {ra.UID}\n", self.poke(pid))
        self.gone(pid)

    def test_streamed_task_killed_when_the_writer_dies(self):
        slot = f"w{self.n}"
        type(self).n += 1
        before = set(self.crfs.children())
        w = self.half_writer(slot, self.mid, "kill")
        try:
            rt.wait_for(lambda: set(self.crfs.children()) - before or w.poll() is not None,
                        "the task of a half-written image")
            self.assertEqual(len(set(self.crfs.children()) - before), 1)
            w.communicate("go\n", timeout=120)
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()
        self.assertEqual(w.returncode, -signal.SIGKILL)
        self.refused_at_the_kernels_close(slot)

    def test_streamed_record_after_the_pages_is_refused(self):
        # A record that plans the task, moved after the pages: the task was
        # planned without it, so the streamed restore refuses the image (crfs
        # writes every such record before the pages).
        recs = records(self.snap)
        first = next(i for i, r in enumerate(recs) if r[1] == PAGES)
        parts = [self.snap[o:o + 16 + n] for o, _, n in recs]
        moved = next(i for i in range(first) if recs[i][1] == SETTINGS)
        body = parts[:-1]  # the trailer is rebuilt
        parts = body[:moved] + body[moved + 1:-1] + [body[moved]] + body[-1:]  # before stats
        ok, err, status, _ = self.restore(self.write(rebuilt(self.snap, parts)))
        self.assertFalse(ok, status)
        self.assertIn("Invalid argument", err, status)
        self.assertIn("after the page data", status)
        self.nothing_left()

    def assert_pages_as_imaged(self, pid):
        """Every page the image holds outside the stack reads back the same."""
        stack = [(v["start"], v["end"]) for v in self.records
                 if v["type"] == "vma" and v["path"] == "[stack]"]
        # The kernel writes the cpu it runs on into the rseq area (glibc's, in
        # the TLS): those 32 bytes are the kernel's, not the image's.
        rseq = [struct.unpack_from("<Q", self.snap, o + 16 + 24)[0]
                for o, t, _ in records(self.snap) if t == THREAD]
        compared = 0
        with open(f"/proc/{pid}/mem", "rb") as mem:
            for vaddr, nr, data in self.runs:
                for i in range(nr):
                    a = vaddr + i * 4096
                    if any(lo <= a < hi for lo, hi in stack):
                        continue  # the signal frame of the return went there
                    mem.seek(a)
                    got = bytearray(mem.read(4096))
                    want = bytearray(self.snap[data + i * 4096:data + (i + 1) * 4096])
                    for r in rseq:
                        if a <= r < a + 4096:
                            got[r - a:r - a + 32] = want[r - a:r - a + 32]
                    self.assertEqual(got, want, f"page {a:#x} of the restored task")
                    compared += 1
        self.assertGreater(compared, 16)

    def assert_restored_exactly(self, pid):
        """The restored task `pid` is the writer's, holds the image's pages,
        and answers; then it is killed and reaped."""
        self.assertIn(pid, uid_processes(ra.UID))  # what nothing_left looks for
        self.assert_pages_as_imaged(pid)
        self.assertIn(f"uid {ra.UID}\n", self.poke(pid))
        self.gone(pid)

    def test_odd_pieces_restore_exactly(self):
        self.assert_restored_exactly(self.restore_in_odd_pieces())


if __name__ == "__main__":
    ra.BUILD = rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
