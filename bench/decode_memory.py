"""Decoded-memory benchmark (not a test; issue 22, item 7, docs/adr/0010).

Peak RSS of the worker's own variant code (src/worker/thumbnails.cpp, through
build/release/bench/nimbus-bench-variants: no storage, queue or database) over 50 MP
images that compress to almost nothing but decode to 150 MB, made here with libvips:
an interlaced PNG (the decoder holds the whole frame), the same PNG non-interlaced
(streamed), a progressive JPEG (the decoder holds every coefficient). Each case in a
fresh process, peak RSS from the kernel (wait4):
- one decode;
- two decodes at once (2 threads), without a decode budget — what a worker with
  NIMBUS_IMAGE_THREADS=2 did before;
- two at once with the worker's DecodeBudget of NIMBUS_IMAGE_MAX_DECODE_BYTES
  (default 256 MiB): the second waits for the first.

Usage: /usr/bin/python3 bench/decode_memory.py [budget MiB, default 256]
(needs libvips-tools and `cmake --build --preset release --target nimbus-bench-variants`).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from stack_env import save_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS_BENCH = os.path.join(ROOT, "build/release/bench/nimbus-bench-variants")
WIDTH, HEIGHT = 8660, 5773  # 49.99 MP: just within NIMBUS_IMAGE_MAX_PIXELS


def make_files(folder):
    """The three 50 MP files (black, RGB), with the vips CLI."""
    raw = os.path.join(folder, "black.v")
    subprocess.run(["vips", "black", raw, str(WIDTH), str(HEIGHT), "--bands", "3"], check=True)
    files = {
        "png-interlaced": (["pngsave", "--interlace", "--compression", "9"], "png"),
        "png-plain": (["pngsave", "--compression", "9"], "png"),
        "jpeg-progressive": (["jpegsave", "--interlace"], "jpg"),
    }
    out = {}
    for name, (args, ext) in files.items():
        path = os.path.join(folder, f"{name}.{ext}")
        subprocess.run(["vips", args[0], raw, path, *args[1:]], check=True)
        out[name] = path
    os.remove(raw)
    return out


def run(threads, files, budget=0):
    """One nimbus-bench-variants process: its JSON line and its peak RSS in MiB."""
    env = {**os.environ, "NIMBUS_BENCH_DECODE_BUDGET": str(budget)}
    started = time.monotonic()
    p = subprocess.Popen([VARIANTS_BENCH, str(threads), *files], stdout=subprocess.PIPE, env=env, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    line = json.loads(out.strip().splitlines()[-1])
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(time.monotonic() - started, 2),
            "failed": line["failed"]}


def main():
    budget_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    if not os.access(VARIANTS_BENCH, os.X_OK):
        sys.exit(f"{VARIANTS_BENCH} missing: cmake --build --preset release --target nimbus-bench-variants")
    results = {"budget_mib": budget_mib, "width": WIDTH, "height": HEIGHT, "cases": {}}
    with tempfile.TemporaryDirectory() as folder:
        print(f"== making {WIDTH}x{HEIGHT} files with vips")
        files = make_files(folder)
        for name, path in files.items():
            case = {"bytes": os.path.getsize(path)}
            print(f"== {name} ({case['bytes']} bytes)")
            case["one"] = run(1, [path])
            case["two_at_once"] = run(2, [path, path])
            case["two_with_budget"] = run(2, [path, path], budget_mib * 1024 * 1024)
            for k in ("one", "two_at_once", "two_with_budget"):
                print(f"   {k:16} peak RSS {case[k]['peak_rss_mib']:7.1f} MiB  {case[k]['seconds']:6.2f} s"
                      f"{'  FAILED ' + str(case[k]['failed']) if case[k]['failed'] else ''}")
            results["cases"][name] = case
    save_result("decode-memory", results)


if __name__ == "__main__":
    main()
