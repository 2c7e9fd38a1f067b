"""The gateway and the HTTP core, through nginx, with several API instances."""
import collections
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import requests

import stack


def test_round_robin_reaches_every_instance():
    s = stack.session()
    seen = collections.Counter()
    for _ in range(stack.APIS * 10):
        r = s.get(f"{stack.GATEWAY}/healthz", timeout=5)
        assert r.status_code == 200
        seen[r.headers["X-Nimbus-Instance"]] += 1
    assert set(seen) == {f"api-{i}" for i in range(1, stack.APIS + 1)}
    # No stickiness: the load is spread, not pinned.
    assert min(seen.values()) >= 5, seen


def test_a_token_keeps_to_one_instance_and_tokens_spread_over_all():
    """Cache affinity: each instance checks a token's signature once and remembers it,
    so the gateway sends a token's requests to one instance (consistent hashing) —
    and different tokens to all of them."""
    stack.wait_all_in_rotation()  # (a suite before may have left one out for a while)
    tokens = stack.mint_users(60)
    s = stack.session()
    homes = collections.Counter()
    for token in tokens:
        seen = set()
        for _ in range(3):
            r = s.get(f"{stack.GATEWAY}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
            assert r.status_code == 200, r.text
            seen.add(r.headers["X-Nimbus-Instance"])
        assert len(seen) == 1, seen
        homes[seen.pop()] += 1
    assert set(homes) == {f"api-{i}" for i in range(1, stack.APIS + 1)}, homes


def test_readyz_is_ready_through_the_gateway():
    # (Coming back to ready after PostgreSQL, Redis and RabbitMQ restarts is the fault
    # drills' business, test_faults.py; here the stack is expected up. Another suite on
    # the shared stack may be restarting something: ready within 30 s, then.)
    for i in range(1, stack.APIS + 1):
        stack.wait_until(lambda i=i: requests.get(f"{stack.api_url(i)}/readyz", timeout=5).status_code == 200,
                         timeout=30, interval=0.2, what=f"api-{i} ready")
    r = requests.get(f"{stack.GATEWAY}/readyz", timeout=5)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"
    assert r.json()["checks"] == {"postgres": "ok", "redis": "ok", "s3": "ok"}, r.json()
    assert r.headers["Cache-Control"] == "no-store"


def test_request_id_is_kept_or_made_and_sent_once():
    r = requests.get(f"{stack.GATEWAY}/healthz", headers={"X-Request-ID": "e2e-abc.123"}, timeout=5)
    assert r.headers["X-Request-ID"] == "e2e-abc.123"
    assert r.raw.headers.getlist("X-Request-ID") == ["e2e-abc.123"]
    r = requests.get(f"{stack.GATEWAY}/healthz", headers={"X-Request-ID": "no spaces allowed"}, timeout=5)
    made = r.headers["X-Request-ID"]
    assert made != "no spaces allowed" and len(made) == 32


def test_metrics_are_private():
    r = requests.get(f"{stack.GATEWAY}/metrics", timeout=5)
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"
    admin = requests.get(f"{stack.GATEWAY_ADMIN}/metrics", timeout=5)
    assert admin.status_code == 200
    assert "nimbus_http_requests_total" in admin.text
    assert "nimbus_http_request_duration_seconds_bucket" in admin.text


def test_unknown_route_and_wrong_method_are_problems():
    r = requests.get(f"{stack.GATEWAY}/v1/no-such-thing", timeout=5)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert r.headers["X-Nimbus-Instance"].startswith("api-")
    r = requests.delete(f"{stack.GATEWAY}/healthz", timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    body = r.json()
    assert body["code"] == "method_not_allowed" and body["status"] == 405
    assert set(body) >= {"type", "title", "status", "detail", "code"}


def test_body_over_the_gateway_limit_is_refused():
    r = requests.post(f"{stack.GATEWAY}/debug/echo", data=b"x" * (27 * 1024 * 1024),
                      headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"


def test_body_over_the_route_limit_is_refused_by_the_instance():
    # The debug echo route takes at most 64 KiB; the gateway allows far more.
    r = requests.post(f"{stack.GATEWAY_ADMIN}/debug/echo", data=b"x" * (100 * 1024), timeout=10)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    ok = requests.post(f"{stack.GATEWAY_ADMIN}/debug/echo", data=b"x" * 1000, timeout=10)
    assert ok.status_code == 200 and ok.json() == {"bytes": 1000}


def test_malformed_http_gets_a_clean_400():
    gw = urlparse(stack.GATEWAY)
    with socket.create_connection((gw.hostname, gw.port), timeout=5) as s:
        s.sendall(b"GARBAGE\x00\x01 / HTTP/9.9\r\n\r\n")
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 400")

    # And straight to an instance, past nginx's own parser.
    with socket.create_connection(("127.0.0.1", stack.API_BASE_PORT + 1), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 400")
    assert b'"code":"malformed_request"' in data


def test_oversized_headers_get_431_from_an_instance():
    with socket.create_connection(("127.0.0.1", stack.API_BASE_PORT + 1), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 431")


def test_slow_loris_is_cut_off_by_an_instance():
    # The test stack runs instances with a 2 s header timeout (NIMBUS_HTTP_HEADER_TIMEOUT).
    with socket.create_connection(("127.0.0.1", stack.API_BASE_PORT + 1), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(8)
        assert s.recv(4096) == b""  # closed by the server, long before our 8 s


def test_the_benchmarks_token_route_checks_the_token():
    """/debug/token (debug routes: the test profile's admin listener only) is what
    bench/votes.py reads to split a results read's cost: the token checked on the
    instance without the Redis lookup. It must still refuse what every authenticated
    route refuses, and it is not public."""
    token = stack.mint_users(1)[0]
    s = stack.session()
    r = s.get(f"{stack.GATEWAY_ADMIN}/debug/token", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json()["sub"]
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    for header, code in (({"Authorization": f"Bearer {forged}"}, "invalid_token"),
                         ({"Authorization": "Bearer x"}, "invalid_token"), ({}, "missing_token")):
        r = s.get(f"{stack.GATEWAY_ADMIN}/debug/token", headers=header, timeout=5)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == code
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers
    r = s.get(f"{stack.GATEWAY}/debug/token", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert r.status_code == 404, r.text


def test_uploads_take_their_documented_size_streamed_and_nothing_is_spooled():
    """The upload route still takes a 25 MiB file (raw and multipart), streamed to the
    instance: while it passes, and while a body under 1 MiB goes to another route,
    nothing is written to the gateway's spool folders (issue 22, item 6: it used to
    spool every body over 16 KiB to disk, on every route, before any token was checked)."""
    import os
    import threading

    import struct

    from test_images import jpeg

    (token,) = stack.mint_users(1)
    auth = {"Authorization": f"Bearer {token}"}
    # A valid 64x64 JPEG of 25 MiB: application segments after its frame header (the
    # instance judges the header from the first bytes).
    small = jpeg(64, 64)
    sof = small.index(b"\xff\xc0")
    after_sof = sof + 2 + struct.unpack(">H", small[sof + 2:sof + 4])[0]
    segment = b"\xff\xef" + struct.pack(">H", 65535) + b"\0" * 65533
    pad = segment * ((25 * 1024 * 1024 - len(small)) // len(segment))
    data = small[:after_sof] + pad + small[after_sof:]
    assert 25 * 1024 * 1024 - 70_000 < len(data) <= 25 * 1024 * 1024
    spools = [os.path.join(stack.RUN, "nginx", d) for d in ("client_body", "proxy")]
    spooled, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            for d in spools:
                for root, _, files in os.walk(d):
                    spooled.update(os.path.join(root, f) for f in files)
            done.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = requests.post(f"{stack.GATEWAY}/v1/images", data=data, headers={**auth, "Content-Type": "image/jpeg"},
                          timeout=120)
        assert r.status_code == 202, r.text[:300]
        r = requests.post(f"{stack.GATEWAY}/v1/images", files={"file": ("big.jpg", data, "image/jpeg")}, headers=auth,
                          timeout=120)
        assert r.status_code == 202, r.text[:300]
        # A body just under the gateway's 1 MiB, to a route whose instance takes 16 KiB.
        r = requests.post(f"{stack.GATEWAY}/v1/polls", data=b"{" + b" " * (1024 * 1024 - 2) + b"}",
                          headers={**auth, "Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 413 and r.headers["X-Nimbus-Instance"].startswith("api-"), r.text[:300]
    finally:
        done.set()
        watcher.join()
    assert not spooled, f"the gateway spooled bodies to disk: {sorted(spooled)[:5]}"
    # Over the upload route's own limit: refused by the gateway from the declared length.
    r = requests.post(f"{stack.GATEWAY}/v1/images", data=b"\xff\xd8\xff" + b"\0" * (27 * 1024 * 1024),
                      headers={**auth, "Content-Type": "image/jpeg"}, timeout=60)
    assert r.status_code == 413 and "X-Nimbus-Instance" not in r.headers, r.text[:300]
    assert r.json()["code"] == "payload_too_large"


# An impostor: another local user's process that binds a slot's port and its socket
# path, and counts what reaches them (the connections it accepts, the bytes it reads).
IMPOSTOR = r"""
import selectors, socket, sys, time
port, ops_port, socket_path, seconds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
sel = selectors.DefaultSelector()
bound = []
for p in (port, ops_port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
        s.listen(64)
        sel.register(s, selectors.EVENT_READ)
        bound.append(f"port {p}")
    except OSError:
        pass
try:
    u = socket.socket(socket.AF_UNIX)
    u.bind(socket_path)
    u.listen(64)
    sel.register(u, selectors.EVENT_READ)
    bound.append("socket")
except OSError as e:
    print(f"socket refused: {e.strerror}")
got = b""
accepted = 0
until = time.monotonic() + seconds
print("ready " + ",".join(bound), flush=True)
while time.monotonic() < until:
    for key, _ in sel.select(timeout=0.1):
        try:
            conn, _ = key.fileobj.accept()
        except OSError:
            continue
        accepted += 1
        conn.settimeout(0.5)
        try:
            got += conn.recv(65536)
        except OSError:
            pass
        conn.close()
print(f"accepted {accepted}")
print("secret" if b"x-nimbus-gateway" in got.lower() else "no secret")
"""


def test_another_user_cannot_stand_in_for_a_slot_without_an_instance():
    """The gateway lists every slot (9), most without an instance. Another user of the
    machine binds the last slot's port and its operations port (free: nothing listens
    there) and tries its socket path, while requests go through the gateway and its
    metrics are scraped. Before the gateway went through unix sockets it sent that user
    its share of the traffic, the gateway's secret in every request (issue 22); now
    the ports reach no one, and the socket's folder lets no one else bind."""
    slots = int(os.environ["NIMBUS_STACK_API_SLOTS"])
    assert stack.APIS < slots, "a free slot is needed"
    socket_path = f"{stack.RUN}/sockets/api-{slots}.sock"
    impostor = subprocess.Popen(
        [sys.executable, "-c", IMPOSTOR, str(stack.API_BASE_PORT + slots), str(stack.OPS_BASE_PORT + slots),
         socket_path, "8"],
        user=40123, group=40123, extra_groups=[], stdout=subprocess.PIPE, text=True, cwd="/")
    first = impostor.stdout.readline()
    assert first.startswith("socket refused") or first.startswith("ready"), first
    ready = first if first.startswith("ready") else impostor.stdout.readline()
    assert "port" in ready, f"the impostor could not even bind the free ports: {ready}"

    failures = []

    def load():
        s = stack.session()
        until = time.monotonic() + 6  # past the gateway's fail_timeout (3 s) for the slot
        while time.monotonic() < until:
            try:
                if s.get(f"{stack.GATEWAY}/healthz", timeout=5).status_code != 200:
                    failures.append("healthz")
                if requests.get(f"{stack.GATEWAY_ADMIN}/metrics", timeout=5).status_code != 200:
                    failures.append("metrics")
            except requests.RequestException as e:
                failures.append(str(e))
            time.sleep(0.02)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out, _ = impostor.communicate(timeout=20)
    lines = (first + ready + out).splitlines()
    assert "socket refused: Permission denied" in lines, lines
    assert "accepted 0" in lines, lines
    assert "no secret" in lines, lines
    assert failures == [], failures[:5]
