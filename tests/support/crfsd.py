"""Helpers shared by the python tests that mount crfsd: bounded waits (for a
state, never a time), task state, and a crfsd on a temporary mount point that
is always unmounted and killed (stop())."""
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time

TIMEOUT = 60  # only a guard against hangs, never a pass criterion


def wait_for(pred, what, timeout=TIMEOUT):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.005)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # gone between open and read
        return False


def pid_free(pid):
    return not os.path.exists(f"/proc/{pid}")


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def sh(cmd, **kw):
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, **kw)


class Crfsd:
    """crfsd of BUILD mounted on a fresh temporary directory."""

    def __init__(self, build):
        self.dir = tempfile.mkdtemp(prefix="crfs-mnt-")
        os.chmod(self.dir, 0o755)
        self.mnt = os.path.join(self.dir, "mnt")
        os.mkdir(self.mnt)
        libc = ctypes.CDLL(None, use_errno=True)
        self.log = open(os.path.join(self.dir, "crfsd.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(build, "fs/crfsd"), "-f", "-o", f"state_dir={self.dir}/state", self.mnt],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, close_fds=True,
            preexec_fn=lambda: libc.prctl(1, signal.SIGTERM))  # PR_SET_PDEATHSIG: unmount if we die
        wait_for(lambda: os.path.ismount(self.mnt) or self.proc.poll() is not None, "the mount")
        assert os.path.ismount(self.mnt), read(self.log.name)

    def children(self):
        """Live children of the daemon: the restored tasks."""
        out = []
        for t in os.listdir(f"/proc/{self.proc.pid}/task"):
            with open(f"/proc/{self.proc.pid}/task/{t}/children") as f:
                out += [int(p) for p in f.read().split()]
        return out

    def stop(self):
        for pid in self.children():
            os.kill(pid, signal.SIGKILL)
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
