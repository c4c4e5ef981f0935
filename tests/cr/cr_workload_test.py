#!/usr/bin/env python3
"""Checkpoints of the self-checking workload (tests/workloads/ckpt_workload.c),
decoded with `crfs show --json`, against the state the workload set up.

Uses the debugging subcommand `crfs checkpoint PID` (no FUSE mount needed);
the same tests through /crfs/<pid>/image come with the mount.

usage: cr_workload_test.py CRFS WORKLOAD  (any unittest args after)
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

CRFS = WORKLOAD = None
TIMEOUT = 60  # seconds: only a guard against hangs, never a pass criterion


def wait_for(pred, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def tracer(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])


def maps(pid):
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.append((start, end, parts[1], parts[5].strip() if len(parts) > 5 else ""))
    return out


class Workload:
    def __init__(self, mode, *args):
        self.dir = tempfile.mkdtemp(prefix="crfs-wl-")
        self.proc = subprocess.Popen([WORKLOAD, self.dir, mode, *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     close_fds=True)
        self.pid = self.proc.pid
        wait_for(lambda: os.path.exists(self.path("ready")), "workload ready")
        self.facts = {}
        with open(self.path("ready")) as f:
            for line in f:
                k, _, v = line.strip().partition(" ")
                self.facts[k] = v

    def path(self, name):
        return os.path.join(self.dir, name)

    def fact(self, k):
        return int(self.facts[k], 0)

    def finish(self):
        """SIGTERM: the workload checks itself and writes PASS or FAIL."""
        os.kill(self.pid, signal.SIGCONT)
        os.kill(self.pid, signal.SIGTERM)
        self.proc.wait(timeout=TIMEOUT)
        with open(self.path("result")) as f:
            return f.read().strip()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def checkpoint(pid, out_path):
    with open(out_path, "wb") as out:
        r = subprocess.run([CRFS, "checkpoint", str(pid)], stdout=out, stderr=subprocess.PIPE,
                           timeout=TIMEOUT)
    if r.returncode != 0:
        raise AssertionError("checkpoint failed: " + r.stderr.decode())


def show(path):
    r = subprocess.run([CRFS, "show", "--json", path], capture_output=True, timeout=TIMEOUT)
    if r.returncode != 0:
        raise AssertionError("show failed: " + r.stderr.decode())
    return json.loads(r.stdout)


def verify(path):
    return subprocess.run([CRFS, "verify", path], capture_output=True, timeout=TIMEOUT)


class CheckpointWorkloadTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="crfs-img-")
        self.workloads = []

    def tearDown(self):
        for w in self.workloads:
            w.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, mode, *args):
        w = Workload(mode, *args)
        self.workloads.append(w)
        return w

    def img(self, name):
        return os.path.join(self.tmp, name)

    def test_busy_workload_checkpointed_many_times_notices_nothing(self):
        w = self.start("busy")
        for i in range(25):
            checkpoint(w.pid, self.img("snap"))
            r = verify(self.img("snap"))
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(tracer(w.pid), 0)
        self.assertEqual(w.finish(), "PASS")

    def test_sleeping_workload_sleep_still_ends(self):
        w = self.start("sleep", "2")
        for i in range(5):
            checkpoint(w.pid, self.img("snap"))
        wait_for(lambda: os.path.exists(w.path("woke")), "the nanosleep to end")
        self.assertEqual(w.finish(), "PASS")

    def test_image_decodes_to_the_state_the_workload_set(self):
        w = self.start("busy")
        before = maps(w.pid)
        checkpoint(w.pid, self.img("snap"))
        after = maps(w.pid)
        self.assertEqual(before, after)  # the workload does not map anything while it spins
        j = show(self.img("snap"))

        self.assertEqual(j["task"]["pid"], w.pid)
        self.assertEqual(j["task"]["comm"], "ckpt_workload")
        got = [(int(v["start"], 16), int(v["end"], 16), v["perms"], v["path"]) for v in j["vmas"]]
        self.assertEqual(got, before)
        vma = {int(v["start"], 16): v for v in j["vmas"]}
        self.assertEqual(vma[w.fact("anon")]["kind"], "anon-private")
        self.assertEqual(vma[w.fact("anon")]["pages_stored"], 511)  # 512 minus one zero page
        self.assertEqual(vma[w.fact("hidden")]["perms"], "---p")
        self.assertEqual(vma[w.fact("hidden")]["pages_stored"], 2)
        self.assertEqual(vma[w.fact("guard")]["pages_stored"], 0)
        self.assertEqual(vma[w.fact("shared")]["kind"], "anon-shared")
        self.assertEqual(vma[w.fact("shared")]["pages_stored"], 8)
        self.assertEqual(vma[w.fact("fpriv")]["kind"], "file-private")
        self.assertEqual(vma[w.fact("fpriv")]["pages_stored"], 2)  # only the dirtied pages
        self.assertEqual(vma[w.fact("fshared")]["kind"], "file-shared")
        self.assertEqual(vma[w.fact("fshared")]["pages_stored"], 0)
        kinds = {v["path"]: v["kind"] for v in j["vmas"]}
        self.assertEqual(kinds["[vdso]"], "vdso")
        self.assertEqual(kinds["[heap]"], "anon-private")
        self.assertEqual(kinds["[stack]"], "anon-private")

        fds = {f["fd"]: f for f in j["fds"]}
        self.assertEqual(fds[w.fact("rfd")]["pos"], 1234)
        self.assertEqual(fds[w.fact("rfd")]["path"], w.path("data"))
        self.assertEqual(fds[w.fact("rfd")]["kind"], "regular")
        self.assertEqual(fds[w.fact("wfd")]["pos"], 777)
        self.assertTrue(fds[w.fact("wfd")]["open_flags"] & os.O_APPEND)
        self.assertEqual(fds[w.fact("gfd")]["kind"], "deleted")
        self.assertEqual(fds[w.fact("gfd")]["pos"], 100)
        self.assertEqual(fds[w.fact("gfd")]["data_bytes"], 5000)
        self.assertEqual(fds[w.fact("nfd")]["kind"], "chardev")
        self.assertEqual(fds[w.fact("nfd")]["path"], "/dev/null")
        self.assertTrue(fds[w.fact("zfd")]["cloexec"])
        self.assertFalse(fds[w.fact("ufd")]["cloexec"])
        self.assertEqual(fds[w.fact("ufd")]["path"], "/dev/urandom")

        sig = j["signals"]
        acts = {a["signo"]: a for a in sig["actions"]}
        usr1 = acts[signal.SIGUSR1]
        self.assertEqual(int(usr1["handler"], 16), w.fact("usr1_handler"))
        self.assertEqual(int(usr1["flags"], 16), w.fact("usr1_flags"))
        self.assertEqual(int(usr1["mask"], 16), w.fact("usr1_mask"))
        self.assertEqual(acts[signal.SIGUSR2]["handler"], "SIG_IGN")
        self.assertEqual(int(acts[signal.SIGHUP]["handler"], 16), w.fact("hup_handler"))
        self.assertEqual(int(sig["blocked"], 16), w.fact("blocked"))
        self.assertEqual(int(sig["altstack"]["sp"], 16), w.fact("altstack"))
        self.assertEqual(sig["altstack"]["size"], w.fact("altstack_size"))
        rt = [p for p in sig["pending"] if p["signo"] == signal.SIGRTMIN + 2]
        self.assertEqual(len(rt), 2)
        self.assertEqual(j["fs"]["umask"], "027")
        nofile = [r for r in j["rlimits"] if r["name"] == "nofile"][0]
        self.assertEqual((nofile["cur"], nofile["max"]), (1000, 4096))
        self.assertEqual(j["itimers"]["real"]["interval_us"], 10000)
        self.assertGreater(j["regs"]["xstate_size"], 512)
        self.assertFalse(j["header"]["task_was_stopped"])
        self.assertEqual(w.finish(), "PASS")

    def test_stopped_workload_same_image_every_way(self):
        w = self.start("busy")
        os.kill(w.pid, signal.SIGSTOP)
        wait_for(lambda: proc_state(w.pid) == "T", "the workload to stop")
        cmd = f"{CRFS} checkpoint {w.pid}"
        ways = {
            "cp": f"{cmd} > {self.img('cp')}",
            "zstd": f"{cmd} | zstd -q -c | zstd -q -d -c > {self.img('zstd')}",
            "dd": f"{cmd} | dd bs=4k of={self.img('dd')} status=none",
        }
        for name, sh in ways.items():
            subprocess.run(["bash", "-o", "pipefail", "-c", sh], check=True, timeout=TIMEOUT)
            self.assertEqual(proc_state(w.pid), "T", name)
            self.assertEqual(tracer(w.pid), 0, name)
        # Reads of 1 KiB at a time.
        p = subprocess.Popen([CRFS, "checkpoint", str(w.pid)], stdout=subprocess.PIPE)
        with open(self.img("1k"), "wb") as out:
            while chunk := p.stdout.read(1024):
                out.write(chunk)
        p.stdout.close()
        self.assertEqual(p.wait(timeout=TIMEOUT), 0)
        self.assertEqual(proc_state(w.pid), "T")

        decoded = {}
        for name in ["cp", "zstd", "dd", "1k"]:
            r = verify(self.img(name))
            self.assertEqual(r.returncode, 0, r.stderr)
            j = show(self.img(name))
            self.assertTrue(j["header"]["task_was_stopped"])
            del j["stats"], j["image"]  # timing and hence checksum differ
            decoded[name] = j
        for name in ["zstd", "dd", "1k"]:
            self.assertEqual(decoded[name], decoded["cp"], name)
        # `crfs show -` reads a pipe.
        with open(self.img("cp"), "rb") as f:
            r = subprocess.run([CRFS, "show", "--json", "-"], stdin=f, capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(proc_state(w.pid), "T")
        self.assertEqual(w.finish(), "PASS")

    def test_verify_rejects_damaged_images(self):
        w = self.start("busy")
        checkpoint(w.pid, self.img("snap"))
        with open(self.img("snap"), "rb") as f:
            data = bytearray(f.read())
        with open(self.img("flipped"), "wb") as f:
            d = bytearray(data)
            d[len(d) // 2] ^= 0x40
            f.write(d)
        r = verify(self.img("flipped"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"checksum mismatch", r.stderr)
        with open(self.img("short"), "wb") as f:
            f.write(data[: len(data) // 3])
        r = verify(self.img("short"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"truncated image", r.stderr)
        self.assertEqual(w.finish(), "PASS")


if __name__ == "__main__":
    CRFS, WORKLOAD = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
