#!/usr/bin/env python3
"""A task checkpointed inside pause(), sigsuspend() or nanosleep() while
stopped (SIGSTOP), then sent a signal it handles while still stopped, and
SIGCONT: the kernel runs the handler and ends that one call with EINTR. The
same must hold for the task left running after its checkpoint and for its
restored copies (state/restart.h, checkpoint/remote_syscall.h); before,
both ran the handler and went back into the call, asleep for good.

The probe (tests/probes/restart.c) waits in ONE call and writes its verdict
after it. Every wait is for a state: the task inside its syscall
(/proc/PID/syscall), in T, the verdict file.

usage: syscall_restart_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fs"))
import roundtrip_mount_test as rt  # noqa: E402

# The syscall each variant waits in (x86-64): glibc's nanosleep is clock_nanosleep.
SYSCALLS = {"pause_eintr": 34, "sigsuspend_eintr": 130, "nanosleep_eintr": 230,
            "thread_pause": 202}  # its main thread's pthread_join (futex)


def in_syscall(pid, nr):
    try:
        return rt.read(f"/proc/{pid}/syscall").split()[0] == str(nr)
    except (OSError, IndexError):
        return False


class SyscallRestart(rt.Base):
    def stopped_then_signalled(self, t, what, to=None):
        """SIGUSR1 while stopped, then SIGCONT (to the task, or to its child
        `to`): the verdict of that one call, once the task has ended."""
        to = to or t.pid
        rt.wait_for(lambda: rt.state_of(to) == "T", f"{what}: the task to be stopped")
        os.kill(to, signal.SIGUSR1)
        os.kill(to, signal.SIGCONT)
        rt.wait_for(lambda: os.path.exists(t.path("result")) and not rt.alive(t.pid),
                    f"{what}: the verdict")
        if t.proc:
            t.proc.wait(rt.TIMEOUT)
            t.proc = None
        out = rt.read(t.path("result")).strip()
        os.unlink(t.path("result"))
        return out

    def stopped_round_trip(self, variant):
        """The probe stopped in its syscall, checkpointed, signalled while
        stopped, then restored into its pid and signalled again: the image
        and the task (gone)."""
        probe = os.path.join(rt.BUILD, "tests/probes/probe_restart")
        t = self.task([probe, variant, "@DIR@"])
        rt.wait_for(lambda: in_syscall(t.pid, SYSCALLS[variant]) and rt.state_of(t.pid) == "S",
                    "the probe to sleep in its syscall")
        os.kill(t.pid, signal.SIGSTOP)
        rt.wait_for(lambda: rt.state_of(t.pid) == "T", "the probe to stop")
        pid = t.pid
        img = t.checkpoint()
        self.assertEqual(self.stopped_then_signalled(t, "after its checkpoint"), "PASS")
        rt.wait_for(lambda: rt.pid_free(pid), f"pid {pid} to be reaped")
        t.restore(img, str(pid))
        self.assertEqual(t.pid, pid)
        self.assertEqual(self.stopped_then_signalled(t, "restored"), "PASS",
                         rt.read(self.crfs.log.name))
        return img, t

    def run_variant(self, variant):
        img, t = self.stopped_round_trip(variant)
        t.restore(img, f"fresh-{variant}")
        self.assertEqual(self.stopped_then_signalled(t, "restored under a fresh name"), "PASS")
        shown = rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}").stdout
        self.assertIn('"syscall_restart"', shown)

    def test_edited_restart_record_is_refused(self):
        # Images are hostile: the record must describe the registers it comes with.
        t = self.task([os.path.join(rt.BUILD, "tests/probes/probe_restart"), "pause_eintr", "@DIR@"])
        rt.wait_for(lambda: in_syscall(t.pid, 34), "the probe to sleep in pause")
        img = t.checkpoint()
        edit = os.path.join(rt.BUILD, "tests/security/restore/crfs-imgedit")
        for n, (change, words) in enumerate((("@8:8=-4", "code -4 is no restart code"),
                                             ("@0:8=35", "are not syscall 35 restarted"),
                                             ("@0:8=5000", "syscall 5000"))):
            bad = t.path(f"bad{n}.img")
            r = rt.sh(f"{edit} {img} {bad} syscall-restart{change}")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = rt.sh(f"mkdir {self.m}/bad{n} && cp {bad} {self.m}/bad{n}/image")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("Invalid argument", r.stderr)
            self.assertIn(words, rt.read(f"{self.m}/bad{n}/status"))
        self.assertEqual(self.crfs.children(), [], "a task was left after a refused restore")

    def test_pause(self):
        self.run_variant("pause_eintr")

    def test_thread(self):
        # A thread other than the main one inside pause(), the main thread in
        # pthread_join with the signals blocked (no hand-off of its own):
        # stopped, checkpointed, SIGUSR1 (the thread's: the main thread blocks
        # it) while stopped, SIGCONT: one handler run and EINTR. Restored
        # before its own record existed, the thread ran the handler on its
        # restarted registers and slept in pause() again for good.
        img, _ = self.stopped_round_trip("thread_pause")
        shown = json.loads(rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}").stdout)
        self.assertEqual(shown["regs"]["syscall_restart"], {"nr": 202, "code": -512})  # futex
        self.assertEqual([th.get("syscall_restart") for th in shown["threads"]],
                         [None, {"nr": 34, "code": -514}])  # pause: -ERESTARTNOHAND

    def test_tree(self):
        # A tree's members wait at the tree's gate: each member inside a
        # restarting syscall is handed it back there (state/tree_restore.cc).
        # Both stopped in pause(), both sent SIGUSR1 while stopped, SIGCONT:
        # the root's call ends with EINTR, and the child's (its exit status,
        # which the root's check reads: one handler run, EINTR).
        probe = os.path.join(rt.BUILD, "tests/probes/probe_restart")
        t = self.task([probe, "tree_pause", "@DIR@"])
        kid = int(rt.read(t.path("kid")))
        for p in (t.pid, kid):
            rt.wait_for(lambda p=p: in_syscall(p, 34) and rt.state_of(p) == "S",
                        f"pid {p} to sleep in pause")
        pids = (t.pid, kid)

        def stop_all():
            for p in pids:
                os.kill(p, signal.SIGSTOP)
            for p in pids:
                rt.wait_for(lambda p=p: rt.state_of(p) == "T", f"pid {p} to stop")

        def signal_all(what):
            os.kill(kid, signal.SIGUSR1)
            os.kill(kid, signal.SIGCONT)
            return self.stopped_then_signalled(t, what)

        stop_all()
        img = t.checkpoint()
        self.assertEqual(signal_all("after its checkpoint"), "PASS", rt.read(self.crfs.log.name))
        for p in pids:
            rt.wait_for(lambda p=p: rt.pid_free(p), f"pid {p} to be reaped")
        t.restore(img, str(pids[0]))
        self.assertEqual(t.pid, pids[0])
        for p in pids:  # the tree comes back stopped, each process in T
            rt.wait_for(lambda p=p: rt.state_of(p) == "T", f"restored pid {p} to be stopped")
        self.assertEqual(signal_all("restored"), "PASS")
        shown = rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}").stdout
        self.assertIn('"syscall_restart"', shown)  # the root's; a tree's others are not shown

    def test_tree_thread(self):
        # A tree member's thread: bash waiting for thread_pause (the member),
        # the member stopped, checkpointed with its root, restored: its
        # thread's pause() ends with EINTR after one handler run. Restored
        # before, it hung in pause() (the member's threads were not traced).
        probe = os.path.join(rt.BUILD, "tests/probes/probe_restart")
        t = self.task(["/bin/bash", "-c", f"{probe} thread_pause @DIR@ & wait"])
        kid = int(rt.read(f"/proc/{t.pid}/task/{t.pid}/children").split()[0])
        rt.wait_for(lambda: in_syscall(kid, 202) and rt.state_of(kid) == "S",
                    "the member's main thread to wait in pthread_join")
        os.kill(kid, signal.SIGSTOP)
        rt.wait_for(lambda: rt.state_of(kid) == "T", "the member to stop")
        img = t.checkpoint()
        self.assertEqual(self.stopped_then_signalled(t, "after its checkpoint", kid), "PASS")
        for p in (t.pid, kid):
            rt.wait_for(lambda p=p: rt.pid_free(p), f"pid {p} to be reaped")
        t.restore(img, str(t.pid))
        self.assertEqual(self.stopped_then_signalled(t, "restored", kid), "PASS",
                         rt.read(self.crfs.log.name))

    def test_process_that_ends_during_the_handoff(self):
        # 16 threads in pause() with a handler, each handed its syscall back
        # after the main thread, which runs first: it ends the process
        # (exit_group, or execve of this probe) at once, killing threads
        # still being followed. Or a thread without a hand-off ends it,
        # while the main thread (in pause() with a handler) is followed. The restore did its part: it succeeds, and
        # the process's verdict is there. Before, the first killed thread
        # failed the restore ("task T exited"), though the process had run.
        probe = os.path.join(rt.BUILD, "tests/probes/probe_restart")
        for variant in ("threads_exit", "threads_exec", "thread_exits"):
            with self.subTest(variant):
                t = self.task([probe, variant, "@DIR@"])
                pid = t.pid
                img = t.checkpoint(f"{variant}.img")
                t.kill9()
                open(t.path("go"), "w").close()
                slot = f"{self.m}/{pid}"
                r = rt.sh(f"mkdir {slot} && cp {img} {slot}/image && cat {slot}/pid")
                self.assertEqual(r.returncode, 0, r.stderr + rt.read(f"{slot}/status"))
                self.assertEqual(int(r.stdout), pid)
                # "restored PID" while it runs, then its end (the exec'd probe's too)
                rt.wait_for(lambda: rt.read(f"{slot}/status") == "exited 0\n", "its end")
                self.assertEqual(rt.read(t.path("result")).strip(), "PASS")
                rt.wait_for(lambda: rt.pid_free(pid), f"pid {pid} to be reaped")

    def test_tree_member_that_ends_during_the_handoff(self):
        # The same as a tree's member (bash waiting for it): its follows run
        # at the tree's go (state/tree_restore.cc); bash's wait gets its exit.
        probe = os.path.join(rt.BUILD, "tests/probes/probe_restart")
        t = self.task(["/bin/bash", "-c", f"{probe} threads_exit @DIR@ & wait $!; echo $? > @DIR@/st"])
        rt.wait_for(lambda: os.path.exists(t.path("ready")), "the member to be ready")
        pid = t.pid
        kid = int(rt.read(f"/proc/{pid}/task/{pid}/children").split()[0])
        img = t.checkpoint()
        os.kill(kid, signal.SIGKILL)  # bash reaps it, writes 137 and ends
        t.proc.wait(rt.TIMEOUT)
        t.proc = None
        os.unlink(t.path("st"))
        for p in (pid, kid):
            rt.wait_for(lambda p=p: rt.pid_free(p), f"pid {p} to be reaped")
        open(t.path("go"), "w").close()
        slot = f"{self.m}/{pid}"
        r = rt.sh(f"mkdir {slot} && cp {img} {slot}/image && cat {slot}/pid")
        self.assertEqual(r.returncode, 0, r.stderr + rt.read(f"{slot}/status"))
        rt.wait_for(lambda: os.path.exists(t.path("st")), "bash's wait")
        self.assertEqual(rt.read(t.path("st")), "0\n")
        self.assertEqual(rt.read(t.path("result")).strip(), "PASS")

    def test_sigsuspend(self):
        self.run_variant("sigsuspend_eintr")

    def test_nanosleep(self):
        self.run_variant("nanosleep_eintr")



class Mlockall(rt.Base):
    """mlockall(MCL_FUTURE) comes back from its record (state/mlockall.h): the
    image with the flags zeroed restores a task whose new mappings are not
    locked (the probe FAILs), the image as taken one whose are (PASS), and
    flags out of range are refused."""

    def test_the_record_is_what_locks_later_mappings(self):
        t = self.task([os.path.join(rt.BUILD, "tests/probes/probe_mlockall"), "future", "@DIR@"])
        img = t.checkpoint()
        self.assertIn('"mlockall_flags":2', rt.sh(f"{rt.BUILD}/tools/crfs show --json {img}").stdout)
        t.kill9()
        edit = os.path.join(rt.BUILD, "tests/security/restore/crfs-imgedit")
        for n, (change, words) in enumerate((("@0:4=1", "mlockall flags 0x1"),
                                             ("@0:4=4", "mlockall flags 0x4"),
                                             ("@4:4=1", "(reserved 1)"))):
            bad = t.path(f"bad{n}.img")
            self.assertEqual(rt.sh(f"{edit} {img} {bad} mlockall{change}").returncode, 0)
            r = rt.sh(f"mkdir {self.m}/bad{n} && cp {bad} {self.m}/bad{n}/image")
            self.assertIn("Invalid argument", r.stderr)
            self.assertIn(words, rt.read(f"{self.m}/bad{n}/status"))
        zero = t.path("zero.img")
        self.assertEqual(rt.sh(f"{edit} {img} {zero} mlockall@0:4=0").returncode, 0)
        t.restore(zero, "zeroed")
        self.assertIn("a new mapping has lo 0", t.finish())
        os.unlink(t.path("result"))
        t.restore(img, "as-taken")
        self.assertEqual(t.finish(), "PASS")


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv[1])
    import unittest
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
