"""Real unprivileged users for the checkpoint attack tests: made for one test
module, removed after it (also when a test fails, and left-overs of a killed
run first), with their processes."""
import subprocess

TIMEOUT = 60


def run(cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def remove(users):
    for u in users:
        if run(["id", u], check=False).returncode == 0:
            run(["pkill", "-KILL", "-U", u], check=False)
            run(["userdel", "-f", u], check=False)


def create(users):
    remove(users)  # left over from a run that was killed
    try:
        for u in users:
            run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", u])
    except BaseException:
        remove(users)
        raise


def as_user(user, cmd):
    """`cmd` run with `user`'s uid, gid and groups (no capabilities)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"] + cmd
