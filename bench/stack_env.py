"""What the benchmarks share: the running stack's addresses, psql, and access tokens
minted with the stack's own signing key (as sign-in would issue them)."""
import datetime
import json
import os
import subprocess
import time
import uuid

import jwt


def load_env():
    path = os.environ.get("NIMBUS_STACK_ENV") or os.path.join(os.path.dirname(__file__), "..", ".run/local/stack.env")
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            os.environ.setdefault(key, value)


def psql(sql):
    return subprocess.run(["psql", "-qtA", "-v", "ON_ERROR_STOP=1", os.environ["NIMBUS_TEST_DATABASE_URL"], "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def access_tokens(user_ids, lifetime=900):
    with open(os.environ["NIMBUS_TEST_JWT_KEY"], "rb") as f:
        key = f.read()
    now = int(time.time())
    return [jwt.encode({"iss": os.environ["NIMBUS_TEST_AUTH_ISSUER"], "aud": "nimbus-api", "sub": user,
                        "sid": str(uuid.uuid4()), "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime},
                       key, algorithm="EdDSA", headers={"kid": "k1", "typ": "JWT"}) for user in user_ids]


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def save_result(kind, data):
    """Writes one run's numbers to bench/results/<kind>-<UTC time>.json (the README's
    tables are generated from these files by bench/summary.py); returns the path."""
    os.makedirs(os.environ.get("NIMBUS_BENCH_RESULTS", RESULTS), exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    data = {"kind": kind, "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "cores": os.cpu_count(), **data}
    path = os.path.join(os.environ.get("NIMBUS_BENCH_RESULTS", RESULTS), f"{kind}-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"== results: {os.path.relpath(path)}")
    return path
