"""maand: what a job command uses to talk to the maand that runs it.

maand writes this file next to the command's script for every run, so `import maand` always
matches the running maand. It uses the Python standard library only.

Context comes from the environment maand sets (ALLOCATION_ID, ALLOCATION_IP, JOB, EVENT, ...).
KV, demands and semaphores go to the runtime API at MAAND_API_URL with the per-process token
MAAND_API_TOKEN. API functions return a `Response` (`status_code`, `ok`, `text`, `json()`,
`raise_for_status()`), so `put_job_secret("k", v).raise_for_status()` fails loudly.

Worker helpers (`run_ssh`, `run_runner_target`, `run_make_target`) use the bucket's SSH
settings: its key, user and port, and its own known_hosts with strict host key checking.
"""

import json
import os
import shlex
import subprocess
import urllib.error
import urllib.parse
import urllib.request

__all__ = [
    "MaandAPIError",
    "Response",
    "allocation_id",
    "allocation_ip",
    "allocation_index",
    "job_name",
    "command_event",
    "command_name",
    "is_allocation_disabled",
    "current_version",
    "new_version",
    "get_allocation_id",
    "get_allocation_ip",
    "get_allocation_index",
    "get_job",
    "get_event",
    "get_command",
    "get_store_value",
    "get_kv_value",
    "kv_get",
    "get_job_variable",
    "get_job_secret",
    "put_job_variable",
    "kv_put",
    "put_job_secret",
    "delete_job_variable",
    "kv_delete",
    "delete_job_secret",
    "list_job_keys",
    "put_rollout_order",
    "get_rollout_order",
    "list_command_demands",
    "acquire_semaphore",
    "release_semaphore",
    "semaphore_status",
    "semaphore",
    "load_ssh",
    "ssh_command",
    "run_ssh",
    "run_runner_target",
    "run_make_target",
]


class MaandAPIError(Exception):
    """The runtime API refused a request (`status_code`, `error`, `detail`)."""

    def __init__(self, status_code, error, detail=None):
        self.status_code = status_code
        self.error = error
        self.detail = detail
        message = f"maand API {status_code}: {error}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class Response:
    """An API answer, shaped like the common HTTP client responses."""

    def __init__(self, status_code, body):
        self.status_code = status_code
        self.content = body
        self.text = body.decode("utf-8", "replace")

    @property
    def ok(self):
        return 200 <= self.status_code < 300

    def json(self):
        return json.loads(self.text) if self.text else None

    def raise_for_status(self):
        if self.ok:
            return
        try:
            body = self.json() or {}
        except ValueError:
            body = {}
        raise MaandAPIError(self.status_code, body.get("error", self.text), body.get("detail"))

    def __repr__(self):
        return f"<maand.Response [{self.status_code}]>"


def _env(name):
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(f"{name} is not set: the maand module works inside a job command run by maand")
    return value


# --- context -------------------------------------------------------------------------------


def allocation_id():
    return _env("ALLOCATION_ID")


def allocation_ip():
    return _env("ALLOCATION_IP")


def allocation_index():
    return int(_env("ALLOCATION_INDEX"))


def job_name():
    return _env("JOB")


def command_event():
    return _env("EVENT")


def command_name():
    return _env("COMMAND")


def is_allocation_disabled():
    return os.environ.get("DISABLED") == "1"


def current_version():
    return _env("CURRENT_VERSION")


def new_version():
    return _env("NEW_VERSION")


get_allocation_id = allocation_id
get_allocation_ip = allocation_ip
get_allocation_index = allocation_index
get_job = job_name
get_event = command_event
get_command = command_name


# --- HTTP ----------------------------------------------------------------------------------

# The API is on 127.0.0.1: never route it through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(method, path, body=None, query=None):
    url = _env("MAAND_API_URL") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {
        "Authorization": "Bearer " + _env("MAAND_API_TOKEN"),
        "X-ALLOCATION-ID": allocation_id(),
        "EVENT": command_event(),
        "COMMAND": command_name(),
    }
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request) as answer:
            return Response(answer.status, answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read())


def _vars():
    return "vars/job/" + job_name()


def _secrets():
    return "secrets/job/" + job_name()


# --- KV ------------------------------------------------------------------------------------


def get_store_value(namespace, key):
    """GET /kv: the response; its JSON has `value` (secrets decrypted)."""
    return _call("GET", "/kv", query={"namespace": namespace, "key": key})


def get_kv_value(namespace, key):
    """The value of `key`, or None when it does not exist."""
    response = get_store_value(namespace, key)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()["value"]


kv_get = get_kv_value


def get_job_variable(key):
    return get_kv_value(_vars(), key)


def get_job_secret(key):
    return get_kv_value(_secrets(), key)


def put_job_variable(key, value):
    return _call("PUT", "/kv", {"namespace": _vars(), "key": key, "value": str(value)})


kv_put = put_job_variable


def put_job_secret(key, value):
    return _call("PUT", "/kv/secret", {"namespace": _secrets(), "key": key, "value": str(value)})


def delete_job_variable(key):
    return _call("DELETE", "/kv", {"namespace": _vars(), "key": key})


kv_delete = delete_job_variable


def delete_job_secret(key):
    return _call("DELETE", "/kv/secret", {"namespace": _secrets(), "key": key})


def list_job_keys(ns=None):
    """GET /kv/keys: `{"keys": {namespace: [key, ...]}}`; the job's vars and secrets by default."""
    return _call("GET", "/kv/keys", query={"namespace": ns} if ns else None)


def put_rollout_order(order):
    """Sets this deploy's worker order (pre_deploy and cli only); a list or "ip,ip"."""
    if not isinstance(order, str):
        order = ",".join(order)
    return _call("PUT", "/kv", {"namespace": "maand/job/" + job_name(), "key": "rollout_order", "value": order})


def get_rollout_order():
    value = get_kv_value("maand/job/" + job_name(), "rollout_order")
    return [ip for ip in (value or "").split(",") if ip]


# --- demands and semaphores ----------------------------------------------------------------


def list_command_demands():
    """GET /demands: commands of other jobs that demand this job and command."""
    return _call("GET", "/demands")


def acquire_semaphore(name, capacity=1, timeout_seconds=600):
    """Waits until this allocation holds a slot of `name` (408 after `timeout_seconds`)."""
    return _call(
        "POST",
        "/semaphore/acquire",
        {"name": name, "capacity": capacity, "timeout_seconds": timeout_seconds},
    )


def release_semaphore(name):
    return _call("POST", "/semaphore/release", {"name": name})


def semaphore_status(name):
    return _call("GET", "/semaphore/status", query={"name": name})


class semaphore:
    """`with maand.semaphore("migrate"):` holds a slot for the block and always releases it."""

    def __init__(self, name, capacity=1, timeout_seconds=600):
        self.name = name
        self.capacity = capacity
        self.timeout_seconds = timeout_seconds

    def __enter__(self):
        acquire_semaphore(self.name, self.capacity, self.timeout_seconds).raise_for_status()
        return self

    def __exit__(self, *exc):
        release_semaphore(self.name).raise_for_status()
        return False


# --- workers over SSH ----------------------------------------------------------------------


def load_ssh():
    """The bucket's SSH settings: (user, key_path, use_sudo)."""
    return (
        _env("MAAND_SSH_USER"),
        _env("MAAND_SSH_KEY"),
        os.environ.get("MAAND_USE_SUDO") == "1",
    )


def ssh_command(worker_ip):
    """The ssh argv (without the remote command) maand's settings give for `worker_ip`."""
    user, key, _ = load_ssh()
    return [
        "ssh",
        "-i", key,
        "-p", _env("MAAND_SSH_PORT"),
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=" + _env("MAAND_SSH_KNOWN_HOSTS"),
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=30",
        f"{user}@{worker_ip}",
    ]


def run_ssh(worker_ip, remote_cmd, check=True, capture_output=False, timeout=None, sudo=False):
    """Runs `remote_cmd` (a shell string, or an argv list that gets quoted) on `worker_ip`.

    Returns a subprocess.CompletedProcess (text mode). With `check` (the default) a non-zero
    exit raises subprocess.CalledProcessError. `sudo` runs it through `sudo -n` when the
    bucket uses sudo.
    """
    if not isinstance(remote_cmd, str):
        remote_cmd = shlex.join(remote_cmd)
    if sudo and load_ssh()[2]:
        remote_cmd = "sudo -n -- sh -c " + shlex.quote(remote_cmd)
    return subprocess.run(
        ssh_command(worker_ip) + ["--", remote_cmd],
        check=check,
        capture_output=capture_output,
        timeout=timeout,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _bucket_dir():
    return "/opt/worker/" + _env("MAAND_BUCKET_ID")


def run_runner_target(target, worker_ip=None, job=None, **kwargs):
    """Runs the worker's runner for `target` of `job` (default: this allocation), as deploy does."""
    argv = ["python3", _bucket_dir() + "/bin/runner.py", target, job or job_name()]
    return run_ssh(worker_ip or allocation_ip(), argv, sudo=True, **kwargs)


def run_make_target(target, worker_ip=None, job=None, **kwargs):
    """Runs `make -s -C /opt/worker/<bucket>/jobs/<job> <target>` with CURRENT_VERSION and NEW_VERSION."""
    job = job or job_name()
    argv = [
        "env",
        "CURRENT_VERSION=" + os.environ.get("CURRENT_VERSION", "0.0.0"),
        "NEW_VERSION=" + os.environ.get("NEW_VERSION", "0.0.0"),
        "make", "-s", "-C", f"{_bucket_dir()}/jobs/{job}", target,
    ]
    return run_ssh(worker_ip or allocation_ip(), argv, sudo=True, **kwargs)
