#!/usr/bin/env python3
"""maand's worker-side runner.

Usage: python3 /opt/worker/<bucket_id>/bin/runner.py TARGET [JOB ...]

Runs `make -s -C jobs/<job> TARGET` for each named job (every job in jobs.json when none is
named), one after another, in the order given. Each make gets CURRENT_VERSION and NEW_VERSION
from jobs.json. Disabled jobs are skipped for start, restart and reload. Jobs without a
Makefile are skipped. Exits 0 when every make succeeded, 1 when any failed, 2 on bad input.
"""

import json
import os
import re
import subprocess
import sys

LIFECYCLE_TARGETS = {"start", "restart", "reload"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def say(message, stream=sys.stdout):
    print(f"runner: {message}", file=stream, flush=True)


def main(argv):
    if len(argv) < 2:
        say("usage: runner.py TARGET [JOB ...]", sys.stderr)
        return 2
    target, requested = argv[1], argv[2:]
    for name in [target, *requested]:
        if not NAME.fullmatch(name) or ".." in name:
            say(f"refusing unsafe name {name!r}", sys.stderr)
            return 2

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    jobs_file = os.path.join(root, "jobs.json")
    try:
        with open(jobs_file, encoding="utf-8") as handle:
            jobs = json.load(handle)
    except (OSError, ValueError) as error:
        say(f"cannot read {jobs_file}: {error}; run maand deploy", sys.stderr)
        return 2

    by_name = {job["name"]: job for job in jobs}
    unknown = [name for name in requested if name not in by_name]
    if unknown:
        say(f"not deployed on this worker: {', '.join(unknown)}", sys.stderr)
        return 2

    failed = []
    for job in [by_name[name] for name in requested] if requested else jobs:
        name = job["name"]
        if job["disabled"] and target in LIFECYCLE_TARGETS:
            say(f"{name}: disabled, {target} skipped")
            continue
        job_dir = os.path.join(root, "jobs", name)
        if not os.path.isfile(os.path.join(job_dir, "Makefile")):
            say(f"{name}: no Makefile, {target} skipped")
            continue
        env = dict(os.environ)
        env["CURRENT_VERSION"] = job["current_version"]
        env["NEW_VERSION"] = job["new_version"]
        code = subprocess.call(["make", "-s", "-C", job_dir, target], env=env)
        if code != 0:
            say(f"{name}: make {target} failed with exit code {code}", sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
