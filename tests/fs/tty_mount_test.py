#!/usr/bin/env python3
"""A shell job in tmux (issue 10, docs/trees.md "Shell jobs"): vim edits a
file in pane 1; text typed; vim checkpointed through the mount, killed with
kill -9; in pane 2 `crfs restore --shell-job snap.img` brings it back on a
new terminal relayed to that pane; more text typed there, `:wq`; the file
holds both lines and the restore command exits with vim's status 0.

Every wait is for a state (the pane showing a text, a file, a pid gone),
bounded by TIMEOUT. tmux runs on a private socket and its server is killed
at the end; crfsd is always unmounted.

usage: tty_mount_test.py BUILD_DIR
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import roundtrip_mount_test
from roundtrip_mount_test import Base, pid_free, read, sh, wait_for


class TmuxVim(Base):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="crfs-tty-")
        self.sock = os.path.join(self.dir, "tmux.sock")
        tools = os.path.join(roundtrip_mount_test.BUILD, "tools")
        self.env = dict(os.environ, CRFS_ROOT=self.m, PATH=f"{tools}:{os.environ['PATH']}",
                        HOME=self.dir, TERM="xterm", PS1="$ ")
        self.started = False

    def tearDown(self):
        if self.started:
            self.tmux("kill-server", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def tmux(self, *args, check=True):
        r = subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", *args],
                           capture_output=True, text=True, env=self.env, timeout=60,
                           stdin=subprocess.DEVNULL)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def screen(self, pane):
        return self.tmux("capture-pane", "-p", "-t", pane)

    def wait_screen(self, pane, text):
        try:
            wait_for(lambda: text in self.screen(pane), f"pane {pane} to show {text!r}")
        except AssertionError:
            raise AssertionError(f"pane {pane} never showed {text!r}:\n{self.screen(pane)}\n"
                                 f"crfsd: {read(self.crfs.log.name)[-2000:]}") from None

    def test_vim_restored_in_another_pane(self):
        path = os.path.join(self.dir, "notes.txt")
        bash = ["bash", "--norc", "--noprofile"]
        self.tmux("new-session", "-d", "-x", "100", "-y", "41", "-s", "t", *bash)
        self.started = True
        one = self.tmux("display-message", "-p", "-t", "t", "#{pane_id}").strip()
        two = self.tmux("split-window", "-v", "-P", "-F", "#{pane_id}", "-t", one, *bash).strip()
        self.tmux("resize-pane", "-t", one, "-y", "25")  # vim redraws at pane 2's size (SIGWINCH)
        shell = int(self.tmux("display-message", "-p", "-t", one, "#{pane_pid}"))

        self.tmux("send-keys", "-t", one, f"vim -u NONE -N -n -i NONE {path}", "Enter")
        wait_for(lambda: any(read(f"/proc/{p}/comm").strip() == "vim"
                             for p in roundtrip_mount_test.descendants(shell)), "vim to start")
        vim = [p for p in roundtrip_mount_test.descendants(shell)
               if read(f"/proc/{p}/comm").strip() == "vim"][0]
        self.wait_screen(one, "notes.txt")
        self.tmux("send-keys", "-t", one, "i", "written before the checkpoint", "Escape")
        self.wait_screen(one, "written before the checkpoint")
        wait_for(lambda: "-- INSERT --" not in self.screen(one), "vim to leave insert mode")

        self.assertEqual(read(f"{self.m}/{vim}/reason"), "")
        img = os.path.join(self.dir, "snap.img")
        r = sh(f"cp {self.m}/{vim}/image {img}")
        self.assertEqual(r.returncode, 0, r.stderr + read(f"{self.m}/{vim}/reason"))
        os.kill(vim, signal.SIGKILL)
        wait_for(lambda: pid_free(vim), "vim to be gone")

        # A plain cp from pane 1's shell: the terminal is that shell's.
        self.tmux("send-keys", "-t", one, f"mkdir {self.m}/plain && cp {img} {self.m}/plain/image",
                  "Enter")
        self.wait_screen(one, "Device or resource busy")
        self.assertIn("crfs restore --shell-job", read(f"{self.m}/plain/status"))

        self.tmux("send-keys", "-t", two, f"crfs restore --shell-job {img} vimslot; echo rc=$?",
                  "Enter")
        self.wait_screen(two, "written before the checkpoint")
        self.tmux("send-keys", "-t", two, "o", "typed after the restore", "Escape", ":wq", "Enter")
        self.wait_screen(two, "rc=0")
        self.assertEqual(read(path), "written before the checkpoint\ntyped after the restore\n")
        self.assertEqual(read(f"{self.m}/vimslot/status"), "exited 0\n")


if __name__ == "__main__":
    roundtrip_mount_test.BUILD = os.path.abspath(sys.argv[1])
    unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2)
