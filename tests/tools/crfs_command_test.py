#!/usr/bin/env python3
"""The `crfs` command against a temporary crfsd mount ($CRFS_ROOT):

    crfs ps [--json] [PID]        crfs dump PID [FILE]        crfs restore FILE [NAME|PID]
    crfs show --json FILE         --help on every subcommand, --version

Reuses the mount and workload harness of tests/fs/roundtrip_mount_test.py
(always unmounts, kills restored tasks). Every wait is bounded.

usage: crfs_command_test.py BUILD_DIR VERSION  (any unittest args after)
"""
import errno
import json
import os
import pty
import pwd
import re
import select
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fs"))
import roundtrip_mount_test as rt  # noqa: E402

BUILD = VERSION = CRFS = None
TIMEOUT = rt.TIMEOUT
SUBCOMMANDS = ["dump", "restore", "ps", "show", "verify", "checkpoint", "restore-direct"]


def crfs(args, root=None, **kw):
    env = dict(os.environ)
    if root:
        env["CRFS_ROOT"] = root
    env.pop("NO_COLOR", None)
    return subprocess.run([CRFS] + args, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=kw.pop("stdin", subprocess.DEVNULL), env=env, **kw)


class CommandLine(unittest.TestCase):
    def test_help_on_every_subcommand_exits_0(self):
        for sub in [[]] + [[s] for s in SUBCOMMANDS]:
            r = crfs(sub + ["--help"])
            self.assertEqual(r.returncode, 0, (sub, r.stderr))
            self.assertIn("Usage:", r.stdout, sub)
            self.assertEqual(r.stderr, "", sub)

    def test_version_is_the_projects(self):
        r = crfs(["--version"])
        self.assertEqual((r.returncode, r.stdout), (0, f"crfs {VERSION}\n"), r.stderr)

    def test_usage_errors_exit_2_and_say_what(self):
        r = crfs(["frobnicate"])
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, "crfs: unknown command frobnicate (see crfs --help)\n")
        r = crfs(["dump"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("PID is required", r.stderr)
        r = crfs(["dump", "0"])
        self.assertEqual((r.returncode, r.stderr), (2, "crfs dump: bad pid 0\n"))
        with tempfile.TemporaryDirectory() as d:
            r = crfs(["dump", "noslot"], root=d)
            self.assertEqual((r.returncode, r.stderr), (1, f"crfs dump: no slot noslot in {d}\n"))

    def test_no_tree_is_named(self):
        with tempfile.TemporaryDirectory() as d:
            r = crfs(["ps"], root=d)
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"no crfs tree at {d}", r.stderr)


class Mounted(rt.Base):
    def tcp_task(self):
        return self.task([os.path.join(BUILD, "tests/workloads/tcp_toggle"), "@DIR@/state"],
                         ready="state")

    def run_crfs(self, args, **kw):
        return crfs(args, root=self.m, **kw)

    def test_ps_json_tells_checkpointable_from_not(self):
        good = self.ckpt_workload()
        bad = self.tcp_task()
        r = self.run_crfs(["ps", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = {p["pid"]: p for p in json.loads(r.stdout)}
        self.assertIn(1, rows)
        self.assertEqual(rows[good.pid]["checkpointable"], True, rows[good.pid])
        self.assertEqual(rows[good.pid]["reasons"], [])
        self.assertIn("ckpt_workload", rows[good.pid]["command"])
        self.assertEqual(rows[good.pid]["user"], pwd.getpwuid(os.geteuid()).pw_name)
        self.assertEqual(rows[bad.pid]["checkpointable"], False, rows[bad.pid])
        self.assertEqual(rows[bad.pid]["reasons"],
                         rt.read(f"{self.m}/{bad.pid}/reason").splitlines())
        self.assertIn(" in state FIN_WAIT", rows[bad.pid]["reasons"][0])
        # One tree: the process and its descendants only.
        r = self.run_crfs(["ps", "--json", str(bad.pid)])
        self.assertEqual([p["pid"] for p in json.loads(r.stdout)], [bad.pid])
        # The table: "yes", or the first reason (no colour in a pipe).
        r = self.run_crfs(["ps", str(good.pid)])
        self.assertEqual(r.stdout.splitlines()[1].split()[-1], "yes", r.stdout)
        self.assertNotIn("\033", r.stdout)
        r = self.run_crfs(["ps", str(bad.pid)])
        self.assertTrue(r.stdout.splitlines()[1].endswith(rows[bad.pid]["reasons"][0]), r.stdout)

    def test_dump_and_restore_round_trip(self):
        t = self.ckpt_workload()
        img = t.path("snap.img")
        r = self.run_crfs(["dump", str(t.pid), img])
        self.assertEqual((r.returncode, r.stderr), (0, ""))  # quiet when not on a terminal
        self.assertEqual(os.stat(img).st_mode & 0o777, 0o600)
        self.assertEqual(self.run_crfs(["verify", img]).returncode, 0)
        t.kill9()
        r = self.run_crfs(["restore", img])
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        t.pid = int(r.stdout)
        slots = [n for n in os.listdir(self.m) if n.startswith("crfs-")]
        self.assertEqual(len(slots), 1, slots)  # a fresh name: crfs-N
        self.assertEqual(rt.read(f"{self.m}/{slots[0]}/status"), f"restored {t.pid}\n")
        # The slot names its restored task for dump.
        again = t.path("again.img")
        r = self.run_crfs(["dump", slots[0], again])
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(self.run_crfs(["verify", again]).returncode, 0)
        self.assertEqual(t.finish(), "PASS")

    def test_dump_to_a_pipe_and_restore_the_same_pid_from_stdin(self):
        t = self.ckpt_workload()
        pid = t.pid
        img = t.path("piped.img")
        r = rt.sh(f"CRFS_ROOT={self.m} {CRFS} dump {pid} | cat > {img}")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        t.kill9()
        with open(img, "rb") as f:
            r = self.run_crfs(["restore", "-", str(pid)], stdin=f)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, f"{pid}\n", ""))
        self.assertEqual(t.finish(), "PASS")

    def test_dump_of_a_busy_task_prints_its_reason(self):
        t = self.tcp_task()
        img = t.path("no.img")
        r = self.run_crfs(["dump", str(t.pid), img])
        self.assertEqual(r.returncode, 1)
        reasons = rt.read(f"{self.m}/{t.pid}/reason").splitlines()
        self.assertEqual(r.stderr.splitlines(),
                         [f"crfs dump: process {t.pid} cannot be checkpointed now:"] +
                         ["  " + x for x in reasons])
        self.assertNotIn("Device or resource busy", r.stderr)
        self.assertFalse(os.path.exists(img), "a failed dump left a file")

    def test_dump_of_no_such_process(self):
        r = self.run_crfs(["dump", "999999999"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("no process 999999999", r.stderr)

    def test_failed_restore_prints_status_and_removes_the_slot(self):
        t = self.ckpt_workload()
        img = t.checkpoint()
        bad = t.path("bad.img")
        with open(img, "rb") as f, open(bad, "wb") as o:
            o.write(f.read()[:1000])
        # What the slot's status says for these bytes, by hand.
        self.assertNotEqual(rt.sh(f"mkdir {self.m}/byhand && cp {bad} {self.m}/byhand/image")
                            .returncode, 0)
        status = rt.read(f"{self.m}/byhand/status")
        self.assertTrue(status.startswith("error: "), status)
        r = self.run_crfs(["restore", bad, "viacrfs"])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, f"crfs restore: {status[7:-1]} "
                                   f"({os.strerror(errno.EBADMSG)})\n")
        self.assertFalse(os.path.exists(f"{self.m}/viacrfs"), "the failed slot is still there")
        self.assertEqual(self.crfs.children(), [])
        # A slot name in use is named, and left alone.
        r = self.run_crfs(["restore", img, "byhand"])
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"mkdir {self.m}/byhand: File exists", r.stderr)
        self.assertTrue(os.path.isdir(f"{self.m}/byhand"))
        r = self.run_crfs(["restore", img, "1"])
        self.assertEqual((r.returncode, r.stderr), (1, f"crfs restore: pid 1 is in use (mkdir "
                                                       f"{self.m}/1: File exists)\n"))

    def test_progress_and_colour_on_a_terminal(self):
        t = self.ckpt_workload()
        img = t.path("tty.img")
        rc, out = on_a_terminal([CRFS, "dump", str(t.pid), img], self.m, "stderr")
        self.assertEqual(rc, 0, out)
        size = os.path.getsize(img)
        self.assert_final_progress(out, size)
        self.assertIn(" of ~", out)  # the estimate from VmRSS, marked as one
        t.kill9()
        rc, out = on_a_terminal([CRFS, "restore", img], self.m, "stderr")
        self.assertEqual(rc, 0, out)
        self.assert_final_progress(out, size)
        self.assertIn(f"restored into {self.m}/crfs-", out)
        t.pid = self.crfs.children()[0]
        self.assertEqual(t.finish(), "PASS")
        # ps: green "yes" on a terminal, none with NO_COLOR.
        other = self.ckpt_workload()
        rc, out = on_a_terminal([CRFS, "ps", str(other.pid)], self.m, "stdout")
        self.assertEqual(rc, 0, out)
        self.assertIn("\033[32myes\033[0m", out)
        rc, out = on_a_terminal([CRFS, "ps", str(other.pid)], self.m, "stdout", NO_COLOR="1")
        self.assertNotIn("\033", out)
        self.assertIn(" yes", out)

    def assert_final_progress(self, out, size):
        lines = [x for x in re.split(r"[\r\n]+", out.replace("\033[K", "")) if "/s" in x]
        last = lines[-1] if lines else out
        self.assertIn("100%", last, out)
        self.assertIn("/s", last)
        self.assertTrue(last.startswith(f"{size / 1024:.1f} KiB of {size / 1024:.1f} KiB"
                                        if size < 1 << 20 else
                                        f"{size / (1 << 20):.1f} MiB of {size / (1 << 20):.1f} MiB"),
                        last)


def on_a_terminal(argv, root, stream, **env):
    """Runs argv with stdout or stderr on a pseudo-terminal; (exit status, what it wrote there)."""
    master, slave = pty.openpty()
    extra = env
    env = dict(os.environ, CRFS_ROOT=root)
    env.pop("NO_COLOR", None)
    env.update(extra)
    where = {"stdout": slave, "stderr": subprocess.DEVNULL}
    if stream == "stderr":
        where = {"stdout": subprocess.DEVNULL, "stderr": slave}
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, **where)
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], TIMEOUT)
            if not ready:
                raise AssertionError(f"{argv}: no output on the terminal")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        rc = p.wait(TIMEOUT)
    return rc, out.decode()


class ImagePaths(rt.Base):
    """Paths in images: any bytes. --json keeps them exactly, text escapes controls."""

    def sleeper(self, cwd, fd3, user=None):
        """`sleep` in cwd with fd 3 open on fd3, as user; waits until it runs sleep."""
        pre = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
        p = subprocess.Popen(pre + ["sh", "-c", 'exec sleep 300 3<"$0"', fd3], cwd=cwd,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, close_fds=True)
        self.addCleanup(lambda: (p.kill(), p.wait(TIMEOUT)))
        rt.wait_for(lambda: os.readlink(f"/proc/{p.pid}/exe").endswith("/sleep"), "sleep")
        return p.pid

    def test_utf8_and_spaces_survive_show_json(self):
        d = tempfile.mkdtemp(prefix="crfs-naïve café ☕ ")
        self.addCleanup(shutil.rmtree, d, True)
        name = os.path.join(d, "fïle ✓ name.txt")
        bad = os.path.join(os.fsencode(d), b"not utf8 \xff\xfe.txt")
        for f in (name, bad):
            open(f, "w").close()
        img = os.path.join(d, "snap.img")
        for fd3, want, want_hex in ((name, name, None),
                                    (bad, os.fsdecode(bad).encode("utf-8", "surrogateescape")
                                     .decode("utf-8", "replace"), bad.hex())):
            pid = self.sleeper(d, fd3)
            r = crfs(["dump", str(pid), img], root=self.m)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = crfs(["show", "--json", img])
            self.assertEqual(r.returncode, 0, r.stderr)
            doc = json.loads(r.stdout)
            self.assertEqual(doc["fs"]["cwd"], d)
            fd = next(f for f in doc["fds"] if f["fd"] == 3)
            self.assertEqual(fd["path"], want)
            self.assertEqual(fd.get("path_hex"), want_hex)

    def test_show_escapes_control_characters_a_user_put_in_a_path(self):
        # An unprivileged user names a file with a terminal escape (it sets the
        # window title here; others rewrite the screen), dumps a process holding
        # it and hands the image to root, who runs `crfs show` on a terminal.
        user = f"ecosystem{os.getpid()}"
        subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", user], check=True,
                       timeout=TIMEOUT)
        self.addCleanup(subprocess.run, ["userdel", "-f", user], timeout=TIMEOUT)
        uid = pwd.getpwnam(user).pw_uid
        d = tempfile.mkdtemp(prefix="crfs-esc-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        os.chown(d, uid, -1)
        evil = os.path.join(d, "x\033]0;pwned\007")
        subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                        "touch", evil], check=True, timeout=TIMEOUT)
        pid = self.sleeper(d, evil, user=uid)
        img = os.path.join(d, "evil.img")
        r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                            CRFS, "dump", str(pid), img], capture_output=True, text=True,
                           timeout=TIMEOUT, env=dict(os.environ, CRFS_ROOT=self.m))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = crfs(["show", img])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\033", r.stdout)
        self.assertNotIn("\007", r.stdout)
        self.assertIn(d + "/x\\x1b]0;pwned\\x07", r.stdout)
        # --json keeps the exact text (JSON escapes it).
        fd = next(f for f in json.loads(crfs(["show", "--json", img]).stdout)["fds"]
                  if f["fd"] == 3)
        self.assertEqual(fd["path"], evil)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv[1])
    VERSION = sys.argv[2]
    CRFS = os.path.join(BUILD, "tools", "crfs")
    rt.BUILD = BUILD
    unittest.main(argv=[sys.argv[0]] + sys.argv[2 + 1:], verbosity=2)
