#!/usr/bin/env python3
"""Seccomp filters and POSIX timers in images (state/seccomp.cc, state/timers.cc),
as a real unprivileged user.

A user `crfsfx1` (made in setup, removed after) runs a probe that holds a
seccomp filter (getpid answers EACCES, with no_new_privs). Reading its
filters takes CAP_SYS_ADMIN: the user's `reason` says so and its `cp` of
`image` is EBUSY; root checkpoints it and hands the image to the user, who
edits it with crfs-imgedit (checksum fixed) and writes it into restore
slots. The filter must come back with the user's own rights (the kernel's
no_new_privs rule decides), never be dropped or changed silently, and never
stop the restorer after it reported success. The user's own probe with POSIX
timers checkpoints and restores as the user; edited timer records are refused
or meet the kernel's own rule (CLOCK_REALTIME_ALARM needs CAP_WAKE_ALARM).

usage: seccomp_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
import restore_attacks_test as ra  # noqa: E402  (run_as, SlotAttackCase)
import roundtrip_mount_test as rt  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "..", "support"))
from users import unprivileged_user  # noqa: E402

USER = "crfsfx1"


def setUpModule():
    pw = unittest.enterModuleContext(unprivileged_user(USER, "-N", "-g", "nogroup"))
    ra.UID, ra.GID = pw.pw_uid, pw.pw_gid


class SeccompImages(ra.SlotAttackCase):
    @classmethod
    def setUpClass(cls):
        cls.crfs = rt.Crfsd()
        cls.procs = []
        try:
            cls.d = tempfile.mkdtemp(prefix="crfsfx-")
            os.chmod(cls.d, 0o777)
            cls.edit = os.path.join(ra.BUILD, "tests/security/restore/crfs-imgedit")
            cls.probe = os.path.join(ra.BUILD, "tests/probes", cls.PROBE)
            p = cls.start_probe()
            cls.take_image(p)
            p.kill()
            p.wait(ra.TIMEOUT)
            cls.records = [eval(line, {}, {}) for line in subprocess.run(
                [cls.edit, f"{cls.d}/snap.img", "--list"], capture_output=True, text=True,
                check=True).stdout.splitlines()]
        except BaseException:
            cls.tearDownClass()
            raise
        cls.n = 0

    @classmethod
    def take_image(cls, p):
        """Makes d/snap.img of probe p, readable by the user."""
        m, d = cls.crfs.mnt, cls.d
        # The user may not read the filters: a reason, and EBUSY.
        r = ra.run_as(f"cat {m}/{p.pid}/reason")
        cls.user_reason = r.stdout
        r = ra.run_as(f"cp {m}/{p.pid}/image {d}/user.img")
        cls.user_cp = (r.returncode, r.stderr)
        # Root may: the image goes to the user.
        subprocess.run(["cp", f"{m}/{p.pid}/image", f"{d}/snap.img"], check=True)
        os.chmod(f"{d}/snap.img", 0o644)

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            if p.poll() is None:
                p.kill()
                p.wait(ra.TIMEOUT)
        cls.crfs.stop()
        shutil.rmtree(cls.d, ignore_errors=True)

    VARIANT = "seccomp_getpid"
    PROBE = "probe_exact"

    @classmethod
    def start_probe(cls):
        for f in ("ready", "result"):
            if os.path.exists(f"{cls.d}/{f}"):
                os.unlink(f"{cls.d}/{f}")
        p = subprocess.Popen(
            ["setpriv", f"--reuid={ra.UID}", f"--regid={ra.GID}", "--clear-groups",
             "--inh-caps=-all", cls.probe, cls.VARIANT, cls.d],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.procs.append(p)
        rt.wait_for(lambda: os.path.exists(f"{cls.d}/ready") or p.poll() is not None,
                    "the probe to be ready")
        assert os.path.exists(f"{cls.d}/ready"), "the probe failed its setup"
        return p

    def verdict(self, pid):
        os.kill(pid, signal.SIGTERM)
        rt.wait_for(lambda: os.path.exists(f"{self.d}/result") and not rt.alive(pid),
                    "the probe's verdict")
        out = rt.read(f"{self.d}/result").strip()
        os.unlink(f"{self.d}/result")
        return out

    def filter_rec(self):
        return self.rec("seccomp-filter")

    # --- reading the filters needs CAP_SYS_ADMIN ----------------------------
    def test_user_cannot_read_the_filters_and_is_told_why(self):
        self.assertIn("seccomp: 1 filter(s): reading them (PTRACE_SECCOMP_GET_FILTER) needs "
                      "CAP_SYS_ADMIN", self.user_reason)
        self.assertNotEqual(self.user_cp[0], 0)
        self.assertIn("Device or resource busy", self.user_cp[1])

    # --- the user restores the image: the filter acts -----------------------
    def test_user_restores_the_filter_with_its_own_rights(self):
        ok, err, status, pid = self.restore(f"{self.d}/snap.img")
        self.assertTrue(ok, f"{err} {status}")
        self.assertEqual(rt.read(f"/proc/{pid}/status").split("Seccomp_filters:")[1].split()[0],
                         "1")
        self.assertEqual(self.verdict(pid), "PASS")

    # --- no_new_privs cleared: the kernel refuses the filter to the user ----
    def test_filter_without_no_new_privs_is_the_kernels_eacces(self):
        img = self.edited(self.rec("creds") + "@72:4=0")  # CredsRecord.no_new_privs
        status = self.assert_refused(img, "Permission denied")
        self.assertIn("installing seccomp filter 0 of 1", status)

    # --- flags the restore would hand to seccomp() with another meaning -----
    def test_tsync_and_listener_flags_are_refused(self):
        for flags in (1, 8, 1 << 31):
            img = self.edited(self.filter_rec() + f"@4:4={flags}")
            status = self.assert_refused(img, "Invalid argument")
            self.assertIn(f"seccomp filter 0: flags 0x{flags:x}", status)

    # --- a filter that would stop the restorer's last syscalls --------------
    def test_filter_refusing_the_restorers_close_is_refused_before_anything_runs(self):
        # Instruction 1 is `jeq #SYS_getpid`: make it SYS_close (3).
        img = self.edited(self.filter_rec() + "@28:4=3")
        status = self.assert_refused(img, "Operation not permitted")
        self.assertIn("answers SECCOMP_RET_ERRNO 13 to the restorer's close(2)", status)

    def test_filter_killing_on_rt_sigreturn_is_refused(self):
        img = self.edited(self.filter_rec() + "@28:4=15",  # rt_sigreturn
                          self.filter_rec() + "@36:4=0")   # ret KILL_THREAD
        status = self.assert_refused(img, "Operation not permitted")
        self.assertIn("SECCOMP_RET_KILL_THREAD to the restorer's rt_sigreturn(2)", status)

    # --- a program the kernel would not run -----------------------------------
    def test_bad_program_is_refused(self):
        img = self.edited(self.filter_rec() + "@16:2=0x99")  # an unknown opcode first
        self.assert_refused(img, "Invalid argument")
        img = self.edited(self.filter_rec() + "@8:4=5")  # len 5 for 4 instructions
        ok, err, status, pid = self.restore(img)
        self.assertFalse(ok)
        self.assertIn("bad image", status)


class TimerImages(SeccompImages):
    """The user's own task with POSIX timers (tests/probes/exact.c
    posix_timers: timers 0, 2, 3), checkpointed by the user."""
    VARIANT = "posix_timers"

    @classmethod
    def take_image(cls, p):
        """The user's own task: the user checkpoints it."""
        r = ra.run_as(f"cp {cls.crfs.mnt}/{p.pid}/image {cls.d}/snap.img")
        assert r.returncode == 0, r.stderr

    def timer(self, n):
        return f"{self.rec('posix-timer')[:-1]}{n}" if n else self.rec("posix-timer")

    # Not this class's: the seccomp tests.
    test_user_cannot_read_the_filters_and_is_told_why = None
    test_user_restores_the_filter_with_its_own_rights = None
    test_filter_without_no_new_privs_is_the_kernels_eacces = None
    test_tsync_and_listener_flags_are_refused = None
    test_filter_refusing_the_restorers_close_is_refused_before_anything_runs = None
    test_filter_killing_on_rt_sigreturn_is_refused = None
    test_bad_program_is_refused = None

    def test_user_restores_the_timers(self):
        ok, err, status, pid = self.restore(f"{self.d}/snap.img")
        self.assertTrue(ok, f"{err} {status}")
        self.assertEqual(self.verdict(pid), "PASS")

    def test_signal_out_of_range_is_refused(self):
        for signo in (9, 19, 65, 0):
            status = self.assert_refused(self.edited(self.timer(0) + f"@12:4={signo}"),
                                         "Invalid argument")
            self.assertIn(f"POSIX timer 0: signal {signo}", status)

    def test_unknown_clock_and_notification_are_refused(self):
        status = self.assert_refused(self.edited(self.timer(0) + "@4:4=-14"), "Invalid argument")
        self.assertIn("POSIX timer 0: clock -14", status)
        status = self.assert_refused(self.edited(self.timer(0) + "@8:4=2"), "Invalid argument")
        self.assertIn("POSIX timer 0: notify 2", status)

    def test_alarm_clock_is_the_kernels_to_refuse(self):
        # CLOCK_REALTIME_ALARM: timer_create asks for CAP_WAKE_ALARM (EPERM), or
        # the machine has no alarm-capable RTC (EOPNOTSUPP): the kernel's answer.
        ok, err, status, pid = self.restore(self.edited(self.timer(0) + "@4:4=8"))
        self.assertFalse(ok, status)
        self.assertRegex(err, "Operation not (permitted|supported)")
        self.assertIn("making POSIX timer 0 with its id and time", status)
        self.assertEqual(self.crfs.children(), [], "a task was left after a failed restore")

    def test_ids_out_of_order_are_a_bad_image(self):
        ok, err, status, pid = self.restore(self.edited(self.timer(0) + "@0:4=7"))
        self.assertFalse(ok)
        self.assertIn("out of order", status)


class LockImages(TimerImages):
    """The user's own task holding locks (tests/probes/exact.c locks: a shared
    flock, an OFD write lock on 10-19, a POSIX read lock from 100 on)."""
    VARIANT = "locks"
    test_user_restores_the_timers = None
    test_signal_out_of_range_is_refused = None
    test_unknown_clock_and_notification_are_refused = None
    test_alarm_clock_is_the_kernels_to_refuse = None
    test_ids_out_of_order_are_a_bad_image = None

    def lock(self, n):
        recs = [r for r in self.records if r["type"] == "file-lock"]
        return f"file-lock#{recs[n]['n']}"

    def test_user_restores_the_locks(self):
        ok, err, status, pid = self.restore(f"{self.d}/snap.img")
        self.assertTrue(ok, f"{err} {status}")
        self.assertEqual(self.verdict(pid), "PASS")

    def test_a_lock_held_by_someone_else_now_is_a_clear_error(self):
        import fcntl
        import struct
        with open(f"{self.d}/locked", "r+") as f:
            # An OFD write lock on byte 15 (F_OFD_SETLK = 37), as root.
            fcntl.fcntl(f, 37, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 15, 1, 0))
            ok, err, status, pid = self.restore(f"{self.d}/snap.img")
        self.assertFalse(ok, status)
        self.assertIn("Resource temporarily unavailable", err)
        self.assertIn(f"taking the OFD WRITE lock on bytes 10-19 of fd 4 ({self.d}/locked) again",
                      status)
        self.assertEqual(self.crfs.children(), [], "a task was left after a failed restore")

    def test_kind_type_and_range_out_of_range_are_refused(self):
        for edit, words in (("@4:4=4", "kind 4"), ("@8:4=2", "type 2"), ("@12:4=1", "reserved 1"),
                            ("@16:8=-1", "range -1 + ")):
            status = self.assert_refused(self.edited(self.lock(1) + edit), "Invalid argument")
            self.assertIn(words, status)
        # A flock with a range: flock has none.
        status = self.assert_refused(self.edited(self.lock(0) + "@24:8=5"), "Invalid argument")
        self.assertIn("range 0 + 5", status)


if __name__ == "__main__":
    ra.BUILD = os.path.abspath(sys.argv[1])
    rt.BUILD = ra.BUILD
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
