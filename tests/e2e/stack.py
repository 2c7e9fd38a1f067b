"""Access to the stack under test: addresses, supervisord, instances.

`./stack test` exports NIMBUS_TEST_* and NIMBUS_STACK_* for the stack it started; to run
these tests by hand against another stack, point NIMBUS_STACK_ENV at its stack.env.
"""
import os
import re
import socket
import subprocess
import time

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


def ctl(*args):
    out = subprocess.run(["supervisorctl", "-c", SUPERVISOR_CONF, *args],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def pid_of(program):
    text = ctl("pid", program)
    return int(text) if text.isdigit() else 0


def wait_until(predicate, timeout, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s")


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


def exit_status_logged(program, since_offset):
    """The exit status supervisord logged for `program` after byte `since_offset`."""
    tail = supervisor_log()[since_offset:]
    m = re.search(rf"exited: {re.escape(program)} \(exit status (\d+);", tail)
    return int(m.group(1)) if m else None


def session():
    s = requests.Session()
    s.headers["User-Agent"] = "nimbus-e2e"
    return s
