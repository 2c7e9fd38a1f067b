#!/usr/bin/env python3
"""clang-tidy over src/ with the repository's .clang-tidy, as `./stack test` runs it.

clang-tidy 19 (Debian: clang-tidy-19), for the coroutine checks older ones lack:
reference parameters of coroutines, capturing lambda coroutines, RAII objects (locks)
held across a suspension point. It reads a compile database clang understands:
build/tidy, configured with clang and without the GCC precompiled header (never built;
only the generated sources it needs are).

Every finding fails the run, unless tests/lint/clang_tidy_baseline.txt accepts it: one
line per accepted finding (check | file | the code of its line, so that line numbers can
move), under a comment that says why it is accepted. A baseline line nothing matches any
more is reported, to be removed.

Each file's output is cached (like ccache, under ~/.cache/nimbus/clang-tidy, or
$NIMBUS_TIDY_CACHE), keyed by clang-tidy's version, .clang-tidy, the compile command and
the file's preprocessed source (every header it includes, as clang sees them), with the
checkout's own path taken out so that another clone of the same code hits it. A file
whose key is unchanged is not analysed again: the same input gives the same findings.

Usage: tests/lint/clang_tidy.py [-j JOBS] [--update-baseline] [--no-cache]"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "build" / "tidy"
BASELINE = pathlib.Path(__file__).resolve().parent / "clang_tidy_baseline.txt"
FINDING = re.compile(r"^(/[^:\s]+):(\d+):(\d+): (warning|error): (.*?) \[([\w.,-]+)\]$")


def tool(*names):
    for name in names:
        if shutil.which(name):
            return name
    sys.exit(f"clang-tidy: none of {', '.join(names)} found (Debian: apt-get install clang-tidy-19)")


def configure():
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(BUILD), "-G", "Ninja", "-DCMAKE_CXX_COMPILER=clang++",
                    "-DCMAKE_BUILD_TYPE=Debug", "-DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON",
                    "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", "-DNIMBUS_BUILD_TESTS=OFF"],
                   check=True, stdout=subprocess.DEVNULL)


def key(check, path, line):
    try:
        code = path.read_text(encoding="utf-8", errors="replace").splitlines()[line - 1].strip()
    except (OSError, IndexError):
        code = f"line {line}"
    return f"{check} | {path.relative_to(ROOT)} | {code}"


def findings(output):
    found = {}
    for text in output.splitlines():
        m = FINDING.match(text)
        if not m:
            continue
        path = pathlib.Path(m.group(1)).resolve()
        if ROOT not in path.parents or BUILD in path.parents:
            continue  # system headers, generated code
        for check in m.group(6).split(","):
            found.setdefault(key(check, path, int(m.group(2))), f"{m.group(1)}:{m.group(2)}: {m.group(5)}")
    return found


def baseline():
    if not BASELINE.exists():
        return set()
    return {line.strip() for line in BASELINE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")}


CACHE = pathlib.Path(os.environ.get("NIMBUS_TIDY_CACHE")
                     or pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
                     / "nimbus" / "clang-tidy")
PLACEHOLDER = "@NIMBUS_ROOT@"


def sources():
    """The compile database's entries for src/ (what run-clang-tidy was given)."""
    entries = json.loads((BUILD / "compile_commands.json").read_text(encoding="utf-8"))
    src = str(ROOT / "src") + os.sep
    return sorted((e for e in entries if e["file"].startswith(src)), key=lambda e: e["file"])


def cache_key(entry, salt):
    """What the findings of one file depend on, without this checkout's path in it."""
    args = shlex.split(entry["command"])
    keep, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a in ("-o", "-c"):
            skip = True
        else:
            keep.append(a)
    pre = subprocess.run([args[0], *keep, "-E", "-P", entry["file"]], cwd=entry["directory"], capture_output=True)
    if pre.returncode != 0:
        return None  # clang cannot read it: analyse it, its errors are findings
    root = str(ROOT).encode()
    h = hashlib.sha256(salt)
    h.update(entry["command"].replace(str(ROOT), PLACEHOLDER).encode())
    h.update(entry["file"].replace(str(ROOT), PLACEHOLDER).encode())
    h.update(pre.stdout.replace(root, PLACEHOLDER.encode()))
    return h.hexdigest()


def analyse(tidy, entry, salt, use_cache):
    """clang-tidy's output for one file, from the cache when its input is unchanged."""
    k = cache_key(entry, salt) if use_cache else None
    cached = CACHE / f"{k}.txt" if k else None
    if cached and cached.exists():
        os.utime(cached)
        return cached.read_text(encoding="utf-8").replace(PLACEHOLDER, str(ROOT)), True
    out = subprocess.run([tidy, "-p", str(BUILD), "-quiet", entry["file"]], capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode != 0 and not any(FINDING.match(t) for t in text.splitlines()):
        # clang-tidy failed without saying why in a finding (a crash): never cached, fails.
        raise RuntimeError(f"clang-tidy failed on {entry['file']} (exit {out.returncode}):\n{text[-3000:]}")
    if cached:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text.replace(str(ROOT), PLACEHOLDER), encoding="utf-8")
        tmp.replace(cached)
    return text, False


def prune_cache(days=30):
    if not CACHE.is_dir():
        return
    limit = time.time() - days * 86400
    for f in CACHE.glob("*.txt"):
        if f.stat().st_mtime < limit:
            f.unlink(missing_ok=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--update-baseline", action="store_true",
                        help="print every finding as a baseline line (to review, then paste)")
    parser.add_argument("--no-cache", action="store_true", help="analyse every file, read and write no cache")
    args = parser.parse_args()
    tidy = tool("clang-tidy-19")
    configure()
    version = subprocess.run([tidy, "--version"], capture_output=True, text=True, check=True).stdout
    salt = (version + (ROOT / ".clang-tidy").read_text(encoding="utf-8")).encode()
    entries = sources()
    print(f"clang-tidy: {tidy} over src/ ({len(entries)} files, {args.jobs} jobs; build/tidy; "
          f"cache {'off' if args.no_cache else CACHE})", flush=True)
    # Errors (code clang cannot compile: a missing include the GCC PCH hid) are findings
    # too: clang-tidy's own exit status is not the verdict, the findings are.
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda e: analyse(tidy, e, salt, not args.no_cache), entries))
    hits = sum(1 for _, hit in results if hit)
    print(f"clang-tidy: {len(entries) - hits} file(s) analysed, {hits} unchanged (cached)", flush=True)
    if not args.no_cache:
        prune_cache()
    found = findings("\n".join(text for text, _ in results))
    if args.update_baseline:
        print("\n".join(sorted(found)))
        return 0
    accepted = baseline()
    new = {k: v for k, v in found.items() if k not in accepted}
    stale = sorted(accepted - set(found))
    for line in stale:
        print(f"clang-tidy: baseline line no longer found (remove it): {line}")
    if new:
        print(f"clang-tidy: {len(new)} finding(s) not in {BASELINE.relative_to(ROOT)}:")
        for k in sorted(new):
            print(f"  {new[k]}\n    {k}")
        return 1
    print(f"clang-tidy: clean ({len(found)} finding(s), each accepted in the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
