"""Drills: kill and stop API instances while requests flow through the gateway."""
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
    Every answer is kept with its time and the instance that gave it.
    """

    def __init__(self, url=f"{stack.GATEWAY_ADMIN}/debug/sleep?ms=20", workers=8):
        self.url = url
        self.workers = workers
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.answers = []  # (monotonic time, status, instance)
        self.errors = []
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def _run(self):
        s = stack.session()
        while not self.stop_event.is_set():
            try:
                r = s.get(self.url, timeout=10)
                with self.lock:
                    self.answers.append((time.monotonic(), r.status_code, r.headers.get("X-Nimbus-Instance")))
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

    @property
    def statuses(self):
        with self.lock:
            return [status for _, status, _ in self.answers]

    def answered(self, since=0.0, instance=None):
        """How many answers came after `since` (monotonic), from `instance` if given."""
        with self.lock:
            return sum(1 for t, _, i in self.answers if t > since and (instance is None or i == instance))

    def wait_answers(self, n, since=0.0, instance=None, timeout=30, what="answers"):
        stack.wait_until(lambda: self.answered(since, instance) >= n, timeout=timeout, interval=0.05,
                         what=f"{what} ({self.answered(since, instance)} of {n})")

    def failures(self):
        with self.lock:
            return self.errors + [status for _, status, _ in self.answers if status != 200]


def in_flight(index):
    """Requests inside instance `index`'s handlers now (its private ops listener)."""
    return stack.metric(f"http://127.0.0.1:{stack.OPS_BASE_PORT + index}/metrics", "nimbus_http_in_flight_requests")


def test_kill_9_of_an_instance_loses_no_request():
    victim = "api:api-2"
    with Load() as load:
        # The load flows through every instance, the victim included.
        load.wait_answers(20, instance="api-2", what="load reaching api-2")
        pid = stack.signal_program(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        stack.wait_running(victim, pid)
        back_at = time.monotonic()
        # Requests went on while it was down, and the restarted instance takes its share
        # again through the gateway (after nginx's fail_timeout) before the load stops.
        assert load.answered(since=killed_at) > 0
        load.wait_answers(20, since=back_at, instance="api-2", timeout=30, what="the restarted api-2 serving")
    assert load.failures() == [], load.failures()[:5]
    assert load.answered(since=killed_at) > 50, "too little load across the kill to prove anything"


def test_sigterm_drains_a_long_request_and_exits_zero():
    victim = "api:api-1"
    log_offset = len(stack.supervisor_log())
    direct = stack.api_url(1)
    result = {}

    # Long enough that the signal surely comes while it runs (supervisorctl and the
    # checks before the signal take seconds on a loaded machine), short enough to end
    # within the 15 s shutdown timeout.
    def long_request():
        r = requests.get(f"{direct}/debug/sleep?ms=10000", timeout=30)
        result["status"] = r.status_code
        result["connection"] = r.headers.get("Connection", "")

    pid = stack.pid_of(victim)
    stack.send_signal(pid, 0)  # (only checks it may be signalled, ahead of time)
    with Load(url=f"{stack.GATEWAY}/healthz", workers=4) as load:
        load.wait_answers(10, what="load flowing")
        t = threading.Thread(target=long_request)
        t.start()
        # The long request is inside the handler (the instance counts it in flight)
        # when the signal comes. (Another suite's request could be counted too; were
        # ours a moment late, the instance would still take it in its drain delay.)
        stack.wait_until(lambda: in_flight(1) >= 1, timeout=10, interval=0.02, what="the long request in flight")
        stack.send_signal(pid, signal.SIGTERM)
        signalled = time.monotonic()

        # Not ready at once, while still serving (the 1.5 s drain delay): /readyz says
        # so before the listener closes.
        def draining():
            try:
                ready = requests.get(f"{direct}/readyz", timeout=5)
            except requests.ConnectionError:
                raise AssertionError("api-1 closed its listener without ever reporting draining") from None
            return ready.status_code == 503 and ready.json()["status"] == "draining"
        stack.wait_until(draining, timeout=5, interval=0.05, what="api-1 /readyz draining")

        # After the drain delay the listener is closed: no new request reaches it.
        stack.wait_until(lambda: not stack.port_open(stack.API_BASE_PORT + 1), timeout=10,
                         what="api-1 listener closed")
        t.join(timeout=30)
        assert result.get("status") == 200, "the in-flight request completes"
        assert result["connection"].lower() == "close", \
            f"answered without Connection: close ({time.monotonic() - signalled:.1f}s after the signal)"

        # (The drain delay and the 15 s shutdown timeout at most: 30 s is headroom.)
        stack.wait_until(lambda: stack.exit_status_logged("api-1", log_offset) is not None, timeout=30,
                         what="api-1 exit logged")
        assert stack.exit_status_logged("api-1", log_offset) == 0
        stack.wait_running(victim, pid)
        back_at = time.monotonic()
        # The load goes on and reaches the new api-1 before it stops.
        load.wait_answers(5, since=back_at, instance="api-1", timeout=30, what="the restarted api-1 serving")

    assert load.failures() == [], load.failures()[:5]
