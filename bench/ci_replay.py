#!/usr/bin/env python3
"""Replays the test phases of a CI log (scripts/check.sh output: ctest -j's
Start and Passed lines) under ctest's scheduling rules with the test
properties of a configured build directory: how long each phase would take
with these COST, RUN_SERIAL and RESOURCE_LOCK properties and the logged
seconds of each test (which do not change with the order: an estimate, a
lower bound when the machine's cores are the limit).

    bench/ci_replay.py CI_LOG BUILD_DIR [-j 2] [--drop-label-regex kernel|fuzz]

The replay of a log with the properties it ran with gives the log's own
"Total Test time": ctest starts tests by COST (descending, then by number),
a RUN_SERIAL test alone, and no two tests that share a lock at once.
"""
import argparse
import glob
import os
import re


def phases(log):
    """{phase: {test: (number, seconds)}} of each `== test DIR` section."""
    out, phase = {}, None
    for ln in open(log, errors="replace"):
        if ln.startswith("== test "):
            phase = ln[8:].strip()
            out[phase] = {}
        elif ln.startswith("== build"):
            phase = None
        elif phase:
            m = re.match(r"\s*\d+/\d+ Test\s+#(\d+): (\S+) .*?([\d.]+) sec", ln)
            if m:
                out[phase][m.group(2)] = (int(m.group(1)), float(m.group(3)))
    return out


def properties(build):
    """{test: {property: value}} from the CTestTestfile.cmake files of build."""
    props = {}
    for f in glob.glob(os.path.join(build, "**", "CTestTestfile.cmake"), recursive=True):
        text = open(f).read()
        for m in re.finditer(r"set_tests_properties\(\[=\[(\S+?)\]=\] PROPERTIES (.*)\)", text):
            p = props.setdefault(m.group(1), {})
            for k, v in re.findall(r'(\w+) "((?:[^"\\]|\\.)*)"', m.group(2)):
                p[k] = v
    return props


def replay(tests, props, jobs):
    def cost(n):
        return float(props.get(n, {}).get("COST", 0))

    def serial(n):
        return props.get(n, {}).get("RUN_SERIAL", "").upper() in ("TRUE", "ON", "1")

    def locks(n):
        v = props.get(n, {}).get("RESOURCE_LOCK", "")
        return set(v.split(";")) if v else set()

    pending = sorted(tests, key=lambda n: (-cost(n), tests[n][0]))
    running, now, start = {}, 0.0, {}
    while pending or running:
        started = True
        while started and len(running) < jobs and not any(serial(r) for r in running):
            started = False
            for n in pending:
                if serial(n) and running:
                    continue
                if any(locks(n) & locks(r) for r in running):
                    continue
                running[n] = now + tests[n][1]
                start[n] = now
                pending.remove(n)
                started = True
                break
        n = min(running, key=running.get)
        now = running.pop(n)
    return now, start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log")
    ap.add_argument("build")
    ap.add_argument("-j", type=int, default=2)
    ap.add_argument("--drop-label-regex", default="",
                    help="leave out tests with a matching label (as ctest -LE)")
    args = ap.parse_args()
    props = properties(args.build)
    for phase, tests in phases(args.log).items():
        if args.drop_label_regex:
            tests = {n: v for n, v in tests.items()
                     if not any(re.search(args.drop_label_regex, lab)
                                for lab in props.get(n, {}).get("LABELS", "").split(";") if lab)}
        end, start = replay(tests, props, args.j)
        total = sum(v[1] for v in tests.values())
        print(f"{phase}: {len(tests)} tests, {total:.0f} s of tests, replayed end {end:.0f} s "
              f"(all {args.j} slots busy: {total / args.j:.0f} s)")
        for n in sorted(tests, key=lambda n: -tests[n][1])[:5]:
            print(f"  {tests[n][1]:6.1f} s  starts at {start[n]:5.0f} s  {n}")


if __name__ == "__main__":
    main()
