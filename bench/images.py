"""Image pipeline benchmark (not a test).

1. Throughput: `count` uploads of 12-megapixel JPEGs through the gateway, timed from the
   first upload to the last image finished (`ready` or `failed`); only `ready` images
   count, failures are printed. Next to two anchors making the same two variants
   (src/worker/thumbnails.cpp) of the same files on the same cores, and the worker's
   own variant code over the same files without storage, queue or database
   (build/release/bench/nimbus-bench-variants), which splits the gap to sharp into the
   pipeline's share and the rest's:
   - `vipsthumbnail`: one process per core over its share of the files (one pass per
     variant: the CLI makes one size per run), one libvips thread each;
   - sharp (bench/sharp, pinned in its package-lock.json): the worker's settings,
     `sharp.concurrency(1)`, cache off, as many files in flight as the worker pool.
   Peak RSS of every worker and API instance is sampled meanwhile.
2. Upload memory: `uploads` concurrent uploads of a ~10 MB JPEG straight to one API
   instance, its RSS sampled before and during.

Usage: NIMBUS_STACK_ENV=.run/local/stack.env /usr/bin/python3 bench/images.py [count] [uploads]
(needs ./stack up; libvips-tools, python3-pil and Node.js >= 18, which ./stack installs;
defaults: 100 images, 50 uploads; bench/sharp's packages are installed by `npm ci` when
missing).
"""
import io
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from stack_env import access_tokens, load_env, process_env, psql, save_result, stack_cpu


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


# The worker's variants (src/worker/thumbnails.cpp) as vipsthumbnail options: a 256x256
# centre crop (enlarging a smaller image) saved as WebP q80; within 1280x1280, never
# enlarged, saved as progressive JPEG q82 with optimised tables; metadata stripped.
VIPSTHUMBNAIL_VARIANTS = (
    ["--size", "256x256", "--smartcrop", "centre", "-o", "{out}/%s_thumb.webp[Q=80,strip]"],
    ["--size", "1280x1280>", "-o", "{out}/%s_preview.jpg[Q=82,strip,optimize_coding,interlace]"],
)
SHARP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sharp")


def cpu_seconds(pid):
    """User + system CPU time of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_stage_seconds():
    """The workers' per-stage counters (src/worker/image_job.cpp), summed."""
    base = int(os.environ["NIMBUS_STACK_WORKER_BASE_PORT"])
    totals = {}
    for i in range(1, int(os.environ["NIMBUS_STACK_WORKERS"]) + 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{base + i}/metrics", timeout=5) as r:
            text = r.read().decode()
        for stage, value in re.findall(r"^nimbus_image_(fetch|decode|encode|store)_seconds_total (\S+)",
                                       text, re.M):
            totals[stage] = totals.get(stage, 0.0) + float(value)
    return totals


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def vipsthumbnail_anchor(files, cores):
    """One process per core, each over its share of the files (libvips loaded once per
    process, not once per file); one libvips thread per process, as in the worker."""
    out = tempfile.mkdtemp()
    shares = [files[i::cores] for i in range(cores)]
    env = {**os.environ, "VIPS_CONCURRENCY": "1"}

    def run(share):
        for options in VIPSTHUMBNAIL_VARIANTS:
            subprocess.run(["vipsthumbnail", *share, *[o.format(out=out) for o in options]], check=True, env=env)

    started, cpu = time.perf_counter(), children_cpu_seconds()
    with ThreadPoolExecutor(max_workers=cores) as pool:
        list(pool.map(run, [s for s in shares if s]))
    elapsed, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu
    made = len([f for f in os.listdir(out) if f.endswith(("_thumb.webp", "_preview.jpg"))])
    assert made == 2 * len(files), f"vipsthumbnail made {made} variants of {len(files)} files"
    return elapsed, cpu


def sharp_anchor(files, in_flight):
    if not os.path.isdir(os.path.join(SHARP, "node_modules")):
        print("   installing bench/sharp's packages (npm ci)")
        subprocess.run(["npm", "ci", "--prefix", SHARP, "--no-audit", "--no-fund", "--loglevel=error"], check=True)
    out = subprocess.run(["node", os.path.join(SHARP, "variants.js"), str(in_flight), *files], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


VARIANTS_BENCH = os.path.join(os.path.dirname(SHARP), "..", "build", "release", "bench", "nimbus-bench-variants")


def pipeline_alone(files, threads):
    """The worker's own variant code (src/worker/thumbnails.cpp) over the same local files,
    `threads` at a time: the pipeline without storage, queue or database."""
    out = subprocess.run([VARIANTS_BENCH, str(threads), *files], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def worker_image_threads():
    """NIMBUS_IMAGE_THREADS of the running workers (the worker's default, 2, if unset)."""
    threads = []
    for pid in pids("workers").values():
        try:
            env = process_env(pid)
        except OSError:
            env = {}
        threads.append(int(env.get(b"NIMBUS_IMAGE_THREADS", b"2")))
    return threads


def main():
    load_env()
    gateway = os.environ["NIMBUS_TEST_GATEWAY"]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    uploads = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    cores = os.cpu_count()
    threads = worker_image_threads()
    in_flight = sum(threads)
    print(f"== {n} images; {cores} cores; {len(threads)} workers x {threads} image threads = {in_flight} in flight")
    print("== preparing 10 distinct 4000x3000 JPEGs (12 MP), each uploaded", max(1, n // 10), "times")
    images = [photo(4000, 3000, seed) for seed in range(10)]
    tmp = tempfile.mkdtemp()
    files = []
    for i in range(n):
        path = f"{tmp}/photo{i}.jpg"
        with open(path, "wb") as f:
            f.write(images[i % 10])
        files.append(path)
    print(f"   sizes {min(map(len, images)) / 1e6:.1f}-{max(map(len, images)) / 1e6:.1f} MB")

    # Wall time is what the ratios compare; CPU time per image is printed beside it, as
    # it moves less than wall time when something else shares the cores.
    anchor, anchor_cpu = vipsthumbnail_anchor(files, cores)
    print(f"vipsthumbnail, one process per core ({cores}), same variants: {n} images in {anchor:.1f} s "
          f"= {n / anchor:.2f} images/s; CPU {anchor_cpu / n:.3f} s/image")
    sharp = sharp_anchor(files, in_flight)
    sharp_rate = sharp["images"] / sharp["seconds"]
    print(f"sharp {sharp['sharp']} (libvips {sharp['vips']}), same variants, {in_flight} in flight: "
          f"{sharp['images']} images in {sharp['seconds']:.1f} s = {sharp_rate:.2f} images/s; "
          f"CPU {sharp['cpu_seconds'] / max(1, sharp['images']):.3f} s/image"
          + (f"; FAILED {len(sharp['failures'])}: {sharp['failures'][:5]}" if sharp["failures"] else ""))

    alone = pipeline_alone(files, in_flight)
    alone_rate = alone["images"] / alone["seconds"]
    print(f"nimbus variants alone (libvips {alone['vips']}), local files, {in_flight} threads: {alone['images']} images "
          f"in {alone['seconds']:.1f} s = {alone_rate:.2f} images/s; CPU {alone['cpu_seconds'] / max(1, alone['images']):.3f} "
          f"s/image (decode+resize {1000 * alone['decode_seconds'] / max(1, alone['images']):.0f} ms, encode "
          f"{1000 * alone['encode_seconds'] / max(1, alone['images']):.0f} ms wall per image)")
    print(f"ratio variants alone / sharp:  {alone_rate / sharp_rate:.2f}  (the pipeline and the library, no storage)")

    bearer = {"Authorization": "Bearer " + token(), "Content-Type": "image/jpeg"}
    workers, apis = pids("workers"), pids("api")
    watch = PeakRss({**workers, **apis})
    cpu = {name: cpu_seconds(pid) for name, pid in {**workers, **apis}.items()}
    stages, programs = worker_stage_seconds(), stack_cpu()
    started = time.perf_counter()

    def send(path):
        with open(path, "rb") as f:
            r = requests.post(f"{gateway}/v1/images", data=f.read(), headers=bearer, timeout=120)
        return (r.json()["id"], None) if r.status_code == 202 else (None, f"{r.status_code} {r.text[:200]}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        sent = list(pool.map(send, files))
    uploaded = time.perf_counter() - started
    ids = [i for i, _ in sent if i]
    refused = [error for _, error in sent if error]
    id_list = ",".join(f"'{i}'" for i in ids) or "NULL"
    deadline = started + max(120, 3 * n)
    ready = failed = 0
    while ids:
        ready, failed = map(int, psql(f"SELECT count(*) FILTER (WHERE status = 'ready'), "
                                      f"count(*) FILTER (WHERE status = 'failed') FROM images "
                                      f"WHERE id IN ({id_list})").split("|"))
        if ready + failed == len(ids) or time.perf_counter() > deadline:
            break
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    cpu = {name: cpu_seconds(pid) - cpu[name] for name, pid in {**workers, **apis}.items()}
    stages = {k: v - stages.get(k, 0.0) for k, v in worker_stage_seconds().items()}
    programs = {k: v - programs.get(k, 0.0) for k, v in stack_cpu().items()}
    watch.stop()
    unfinished = len(ids) - ready - failed
    print(f"nimbus, upload -> ready: {ready} of {n} images ready in {elapsed:.1f} s = {ready / elapsed:.2f} "
          f"images/s (uploads took {uploaded:.1f} s; failed: {failed}, upload refused: {len(refused)}, "
          f"unfinished: {unfinished})")
    print(f"   CPU per ready image: workers {sum(cpu[w] for w in workers) / max(1, ready):.3f} s, "
          f"API instances {sum(cpu[a] for a in apis) / max(1, ready):.3f} s")
    per = 1000 / max(1, ready)
    print(f"   worker stages per ready image (wall time, {in_flight} in flight on {cores} cores): fetch "
          f"{stages.get('fetch', 0) * per:.1f} ms, decode+resize {stages.get('decode', 0) * per:.1f} ms, encode "
          f"{stages.get('encode', 0) * per:.1f} ms, store {stages.get('store', 0) * per:.1f} ms")
    total_cpu = sum(programs.values())
    print(f"   whole stack CPU per ready image: {total_cpu / max(1, ready):.3f} s — "
          + ", ".join(f"{name} {seconds / max(1, ready):.3f}" for name, seconds in
                      sorted(programs.items(), key=lambda kv: -kv[1]) if seconds / max(1, ready) >= 0.001))
    for error in refused[:10]:
        print(f"   REFUSED upload: {error}")
    if failed:
        for row in psql(f"SELECT id, error FROM images WHERE id IN ({id_list}) AND status = 'failed' "
                        f"ORDER BY updated_at LIMIT 10").splitlines():
            print(f"   FAILED {row}")
    rate = ready / elapsed
    print(f"ratio nimbus / vipsthumbnail: {rate / (n / anchor):.2f}  (budget >= 0.8)")
    print(f"ratio nimbus / sharp:         {rate / sharp_rate:.2f}  (goal >= 1.0)")
    result = {"images": n, "in_flight": in_flight, "vipsthumbnail": n / anchor, "vipsthumbnail_cpu": anchor_cpu / n,
              "sharp": sharp_rate, "sharp_version": sharp["sharp"], "sharp_vips": sharp["vips"],
              "sharp_cpu": sharp["cpu_seconds"] / max(1, sharp["images"]), "nimbus": rate, "ready": ready,
              "alone": alone_rate, "alone_vips": alone["vips"],
              "alone_cpu": alone["cpu_seconds"] / max(1, alone["images"]), "ratio_alone_sharp": alone_rate / sharp_rate,
              "failed": failed, "unfinished": unfinished,
              "worker_cpu": sum(cpu[w] for w in workers) / max(1, ready),
              "api_cpu": sum(cpu[a] for a in apis) / max(1, ready),
              "stack_cpu": {k: v / max(1, ready) for k, v in programs.items()},
              "stages_ms": {k: v * per for k, v in stages.items()},
              "ratio_vipsthumbnail": rate / (n / anchor), "ratio_sharp": rate / sharp_rate,
              "peak_rss_mb": dict(watch.peak)}
    for name in sorted(watch.peak):
        print(f"   peak RSS {name:22s} {watch.peak[name]:7.1f} MB (at start {watch.start[name]:.1f} MB)")

    print(f"== {uploads} concurrent uploads of one large JPEG to one API instance")
    big = photo(5000, 4000, 99, quality=97, noise=40)
    print(f"   file: {len(big) / 1e6:.1f} MB, 20 MP")
    api = pids("api")
    first = sorted(api)[0]
    direct = f"http://127.0.0.1:{int(os.environ['NIMBUS_STACK_API_BASE_PORT']) + 1}"
    watch = PeakRss({first: api[first]})
    with ThreadPoolExecutor(max_workers=uploads) as pool:
        statuses = list(pool.map(lambda _: requests.post(f"{direct}/v1/images", data=big, headers=bearer,
                                                         timeout=300).status_code, range(uploads)))
    watch.stop()
    print(f"   statuses: {sorted(set(statuses))}; {first} RSS {watch.start[first]:.1f} MB before, "
          f"peak {watch.peak[first]:.1f} MB (+{watch.peak[first] - watch.start[first]:.1f} MB) "
          f"for {uploads * len(big) / 1e6:.0f} MB uploaded at once")
    result["upload_memory"] = {"uploads": uploads, "mb_each": len(big) / 1e6, "statuses": sorted(set(statuses)),
                               "rss_before_mb": watch.start[first], "rss_peak_mb": watch.peak[first]}
    save_result("images", result)


if __name__ == "__main__":
    main()
