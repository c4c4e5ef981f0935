#!/usr/bin/env python3
"""A real program through the mounted tree (issue 11): /usr/bin/python3 running
an asyncio event loop with a TCP-free workload, checkpointed mid-work, killed
and restored into the same pids, and finishing with the program's own PASS:

    - a socket.socketpair() driven through loop.sock_sendall/sock_recv, with
      bytes queued in it (sent, not yet read) at the checkpoint;
    - a chain of loop.call_later timers counting ticks;
    - asyncio.create_subprocess_exec of a producer whose stdout pipe streams
      TOTAL bytes; the producer is blocked on a full pipe at the checkpoint.

The program checks its counts and CRCs itself and writes PASS or FAIL (with
what differed) to its stdout, a file. The event loop's epoll, self-pipe
socketpair and child-watcher thread come back with it.

usage: asyncio_mount_test.py BUILD_DIR  (any unittest args after)
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip_mount_test  # noqa: E402
from roundtrip_mount_test import read, wait_for  # noqa: E402
import trees_mount_test  # noqa: E402
from trees_mount_test import gone, tree_of  # noqa: E402
from tree_share_mount_test import PRODUCER, TOTAL  # noqa: E402  (TOTAL bytes to stdout)

EARLY = 100_000   # bytes read from it before the pause
MSGS = 400        # socketpair messages, MSGS // 2 of them sent before the pause
TICKS = 300       # call_later ticks, TICKS // 2 of them before the pause

PROGRAM = f"""
import asyncio, os, socket, sys, zlib

TOTAL, EARLY, MSGS, TICKS = {TOTAL}, {EARLY}, {MSGS}, {TICKS}
paused = {{}}  # what has reached its pause point

def msg(i):
    return bytes((i * 31 + k) & 0xff for k in range(64))

async def wait_go(name):
    paused[name] = True
    if len(paused) == 3:
        open("paused", "w").close()  # the test's signal: every part is mid-work
    while not os.path.exists("go"):  # the test's signal to go on, a file
        await asyncio.sleep(0.01)

async def stream():
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/python3", "-c", {PRODUCER!r}, stdout=asyncio.subprocess.PIPE)
    total, crc = 0, 0
    while total < EARLY:
        b = await proc.stdout.read(min(4096, EARLY - total))
        total += len(b)
        crc = zlib.crc32(b, crc)
    await wait_go("stream")
    while True:
        b = await proc.stdout.read(4096)
        if not b:
            break
        total += len(b)
        crc = zlib.crc32(b, crc)
    return total, crc, await proc.wait()

async def sockets(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    for i in range(MSGS // 2):  # queued in the socketpair across the checkpoint
        await loop.sock_sendall(a, msg(i))
    await wait_go("sockets")
    async def send_rest():
        for i in range(MSGS // 2, MSGS):
            await loop.sock_sendall(a, msg(i))
        a.shutdown(socket.SHUT_WR)
    sender = asyncio.ensure_future(send_rest())
    got, crc = 0, 0
    while True:
        d = await loop.sock_recv(b, 4096)
        if not d:
            break
        got += len(d)
        crc = zlib.crc32(d, crc)
    await sender
    return got, crc

async def timers(loop):
    done = loop.create_future()
    ticks = [0]
    half = loop.create_future()
    def tick():
        ticks[0] += 1
        if ticks[0] == TICKS // 2:
            half.set_result(None)
        elif ticks[0] == TICKS:
            done.set_result(ticks[0])
        else:
            loop.call_later(0.001, tick)
    loop.call_later(0.001, tick)
    await half
    await wait_go("timers")
    loop.call_later(0.001, tick)
    return await done

async def main():
    loop = asyncio.get_running_loop()
    (total, crc, rc), (got, scrc), ticks = await asyncio.gather(
        stream(), sockets(loop), timers(loop))
    buf = bytes((i * 7 + 3) & 0xff for i in range(4096))
    want = (buf * (TOTAL // 4096 + 1))[:TOTAL]
    want_s = b"".join(msg(i) for i in range(MSGS))
    bad = []
    if (total, crc, rc) != (TOTAL, zlib.crc32(want), 0):
        bad.append(f"stream {{total}} {{crc}} rc {{rc}}")
    if (got, scrc) != (len(want_s), zlib.crc32(want_s)):
        bad.append(f"socketpair {{got}} {{scrc}}")
    if ticks != TICKS:
        bad.append(f"ticks {{ticks}}")
    print("FAIL " + "; ".join(bad) if bad else f"PASS {{total}} {{got}} {{ticks}}", flush=True)

asyncio.run(main())
"""


class Asyncio(trees_mount_test.TreeBase):
    def path(self, name):
        return os.path.join(self.dir, name)

    def program(self):
        with open(self.path("prog.py"), "w") as f:
            f.write(PROGRAM)
        proc = self.start("exec /usr/bin/python3 prog.py > out 2> err", 2)
        # Mid-work: every part paused, the producer blocked on its full pipe.
        wait_for(lambda: os.path.exists(self.path("paused")), "the program's pause")
        py, prod = pids = tree_of(proc.pid)
        wait_for(lambda: read(f"/proc/{prod}/wchan").endswith("pipe_write"), "a full pipe")
        self.assertEqual(self.threads(py), 2, "the loop and the child watcher's waitpid thread")
        return proc, pids

    def threads(self, pid):
        return len(os.listdir(f"/proc/{pid}/task"))

    def passed(self):
        return f"PASS {TOTAL} {MSGS * 64} {TICKS}\n"

    def finish(self, pids):
        with open(self.path("go"), "w"):
            pass
        wait_for(lambda: self.out() != "" and all(gone(p) for p in pids), "the program to end")
        self.assertEqual(self.out(), self.passed(), read(self.path("err")))

    def test_unrestored_program_passes(self):
        """The program's own check, without crfs: it can fail, and does not."""
        proc, pids = self.program()
        self.finish(pids)

    def test_asyncio_program_checkpointed_mid_work_finishes_with_pass(self):
        proc, pids = self.program()
        self.round_trip(proc, pids)
        self.assertEqual(self.threads(proc.pid), 2)
        self.finish(pids)

    def test_restored_program_checkpoints_and_restores_again(self):
        """What a restore made (epoll, socketpairs, pipe, thread) is itself checkpointable."""
        proc, pids = self.program()
        self.round_trip(proc, pids)
        slot = f"{self.m}/{pids[0]}"
        self.assertEqual(read(f"{slot}/reason"), "")
        img = self.checkpoint(pids[0])  # the restored slot's image: a new checkpoint
        self.kill_all(None, pids)
        # The first restore's slot: its task's end recorded, then removed.
        wait_for(lambda: "killed by SIGKILL" in read(f"{slot}/status"), "the slot's end")
        r = roundtrip_mount_test.sh(f"rmdir {slot}")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.restore(img, str(pids[0]))
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{slot}/status"))
        self.assertEqual(tree_of(pids[0]), pids)
        self.finish(pids)


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
