#!/usr/bin/env python3
"""A slot's image written through the mount reaches the spool by splice
(fs/ops.cc op_write_buf, common/image_spool.h append_pipe): libfuse splices
each request into a pipe and the page data goes on to the page store without
passing through crfsd's memory. Whatever the pieces the writer uses (dd
bs=4097, odd sizes, 1 MiB), the restore is the same; a truncated image, or
one with a flipped byte in its page data, is refused with nothing left (no
task, no spool); a write through a slot fd handed to another user is refused
on that path too. Runs against a multi-threaded crfsd and a `-s` one, both
with CRFS_SPLICE_WRITES=1 (the path is opt-in: measured, not cheaper yet).

usage: spool_splice_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Task, Base, wait_for)
from users import unprivileged_user  # noqa: E402

USER = "s13ws1"
BIG_MIB = "48"
# Pieces for the python writer: around a page, around the splice threshold
# (64 KiB), a whole request, and one byte.
PIECES = [1, 4095, 80, 65536, 65537, 1 << 20, 3, 200000, 4097, 32]


def spools_of(pid):
    """crfsd's fds on a slot's memfds (spool or page store)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("/memfd:crfs-slot-", "/memfd:crfs-pages-")):
            out.append(target)
    return out


def write_in_pieces(src, dst):
    with open(src, "rb") as f:
        data = f.read()
    fd = os.open(dst, os.O_WRONLY)
    try:
        off, i = 0, 0
        while off < len(data):
            off += os.write(fd, data[off:off + PIECES[i % len(PIECES)]])
            i += 1
    finally:
        os.close(fd)  # the restore: its error, if any, raises here


class SpoolSplice(rt.Base):
    OPTIONS = ()

    def setUp(self):
        self.crfs = rt.Crfsd(self.OPTIONS)
        self.m = self.crfs.mnt
        self.tasks = []

    def workload(self):
        env = dict(os.environ, CRFS_WL_ENV="by splice")
        return self.task([os.path.join(rt.BUILD, "tests/cr/restore_workload"), "@DIR@", BIG_MIB],
                         env=env)

    def restore_with(self, t, img, slot, writer):
        os.mkdir(f"{self.m}/{slot}")
        if writer == "pieces":
            write_in_pieces(img, f"{self.m}/{slot}/image")
        else:
            r = rt.sh(writer.format(img=img, dst=f"{self.m}/{slot}/image"))
            self.assertEqual(r.returncode, 0, r.stderr + rt.read(f"{self.m}/{slot}/status"))
        t.pid = int(rt.read(f"{self.m}/{slot}/pid"))
        self.assertEqual(rt.read(f"{self.m}/{slot}/status"), f"restored {t.pid}\n")

    def assert_nothing_left(self, slot):
        status = rt.read(f"{self.m}/{slot}/status")
        self.assertTrue(status.startswith("error: "), status)
        self.assertEqual(self.crfs.children(), [])
        self.assertEqual(spools_of(self.crfs.proc.pid), [])

    def test_odd_pieces_and_whole_requests_restore_the_same(self):
        # Each restored task is checkpointed again and restored by the next
        # writer: the verdict at the end checks the memory all of them carried.
        t = self.workload()
        writers = ["dd if={img} of={dst} bs=4097 status=none", "pieces",
                   "dd if={img} of={dst} bs=1M iflag=fullblock status=none", "cp {img} {dst}"]
        for i, writer in enumerate(writers):
            img = t.checkpoint(f"snap{i}.img")
            t.kill9()
            self.restore_with(t, img, f"w{i}", writer)
        self.assertEqual(t.finish(), "PASS")

    def test_truncated_or_flipped_image_is_refused_with_nothing_left(self):
        t = self.workload()
        img = t.checkpoint()
        t.kill9()
        with open(img, "rb") as f:
            data = f.read()
        # Page data makes up most of the image: its middle is in the buffer's pages.
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x40
        cases = {"cut": data[:len(data) // 2 + 12345], "flip": bytes(flipped),
                 "end": data[:-1]}
        for name, bad in cases.items():
            with self.subTest(name):
                path = t.path(f"{name}.img")
                with open(path, "wb") as f:
                    f.write(bad)
                os.mkdir(f"{self.m}/{name}")
                r = rt.sh(f"cp {path} {self.m}/{name}/image")
                self.assertNotEqual(r.returncode, 0, "a bad image was restored")
                self.assert_nothing_left(name)
        # The good image still restores, into one of the refusing slots.
        r = rt.sh(f"cp {img} {self.m}/flip/image")
        self.assertEqual(r.returncode, 0, r.stderr + rt.read(f"{self.m}/flip/status"))
        t.pid = int(rt.read(f"{self.m}/flip/pid"))
        self.assertEqual(t.finish(), "PASS")

    def test_another_users_write_through_a_handed_fd_is_refused(self):
        pw = self.enterContext(unprivileged_user(USER, "-N", "-g", "nogroup"))
        t = self.workload()
        img = t.checkpoint()
        os.chmod(t.dir, 0o755)
        os.chmod(img, 0o644)
        t.kill9()
        os.mkdir(f"{self.m}/mine")
        # root opens the slot, the user writes through the fd (no reopen).
        r = rt.sh(f"exec 3>{self.m}/mine/image; setpriv --reuid={pw.pw_uid} "
                  f"--regid={pw.pw_gid} --clear-groups cat {img} >&3")
        self.assertNotEqual(r.returncode, 0, "another user wrote into root's slot")
        self.assertIn("denied", r.stderr)
        self.assertEqual(self.crfs.children(), [])
        # The user's own slot: a flipped image is refused, nothing left.
        flipped = bytearray(open(img, "rb").read())
        flipped[len(flipped) // 2] ^= 1
        bad = t.path("bad.img")
        with open(bad, "wb") as f:
            f.write(flipped)
        os.chmod(bad, 0o644)
        as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]
        r = subprocess.run([*as_user, "sh", "-c", f"mkdir {self.m}/u && cp {bad} {self.m}/u/image"],
                           capture_output=True, text=True, timeout=rt.TIMEOUT,
                           stdin=subprocess.DEVNULL)
        self.assertNotEqual(r.returncode, 0, "a flipped image was restored")
        self.assert_nothing_left("u")
        # root's slot takes the good image afterwards.
        r = rt.sh(f"cp {img} {self.m}/mine/image")
        self.assertEqual(r.returncode, 0, r.stderr + rt.read(f"{self.m}/mine/status"))
        t.pid = int(rt.read(f"{self.m}/mine/pid"))
        self.assertEqual(t.finish(), "PASS")


class SpoolSpliceSingleThreaded(SpoolSplice):
    OPTIONS = ("-s",)


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv[1])
    os.environ["CRFS_SPLICE_WRITES"] = "1"  # the daemons inherit it
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
