"""Real unprivileged users for the tests that act as them (the security rule:
made in the test's setup, removed after, even on failure).

    with unprivileged_user("s6fd1", "-N", "-g", "nogroup") as pw: ...
    pw = unittest.enterModuleContext(unprivileged_user(USER, ...))   # setUpModule
    pw = self.enterContext(unprivileged_user(USER, ...))             # setUp
    create(USERS, "-U", groups=[GROUP]) ... remove(USERS, [GROUP])   # several at once

A left-over of an earlier (killed) run is removed first; on the way out every
process the users still have is killed, then the users and groups are removed."""
import contextlib
import pwd
import subprocess

TIMEOUT = 60


def remove(users, groups=()):
    """Kills the processes of `users` (by real and effective uid), removes
    them, then `groups`; any that does not exist is skipped."""
    for u in users:
        for who in ("-U", "-u"):
            subprocess.run(["pkill", "-KILL", who, u], capture_output=True, timeout=TIMEOUT)
        subprocess.run(["userdel", "-f", u], capture_output=True, timeout=TIMEOUT)
    for g in groups:
        subprocess.run(["groupdel", g], capture_output=True, timeout=TIMEOUT)


def create(users, *options, groups=(), shell="/bin/sh"):
    """`groupadd` each of `groups`, then `useradd -M *options -s shell` each
    of `users` (no home); nothing is left if one of them fails."""
    remove(users, groups)
    try:
        for g in groups:
            subprocess.run(["groupadd", g], check=True, capture_output=True, timeout=TIMEOUT)
        for u in users:
            subprocess.run(["useradd", "-M", *options, "-s", shell, u], check=True,
                           capture_output=True, timeout=TIMEOUT)
    except BaseException:
        remove(users, groups)
        raise


@contextlib.contextmanager
def unprivileged_user(name, *options):
    """`useradd -M *options -s /bin/sh name` (no home); yields its pwd entry."""
    create([name], *options)
    try:
        yield pwd.getpwnam(name)
    finally:
        remove([name])
