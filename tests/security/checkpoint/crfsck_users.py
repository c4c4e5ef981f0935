"""Real unprivileged users for the checkpoint attack tests: made for one test
module, removed after it (also when a test fails, and left-overs of a killed
run first), with their processes."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support"))
import users  # noqa: E402

TIMEOUT = 60


def run(cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def remove(names):
    users.remove(names)


def create(names):
    """Each with a group of its own and no login shell (tests/support/users.py)."""
    users.create(names, "-U", shell="/usr/sbin/nologin")


def as_user(user, cmd):
    """`cmd` run with `user`'s uid, gid and groups (no capabilities)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"] + cmd
