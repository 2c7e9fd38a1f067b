"""The README's performance table, generated from the benchmarks' result files.

Every benchmark run writes bench/results/<kind>-<UTC time>.json (bench/stack_env.py's
save_result). This script takes the last `runs` results of each kind — votes with the
per-instance memories on, votes with them off (NIMBUS_LOCAL_MEMO=0, bench/memo.sh),
images, live-results streams — and writes one table between the markers
`<!-- bench:summary:begin -->` and `<!-- bench:summary:end -->` of each file given, and
the comparison of vote flushers (bench/results/flushers) between
`<!-- bench:flushers:begin -->` and `<!-- bench:flushers:end -->` where a file has them,
and between `<!-- bench:bounds:begin -->` and `<!-- bench:bounds:end -->` the arithmetic
from the same runs that bounds each goal on this machine; numbers are never typed into a
document by hand.

Usage: /usr/bin/python3 bench/summary.py [runs] [file...]   (defaults: 3, README.md)
"""
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN, END = "<!-- bench:summary:begin -->", "<!-- bench:summary:end -->"


def load(kind, runs, where=lambda r: True, folder="results"):
    found = []
    for path in sorted(glob.glob(os.path.join(HERE, folder, f"{kind}-*.json"))):
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        if where(result):
            found.append(result)
    return found[-runs:]


def cells(results, read, fmt):
    values = []
    for r in results:
        try:
            value = read(r)
        except (KeyError, TypeError):
            value = None
        values.append("—" if value is None else fmt.format(value))
    return " / ".join(values) if values else "not run"


PARTS = ("gateway", "api", "redis", "postgres")


def cpu_parts(cpu, parts):
    """'41 · 79 · 16 µs': CPU µs per request of the stack's parts, as recorded by votes.py."""
    return " · ".join(f"{cpu[p]:.0f}" for p in parts) + " µs"


def settings_table(folder, setting):
    """Alternating runs of one setting (bench/memo.sh with SETTING and VALUES): one row per run."""
    out = [f"| run | {setting} | saturated votes/s | pgbench one per transaction | ratio | mean batch | "
           "PostgreSQL CPU per vote | paced p99 |", "|---|---|---|---|---|---|---|---|"]
    for r in load("votes", 1000, folder=folder):
        out.append(f"| {r['at']} | {r['flushers']} | {r['saturated']['votes_per_s']:,.0f} | "
                   f"{r['pgbench_one_per_txn']:,.0f} | {r['ratio_saturated_one_per_txn']:.2f} | "
                   f"{r.get('batch_mean', 0):.1f} | "
                   + (f"{r['saturated']['cpu_us_per_vote']['postgres']:.0f} µs" if 'cpu_us_per_vote' in r['saturated']
                      else "—")
                   + f" | {r['paced']['p99_ms']:.1f} ms |")
    return "\n".join(out)


def table(runs):
    memo_on = load("votes", runs, lambda r: r.get("local_memo", True))
    memo_off = load("votes", runs, lambda r: not r.get("local_memo", True))
    images = load("images", runs)
    streams = load("streams", runs)
    rows = [
        ("votes/s, saturated (200 voters), memories on", memo_on, lambda r: r["saturated"]["votes_per_s"], "{:,.0f}",
         "pgbench, one ballot per transaction", lambda r: r["pgbench_one_per_txn"], "{:,.0f}",
         lambda r: r["ratio_saturated_one_per_txn"], "≥ 1.0"),
        ("votes/s, saturated, NIMBUS_LOCAL_MEMO=0", memo_off, lambda r: r["saturated"]["votes_per_s"], "{:,.0f}",
         "pgbench, one ballot per transaction", lambda r: r["pgbench_one_per_txn"], "{:,.0f}",
         lambda r: r["ratio_saturated_one_per_txn"], "≥ 1.0"),
        ("votes/s vs the batched ceiling, memories on", memo_on, lambda r: r["saturated"]["votes_per_s"], "{:,.0f}",
         "pgbench, the server's batch statement at its mean batch", lambda r: r["ceiling"], "{:,.0f}",
         lambda r: r["ratio_saturated_ceiling"], "(reported)"),
        ("vote p99, paced (100 ms think), memories on", memo_on, lambda r: r["paced"]["p99_ms"], "{:.1f} ms",
         "pgbench, one ballot per transaction at the paced rate: p99", lambda r: r["pgbench_paced"]["p99_ms"],
         "{:.1f} ms", None, "≤ 15 ms"),
        ("vote p99, paced, NIMBUS_LOCAL_MEMO=0", memo_off, lambda r: r["paced"]["p99_ms"], "{:.1f} ms",
         None, None, None, None, "≤ 15 ms"),
        ("results reads/s, memories on", memo_on, lambda r: r["results"], "{:,.0f}",
         "`/healthz` through the gateway", lambda r: r["healthz"], "{:,.0f}", lambda r: r["ratio_results_healthz"],
         "≥ 0.8"),
        ("results reads/s, NIMBUS_LOCAL_MEMO=0", memo_off, lambda r: r["results"], "{:,.0f}",
         "`/healthz` through the gateway", lambda r: r["healthz"], "{:,.0f}", lambda r: r["ratio_results_healthz"],
         "≥ 0.8"),
        ("reads/s of `/debug/token` (the token checked, no Redis round trip), memories on", memo_on,
         lambda r: r["token_only"], "{:,.0f}", "`/healthz` through the gateway", lambda r: r["healthz"], "{:,.0f}",
         lambda r: r["ratio_token_only_healthz"], "(reported)"),
        ("CPU per vote, saturated, memories on: gateway · API · Redis · PostgreSQL", memo_on,
         lambda r: cpu_parts(r["saturated"]["cpu_us_per_vote"], PARTS), "{}",
         "pgbench: PostgreSQL per transaction", lambda r: r["pgbench_cpu_us_per_txn"]["postgres"], "{:.0f} µs",
         None, "(reported)"),
        ("CPU per results read, memories on: gateway · API · Redis", memo_on,
         lambda r: cpu_parts(r["results_cpu_us"], PARTS[:3]), "{}",
         "`/healthz`: gateway · API", lambda r: cpu_parts(r["healthz_cpu_us"], PARTS[:2]), "{}", None,
         "(reported)"),
        ("new TCP connections per 1,000 requests, memories on: saturated votes · results reads", memo_on,
         lambda r: f"{r['saturated']['new_connections_per_1k']:.1f} · {r['results_new_connections_per_1k']:.1f}", "{}",
         None, None, None, None, "(reported)"),
        ("images/s, upload → both variants ready", images, lambda r: r["nimbus"], "{:.2f}",
         "sharp, same variants, local files", lambda r: r["sharp"], "{:.2f}", lambda r: r["ratio_sharp"], "≥ 1.0"),
        ("images/s, the worker's variant code alone (local files)", images, lambda r: r["alone"], "{:.2f}",
         "sharp, same variants, local files", lambda r: r["sharp"], "{:.2f}", lambda r: r["ratio_alone_sharp"],
         "(reported)"),
        ("worker CPU-s per image", images, lambda r: r["worker_cpu"], "{:.3f}",
         "sharp CPU-s per image", lambda r: r["sharp_cpu"], "{:.3f}", lambda r: r["sharp_cpu"] / r["worker_cpu"],
         "(reported)"),
        ("worker peak RSS during the run", images,
         lambda r: max(v for k, v in r["peak_rss_mb"].items() if "worker" in k), "{:.0f} MB",
         None, None, None, None, "< 200 MB"),
        ("whole stack CPU-s per image", images, lambda r: sum(r["stack_cpu"].values()), "{:.3f}",
         "of it: Swift (the local S3)", lambda r: sum(v for k, v in r["stack_cpu"].items() if k.startswith("swift")),
         "{:.3f}", None, "(reported)"),
        ("10,000 streams: all established in", streams, lambda r: r["established_s"], "{:.1f} s",
         None, None, None, None, "≤ 10 s"),
        ("10,000 streams: fan-out p99 (p50)", streams,
         lambda r: f"{r['fanout_p99_ms']:,.0f} ms ({r['fanout_p50_ms']:,.0f})", "{}", None, None, None, None,
         "p99 < 300 ms"),
        ("10,000 streams: instance CPU per stream update (its share of a core)", streams,
         lambda r: f"{1e6 * r['instance_cpu_voting_s'] / r['updates']:.1f} µs "
                   f"({100 * r['instance_cpu_voting_s'] / r['vote_wall_s']:.0f} %)", "{}", None, None, None, None,
         "(reported)"),
        ("10,000 streams: instance peak RSS", streams, lambda r: r["peak_rss_mb"], "{:.0f} MB",
         None, None, None, None, "< 200 MB"),
        ("10,000 streams: dropped", streams, lambda r: r["dropped"], "{}", None, None, None, None, "0"),
    ]
    out = ["| measure (runs, oldest first) | Nimbus | anchor (same run) | the anchor's numbers | ratio | goal |",
           "|---|---|---|---|---|---|"]
    for label, results, read, fmt, anchor, anchor_read, anchor_fmt, ratio, goal in rows:
        out.append("| " + " | ".join([
            label,
            cells(results, read, fmt),
            anchor or "—",
            cells(results, anchor_read, anchor_fmt) if anchor_read else "—",
            cells(results, ratio, "{:.2f}") if ratio else "—",
            goal,
        ]) + " |")
    dated = [r["at"] for group in (memo_on, memo_off, images, streams) for r in group]
    if dated:
        out.append("")
        out.append(f"Runs from {min(dated)} to {max(dated)} ({runs} per row at most; each file under "
                   f"`bench/results/`), on {memo_on[0]['cores'] if memo_on else os.cpu_count()} cores shared by the "
                   "whole stack and the load generators. Regenerate: `/usr/bin/python3 bench/summary.py`.")
    return "\n".join(out)


def span(values, fmt):
    """'a–b' over the runs (or the one value), formatted."""
    values = [v for v in values if v is not None]
    if not values:
        return "not run"
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}–{high}"


def each(results, read):
    out = []
    for r in results:
        try:
            out.append(read(r))
        except (KeyError, TypeError, ZeroDivisionError):
            out.append(None)
    return out


def bounds(runs):
    """What the runs of the table say about each goal's limit on this machine: the sums
    and products of their own numbers, spelled out."""
    memo_on = load("votes", runs, lambda r: r.get("local_memo", True))
    images = load("images", runs)
    streams = load("streams", runs)
    out = []
    if memo_on:
        outside = each(memo_on, lambda r: sum(r["saturated"]["cpu_us_per_vote"][p] for p in PARTS[:3]))
        pg = each(memo_on, lambda r: r["saturated"]["cpu_us_per_vote"]["postgres"])
        anchor = each(memo_on, lambda r: r["pgbench_cpu_us_per_txn"]["postgres"])
        out.append(
            f"- **Votes vs pgbench.** A vote costs PostgreSQL {span(pg, '{:.0f}')} µs of CPU (group commit), a "
            f"pgbench transaction {span(anchor, '{:.0f}')} µs: PostgreSQL does "
            f"{span([a / b for a, b in zip(anchor, pg) if a and b], '{:.1f}')}× less work per vote. But the "
            f"vote also costs {span(outside, '{:.0f}')} µs in the gateway, the instance and Redis, on the same two "
            f"cores, where pgbench's client is not even counted. Whole stack per vote: "
            f"{span([a + b for a, b in zip(outside, pg) if a and b], '{:.0f}')} µs against pgbench's "
            f"{span(anchor, '{:.0f}')}: on one machine the two come out about even, and which is ahead depends on "
            "the run. With the gateway and the instances on cores of their own (any deployment past one machine), "
            "PostgreSQL's work per vote would be the limit — an estimate from these numbers, not a measurement: this "
            "machine has no spare core.")
        paced = each(memo_on, lambda r: r["paced"]["p99_ms"])
        alone = each(memo_on, lambda r: r["pgbench_paced"]["p99_ms"])
        if any(a is not None for a in alone):
            out.append(
                f"- **Paced p99.** PostgreSQL alone, one ballot per transaction at the paced run's rate, has a p99 of "
                f"{span(alone, '{:.1f}')} ms; through the gateway, an instance and Redis, with group commit, the "
                f"vote's p99 is {span(paced, '{:.1f}')} ms — the goal's 15 ms leaves the whole HTTP path "
                f"{span([15 - a for a in alone if a is not None], '{:.1f}')} ms of tail beyond the database's own, "
                "on the cores the database uses.")
        box = each(memo_on, lambda r: r["paced"]["ballot_box_ms"]["box"]["99"])
        if any(b is not None for b in box):
            stage = {k: each(memo_on, lambda r, k=k: r["paced"]["ballot_box_ms"][k]["99"])
                     for k in ("queue", "write", "count")}
            out.append(
                f"  Of it, the ballot box (the instances' `nimbus_vote_*_seconds` histograms, p99 as the bound of "
                f"its bucket): queued to answered ≤ {span(box, '{:g}')} ms — waiting for a batch ≤ "
                f"{span(stage['queue'], '{:g}')}, the batch's statement and commit ≤ {span(stage['write'], '{:g}')}, "
                f"the count in Redis ≤ {span(stage['count'], '{:g}')} ms; the rest of a vote's time is outside it "
                "(gateway, the token's revocation lookup in Redis, HTTP both ways).")
        token = each(memo_on, lambda r: r["ratio_token_only_healthz"])
        results = each(memo_on, lambda r: r["ratio_results_healthz"])
        api_gap = each(memo_on, lambda r: r["results_cpu_us"]["api"] - r["token_only_cpu_us"]["api"])
        if any(t is not None for t in token):
            out.append(
                f"- **Results reads vs /healthz.** The token check alone (`/debug/token`, the same tokens through "
                f"the same token hashing) serves {span(token, '{:.2f}')} of /healthz; the results read "
                f"{span(results, '{:.2f}')}. The difference is the read's Redis round trip (the revocation "
                "lookup and the tally leave in one write) and the reply: "
                f"{span(api_gap, '{:.0f}')} µs more of the instance's CPU per read than the token check alone.")
    if images:
        rest = each(images, lambda r: sum(r["stack_cpu"].values()) - r["worker_cpu"])
        sharp = each(images, lambda r: r["sharp_cpu"])
        out.append(
            f"- **Images vs sharp.** Besides the worker, each image costs the rest of the stack "
            f"{span(rest, '{:.3f}')} CPU-s (storing and serving the original and the variants in Swift, "
            f"PostgreSQL, RabbitMQ, the upload) on the same two cores, where sharp reads local files. A worker "
            f"exactly as fast as sharp ({span(sharp, '{:.3f}')} CPU-s per image) would make upload → ready "
            f"{span([s / (s + x) for s, x in zip(sharp, rest) if s and x], '{:.2f}')} of sharp here: the goal needs "
            "the storage off these cores (as S3 is in production) as well as a faster worker.")
    if streams:
        per_update = each(streams, lambda r: 1e6 * r["instance_cpu_voting_s"] / r["updates"])
        refresh = each(streams, lambda r: r["streams"] * r["instance_cpu_voting_s"] / r["updates"] * 1e3)
        share = each(streams, lambda r: r["instance_cpu_voting_s"] / r["vote_wall_s"])
        out.append(
            f"- **10,000 streams.** One refresh to every stream costs the instance {span(per_update, '{:.1f}')} µs "
            f"per stream, {span(refresh, '{:.0f}')} ms of one thread for all of them, against the 50 ms the goal "
            f"leaves after the 250 ms window ({span([x / 50 for x in refresh if x], '{:.1f}')}× over, even on a "
            "core of its own); and the instance got "
            f"{span([100 * x for x in share if x is not None], '{:.0f}')} % of one. At these costs one free core "
            f"fans out to about {span([50e3 / x for x in per_update if x], '{:,.0f}')} streams within 50 ms.")
    return "\n".join(out) if out else "No runs yet."


def replace(doc, name, text):
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{text}\n{end}", doc, flags=re.S)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    files = sys.argv[2:] or [os.path.join(HERE, "..", "README.md")]
    text = table(runs)
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = f.read()
        if BEGIN not in doc or END not in doc:
            raise SystemExit(f"{path}: no {BEGIN} ... {END} markers")
        doc = replace(doc, "summary", text)
        # The vote flushers compared (bench/results/flushers), where a document asks for it.
        doc = replace(doc, "flushers", settings_table("results/flushers", "NIMBUS_VOTE_FLUSHERS"))
        doc = replace(doc, "bounds", bounds(runs))
        with open(path, "w", encoding="utf-8") as f:
            f.write(doc)
        print(f"{path}: table of {runs} runs per row written")


if __name__ == "__main__":
    main()
