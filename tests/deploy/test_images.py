"""The OCI images (./stack images) run against a stack's services: two nimbus-api
containers behind the gateway container, a queue worker and the thumbnail function in
worker containers — all with podman, on the host network, with a read-only root and no
capabilities, as the Kubernetes manifests run them. The accounts, votes and images smoke
flows go through the containers' gateway; then each image's promises are checked: user,
stop signal, no toolchain inside, a clean SIGTERM.

Not part of ./stack test (the images take minutes to build): run after ./stack images,
against a running stack (the containers use its PostgreSQL, Redis, RabbitMQ, S3, SMTP):

    NIMBUS_STACK_ENV=.run/local/stack.env /usr/bin/python3 -m pytest -q tests/deploy/test_images.py
"""
import concurrent.futures
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "e2e"))
import private  # noqa: E402  (the stack's programs and their environment)
import stack  # noqa: E402
import test_function as fn  # noqa: E402  (images put into the stack directly, CloudEvents)

CONTAINERS_CONF = str(pathlib.Path(__file__).resolve().parents[2] / "deploy/containers/containers.conf")
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": CONTAINERS_CONF}
TAG = os.environ.get("NIMBUS_IMAGE_TAG", "latest")
RUN_ID = uuid.uuid4().hex[:6]


def podman(*args, check=True, timeout=120):
    out = subprocess.run(["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"podman {' '.join(args)}: {out.stderr[-2000:]}"
    return out


def image(name):
    return f"localhost/nimbus/{name}:{TAG}"


class Container:
    """One container of the test's own (name nimbus-it-<run>-<role>), removed at the end."""

    def __init__(self, role, name, env, mounts=(), wait_url=None):
        self.name = f"nimbus-it-{RUN_ID}-{role}"
        self.env_file = tempfile.NamedTemporaryFile("w", prefix=f"{self.name}-", suffix=".env", delete=False)
        os.chmod(self.env_file.name, 0o600)
        for k, v in env.items():
            self.env_file.write(f"{k}={v}\n")
        self.env_file.close()
        args = ["run", "-d", "--name", self.name, "--network", "host", "--read-only", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", "--env-file", self.env_file.name]
        for src, dst in mounts:
            args += ["-v", f"{src}:{dst}:ro"]
        podman(*args, image(name))
        self.wait_url = wait_url

    def wait(self):
        if self.wait_url:
            stack.wait_until(lambda: self._answers(self.wait_url), timeout=60, interval=0.2, what=f"{self.name} ready")
        return self

    def _answers(self, url):
        state = podman("inspect", "--format", "{{.State.Status}}", self.name, check=False).stdout.strip()
        assert state in ("running", "created"), f"{self.name} is {state}: {self.logs()[-2000:]}"
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def logs(self):
        return podman("logs", self.name, check=False).stdout + podman("logs", self.name, check=False).stderr

    def stop(self, timeout=40):
        """podman stop: the image's STOPSIGNAL, then its exit code."""
        podman("stop", "-t", str(timeout), self.name, check=False, timeout=timeout + 30)
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())

    def remove(self):
        podman("rm", "-f", "-t", "0", self.name, check=False)
        os.unlink(self.env_file.name)


@pytest.fixture(scope="module")
def deployment():
    if not shutil.which("podman"):
        pytest.fail("podman is missing: deploy/local/install.sh installs it")
    for name in ("api", "worker", "gateway"):
        if podman("image", "exists", image(name), check=False).returncode != 0:
            pytest.fail(f"{image(name)} is missing: ./stack images first")
    api_env = private._program("api-1")[1]
    worker_env = private._program("worker-1")[1]
    keys = tempfile.mkdtemp(prefix="nimbus-it-keys-")
    key = re.match(r"k1=(.*)$", api_env["NIMBUS_JWT_KEYS"]).group(1)
    shutil.copyfile(key, f"{keys}/k1.pem")
    os.chmod(keys, 0o755)
    os.chmod(f"{keys}/k1.pem", 0o444)  # the container's user (65532) reads it, as from a Secret volume
    made = []
    try:
        apis = []
        for i in (1, 2):
            port, ops = private._free_port(), private._free_port()
            env = {**api_env, "NIMBUS_INSTANCE": f"container-api-{i}", "NIMBUS_HTTP_ADDRESS": "127.0.0.1",
                   "NIMBUS_HTTP_PORT": port, "NIMBUS_OPS_ADDRESS": "127.0.0.1", "NIMBUS_OPS_PORT": ops,
                   "NIMBUS_JWT_KEYS": "k1=/etc/nimbus/jwt/k1.pem"}
            made.append(Container(f"api-{i}", "api", env, mounts=[(keys, "/etc/nimbus/jwt")],
                                  wait_url=f"http://127.0.0.1:{port}/readyz"))
            made[-1].wait()
            apis.append((made[-1], port, ops))
        gateway_port = private._free_port()
        made.append(Container("gateway", "gateway", {
            "NIMBUS_GATEWAY_UPSTREAMS": " ".join(f"127.0.0.1:{p}" for _, p, _ in apis),
            "NIMBUS_GATEWAY_SECRET": api_env["NIMBUS_GATEWAY_SECRET"], "NIMBUS_GATEWAY_PORT": gateway_port,
            "NIMBUS_GATEWAY_AUTH_RATE": "100r/s", "NIMBUS_GATEWAY_AUTH_BURST": "100",
            "NIMBUS_GATEWAY_STORAGE_ORIGIN": os.environ["NIMBUS_TEST_S3_ENDPOINT"]},
            wait_url=f"http://127.0.0.1:{gateway_port}/gateway/healthz"))
        gateway = made[-1].wait()
        worker_port = private._free_port()
        made.append(Container("worker", "worker", {**worker_env, "NIMBUS_INSTANCE": "container-worker",
                                                   "NIMBUS_HTTP_ADDRESS": "127.0.0.1", "NIMBUS_HTTP_PORT": worker_port},
                              wait_url=f"http://127.0.0.1:{worker_port}/readyz"))
        made[-1].wait()
        function_port = private._free_port()
        made.append(Container("function", "worker", {**worker_env, "NIMBUS_INSTANCE": "container-function",
                                                     "NIMBUS_WORKER_MODE": "function", "NIMBUS_HTTP_ADDRESS": "127.0.0.1",
                                                     "NIMBUS_HTTP_PORT": function_port,
                                                     "NIMBUS_FUNCTION_TOKEN": fn.TOKEN},
                              wait_url=f"http://127.0.0.1:{function_port}/readyz"))
        made[-1].wait()
        yield {"gateway": f"http://127.0.0.1:{gateway_port}", "gateway_container": gateway, "apis": apis,
               "worker": made[-2], "function": f"http://127.0.0.1:{function_port}", "function_container": made[-1]}
    finally:
        for c in made:
            c.remove()
        shutil.rmtree(keys, ignore_errors=True)


def sign_in(base):
    maildev = os.environ["NIMBUS_TEST_MAILDEV"]
    email = f"container-{uuid.uuid4().hex[:10]}@example.com"
    r = requests.post(f"{base}/v1/auth/email/start", json={"email": email}, timeout=10)
    assert r.status_code == 202, r.text
    code = None
    deadline = time.monotonic() + 60
    while code is None and time.monotonic() < deadline:
        for mail in requests.get(f"{maildev}/email", timeout=5).json():
            if any(t["address"] == email for t in mail["to"]):
                code = re.search(r"\b(\d{6})\b", mail["text"]).group(1)
        if code is None:
            time.sleep(0.1)
    assert code, f"no code mailed to {email}"
    r = requests.post(f"{base}/v1/auth/email/verify", json={"email": email, "code": code}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def test_accounts_votes_and_images_through_the_containers(deployment):
    g = deployment["gateway"]
    seen = {requests.get(f"{g}/readyz", timeout=5).headers["X-Nimbus-Instance"] for _ in range(6)}
    assert seen == {"container-api-1", "container-api-2"}  # round robin over the API containers
    token = sign_in(g)
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{g}/v1/me", headers=auth, timeout=5).status_code == 200

    poll = requests.post(f"{g}/v1/polls", headers=auth, timeout=10,
                         json={"title": "From a container", "options": ["yes", "no"], "results_visibility": "always"})
    assert poll.status_code == 201, poll.text
    poll = poll.json()
    choice = {"option_ids": [poll["options"][0]["id"]]}
    assert requests.post(f"{g}/v1/polls/{poll['id']}/votes", headers=auth, json=choice, timeout=10).status_code == 201
    assert requests.post(f"{g}/v1/polls/{poll['id']}/votes", headers=auth, json=choice, timeout=10).status_code == 200
    results = requests.get(f"{g}/v1/polls/{poll['id']}/results", headers=auth, timeout=10).json()
    assert results["total_votes"] == 1

    upload = requests.post(f"{g}/v1/images", data=fn._png(400, 300), timeout=60,
                           headers={**auth, "Content-Type": "image/png"})
    assert upload.status_code == 202, upload.text
    image_id = upload.json()["id"]
    stack.wait_until(lambda: requests.get(f"{g}/v1/images/{image_id}", headers=auth, timeout=10).json()["status"]
                     in ("ready", "failed"), timeout=120, what="the upload processed")
    body = requests.get(f"{g}/v1/images/{image_id}", headers=auth, timeout=10).json()
    assert body["status"] == "ready", body
    thumb = requests.get(f"{g}/v1/images/{image_id}/variants/thumb", headers=auth, allow_redirects=False, timeout=10)
    assert thumb.status_code == 302 and requests.get(thumb.headers["Location"], timeout=10).content[8:12] == b"WEBP"

    # The web app and its contract, from the gateway image.
    page = requests.get(f"{g}/", timeout=5)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert requests.get(f"{g}/v1/openapi.json", timeout=5).json()["openapi"].startswith("3.1")
    assert requests.get(f"{g}/metrics", timeout=5).status_code == 404


def test_the_worker_image_makes_thumbnails(deployment):
    """The thumbnail function in the worker image: libvips and its loaders are inside."""
    owner = str(uuid.uuid4())
    stack.psql(f"INSERT INTO users (id, email) VALUES ('{owner}', 'container-{owner}@example.com')")
    image_id = fn._queued_image(owner, fn._png(1024, 768), width=1024, height=768)
    r = requests.post(f"{deployment['function']}/", data=f'{{"image_id":"{image_id}"}}', timeout=120, headers={
        "ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-type": "nimbus.image.process", "ce-source": "/test",
        "Content-Type": "application/json", "Authorization": f"Bearer {fn.TOKEN}"})
    assert r.status_code == 200, r.text
    assert fn._row(image_id) == ("ready", 1, "", 2)


def test_each_image_runs_as_promised(deployment):
    for name in ("api", "worker", "gateway"):
        config = podman("image", "inspect", "--format", "{{.Config.User}} {{.Config.StopSignal}}", image(name)).stdout.split()
        assert config == ["65532:65532", "SIGTERM"], (name, config)
        tools = podman("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image(name), "-c",
                       "for t in gcc cc c++ g++ make cmake ld as; do command -v $t; done; ls /src 2>/dev/null; true")
        assert tools.stdout.strip() == "", (name, tools.stdout)
        size = int(podman("image", "inspect", "--format", "{{.Size}}", image(name)).stdout)
        assert size < 300 * 1024 * 1024, (name, size)


def test_sigterm_drains_an_api_container_without_failed_requests(deployment):
    g = deployment["gateway"]
    api1 = deployment["apis"][0][0]

    def hammer():
        codes = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            codes.append(requests.get(f"{g}/.well-known/jwks.json", timeout=10).status_code)
        return codes

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        load = [pool.submit(hammer) for _ in range(4)]
        time.sleep(1)  # the load is running before the stop (the point: a stop under traffic)
        assert api1.stop() == 0, api1.logs()[-3000:]
        codes = [c for f in load for c in f.result()]
    assert codes and all(c == 200 for c in codes), {c: codes.count(c) for c in set(codes)}
    assert deployment["gateway_container"].stop() == 0  # nginx's graceful stop, then exit 0


def test_podman_kube_play_runs_the_rendered_api_and_worker_pods():
    """The prod overlay's API and worker Deployments as rendered (images, ConfigMaps with
    their hashed names, securityContext, resources, probes) under `podman kube play`
    against the stack's services. What podman cannot run of them (Services, Ingress,
    HPA, KEDA, NetworkPolicies, PDBs) is checked by tests/deploy/manifests.test.mjs;
    what it runs differently is listed in deploy/k8s/tools/kube-play.mjs."""
    k8s = pathlib.Path(__file__).resolve().parents[2] / "deploy/k8s"
    work = tempfile.mkdtemp(prefix="nimbus-kube-play-")
    os.chmod(work, 0o755)
    api, ops, worker = private._free_port(), private._free_port(), private._free_port()
    stack_env = os.path.abspath(os.environ.get("NIMBUS_STACK_ENV") or os.path.join(stack.RUN, "stack.env"))
    subprocess.run(["node", str(k8s / "tools/kube-play.mjs"), "overlays/prod", stack_env, str(api), str(ops), str(worker), work],
                   check=True, cwd=k8s, timeout=120)
    with open(f"{work}/secrets.txt", encoding="utf-8") as f:
        secrets = f.read().split()
    for name in secrets:
        podman("secret", "rm", name, check=False)
        podman("secret", "create", name, f"{work}/{name}.json")
    try:
        podman("kube", "play", f"{work}/pods.yaml", timeout=300)
        for port in (api, worker):
            stack.wait_until(lambda port=port: _ready(port), timeout=90, interval=0.3, what=f"pod on :{port} ready")
        assert requests.get(f"http://127.0.0.1:{api}/.well-known/jwks.json", timeout=5).json()["keys"]
        assert "nimbus_http_requests_total" in requests.get(f"http://127.0.0.1:{ops}/metrics", timeout=5).text
        config = podman("inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Memory}}",
                        "nimbus-api-pod-0-api").stdout.split()
        assert config == ["65532:65532", "true", str(256 * 1024 * 1024)], config
        # SIGTERM as the kubelet sends it: the instance drains and exits 0.
        podman("pod", "stop", "-t", "40", "nimbus-api-pod-0", timeout=90)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", "nimbus-api-pod-0-api").stdout.strip() == "0"
    finally:
        podman("kube", "down", f"{work}/pods.yaml", check=False, timeout=120)
        for name in secrets:
            podman("secret", "rm", name, check=False)
        shutil.rmtree(work, ignore_errors=True)


def _ready(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False
