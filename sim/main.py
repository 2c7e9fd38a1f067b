"""Nimbus load simulation, failover drills and reports.

  main.py sim votes|images|mixed [--short]   closed (and, for votes, open) model
  main.py drill NAME|all [--short]           failover drills under load, each checked
  main.py check FILE                         the checkers over a results file (exit 1 if any fails)
  main.py report                             docs/reports and docs/diagrams from the latest results
  main.py list                               the drills

Results (JSON: raw samples + summaries + ledger + observation + verdict) go to
--out (default: <run folder>/sim/results). The stack is the one NIMBUS_STACK_ENV
names (default .run/$NIMBUS_PROFILE/stack.env); ./stack sim|drill|report wrap this."""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stackenv  # noqa: E402

# Sizes of the runs: `full` for the reports (minutes), `short` for the test (seconds).
PLANS = {
    "full": {
        "votes_steps": [100, 250, 500, 750, 1000], "votes_hold": 30, "spawn_rate": 40,
        "open_rates": [100, 200, 400, 600, 800, 1000, 1300, 1600, 2000], "open_step": 10, "open_voters": 300,
        "images_steps": [5, 10, 20], "images_hold": 45,
        "mixed_users": 300, "mixed_uploaders": 10, "mixed_hold": 60,
    },
    "short": {
        "votes_steps": [4, 8], "votes_hold": 3, "spawn_rate": 8,
        "open_rates": [20, 40], "open_step": 2, "open_voters": 6,
        "images_steps": [2], "images_hold": 4,
        "mixed_users": 6, "mixed_uploaders": 1, "mixed_hold": 4,
    },
}


def out_dir(args):
    return args.out or os.path.join(os.environ["NIMBUS_STACK_RUN"], "sim", "results")


def cmd_sim(args):
    import corpus  # noqa: PLC0415
    import simulate  # noqa: PLC0415

    plan = PLANS["short" if args.short else "full"]
    out = out_dir(args)
    paths = []
    if args.kind == "votes":
        paths.append(simulate.run_closed("sim-votes-closed", plan["votes_steps"], plan["votes_hold"],
                                         [simulate.Voter, simulate.Owner], out, spawn_rate=plan["spawn_rate"]))
        paths.append(simulate.run_open("sim-votes-open", plan["open_rates"], plan["open_step"], out,
                                       budget_p99_ms=args.budget_ms, voters=plan["open_voters"]))
    elif args.kind == "images":
        images = corpus.load(os.path.join(os.environ["NIMBUS_STACK_RUN"], "sim", "corpus"), small_only=args.short)
        paths.append(simulate.run_closed("sim-images", plan["images_steps"], plan["images_hold"],
                                         [simulate.Uploader], out, spawn_rate=5, images=images, seed=0))
    else:
        images = corpus.load(os.path.join(os.environ["NIMBUS_STACK_RUN"], "sim", "corpus"), small_only=args.short)
        simulate.Uploader.fixed_count = plan["mixed_uploaders"]
        paths.append(simulate.run_closed("sim-mixed", [plan["mixed_users"]], plan["mixed_hold"],
                                         [simulate.Voter, simulate.Owner, simulate.Uploader], out,
                                         spawn_rate=plan["spawn_rate"], images=images))
    return report_paths(paths)


def cmd_drill(args):
    import drills  # noqa: PLC0415

    names = list(drills.DRILLS) if args.name == "all" else [args.name]
    for n in names:
        if n not in drills.DRILLS:
            raise SystemExit(f"unknown drill {n!r}; drills: {', '.join(drills.DRILLS)}")
    paths = []
    for n in names:
        paths.append(drills.run(n, out_dir(args), short=args.short))
    return report_paths(paths)


def report_paths(paths):
    failed = 0
    for p in paths:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
        verdict = data.get("checks", {})
        s = data["summary"]
        lat = s["latency_ms"]
        ok = verdict.get("passed", True)
        failed += not ok
        print(f"{data['name']}: {s['requests']} requests in {data['duration_s']:.0f}s, {s['rps']:.0f}/s, "
              f"errors {s['error_rate'] * 100:.2f}%, p50 {lat.get('p50') or 0:.1f} ms, p99 {lat.get('p99') or 0:.1f} ms; "
              f"checks {'passed' if ok else 'FAILED'} -> {p}")
        if not ok:
            print(json.dumps({k: v for k, v in verdict.items() if k != "passed"}, indent=1)[:3000])
    return 1 if failed else 0


def cmd_check(args):
    import checks  # noqa: PLC0415

    with open(args.file, encoding="utf-8") as f:
        data = json.load(f)
    verdict = checks.check_results(data)
    print(json.dumps(verdict, indent=1))
    return 0 if verdict["passed"] else 1


def cmd_report(args):
    import report  # noqa: PLC0415

    return report.generate(out_dir(args))


def cmd_list(args):
    import drills  # noqa: PLC0415

    for name, d in drills.DRILLS.items():
        print(f"{name:22s} {d.title}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="results folder")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sim")
    s.add_argument("kind", choices=["votes", "images", "mixed"])
    s.add_argument("--short", action="store_true")
    s.add_argument("--budget-ms", type=float, default=100.0, help="open model: p99 budget of a vote")
    d = sub.add_parser("drill")
    d.add_argument("name")
    d.add_argument("--short", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("file")
    sub.add_parser("report")
    sub.add_parser("list")
    args = p.parse_args()
    if args.cmd not in ("check",):
        stackenv.load_env()
    started = time.monotonic()
    rc = {"sim": cmd_sim, "drill": cmd_drill, "check": cmd_check, "report": cmd_report, "list": cmd_list}[args.cmd](args)
    if args.cmd in ("sim", "drill"):
        print(f"took {time.monotonic() - started:.0f}s", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
