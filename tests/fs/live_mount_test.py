#!/usr/bin/env python3
"""The live snapshot through the mount (checkpoint/live_snapshot.h), on a task
that rewrites all of its memory all the time (tests/workloads/gen_writer.c):

  - the image read while the task writes on, restored, is one cut of its
    memory: the restored task finds every page as it left it;
  - crfsd or its checkpoint worker killed in the middle of a read: the task
    runs on, untraced, its memory intact (the worker holds the only copy of
    the task's userfaultfd; its death lets the task go).

Runs as root (the task may then have a userfaultfd that handles kernel
faults). usage: live_mount_test.py BUILD_DIR
"""
import errno
import json
import os
import shutil
import signal
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Task, Base, wait_for)

MIB = 64

# A task of N one-page areas side by side, read-write and read-only in turn
# (the kernel cannot merge them); "ready" holds their address.
AREAS = r"""
import ctypes, os, signal, sys
n = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
base = libc.mmap(None, n * 4096, 3, 0x22, -1, 0)
for i in range(n):
    ctypes.memset(base + i * 4096, i % 251 + 1, 64)
    if i % 2 and libc.mprotect(base + i * 4096, 4096, 1) != 0:
        sys.exit(3)
with open("ready.tmp", "w") as f:
    f.write("%x" % base)
os.rename("ready.tmp", "ready")
while True:
    signal.pause()
"""

# A memfd of 16 MiB mapped privately, every page rewritten in the mapping
# (its own copies); on SIGTERM "result" tells how many pages lost them.
MEMFD_PRIVATE = r"""
import mmap, os, signal
size = 16 << 20
fd = os.memfd_create("m")
os.ftruncate(fd, size)
os.pwrite(fd, b"F" * size, 0)
m = mmap.mmap(fd, size, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
for off in range(0, size, 4096):
    m[off:off + 8] = b"PRIVATE!"
def check(*_):
    bad = sum(1 for off in range(0, size, 4096) if m[off:off + 8] != b"PRIVATE!")
    with open("result.tmp", "w") as f:
        f.write("pages changed %d" % bad)
    os.rename("result.tmp", "result")
    os._exit(0)
signal.signal(signal.SIGTERM, check)
with open("fd", "w") as f:
    f.write(str(fd))
open("ready", "w").close()
while True:
    signal.pause()
"""

# 64 MiB of private anonymous memory, page i holding i + 1; on SIGUSR1 a guard
# region (MADV_GUARD_INSTALL, Linux 6.13) on every 16th page of the second
# half, then "guarded" holds how many madvise calls failed.
GUARDED = r"""
import ctypes, mmap, os, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
n = 16384
m = mmap.mmap(-1, n * 4096, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
for i in range(n):
    m[i * 4096:i * 4096 + 8] = (i + 1).to_bytes(8, "little")
def guard(*_):
    bad = sum(1 for i in range(n // 2, n, 16) if libc.madvise(base + i * 4096, 4096, 102) != 0)
    with open("guarded.tmp", "w") as f:
        f.write("%d" % bad)
    os.rename("guarded.tmp", "guarded")
signal.signal(signal.SIGUSR1, guard)
open("ready", "w").close()
while True:
    signal.pause()
"""

def peek(pid, addr, words=3):
    """Words at addr of pid's memory, or None if it cannot be read now."""
    try:
        with open(f"/proc/{pid}/mem", "rb") as f:
            f.seek(addr)
            data = f.read(8 * words)
    except OSError:
        return None
    return struct.unpack(f"<{words}Q", data) if len(data) == 8 * words else None


def tracer(pid):
    for line in rt.read(f"/proc/{pid}/status").splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return None


class Live(rt.Base):
    def writer(self, *args, user=()):
        argv = [os.path.join(rt.BUILD, "tests/workloads/gen_writer"), "@DIR@", str(MIB), *args]
        if user:  # its directory is made (0700) as the task starts: open it first
            argv = ["sh", "-c", 'chmod 777 "$1" && shift && exec "$@"', "sh", "@DIR@", *user, *argv]
        t = self.task(argv)
        t.addr = int(rt.read(t.path("ready")), 16)
        return t

    def gen(self, t, pid=None):
        m = peek(pid or t.pid, t.addr)
        return m[0] if m else -1

    def runs_on_intact(self, t, pid=None):
        """Two more generations written, every page found as left, not traced."""
        pid = pid or t.pid
        g0 = self.gen(t, pid)
        rt.wait_for(lambda: self.gen(t, pid) >= g0 + 2, f"task {pid} to write on")
        self.assertEqual(peek(pid, t.addr)[2], 0, "the task found its memory changed")
        self.assertEqual(tracer(pid), 0)

    def open_streaming(self, t):
        """An image handle whose first bytes were read: the task is thawed and
        write-protected, the stream stalled on the reader."""
        f = open(f"{self.m}/{t.pid}/image", "rb", buffering=0)
        head = f.read(1 << 16)
        self.assertEqual(head[:7], b"CRFSIMG")
        return f, head

    def read_rest(self, f, head, img):
        """The rest of the stream of `f`, after `head`, into `img`; its path."""
        with open(img, "wb") as out:
            out.write(head)
            while chunk := f.read(1 << 20):
                out.write(chunk)
        f.close()
        return img

    def worker(self):
        for pid in self.crfs.children():  # not the spare (rt.idle_spare)
            if rt.read(f"/proc/{pid}/comm").strip() == "crfs-ckpt":
                return pid
        return None

    def image_while_writing(self, t, user=()):
        """The image of t read while t rewrites every page twice; its path."""
        rt.wait_for(lambda: self.gen(t) >= 2, "the first generations")
        f, head = self.open_streaming(t) if not user else (None, b"")
        if user:  # the reader is the task's owner: a pipe through `cat` as that user
            p = rt.subprocess.Popen([*user, "cat", f"{self.m}/{t.pid}/image"],
                                    stdout=rt.subprocess.PIPE, stdin=rt.subprocess.DEVNULL)
            f = p.stdout
            head = f.read(1 << 16)
            self.assertEqual(head[:7], b"CRFSIMG")
        # Every page not yet sent is rewritten twice before the rest is read.
        g0 = self.gen(t)
        rt.wait_for(lambda: self.gen(t) >= g0 + 2, "the task to write during the read")
        img = self.read_rest(f, head, t.path("snap.img"))
        if user:
            self.assertEqual(p.wait(rt.TIMEOUT), 0)
        r = rt.sh(f"{rt.BUILD}/tools/crfs verify {img}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(peek(t.pid, t.addr)[2], 0, "the task found its memory changed")
        return img

    def copied_while_frozen(self, img):
        r = rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["stats"]["pages_copied"]

    def test_image_read_while_the_task_writes_restores_one_cut(self):
        t = self.writer()
        img = self.image_while_writing(t)
        self.assertLess(self.copied_while_frozen(img), MIB * 256 // 2, "not a live snapshot")
        t.kill9()
        pid = t.restore(img, "cut")
        self.runs_on_intact(t, pid)

    def test_a_spare_worker_takes_the_checkpoint_and_the_image_restores_one_cut(self):
        # CRFS_WORKER_SPARE=1: crfsd keeps a worker spawned ahead
        # (checkpoint/worker.h); the live snapshot is taken by it.
        self.crfs.stop()
        self.crfs = rt.Crfsd(env=dict(os.environ, CRFS_WORKER_SPARE="1"))
        self.m = self.crfs.mnt
        daemon = self.crfs.proc.pid

        def spares():
            kids = []
            for t in os.listdir(f"/proc/{daemon}/task"):
                try:
                    with open(f"/proc/{daemon}/task/{t}/children") as f:
                        kids += [int(p) for p in f.read().split()]
                except FileNotFoundError:  # a thread of the daemon that ended meanwhile
                    pass
            return [p for p in kids if rt.idle_spare(daemon, p)]

        def ready():  # a spare that said so waits in recvmsg(2) (47 on x86-64)
            out = []
            for p in spares():
                try:
                    if rt.read(f"/proc/{p}/syscall").split()[0] == "47":
                        out.append(p)
                except (FileNotFoundError, ProcessLookupError):  # ended meanwhile
                    pass
            return out

        rt.wait_for(ready, "crfsd's spare worker to be ready")
        first = ready()[0]
        t = self.writer()
        img = self.image_while_writing(t)
        rt.wait_for(lambda: not rt.alive(first), "the spare that took the image to be reaped")
        rt.wait_for(ready, "the next spare, once that worker was reaped")
        t.kill9()
        pid = t.restore(img, "spare")
        self.runs_on_intact(t, pid)

    def test_memory_protected_ahead_of_the_freeze_restores_one_cut(self):
        # ProtectAhead (checkpoint/live_snapshot.h) for any size here: the
        # writer rewrites every page while its memory is protected before the
        # freeze, so every page is protected again while frozen.
        self.crfs.stop()
        self.crfs = rt.Crfsd(env=dict(os.environ, CRFS_LIVE_AHEAD_MIN_KIB="0",
                                      CRFS_CHECKPOINT_TRACE="1"))
        self.m = self.crfs.mnt
        t = self.writer()
        img = self.image_while_writing(t)
        self.crfs.log.flush()
        self.assertIn("memory protected ahead", rt.read(self.crfs.log.name))
        self.assertLess(self.copied_while_frozen(img), MIB * 256 // 2, "not a live snapshot")
        t.kill9()
        pid = t.restore(img, "cut")
        self.runs_on_intact(t, pid)

    def test_kernel_writes_into_protected_pages_wait_for_the_copy(self):
        # read(2) into a write-protected page: a kernel-mode fault, which the
        # task's userfaultfd (made with its CAP_SYS_PTRACE) reports to the
        # worker instead of failing the read with EFAULT.
        t = self.writer("read")
        img = self.image_while_writing(t)
        self.assertLess(self.copied_while_frozen(img), MIB * 256 // 2, "not a live snapshot")
        t.kill9()
        pid = t.restore(img, "kcut")
        self.runs_on_intact(t, pid)

    def test_unprivileged_task_is_copied_while_frozen_and_never_sees_efault(self):
        # A task without CAP_SYS_PTRACE only gets a user-mode userfaultfd,
        # where read(2) into a protected page fails with EFAULT: its memory is
        # copied while frozen instead (the stats say how much).
        t = self.writer("read", user=rt.NOBODY)
        img = self.image_while_writing(t, user=rt.NOBODY)
        self.assertGreaterEqual(self.copied_while_frozen(img), MIB * 256,
                                "memory was not copied while frozen")
        self.runs_on_intact(t)

    def test_reason_and_next_image_wait_for_the_release_after_the_last_byte(self):
        # The worker releases the task's userfaultfd after the reader's last
        # byte (perf: the kernel walks every area then). Until it did, the
        # areas are still registered: the task's `reason` and its next image
        # wait for the release and never report it as the task's
        # ("userfaultfd (write-protect)"). CRFS_TEST_RELEASE_HOLD
        # (fs/ckpt_worker.cc) holds the release until the test lets it go.
        hold = self.daemon_holding_releases()
        t = self.task(["python3", "-c", AREAS, "2000"])
        imgs = self.next_reads_wait_for_the_release(hold, t.pid, t.pid, t)
        for img in imgs:
            r = rt.sh(f"{rt.BUILD}/tools/crfs verify {img}")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertLess(self.copied_while_frozen(img), 1000, "not a live snapshot")

    def test_parents_reason_and_image_wait_for_a_childs_release(self):
        # The same for the parent's tree: its detection looks at the child,
        # whose areas stay registered until its release (cp of the child's
        # image returned before it).
        hold = self.daemon_holding_releases()
        parent = ("import subprocess, sys\n"
                  f"subprocess.Popen([sys.executable, '-c', {AREAS!r}, '200']).wait()\n")
        t = self.task(["python3", "-c", parent])
        child = int(rt.read(f"/proc/{t.pid}/task/{t.pid}/children").split()[0])
        for img in self.next_reads_wait_for_the_release(hold, child, t.pid, t):
            r = rt.sh(f"{rt.BUILD}/tools/crfs verify {img}")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_reason_while_the_stream_runs_is_the_tasks_own(self):
        # While a live snapshot streams, the task runs with its memory
        # registered to crfs's userfaultfd (write-protect): crfs's, not the
        # task's reason, for the task and for its parent's tree (before: every
        # private area "is userfaultfd (write-protect) not supported yet").
        parent = ("import subprocess, sys\n"
                  f"subprocess.Popen([sys.executable, '-c', {AREAS!r}, '200']).wait()\n")
        t = self.task(["python3", "-c", parent])
        child = int(rt.read(f"/proc/{t.pid}/task/{t.pid}/children").split()[0])
        f = open(f"{self.m}/{child}/image", "rb", buffering=0)
        head = f.read(1 << 16)
        self.assertEqual(head[:7], b"CRFSIMG")
        uw = lambda: [ln for ln in rt.read(f"/proc/{child}/smaps").splitlines()
                      if ln.startswith("VmFlags:") and " uw" in ln]  # noqa: E731
        self.assertTrue(uw(), "the stream write-protects nothing")
        for pid in (child, t.pid):
            r = rt.sh(f"cat {self.m}/{pid}/reason")
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""), pid)
        img = self.read_rest(f, head, t.path("c.img"))
        r = rt.sh(f"{rt.BUILD}/tools/crfs verify {img}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_reason_a_user_reads_while_the_stream_runs_is_the_tasks_own(self):
        # With vm.unprivileged_userfaultfd = 1 a user's task is write-protected
        # too, and the user's `reason` comes from a worker acting as them,
        # which crfsd tells the tasks a checkpoint holds (before: it listed
        # every private area "is userfaultfd (write-protect) not supported
        # yet", for the task and its parent's tree). The setting is the
        # machine's: put back at the end; this file's tests run one at a time.
        sysctl = "/proc/sys/vm/unprivileged_userfaultfd"
        old = rt.read(sysctl).strip()

        def put(value):
            with open(sysctl, "w") as f:
                f.write(value)
        put("1")
        self.addCleanup(put, old)
        parent = ("import subprocess, sys\n"
                  f"subprocess.Popen([sys.executable, '-c', {AREAS!r}, '200']).wait()\n")
        t = self.task(["sh", "-c", 'chmod 777 "$1" && shift && exec "$@"', "sh", "@DIR@",
                       *rt.NOBODY, "/usr/bin/python3", "-c", parent])
        child = int(rt.read(f"/proc/{t.pid}/task/{t.pid}/children").split()[0])
        cat = rt.subprocess.Popen([*rt.NOBODY, "cat", f"{self.m}/{child}/image"],
                                  stdout=rt.subprocess.PIPE, stdin=rt.subprocess.DEVNULL)
        self.addCleanup(cat.kill)
        head = cat.stdout.read(1 << 16)
        self.assertEqual(head[:7], b"CRFSIMG")
        uw = [ln for ln in rt.read(f"/proc/{child}/smaps").splitlines()
              if ln.startswith("VmFlags:") and " uw" in ln]
        self.assertTrue(uw, "the stream write-protects nothing")
        for pid in (child, t.pid):
            r = rt.subprocess.run([*rt.NOBODY, "cat", f"{self.m}/{pid}/reason"],
                                  capture_output=True, text=True, timeout=rt.TIMEOUT)
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""), pid)
        img = self.read_rest(cat.stdout, head, t.path("c.img"))
        self.assertEqual(cat.wait(rt.TIMEOUT), 0)
        r = rt.sh(f"{rt.BUILD}/tools/crfs verify {img}")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_another_tasks_reason_does_not_wait_for_a_release(self):
        # Only the task's own release and its descendants' are waited for: a
        # release held elsewhere (a worker its user stopped mid-release) does
        # not stall every other task's reason and image for the 10 s bound
        # (before: they all waited for every release in the daemon).
        hold = self.daemon_holding_releases()
        a = self.task(["python3", "-c", AREAS, "200"])
        b = self.task(["python3", "-c", AREAS, "200"])
        try:
            self.assertEqual(rt.sh(f"cp {self.m}/{a.pid}/image {a.path('a.img')}").returncode, 0)
            rt.wait_for(lambda: os.path.exists(hold + ".held"), "the worker to hold its release")
            self.assertEqual(rt.sh(f"cat {self.m}/{b.pid}/reason").stdout, "")
            b.checkpoint()
            self.assertFalse(os.path.exists(hold), "the release was let go meanwhile")
        finally:
            open(hold, "w").close()
        self.crfs.log.flush()
        self.assertNotIn("still pending", rt.read(self.crfs.log.name))

    def daemon_holding_releases(self):
        """A daemon whose workers hold the release until the path returned exists."""
        self.crfs.stop()
        holddir = tempfile.mkdtemp(prefix="crfs-hold-")
        self.addCleanup(shutil.rmtree, holddir, ignore_errors=True)
        hold = os.path.join(holddir, "release")
        self.crfs = rt.Crfsd(env=dict(os.environ, CRFS_TEST_RELEASE_HOLD=hold))
        self.m = self.crfs.mnt
        return hold

    def next_reads_wait_for_the_release(self, hold, first, then, t):
        """Reads `first`'s image (its release held), then `then`'s reason and
        image, which wait for the release and succeed; the two images."""
        imgs = [t.path("a.img"), t.path("b.img")]
        try:
            self.assertEqual(rt.sh(f"cp {self.m}/{first}/image {imgs[0]}").returncode, 0)
            rt.wait_for(lambda: os.path.exists(hold + ".held"), "the worker to hold its release")
            os.unlink(hold + ".held")  # the next image's worker makes it again
            reason = rt.subprocess.Popen(["cat", f"{self.m}/{then}/reason"],
                                         stdout=rt.subprocess.PIPE, stderr=rt.subprocess.PIPE,
                                         text=True)
            again = rt.subprocess.Popen(["cp", f"{self.m}/{then}/image", imgs[1]],
                                        stderr=rt.subprocess.PIPE, text=True)
            # Both wait while the release is held (nothing to wait for here
            # but a broken daemon, which answers at once: give it a second).
            with self.assertRaises(rt.subprocess.TimeoutExpired):
                reason.wait(1)
        finally:
            open(hold, "w").close()
        self.assertEqual(reason.communicate(timeout=rt.TIMEOUT), ("", ""))
        self.assertEqual(again.wait(rt.TIMEOUT), 0, again.stderr.read())
        return imgs

    def test_memfd_truncated_during_the_stream_keeps_the_private_copies(self):
        # A private mapping of a memfd: its rewritten pages are the task's own
        # copies. The memfd truncated and grown again while the image is read
        # drops them with no userfaultfd event: they are copied while frozen,
        # not streamed (before: every page came back as the file's content).
        t = self.task(["python3", "-c", MEMFD_PRIVATE])
        f, head = self.open_streaming(t)
        fd = os.open(f"/proc/{t.pid}/fd/{rt.read(t.path('fd'))}", os.O_RDWR)
        os.ftruncate(fd, 0)
        os.ftruncate(fd, 16 << 20)
        os.close(fd)
        img = self.read_rest(f, head, t.path("snap.img"))
        t.kill9()
        t.restore(img, "memfd")
        self.assertEqual(t.finish(), "pages changed 0")

    def test_guard_put_on_memory_not_yet_sent_fails_the_read(self):
        # MADV_GUARD_INSTALL zaps the pages of its range with no userfaultfd
        # event: unsent pages of a whole area then looked "not in the page
        # tables at the freeze" and went into the image as zeros (before:
        # the read succeeded, 512 pages came back wrong). Now the read fails
        # (EBUSY: a read's EAGAIN, fs/ops.cc) and the task runs on.
        t = self.task(["python3", "-c", GUARDED])
        f, head = self.open_streaming(t)
        os.kill(t.pid, signal.SIGUSR1)
        rt.wait_for(lambda: os.path.exists(t.path("guarded")), "the task's guards")
        if rt.read(t.path("guarded")) != "0":
            self.skipTest("no MADV_GUARD_INSTALL on this kernel")
        with self.assertRaises(OSError) as e:
            while os.read(f.fileno(), 1 << 20):
                pass
        self.assertEqual(e.exception.errno, errno.EBUSY)
        f.close()
        self.crfs.log.flush()
        self.assertIn("away before it was in the image, with no userfaultfd event",
                      rt.read(self.crfs.log.name))
        self.assertIn(rt.read(f"/proc/{t.pid}/stat").rsplit(")", 1)[1].split()[0], "RS")

    def test_daemon_killed_mid_read_lets_the_task_run_on(self):
        t = self.writer()
        rt.wait_for(lambda: self.gen(t) >= 2, "the first generations")
        f, _ = self.open_streaming(t)
        self.crfs.proc.send_signal(signal.SIGKILL)
        self.crfs.proc.wait(rt.TIMEOUT)
        # The dead daemon's mount answers ENOTCONN (os.path.ismount says no): detach it here.
        self.crfs.children = lambda: []
        rt.subprocess.run(["umount", "-l", self.m], check=True)
        self.runs_on_intact(t)
        try:
            f.close()
        except OSError:  # the mount is gone
            pass

    def test_worker_killed_mid_read_lets_the_task_run_on(self):
        t = self.writer()
        rt.wait_for(lambda: self.gen(t) >= 2, "the first generations")
        f, _ = self.open_streaming(t)
        w = self.worker()
        self.assertIsNotNone(w, "no crfs-ckpt streaming")
        os.kill(w, signal.SIGKILL)
        with self.assertRaises(OSError):
            while f.read(1 << 20):
                pass
        f.close()
        self.runs_on_intact(t)
        # The daemon serves on: a new image of the task.
        r = rt.sh(f"cat {self.m}/{t.pid}/image > {t.path('again.img')} && "
                  f"{rt.BUILD}/tools/crfs verify {t.path('again.img')}")
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv.pop(1))
    if os.geteuid() != 0:
        print("needs root: skipped")
        sys.exit(0)
    unittest.main()
