"""maand's worker-side runner, started through bin/runner.py beside it.

Usage: python3 /opt/worker/<bucket_id>/bin/runner.py TARGET [JOB ...]
       python3 /opt/worker/<bucket_id>/bin/runner.py step DEPLOY KEY LIMIT [--apply JOB] -- PROGRAM [ARG ...]

Runs `make -s -C jobs/<job> TARGET` for each named job (every job in jobs.json when none is
named), one after another, in the order given. Each make gets CURRENT_VERSION and NEW_VERSION
from jobs.json. Disabled jobs are skipped for start, restart and reload. Jobs without a
Makefile are skipped. Exits 0 when every make succeeded, 1 when any failed, 2 on bad input.

`step` runs PROGRAM at most once per DEPLOY and KEY, detached from the caller: a supervisor in
its own session starts it in its own process group with output to
steps/DEPLOY/KEY.out and KEY.err, kills the group after LIMIT seconds, and writes
KEY.receipt (exit status, end time) atomically when it ends. The caller only
follows the output and exits with the step's status, so losing the caller (a killed maand, a
dropped SSH connection) never stops the step. Calling `step` again with the same DEPLOY and
KEY starts nothing: it replays the output of a finished step, or follows a running one. The
first step of a new DEPLOY removes the receipts of earlier deploys.
Exit codes: the program's; 124 when the limit stopped it; 125 when the supervisor vanished
without a receipt (the worker rebooted); 2 on bad input.

With `--apply JOB`, the step first brings the worker's copy of JOB up to date from a delta read
on stdin (see `apply_delta`), prints "runner: applied the delta", and only then claims and
runs the step: one privileged process for a copy and the restart that follows it. When the
worker's copy is not what maand last shipped it changes nothing and exits with 3 before that
line, and maand copies with rsync instead. Once the step ended, shipped/JOB records what the
delta left (see `ShippedIndex`), so the next delta checks unchanged files without hashing.

Every lifecycle step of a deploy starts the runner once, so `step` imports only modules built
into the interpreter (maand runs it with `python3 -S`) and `select`; the rest is imported where
it is used. This file is a module, not the script Python is started with, so Python keeps its
compiled form in bin/__pycache__ instead of compiling it again for every step.
"""

import os
import select
import sys
import time
from stat import S_ISREG

try:
    # The built-in half of `signal`, which itself imports `enum` (a third of a step's imports).
    import _signal as signal
except ImportError:
    import signal

LIFECYCLE_TARGETS = {"start", "restart", "reload"}
FIRST_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
NAME_CHARACTERS = FIRST_NAME_CHARACTERS | frozenset("_.-")


def safe_name(name):
    """A job, target, deploy or step name: [A-Za-z0-9][A-Za-z0-9_.-]*, never with `..`."""
    return (
        bool(name)
        and name[0] in FIRST_NAME_CHARACTERS
        and all(character in NAME_CHARACTERS for character in name)
        and ".." not in name
    )


def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def say(message, stream=sys.stdout):
    print(f"runner: {message}", file=stream, flush=True)


TIMED_OUT = 124
VANISHED = 125
# A claimed step whose supervisor has not written its pid after this long never started.
START_GRACE_SECONDS = 5.0


def write_atomically(path, data):
    temporary = f"{path}.tmp.{os.getpid()}"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def receipt_exit_code(path):
    """The exit code a receipt records, or None while there is no (readable) receipt."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    marker = '"exit_code": '
    at = text.find(marker)
    if at >= 0:
        digits = text[at + len(marker):].split(",", 1)[0].split("}", 1)[0].strip()
        if digits.lstrip("-").isdigit():
            return int(digits)
    import json  # a receipt written in another layout: rare, so parsed the slow way

    try:
        return int(json.loads(text)["exit_code"])
    except (ValueError, KeyError, TypeError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



def run_program(program):
    """Replaces this process with `program`, searched in PATH as `execvp` does. A program of
    the form `env NAME=VALUE ... COMMAND ...` (how maand passes versions to make) is run the
    way env(1) would run it, without starting env first."""
    environment = os.environ
    if program[0] == "env":
        assignments = 1
        while (
            assignments < len(program)
            and program[assignments].find("=") > 0
            and not program[assignments].startswith("-")
        ):
            assignments += 1
        if 1 < assignments < len(program) and not program[assignments].startswith("-"):
            environment = dict(os.environ)
            for assignment in program[1:assignments]:
                name, value = assignment.split("=", 1)
                environment[name] = value
            program = program[assignments:]
    if "/" in program[0]:
        os.execve(program[0], program, environment)
    # os.execvp would import `warnings` to read PATH; this is the same search.
    failure = None
    for directory in environment.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(directory or ".", program[0]), program, environment)
        except (FileNotFoundError, NotADirectoryError) as error:
            failure = failure or error
        except OSError as error:
            failure = error
    raise failure or FileNotFoundError(2, "No such file or directory", program[0])


def supervise(base, deploy, key, limit, program):
    """The detached half: runs `program`, enforces `limit`, writes the receipt."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    write_atomically(base + ".pid", str(os.getpid()).encode())
    timed_out = False
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    out = os.open(base + ".out", flags, 0o644)
    err = os.open(base + ".err", flags, 0o644)
    # Descriptors Python opens are closed on exec; only 0, 1 and 2 reach the program (never
    # the pipe the follower waits on).
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            run_program(program)
        except OSError as error:
            os.write(2, f"runner: cannot start {program[0]}: {error}\n".encode())
        os._exit(127)
    # A blocking wait with an alarm for the limit: the end of the step is seen the moment it
    # happens, not at the next look of a polling wait.
    expired = []

    def expire(_signum, _frame):
        expired.append(True)
        try:
            os.killpg(child, signal.SIGKILL)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    _, status = os.waitpid(child, 0)
    signal.alarm(0)
    # As subprocess reports it (os.waitstatus_to_exitcode needs Python 3.9).
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    if expired and code == -signal.SIGKILL:
        timed_out = True
        code = TIMED_OUT
        os.write(err, f"runner: timed out after {limit} s\n".encode())
    os.close(out)
    os.close(err)
    # Every value is a number, a boolean or a checked name, so the JSON is written by hand
    # (importing json costs more than the rest of a step's bookkeeping).
    receipt = (
        f'{{"deploy": "{deploy}", "step": "{key}", "exit_code": {code}, '
        f'"timed_out": {"true" if timed_out else "false"}, "ended_at": "{utc_now()}"}}\n'
    )
    write_atomically(base + ".receipt", receipt.encode())
    os._exit(0)


def remove_tree(path):
    """Deletes a directory of step files (what `shutil.rmtree` would, without importing it)."""
    for parent, directories, files in os.walk(path, topdown=False):
        for name in files + directories:
            child = os.path.join(parent, name)
            try:
                if os.path.isdir(child) and not os.path.islink(child):
                    os.rmdir(child)
                else:
                    os.unlink(child)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def claim(base):
    """Marks the step as started; False when it already was."""
    marker = f"{base}.claim.{os.getpid()}"
    write_atomically(marker, utc_now().encode())
    try:
        os.link(marker, base + ".started")
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(marker)


class Follower:
    """Copies complete lines of the step's output files to our stdout and stderr."""

    def __init__(self, base):
        self.sources = [(base + ".out", sys.stdout.buffer), (base + ".err", sys.stderr.buffer)]
        self.offsets = [0, 0]
        self.partial = [b"", b""]

    def pump(self, final=False):
        for index, (path, sink) in enumerate(self.sources):
            try:
                with open(path, "rb") as handle:
                    handle.seek(self.offsets[index])
                    data = handle.read()
            except OSError:
                data = b""
            self.offsets[index] += len(data)
            data = self.partial[index] + data
            lines, newline, rest = data.rpartition(b"\n")
            if newline:
                sink.write(lines + b"\n")
            self.partial[index] = rest
            if final and rest:
                sink.write(rest + b"\n")
                self.partial[index] = b""
            sink.flush()


HELPER_FILES = frozenset({"worker.json", "jobs.json", "bin/runner.py", "bin/maand_runner.py"})
# The job's own directories on the worker, which copies never touch.
JOB_OWN_DIRECTORIES = frozenset({"data", "logs", "bin"})
DRIFTED = 3
APPLIED = "runner: applied the delta"


def delta_path(root, job, path):
    """The absolute path of a delta entry, or None when the entry may not be written."""
    parts = path.split("/")
    if path in HELPER_FILES:
        return os.path.join(root, path)
    if (
        len(parts) < 3
        or parts[0] != "jobs"
        or parts[1] != job
        or parts[2] in JOB_OWN_DIRECTORIES
        or any(part in ("", ".", "..") for part in parts)
    ):
        return None
    return os.path.join(root, path)


def read_delta(stream):
    """Parses the delta maand sends on stdin (see `apply_delta`). Entries are
    (kind, mode, size or digest, path, digest of a file sent whole or None)."""
    version = stream.readline()
    if version not in (b"maand-delta 1\n", b"maand-delta 2\n"):
        raise ValueError("not a maand delta")
    # Version 2 also gives the SHA-256 of each file sent whole, so it can be remembered.
    with_digests = version == b"maand-delta 2\n"
    entries = []
    while True:
        line = stream.readline()
        if not line.endswith(b"\n"):
            raise ValueError("the delta ended early")
        line = line[:-1].decode("utf-8")
        if line == ".":
            break
        kind, rest = line[0], line[2:]
        if kind == "F" and with_digests:
            mode, size, digest, path = rest.split(" ", 3)
            entries.append(("F", int(mode, 8), int(size), path, digest))
        elif kind == "F":
            mode, size, path = rest.split(" ", 2)
            entries.append(("F", int(mode, 8), int(size), path, None))
        elif kind == "V":
            mode, digest, path = rest.split(" ", 2)
            entries.append(("V", int(mode, 8), digest, path, None))
        elif kind == "D":
            entries.append(("D", 0, None, rest, None))
        else:
            raise ValueError(f"unknown delta entry {line!r}")
    contents = {}
    for kind, _, size, path, _ in entries:
        if kind == "F":
            data = stream.read(size)
            if len(data) != size:
                raise ValueError("the delta ended early")
            contents[path] = data
    return entries, contents


def file_identity(status):
    """What changes whenever a file's content can have changed: size, times, inode."""
    return (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino)


def sha256_of(path):
    import hashlib  # only for files the shipped index cannot vouch for

    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class ShippedIndex:
    """`shipped/JOB`: the SHA-256 of each file of JOB the last delta left on this worker, with
    the file's size, times and inode then, so that the next delta checks an unchanged file by
    `lstat` instead of reading and hashing it (as git's index does). A file is only vouched
    for when its change time is older than a moment taken before it was checked, or, for a
    file the delta wrote, after the step ended and its content was compared again: a change
    made later always gives it a newer change time. The index is only a shortcut: lost or
    stale, files are hashed."""

    def __init__(self, root, job):
        self.root = root
        directory = os.path.join(root, "shipped")
        os.makedirs(directory, 0o755, exist_ok=True)
        self.path = os.path.join(directory, job)
        self.known = {}
        try:
            with open(self.path, encoding="utf-8") as handle:
                for line in handle:
                    digest, size, mtime, ctime, inode, name = line.rstrip("\n").split(" ", 5)
                    self.known[name] = (digest, (int(size), int(mtime), int(ctime), int(inode)))
        except (OSError, ValueError):
            self.known = {}
        # Opening the next index now marks the moment the checks begin (its change time).
        self.temporary = os.path.join(directory, f".{job}.{os.getpid()}")
        self.handle = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.checks_began = os.fstat(self.handle).st_ctime_ns
        self.checked = {}
        self.written = {}

    def vouches(self, path, digest, status):
        return self.known.get(path) == (digest, file_identity(status))

    def checked_file(self, path, digest, status):
        if status.st_ctime_ns < self.checks_began:
            self.checked[path] = (digest, file_identity(status))

    def wrote_file(self, path, digest, content):
        if digest is not None and path.startswith("jobs/"):
            self.written[path] = (digest, content)

    def save(self):
        """Writes the index once the step has ended."""
        os.write(self.handle, b"-")
        now = os.fstat(self.handle).st_ctime_ns
        remembered = dict(self.checked)
        for path, (digest, content) in self.written.items():
            target = os.path.join(self.root, path)
            try:
                status = os.lstat(target)
                if status.st_ctime_ns >= now or not S_ISREG(status.st_mode):
                    continue
                with open(target, "rb") as handle:
                    if handle.read() != content:
                        continue
            except OSError:
                continue
            remembered[path] = (digest, file_identity(status))
        text = "".join(
            f"{digest} {size} {mtime} {ctime} {inode} {path}\n"
            for path, (digest, (size, mtime, ctime, inode)) in sorted(remembered.items())
            if "\n" not in path
        )
        os.ftruncate(self.handle, 0)
        os.lseek(self.handle, 0, 0)
        os.write(self.handle, text.encode())
        os.close(self.handle)
        os.replace(self.temporary, self.path)

    def discard(self):
        os.close(self.handle)
        try:
            os.unlink(self.temporary)
        except OSError:
            pass


def drift(root, job, entries, index):
    """Why the worker's copy of the job is not what maand last shipped, or None."""
    known = {path for _, _, _, path, _ in entries}
    for kind, _, digest, path, _ in entries:
        if kind != "V":
            continue
        target = os.path.join(root, path)
        try:
            status = os.lstat(target)
            if not S_ISREG(status.st_mode):
                return f"{path} is missing or not a file"
            if not index.vouches(path, digest, status):
                if sha256_of(target) != digest:
                    return f"{path} was changed on the worker"
            index.checked_file(path, digest, status)
        except FileNotFoundError:
            return f"{path} is missing or not a file"
        except OSError as error:
            return f"{path}: {error}"
    job_root = os.path.join(root, "jobs", job)
    for parent, directories, files in os.walk(job_root):
        if parent == job_root:
            directories[:] = [d for d in directories if d not in JOB_OWN_DIRECTORIES]
        for name in files + [d for d in directories if os.path.islink(os.path.join(parent, d))]:
            relative = os.path.relpath(os.path.join(parent, name), root)
            if relative not in known:
                return f"{relative} is on the worker but not in what maand shipped"
    return None


def unchanged(target, mode, content):
    """Whether the file at `target` already has this mode and content (maand's helper files
    are sent whole on every copy and mostly are)."""
    try:
        if os.path.islink(target) or os.stat(target).st_mode & 0o7777 != mode:
            return False
        with open(target, "rb") as handle:
            return handle.read() == content
    except OSError:
        return False


def apply_delta(root, job, stream):
    """Brings the worker's copy of JOB (and maand's helper files) to the staged tree, from a
    delta: `F MODE SIZE [SHA256] PATH` entries whose contents follow the header (the digest
    from version 2 on), `V MODE SHA256 PATH` entries that must already be there with that
    content, and `D PATH` entries to remove. Nothing is written when the worker's copy differs
    from what the entries expect (returns DRIFTED after saying why: the caller then copies
    with rsync). Returns the exit code and, once applied, the job's `ShippedIndex` to save
    when the step ends."""
    try:
        entries, contents = read_delta(stream)
    except (ValueError, UnicodeDecodeError) as error:
        say(f"cannot read the delta: {error}", sys.stderr)
        return 2, None
    for _, _, _, path, _ in entries:
        if delta_path(root, job, path) is None:
            say(f"refusing delta entry {path!r}", sys.stderr)
            return 2, None
    index = ShippedIndex(root, job)
    reason = drift(root, job, entries, index)
    if reason:
        index.discard()
        say(f"{reason}; the job is copied with rsync instead", sys.stderr)
        return DRIFTED, None
    for kind, mode, _, path, digest in entries:
        target = os.path.join(root, path)
        if kind == "F":
            index.wrote_file(path, digest, contents[path])
            parent = os.path.dirname(target)
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            existed = os.path.exists(target)
            if existed and unchanged(target, mode, contents[path]):
                continue
            temporary = os.path.join(parent, f".{os.path.basename(target)}.maand-{os.getpid()}")
            with open(temporary, "wb") as handle:
                handle.write(contents[path])
            os.chmod(temporary, mode)
            os.replace(temporary, target)
            # Itemized like rsync's --itemize-changes: a new file, or one with new content.
            print(f"{'>fc........' if existed else '>f+++++++++'} {path}")
        elif kind == "V":
            if os.stat(target).st_mode & 0o7777 != mode:
                os.chmod(target, mode)
                print(f".f...p..... {path}")
        else:
            try:
                os.unlink(target)
                print(f"*deleting   {path}")
            except FileNotFoundError:
                continue
            parent = os.path.dirname(target)
            job_root = os.path.join(root, "jobs", job)
            while parent != job_root and not os.listdir(parent):
                os.rmdir(parent)
                parent = os.path.dirname(parent)
    print(APPLIED, flush=True)
    return 0, index


def step(argv):
    job = None
    if len(argv) >= 7 and argv[4] == "--apply":
        job = argv[5]
        argv = argv[:4] + argv[6:]
    if len(argv) < 6 or argv[4] != "--":
        say("usage: runner.py step DEPLOY KEY LIMIT [--apply JOB] -- PROGRAM [ARG ...]", sys.stderr)
        return 2
    deploy, key, limit_text, program = argv[1], argv[2], argv[3], argv[5:]
    for name in (deploy, key) + ((job,) if job is not None else ()):
        if not safe_name(name):
            say(f"refusing unsafe name {name!r}", sys.stderr)
            return 2
    if not limit_text.isdigit() or int(limit_text) < 1:
        say(f"the time limit must be a positive number of seconds, not {limit_text!r}", sys.stderr)
        return 2
    limit = int(limit_text)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    index = None
    if job is not None:
        applied, index = apply_delta(root, job, sys.stdin.buffer)
        if applied != 0:
            return applied
    code = claim_and_follow(root, deploy, key, limit, program)
    if index is not None:
        try:
            index.save()
        except OSError as error:
            # Only a shortcut for the next delta, which then hashes the files instead.
            say(f"could not remember the shipped files: {error}", sys.stderr)
    return code


def claim_and_follow(root, deploy, key, limit, program):
    """Starts the step unless this worker already has, then follows it to its end."""
    steps = os.path.join(root, "steps")
    directory = os.path.join(steps, deploy)
    if not os.path.isdir(directory) and not deploy.startswith("job-"):
        # A newer deploy supersedes every earlier one (only the latest can be resumed): their
        # receipts, and those of finished `maand job` targets (job-*), are of no use any more.
        for old in os.listdir(steps) if os.path.isdir(steps) else []:
            if old != deploy:
                remove_tree(os.path.join(steps, old))
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, key)

    # When this process starts the step, the supervisor is its child and holds the write end of
    # a pipe until it exits: the pipe's end wakes the follower at once instead of at its next
    # look for the receipt.
    supervisor_done = None
    if claim(base):
        sys.stdout.flush()
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        supervisor = os.fork()
        if supervisor == 0:
            os.close(read_end)
            try:
                supervise(base, deploy, key, limit, program)
            finally:
                os._exit(1)
        os.close(write_end)
        supervisor_done = read_end
    else:
        state = "finished" if os.path.exists(base + ".receipt") else "running"
        say(f"step {key} of deploy {deploy} already {state} on this worker; not run again", sys.stderr)

    follower = Follower(base)
    # Short polls: how soon the end of a step is noticed adds to every lifecycle step.
    pause = 0.005
    while True:
        code = receipt_exit_code(base + ".receipt")
        if code is not None:
            follower.pump(final=True)
            return code
        follower.pump()
        pid_text = None
        try:
            with open(base + ".pid", encoding="utf-8") as handle:
                pid_text = handle.read().strip()
        except OSError:
            started = os.path.getmtime(base + ".started")
            if time.time() - started > START_GRACE_SECONDS:
                # Claimed by a caller that died before its supervisor existed: nothing ran.
                os.unlink(base + ".started")
                return claim_and_follow(root, deploy, key, limit, program)
        if pid_text and not alive(int(pid_text)) and not os.path.exists(base + ".receipt"):
            follower.pump(final=True)
            say(f"step {key} of deploy {deploy} ended without a receipt (the worker restarted?); its outcome is unknown", sys.stderr)
            return VANISHED
        if supervisor_done is None:
            time.sleep(pause)
        elif select.select([supervisor_done], [], [], pause)[0]:
            # The supervisor exited (its receipt, if any, is written): reap it, so that a
            # supervisor that died without one reads as gone below, and stop watching.
            os.waitpid(supervisor, 0)
            os.close(supervisor_done)
            supervisor_done = None
            continue
        pause = min(pause * 2, 0.05)


def main(argv):
    if len(argv) >= 2 and argv[1] == "step":
        return step(argv[1:])
    if len(argv) < 2:
        say("usage: runner.py TARGET [JOB ...]", sys.stderr)
        return 2
    import json
    import subprocess

    target, requested = argv[1], argv[2:]
    for name in [target, *requested]:
        if not safe_name(name):
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

