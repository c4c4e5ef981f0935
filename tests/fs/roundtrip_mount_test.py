#!/usr/bin/env python3
"""Round trips through the mounted tree, as a user runs them:

    cp /crfs/PID/image snap.img; kill -9 PID
    mkdir /crfs/NAME && cp snap.img /crfs/NAME/image; cat /crfs/NAME/pid

and the restore slots' semantics (names, ownership, sequential writes, errors
at close and in `status`). Starts its own crfsd on a temporary mount point and
always unmounts it. Restored tasks are children of crfsd, which reaps them.

usage: roundtrip_mount_test.py BUILD_DIR  (any unittest args after)
"""
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

BUILD = None
TIMEOUT = 60  # only a guard against hangs, never a pass criterion


def drop_terminal():
    """Gives up the controlling terminal of a suite run from an interactive
    shell (TIOCNOTTY: this process only), so the tasks it starts have none: a
    task with a terminal and no fd on it is a shell job (docs/trees.md)."""
    if os.getsid(0) == os.getpid():
        return  # a session leader's TIOCNOTTY would hang up its session
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return  # none
    try:
        import fcntl
        import termios
        fcntl.ioctl(fd, termios.TIOCNOTTY)
    except OSError:
        pass
    finally:
        os.close(fd)


drop_terminal()
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def wait_for(pred, what, timeout=TIMEOUT):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


def idle_spare(daemon, pid):
    """Whether crfsd's child `pid` is its spare checkpoint worker, spawned
    ahead and waiting for a request (checkpoint/worker.h): `crfs-ckpt spare`
    (`crfs-ckpt taken` once a request came); or, before its exec,
    posix_spawn's child, which still shares crfsd's memory (kcmp KCMP_VM: a
    restored task never does)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        if argv[0].endswith(b"/crfs-ckpt"):
            return argv[1:2] == [b"spare"]
    except (FileNotFoundError, ProcessLookupError):
        return False
    kcmp, kcmp_vm = 312, 1
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(kcmp, daemon, pid, kcmp_vm, 0, 0) == 0


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # gone between open and read
        return False


def pid_free(pid):
    return not os.path.exists(f"/proc/{pid}")


def descendants(pid):
    """pid's descendants, from /proc/PID/task/*/children (those that exit meanwhile left out)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(k) for k in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def same_description(pid, a, b):
    """kcmp KCMP_FILE: 0 when fds a and b of pid are one open file description."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(312, pid, pid, 0, a, b)  # SYS_kcmp, KCMP_FILE


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def sh(cmd, **kw):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, **kw)


class Crfsd:
    def __init__(self, options=(), env=None, subreaper=False):
        self.dir = tempfile.mkdtemp(prefix="crfs-mnt-")
        os.chmod(self.dir, 0o755)
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)
        libc = ctypes.CDLL(None, use_errno=True)
        self.log = open(os.path.join(self.dir, "crfsd.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "fs/crfsd"), "-f", "-o", f"state_dir={self.dir}/state",
             *options, self.mnt],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, close_fds=True, env=env,
            # PR_SET_PDEATHSIG: unmount if we die; PR_SET_CHILD_SUBREAPER (kept
            # by execve) if asked: crfsd started by a subreaper that exec'd it.
            preexec_fn=lambda: (libc.prctl(1, signal.SIGTERM), subreaper and libc.prctl(36, 1)))
        wait_for(lambda: os.path.ismount(self.mnt) or self.proc.poll() is not None, "the mount")
        assert os.path.ismount(self.mnt), read(self.log.name)

    def children(self):
        """Live children of the daemon: the restored tasks (and checkpoint
        workers at work), not its spare worker (checkpoint/worker.h)."""
        out = []
        for t in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:  # stream: a restore's own thread ends after its restore (fs/slot_stream.h)
                with open(f"/proc/{self.proc.pid}/task/{t}/children") as f:
                    out += [int(p) for p in f.read().split()]
            except (FileNotFoundError, ProcessLookupError):
                pass
        return [p for p in out if not idle_spare(self.proc.pid, p)]

    def kill_children(self):
        """SIGKILL to every restored task still running (one may end between
        the listing and the kill: a restored task that checks itself exits)."""
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self):
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # exited and reaped since the listing
                pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", "-l", self.mnt])
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Task:
    """A workload: first our child, then (restored) a child of crfsd."""

    def __init__(self, test, argv, ready="ready", env=None):
        self.test, self.m = test, test.crfs.mnt
        self.dir = tempfile.mkdtemp(prefix="crfs-wl-")
        self.proc = subprocess.Popen([a.replace("@DIR@", self.dir) for a in argv],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=True, cwd=self.dir,
                                     env=env)
        self.pid = self.proc.pid
        if ready:
            wait_for(lambda: os.path.exists(self.path(ready)), "the workload to be ready")

    def path(self, name):
        return os.path.join(self.dir, name)

    def checkpoint(self, name="snap.img", via=None):
        img = self.path(name)
        src = via or f"{self.m}/{self.pid}"
        r = sh(f"cp {src}/image {img}")
        if r.returncode != 0:  # say why: the reason, when there is one
            r.stderr += sh(f"cat {src}/reason").stdout
        self.test.assertEqual(r.returncode, 0, r.stderr)
        return img

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait(TIMEOUT)
            self.proc = None
        wait_for(lambda: pid_free(self.pid), f"pid {self.pid} to be reaped")

    def restore(self, img, slot):
        r = sh(f"mkdir {self.m}/{slot} && cp {img} {self.m}/{slot}/image && cat {self.m}/{slot}/pid")
        if r.returncode != 0 and os.path.exists(f"{self.m}/{slot}/status"):
            r.stderr += "status: " + read(f"{self.m}/{slot}/status")  # what failed, in words
        self.test.assertEqual(r.returncode, 0, r.stderr)
        self.pid = int(r.stdout)
        self.test.assertEqual(read(f"{self.m}/{slot}/status"), f"restored {self.pid}\n")
        return self.pid

    def finish(self, result="result"):
        os.kill(self.pid, signal.SIGTERM)
        wait_for(lambda: os.path.exists(self.path(result)) and not alive(self.pid), "the verdict")
        return read(self.path(result)).strip()

    def cleanup(self):
        for pid in [*descendants(self.pid), self.pid]:  # a failed test leaves no child behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc:
            self.proc.wait(TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


class Base(unittest.TestCase):
    def setUp(self):
        self.crfs = Crfsd()
        self.m = self.crfs.mnt
        self.tasks = []

    def tearDown(self):
        for t in self.tasks:
            t.cleanup()
        self.crfs.log.flush()
        # Only a failed test's (its assertion or error is recorded by now):
        # the logs of passing tests that refuse edits on purpose would bury a
        # failure's traceback in CI's excerpt of the output.
        if not self._outcome.success:
            print(f"\ncrfsd log of {self.id()}:\n{read(self.crfs.log.name)}", file=sys.stderr)
        self.crfs.stop()

    def task(self, argv, **kw):
        t = Task(self, argv, **kw)
        self.tasks.append(t)
        return t

    def ckpt_workload(self, mode="busy"):
        return self.task([os.path.join(BUILD, "tests/cr/ckpt_workload"), "@DIR@", mode, "2"])


def state_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class RoundTrip(Base):
    def test_stopped_task_runs_no_instruction_after_restore(self):
        # A shell that appends a line as fast as it can (builtins only: no
        # children): the restored task must be stopped before it runs one
        # instruction of its own, so the file does not grow until SIGCONT.
        loop = 'exec >> lines; i=0; while :; do i=$((i+1)); echo $i; done'
        for round in range(10):
            t = self.task(["sh", "-c", loop], ready="lines")
            wait_for(lambda: os.path.getsize(t.path("lines")) > 0, "the loop to write")
            os.kill(t.pid, signal.SIGSTOP)
            wait_for(lambda: state_of(t.pid) == "T", "the loop to stop")
            img = t.checkpoint()
            t.kill9()
            size = os.path.getsize(t.path("lines"))
            t.restore(img, f"stopped{round}")
            self.assertEqual(state_of(t.pid), "T", "close() returned before the task stopped")
            self.assertEqual(os.path.getsize(t.path("lines")), size, f"round {round}")
            os.kill(t.pid, signal.SIGCONT)
            wait_for(lambda: os.path.getsize(t.path("lines")) > size, "the loop to go on")
            os.kill(t.pid, signal.SIGKILL)
            self.assertEqual(sh(f"rmdir {self.m}/stopped{round}").returncode, 0)

    def test_fresh_name(self):
        t = self.ckpt_workload()
        img = t.checkpoint()
        old = t.pid
        t.kill9()
        self.assertNotEqual(t.restore(img, "again"), old)
        self.assertEqual(t.finish(), "PASS")

    def test_same_pid_then_twice_in_a_row(self):
        t = self.ckpt_workload()
        pid = t.pid
        for i in range(2):
            # The second time, /crfs/PID is the slot; its image is the restored task's.
            img = t.checkpoint(f"snap{i}.img", via=f"{self.m}/{pid}")
            t.kill9()
            if i:
                self.assertEqual(sh(f"rmdir {self.m}/{pid}").returncode, 0)
            self.assertEqual(t.restore(img, str(pid)), pid)
        self.assertEqual(t.finish(), "PASS")
        wait_for(lambda: not self.crfs.children(), "crfsd to reap the restored task")

    def test_restore_workload_256mib_argv_env_through_a_pipeline(self):
        env = dict(os.environ, CRFS_WL_ENV="through the mount")
        t = self.task([os.path.join(BUILD, "tests/cr/restore_workload"), "@DIR@", "256", "a b", "c"],
                      env=env)
        img = t.checkpoint()
        t.kill9()
        r = sh(f"mkdir {self.m}/piped && zstd -q -c {img} | zstd -q -d -c > {self.m}/piped/image"
               f" && cat {self.m}/piped/pid")
        self.assertEqual(r.returncode, 0, r.stderr)
        t.pid = int(r.stdout)
        self.assertEqual(t.finish(), "PASS")

    def test_python_counter_continues(self):
        t = self.task(["python3", "-c", "import time\ni = 0\nwhile True:\n    i += 1\n"
                       "    open('count', 'a').write(f'{i}\\n')\n    time.sleep(0.05)"],
                      ready="count")
        wait_for(lambda: len(read(t.path("count")).split()) >= 3, "counting")
        img = t.checkpoint()
        t.kill9()
        last = int(read(t.path("count")).split()[-1])
        t.restore(img, "py")
        wait_for(lambda: len(read(t.path("count")).split()) >= last + 3, "counting again")
        counts = [int(x) for x in read(t.path("count")).split()]
        # It carries on from its own memory: the restored process counts on
        # from the value it had at the checkpoint, without starting over.
        self.assertEqual(counts[:last], list(range(1, last + 1)))
        self.assertNotIn(1, counts[last:])

    def test_program_started_with_log_2_and_1(self):
        """`prog >log 2>&1`: fds 1 and 2 are one open file description, and
        come back as one (kcmp), so writes through both after the restore
        follow each other instead of overwriting at a copied offset."""
        prog = ("import os, signal\n"
                "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])\n"
                "os.write(1, b'ready\\n')\n"
                "open('ready', 'w').close()\n"
                "signal.sigwait([signal.SIGTERM])\n"
                "os.write(1, b'one\\n')\n"
                "os.write(2, b'two\\n')\n"
                "open('result', 'w').write('done')\n")
        t = self.task(["sh", "-c", 'exec /usr/bin/python3 -c "$0" >log 2>&1', prog])
        self.assertEqual(same_description(t.pid, 1, 2), 0)
        img = t.checkpoint()
        pid = t.pid
        t.kill9()
        self.assertEqual(t.restore(img, str(pid)), pid)
        self.assertEqual(same_description(pid, 1, 2), 0, "fds 1 and 2 are two descriptions")
        self.assertNotEqual(same_description(pid, 0, 1), 0)
        self.assertEqual(t.finish(), "done")
        self.assertEqual(read(t.path("log")), "ready\none\ntwo\n")

    def test_rmdir_leaves_the_task_running(self):
        t = self.ckpt_workload()
        img = t.checkpoint()
        t.kill9()
        t.restore(img, "keep")
        self.assertEqual(sh(f"rmdir {self.m}/keep").returncode, 0)
        self.assertTrue(alive(t.pid))
        self.assertFalse(os.path.exists(f"{self.m}/keep"))
        self.assertEqual(sh(f"cat {self.m}/{t.pid}/reason").stdout, "")
        self.assertEqual(t.finish(), "PASS")


class SameNameAfterTheEnd(Base):
    """A numeric slot keeps its name and files after the task restored into it
    ends (issue 10: `crfs restore --shell-job` read /crfs/PID/pid just as its
    job ended and got ENOENT). The reaper records the end before it reaps, so
    the pid cannot be reused unnoticed; meanwhile the ended task is a zombie
    under that pid and must not hide the slot as a live task would.
    CRFS_TEST_REAP_HOLD (fs/reaper.cc) keeps that zombie until the test lets
    it go, so the window is looked at, not raced."""

    def setUp(self):
        self.holddir = tempfile.mkdtemp(prefix="crfs-hold-")
        self.release = os.path.join(self.holddir, "reap")
        self.crfs = Crfsd(env=dict(os.environ, CRFS_TEST_REAP_HOLD=self.release))
        self.m = self.crfs.mnt
        self.tasks = []

    def tearDown(self):
        open(self.release, "w").close()  # the reaper goes on (crfsd stops then)
        super().tearDown()
        shutil.rmtree(self.holddir, ignore_errors=True)

    def test_slot_stays_while_its_ended_task_is_reaped(self):
        t = self.ckpt_workload()
        pid = t.pid
        img = t.checkpoint()
        t.kill9()
        self.assertEqual(t.restore(img, str(pid)), pid)
        slot = os.open(f"{self.m}/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        try:
            def status():  # the slot's, through its directory (not its name)
                fd = os.open("status", os.O_RDONLY, dir_fd=slot)
                try:
                    return os.read(fd, 4096).decode()
                finally:
                    os.close(fd)

            os.kill(pid, signal.SIGKILL)  # the job ends right after its restore
            wait_for(lambda: status() == "killed by SIGKILL\n", "crfsd to record the end")
            self.assertEqual(state_of(pid), "Z", "reaped before the test looked")
            self.assertEqual(read(f"{self.m}/{pid}/pid"), f"{pid}\n")
            self.assertEqual(os.stat(f"{self.m}/{pid}").st_ino, os.fstat(slot).st_ino)
            listed = [e.inode() for e in os.scandir(self.m) if e.name == str(pid)]
            self.assertEqual(listed, [os.fstat(slot).st_ino], "readdir: the zombie, not the slot")
            self.assertEqual(read(f"{self.m}/{pid}/status"), "killed by SIGKILL\n")
            slot_ino = os.fstat(slot).st_ino
        finally:
            os.close(slot)
        open(self.release, "w").close()
        wait_for(lambda: pid_free(pid), "crfsd to reap the ended task")
        self.assertEqual(read(f"{self.m}/{pid}/pid"), f"{pid}\n")
        # A new task under the pid (another start time) wins over the slot again.
        new = subprocess.Popen([os.path.join(BUILD, "tests/security/limits/spawn_at_pid"), str(pid),
                                "sleep", "1000"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: new.poll() is not None or
                     (alive(pid) and read(f"/proc/{pid}/comm") == "sleep\n"), "the new task")
            self.assertIsNone(new.poll(), "spawn_at_pid: the pid was taken")
            self.assertNotEqual(os.stat(f"{self.m}/{pid}").st_ino, slot_ino)
            self.assertIn("reason", os.listdir(f"{self.m}/{pid}"))
        finally:
            if new.poll() is None:
                os.kill(pid, signal.SIGKILL)
            new.wait(TIMEOUT)
        # Its name is forgotten at its exit (TaskCache, on the exit watcher's thread).
        wait_for(lambda: os.path.exists(f"{self.m}/{pid}/pid"), "the slot to show again")
        self.assertEqual(os.stat(f"{self.m}/{pid}").st_ino, slot_ino)
        self.assertEqual(sh(f"rmdir {self.m}/{pid}").returncode, 0)
        self.assertEqual(self.crfs.children(), [])


class EndBeforeAdoption(Base):
    """A restored task that ends before crfsd adopted it (issue 10): another
    restored task's exit sweeps meanwhile, and must not reap it unadopted, or
    its end is never recorded and its status says `restored N` for ever. It
    stays a zombie until its adoption, which records its end at once.
    CRFS_TEST_ADOPT_HOLD (fs/reaper.cc) holds the adoption while its file
    exists, so the window is looked at, not raced."""

    def setUp(self):
        self.holddir = tempfile.mkdtemp(prefix="crfs-hold-")
        self.hold = os.path.join(self.holddir, "adopt")
        self.crfs = Crfsd(env=dict(os.environ, CRFS_TEST_ADOPT_HOLD=self.hold))
        self.m = self.crfs.mnt
        self.tasks = []

    def tearDown(self):
        if os.path.exists(self.hold):
            os.unlink(self.hold)  # the close goes on (crfsd stops then)
        super().tearDown()
        shutil.rmtree(self.holddir, ignore_errors=True)

    def restored(self):
        t = self.ckpt_workload()
        img = t.checkpoint()
        t.kill9()
        return t, img

    def test_end_before_adoption_is_recorded(self):
        (a, img_a), (b, img_b), (c, img_c) = self.restored(), self.restored(), self.restored()
        a.restore(img_a, "a")
        c.restore(img_c, "c")
        open(self.hold, "w").close()  # b's adoption waits
        self.assertEqual(sh(f"mkdir {self.m}/b").returncode, 0)
        cp = subprocess.Popen(["cp", img_b, f"{self.m}/b/image"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: cp.poll() is not None or
                     read(f"{self.m}/b/status").startswith("restored "), "b's restore")
            self.assertIsNone(cp.poll(), "the close was not held")
            b.pid = int(read(f"{self.m}/b/status").split()[1])
            os.kill(b.pid, signal.SIGKILL)  # b ends before its adoption
            wait_for(lambda: state_of(b.pid) == "Z", "b to end")
            # Two sweeps, one after the other on the exit watcher's thread:
            # the first is over when c's end shows.
            for t, name in ((a, "a"), (c, "c")):
                os.kill(t.pid, signal.SIGKILL)
                wait_for(lambda: read(f"{self.m}/{name}/status") == "killed by SIGKILL\n",
                         f"crfsd to record {name}'s end")
            self.assertFalse(pid_free(b.pid), "b was reaped unadopted")
            self.assertEqual(state_of(b.pid), "Z")
            self.assertEqual(read(f"{self.m}/b/status"), f"restored {b.pid}\n")
        finally:
            os.unlink(self.hold)
            _, err = cp.communicate(timeout=TIMEOUT)
        self.assertEqual(cp.returncode, 0, err)
        wait_for(lambda: read(f"{self.m}/b/status") == "killed by SIGKILL\n",
                 "crfsd to record b's end at its adoption")
        wait_for(lambda: pid_free(b.pid), "crfsd to reap b")
        wait_for(lambda: self.crfs.children() == [], "no child of crfsd left")


class Slots(Base):
    def image(self):
        t = self.ckpt_workload()
        img = t.checkpoint()
        t.kill9()
        return t, img

    def test_names(self):
        for bad in ["self", "a/b", "x" * 65, "sp ace", "0123", "99999999"]:
            r = sh(f"mkdir '{self.m}/{bad}'")
            self.assertNotEqual(r.returncode, 0, bad)
        r = sh(f"mkdir {self.m}/1")
        self.assertIn("File exists", r.stderr)
        self.assertEqual(sh(f"mkdir {self.m}/ok.name-1_x").returncode, 0)
        self.assertIn("File exists", sh(f"mkdir {self.m}/ok.name-1_x").stderr)
        self.assertEqual(sorted(os.listdir(f"{self.m}/ok.name-1_x")), ["image", "pid", "status", "tcp"])
        self.assertEqual(read(f"{self.m}/ok.name-1_x/status"), "empty\n")
        self.assertEqual(read(f"{self.m}/ok.name-1_x/pid"), "")
        self.assertIn("Operation not permitted", sh(f"rmdir {self.m}/1").stderr)
        self.assertIn("Operation not permitted", sh(f"mkdir {self.m}/1/x").stderr)

    def test_bad_images_fail_at_close_and_create_nothing(self):
        _, img = self.image()
        data = read(img, "rb")
        cases = {
            "truncated": data[: len(data) // 2],
            "random": os.urandom(4096),
            "corrupt-page": data[:200000] + bytes([data[200000] ^ 0x55]) + data[200001:],
        }
        for name, blob in cases.items():
            with open(os.path.join(self.crfs.dir, name), "wb") as f:
                f.write(blob)
            r = sh(f"mkdir {self.m}/{name} && cp {self.crfs.dir}/{name} {self.m}/{name}/image")
            self.assertNotEqual(r.returncode, 0, name)
            self.assertIn("failed to close", r.stderr, name)
            status = read(f"{self.m}/{name}/status")
            self.assertTrue(status.startswith("error: "), status)
            self.assertEqual(self.crfs.children(), [], name)
        self.assertEqual(read(f"{self.m}/self/nocr"), "0\n")  # still serving

    def test_sequential_writes_only_and_one_image_per_slot(self):
        t, img = self.image()
        r = sh(f"mkdir {self.m}/gap && dd if={img} of={self.m}/gap/image bs=4k seek=1 conv=notrunc"
               " status=none")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Invalid argument", r.stderr)
        t.restore(img, "used")
        r = sh(f"cp {img} {self.m}/used/image")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Invalid argument", r.stderr)
        self.assertEqual(t.finish(), "PASS")

    def test_cp_writes_max_write_requests_and_odd_pieces_restore_exact(self):
        # perf: cp sizes its writes by st_blksize; 1 MiB (max_write) makes one
        # FUSE request per write instead of eight 128 KiB ones.
        self.assertEqual(sh(f"mkdir {self.m}/odd").returncode, 0)
        self.assertEqual(os.stat(f"{self.m}/odd/image").st_blksize, 1 << 20)
        t = self.task([os.path.join(BUILD, "tests/cr/restore_workload"), "@DIR@", "16", "odd"],
                      env=dict(os.environ, CRFS_WL_ENV="odd pieces"))
        # The same for reads: cp reads /crfs/PID/image and delta in 1 MiB requests.
        for entry in ("image", "delta"):
            self.assertEqual(os.stat(f"{self.m}/{t.pid}/{entry}").st_blksize, 1 << 20)
        img = read(t.checkpoint(), "rb")
        t.kill9()
        # Pieces that split records, page runs and the trailer anywhere, some
        # larger than max_write (the kernel splits those into several requests).
        sizes, pos = [1, 4093, 40, 1 << 20, (3 << 20) + 7, 65537, 39, 4096 * 257 + 1], 0
        fd = os.open(f"{self.m}/odd/image", os.O_WRONLY)
        try:
            for i in range(len(img)):
                if pos >= len(img):
                    break
                n = os.write(fd, img[pos:pos + sizes[i % len(sizes)]])
                self.assertGreater(n, 0)
                pos += n
        finally:
            os.close(fd)
        t.pid = int(read(f"{self.m}/odd/pid"))
        self.assertEqual(read(f"{self.m}/odd/status"), f"restored {t.pid}\n")
        self.assertEqual(t.finish(), "PASS")

    def test_slots_belong_to_their_creator(self):
        _, img = self.image()
        os.chmod(img, 0o644)
        os.chmod(os.path.dirname(img), 0o755)
        self.assertEqual(sh(f"mkdir {self.m}/roots").returncode, 0)
        r = subprocess.run(NOBODY + ["sh", "-c", f"cp {img} {self.m}/roots/image"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertIn("Permission denied", r.stderr)
        r = subprocess.run(NOBODY + ["cat", f"{self.m}/roots/status"], capture_output=True,
                           text=True, timeout=TIMEOUT)
        self.assertIn("Permission denied", r.stderr)
        self.assertIn("Permission denied",
                      subprocess.run(NOBODY + ["rmdir", f"{self.m}/roots"], capture_output=True,
                                     text=True, timeout=TIMEOUT).stderr)

    def test_normal_user_round_trips_its_own_task(self):
        d = tempfile.mkdtemp(prefix="crfs-nobody-")
        os.chmod(d, 0o777)
        script = (f"cd {d} && sleep 1000 </dev/null >/dev/null 2>&1 & p=$!; "
                  "until [ \"$(cat /proc/$p/comm)\" = sleep ]; do sleep 0.01; done; "
                  # Twice: cp gives a new file the source's mode, and the owner
                  # must be able to write over an earlier snapshot.
                  f"{{ cp {self.m}/$p/image {d}/snap.img && cp {self.m}/$p/image {d}/snap.img; }}"
                  " || { kill -9 $p; exit 9; }; kill -9 $p && wait $p; "
                  f"mkdir {self.m}/mine && cp {d}/snap.img {self.m}/mine/image && "
                  f"cat {self.m}/mine/pid")
        r = subprocess.run(NOBODY + ["sh", "-c", script], capture_output=True, text=True,
                           timeout=TIMEOUT)
        shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        pid = int(r.stdout)
        status = read(f"/proc/{pid}/status")
        self.assertIn("Uid:\t65534\t65534\t65534\t65534", status)
        self.assertIn("CapEff:\t0000000000000000", status)
        self.assertEqual(read(f"/proc/{pid}/comm"), "sleep\n")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.crfs.children(), "crfsd to reap it")

    def test_normal_user_cannot_restore_a_root_image(self):
        _, img = self.image()
        os.chmod(img, 0o644)
        os.chmod(os.path.dirname(img), 0o755)
        r = subprocess.run(NOBODY + ["sh", "-c", f"mkdir {self.m}/mine && cp {img} {self.m}/mine/image"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Operation not permitted", r.stderr)
        self.assertTrue(read(f"{self.m}/mine/status").startswith("error: "))
        self.assertEqual(self.crfs.children(), [])


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
