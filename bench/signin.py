"""Sign-in latency through the gateway: POST /v1/auth/email/start and
POST /v1/auth/email/verify timed separately (the code is read from maildev in between,
not timed). Needs a stack whose per-IP limits allow N sign-ins from one address (the
test profile: NIMBUS_PROFILE=test ./stack up).

Usage: NIMBUS_STACK_ENV=.run/test/stack.env signin.py N
"""
import os
import re
import statistics
import sys
import time
import uuid

import requests


def load_env():
    with open(os.environ["NIMBUS_STACK_ENV"], encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            os.environ.setdefault(key, value)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    load_env()
    gateway, maildev = os.environ["NIMBUS_TEST_GATEWAY"], os.environ["NIMBUS_TEST_MAILDEV"]
    n = int(sys.argv[1])
    s = requests.Session()
    starts, verifies = [], []
    for _ in range(n):
        email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        t0 = time.perf_counter()
        r = s.post(f"{gateway}/v1/auth/email/start", json={"email": email}, timeout=10)
        assert r.status_code == 202, r.text
        starts.append(time.perf_counter() - t0)
        code = None
        while code is None:
            for m in s.get(f"{maildev}/email", timeout=5).json():
                if any(t["address"] == email for t in m["to"]):
                    code = re.search(r"\b(\d{6})\b", m["text"]).group(1)
            time.sleep(0.02)
        t0 = time.perf_counter()
        r = s.post(f"{gateway}/v1/auth/email/verify", json={"email": email, "code": code}, timeout=10)
        verifies.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    s.delete(f"{maildev}/email/all", timeout=5)
    for name, xs in (("start", starts), ("verify", verifies)):
        print(f"{name:7s} n={n} p50={statistics.median(xs) * 1000:.1f} ms p99={pct(xs, 99) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
