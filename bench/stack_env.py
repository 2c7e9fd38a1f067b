"""What the benchmarks share: the running stack's addresses, psql, and access tokens
minted with the stack's own signing key (as sign-in would issue them)."""
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import time
import uuid

import jwt


def load_env():
    path = os.environ.get("NIMBUS_STACK_ENV") or os.path.join(os.path.dirname(__file__), "..", ".run/local/stack.env")
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            os.environ.setdefault(key, value)


def supervised_program(name, conf=None):
    """(command, environment) of a supervisord program of the stack, for an instance of
    the benchmark's own: without the gateway's unix sockets (binding one would replace
    the stack instance's socket, and the gateway would send that slot's traffic to it)."""
    with open(conf or os.environ["NIMBUS_STACK_SUPERVISOR_CONF"], encoding="utf-8") as f:
        text = f.read()
    body = re.search(rf"^\[program:{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
    command = re.search(r"^command=(.*)$", body, re.M).group(1).strip()
    env_line = re.search(r"^environment=(.*)$", body, re.M).group(1)
    env = {k: v.replace('\\"', '"') for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', env_line)}
    env.pop("NIMBUS_HTTP_SOCKET", None)
    env.pop("NIMBUS_OPS_SOCKET", None)
    return command, env


def psql(sql):
    return subprocess.run(["psql", "-qtA", "-v", "ON_ERROR_STOP=1", os.environ["NIMBUS_TEST_DATABASE_URL"], "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def access_tokens(user_ids, lifetime=900):
    with open(os.environ["NIMBUS_TEST_JWT_KEY"], "rb") as f:
        key = f.read()
    now = int(time.time())
    return [jwt.encode({"iss": os.environ["NIMBUS_TEST_AUTH_ISSUER"], "aud": "nimbus-api", "sub": user,
                        "sid": str(uuid.uuid4()), "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime},
                       key, algorithm="EdDSA", headers={"kid": "k1", "typ": "JWT"}) for user in user_ids]


class BenchIds:
    """Deterministic ids of one benchmark run, the same formula in Python and in SQL: kind
    1 users, 2 polls, 3 options (poll n's options are n * 10 + 1 and n * 10 + 2). `tag`
    makes a run's ids fresh; `version` (the uuid's version nibble) keeps the ids of
    different benchmarks apart."""

    def __init__(self, tag, version):
        self.tag, self.version = tag, version

    def uid(self, kind, n):
        return f"00000000-{self.tag}-{self.version}{kind:03x}-8000-{n:012d}"

    def sql(self, kind, n):
        """The same uuid as an SQL expression of `n` (an SQL expression itself)."""
        return f"('00000000-{self.tag}-{self.version}{kind:03x}-8000-' || lpad(({n})::text, 12, '0'))::uuid"


def create_polls(ids, users, polls, label, tallies_from=1, then_sql=""):
    """`users` users and `polls` single-choice polls of two options, owned by user 1, with
    psql; and what POST /v1/polls does besides the rows — an empty, complete tally in
    Redis — for polls `tallies_from`.. (the ones voted on through the API)."""
    psql(f"""
INSERT INTO users (id, email) SELECT {ids.sql(1, 'n')}, '{label}-{ids.tag}-' || n || '@example.com'
  FROM generate_series(1, {users}) n;
INSERT INTO polls (id, owner_id, title, max_choices, results_visibility)
  SELECT {ids.sql(2, 'n')}, {ids.sql(1, 1)}, '{label} ' || n, 1, 'always' FROM generate_series(1, {polls}) n;
INSERT INTO poll_options (poll_id, id, position, text)
  SELECT {ids.sql(2, 'n')}, {ids.sql(3, 'n * 10 + k')}, k, 'option ' || k
    FROM generate_series(1, {polls}) n, generate_series(1, 2) k;
{then_sql}""")
    commands = "".join(f"HSET poll:{{{ids.uid(2, n)}}}:tally _total 0 _ready 1\n"
                       for n in range(tallies_from, polls + 1))
    subprocess.run(["redis-cli", "-u", os.environ["NIMBUS_TEST_REDIS_URL"]], input=commands, check=True,
                   capture_output=True, text=True)


def process_env(pid):
    """The environment a running process was started with (/proc), as bytes → bytes."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)


def raise_nofile(needed):
    """Raises this process's RLIMIT_NOFILE to at least `needed` (the hard limit too, which
    root may); exits saying so when it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        except (ValueError, OSError):
            sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {needed}: raise it (ulimit -Hn) first")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def all_pids_cpu():
    """{pid: (ppid, CPU seconds)} of every process on the machine, each with what its
    children that ended had spent (a pgbench run's PostgreSQL backends end with it)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = sum(int(fields[k]) for k in (11, 12, 13, 14))  # utime, stime, cutime, cstime
        out[int(entry)] = (int(fields[1]), ticks / os.sysconf("SC_CLK_TCK"))
    return out


def stack_cpu():
    """CPU seconds so far of each of the stack's programs, its child processes included
    (PostgreSQL backends, Swift's workers), by supervisor program name."""
    conf = os.environ["NIMBUS_STACK_SUPERVISOR_CONF"]
    out = subprocess.run(["supervisorctl", "-c", conf, "status"], capture_output=True, text=True).stdout
    roots = {}
    for line in out.splitlines():
        parts = line.split()
        if "pid" in parts:
            roots[int(parts[parts.index("pid") + 1].rstrip(","))] = parts[0].split(":")[-1]
    procs = all_pids_cpu()
    totals = {}
    for pid, (_, cpu) in procs.items():
        p, seen = pid, 0
        while p not in roots and p in procs and seen < 64:
            p, seen = procs[p][0], seen + 1
        if p in roots:
            totals[roots[p]] = totals.get(roots[p], 0.0) + cpu
    return totals


def cpu_per_request(n, before, after):
    """CPU µs per request (n of them) between two stack_cpu() readings, by part of the
    stack: the gateway, the API instances together, Redis, PostgreSQL."""
    parts = {"gateway": ("nginx",), "api": ("api-",), "redis": ("redis",), "postgres": ("postgres",)}
    out = {}
    for part, prefixes in parts.items():
        spent = sum(after[k] - before.get(k, 0.0) for k in after if k.startswith(prefixes))
        out[part] = 1e6 * spent / max(1, n)
    return out


def tcp_active_opens():
    """TCP connections this machine has opened so far (all processes: read it around a
    phase in which only the gateway opens connections to the instances)."""
    with open("/proc/net/snmp", encoding="ascii") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def save_result(kind, data):
    """Writes one run's numbers to bench/results/<kind>-<UTC time>.json (the README's
    tables are generated from these files by bench/summary.py); returns the path."""
    os.makedirs(os.environ.get("NIMBUS_BENCH_RESULTS", RESULTS), exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    data = {"kind": kind, "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "cores": os.cpu_count(), **data}
    path = os.path.join(os.environ.get("NIMBUS_BENCH_RESULTS", RESULTS), f"{kind}-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"== results: {os.path.relpath(path)}")
    return path
