#!/usr/bin/env python3
"""Readers and writers that copy with sendfile(2) or splice(2), through the mount.

The kernel's splice read of a FUSE file goes through the page cache and stops
at the inode's size, 0 for every crfs file, even for a direct-I/O open
(fs/fuse/file.c fuse_splice_read -> mm/filemap.c filemap_splice_read): such a
reader used to get 0 bytes and no error, so `shutil.copyfile(image, x)` wrote
an empty image and exit 0. crfsd now opens every file it generates for a
reader non-seekable (docs/decisions.md "sendfile and splice readers"), so
each of these copies either is exact or fails loudly on its first call, which
python and busybox answer by copying with read(2).

usage: splice_readers_test.py BUILD_DIR  (any unittest args after)
"""
import errno
import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Task, Base, wait_for)

BUSYBOX = shutil.which("busybox")
MARK = "CR: a mark long enough to show that bytes arrive\n"


def read_all(path):
    """The bytes of `path` through read(2) alone (what coreutils cat gets)."""
    with open(path, "rb", buffering=0) as f:
        out = b""
        while chunk := f.read(1 << 20):
            out += chunk
        return out


class SpliceReaders(rt.Base):
    def setUp(self):
        super().setUp()
        self.t = self.ckpt_workload()
        self.dir = f"{self.m}/{self.t.pid}"
        # Stopped: the task cannot change between two reads of `reason`.
        os.kill(self.t.pid, signal.SIGSTOP)
        rt.wait_for(lambda: rt.state_of(self.t.pid) == "T", "the task to stop")

    def mark(self):
        """Gives the task a reason (its nocr mark): `reason` is then not empty."""
        with open(f"{self.dir}/nocr", "w") as f:
            f.write(MARK)
        want = read_all(f"{self.dir}/reason")
        self.assertIn(MARK.strip().encode(), want)
        return want

    def unmark(self):
        with open(f"{self.dir}/nocr", "w") as f:
            f.write("0\n")
        self.assertEqual(read_all(f"{self.dir}/reason"), b"")

    def verify(self, img):
        """The copy is a whole image: `crfs verify` checks every record and checksum."""
        self.assertGreater(os.path.getsize(img), 4096, img)
        r = subprocess.run([os.path.join(rt.BUILD, "tools/crfs"), "verify", img],
                           capture_output=True, text=True, timeout=rt.TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_shutil_copyfile_of_reason_and_image_is_exact(self):
        want = self.mark()
        shutil.copyfile(f"{self.dir}/reason", self.t.path("reason.txt"))
        self.assertEqual(read_all(self.t.path("reason.txt")), want)
        self.unmark()
        shutil.copy(f"{self.dir}/image", self.t.path("snap.img"))
        self.verify(self.t.path("snap.img"))

    def test_sendfile_fails_loudly_then_read_gets_every_byte(self):
        want = self.mark()
        # Closed before tearDown stops the daemon (a close after it fails).
        with open(self.t.path("out"), "wb") as o, open(f"{self.dir}/reason", "rb") as f:
            self.sendfile_fails_then_read(o.fileno(), f.fileno(), want)

    def sendfile_fails_then_read(self, out, fd, want):
        # With an offset (python's shutil, socket.sendfile): the file has no pread.
        with self.assertRaises(OSError) as e:
            os.sendfile(out, fd, 0, 1 << 20)
        self.assertEqual(e.exception.errno, errno.ESPIPE)
        # At the file's offset (busybox): the kernel's direct splice wants a seekable file.
        with self.assertRaises(OSError) as e:
            os.sendfile(out, fd, None, 1 << 20)
        self.assertEqual(e.exception.errno, errno.EINVAL)
        # splice(2) into a pipe at an offset: refused too.
        r, w = os.pipe()
        try:
            with self.assertRaises(OSError) as e:
                os.splice(fd, w, 1 << 16, offset_src=0)
            self.assertEqual(e.exception.errno, errno.EINVAL)
        finally:
            os.close(r)
            os.close(w)
        # Nothing was consumed: read(2) on the same handle gets it all.
        self.assertEqual(os.read(fd, 1 << 20), want)
        self.assertEqual(os.read(fd, 1 << 20), b"")

    def test_image_handle_refuses_sendfile_before_its_checkpoint(self):
        # The failed sendfile reads nothing, so the handle's checkpoint has
        # not run: the read loop after it makes the whole image.
        with open(f"{self.dir}/image", "rb", buffering=0) as f, \
                open(self.t.path("snap.img"), "wb") as out:
            with self.assertRaises(OSError) as e:
                os.sendfile(out.fileno(), f.fileno(), 0, 1 << 30)
            self.assertEqual(e.exception.errno, errno.ESPIPE)
            while chunk := f.read(1 << 20):
                out.write(chunk)
            with self.assertRaises(OSError) as e:
                os.lseek(f.fileno(), 0, os.SEEK_SET)
            self.assertEqual(e.exception.errno, errno.ESPIPE)
        self.verify(self.t.path("snap.img"))

    @unittest.skipUnless(BUSYBOX, "busybox is not installed (scripts/deps.sh)")
    def test_busybox_cat_and_cp_copy_every_byte(self):
        want = self.mark()
        r = rt.sh(f"{BUSYBOX} cat {self.dir}/reason > {self.t.path('cat.txt')}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(read_all(self.t.path("cat.txt")), want)
        r = rt.sh(f"{BUSYBOX} cp {self.dir}/reason {self.t.path('cp.txt')}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(read_all(self.t.path("cp.txt")), want)
        # Into a pipe busybox's sendfile is a splice at the file's offset,
        # which the kernel bounds by the inode's size (0) before any check
        # crfsd can make fail: that copy is empty (README, the known limit).
        # It must never be other bytes.
        r = subprocess.run(["sh", "-c", f"{BUSYBOX} cat {self.dir}/reason | cat"],
                           capture_output=True, timeout=rt.TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(r.stdout, (want, b""))
        self.unmark()
        r = rt.sh(f"{BUSYBOX} cp {self.dir}/image {self.t.path('bb.img')}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.verify(self.t.path("bb.img"))

    def test_cp_from_crfs_into_crfs_sends_the_bytes(self):
        # copy_file_range within crfs is bounded by the size too (0 bytes, no
        # error); coreutils cp then copies with read(2), so the slot gets the
        # reason's bytes, which are no image: the restore at close fails.
        self.mark()
        os.mkdir(f"{self.m}/junk")
        r = rt.sh(f"cp {self.dir}/reason {self.m}/junk/image")
        self.assertNotEqual(r.returncode, 0, "a reason restored as an image")
        self.assertNotEqual(rt.read(f"{self.m}/junk/status"), "empty\n")

    def test_restore_from_shutil_copyfile_into_a_slot(self):
        # The restore direction: sendfile INTO a slot's image is a splice
        # write, which FUSE turns into ordinary write requests.
        img = self.t.checkpoint()
        self.t.kill9()
        os.mkdir(f"{self.m}/spliced")
        shutil.copyfile(img, f"{self.m}/spliced/image")
        pid = int(rt.read(f"{self.m}/spliced/pid"))
        self.t.pid = pid
        self.assertEqual(rt.read(f"{self.m}/spliced/status"), f"restored {pid}\n")
        os.kill(pid, signal.SIGCONT)
        self.assertEqual(self.t.finish(), "PASS")

    def test_restore_from_os_sendfile_into_a_slot(self):
        img = self.t.checkpoint()
        self.t.kill9()
        os.mkdir(f"{self.m}/sent")
        size = os.path.getsize(img)
        with open(img, "rb") as src, open(f"{self.m}/sent/image", "wb") as dst:
            done = 0
            while done < size:
                n = os.sendfile(dst.fileno(), src.fileno(), None, size - done)
                self.assertGreater(n, 0)
                done += n
        pid = int(rt.read(f"{self.m}/sent/pid"))
        self.t.pid = pid
        os.kill(pid, signal.SIGCONT)
        self.assertEqual(self.t.finish(), "PASS")


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
