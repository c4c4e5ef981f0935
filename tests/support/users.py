"""A real unprivileged user for the tests that act as one (the security
rule: made in the test's setup, removed after, even on failure).

    with unprivileged_user("s6fd1", "-N", "-g", "nogroup") as pw: ...
    pw = unittest.enterModuleContext(unprivileged_user(USER, ...))   # setUpModule
    pw = self.enterContext(unprivileged_user(USER, ...))             # setUp

A left-over of an earlier run is removed first; on the way out every process
the user still has is killed, then the user is removed."""
import contextlib
import pwd
import subprocess


@contextlib.contextmanager
def unprivileged_user(name, *options):
    """`useradd -M *options -s /bin/sh name` (no home); yields its pwd entry."""
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["useradd", "-M", *options, "-s", "/bin/sh", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)
