"""The running stack as the simulation and the drills see it: addresses from its
stack.env, psql, supervisorctl, the functions of deploy/local/lib.sh, a read-only S3
client (SigV4, standard library) and a small HTTP client bound to a source address of
its own (each virtual user is a client of its own, as people are)."""
import datetime
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse

import gevent
import gevent.socket
from geventhttpclient import HTTPClient
from geventhttpclient.connectionpool import ConnectionPool

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def load_env():
    path = os.environ.get("NIMBUS_STACK_ENV")
    if not path and os.environ.get("NIMBUS_STACK_RUN"):
        # Under ./stack test (ctest) the stack's variables are exported already.
        path = os.path.join(os.environ["NIMBUS_STACK_RUN"], "stack.env")
    if not path:
        profile = os.environ.get("NIMBUS_PROFILE", "local")
        path = os.path.join(ROOT, ".run", profile, "stack.env")
    if not os.path.exists(path):
        raise SystemExit(f"no stack.env at {path}: start the stack first (./stack up) or set NIMBUS_STACK_ENV")
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if key:
                os.environ[key] = value
    return path


def env(name):
    return os.environ[name]


def gateway():
    return env("NIMBUS_TEST_GATEWAY")


def profile():
    # The test stack shifts every port by 30000.
    return "test" if urllib.parse.urlparse(gateway()).port >= 30000 else "local"


def psql(sql):
    out = subprocess.run(["psql", "-qtA", "-v", "ON_ERROR_STOP=1", env("NIMBUS_TEST_DATABASE_URL"), "-c", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def psql_rows(sql):
    text = psql(sql)
    return [line.split("|") for line in text.splitlines() if line]


def ctl(*args):
    out = subprocess.run(["supervisorctl", "-c", env("NIMBUS_STACK_SUPERVISOR_CONF"), *args],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def pid_of(program):
    text = ctl("pid", program)
    return int(text) if text.isdigit() else 0


def kill9(program):
    """SIGKILL to a program of this stack (its pid as supervisord reports it)."""
    pid = pid_of(program)
    if pid <= 1:
        raise RuntimeError(f"{program} is not running: {ctl('status', program)}")
    os.kill(pid, signal.SIGKILL)
    return pid


def lib_sh(script, timeout=600):
    """Runs bash with deploy/local/lib.sh loaded for this stack's profile."""
    cmd = f'set -euo pipefail; source "$ROOT/deploy/local/lib.sh"; load_profile; {script}'
    e = dict(os.environ, ROOT=ROOT, NIMBUS_PROFILE=profile())
    out = subprocess.run(["bash", "-c", cmd], env=e, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"lib.sh '{script}' failed ({out.returncode}): {out.stderr[-800:]}")
    return out.stdout + out.stderr


def wait_until(predicate, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001  a probe that fails is a "not yet"
            pass
        gevent.sleep(interval)
    raise RuntimeError(f"{what} not met within {timeout}s")


def machine_load():
    """What else the machine did: load averages, cores, and this moment's CPU use."""
    with open("/proc/loadavg", encoding="ascii") as f:
        one, five, fifteen = (float(x) for x in f.read().split()[:3])
    return {"cores": os.cpu_count(), "load1": one, "load5": five, "load15": fifteen}


def cpu_times():
    with open("/proc/stat", encoding="ascii") as f:
        parts = f.readline().split()[1:]
    values = [int(x) for x in parts]
    idle = values[3] + values[4]
    return sum(values), idle


# ---------------------------------------------------------------- HTTP client

_original_create = ConnectionPool._create_tcp_socket


def _bound_create(self, family, socktype, protocol):
    """Connections made by a greenlet that names a source address leave from it."""
    sock = _original_create(self, family, socktype, protocol)
    source = getattr(gevent.getcurrent(), "nimbus_source", None)
    if source:
        sock.bind((source, 0))
    return sock


ConnectionPool._create_tcp_socket = _bound_create


def source_address(index):
    """A loopback address of its own for client `index` (127.0.1.1, 127.0.1.2, ...):
    the gateway and the API see as many clients as there are virtual users."""
    return f"127.0.{1 + index // 250}.{1 + index % 250}"


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name)


class Http:
    """One client (one connection at a time) to one origin."""

    def __init__(self, base, timeout=15.0, concurrency=1):
        u = urllib.parse.urlparse(base)
        self.host, self.port = u.hostname, u.port
        self.client = HTTPClient(self.host, self.port, connection_timeout=timeout, network_timeout=timeout,
                                 concurrency=concurrency)

    def request(self, method, path, body=None, headers=None):
        h = {"User-Agent": "nimbus-sim"}
        if headers:
            h.update(headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        r = self.client.request(method, path, body=body, headers=h)
        try:
            data = r.read()
            headers = {k.lower(): v for k, v in r.items()}
        finally:
            r.release()
        return Response(r.status_code, headers, data)

    def close(self):
        self.client.close()


# ---------------------------------------------------------------- S3 (read only)

def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def s3_get(path, query=None):
    """A signed GET on the stack's bucket: (status, body)."""
    endpoint = env("NIMBUS_TEST_S3_ENDPOINT")
    bucket, region = env("NIMBUS_TEST_S3_BUCKET"), env("NIMBUS_TEST_S3_REGION")
    access, secret = env("NIMBUS_TEST_S3_ACCESS_KEY"), env("NIMBUS_TEST_S3_SECRET_KEY")
    host = urllib.parse.urlparse(endpoint).netloc
    query = query or {}
    qs = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                  for k, v in sorted(query.items()))
    uri = urllib.parse.quote(f"/{bucket}/{path}" if path else f"/{bucket}", safe="/-_.~")
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    empty = hashlib.sha256(b"").hexdigest()
    canonical = "\n".join(["GET", uri, qs, f"host:{host}", f"x-amz-content-sha256:{empty}", f"x-amz-date:{stamp}", "",
                           "host;x-amz-content-sha256;x-amz-date", empty])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(("AWS4" + secret).encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
            f"Signature={signature}")
    http = Http(endpoint, timeout=30)
    try:
        r = http.request("GET", uri + (f"?{qs}" if qs else ""),
                         headers={"x-amz-date": stamp, "x-amz-content-sha256": empty, "Authorization": auth})
    finally:
        http.close()
    return r.status, r.body


def s3_list(prefix):
    keys, token = [], None
    while True:
        q = {"list-type": "2", "prefix": prefix}
        if token:
            q["continuation-token"] = token
        status, body = s3_get("", q)
        if status != 200:
            raise RuntimeError(f"S3 list {prefix}: {status} {body[:200]!r}")
        text = body.decode()
        keys += re.findall(r"<Key>([^<]+)</Key>", text)
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", text)
        if not m:
            return keys
        token = m.group(1)
