"""Image pipeline benchmark (not a test).

1. Throughput: 100 uploads of 12-megapixel JPEGs through the gateway, timed from the
   first upload to the last image `ready`, next to `vipsthumbnail` making the same two
   variants from the same files on the same cores (2 at a time, one per core), as a
   ratio. Peak RSS of every worker and API instance is sampled meanwhile.
2. Upload memory: 50 concurrent uploads of a ~20 MB JPEG straight to one API instance,
   its RSS sampled before and during.

Usage: NIMBUS_STACK_ENV=.run/local/stack.env /usr/bin/python3 bench/images.py
(needs ./stack up; libvips-tools and python3-pil, which ./stack installs).
"""
import io
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from stack_env import access_tokens, load_env, psql


def token():
    user = str(uuid.uuid4())
    psql(f"INSERT INTO users (id, email) VALUES ('{user}', 'bench-{user}@example.com')")
    return access_tokens([user], lifetime=3600)[0]


def photo(width, height, seed, quality=90, noise=12):
    """A photo-like JPEG: smooth colour fields plus sensor-like noise."""
    rnd = random.Random(seed)
    small = Image.new("RGB", (16, 12))
    small.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)) for _ in range(16 * 12)])
    img = small.resize((width, height), Image.BICUBIC)
    grain = Image.effect_noise((width, height), noise).convert("RGB")
    img = Image.blend(img, grain, 0.15)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def pids(group):
    conf = os.environ["NIMBUS_STACK_SUPERVISOR_CONF"]
    out = subprocess.run(["supervisorctl", "-c", conf, "status", f"{group}:*"], capture_output=True, text=True).stdout
    result = {}
    for line in out.splitlines():
        parts = line.split()
        if "pid" in parts:
            result[parts[0]] = int(parts[parts.index("pid") + 1].rstrip(","))
    return result


def rss_mb(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    def __init__(self, processes):
        self.processes = processes
        self.peak = {name: rss_mb(pid) for name, pid in processes.items()}
        self.start = dict(self.peak)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            for name, pid in self.processes.items():
                try:
                    self.peak[name] = max(self.peak[name], rss_mb(pid))
                except OSError:
                    pass
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.thread.join()


def vipsthumbnail_anchor(files, parallel):
    out = tempfile.mkdtemp()
    commands = []
    for i, path in enumerate(files):
        commands.append(["vipsthumbnail", path, "--size", "256x256", "--smartcrop", "centre",
                         "-o", f"{out}/t{i}.webp[Q=80,strip]"])
        commands.append(["vipsthumbnail", path, "--size", "1280x1280>",
                         "-o", f"{out}/p{i}.jpg[Q=82,strip,optimize_coding,interlace]"])
    started = time.perf_counter()
    # One file's two variants per job, `parallel` jobs at a time (like the workers).
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(lambda pair: [subprocess.run(c, check=True) for c in pair],
                      [commands[i:i + 2] for i in range(0, len(commands), 2)]))
    return time.perf_counter() - started


def main():
    load_env()
    gateway = os.environ["NIMBUS_TEST_GATEWAY"]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    print("== preparing 10 distinct 4000x3000 JPEGs (12 MP), each uploaded", n // 10, "times")
    images = [photo(4000, 3000, seed) for seed in range(10)]
    tmp = tempfile.mkdtemp()
    files = []
    for i in range(n):
        path = f"{tmp}/photo{i}.jpg"
        with open(path, "wb") as f:
            f.write(images[i % 10])
        files.append(path)
    print(f"   sizes {min(map(len, images)) / 1e6:.1f}-{max(map(len, images)) / 1e6:.1f} MB")

    anchor = vipsthumbnail_anchor(files, 2)
    print(f"vipsthumbnail, same variants, 2 at a time: {n} images in {anchor:.1f} s = {n / anchor:.2f} images/s")

    bearer = {"Authorization": "Bearer " + token(), "Content-Type": "image/jpeg"}
    watch = PeakRss({**pids("workers"), **pids("api")})
    started = time.perf_counter()

    def send(path):
        with open(path, "rb") as f:
            r = requests.post(f"{gateway}/v1/images", data=f.read(), headers=bearer, timeout=120)
        assert r.status_code == 202, r.text
        return r.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(send, files))
    uploaded = time.perf_counter() - started
    id_list = ",".join(f"'{i}'" for i in ids)
    while True:
        done = psql(f"SELECT count(*) FILTER (WHERE status IN ('ready', 'failed')), count(*) FILTER (WHERE status = 'failed') "
                    f"FROM images WHERE id IN ({id_list})")
        finished, failed = map(int, done.split("|"))
        if finished == n:
            break
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    watch.stop()
    print(f"nimbus, upload -> all ready: {n} images in {elapsed:.1f} s = {n / elapsed:.2f} images/s "
          f"(uploads took {uploaded:.1f} s; failed: {failed})")
    print(f"ratio nimbus / vipsthumbnail: {(n / elapsed) / (n / anchor):.2f}  (budget >= 0.8)")
    for name in sorted(watch.peak):
        print(f"   peak RSS {name:22s} {watch.peak[name]:7.1f} MB (at start {watch.start[name]:.1f} MB)")

    print("== 50 concurrent uploads of one large JPEG to one API instance")
    big = photo(5000, 4000, 99, quality=97, noise=40)
    print(f"   file: {len(big) / 1e6:.1f} MB, 20 MP")
    api = pids("api")
    first = sorted(api)[0]
    direct = f"http://127.0.0.1:{int(os.environ['NIMBUS_STACK_API_BASE_PORT']) + 1}"
    watch = PeakRss({first: api[first]})
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: requests.post(f"{direct}/v1/images", data=big, headers=bearer,
                                                         timeout=300).status_code, range(50)))
    watch.stop()
    print(f"   statuses: {sorted(set(statuses))}; {first} RSS {watch.start[first]:.1f} MB before, "
          f"peak {watch.peak[first]:.1f} MB (+{watch.peak[first] - watch.start[first]:.1f} MB) "
          f"for {50 * len(big) / 1e6:.0f} MB uploaded at once")


if __name__ == "__main__":
    main()
