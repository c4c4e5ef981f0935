#!/usr/bin/env python3
"""The members' clone3 and munmap CPU of one profiled tree restore
(session 16, s16-member):

    bench/tree_restore_profile.py --perf FILE [--env ...] PxM
    bench/tree_clone_samples.py FILE [P]      (default P 64)

Counts the samples of `perf record -F 20000` (FILE) whose stack is in
clone3 (a member's making, copy_process), in munmap (a blob's unmap of its
copy of the daemon) or in a UFFDIO_COPY (the members' pages: fixed work, a
yardstick for the load), and prints each in ms per member (P - 1 clones of
the root's and one of the daemon's).
"""
import subprocess
import sys


def main():
    data = sys.argv[1]
    members = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"],
                         capture_output=True, text=True, check=True).stdout
    counts = {"clone3": 0, "munmap": 0, "uffdio_copy": 0}
    for sample in out.split("\n\n"):
        if "__do_sys_clone3" in sample:
            counts["clone3"] += 1
        elif "__vm_munmap" in sample or "__x64_sys_munmap" in sample:
            counts["munmap"] += 1
        elif "userfaultfd_ioctl" in sample or "mfill_atomic" in sample:
            counts["uffdio_copy"] += 1
    ms = {k: v / 20 / members for k, v in counts.items()}  # 20 samples a ms
    print(f"clone3 {ms['clone3']:.2f} + munmap {ms['munmap']:.2f} = "
          f"{ms['clone3'] + ms['munmap']:.2f} ms/member; UFFDIO_COPY {ms['uffdio_copy']:.2f}")


if __name__ == "__main__":
    main()
