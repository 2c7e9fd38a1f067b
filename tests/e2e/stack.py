"""Access to the stack under test: addresses, supervisord, instances.

`./stack test` exports NIMBUS_TEST_* and NIMBUS_STACK_* for the stack it started; to run
these tests by hand against another stack, point NIMBUS_STACK_ENV at its stack.env.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid

import requests


def _load_env():
    path = os.environ.get("NIMBUS_STACK_ENV")
    if path:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key:
                    os.environ.setdefault(key, value)
    if "NIMBUS_TEST_GATEWAY" not in os.environ:
        raise RuntimeError("no stack: run through ./stack test, or set NIMBUS_STACK_ENV")


_load_env()

GATEWAY = os.environ["NIMBUS_TEST_GATEWAY"]
GATEWAY_ADMIN = os.environ["NIMBUS_TEST_GATEWAY_ADMIN"]
SUPERVISOR_CONF = os.environ["NIMBUS_STACK_SUPERVISOR_CONF"]
APIS = int(os.environ["NIMBUS_STACK_APIS"])
API_BASE_PORT = int(os.environ["NIMBUS_STACK_API_BASE_PORT"])
OPS_BASE_PORT = int(os.environ["NIMBUS_STACK_OPS_BASE_PORT"])
RUN = os.environ["NIMBUS_STACK_RUN"]


def api_url(index):
    """Direct address of API instance `index` (1-based), bypassing the gateway."""
    return f"http://127.0.0.1:{API_BASE_PORT + index}"


def redis_cli(*args):
    """One redis-cli command against the stack's Redis; its output, stripped."""
    out = subprocess.run(["redis-cli", "-u", os.environ["NIMBUS_TEST_REDIS_URL"], *args], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def psql(sql):
    """One statement (or several) against the stack's PostgreSQL; the output, stripped."""
    out = subprocess.run(["psql", "-qtA", "-v", "ON_ERROR_STOP=1", os.environ["NIMBUS_TEST_DATABASE_URL"], "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def mint_users(n, ttl=600):
    """n users stored in PostgreSQL, each with an access token signed by the stack's key —
    the same tokens sign-in would give, without n sign-ins through the mail sink."""
    import jwt  # (PyJWT; only the suites that mint need it)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    values = ",".join(f"('{i}', 'live-{i}@example.com')" for i in ids)
    psql(f"INSERT INTO users (id, email) VALUES {values}")
    with open(os.environ["NIMBUS_TEST_JWT_KEY"], "rb") as f:
        key = f.read()
    now = int(time.time())
    return [jwt.encode({"iss": os.environ["NIMBUS_TEST_AUTH_ISSUER"], "aud": "nimbus-api", "sub": i,
                        "sid": str(uuid.uuid4()), "jti": str(uuid.uuid4()), "iat": now, "exp": now + ttl},
                       key, algorithm="EdDSA", headers={"kid": "k1", "typ": "JWT"}) for i in ids]


def ctl(*args):
    out = subprocess.run(["supervisorctl", "-c", SUPERVISOR_CONF, *args],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def pid_of(program):
    """The pid supervisord shows for `program` (or for itself, without one); 0 when none."""
    text = ctl("pid", program) if program else ctl("pid")
    return int(text) if text.isdigit() else 0


def _signalable(pid):
    """Refuses, loudly, any pid a test must not signal: 0 and negative ones (a process
    group: os.kill(0, SIGKILL) would end pytest, ctest and ./stack together, with no
    teardown), 1, the test itself, anything in the test's process group, and anything
    that is not a process of this stack (same session as its supervisord)."""
    assert isinstance(pid, int) and pid > 1, f"refusing to signal pid {pid!r}"
    assert pid != os.getpid(), "refusing to signal the test itself"
    try:
        pgid, sid = os.getpgid(pid), os.getsid(pid)
    except ProcessLookupError:
        raise AssertionError(f"no process {pid} to signal") from None
    assert pgid != os.getpgrp(), f"refusing to signal pid {pid}: it is in the test's own process group"
    assert sid == _stack_session(), f"refusing to signal pid {pid}: not a process of the stack under {SUPERVISOR_CONF}"


_STACK_SID = []


def _stack_session():
    """The session of the stack's supervisord (asked once: supervisorctl is slow on a
    loaded machine, and a signal that comes seconds late can miss what it aims at)."""
    if not _STACK_SID:
        supervisord = pid_of(None)
        assert supervisord > 1, f"no supervisord for {SUPERVISOR_CONF}"
        _STACK_SID.append(os.getsid(supervisord))
    return _STACK_SID[0]


def send_signal(pid, sig):
    """Every signal a test sends goes through here (see _signalable)."""
    _signalable(pid)
    os.kill(pid, sig)


def signal_program(program, sig):
    """Sends `sig` to supervisord's `program`, which must be running; returns its pid."""
    pid = pid_of(program)
    assert pid > 1, f"{program} is not running ({ctl('status', program)})"
    send_signal(pid, sig)
    return pid


def process_tree(pid):
    """`pid` and all its descendants (a program that forks workers, e.g. swift-proxy)."""
    pids = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                children = f.read().split()
        except OSError:
            continue
        for child in children:
            pids += process_tree(int(child))
    return pids


class Frozen:
    """SIGSTOPs `program` and its children for the block (a dependency that accepts
    connections and never answers); SIGCONTs them on the way out, whatever happened."""

    def __init__(self, program):
        self.program = program
        self.pids = []

    def __enter__(self):
        root = pid_of(self.program)
        assert root > 1, f"{self.program} is not running"
        for p in process_tree(root):
            send_signal(p, signal.SIGSTOP)
            self.pids.append(p)
        return self

    def __exit__(self, *exc):
        for p in self.pids:
            try:
                send_signal(p, signal.SIGCONT)
            except AssertionError:
                pass  # gone meanwhile


def metric(url, name):
    """The sum of every sample of metric `name` on a Prometheus endpoint; 0 when absent."""
    text = requests.get(url, timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def worker_metrics_url(index):
    """A worker's private /metrics (1-based index)."""
    return f"http://127.0.0.1:{int(os.environ['NIMBUS_STACK_WORKER_BASE_PORT']) + index}/metrics"


def wait_until(predicate, timeout, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s")


def wait_all_in_rotation(timeout=15):
    """Until the gateway sends requests to every instance again, in both its upstream
    groups (round robin, and hashed by bearer token): one it could not connect to
    (stopped, restarted, at its connection limit) stays out of a group for fail_timeout
    (3 s) after it is back. /healthz needs no token; any Authorization header picks the
    hashed group, and 60 different ones reach every instance."""
    def all_seen():
        everyone = {f"api-{i}" for i in range(1, APIS + 1)}
        anonymous = {requests.get(f"{GATEWAY}/healthz", timeout=5).headers.get("X-Nimbus-Instance")
                     for _ in range(3 * APIS)}
        hashed = {requests.get(f"{GATEWAY}/healthz", headers={"Authorization": f"Bearer probe-{i}"},
                               timeout=5).headers.get("X-Nimbus-Instance") for i in range(60)}
        return anonymous >= everyone and hashed >= everyone

    wait_until(all_seen, timeout=timeout, interval=0.5, what="every instance in the gateway's rotation")


def wait_running(program, old_pid=0, timeout=20):
    """Waits until supervisord shows `program` RUNNING with a pid other than old_pid."""
    wait_until(lambda: "RUNNING" in ctl("status", program) and pid_of(program) not in (0, old_pid),
               timeout, what=f"{program} running again")


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def supervisor_log():
    with open(os.path.join(RUN, "logs", "supervisord.log"), encoding="utf-8") as f:
        return f.read()


def log_offset(name):
    """(path, size now) of a program's log (e.g. "worker-2"), to read what comes after."""
    path = os.path.join(RUN, "logs", f"{name}.log")
    return path, os.path.getsize(path) if os.path.exists(path) else 0


def log_lines_since(path, offset):
    """The JSON log lines written to `path` after byte `offset` (other lines skipped)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        lines = []
        for line in f:
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines


def exit_status_logged(program, since_offset):
    """The exit status supervisord logged for `program` after byte `since_offset`."""
    tail = supervisor_log()[since_offset:]
    m = re.search(rf"(?:exited|stopped): {re.escape(program)} \(exit status (\d+)[;)]", tail)
    return int(m.group(1)) if m else None


def session():
    s = requests.Session()
    s.headers["User-Agent"] = "nimbus-e2e"
    return s
