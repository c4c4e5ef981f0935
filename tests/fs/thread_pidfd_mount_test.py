#!/usr/bin/env python3
"""thpidfd: pidfds of threads (PIDFD_THREAD, Linux 6.9) in a tree, through the
mount (docs/trees.md "pidfds between members"): cp /crfs/PID/image, kill -9
the whole tree, restore into the same pids.

  - /usr/bin/python3 P with a thread PT forks C, which starts a thread CT.
    P holds a pidfd of its own thread PT and a PIDFD_NONBLOCK one of C's
    thread CT (and an inheritable dup of it); C holds one of P's thread PT.
    Each waits for the other's threads in its blob: no cycle. After the
    restore each pidfd names its thread (fdinfo Pid:, the flags, close-on-
    exec), a SIGUSR2 through it reaches that very thread (sigwait there), and
    poll says readable once the thread has exited.
  - a normal user in the restore_pid_group group restores the same tree, and
    its edits of a thread's pidfd-target are refused with nothing made: pid
    1, a thread of a process outside the image (one of this test's), a
    PIDFD_THREAD pidfd of the holder's own thread edited to a tid outside;
    and C's thread given the tid of a thread outside (in use: its blob fails
    while P waits for it): the tree is killed, C's failure named.
  - thpidfd2, an event loop waiting for its worker thread's exit: python P
    with a worker W opens a pidfd of W, watches it in an epoll and forks C,
    which inherits both (one description of each) and watches the pidfd in
    an epoll of its own too. After the restore C sets the pidfd non-blocking
    and ends W through it (pidfd_send_signal); P's epoll (its own and C's
    shared one) and C's see W's exit, and P's pidfd is non-blocking: one
    description. As a normal user (s19tpu1): the same tree, and its edits
    of C's share-fd record (another end, another owner), of its pidfd's
    open flags and of the epolls' watches of the pidfd (EPOLLWAKEUP, an fd
    it does not have) refused, nothing made; W given a tid in use: P fails in its
    blob before it hands the pidfd over, C reads end of file, the tree is
    killed and P's failure named.

usage: thread_pidfd_mount_test.py BUILD_DIR  (any unittest args after)
"""
import json
import os
import select
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, stat  # noqa: E402
import unix_tree_mount_test  # noqa: E402
from pidfd_tree_mount_test import PidfdTree, PidfdUser, imgedit  # noqa: E402

# P (pids[0]) and C (pids[1]), each with one thread waiting for SIGUSR2 in
# sigwait (SIGUSR1 and SIGUSR2 blocked everywhere). After SIGUSR1 to P: P
# checks its pidfds, signals CT through its pidfd, polls it until CT has
# exited, then SIGUSR1s C, which does the same with PT; P polls its own
# pidfd of PT, reaps C and writes PASS to `out`.
PRELUDE = """
import os, select, signal, threading
PIDFD_THREAD = os.O_EXCL
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
def put(name, text=""):
    with open(name + ".t", "w") as f:
        f.write(text)
    os.rename(name + ".t", name)
def wait_file(name):
    while not os.path.exists(name):
        signal.sigtimedwait({signal.SIGCHLD}, 0.01)
"""
TREE = PRELUDE + """
def info(fd, key):
    for line in open(f"/proc/self/fdinfo/{fd}"):
        if line.startswith(key):
            return line.split()[1]
def waiter(name):
    def run():
        got = signal.sigwait({signal.SIGUSR2})
        put(name, f"{threading.get_native_id()} {got}")
    t = threading.Thread(target=run)
    t.start()
    while not t.native_id:
        signal.sigtimedwait({signal.SIGCHLD}, 0.001)
    return t
def names(fd, tid, nonblock, inheritable):
    flags = int(info(fd, "flags:"), 8)
    return (int(info(fd, "Pid:")) == tid and bool(flags & PIDFD_THREAD) and
            bool(flags & os.O_NONBLOCK) == nonblock and os.get_inheritable(fd) == inheritable)
def through(fd, name, tid):
    signal.pidfd_send_signal(fd, signal.SIGUSR2)
    p = select.poll()
    p.register(fd, select.POLLIN)
    p.poll()  # readable once the thread has exited
    wait_file(name)
    return open(name).read() == f"{tid} {int(signal.SIGUSR2)}"
pt = waiter("pt.got")
c = os.fork()
if c == 0:
    ct = waiter("ct.got")
    put("ct", str(ct.native_id))
    up = os.pidfd_open(pt.native_id, PIDFD_THREAD)
    put("c.ready")
    signal.sigwait({signal.SIGUSR1})
    ok = names(up, pt.native_id, False, False) and through(up, "pt.got", pt.native_id)
    ct.join()
    put("c.out", "PASS" if ok else f"FAIL {info(up, 'Pid:')} {info(up, 'flags:')}")
    os._exit(0)
wait_file("c.ready")
ct = int(open("ct").read())
own = os.pidfd_open(pt.native_id, PIDFD_THREAD)
down = os.pidfd_open(ct, PIDFD_THREAD | os.O_NONBLOCK)
again = os.dup(down)
os.set_inheritable(again, True)
put("half")
signal.sigwait({signal.SIGUSR1})
why = []
if not names(own, pt.native_id, False, False):
    why.append(f"own {info(own, 'Pid:')} {info(own, 'flags:')}")
if not names(down, ct, True, False) or not names(again, ct, True, True):
    why.append(f"down {info(down, 'Pid:')} {info(down, 'flags:')} {info(again, 'Pid:')}")
if not through(down, "ct.got", ct):
    why.append("SIGUSR2 through the pidfd of C's thread")
os.kill(c, signal.SIGUSR1)
p = select.poll()
p.register(own, select.POLLIN)
p.poll()  # C's SIGUSR2 ended PT
pt.join()
st = os.waitid(os.P_PID, c, os.WEXITED)
said = open("c.out").read()
with open("out", "w") as f:
    f.write("PASS\\n" if not why and said == "PASS" and st.si_status == 0 else
            f"FAIL {why} {said} {st}\\n")
"""

# thpidfd2: P, its worker W (ends on SIGUSR2), an epoll watching W's pidfd,
# forked C (the pidfd and the epoll inherited) with an epoll of its own.
# SIGUSR1 to P after the restore: P's epoll has nothing yet; P SIGUSR1s C,
# which sets the pidfd non-blocking and sends SIGUSR2 to W through it; both
# epolls see W's exit.
LOOP = PRELUDE + """
def exited(ev, fd):
    return len(ev) == 1 and ev[0][0] == fd and bool(ev[0][1] & select.EPOLLIN)
w = threading.Thread(target=lambda: signal.sigwait({signal.SIGUSR2}))
w.start()
while not w.native_id:
    signal.sigtimedwait({signal.SIGCHLD}, 0.001)
pfd = os.pidfd_open(w.native_id, PIDFD_THREAD)
loop = select.epoll()
loop.register(pfd, select.EPOLLIN)
c = os.fork()
if c == 0:
    mine = select.epoll()
    mine.register(pfd, select.EPOLLIN | select.EPOLLET)
    put("c.ready")
    signal.sigwait({signal.SIGUSR1})
    os.set_blocking(pfd, False)
    signal.pidfd_send_signal(pfd, signal.SIGUSR2)
    ev = mine.poll(60)
    put("c.out", "PASS" if exited(ev, pfd) else f"FAIL {ev}")
    os._exit(0)
wait_file("c.ready")
put("half")
signal.sigwait({signal.SIGUSR1})
before = loop.poll(0)
os.kill(c, signal.SIGUSR1)
ev = loop.poll(60)
w.join()
one = not os.get_blocking(pfd)
st = os.waitid(os.P_PID, c, os.WEXITED)
said = open("c.out").read()
with open("out", "w") as f:
    f.write("PASS\\n" if before == [] and exited(ev, pfd) and one and said == "PASS" and
            st.si_status == 0 else f"FAIL {before} {ev} {one} {said} {st}\\n")
"""


class ThreadPidfd(trees_mount_test.TreeBase):
    def path(self, name):
        return os.path.join(self.dir, name)

    def thread_tree(self, user_prefix=()):
        """The tree of TREE, run until it writes `half`: (proc, [P, C], C's thread)."""
        proc, pids = PidfdTree.run_script(self, "tp.py", TREE, user_prefix)
        self.assertEqual(len(pids), 2)
        wait_for(lambda: all(stat(p)[0] == "S" for p in pids), "the tree to wait")
        with open(self.path("ct")) as f:
            return proc, pids, int(f.read())

    def finish(self, pids):
        """SIGUSR1 to P; the tree ends and says PASS."""
        os.kill(pids[0], 10)
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the tree to end")
        self.assertEqual(self.out(), "PASS\n")

    def test_unrestored_tree_passes(self):
        proc, pids, _ = self.thread_tree()
        self.finish(pids)

    def test_pidfds_of_own_and_other_members_threads_name_the_restored_threads(self):
        proc, pids, _ = self.thread_tree()
        self.round_trip(proc, pids)
        self.finish(pids)

    def tid_in_use(self, as_user, run, img, pids, thread, target, expect):
        """Thread record `thread` and pidfd-target `target` given the tid of a
        thread outside the image (in use): the restore fails after the
        members were made, all of them killed; `expect` with {o}, that tid."""
        stop = threading.Event()
        outside = threading.Thread(target=stop.wait)
        outside.start()
        try:
            o = outside.native_id
            self.refused_as_user(as_user, run, img, pids,
                                 [f"thread#{thread}.tid={o}", f"thread-attrs#{thread}.tid={o}",
                                  f"pidfd-target#{target}.pid={o}"],
                                 expect.format(o=o), made=True)
        finally:
            stop.set()
            outside.join()

    def loop_tree(self, user_prefix=()):
        """The tree of LOOP, run until it writes `half`: (proc, [P, C])."""
        proc, pids = PidfdTree.run_script(self, "loop.py", LOOP, user_prefix)
        self.assertEqual(len(pids), 2)
        wait_for(lambda: all(stat(p)[0] == "S" for p in pids), "the tree to wait")
        return proc, pids

    def test_event_loop_sees_its_worker_exit_through_a_pidfd_shared_with_a_fork(self):
        proc, pids = self.loop_tree()
        self.round_trip(proc, pids)
        self.finish(pids)


USER, GROUP = "s14tpu1", "s14tpg1"


class ThreadPidfdUser(unix_tree_mount_test.InGroup, ThreadPidfd):
    """A normal user in the restore_pid_group group: its tree comes back as
    the user, and its edited thread targets are refused, nothing made."""

    user, group, prefix, mode = USER, GROUP, "crfs-s14tp-", 0o755

    targets = PidfdUser.targets  # the image's pidfd-target records: [(fd, pid)]

    def test_user_restores_its_tree_and_edited_thread_targets_are_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids, ct = self.thread_tree(user_prefix=as_user)
        top, c = pids
        img = self.checkpoint_as(run, top)
        self.kill_all(proc, pids)
        got = self.targets(img)  # P's (own thread PT, C's thread CT), then C's (PT)
        pt = got[0][1]
        self.assertEqual([pid for _, pid in got], [pt, ct, pt])
        self.assertNotIn(pt, pids)
        stop = threading.Event()
        outside = threading.Thread(target=stop.wait)  # a thread of a process outside
        outside.start()
        try:
            for edits, expect in [
                (["pidfd-target#1.pid=1"], "pidfd of thread 1, not a thread of a process of "
                 "the tree"),
                ([f"pidfd-target#2.pid={outside.native_id}"],
                 f"pidfd of thread {outside.native_id}, not a thread of a process of the tree"),
                ([f"pidfd-target#0.pid={outside.native_id}"],
                 f"pidfd of thread {outside.native_id}, not a thread of a process of the tree"),
            ]:
                self.refused_as_user(as_user, run, img, pids, edits, expect)
        finally:
            stop.set()
            outside.join()
        # C's thread cannot be made (its tid is in use) while P waits for it:
        # no one waits for ever, the tree is killed, C's failure is named.
        self.tid_in_use(as_user, run, img, pids, 3, 1,
                        f"process {c}: restore: creating thread {{o}}: File exists")
        self.restore_as(run, pw, img, pids)
        self.finish(pids)

    test_unrestored_tree_passes = None
    test_pidfds_of_own_and_other_members_threads_name_the_restored_threads = None
    test_event_loop_sees_its_worker_exit_through_a_pidfd_shared_with_a_fork = None


class ThreadPidfdLoopUser(unix_tree_mount_test.InGroup, ThreadPidfd):
    """thpidfd2 as a normal user: the event loop tree comes back, and its
    edits of the description C is given are refused, nothing made."""

    user, group, prefix, mode = "s19tpu1", "s19tpg1", "crfs-s19tp-", 0o755

    targets = PidfdUser.targets  # the image's pidfd-target records: [(fd, pid)]

    def test_user_restores_its_event_loop_and_edited_sharing_is_refused(self):
        pw, as_user, run = self.as_user(self.user, "--init-groups")
        proc, pids = self.loop_tree(user_prefix=as_user)
        top, c = pids
        img = self.checkpoint_as(run, top)
        self.kill_all(proc, pids)
        r = subprocess.run([imgedit(), img, "--list"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        (pfd, tid), = self.targets(img)  # P's; C's is given (share-fd)
        fds = [x for x in recs if x["type"] == "fd"]
        shares = [x for x in recs if x["type"] == "share-fd"]
        k = [i for i, x in enumerate(shares) if x["owner_fd"] == pfd and x["fd"] == pfd]
        self.assertEqual(len(k), 1, shares)
        k = k[0]
        n = [i for i, x in enumerate(fds) if x["kind"] == 52 and x["fd"] == pfd]
        self.assertEqual(len(n), 1, "C's fd: kind 52")
        n = n[0]
        for edits, expect in [
            ([f"share-fd#{k}.end=1"], f"fd {pfd}: given by fd {pfd} of process {top}, a pidfd "
             "of a thread, as share end 1"),
            ([f"fd#{n}.open_flags={os.O_RDWR | os.O_EXCL | os.O_NONBLOCK}"],
             f"fd {pfd}: given by fd {pfd} of process {top}, a pidfd of a thread"),
            ([f"share-fd#{k}.owner=1"], "which is not an earlier process of the tree"),
            # P's watch of its pidfd (the blob adds it): still the epoll's checks
            ([f"epoll-watch#0@8:4={select.EPOLLIN | 1 << 29}"],  # EPOLLWAKEUP
             f"epoll watch of fd {pfd}: events 0x"),
            (["epoll-watch#1@4:4=77"], "epoll watch of fd 77 (not another fd of the image"),
        ]:
            self.refused_as_user(as_user, run, img, pids, edits, expect)
        # W cannot be made (its tid is in use): P fails in its blob before it
        # gives the pidfd, C reads end of file there, the tree is killed and
        # P's failure named.
        self.tid_in_use(as_user, run, img, pids, 1, 0, "creating thread {o}: File exists")
        self.restore_as(run, pw, img, pids)
        self.finish(pids)

    test_unrestored_tree_passes = None
    test_pidfds_of_own_and_other_members_threads_name_the_restored_threads = None
    test_event_loop_sees_its_worker_exit_through_a_pidfd_shared_with_a_fork = None


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
