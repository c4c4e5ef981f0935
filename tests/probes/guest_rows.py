#!/usr/bin/env python3
"""Prints the rows of run_probes.py's PROBES whose probe needs a kernel
feature (run_probes.NEEDS), for the guest driver guest_probes.sh that runs
them in a qemu guest whose kernel has it (tests/kernel/probes.sh), one line
per variant:

    PROBE <TAB> VARIANT <TAB> SAME_PID_ONLY (0/1) <TAB> EXPECTED REASON (empty: supported)

The guest driver runs single processes as root: a row with an argv prefix
(another user) or a tree probe is an error here, not a silent skip.

usage: guest_rows.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_probes  # noqa: E402


def main():
    rows = [r for r in run_probes.PROBES if r[0] in run_probes.NEEDS]
    if not rows:
        sys.exit("guest_rows.py: no probe in run_probes.NEEDS")
    for probe, variant, expect, *prefix in rows:
        if prefix or probe in run_probes.TREES:
            sys.exit(f"guest_rows.py: {probe}/{variant}: the guest driver runs neither "
                     "tree probes nor probes as another user")
        if expect is not None and ("\t" in expect or "\n" in expect):
            sys.exit(f"guest_rows.py: {probe}/{variant}: a reason with a tab or newline")
        same = 1 if probe in run_probes.SAME_PID_ONLY else 0
        print(f"{probe}\t{variant}\t{same}\t{expect or ''}")


if __name__ == "__main__":
    main()
