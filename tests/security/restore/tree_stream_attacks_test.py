#!/usr/bin/env python3
"""A streamed tree restore never writes a process's pages into whoever has
its pid later (issue 10/security; docs/trees.md "Streaming a tree's
restore").

A real unprivileged user `s35ts1`, in the group crfsd lets choose pids
(-o restore_pid_group), checkpoints its own tree (bash and a child sleep)
and edits the image: the child's page section keeps only its stack run (a
mapping the daemon writes through the process's memory, not its
userfaultfd). It writes the image into /crfs/PID/image up to the child's
section: the whole tree is made and waits for its pages. Then it kills its
two restored processes (they are its own) and the child's pid is freed; a
process of another user (`s35ts2`) comes to that pid (made there with
spawn_at_pid, as cycling the pids would) with memory mapped where the
child's stack was. Then the user writes the rest. A daemon that wrote the
stack run by pid (process_vm_writev, as root) would put the user's bytes
into the other user's process. Written through the /proc/PID/mem opened
while the child lived, the write finds that memory gone: the image fails,
the victim's memory is as it was, and nothing of the tree is left.

usage: tree_stream_attacks_test.py BUILD_DIR  (any unittest args after)
"""
import os
import pwd
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "fs"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "support"))
sys.path.insert(0, HERE)
import roundtrip_mount_test as rt  # noqa: E402
import threads_mount_test  # noqa: E402
import users  # noqa: E402
from trees_mount_test import TreeBase, reap, tree_of  # noqa: E402
from stream_attacks_test import TRAILER_TYPE, records  # noqa: E402
from stream_fail_test import rebuilt  # noqa: E402

USER, GROUP, OTHER = "s35ts1", "s35tsg", "s35ts2"
PAGES, MEMBER_PAGES = 6, 65

# The writer, as the user: the image up to byte CUT, then FLAG is made; once
# GO exists (at most 60 s) the rest; prints how each step ended.
WRITER = r"""
import os, sys, time
slot, image, cut, flag, go = sys.argv[1:6]
data, cut = open(image, "rb").read(), int(cut)
fd = os.open(slot, os.O_WRONLY)
def put(b):
    while b:
        b = b[os.write(fd, b):]
put(data[:cut])
open(flag, "w").close()
until = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < until:
    time.sleep(0.01)
try:
    put(data[cut:])
    print("write ok")
except OSError as e:
    print("write failed:", e.strerror)
try:
    os.close(fd)
    print("close ok")
except OSError as e:
    print("close failed:", e.strerror)
"""

# The other user's process: START..START+LEN mapped and filled with "V",
# then READY made; it waits to be killed.
VICTIM = r"""
import ctypes, os, signal, sys
start, length, ready = int(sys.argv[1], 16), int(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
MAP_FIXED_NOREPLACE = 0x100000
p = libc.mmap(start, length, 3, 0x22 | MAP_FIXED_NOREPLACE, -1, 0)
if p != start:
    open(ready, "w").write("mmap at %x: errno %d" % (start, ctypes.get_errno()))
    sys.exit(1)
ctypes.memset(p, ord("V"), length)
open(ready, "w").write("ok")
signal.pause()
"""


def stack_only(b, process):
    """Image `b` with `process`'s page section holding only its highest run
    (its stack), and the byte its section starts at: (image, cut, run)."""
    parts, run, cut, section = [], None, None, False
    for off, t, n in records(b):
        if t == TRAILER_TYPE:
            continue
        if t == MEMBER_PAGES:
            section = struct.unpack_from("<I", b, off + 16)[0] == process
            if section:
                cut = len(parts)
        if section and t == PAGES:
            vaddr, nr = struct.unpack_from("<QI", b, off + 16)
            if run is None or vaddr > run[0]:
                run = (vaddr, nr, b[off:off + 16 + n])
            continue
        parts.append(b[off:off + 16 + n])
    assert cut is not None and run is not None, "no page section of that process"
    parts.insert(cut + 1, run[2])
    image = rebuilt(b, parts)
    header = struct.unpack_from("<I", b, 12)[0]
    return image, header + sum(len(p) for p in parts[:cut]), run


class PidTakenWhileThePagesArrive(threads_mount_test.UserInGroup, TreeBase):
    user, group = USER, GROUP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        users.create([OTHER], "-N")

    @classmethod
    def tearDownClass(cls):
        users.remove([OTHER])
        super().tearDownClass()

    def setUp(self):
        self.crfsd_for_group()
        self.dir = tempfile.mkdtemp(prefix="crfs-s35ts-")
        os.chmod(self.dir, 0o755)
        self.pids, self.procs, self.tasks = [], [], []

    def path(self, name):
        return os.path.join(self.dir, name)

    def test_a_killed_process_pages_never_reach_the_next_owner_of_its_pid(self):
        pw, as_user, run = self.as_user(USER, "--init-groups")
        proc = self.start("sleep 1000 </dev/null >/dev/null 2>&1 & wait $!", 2,
                          user_prefix=as_user)
        top, child = pids = tree_of(proc.pid)
        r = run(f"cp {self.m}/{top}/image {self.path('tree.img')}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.kill_all(proc, pids)
        with open(self.path("tree.img"), "rb") as f:
            image, cut, (start, nr, _) = stack_only(f.read(), 1)
        with open(self.path("edited.img"), "wb") as f:
            f.write(image)
        os.chmod(self.path("edited.img"), 0o644)
        with open(self.path("writer.py"), "w") as f:
            f.write(WRITER)
        self.assertEqual(run(f"mkdir {self.m}/{top}").returncode, 0)
        writer = subprocess.Popen(
            as_user + ["/usr/bin/python3", "-u", self.path("writer.py"), f"{self.m}/{top}/image",
                       self.path("edited.img"), str(cut), self.path("part1"), self.path("go")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(writer)
        # Both processes exist and wait for their pages (the write holding the
        # first pages record returned once the daemon took every one's ready).
        rt.wait_for(lambda: os.path.exists(self.path("part1")) or writer.poll() is not None,
                    "the records and the root's pages to be written")
        if writer.poll() is not None:
            self.fail(f"the writer ended early: {writer.communicate()[0]}")
        self.assertTrue(all(os.path.exists(f"/proc/{p}") for p in pids))
        # The user kills its own restored processes; the child's pid is freed.
        self.assertEqual(run(f"kill -9 {child} {top}").returncode, 0)
        rt.wait_for(lambda: (reap(), not os.path.exists(f"/proc/{child}"))[1],
                    "the child's pid to be free")
        # Another user's process takes it, with memory where the child's stack was.
        with open(self.path("victim.py"), "w") as f:
            f.write(VICTIM)
        open(self.path("victim.ready"), "w").close()  # the other user's to write
        os.chmod(self.path("victim.ready"), 0o666)
        other = pwd.getpwnam(OTHER)
        victim = subprocess.Popen(
            [os.path.join(rt.BUILD, "tests/security/limits/spawn_at_pid"), str(child),
             "setpriv", f"--reuid={other.pw_uid}", f"--regid={other.pw_gid}", "--clear-groups",
             "/usr/bin/python3", self.path("victim.py"), f"{start:x}", str(nr * 4096),
             self.path("victim.ready")], stdin=subprocess.DEVNULL)
        self.procs.append(victim)
        self.pids.append(child)
        rt.wait_for(lambda: os.path.exists(self.path("victim.ready")) and
                    rt.read(self.path("victim.ready")) != "", "the other user's process")
        self.assertEqual(rt.read(self.path("victim.ready")), "ok")
        self.assertEqual(os.stat(f"/proc/{child}").st_uid, other.pw_uid)
        open(self.path("go"), "w").close()
        out, _ = writer.communicate(timeout=60)
        self.crfs.log.flush()
        self.assertIn("failed", out, rt.read(self.crfs.log.name))
        self.assertTrue(rt.read(f"{self.m}/{top}/status").startswith("error: "))
        with open(f"/proc/{child}/mem", "rb") as mem:
            mem.seek(start)
            self.assertEqual(mem.read(nr * 4096), b"V" * (nr * 4096),
                             "the other user's memory was written")
        rt.wait_for(lambda: (reap(), not os.path.exists(f"/proc/{top}"))[1],
                    "the tree's root to be reaped")


if __name__ == "__main__":
    rt.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
