#!/usr/bin/env python3
"""Round trips and bad input for the restore core, without the FUSE mount:
`crfs checkpoint PID > img`, `kill -9`, `crfs restore-direct img [--pid PID]`, SIGTERM,
and the workload's own PASS/FAIL. Bad images must fail with the right errno
(the exit status of `crfs restore-direct`) and message, and create no process.

This process is a child subreaper: restored tasks (children of the short-lived
`crfs restore-direct`) are re-parented here and reaped here; every wait is bounded and
every task is killed in teardown.

usage: restore_test.py CRFS BUILD_DIR  (any unittest args after)
"""
import ctypes
import errno
import glob
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

CRFS = BUILD = None
TIMEOUT = 60  # only a guard against hangs, never a pass criterion
PR_SET_CHILD_SUBREAPER = 36


def wait_for(pred, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


def children():
    """Pids whose parent is this process (restored tasks land here)."""
    me, out = os.getpid(), set()
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == me:
                out.add(int(st.split("/")[2]))
        except (OSError, IndexError, ValueError):
            pass
    return out


def reap(pid, timeout=TIMEOUT):
    """Waits (bounded) for child pid; returns its wait status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q, st = os.waitpid(pid, os.WNOHANG)
        if q == pid:
            return st
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"task {pid} did not exit")


def pid_free(pid):
    return not os.path.exists(f"/proc/{pid}")


class Task:
    """A workload (or any program) to checkpoint: started with only fds 0-2."""

    def __init__(self, argv, ready=None, cwd=None, env=None):
        self.dir = tempfile.mkdtemp(prefix="crfs-rt-")
        self.proc = subprocess.Popen([a.replace("@DIR@", self.dir) for a in argv],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=True,
                                     cwd=cwd or self.dir, env=env)
        self.pid = self.proc.pid
        self.live = self.proc  # a Popen, or an int pid once restored
        if ready:
            wait_for(lambda: os.path.exists(self.path(ready)), "task ready")

    def path(self, name):
        return os.path.join(self.dir, name)

    def checkpoint(self, name="img"):
        img = self.path(name)
        with open(img, "wb") as f:
            r = subprocess.run([CRFS, "checkpoint", str(self.pid)], stdout=f,
                               stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, r.stderr
        return img

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        if isinstance(self.live, subprocess.Popen):
            self.live.wait(timeout=TIMEOUT)
        else:
            reap(self.live)
        self.live = None

    def restore(self, img, same_pid):
        if same_pid:
            wait_for(lambda: pid_free(self.pid), f"pid {self.pid} to be free")
        args = [CRFS, "restore-direct", img] + (["--pid", str(self.pid)] if same_pid else [])
        r = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
        assert r.returncode == 0, f"restore failed ({r.returncode}): {r.stderr}"
        pid = int(r.stdout)
        if same_pid:
            assert pid == self.pid, (pid, self.pid)
        self.pid = self.live = pid
        return pid

    def finish(self, result="result"):
        os.kill(self.pid, signal.SIGTERM)
        reap(self.live) if not isinstance(self.live, subprocess.Popen) else self.live.wait(TIMEOUT)
        self.live = None
        with open(self.path(result)) as f:
            return f.read().strip()

    def cleanup(self):
        if self.live is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                if isinstance(self.live, subprocess.Popen):
                    self.live.wait(TIMEOUT)
                else:
                    reap(self.live)
            except (ProcessLookupError, ChildProcessError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Base(unittest.TestCase):
    def tearDown(self):
        for t in getattr(self, "tasks", []):
            t.cleanup()
        for pid in children():  # nothing may outlive a test
            os.kill(pid, signal.SIGKILL)
            reap(pid)

    def task(self, *a, **kw):
        t = Task(*a, **kw)
        self.tasks = getattr(self, "tasks", []) + [t]
        return t

    def workload(self, name, *args):
        return self.task([os.path.join(BUILD, "tests/cr", name), "@DIR@", *args], ready="ready")

    def cycle(self, t, same_pid, times=1):
        for i in range(times):
            img = t.checkpoint(f"img{i}")
            t.kill9()
            t.restore(img, same_pid)


class RoundTrip(Base):
    """tests/workloads/ckpt_workload.c: memory of every kind, files, signals, timer, FPU."""

    def check_ckpt_workload(self, mode, same_pid, times=1):
        t = self.workload("ckpt_workload", mode, "2")
        self.cycle(t, same_pid, times)
        if mode == "sleep":
            wait_for(lambda: os.path.exists(t.path("woke")), "sleep to end")
        self.assertEqual(t.finish(), "PASS")

    def test_busy_fresh_pid(self):
        self.check_ckpt_workload("busy", False)

    def test_busy_same_pid(self):
        self.check_ckpt_workload("busy", True)

    def test_busy_twice(self):
        self.check_ckpt_workload("busy", False, times=2)

    def test_busy_twice_same_pid(self):
        self.check_ckpt_workload("busy", True, times=2)

    def test_sleep_restarts(self):
        self.check_ckpt_workload("sleep", False)

    def test_nothing_left_behind(self):
        t = self.workload("ckpt_workload", "busy")
        self.cycle(t, False)
        self.assertEqual(t.finish(), "PASS")
        self.assertEqual(children(), set())


class RestoreWorkload(Base):
    """tests/workloads/restore_workload.c: big buffer, patterns, cwd, argv/env,
    nice, rlimits, x87/AVX-512 registers, file offsets, O_APPEND, pending signal."""

    def run_it(self, same_pid, times=1, mib="256"):
        env = dict(os.environ, CRFS_WL_ENV="value with spaces=and equals")
        t = self.task([os.path.join(BUILD, "tests/cr/restore_workload"), "@DIR@", mib,
                       "alpha", "two words", ""], ready="ready", env=env)
        self.cycle(t, same_pid, times)
        self.assertEqual(t.finish(), "PASS")

    def test_fresh_pid(self):
        self.run_it(False)

    def test_same_pid(self):
        self.run_it(True)

    def test_twice(self):
        self.run_it(False, times=2, mib="16")


class RealPrograms(Base):
    def test_python_counter(self):
        d = tempfile.mkdtemp(prefix="crfs-py-")
        self.addCleanup(shutil.rmtree, d, True)
        counts = os.path.join(d, "counts")
        script = ("import time\nn = 0\nwhile True:\n    n += 1\n"
                  f"    with open({counts!r}, 'a') as f:\n        f.write(f'{{n}}\\n')\n"
                  "    time.sleep(0.2)\n")
        t = self.task(["/usr/bin/python3", "-c", script], cwd=d)
        def lines():
            if not os.path.exists(counts):
                return []
            with open(counts) as f:
                return f.read().split()
        wait_for(lambda: len(lines()) >= 3, "python to count")
        # Stopped first, so that it writes nothing between the checkpoint and
        # the kill; the image records the stop and the restored task is stopped.
        os.kill(t.pid, signal.SIGSTOP)
        wait_for(lambda: open(f"/proc/{t.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "T",
                 "python to stop")
        img = t.checkpoint()
        t.kill9()
        stopped_at = len(lines())
        t.restore(img, same_pid=False)
        os.kill(t.pid, signal.SIGCONT)
        wait_for(lambda: len(lines()) >= stopped_at + 3, "python to count on")
        got = [int(x) for x in lines()]
        self.assertEqual(got, list(range(1, len(got) + 1)))

    def test_python_private_map_of_deleted_file(self):
        d = tempfile.mkdtemp(prefix="crfs-pym-")
        self.addCleanup(shutil.rmtree, d, True)
        script = f"""
import mmap, os, signal, time
p = {os.path.join(d, 'mapped')!r}
with open(p, 'wb') as f:
    f.write(bytes(range(256)) * 64)
fd = os.open(p, os.O_RDONLY)
m = mmap.mmap(fd, 16384, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
os.close(fd)
os.unlink(p)
m[5000:5004] = b'ABCD'
done = False
def term(*a):
    global done
    done = True
signal.signal(signal.SIGTERM, term)
open({os.path.join(d, 'ready')!r}, 'w').close()
while not done:
    time.sleep(0.05)
exp = bytearray(bytes(range(256)) * 64)
exp[5000:5004] = b'ABCD'
with open({os.path.join(d, 'result')!r}, 'w') as f:
    f.write('PASS' if m[:] == bytes(exp) else 'FAIL: mapping content differs')
"""
        t = self.task(["/usr/bin/python3", "-c", script], cwd=d)
        shutil.rmtree(t.dir, True)
        t.dir = d
        wait_for(lambda: os.path.exists(t.path("ready")), "python ready")
        img = t.checkpoint()
        t.kill9()
        t.restore(img, same_pid=False)
        self.assertEqual(t.finish(), "PASS")

    def test_sleep_exits(self):
        t = self.task(["/bin/sleep", "2"])
        time.sleep(0.5)
        img = t.checkpoint()
        t.kill9()
        start = time.monotonic()
        pid = t.restore(img, same_pid=True)
        st = reap(pid, timeout=30)
        t.live = None
        self.assertTrue(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, st)
        # The relative timeout restarts in full (docs/restore.md): at most 2 s more.
        self.assertLess(time.monotonic() - start, 10)

    def test_cat_continues(self):
        d = tempfile.mkdtemp(prefix="crfs-cat-")
        self.addCleanup(shutil.rmtree, d, True)
        src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
        with open(src, "wb") as f:
            f.write(os.urandom(1 << 20) * 256)  # 256 MiB
        out = open(dst, "wb")
        p = subprocess.Popen(["/bin/cat", src], stdout=out, stdin=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, close_fds=True)
        out.close()
        t = Task.__new__(Task)
        t.dir, t.proc, t.pid, t.live = d, p, p.pid, p
        self.tasks = getattr(self, "tasks", []) + [t]
        wait_for(lambda: os.path.getsize(dst) > 0, "cat to start")
        os.kill(p.pid, signal.SIGSTOP)
        # The stop is asynchronous: until cat is in T it may still write.
        wait_for(lambda: open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "T",
                 "cat to stop")
        size = os.path.getsize(dst)
        self.assertLess(size, 256 << 20, "cat finished before it could be stopped")
        img = os.path.join(d, "img")
        with open(img, "wb") as f:
            subprocess.run([CRFS, "checkpoint", str(p.pid)], stdout=f, check=True,
                           timeout=TIMEOUT)
        t.kill9()
        pid = t.restore(img, same_pid=False)
        os.kill(pid, signal.SIGCONT)
        st = reap(pid)
        t.live = None
        self.assertTrue(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, st)
        self.assertEqual(os.path.getsize(dst), 256 << 20)
        self.assertEqual(subprocess.run(["cmp", src, dst]).returncode, 0)


class NonRootWriter(Base):
    """A task of uid 65534 restored for writer 65534 (crfs restore-direct --writer, as the
    daemon does for a non-root FUSE writer) keeps its credentials and no capability;
    a root image for that writer is EPERM."""

    def test_own_image_restores_with_own_credentials(self):
        t = self.task(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                       "--inh-caps=-all", os.path.join(BUILD, "tests/cr/ckpt_workload"), "@DIR@",
                       "busy"], ready=None)
        os.chown(t.dir, 65534, 65534)
        wait_for(lambda: os.path.exists(t.path("ready")), "task ready")
        with open(t.path("img"), "wb") as f:
            c = subprocess.run([CRFS, "checkpoint", str(t.pid)], stdout=f,
                               stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
        self.assertEqual(c.returncode, 0, c.stderr)
        img = t.path("img")
        t.kill9()
        r = subprocess.run([CRFS, "restore-direct", img, "--writer", "65534:65534"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        t.pid = t.live = int(r.stdout)
        with open(f"/proc/{t.pid}/status") as f:
            status = f.read()
        self.assertIn("Uid:\t65534\t65534\t65534\t65534", status)
        self.assertIn("Gid:\t65534\t65534\t65534\t65534", status)
        self.assertIn("CapEff:\t0000000000000000", status)
        self.assertIn("CapPrm:\t0000000000000000", status)
        self.assertEqual(t.finish(), "PASS")

    def test_root_image_rewritten_as_nobody(self):
        """The same through an image of a root task with its credentials rewritten to
        65534 (and the checksum redone): the checkpoint side does not need to handle
        non-root tasks for this path to be tested."""
        t = self.workload("ckpt_workload", "busy")
        img = t.checkpoint()
        t.kill9()
        with open(img, "rb") as f:
            b = bytearray(f.read())
        off = struct.unpack_from("<I", b, 12)[0]
        while True:
            typ, _, length = struct.unpack_from("<IIQ", b, off)
            if typ == 2:  # creds: uid[4] gid[4] cap_inh prm eff bnd amb no_new_privs ngroups
                p = off + 16
                struct.pack_into("<8I", b, p, *([65534] * 8))
                struct.pack_into("<QQQ", b, p + 32, 0, 0, 0)
                struct.pack_into("<Q", b, p + 64, 0)
                ngroups = struct.unpack_from("<I", b, p + 76)[0]
                if ngroups:
                    self.skipTest("root task has supplementary groups")
            if typ == 0xFFFFFFFF:
                xxh = ctypes.CDLL("libxxhash.so.0")
                xxh.XXH3_64bits.restype = ctypes.c_uint64
                xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
                struct.pack_into("<Q", b, off + 16 + 8, xxh.XXH3_64bits(bytes(b[:off]), off))
                break
            off += 16 + length
        with open(img, "wb") as f:
            f.write(b)
        for root, dirs, files in os.walk(t.dir):
            for n in dirs + files:
                os.chown(os.path.join(root, n), 65534, 65534)
        os.chown(t.dir, 65534, 65534)
        r = subprocess.run([CRFS, "restore-direct", img, "--writer", "65534:65534"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        t.pid = t.live = int(r.stdout)
        with open(f"/proc/{t.pid}/status") as f:
            status = f.read()
        self.assertIn("Uid:\t65534\t65534\t65534\t65534", status)
        self.assertIn("Gid:\t65534\t65534\t65534\t65534", status)
        self.assertIn("CapEff:\t0000000000000000", status)
        self.assertIn("CapPrm:\t0000000000000000", status)
        self.assertEqual(t.finish(), "PASS")

    def test_root_image_is_refused(self):
        t = self.workload("ckpt_workload", "busy")
        img = t.checkpoint()
        t.kill9()
        before = children()
        r = subprocess.run([CRFS, "restore-direct", img, "--writer", "1000:1000"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, errno.EPERM, r.stderr)
        self.assertIn("image uid 0, writer uid 1000", r.stderr)
        self.assertEqual(children(), before)


class FaultInjection(Base):
    """CRFS_RESTORE_FAULT=<step>: every step of stage 1 and of the blob, made to
    fail, gives ECANCELED naming the step, kills and reaps the half-built task,
    and frees the pid for the next attempt (include/crfs/restorer_args.h steps)."""
    STEPS = {1: "unmapping", 2: "moving vdso", 4: "mapping", 5: "reading pages",
             6: "mprotect", 8: "PR_SET_MM_MAP", 9: "sigaction", 10: "re-queueing",
             12: "credentials", 11: "setitimer", 14: "before rt_sigreturn",
             100: "session", 102: "closing", 103: "opening", 107: "rlimit",
             260: "(signalling a thread)", 275: "making the pidfd of a thread"}

    def test_every_step(self):
        t = self.workload("ckpt_workload", "busy")
        img = t.checkpoint()
        t.kill9()
        for step, text in self.STEPS.items():
            with self.subTest(step=step):
                wait_for(lambda: pid_free(t.pid), "pid to be free")
                r = subprocess.run([CRFS, "restore-direct", img, "--pid", str(t.pid)],
                                   capture_output=True, text=True, timeout=TIMEOUT,
                                   env=dict(os.environ, CRFS_RESTORE_FAULT=str(step)))
                self.assertEqual(r.returncode, errno.ECANCELED, r.stderr)
                self.assertIn(text, r.stderr)
                self.assertIn("Operation canceled", r.stderr)
                self.assertEqual(children(), set())
                self.assertTrue(pid_free(t.pid))
        # And then it restores into that pid after all.
        t.restore(img, same_pid=True)
        self.assertEqual(t.finish(), "PASS")


def corrupt(data, offset, xor=0x55):
    b = bytearray(data)
    b[offset] ^= xor
    return bytes(b)


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = Task([os.path.join(BUILD, "tests/cr/ckpt_workload"), "@DIR@", "busy"],
                     ready="ready")
        img = cls.t.checkpoint()
        with open(img, "rb") as f:
            cls.image = f.read()
        cls.t.kill9()

    @classmethod
    def tearDownClass(cls):
        cls.t.cleanup()

    def restore_bytes(self, data, user=None, may_restore=False):
        """Runs `crfs restore-direct` on data; a failure must leave no task behind.
        With may_restore, an image that restores (rc 0) has its task killed and reaped."""
        path = os.path.join(self.t.dir, "bad.img")
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
        os.chmod(self.t.dir, 0o755)
        before = children()
        cmd = [CRFS, "restore-direct", path]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        if r.returncode == 0 and may_restore:
            pid = int(r.stdout)
            self.assertIn(pid, children())
            os.kill(pid, signal.SIGKILL)
            reap(pid)
        self.assertEqual(children(), before, "a restore left a task behind")
        return r.returncode, r.stderr

    def expect(self, data, code, text, user=None):
        rc, err = self.restore_bytes(data, user)
        self.assertEqual(rc, code, err)
        self.assertIn(text, err)
        self.assertTrue(err.startswith("crfs restore-direct: "), err)

    def records(self):
        """(offset, type, length) of every record frame."""
        off, out = struct.unpack_from("<I", self.image, 12)[0], []
        while off < len(self.image):
            typ, _, length = struct.unpack_from("<IIQ", self.image, off)
            out.append((off, typ, length))
            off += 16 + length
        return out

    def test_truncated(self):
        self.expect(self.image[: len(self.image) // 2], errno.EBADMSG, "truncated image")

    def test_empty(self):
        self.expect(b"", errno.EBADMSG, "bad magic")

    def test_header_magic(self):
        self.expect(corrupt(self.image, 2), errno.EBADMSG, "bad magic")

    def test_header_version(self):
        self.expect(corrupt(self.image, 8, 0x40), errno.ENOTSUP, "unsupported format version")

    def test_other_architecture(self):
        b = bytearray(self.image)
        struct.pack_into("<I", b, 16, 183)  # EM_AARCH64
        self.expect(bytes(b), errno.ENOTSUP, "unsupported architecture")

    def test_record_length(self):
        off = self.records()[1][0]
        self.expect(corrupt(self.image, off + 8 + 5, 0x01), errno.EBADMSG, "record length")

    def test_page_data(self):
        off = next(o for o, t, _ in self.records() if t == 6)
        self.expect(corrupt(self.image, off + 16 + 16 + 100), errno.EBADMSG, "checksum mismatch")

    def test_trailer(self):
        self.expect(corrupt(self.image, len(self.image) - 12), errno.EBADMSG, "checksum mismatch")

    def test_random_bytes(self):
        rnd = random.Random(4)
        self.expect(bytes(rnd.getrandbits(8) for _ in range(100000)), errno.EBADMSG, "bad magic")

    def test_non_root_claiming_root(self):
        self.expect(self.image, errno.EPERM, "only root may restore them", user=65534)

    def test_missing_file(self):
        t = Task([os.path.join(BUILD, "tests/cr/ckpt_workload"), "@DIR@", "busy"], ready="ready")
        try:
            img = t.checkpoint()
            t.kill9()
            os.rename(t.path("out"), t.path("out.moved"))
            r = subprocess.run([CRFS, "restore-direct", img], capture_output=True, text=True,
                               timeout=TIMEOUT)
            self.assertEqual(r.returncode, errno.ENOENT, r.stderr)
            self.assertIn(t.path("out"), r.stderr)
            self.assertIn("No such file or directory", r.stderr)
            os.rename(t.path("out.moved"), t.path("out"))
            # A file it only reads (docs/files.md: "out", which it appends to, may grow).
            with open(t.path("data"), "a") as f:
                f.write("x")
            r = subprocess.run([CRFS, "restore-direct", img], capture_output=True, text=True,
                               timeout=TIMEOUT)
            self.assertEqual(r.returncode, errno.ESTALE, r.stderr)
            self.assertIn("changed since the checkpoint", r.stderr)
        finally:
            t.cleanup()

    def test_pid_taken(self):
        path = os.path.join(self.t.dir, "img")
        r = subprocess.run([CRFS, "restore-direct", path, "--pid", str(os.getpid())],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, errno.EBUSY, r.stderr)
        self.assertIn(f"pid {os.getpid()} is in use", r.stderr)

    def test_every_byte_class_and_corpus(self):
        """Single-byte flips all over the image, and the fuzzer's corpus: never a crash,
        never a task, always an error message."""
        rnd = random.Random(7)
        cases = [corrupt(self.image, rnd.randrange(len(self.image)), 1 << rnd.randrange(8))
                 for _ in range(40)]
        for f in sorted(glob.glob(os.path.join(BUILD, "fuzz", "corpus", "*")))[:50]:
            try:  # the fuzz test may be rebuilding its corpus right now
                with open(f, "rb") as fh:
                    cases.append(fh.read())
            except OSError:
                pass
        # The corpus holds intact images too (fuzz.sh's real.img, a `sleep 600`, sorts
        # among the first 50 while the fuzz test rebuilds the corpus): those restore.
        for data in cases:
            rc, err = self.restore_bytes(data, may_restore=True)
            if rc == 0:
                continue
            self.assertIn(rc, (errno.EBADMSG, errno.ENOTSUP, errno.EINVAL, errno.EIO), err)
            self.assertTrue(err.startswith("crfs restore-direct: "), err)


if __name__ == "__main__":
    CRFS, BUILD = sys.argv[1], sys.argv[2]
    if os.geteuid() != 0:
        print("SKIP: restore tests need root")
        sys.exit(77)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
