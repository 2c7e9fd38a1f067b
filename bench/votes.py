"""Vote-path benchmark (not a test): votes/s and latency of POST /v1/polls/{id}/votes
through the gateway, next to two pgbench anchors straight against PostgreSQL, in the
same run, on the same machine — printed as ratios:

- one-per-transaction: the vote statement a naive server would send, one ballot per
  transaction (what PostgreSQL can do for a server without group commit);
- ceiling: the server's own batch statement (kCastBatch, read from
  src/voting/ballot_box.cpp) at the mean batch size the API instances formed during the
  saturated run (their nimbus_vote_batch_size histograms, scraped before and after), as
  many batches in flight as the instances have flushers, counted in ballots/s.

Setup (not timed): bench users and polls are written with psql; access tokens are
minted with the stack's signing key (PyJWT), so no sign-in is measured. Every vote of
every phase (pgbench included) is the first ballot of a distinct (user, poll) pair, so
each one inserts; the pairs are sized from the duration and a run that would reuse one
says so loudly. Only 2xx responses count as votes, and the ballots stored by a run are
compared with its acknowledged votes.

Usage: NIMBUS_STACK_ENV=.run/local/stack.env /usr/bin/python3 bench/votes.py [seconds] [voters]
(needs ./stack up, wrk and pgbench; defaults: 10 s, 200 concurrent voters).
"""
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from stack_env import (BenchIds, access_tokens, cpu_per_request, create_polls, load_env, process_env, psql, save_result,
                       stack_cpu, tcp_active_opens)

USERS = 4000  # each user votes once in each poll of a phase
THINK_MS = int(os.environ.get("THINK_MS", "100"))  # paced run: each voter waits this long between votes
WARMUP_SECONDS = 3
DRAIN_SECONDS = 3  # after its voting window a wrk run sends nothing and waits for the answers in flight
TAG = f"{uuid.uuid4().int % 65536:04x}"  # fresh ids every run: no ballot exists yet
# Rates no run on this hardware comes near (several times the best measured), to size
# the (user, poll) pairs of a phase: a run reaching one is reported, never wrapped.
MAX_PGBENCH_TPS = 50_000
MAX_CEILING_BALLOTS = 400_000
MAX_GATEWAY_VOTES = 40_000
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# Poll numbers, set by setup(): [one-per-transaction][ceiling][warm-up][saturated][paced].
# PGBENCH_POLLS and GATEWAY_POLLS keep their meaning for deploy/k8s/capacity/scale.py:
# the gateway phases start after PGBENCH_POLLS, each GATEWAY_POLLS // 3 polls long.
ANCHOR_POLLS = CEILING_POLLS = PHASE_POLLS = PGBENCH_POLLS = GATEWAY_POLLS = 0


def uid(kind, n):
    """Deterministic uuids (the same formula in SQL): kind 1 users, 2 polls, 3 options."""
    return BenchIds(TAG, 4).uid(kind, n)


def sql_uid(kind, n):
    return BenchIds(TAG, 4).sql(kind, n)


def polls_for(pairs):
    return math.ceil(pairs / USERS) + 1


def setup(seconds=10):
    global ANCHOR_POLLS, CEILING_POLLS, PHASE_POLLS, PGBENCH_POLLS, GATEWAY_POLLS
    ANCHOR_POLLS = polls_for(MAX_PGBENCH_TPS * seconds)
    CEILING_POLLS = polls_for(MAX_CEILING_BALLOTS * seconds)
    PHASE_POLLS = polls_for(MAX_GATEWAY_VOTES * max(seconds, WARMUP_SECONDS))
    PGBENCH_POLLS = ANCHOR_POLLS + CEILING_POLLS
    GATEWAY_POLLS = 3 * PHASE_POLLS
    polls = PGBENCH_POLLS + GATEWAY_POLLS
    create_polls(BenchIds(TAG, 4), USERS, polls, "bench", tallies_from=PGBENCH_POLLS + 1,
                 then_sql="ANALYZE ballots; ANALYZE ballot_choices;")


# pgbench: every client numbers its transactions (:n, from -D n=0), so transaction
# (client c, number n) takes pairs offset + [(c + clients * n) * batch, ... + batch): no
# pair is used twice while the count stays under USERS x polls (a second run over the
# same polls starts at an offset past the first run's pairs). Pair i is user i % USERS + 1 in
# poll first + (i / USERS) % polls, voting for the poll's first option.
PGBENCH_COUNTER = """\\set i :offset + (:client_id + :clients * :n) * :batch
\\set n :n + 1
"""


def pair_user(i):
    return sql_uid(1, f"({i}) % {USERS} + 1")


def pair_poll(i, first, polls):
    return sql_uid(2, f"{first} + (({i}) / {USERS}) % {polls}")


def pair_option(i, first, polls):
    return sql_uid(3, f"({first} + (({i}) / {USERS}) % {polls}) * 10 + 1")


# The statement of voting/service.cpp (kVote) a server without group commit sends.
ONE_PER_TRANSACTION = """WITH poll AS (
  SELECT id, max_choices,
         closed_at IS NULL AND (opens_at IS NULL OR opens_at <= now())
                           AND (closes_at IS NULL OR closes_at > now()) AS open
    FROM polls WHERE id = {poll}),
b AS (
  INSERT INTO ballots (poll_id, user_id, option_ids)
  SELECT id, {user}, ARRAY[{option}] FROM poll WHERE open AND 1 <= max_choices
  ON CONFLICT (poll_id, user_id) DO NOTHING
  RETURNING poll_id),
c AS (
  INSERT INTO ballot_choices (poll_id, user_id, option_id)
  SELECT {poll}, {user}, {option} FROM b)
SELECT (SELECT count(*) FROM poll), coalesce((SELECT open FROM poll), false), true,
       (SELECT count(*) FROM b),
       (SELECT option_ids::text FROM ballots WHERE poll_id = {poll} AND user_id = {user});
"""


def one_per_transaction_script(first):
    i = ":i"
    return PGBENCH_COUNTER + ONE_PER_TRANSACTION.format(poll=pair_poll(i, first, ANCHOR_POLLS), user=pair_user(i),
                                                        option=pair_option(i, first, ANCHOR_POLLS))


def cast_batch_sql():
    """kCastBatch exactly as the server sends it (src/voting/ballot_box.cpp)."""
    with open(os.path.join(ROOT, "src/voting/ballot_box.cpp"), encoding="utf-8") as f:
        source = f.read()
    return re.search(r'kCastBatch = R"\((.*?)\)";', source, re.S).group(1).strip()


def ceiling_script(first):
    """kCastBatch with its three array parameters made of the batch's generated pairs
    (the server sends them as array literals; here they are built in the statement)."""
    sql = cast_batch_sql()
    params = "unnest($1::uuid[], $2::uuid[], $3::text[])"
    assert sql.count(params) == 1, f"kCastBatch no longer takes {params}: update bench/votes.py"
    k = ":i + k"
    arrays = ", ".join(f"ARRAY(SELECT {e} FROM generate_series(0, :batch - 1) k ORDER BY k)" for e in (
        pair_poll(k, first, CEILING_POLLS), pair_user(k), pair_option(k, first, CEILING_POLLS) + "::text"))
    return PGBENCH_COUNTER + sql.replace(params, f"unnest({arrays})") + ";\n"


def pgbench(script, seconds, clients, batch=1, settings="", offset=0, rate=None):
    """tps, average latency (ms) and transactions of a pgbench run; with `rate`
    (transactions/s, as paced clients send them) also the latency percentiles (ms) from
    its per-transaction log, each from the transaction's actual start (its schedule lag
    left out, as wrk's latency starts when the request is sent)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f, tempfile.TemporaryDirectory() as logs:
        f.write(script)
        f.flush()
        paced = ["-R", str(rate), "-l", "--log-prefix", os.path.join(logs, "tx")] if rate else []
        out = subprocess.run(["pgbench", "-n", "-M", "prepared", "-f", f.name, "-c", str(clients), "-j",
                              str(min(2, clients)), "-T", str(seconds), "-D", f"clients={clients}", "-D", "n=0",
                              "-D", f"batch={batch}", "-D", f"offset={offset}", *paced,
                              os.environ["NIMBUS_TEST_DATABASE_URL"]],
                             check=True, capture_output=True, text=True,
                             env={**os.environ, "PGOPTIONS": settings}).stdout
        latencies = []
        for name in os.listdir(logs):  # client_id tx_no time script_no epoch us schedule_lag
            with open(os.path.join(logs, name), encoding="ascii") as log:
                latencies += [(int(v[2]) - int(v[6])) / 1000 for v in (line.split() for line in log) if len(v) >= 7]
    tps = float(re.search(r"^tps = ([\d.]+)", out, re.M).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    transactions = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    if rate:
        latencies.sort()
        pct = {q: latencies[min(len(latencies) - 1, int(len(latencies) * float(q) / 100))] for q in ("50", "99")}
        return tps, latency, transactions, pct
    return tps, latency, transactions


# wrk: request number i of the run (threads interleave: offset + counter * stride) is
# pair i, user i % users in poll base + i / users. Only 2xx count as votes (response());
# after `seconds` each connection sends nothing more (delay()) and its vote in flight is
# answered before wrk stops `drain` seconds later, so every vote sent is answered.
WRK_SCRIPT = """-- generated by bench/votes.py
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_usec; }} bench_timeval;
int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local tokens = {{{tokens}}}
local users, polls, base = {users}, {polls}, {base}
local counter, stride, stop_at = 0, {threads}, 0
local statuses = {{}}
sent, ok, responses, wrapped, other = 0, 0, 0, 0, ""
local threads = {{}}
function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end
function init(args)
  stop_at = now_ms() + {seconds} * 1000
  -- wrk 4.1 calls the first thread's request() once to check it, before connecting
  checking = offset == 0
end
function request()
  if checking then
    checking = false
    return wrk.format("POST", "/v1/polls/check/votes")
  end
  local i = offset + counter * stride
  counter = counter + 1
  if i >= users * polls then
    wrapped = wrapped + 1  -- a pair used twice: the run is reported invalid
  end
  sent = sent + 1
  local u = i % users
  local p = math.floor(i / users) % polls + base
  local poll = string.format("00000000-{tag}-4002-8000-%012d", p)
  local option = string.format("00000000-{tag}-4003-8000-%012d", p * 10 + 1)
  return wrk.format("POST", "/v1/polls/" .. poll .. "/votes",
    {{["Authorization"] = "Bearer " .. tokens[u + 1], ["Content-Type"] = "application/json"}},
    '{{"option_ids":["' .. option .. '"]}}')
end
function delay()
  if now_ms() >= stop_at then
    return ({seconds} + {drain} + 60) * 1000  -- the window is over: send nothing more
  end
  -- uniform in [0, 2 x think]: voters out of step, as people are
  return math.random(0, 2 * {think_ms})
end
function response(status, headers, body)
  responses = responses + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    statuses[status] = (statuses[status] or 0) + 1
    local parts = {{}}
    for s, n in pairs(statuses) do table.insert(parts, s .. "x" .. n) end
    other = table.concat(parts, " ")
  end
end
function done(summary, latency, requests)
  local totals = {{sent = 0, ok = 0, responses = 0, wrapped = 0}}
  for _, t in ipairs(threads) do
    for k, _ in pairs(totals) do totals[k] = totals[k] + t:get(k) end
    if t:get("other") ~= "" then io.write("non-2xx " .. t:get("other") .. "\\n") end
  end
  for k, v in pairs(totals) do io.write(string.format("count %s %d\\n", k, v)) end
  local e = summary.errors
  io.write(string.format("socket connect %d read %d write %d timeout %d\\n", e.connect, e.read, e.write, e.timeout))
  for _, p in ipairs({{50, 90, 99, 99.9}}) do
    io.write(string.format("p%s %.2f ms\\n", p, latency:percentile(p) / 1000))
  end
end
"""


def mint_tokens():
    return access_tokens([uid(1, n) for n in range(1, USERS + 1)])


def run_wrk(script, connections, seconds, url=None):
    """wrk (2 threads) with a Lua `script` against the gateway (or `url`): its output
    and the `count NAME N` lines the script's done() writes."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(script)
        f.flush()
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", f.name,
                              url or os.environ["NIMBUS_TEST_GATEWAY"]], check=True, capture_output=True, text=True).stdout
    return out, {m.group(1): int(m.group(2)) for m in re.finditer(r"^count (\w+) (\d+)", out, re.M)}


def wrk(tokens, seconds, voters, think_ms, base):
    """Votes for `seconds` into polls base.. (GATEWAY_POLLS // 3 of them). Returns 2xx
    votes/s over the window, latency percentiles, errors (anything but a clean run) and
    the counts: sent, ok (2xx), responses, wrapped."""
    script = WRK_SCRIPT.format(tokens=",".join(f'"{t}"' for t in tokens), users=USERS, polls=GATEWAY_POLLS // 3,
                               base=base, threads=2, tag=TAG, think_ms=think_ms, seconds=seconds,
                               drain=DRAIN_SECONDS)
    out, counts = run_wrk(script, voters, seconds + DRAIN_SECONDS)
    pct = {m.group(1): float(m.group(2)) for m in re.finditer(r"^p([\d.]+) ([\d.]+) ms", out, re.M)}
    errors = re.findall(r"^(non-2xx .*)", out, re.M)
    socket = re.search(r"^socket (.*)", out, re.M).group(1)
    if any(int(n) for n in re.findall(r"\d+", socket)):
        errors.append(f"socket errors: {socket}")
    if counts["sent"] != counts["responses"]:
        errors.append(f"UNANSWERED: {counts['sent'] - counts['responses']} votes sent got no answer")
    if counts["wrapped"]:
        errors.append(f"WRAPPED: {counts['wrapped']} votes reused a (user, poll) pair — run invalid")
    return counts["ok"] / seconds, pct, errors, counts


def count_ballots(first_poll, polls):
    return int(psql(f"SELECT count(*) FROM ballots WHERE poll_id IN (SELECT {sql_uid(2, 'n')} "
                    f"FROM generate_series({first_poll}, {first_poll + polls - 1}) n)"))


def check_stored(label, stored, expected):
    verdict = "equal" if stored == expected else f"MISMATCH  <<<<<<<<<< {stored - expected:+d}"
    print(f"   {label}: ballots stored {stored}, expected {expected}: {verdict}")


# nimbus_vote_batch_size of every API instance, from its ops listener.
def ops_ports():
    base = int(os.environ["NIMBUS_STACK_OPS_BASE_PORT"])
    return [base + i for i in range(1, int(os.environ["NIMBUS_STACK_APIS"]) + 1)]


def batch_histogram(name="nimbus_vote_batch_size"):
    """{bound: cumulative count} (bound inf for +Inf) and the sum of a histogram of the
    API instances, over all of them; None where an instance has no such histogram (a
    binary older than the metric)."""
    buckets, total = {}, 0.0
    for port in ops_ports():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        found = re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} (\d+)', text, re.M)
        if not found:
            return None
        for le, n in found:
            bound = math.inf if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0) + int(n)
        total += float(re.search(rf"^{name}_sum (\S+)", text, re.M).group(1))
    return buckets, total


# Where a vote's time in the ballot box goes (src/voting/ballot_box.hpp).
STAGES = ("queue", "write", "count", "box")


def stage_histograms():
    return {stage: batch_histogram(f"nimbus_vote_{stage}_seconds") for stage in STAGES}


def stage_percentiles(before, after):
    """{stage: {"50": ms, "99": ms}} between two scrapes: the upper bound of the bucket
    each percentile falls in (the histograms' resolution: powers of two from 0.25 ms)."""
    out = {}
    for stage in STAGES:
        if before.get(stage) is None or after.get(stage) is None:
            continue
        bounds = sorted(after[stage][0])
        cumulative = [after[stage][0][b] - before[stage][0][b] for b in bounds]
        if not cumulative or cumulative[-1] == 0:
            continue
        out[stage] = {q: 1000 * next(b for b, c in zip(bounds, cumulative) if c >= cumulative[-1] * float(q) / 100)
                      for q in ("50", "99")}
    return out


def batch_delta(before, after):
    """Per-bucket (not cumulative) batch counts between two scrapes, and the mean size."""
    bounds = sorted(after[0])
    cumulative = [after[0][b] - before[0][b] for b in bounds]
    counts = [c - (cumulative[k - 1] if k else 0) for k, c in enumerate(cumulative)]
    batches = cumulative[-1]
    return bounds, counts, (after[1] - before[1]) / batches if batches else 0.0


def print_batches(bounds, counts, mean):
    total = sum(counts)
    print(f"   batch sizes formed by the API instances during the saturated run: {total} batches, mean {mean:.1f}")
    low = 1
    for bound, n in zip(bounds, counts):
        label = "+Inf" if bound == math.inf else (f"{low:g}" if low == bound else f"{low:g}-{bound:g}")
        if n:
            print(f"      {label:>8s}  {n:7d}  {100 * n / total:5.1f} %  {'#' * round(40 * n / total)}")
        low = bound + 1


def api_setting(name, default):
    """A setting of the running API instances, from the first one's environment (the
    default when it is not set there). Waits while supervisord still reports the group
    starting (no pid yet): right after a restart — bench/memo.sh's — the instances
    answer before supervisord calls them running, and reading no pid as "the default"
    once labelled NIMBUS_LOCAL_MEMO=0 runs as memories on (bench/results/mislabeled)."""
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(["supervisorctl", "-c", os.environ["NIMBUS_STACK_SUPERVISOR_CONF"], "status", "api:*"],
                             capture_output=True, text=True).stdout
        lines = [line for line in out.splitlines() if line.strip()]
        pids = re.findall(r"pid (\d+)", out)
        if lines and len(pids) == len(lines):
            try:
                return int(process_env(pids[0]).get(name.encode(), str(default).encode()))
            except OSError:
                pass  # it ended just now: ask again
        if time.monotonic() > deadline:
            sys.exit(f"the API instances are not all running, cannot read {name}:\n{out}")
        time.sleep(0.5)


# Reads: round-robin over the polls the vote runs filled and over every token.
READ_SCRIPT = """-- generated by bench/votes.py
local tokens = {{{tokens}}}
local polls = {{{polls}}}
local counter = 0
ok, responses = 0, 0
local threads = {{}}
function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end
function init(args)
  counter = offset * 7919  -- threads start at different tokens and polls
end
function request()
  counter = counter + 1
  local path = "{path}"
  local headers = {{}}
  if #tokens > 0 then headers["Authorization"] = "Bearer " .. tokens[counter % #tokens + 1] end
  if #polls > 0 then path = "/v1/polls/" .. polls[counter % #polls + 1] .. "/results" end
  return wrk.format("GET", path, headers)
end
function response(status, headers, body)
  responses = responses + 1
  if status >= 200 and status < 300 then ok = ok + 1 end
end
function done(summary, latency, requests)
  local n, good = 0, 0
  for _, t in ipairs(threads) do n = n + t:get("responses"); good = good + t:get("ok") end
  io.write(string.format("count ok %d\\ncount responses %d\\n", good, n))
  io.write(string.format("p99 %.2f ms\\n", latency:percentile(99) / 1000))
end
"""


def reads(label, seconds, connections, tokens=(), polls=(), path="/healthz", url=None):
    script = READ_SCRIPT.format(tokens=",".join(f'"{t}"' for t in tokens), polls=",".join(f'"{p}"' for p in polls),
                                path=path)
    before, opens = stack_cpu(), tcp_active_opens()
    out, counts = run_wrk(script, connections, seconds, url)
    cpu = cpu_per_request(counts["responses"], before, stack_cpu())
    opened = new_connections(opens, counts["responses"])
    p99 = float(re.search(r"^p99 ([\d.]+) ms", out, re.M).group(1))
    rate = counts["ok"] / seconds
    bad = counts["responses"] - counts["ok"]
    print(f"{label:34s} {connections} connections: {rate:8.0f} 2xx/s  p99 {p99:6.2f} ms  "
          f"non-2xx: {bad if bad else 'none'}")
    print_cpu("request", cpu)
    print(f"   new TCP connections per 1,000 requests: {opened:.1f}")
    return rate, cpu, opened


def new_connections(before, requests):
    """TCP connections opened since `before` per 1,000 requests: wrk's own (once per
    connection) and the gateway's to the instances (when its pool of idle upstream
    connections is too small for what it has in flight)."""
    return 1000 * (tcp_active_opens() - before) / max(1, requests)


def print_cpu(what, cpu):
    print(f"   CPU per {what}: " + ", ".join(f"{part} {us:.0f} µs" for part, us in cpu.items() if us >= 0.5))


def main():
    load_env()
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    voters = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    setup(seconds)
    anchor_first, ceiling_first = 1, ANCHOR_POLLS + 1
    warmup_base, saturated_base = PGBENCH_POLLS + 1, PGBENCH_POLLS + 1 + PHASE_POLLS
    paced_base = saturated_base + PHASE_POLLS
    print(f"== {USERS} users; polls: {ANCHOR_POLLS} one-per-transaction, {CEILING_POLLS} ceiling, "
          f"{PHASE_POLLS} per gateway run; {seconds} s each")

    result = {"seconds": seconds, "voters": voters, "think_ms": THINK_MS,
              "local_memo": api_setting("NIMBUS_LOCAL_MEMO", 1) != 0,
              "flushers": api_setting("NIMBUS_VOTE_FLUSHERS", 1), "apis": len(ops_ports())}
    cpu_before = stack_cpu()
    tps, avg, transactions = pgbench(one_per_transaction_script(anchor_first), seconds, 16)
    cpu = cpu_per_request(transactions, cpu_before, stack_cpu())
    result["pgbench_one_per_txn"] = tps
    result["pgbench_cpu_us_per_txn"] = cpu
    print(f"pgbench, one ballot per transaction, 16 clients:  {tps:10.0f} votes/s  (avg {avg:.2f} ms)")
    print_cpu("transaction (pgbench's own client not counted)", cpu)
    check_stored("one per transaction", count_ballots(anchor_first, ANCHOR_POLLS), transactions)
    assert transactions < USERS * ANCHOR_POLLS, "pgbench wrapped: raise MAX_PGBENCH_TPS"

    # Saturation: every voter sends its next vote as soon as the last one is answered.
    # Paced: every voter waits THINK_MS between votes (a crowd of people, not a loop).
    # Tokens are minted once, as a client keeps its access token for its lifetime; a
    # short warm-up (not reported) lets every instance see each token once.
    tokens = mint_tokens()
    sent = {warmup_base: wrk(tokens, WARMUP_SECONDS, voters, 0, warmup_base)[3]["sent"]}
    before = batch_histogram()
    saturated = None
    for label, think, base in (("saturated", 0, saturated_base), (f"paced {THINK_MS} ms", THINK_MS, paced_base)):
        cpu_before, opens, stages_before = stack_cpu(), tcp_active_opens(), stage_histograms()
        rate, pct, errors, counts = wrk(tokens, seconds, voters, think, base)
        cpu = cpu_per_request(counts["ok"], cpu_before, stack_cpu())
        opened = new_connections(opens, counts["sent"])
        stages = stage_percentiles(stages_before, stage_histograms())
        sent[base] = counts["sent"]
        result["saturated" if saturated is None else "paced"] = {"votes_per_s": rate, "p50_ms": pct.get("50"),
                                                                  "p99_ms": pct.get("99"), "errors": errors,
                                                                  "cpu_us_per_vote": cpu,
                                                                  "new_connections_per_1k": opened,
                                                                  "ballot_box_ms": stages}
        if saturated is None:
            saturated = rate
            after = batch_histogram()
        print(f"gateway, {voters} voters, {label:14s} {rate:8.0f} votes/s (2xx)  p50 {pct.get('50', 0):6.2f} ms  "
              f"p90 {pct.get('90', 0):6.2f} ms  p99 {pct.get('99', 0):6.2f} ms  p99.9 {pct.get('99.9', 0):6.2f} ms  "
              f"errors: {', '.join(errors) if errors else 'none'}")
        print_cpu("vote", cpu)
        print(f"   new TCP connections per 1,000 votes: {opened:.1f}")
        if stages:
            print("   in the ballot box (p50 / p99, bucket bounds): " + ", ".join(
                f"{stage} ≤ {p['50']:g} / ≤ {p['99']:g} ms" for stage, p in stages.items()))
        time.sleep(0.5)  # a vote answered by a 5xx may still commit: count what it left
        check_stored(f"{label}, acknowledged 2xx votes (sent {counts['sent']})", count_ballots(base, PHASE_POLLS),
                     counts["ok"])
    # The paced run's anchor: PostgreSQL alone, one ballot per transaction, at the rate
    # the paced voters reached — the latency of the database under the same load, with
    # no HTTP, gateway, token or Redis in front of it.
    rate = round(result["paced"]["votes_per_s"])
    _, _, paced_tx, paced_pct = pgbench(one_per_transaction_script(anchor_first), seconds, 16, offset=transactions,
                                        rate=rate)
    print(f"pgbench, one ballot per transaction at the paced rate ({rate}/s), 16 clients: "
          f"p50 {paced_pct['50']:6.2f} ms  p99 {paced_pct['99']:6.2f} ms")
    check_stored("one per transaction, paced", count_ballots(anchor_first, ANCHOR_POLLS), transactions + paced_tx)
    assert transactions + paced_tx < USERS * ANCHOR_POLLS, "pgbench wrapped: raise MAX_PGBENCH_TPS"
    result["pgbench_paced"] = {"rate": rate, "p50_ms": paced_pct["50"], "p99_ms": paced_pct["99"]}
    print(f"ratio saturated / one ballot per transaction: {saturated / tps:.2f}  (goal >= 1.0)")
    result["ratio_saturated_one_per_txn"] = saturated / tps

    # The ceiling: the server's own statement at the batch size it formed, as many
    # batches in flight as the instances write at once, on the server's plan setting.
    if before is None or after is None:
        print("ceiling: SKIPPED — the API instances expose no nimbus_vote_batch_size (rebuild and restart them)")
    else:
        bounds, counts, mean = batch_delta(before, after)
        print_batches(bounds, counts, mean)
        result["batch_mean"] = mean
        result["batch_share_of_one"] = counts[0] / max(1, sum(counts))
        batch = max(1, round(mean))
        clients = api_setting("NIMBUS_VOTE_FLUSHERS", 1) * len(ops_ports())
        ctps, cavg, ctx = pgbench(ceiling_script(ceiling_first), seconds, clients, batch,
                                  "-c plan_cache_mode=force_generic_plan")
        ceiling = ctps * batch
        print(f"pgbench ceiling, the server's batch statement x {batch}, {clients} clients: {ceiling:10.0f} ballots/s "
              f"({ctps:.0f} statements/s, avg {cavg:.2f} ms)")
        check_stored("ceiling", count_ballots(ceiling_first, CEILING_POLLS), ctx * batch)
        assert ctx * batch < USERS * CEILING_POLLS, "pgbench wrapped: raise MAX_CEILING_BALLOTS"
        print(f"ratio saturated / ceiling: {saturated / ceiling:.2f}")
        result["ceiling"] = ceiling
        result["ratio_saturated_ceiling"] = saturated / ceiling

    # Reads under load: the results of every poll the vote runs filled, round-robin,
    # each request with the next of the minted tokens (token check, poll facts, Redis
    # tally), next to /healthz through the same gateway in the same run (the cheapest
    # request there is).
    filled = [uid(2, base + k) for base, n in sent.items() for k in range(min(PHASE_POLLS, math.ceil(n / USERS)))]
    healthz, healthz_cpu, healthz_opens = reads("GET /healthz", seconds, voters)
    results, results_cpu, results_opens = reads(f"GET results ({len(filled)} polls, {len(tokens)} tokens)", seconds,
                                                voters, tokens, filled)
    print(f"ratio results / healthz: {results / healthz:.2f}")
    result.update(healthz=healthz, results=results, ratio_results_healthz=results / healthz,
                  healthz_cpu_us=healthz_cpu, results_cpu_us=results_cpu,
                  healthz_new_connections_per_1k=healthz_opens, results_new_connections_per_1k=results_opens)

    # Where a read's cost goes: the same tokens checked on the instance and answered at
    # once (/debug/token: no Redis round trip, no tally, no rendering), through the same
    # nginx and the same token hashing, on the debug routes of the admin listener (the
    # test profile's; skipped where they are off).
    admin = os.environ.get("NIMBUS_TEST_GATEWAY_ADMIN")
    if admin and debug_token_route(admin, tokens[0]):
        token_only, token_cpu, _ = reads("GET /debug/token (token check only)", seconds, voters, tokens,
                                         path="/debug/token", url=admin)
        print(f"ratio token check only / healthz: {token_only / healthz:.2f}")
        result.update(token_only=token_only, ratio_token_only_healthz=token_only / healthz, token_only_cpu_us=token_cpu)
    else:
        print("GET /debug/token: SKIPPED (no debug routes: NIMBUS_DEBUG_ROUTES=1, the test profile, has them)")
    save_result("votes", result)


def debug_token_route(admin, token):
    request = urllib.request.Request(f"{admin}/debug/token", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
