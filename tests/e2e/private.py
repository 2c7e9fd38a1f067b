"""An API instance of a test's own: the stack's binary and environment (its PostgreSQL,
Redis, RabbitMQ, storage and keys), on free ports, with settings the shared instances
do not have — the per-IP limits the test profile turns off, refresh tokens that expire
within seconds. Nothing else reaches it: its settings affect only the requests the test
sends it, while its data lives in the stack like any instance's.

It is the test's own child process, stopped with Popen.terminate()/kill() (never
os.kill: the pid is the child's, checked by Popen itself)."""
import os
import re
import socket
import subprocess
import time
import uuid

import requests

import stack


def _program(name):
    """(command, environment) of a supervisord program of the stack."""
    with open(stack.SUPERVISOR_CONF, encoding="utf-8") as f:
        text = f.read()
    section = re.search(rf"^\[program:{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section, f"no program {name} in {stack.SUPERVISOR_CONF}"
    body = section.group(1)
    command = re.search(r"^command=(.*)$", body, re.M).group(1).strip()
    env_line = re.search(r"^environment=(.*)$", body, re.M).group(1)
    env = {k: v.replace('\\"', '"') for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', env_line)}
    # A program of the test's own never takes the gateway's sockets (binding one replaces
    # the stack instance's socket: the gateway would send it that slot's traffic).
    env.pop("NIMBUS_HTTP_SOCKET", None)
    env.pop("NIMBUS_OPS_SOCKET", None)
    return command, env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instance_env():
    """The environment the stack's API instances run with (their settings)."""
    return dict(_program("api-1")[1])


def gateway_secret():
    """The secret nginx proves itself with (X-Nimbus-Gateway): what lets an instance
    trust X-Forwarded-For."""
    return _program("api-1")[1]["NIMBUS_GATEWAY_SECRET"]


class PrivateInstance:
    def __init__(self, **overrides):
        command, env = _program("api-1")
        self.name = f"api-private-{uuid.uuid4().hex[:6]}"
        self.port, self.ops_port = _free_port(), _free_port()
        env.update({"NIMBUS_INSTANCE": self.name, "NIMBUS_HTTP_PORT": str(self.port),
                    "NIMBUS_OPS_PORT": str(self.ops_port), **{k: str(v) for k, v in overrides.items()}})
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(stack.RUN, "logs", f"{self.name}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([command], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            stack.wait_until(self._ready, timeout=60, interval=0.1, what=f"{self.name} ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self):
        assert self.proc.poll() is None, f"{self.name} exited ({self.proc.returncode}); see {self.log_path}"
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)  # its drain delay and shutdown timeout
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        if self.proc.returncode == 0:
            os.unlink(self.log_path)  # kept only when something went wrong

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def time_left_in_minute():
    return 60 - time.time() % 60


def start_of_a_fresh_minute(needed=20):
    """Per-IP limits count per clock minute: a test that must see one window whole waits
    for the next one when fewer than `needed` seconds of this one are left (the
    boundary is the point here, not an event to wait for)."""
    if time_left_in_minute() < needed:
        time.sleep(time_left_in_minute() + 0.2)  # the window itself is what the test needs
