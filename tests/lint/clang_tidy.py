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

Usage: tests/lint/clang_tidy.py [-j JOBS] [--update-baseline]"""
import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--update-baseline", action="store_true",
                        help="print every finding as a baseline line (to review, then paste)")
    args = parser.parse_args()
    tidy, run = tool("clang-tidy-19"), tool("run-clang-tidy-19")
    configure()
    print(f"clang-tidy: {tidy} over src/ ({args.jobs} jobs; build/tidy)", flush=True)
    # Errors (code clang cannot compile: a missing include the GCC PCH hid) are findings
    # too: run-clang-tidy's own exit status is not the verdict, the findings are.
    out = subprocess.run([run, "-clang-tidy-binary", tidy, "-p", str(BUILD), "-j", str(args.jobs), "-quiet",
                          f"^{re.escape(str(ROOT / 'src'))}/"], capture_output=True, text=True)
    found = findings(out.stdout + out.stderr)
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
    if out.returncode != 0 and not found:
        print(out.stdout[-3000:], out.stderr[-3000:])
        return out.returncode
    print(f"clang-tidy: clean ({len(found)} finding(s), each accepted in the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
