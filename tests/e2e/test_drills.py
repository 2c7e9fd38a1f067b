"""Drills: kill and stop API instances while requests flow through the gateway."""
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

import stack


class Load:
    """Keeps `workers` clients sending GETs through the gateway until stopped.

    The default load takes 20 ms per request (a debug route, reachable only on the
    gateway's private listener), so that a killed instance always has requests in flight.
    """

    def __init__(self, url=f"{stack.GATEWAY_ADMIN}/debug/sleep?ms=20", workers=8):
        self.url = url
        self.workers = workers
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.statuses = []
        self.errors = []
        self.instances = set()
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def _run(self):
        s = stack.session()
        while not self.stop_event.is_set():
            try:
                r = s.get(self.url, timeout=10)
                with self.lock:
                    self.statuses.append(r.status_code)
                    self.instances.add(r.headers.get("X-Nimbus-Instance"))
            except requests.RequestException as e:  # a failed request at the gateway
                with self.lock:
                    self.errors.append(repr(e))

    def __enter__(self):
        self.futures = [self.pool.submit(self._run) for _ in range(self.workers)]
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for f in self.futures:
            f.result()
        self.pool.shutdown()

    def failures(self):
        with self.lock:
            return self.errors + [s for s in self.statuses if s != 200]


def test_kill_9_of_an_instance_loses_no_request():
    victim = "api:api-2"
    old_pid = stack.pid_of(victim)
    assert old_pid > 0
    with Load() as load:
        time.sleep(1.0)
        os.kill(old_pid, signal.SIGKILL)
        time.sleep(2.0)
        stack.wait_running(victim, old_pid)
        time.sleep(1.5)
    assert load.failures() == [], load.failures()[:5]
    assert len(load.statuses) > 100

    # The restarted instance serves again through the gateway.
    s = stack.session()
    stack.wait_until(
        lambda: s.get(f"{stack.GATEWAY}/healthz", timeout=5).headers["X-Nimbus-Instance"] == "api-2",
        timeout=15, interval=0.05, what="api-2 answering through the gateway")


def test_sigterm_drains_a_long_request_and_exits_zero():
    victim = "api:api-1"
    pid = stack.pid_of(victim)
    assert pid > 0
    log_offset = len(stack.supervisor_log())
    direct = stack.api_url(1)
    result = {}

    def long_request():
        r = requests.get(f"{direct}/debug/sleep?ms=3000", timeout=20)
        result["status"] = r.status_code
        result["connection"] = r.headers.get("Connection", "")

    with Load(url=f"{stack.GATEWAY}/healthz", workers=4) as load:
        t = threading.Thread(target=long_request)
        t.start()
        time.sleep(0.5)  # the long request is inside the handler now
        os.kill(pid, signal.SIGTERM)

        # Not ready at once, while still serving (drain delay).
        time.sleep(0.2)
        ready = requests.get(f"{direct}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["status"] == "draining"

        # After the drain delay the listener is closed: no new request reaches it.
        stack.wait_until(lambda: not stack.port_open(stack.API_BASE_PORT + 1), timeout=5,
                         what="api-1 listener closed")
        t.join(timeout=20)
        assert result.get("status") == 200, "the in-flight request completes"
        assert result["connection"].lower() == "close"

        stack.wait_until(lambda: stack.exit_status_logged("api-1", log_offset) is not None, timeout=20,
                         what="api-1 exit logged")
        assert stack.exit_status_logged("api-1", log_offset) == 0
        stack.wait_running(victim, pid)
        time.sleep(1.0)

    assert load.failures() == [], load.failures()[:5]
