"""`./stack scale` and `./stack up` on a running stack, as an operator runs them (issue 22,
items 8 and 9): clients that keep their connections alive, as browsers and HTTP
libraries do, see no failed request while instances come and go, and the settings given
to `up` stay with the stack until the next `up`.

These run the real commands against the stack under test and leave it as they found it
(three API instances, its settings those of the test profile)."""
import http.client
import os
import re
import subprocess
import threading
import time
from urllib.parse import urlparse

import stack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GW = urlparse(stack.GATEWAY)

# Values of the test profile's own magnitude (the other suites need high limits), but
# none of them what a stack gets when they are not given: a value that was lost shows.
SETTINGS = {
    "NIMBUS_AUTH_IP_START_PER_MINUTE": "100001",
    "NIMBUS_AUTH_IP_VERIFY_PER_MINUTE": "100002",
    "NIMBUS_GATEWAY_AUTH_RATE": "1001r/s",
    "NIMBUS_GATEWAY_AUTH_BURST": "2001",
    "NIMBUS_VOTE_MAX_BATCH": "256",
}
INSTANCE_SETTINGS = [k for k in SETTINGS if not k.startswith("NIMBUS_GATEWAY_")]


def _profile_env():
    """The environment that points ./stack at the stack under test, and nothing else of
    the caller's: no NIMBUS_* setting leaks in from the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    profile = os.environ.get("NIMBUS_STACK_PROFILE") or ("test" if stack.RUN.rstrip("/").endswith("/test") else "local")
    env["NIMBUS_PROFILE"] = profile
    if profile == "test":
        # (older stack.env files do not say the shift: the gateway's port tells it)
        env["NIMBUS_TEST_PORT_SHIFT"] = os.environ.get("NIMBUS_STACK_PORT_SHIFT") or str(GW.port - 8080)
    return env


def run_stack(*args, extra=None, timeout=600):
    out = subprocess.run([os.path.join(ROOT, "stack"), *args], env={**_profile_env(), **(extra or {})}, cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"./stack {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


class KeepAliveLoad:
    """`workers` clients, each on one persistent connection to the gateway (http.client,
    as a browser or an HTTP library keeps one), reading `path` until stopped. Every
    failure counts: an exception (the connection closed under a request, reset,
    timed out) or any status but 200. After a failure the client opens a new connection,
    as a library would."""

    def __init__(self, path="/readyz", workers=8):
        self.path, self.workers = path, workers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []  # (seconds since start, what)
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(GW.hostname, GW.port, timeout=10)
                conn.request("GET", self.path, headers={"User-Agent": "nimbus-e2e-keepalive"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 200:
                    with self.lock:
                        self.ok += 1
                else:
                    self._fail(f"{r.status} {body[:120]!r}")
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self._fail(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _fail(self, what):
        with self.lock:
            self.failures.append((round(time.monotonic() - self.started, 2), what))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def wait_requests(self, n, timeout=30):
        stack.wait_until(lambda: self.ok >= n, timeout=timeout, interval=0.05, what=f"{n} requests answered")

    def report(self):
        return f"{len(self.failures)} failed of {self.ok + len(self.failures)}: {self.failures[:8]}"


def running_apis():
    return sorted(int(m) for m in re.findall(r"^api:api-(\d+)\s+RUNNING", stack.ctl("status"), re.M))


def environ_of(program):
    with open(f"/proc/{stack.pid_of(program)}/environ", "rb") as f:
        return dict(v.decode().split("=", 1) for v in f.read().split(b"\0") if b"=" in v)


def gateway_config():
    with open(os.path.join(stack.RUN, "nginx", "nginx.conf"), encoding="utf-8") as f:
        return f.read()


def assert_settings_in_effect(where):
    for i in running_apis():
        env = environ_of(f"api:api-{i}")
        for name in INSTANCE_SETTINGS:
            assert env.get(name) == SETTINGS[name], f"{where}: api-{i} has {name}={env.get(name)!r}"
    conf = gateway_config()
    assert f"rate={SETTINGS['NIMBUS_GATEWAY_AUTH_RATE']}" in conf, f"{where}: the gateway's auth rate is gone"
    assert f"burst={SETTINGS['NIMBUS_GATEWAY_AUTH_BURST']}" in conf, f"{where}: the gateway's auth burst is gone"


def test_settings_given_to_up_survive_scale_and_status_shows_them():
    run_stack("up", extra=SETTINGS)
    assert running_apis() == [1, 2, 3]
    assert_settings_in_effect("after up")
    try:
        run_stack("scale", "api=4")  # (the caller's environment has none of them)
        assert running_apis() == [1, 2, 3, 4]
        assert_settings_in_effect("after scale api=4")
    finally:
        run_stack("scale", "api=3")
    assert running_apis() == [1, 2, 3]
    assert_settings_in_effect("after scale api=3")
    status = run_stack("status")
    for name, value in SETTINGS.items():
        assert f"{name}={value}" in status, f"./stack status does not show {name}:\n{status}"


def test_scaling_fails_no_request_of_keepalive_clients():
    """./stack scale api=4, =2, =3 under 8 keep-alive clients reading /readyz: 0 failed."""
    with KeepAliveLoad() as load:
        load.wait_requests(200)
        try:
            for n in (4, 2, 3):
                run_stack("scale", f"api={n}")
                assert running_apis() == list(range(1, n + 1))
                seen = load.ok
                load.wait_requests(seen + 200)  # the load still flows after each step
        finally:
            if running_apis() != [1, 2, 3]:
                run_stack("scale", "api=3")
    print(f"scale 4, 2, 3 under keep-alive load: {load.report()}")
    assert load.ok > 1000, "too little load across the scaling to prove anything"
    assert load.failures == [], load.report()


def test_a_redeploy_fails_no_request_of_keepalive_clients():
    """./stack up again (a new build rolled through the instances one at a time), with
    the settings it already runs with: no gateway reload, no failed request."""
    pids = {i: stack.pid_of(f"api:api-{i}") for i in running_apis()}
    with KeepAliveLoad() as load:
        load.wait_requests(200)
        run_stack("up", extra=SETTINGS)
        load.wait_requests(load.ok + 200)
    print(f"redeploy under keep-alive load: {load.report()}")
    assert all(stack.pid_of(f"api:api-{i}") != pid for i, pid in pids.items()), "every instance was restarted"
    assert load.failures == [], load.report()
    stack.wait_all_in_rotation()
