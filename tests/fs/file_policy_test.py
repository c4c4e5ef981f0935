#!/usr/bin/env python3
"""The file policy (docs/files.md) through the mounted tree:

- files open for writing or appending may have grown: the fd comes back at its
  recorded offset (O_APPEND: at the end);
- a file the task only reads that changed is refused, naming the fd and file,
  even with its size and mtime put back; the same bytes under a new inode restore;
- a binary copied to another inode (same bytes) restores; one overwritten in
  place is refused with an error naming the mapping and the file;
- hostile edits of the fingerprint records (as the unprivileged user crfsfd1,
  made here and removed after): out of range is EINVAL, an edited hash ESTALE.

usage: file_policy_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test as rt  # noqa: E402  (Crfsd, Task, wait_for, read, sh)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from users import unprivileged_user  # noqa: E402

USER = "crfsfd1"

# Opens its files, says ready, waits for SIGTERM, then writes "after" to both
# logs and reads the data file again.
LOGGER = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
log = open('log', 'w')
alog = open('alog', 'a')
data = open('data', 'rb')
first = data.read()
log.write('before\\n'); log.flush()
alog.write('before\\n'); alog.flush()
open('ready', 'w').close()
signal.sigwait([signal.SIGTERM])
log.write('after\\n'); log.flush()
alog.write('after\\n'); alog.flush()
data.seek(0)
open('result', 'w').write('same' if data.read() == first else 'differs')
"""


class Policy(rt.Base):
    def logger(self):
        return self.task(["sh", "-c", 'printf "%10000s" "" | tr " " D > data; '
                       'exec /usr/bin/python3 -c "$0"', LOGGER])

    def refused(self, img, slot):
        r = rt.sh(f"mkdir {self.m}/{slot} && cp {img} {self.m}/{slot}/image")
        self.assertNotEqual(r.returncode, 0, "the restore succeeded")
        status = rt.read(f"{self.m}/{slot}/status")
        self.assertTrue(status.startswith("error: "), status)
        self.assertEqual(self.crfs.children(), [], "a task was left after a failed restore")
        return r.stderr, status

    def test_log_files_that_grew_come_back_at_their_offsets(self):
        t = self.logger()
        img = t.checkpoint()
        t.kill9()
        for name in ("log", "alog"):  # the original task went on logging
            with open(t.path(name), "a") as f:
                f.write("grown after the checkpoint\n")
        t.restore(img, "logs")
        self.assertEqual(t.finish(), "same")
        # O_APPEND writes at the end; a plain writer at its own offset, as it
        # would have had the file grown under it while it ran.
        self.assertEqual(rt.read(t.path("alog")), "before\ngrown after the checkpoint\nafter\n")
        self.assertEqual(rt.read(t.path("log")), "before\nafter\nafter the checkpoint\n")

    def test_read_only_file_changed_is_refused_and_a_copy_restores(self):
        t = self.logger()
        img = t.checkpoint()
        t.kill9()
        data = t.path("data")
        st = os.stat(data)
        with open(data, "r+b") as f:  # same size, same inode, same mtime: other bytes
            f.seek(5000)
            f.write(b"x")
        os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
        err, status = self.refused(img, "changed")
        self.assertIn(f"{data} changed since the checkpoint: its content differs", status)
        self.assertIn("Stale file handle", err)
        # The original bytes under another inode: restores.
        with open(data + ".new", "wb") as f:
            f.write(b"D" * 10000)
        os.rename(data + ".new", data)
        self.assertNotEqual(os.stat(data).st_ino, st.st_ino)
        t.restore(img, "copy")
        self.assertEqual(t.finish(), "same")

    def binary_task(self):
        bindir = tempfile.mkdtemp(prefix="crfs-bin-")
        self.addCleanup(shutil.rmtree, bindir, True)
        exe = os.path.join(bindir, "ckpt_workload")
        shutil.copy(os.path.join(rt.BUILD, "tests/cr/ckpt_workload"), exe)
        t = self.task([exe, "@DIR@", "busy", "2"])
        img = t.checkpoint()
        t.kill9()
        return t, exe, img

    def test_binary_copied_to_another_inode_restores(self):
        t, exe, img = self.binary_task()
        ino = os.stat(exe).st_ino
        shutil.copy(exe, exe + ".new")
        os.rename(exe + ".new", exe)
        self.assertNotEqual(os.stat(exe).st_ino, ino)
        t.restore(img, "copied")
        self.assertEqual(t.finish(), "PASS")

    def test_binary_overwritten_in_place_is_refused(self):
        t, exe, img = self.binary_task()
        ino = os.stat(exe).st_ino
        with open(exe, "r+b") as f:  # a byte of the ELF header's page, which is mapped
            f.seek(0x40)
            b = f.read(1)
            f.seek(0x40)
            f.write(bytes([b[0] ^ 0xff]))
        self.assertEqual(os.stat(exe).st_ino, ino)
        err, status = self.refused(img, "inplace")
        self.assertIn(f"{exe} changed since the checkpoint: the mapped content differs", status)
        self.assertRegex(status, r"mapping [0-9a-f]+-[0-9a-f]+: ")
        self.assertIn("Stale file handle", err)


class HostileEdits(rt.Base):
    """The fingerprint records edited by an unprivileged user, checksum fixed."""

    def setUp(self):
        super().setUp()
        try:
            self.make_image()
        except BaseException:
            self.doCleanups()
            rt.Base.tearDown(self)
            raise

    def make_image(self):
        pw = self.enterContext(unprivileged_user(USER, "-N", "-g", "nogroup"))
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.d = tempfile.mkdtemp(prefix="crfsfd-")
        self.addCleanup(shutil.rmtree, self.d, True)
        os.chmod(self.d, 0o755)
        os.chown(self.d, self.uid, self.gid)
        self.edit = os.path.join(rt.BUILD, "tests/security/restore/crfs-imgedit")
        victim = os.path.join(rt.BUILD, "tests/security/restore/restore_victim")
        m, d = self.m, self.d
        r = self.as_user(f"cd {d} && {victim} {d} </dev/null >/dev/null 2>&1 & p=$!; "
                         f"until [ -e {d}/ready ]; do sleep 0.01; done; "
                         f"cp {m}/$p/image {d}/snap.img && kill -9 $p && wait $p; "
                         f"chmod 644 {d}/snap.img")
        self.assertTrue(os.path.exists(f"{d}/snap.img"), r.stderr)
        self.records = [eval(line, {}, {}) for line in subprocess.run(
            [self.edit, f"{d}/snap.img", "--list"], capture_output=True, text=True,
            check=True).stdout.splitlines()]
        self.n = 0

    def as_user(self, cmd):
        return subprocess.run(["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                               "--clear-groups", "--inh-caps=-all", "sh", "-c", cmd],
                              capture_output=True, text=True, timeout=rt.TIMEOUT,
                              stdin=subprocess.DEVNULL)

    def nth(self, type_, pred=lambda r: True):
        for r in self.records:
            if r["type"] == type_ and pred(r):
                return f"{type_}#{r['n']}"
        raise AssertionError(f"no {type_} record")

    def vma_start(self, name):
        return next(r["start"] for r in self.records
                    if r["type"] == "vma" and r["path"].endswith("/" + name))

    def restore(self, *edits):
        self.n += 1
        img = f"{self.d}/e{self.n}.img"
        subprocess.run([self.edit, f"{self.d}/snap.img", img, *edits], check=True,
                       capture_output=True)
        os.chmod(img, 0o644)
        r = self.as_user(f"mkdir {self.m}/s{self.n} && cp {img} {self.m}/s{self.n}/image")
        status = rt.read(f"{self.m}/s{self.n}/status")
        return r.returncode == 0, r.stderr, status

    def refused(self, errtext, *edits):
        ok, err, status = self.restore(*edits)
        self.assertFalse(ok, status)
        self.assertIn(errtext, err)
        self.assertTrue(status.startswith("error: "), status)
        self.assertEqual(self.crfs.children(), [], "a task was left after a failed restore")
        return status

    def test_the_image_has_fingerprints_and_restores(self):
        types = [r["type"] for r in self.records]
        self.assertIn("fd-content", types)  # fd 3: read-only
        self.assertIn("vma-content", types)  # the private mapping of mapme
        ok, err, status = self.restore()
        self.assertTrue(ok, err)

    def test_out_of_range_fingerprints_are_einval(self):
        fdc = self.nth("fd-content")
        vmc = self.nth("vma-content")
        st = self.refused("Invalid argument", fdc + ".size=1")
        self.assertIn("fd 3: fd-content of 1 bytes", st)
        self.refused("Invalid argument", fdc + ".reserved=7")
        self.refused("Invalid argument", vmc + ".bytes=0x100000000")
        # A fingerprint moved to the writable shared mapping (not checked by content).
        st = self.refused("Invalid argument", vmc + f".start={self.vma_start('shared')}")
        self.assertIn("vma-content", st)
        # One naming no fd or mapping of the image at all.
        self.refused("Bad message", fdc + ".fd=99")
        self.refused("Bad message", vmc + ".start=4096")

    def test_an_edited_hash_is_a_changed_file(self):
        # The identity moved off the file (ctime) makes the restore read it:
        # then the edited hash is a change.
        fdc = self.nth("fd-content")
        st = self.refused("Stale file handle", fdc + ".hash=1", fdc + ".ctime_nsec=1")
        self.assertIn(f"fd 3: {self.d}/data changed since the checkpoint", st)
        mapme = self.vma_start("mapme")
        vmc = self.nth("vma-content", lambda r: r["start"] == mapme)
        st = self.refused("Stale file handle", vmc + ".hash=1", vmc + ".ctime_nsec=1")
        self.assertIn(f"{self.d}/mapme changed since the checkpoint", st)
        # The identity alone edited: the bytes are read, found the same, restored.
        ok, err, status = self.restore(fdc + ".ctime_nsec=1", vmc + ".ctime_nsec=1")
        self.assertTrue(ok, err)

    def test_a_fingerprint_does_not_open_a_file_the_writer_cannot_read(self):
        # fd 3 retargeted to a root-only file with the same bytes (so the same
        # size and hash): the look-up is the writer's, so it is refused.
        secret = tempfile.mktemp(prefix="crfsfd-secret-", dir="/var/tmp")
        with open(secret, "wb") as f:
            f.write(b"D" * 4096)
        os.chmod(secret, 0o600)
        self.addCleanup(os.unlink, secret)
        st = os.stat(secret)
        fd3 = self.nth("fd", lambda r: r["fd"] == 3)
        status = self.refused("Permission denied", fd3 + ".path=" + secret,
                              fd3 + f".ino={st.st_ino}", fd3 + f".dev={st.st_dev}")
        self.assertIn(secret, status)


    # --- the settings record: the writer's rights decide (kernel checks) -----
    def test_settings_the_writer_may_not_have_are_refused_by_the_kernel(self):
        st = self.refused("Operation not permitted", "settings.policy=1", "settings.rt_priority=10",
                          "settings.timer_slack_ns=0")
        self.assertIn("setting scheduling policy SCHED_FIFO priority 10", st)
        st = self.refused("Permission denied", "settings.oom_score_adj=-500")
        self.assertIn("setting oom_score_adj -500", st)

    def test_settings_out_of_range_are_einval(self):
        for edit, words in [("settings.policy=6", "scheduling policy 6"),
                            ("settings.rt_priority=5", "scheduling policy 0 priority 5"),
                            ("settings.dumpable=2", "dumpable 2"),
                            ("settings.oom_score_adj=1001", "oom_score_adj 1001"),
                            ("settings.timer_slack_ns=0", "timer slack 0 ns"),
                            ("settings.membarrier=1", "membarrier registrations 0x1"),
                            ("settings.reserved=1", "reserved 1")]:
            st = self.refused("Invalid argument", edit)
            self.assertIn(words, st)
        self.refused("Bad message", "settings.cpus_len=9")  # the tail says otherwise


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
