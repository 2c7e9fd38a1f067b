"""Scaling measurement (not a test) behind the capacity numbers of docs/kubernetes.md:
the same vote load at 1..4 API instances (votes/s, p50/p99, CPU), then 200 queued
images drained by 1..4 workers (seconds, images/s, CPU). Instances change with
`./stack scale` between runs, live.

Usage (a running stack; its votes and images are the benchmark's own, under fresh ids):
  NIMBUS_STACK_ENV=.run/local/stack.env /usr/bin/python3 deploy/k8s/capacity/scale.py \
      [--apis 1,2,3,4] [--workers 1,2,3,4] [--seconds 10] [--voters 100] [--think-ms 20] [--images 200]
NIMBUS_SCALE_CMD replaces `./stack scale` (e.g. for a stack started with other settings).
Needs wrk (votes, as bench/votes.py drives it) and PIL; prints one table per part.
"""
import argparse
import concurrent.futures
import io
import os
import pathlib
import shlex
import subprocess
import sys
import time
import uuid

import requests
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
import votes  # noqa: E402  (users, polls and the wrk vote script of bench/votes.py)
from stack_env import access_tokens, load_env, psql  # noqa: E402


def scale(api, workers):
    cmd = shlex.split(os.environ.get("NIMBUS_SCALE_CMD", f"{ROOT}/stack scale"))
    subprocess.run([*cmd, f"api={api}", f"workers={workers}"], check=True, capture_output=True, text=True)


def cpu_times():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_jiffies(name):
    """utime+stime of every process whose command is `name` (the stack's instances)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if not f.read().split(b"\0")[0].endswith(name.encode()):
                    continue
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])
        except OSError:
            continue
    return total


class Cpu:
    """Machine CPU busy % and the named processes' share of the 2 cores over a block."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.machine, self.proc, self.t0 = cpu_times(), process_jiffies(self.name), time.monotonic()
        return self

    def __exit__(self, *exc):
        busy, total = cpu_times()
        self.busy_pct = 100 * (busy - self.machine[0]) / max(1, total - self.machine[1])
        hz = os.sysconf("SC_CLK_TCK")
        self.proc_cores = (process_jiffies(self.name) - self.proc) / hz / (time.monotonic() - self.t0)
        self.load = os.getloadavg()[0]


def vote_runs(counts, seconds, voters, think_ms, workers):
    print(f"\n== votes: {voters} voters, think {think_ms} ms, {seconds} s per run, through the gateway")
    print("| API instances | votes/s | p50 ms | p99 ms | errors | machine CPU | API CPU (cores) | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for n in counts:
        scale(n, workers)
        votes.TAG = f"{uuid.uuid4().int % 65536:04x}"  # fresh ids: every vote a first ballot
        votes.setup()
        tokens = votes.mint_tokens()
        votes.wrk(tokens, 2, voters, think_ms, votes.PGBENCH_POLLS + 1)  # warm-up, not reported
        with Cpu("nimbus-api") as cpu:
            rps, pct, errors, _ = votes.wrk(tokens, seconds, voters, think_ms,
                                            votes.PGBENCH_POLLS + 1 + votes.GATEWAY_POLLS // 3)
        print(f"| {n} | {rps:,.0f} | {pct.get('50', 0):.1f} | {pct.get('99', 0):.1f} | "
              f"{', '.join(errors) if errors else 'none'} | {cpu.busy_pct:.0f} % | {cpu.proc_cores:.2f} | {cpu.load:.1f} |",
              flush=True)


def jpeg(i):
    img = Image.new("RGB", (1600, 1200), ((i * 37) % 256, (i * 91) % 256, 128))
    for y in range(0, 1200, 40):  # some detail, so decoding is real work
        img.paste(((y * 3) % 256, 40, (i * 13) % 256), (0, y, 1600, y + 8))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=88)
    return out.getvalue()


def image_runs(counts, count, apis):
    gateway = os.environ["NIMBUS_TEST_GATEWAY"]
    conf = os.environ["NIMBUS_STACK_SUPERVISOR_CONF"]
    user = str(uuid.uuid4())
    psql(f"INSERT INTO users (id, email) VALUES ('{user}', 'scale-{user}@example.com')")
    token = access_tokens([user], lifetime=3600)[0]
    files = [jpeg(i) for i in range(count)]
    print(f"\n== images: {count} queued 1600x1200 JPEGs ({sum(map(len, files)) // count // 1024} KiB each), "
          "drained from the moment the workers start")
    print("| workers | seconds to drain | images/s | machine CPU | worker CPU (cores) | load avg |")
    print("|---|---|---|---|---|---|")
    for m in counts:
        scale(apis, m)
        # Workers stopped: the uploads wait in the outbox (the relay runs in the workers).
        subprocess.run(["supervisorctl", "-c", conf, "stop", "workers:"], check=True, capture_output=True)
        ids = []
        with requests.Session() as s, concurrent.futures.ThreadPoolExecutor(8) as pool:
            def upload(data):
                r = s.post(f"{gateway}/v1/images", data=data, timeout=60,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})
                r.raise_for_status()
                return r.json()["id"]
            ids = list(pool.map(upload, files))
        id_list = ",".join(f"'{i}'" for i in ids)
        with Cpu("nimbus-worker") as cpu:
            t0 = time.monotonic()
            subprocess.run(["supervisorctl", "-c", conf, "start", "workers:"], check=True, capture_output=True)
            while int(psql(f"SELECT count(*) FROM images WHERE id IN ({id_list}) AND status IN ('ready', 'failed')")) < count:
                time.sleep(0.2)
            took = time.monotonic() - t0
        failed = int(psql(f"SELECT count(*) FROM images WHERE id IN ({id_list}) AND status = 'failed'"))
        print(f"| {m} | {took:.1f}{f' ({failed} failed)' if failed else ''} | {count / took:.1f} | {cpu.busy_pct:.0f} % | "
              f"{cpu.proc_cores:.2f} | {cpu.load:.1f} |", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--apis", default="1,2,3,4")
    p.add_argument("--workers", default="1,2,3,4")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--voters", type=int, default=100)
    p.add_argument("--think-ms", type=int, default=20)
    p.add_argument("--images", type=int, default=200)
    a = p.parse_args()
    load_env()
    print(f"machine: {os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}")
    if a.apis:
        vote_runs([int(x) for x in a.apis.split(",")], a.seconds, a.voters, a.think_ms, workers=1)
    if a.workers:
        image_runs([int(x) for x in a.workers.split(",")], a.images, apis=2)


if __name__ == "__main__":
    main()
