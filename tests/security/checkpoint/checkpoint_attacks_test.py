#!/usr/bin/env python3
"""Attacks on the checkpoint side (issue 8, items 7 to 10), each run as a real
unprivileged user through a crfsd mounted on a temporary directory:

  7  a same-uid user reads a task that made itself non-dumpable
  8  a same-uid user reads a task that holds a capability the user lacks
  9  a user inside `unshare -Ur` reads root's task and marks it nocr
  10 a user opens `image`, then the task execs a setuid-root binary

and the refusals that must stay clear (a non-root user cannot suspend a
task's seccomp filter: EBUSY, the task unharmed), plus the positive control:
the same user reading its own ordinary task gets an image that does hold the
secret (so an absent secret elsewhere means something).

Users crfsck1 and crfsck2 are made in setUpModule and removed in
tearDownModule, also when a test fails.

usage: checkpoint_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
sys.path.insert(0, HERE)
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, wait_for, sh)
import crfsck_users as users  # noqa: E402
from crfsck_users import as_user, run  # noqa: E402

BUILD = None
USERS = ["crfsck1", "crfsck2"]
PY = "/usr/bin/python3"  # `python3` on PATH may be a root-only shim
DENIED = ("EACCES", "EPERM")
RACE_ROUNDS = 60

# Runs as the attacker: prints "ok N" (and writes the bytes to OUT) or "err ERRNO".
ATTACKER = r'''
import errno, os, sys, time
op, path = sys.argv[1], sys.argv[2]
try:
    if op == "read":
        with open(path, "rb") as f:
            data = f.read()
        with open(sys.argv[3], "wb") as out:
            out.write(data)
        print("ok", len(data))
    elif op == "write":
        with open(path, "w") as f:
            f.write(sys.argv[3])
        print("ok")
    elif op == "open-wait-read":  # open, say so, wait for GO, read
        f = open(path, "rb", buffering=0)
        with open(sys.argv[4], "w") as s:
            s.write("opened")
        end = time.monotonic() + 60
        while not os.path.exists(sys.argv[5]) and time.monotonic() < end:
            time.sleep(0.005)
        data = b""
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            data += chunk
        with open(sys.argv[3], "wb") as out:
            out.write(data)
        print("ok", len(data))
except OSError as e:
    print("err", errno.errorcode.get(e.errno, str(e.errno)))
'''


def setUpModule():
    users.create(USERS)


def tearDownModule():
    users.remove(USERS)


def status_caps(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return 0


def slurp(path):
    with open(path, "rb") as f:
        return f.read()


def tracer_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


class CheckpointAttacks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crfs = rt.Crfsd()
        cls.m = cls.crfs.mnt
        cls.dir = tempfile.mkdtemp(prefix="crfsck-")
        os.chmod(cls.dir, 0o755)
        cls.attacker = os.path.join(cls.dir, "attacker.py")
        with open(cls.attacker, "w") as f:
            f.write(ATTACKER)
        os.chmod(cls.attacker, 0o644)
        cls.holder = os.path.join(BUILD, "tests/security/checkpoint/secret_holder")

    @classmethod
    def tearDownClass(cls):
        cls.crfs.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.procs = []
        self.work = tempfile.mkdtemp(dir=self.dir)
        os.chmod(self.work, 0o777)

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.work, ignore_errors=True)

    def secret(self, owner):
        """A fresh secret in a file only `owner` can read."""
        value = "CRFSSECRET-" + secrets.token_hex(16)
        path = os.path.join(self.work, "secret-" + secrets.token_hex(4))
        with open(path, "w") as f:
            f.write(value)
        shutil.chown(path, owner, owner)
        os.chmod(path, 0o600)
        return value, path

    def victim(self, cmd, ready="ready", stderr=None):
        """`stderr`: a file the victim's stderr goes to (default /dev/null)."""
        with open(stderr or os.devnull, "wb") as err:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=err, close_fds=True)
        self.procs.append(p)
        path = os.path.join(self.work, ready)
        rt.wait_for(lambda: os.path.exists(path) or p.poll() is not None, "the victim")
        self.assertIsNone(p.poll(), "victim exited early")
        return p

    def attack(self, user, op, path, *args, userns=False):
        """Runs the attacker as `user`; returns (result word, errno or bytes)."""
        out = os.path.join(self.work, "out-" + secrets.token_hex(4))
        inner = [PY, self.attacker, op, path] + ([out] if op != "write" else []) + list(args)
        if userns:
            inner = ["unshare", "-Ur", "--"] + inner
        r = run(as_user(user, inner), check=False)
        word = r.stdout.split()
        self.assertTrue(word, f"attacker printed nothing: {r.stderr}")
        if word[0] == "ok" and op != "write":
            return "ok", slurp(out)
        return word[0], (word[1] if len(word) > 1 else "")

    def assert_denied(self, result, secret):
        word, what = result
        self.assertEqual(word, "err", "the attacker got the file")
        self.assertIn(what, DENIED)
        self.assertFalse(secret.encode() in str(result).encode(), "the secret leaked")

    def pid_file(self, pid, name):
        return f"{self.m}/{pid}/{name}"

    def holder_copy(self, name, mode):
        """A root-owned copy of secret_holder in a fresh directory."""
        d = tempfile.mkdtemp(dir=self.dir)
        os.chmod(d, 0o755)
        b = os.path.join(d, name)
        shutil.copy(self.holder, b)
        os.chown(b, 0, 0)
        os.chmod(b, mode)
        return b

    def assert_no_right(self, user, pid, secret, userns=False):
        """image, reason and a nocr write all refused; the task untouched."""
        self.assert_denied(self.attack(user, "read", self.pid_file(pid, "image"),
                                       userns=userns), secret)
        self.assert_denied(self.attack(user, "read", self.pid_file(pid, "reason"),
                                       userns=userns), secret)
        self.assert_denied(self.attack(user, "write", self.pid_file(pid, "nocr"), "CR: mine",
                                       userns=userns), secret)
        self.assertEqual(rt.read(self.pid_file(pid, "nocr")), "0\n")
        self.assertEqual(tracer_of(pid), 0)

    # ---- positive control -------------------------------------------------

    def test_00_own_task_image_holds_its_secret(self):
        secret, path = self.secret(USERS[0])
        p = self.victim(as_user(USERS[0], [self.holder, self.work, "ready", path]))
        word, data = self.attack(USERS[0], "read", self.pid_file(p.pid, "image"))
        self.assertEqual(word, "ok", data)
        self.assertTrue(secret.encode() in data, "the image lacks the secret")
        self.assertEqual(self.attack(USERS[0], "read", self.pid_file(p.pid, "reason")),
                         ("ok", b""))
        self.assertEqual(tracer_of(p.pid), 0)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(rt.TIMEOUT), 0)

    # ---- 7: non-dumpable --------------------------------------------------

    def test_07_nondumpable_task_of_the_same_user(self):
        secret, path = self.secret(USERS[0])
        p = self.victim(as_user(USERS[0], [self.holder, self.work, "ready", path,
                                           "--nondumpable"]))
        # The kernel's own answer to the same user, for reference.
        self.assertEqual(self.attack(USERS[0], "read", f"/proc/{p.pid}/environ")[0], "err")
        self.assert_no_right(USERS[0], p.pid, secret)

    # ---- 8: capability not held by the caller -----------------------------

    def test_08_task_with_a_capability_the_caller_lacks(self):
        capbin = self.holder_copy("cap_holder", 0o755)
        run(["setcap", "cap_net_raw+ep", capbin])
        secret, path = self.secret(USERS[0])
        p = self.victim(as_user(USERS[0], [capbin, self.work, "ready", path, "--dumpable"]))
        self.assertNotEqual(status_caps(p.pid, "CapPrm"), 0, "setup: the victim holds no cap")
        self.assertEqual(self.attack(USERS[0], "read", f"/proc/{p.pid}/environ")[0], "err")
        self.assert_no_right(USERS[0], p.pid, secret)

    # ---- 9: root of a user namespace is not root here ---------------------

    def test_09_user_namespace_root_is_not_root(self):
        secret, path = self.secret("root")
        p = self.victim([self.holder, self.work, "ready", path])
        image = self.pid_file(p.pid, "image")
        self.assert_no_right(USERS[1], p.pid, secret, userns=True)
        self.assertEqual(rt.read(self.pid_file(p.pid, "reason")), "")
        # Marked by root: the attacker must not learn it (EACCES, not EBUSY).
        with open(self.pid_file(p.pid, "nocr"), "w") as f:
            f.write("CR: root's own mark")
        self.assert_denied(self.attack(USERS[1], "read", image, userns=True), secret)
        self.assert_denied(self.attack(USERS[1], "read", image), secret)
        self.assertEqual(tracer_of(p.pid), 0)

    # ---- 10: exec of a setuid-root binary between open and read ----------

    def suid_holder(self):
        return self.holder_copy("suid_holder", 0o4755)

    def exec_victim(self, suid, public_path, root_secret_path, stderr=None):
        return self.victim(as_user(USERS[0], [
            self.holder, self.work, "ready", public_path, "--exec-on-usr1",
            suid, self.work, "ready2", root_secret_path]), stderr=stderr)

    def test_10_setuid_exec_after_open(self):
        suid = self.suid_holder()
        secret, root_path = self.secret("root")
        _, public = self.secret(USERS[0])
        p = self.exec_victim(suid, public, root_path)
        opened, go = os.path.join(self.work, "opened"), os.path.join(self.work, "go")
        out = os.path.join(self.work, "out-open-wait")
        attacker = subprocess.Popen(
            as_user(USERS[0], [PY, self.attacker, "open-wait-read",
                               self.pid_file(p.pid, "image"), out, opened, go]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(attacker)
        rt.wait_for(lambda: os.path.exists(opened) or attacker.poll() is not None, "the open")
        p.send_signal(signal.SIGUSR1)
        rt.wait_for(lambda: os.path.exists(os.path.join(self.work, "ready2")), "the exec")
        self.assertEqual(status_caps(p.pid, "CapEff") != 0, True, "setup: exec did not raise")
        with open(go, "w"):
            pass
        stdout, _ = attacker.communicate(timeout=rt.TIMEOUT)
        self.assertFalse(stdout.startswith("ok") and secret.encode() in slurp(out),
                         "the image leaked the secret")
        # Opened now, the privileged process is refused outright.
        self.assert_denied(self.attack(USERS[0], "read", self.pid_file(p.pid, "image")), secret)
        self.assertEqual(tracer_of(p.pid), 0)

    def test_10_setuid_exec_racing_the_checkpoint(self):
        suid = self.suid_holder()
        secret, root_path = self.secret("root")
        _, public = self.secret(USERS[0])
        rng = random.Random(10)
        ready2, err = os.path.join(self.work, "ready2"), os.path.join(self.work, "victim-stderr")
        for i in range(RACE_ROUNDS):
            for f in ("ready", "ready2"):
                if os.path.exists(os.path.join(self.work, f)):
                    os.unlink(os.path.join(self.work, f))
            p = self.exec_victim(suid, public, root_path, stderr=err)
            out = os.path.join(self.work, f"race-{i}")
            # cat, not python: it opens within a millisecond or two.
            attacker = subprocess.Popen(
                as_user(USERS[0], ["sh", "-c", f'cat "$1" > "$2"', "sh",
                                   self.pid_file(p.pid, "image"), out]),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(attacker)
            # The exec lands somewhere around the check and the checkpoint (a
            # spread of moments, never a timing assertion).
            time.sleep(rng.uniform(0.0, 0.006))
            p.send_signal(signal.SIGUSR1)
            attacker.wait(rt.TIMEOUT)
            self.assertFalse(os.path.exists(out) and secret.encode() in slurp(out),
                             f"iteration {i}: the image leaked the secret")
            rt.wait_for(lambda: os.path.exists(ready2) or p.poll() is not None, "the exec")
            if not os.path.exists(ready2):
                # The exec began while the checkpoint's worker had the task
                # seized (before the exec took cred_guard_mutex): the kernel
                # does not raise a traced exec whose tracer lacks
                # CAP_SYS_PTRACE (LSM_UNSAFE_PTRACE), and the worker traces
                # with the caller's credentials, so the set-user-ID program
                # ran as the user and could not open root's file. Under a
                # root tracer it would have run as root: that is the check.
                text = slurp(err).decode(errors="replace")
                self.assertEqual((p.returncode, "open secret: Permission denied" in text),
                                 (2, True), f"iteration {i}: the victim ended: {text!r}")
                continue
            rt.wait_for(lambda: tracer_of(p.pid) == 0, "the tracer to let go")
            p.kill()
            p.wait()

    # ---- map_files: the kernel opens it only for CAP_CHECKPOINT_RESTORE ---

    def test_shared_memory_needs_checkpoint_restore_and_says_so(self):
        secret, path = self.secret(USERS[0])
        p = self.victim(as_user(USERS[0], [self.holder, self.work, "ready", path, "--shared"]))
        word, text = self.attack(USERS[0], "read", self.pid_file(p.pid, "reason"))
        self.assertEqual(word, "ok")
        self.assertIn(b"shared memory is read through /proc/%d/map_files" % p.pid, text)
        self.assertIn(b"CAP_CHECKPOINT_RESTORE", text)
        self.assertEqual(self.attack(USERS[0], "read", self.pid_file(p.pid, "image")),
                         ("err", "EBUSY"))
        # Root may: the same task checkpoints, shared page included.
        self.assertEqual(rt.read(self.pid_file(p.pid, "reason")), "")
        self.assertTrue(secret.encode() in rt.read(self.pid_file(p.pid, "image"), "rb"))
        self.assertEqual(tracer_of(p.pid), 0)

    # ---- seccomp: a non-root caller cannot suspend it ---------------------

    def test_seccomp_task_is_a_clear_refusal(self):
        secret, path = self.secret(USERS[0])
        p = self.victim(as_user(USERS[0], [self.holder, self.work, "ready", path, "--seccomp"]))
        word, what = self.attack(USERS[0], "read", self.pid_file(p.pid, "image"))
        self.assertEqual(word, "err", "the checkpoint went through")
        self.assertEqual(what, "EBUSY")
        self.assertIn("seccomp", rt.read(self.crfs.log.name))
        self.assertEqual(tracer_of(p.pid), 0)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(rt.TIMEOUT), 0, "the task was harmed")


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1))
    rt.BUILD = BUILD
    unittest.main(verbosity=2)
