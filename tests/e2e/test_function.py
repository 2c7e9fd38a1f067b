"""nimbus-worker's function mode (NIMBUS_WORKER_MODE=function): the thumbnail job fed
CloudEvents over HTTP (binary content mode), as Knative would run it. A function of
the test's own runs the stack's worker binary with the stack's environment on a free
port; its images are put into PostgreSQL and storage directly (no outbox message), so
only the function works on them. The cases: the happy path, duplicate deliveries (one
after the other and at once), an undecodable image, a crash mid-invocation followed by
the redelivery, requests that are not such events, and callers without the shared
token (NIMBUS_FUNCTION_TOKEN, sent as a bearer token)."""
import concurrent.futures
import hashlib
import io
import os
import secrets
import signal
import subprocess
import uuid

import pytest
import requests
from PIL import Image

import private
import stack
import storage


# The token every function of this module is started with, as the Secret would give it.
TOKEN = secrets.token_urlsafe(32)


class Function:
    """nimbus-worker in function mode, a child process of the test."""

    def __init__(self, **overrides):
        command, env = private._program("worker-1")
        self.name = f"function-{uuid.uuid4().hex[:6]}"
        self.port = private._free_port()
        env.update({"NIMBUS_INSTANCE": self.name, "NIMBUS_HTTP_PORT": str(self.port), "NIMBUS_WORKER_MODE": "function",
                    "NIMBUS_IMAGE_THREADS": "2", "NIMBUS_FUNCTION_TOKEN": TOKEN,
                    **{k: str(v) for k, v in overrides.items()}})
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(stack.RUN, "logs", f"{self.name}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([command], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        stack.wait_until(self._ready, timeout=60, interval=0.1, what=f"{self.name} ready")

    def _ready(self):
        assert self.proc.poll() is None, f"{self.name} exited ({self.proc.returncode}); see {self.log_path}"
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def post(self, image_id, event_id=None, body=None, **headers):
        """One job as a binary-mode CloudEvent, the way the RabbitmqSource delivers it;
        a header given as None is left out."""
        sent = {"ce-specversion": "1.0", "ce-id": event_id or str(uuid.uuid4()), "ce-type": "dev.knative.rabbitmq.event",
                "ce-source": "/apis/v1/namespaces/nimbus/rabbitmqsources/nimbus-image-jobs",
                "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}", **headers}
        return requests.post(f"{self.url}/", data=body or f'{{"image_id":"{image_id}"}}',
                             headers={k: v for k, v in sent.items() if v is not None}, timeout=120)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
        if self.proc.returncode == 0:
            os.unlink(self.log_path)  # kept only when something went wrong
        return self.proc.returncode

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)  # the child's own pid, through Popen
        self.proc.wait(timeout=10)
        self.log.close()
        os.unlink(self.log_path)  # killed on purpose


def _put_object(key, data, content_type):
    r = storage.request("PUT", key, data=data, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text[:300]


def _png(width, height, noise=False):
    if noise:
        img = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        img = Image.new("RGB", (width, height))
        img.putdata([((x * 255) // width, (y * 255) // height, 128) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def owner():
    user = str(uuid.uuid4())
    stack.psql(f"INSERT INTO users (id, email) VALUES ('{user}', 'function-{user}@example.com')")
    return user


def _queued_image(owner, data, content_type="image/png", width=1, height=1):
    """An image as an accepted upload leaves it: its original in storage, its row queued."""
    image = str(uuid.uuid4())
    _put_object(f"originals/{image}", data, content_type)
    stack.psql("INSERT INTO images (id, owner_id, status, content_type, bytes, width, height, sha256) VALUES "
               f"('{image}', '{owner}', 'queued', '{content_type}', {len(data)}, {width}, {height}, "
               f"'{hashlib.sha256(data).hexdigest()}')")
    return image


def _row(image):
    status, attempts, error = stack.psql(f"SELECT status, attempts, coalesce(error, '') FROM images WHERE id = '{image}'").split("|")
    variants = int(stack.psql(f"SELECT count(*) FROM image_variants WHERE image_id = '{image}'"))
    return status, int(attempts), error, variants


@pytest.fixture(scope="module")
def function():
    f = Function()
    yield f
    f.stop()


def test_happy_path_answers_when_the_variants_are_stored(function, owner):
    image = _queued_image(owner, _png(640, 480), width=640, height=480)
    r = function.post(image)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done"
    # Stored before the answer: nothing to wait for.
    assert _row(image) == ("ready", 1, "", 2)
    assert sorted(storage.list_keys(f"variants/{image}/")) == [f"variants/{image}/preview", f"variants/{image}/thumb"]
    metrics = requests.get(f"{function.url}/metrics", timeout=5).text
    assert "nimbus_image_jobs_ready_total 1" in metrics


def test_duplicate_deliveries_do_the_work_once(function, owner):
    image = _queued_image(owner, _png(320, 240), width=320, height=240)
    event = str(uuid.uuid4())
    first, again = function.post(image, event), function.post(image, event)
    assert (first.status_code, again.status_code) == (200, 200)
    assert _row(image) == ("ready", 1, "", 2)  # the second found it ready: no new attempt
    # Two at once (a redelivery racing the first delivery): both answered, one result.
    other = _queued_image(owner, _png(800, 600), width=800, height=600)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: function.post(other, event), range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    status, attempts, _, variants = _row(other)
    assert (status, variants) == ("ready", 2) and attempts in (1, 2)
    assert len(storage.list_keys(f"variants/{other}/")) == 2


def test_an_undecodable_image_fails_for_good(function, owner):
    # Sniffing passes (JPEG start and end markers), decoding cannot.
    data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(4000) + b"\xff\xd9"
    image = _queued_image(owner, data, content_type="image/jpeg")
    r = function.post(image)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "image_failed"
    status, attempts, error, variants = _row(image)
    assert (status, attempts, variants) == ("failed", 1, 0) and error
    # Delivered again: nothing left to do, and the sender is told it is done.
    assert function.post(image).status_code == 200
    assert _row(image)[0:2] == ("failed", 1)


def test_a_crash_mid_invocation_is_finished_by_the_redelivery(owner):
    # Large enough that decoding takes a while, so the kill lands in the middle.
    image = _queued_image(owner, _png(3000, 2000, noise=True), width=3000, height=2000)
    doomed = Function()
    event = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(doomed.post, image, event)
        # Killed while decoding (images.decoding_since set): this death is the image's
        # to count (docs/adr/0010).
        stack.wait_until(lambda: stack.psql(f"SELECT decoding_since IS NOT NULL FROM images WHERE id = '{image}'")
                         == "t", timeout=30, interval=0.01, what="the decode started")
        doomed.kill()
        with pytest.raises(requests.ConnectionError):
            answer.result(timeout=30)
    status, attempts, _, variants = _row(image)
    assert (status, attempts, variants) == ("processing", 1, 0)  # the attempt counts; nothing stored
    # The event source delivers it again (to another pod, or this one restarted).
    again = Function()
    try:
        r = again.post(image, event)
        assert r.status_code == 200, r.text
        assert _row(image) == ("ready", 2, "", 2), "the death while decoding counted"
    finally:
        assert again.stop() == 0


@pytest.mark.parametrize("headers,status,code", [
    ({"ce-specversion": None}, 400, "malformed_event"),
    ({"ce-specversion": "0.3"}, 400, "malformed_event"),
    ({"ce-id": None}, 400, "malformed_event"),
    ({"Content-Type": "application/cloudevents+json"}, 415, "structured_mode_unsupported"),
    ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ({"body": '{"image_id":"not-a-uuid"}'}, 400, "malformed_event"),
    ({"body": "[1,2"}, 400, "malformed_event"),
])
def test_a_request_that_is_not_a_job_event_is_refused(function, headers, status, code):
    headers = dict(headers)
    r = function.post(str(uuid.uuid4()), body=headers.pop("body", None), **headers)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == code


@pytest.mark.parametrize("authorization,code", [
    (None, "missing_token"),
    ("Basic Zm9vOmJhcg==", "missing_token"),
    ("Bearer", "missing_token"),
    ("Bearer " + "x" * 43, "invalid_token"),
    (f"Bearer {TOKEN}x", "invalid_token"),
    (f"Bearer {TOKEN[:-1]}", "invalid_token"),
])
def test_a_caller_without_the_token_is_refused_before_any_work(function, owner, authorization, code):
    image = _queued_image(owner, _png(64, 48), width=64, height=48)
    r = function.post(image, Authorization=authorization)
    assert r.status_code == 401, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == code
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert _row(image) == ("queued", 0, "", 0)  # not even taken
    # Refused before the event is read: a caller without the token learns nothing of it.
    bad = function.post(image, body="[1,2", Authorization=authorization)
    assert (bad.status_code, bad.json()["code"]) == (401, code)


def test_the_token_may_come_with_any_case_of_bearer(function, owner):
    image = _queued_image(owner, _png(64, 48), width=64, height=48)
    assert function.post(image, Authorization=f"bearer {TOKEN}").status_code == 200
    assert _row(image)[0] == "ready"


def test_function_mode_serves_only_the_job_and_the_probes(function):
    ready = requests.get(f"{function.url}/readyz", timeout=5).json()
    assert set(ready["checks"]) == {"postgres", "rabbitmq", "s3"}
    assert requests.get(f"{function.url}/v1/polls", timeout=5).status_code == 404
    assert requests.get(f"{function.url}/", timeout=5).status_code == 405


def test_the_probes_and_metrics_need_no_token(function):
    # Kubelet and Prometheus do not carry the token.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert requests.get(f"{function.url}{path}", timeout=5).status_code == 200, path


@pytest.mark.parametrize("token", [None, "", "short-token"])
def test_function_mode_without_a_strong_token_does_not_start(token):
    command, env = private._program("worker-1")
    env["NIMBUS_WORKER_MODE"] = "function"
    env.pop("NIMBUS_FUNCTION_TOKEN", None)
    if token is not None:
        env["NIMBUS_FUNCTION_TOKEN"] = token
    out = subprocess.run([command], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert "NIMBUS_FUNCTION_TOKEN" in out.stderr


def test_an_unknown_worker_mode_is_a_configuration_error():
    command, env = private._program("worker-1")
    env["NIMBUS_WORKER_MODE"] = "lambda"
    out = subprocess.run([command], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "NIMBUS_WORKER_MODE" in out.stderr


def test_sigterm_mid_invocation_hands_the_job_back_and_exits_0(owner):
    # A short shutdown timeout: the server stops waiting for the invocation at once, and
    # the job is cut off at its next step.
    image = _queued_image(owner, _png(3000, 2000, noise=True), width=3000, height=2000)
    f = Function(NIMBUS_SHUTDOWN_TIMEOUT="100ms", NIMBUS_DRAIN_DELAY="100ms")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(f.post, image)
        stack.wait_until(lambda: _row(image)[0] == "processing", timeout=30, interval=0.02, what="the job started")
        assert f.stop() == 0
        try:
            status = answer.result(timeout=30).status_code
        except requests.ConnectionError:
            status = None  # the connection closed first: the sender redelivers either way
    assert status in (None, 200, 503), status
    state, attempts, _, variants = _row(image)
    # Either it finished within the drain, or it went back to the queue uncounted.
    assert (state, attempts, variants) in (("ready", 1, 2), ("queued", 0, 0)), (state, attempts, variants)
