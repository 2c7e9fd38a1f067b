"""Every request of a run, kept as a sample (when, endpoint, status, milliseconds),
summarised per endpoint and per second, written as JSON; and the progress line a long
run prints on the terminal."""
import collections
import json
import math
import os
import sys
import time

import gevent

import stackenv

OK = range(200, 400)


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def latency_summary(ms):
    ms = sorted(ms)
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "mean": sum(ms) / len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90),
            "p99": percentile(ms, 99), "p999": percentile(ms, 99.9), "max": ms[-1]}


class Recorder:
    """Samples of one run. `expected` statuses per endpoint count as successes (a 404 to
    a poll deleted meanwhile is an answer, not an error); everything else is an error."""

    def __init__(self, name):
        self.name = name
        self.t0 = time.time()
        self.m0 = time.monotonic()
        self.t, self.endpoint, self.status, self.ms = [], [], [], []
        self.phases = []  # (start, end, label, info)
        self.events = []  # (t, label): faults and other marks on the timeline
        self.notes = {}
        self.expected = collections.defaultdict(set)

    def now(self):
        return time.monotonic() - self.m0

    def add(self, endpoint, status, ms, at=None):
        """status 0: no HTTP answer (connection refused, reset, timed out)."""
        self.t.append(round(self.now() if at is None else at, 4))
        self.endpoint.append(endpoint)
        self.status.append(status)
        self.ms.append(round(ms, 3))

    def mark(self, label):
        self.events.append((round(self.now(), 3), label))

    def phase(self, label, start, end, **info):
        self.phases.append({"label": label, "start": round(start, 3), "end": round(end, 3), **info})

    def is_error(self, endpoint, status):
        return not (status in OK or status in self.expected[endpoint])

    # ------------------------------------------------------------------ summaries

    def window(self, start=0.0, end=math.inf):
        return [i for i, t in enumerate(self.t) if start <= t < end]

    def summary(self, start=0.0, end=math.inf):
        idx = self.window(start, end)
        duration = max(1e-9, (min(end, self.now()) - start)) if idx else 0
        per = collections.defaultdict(list)
        for i in idx:
            per[self.endpoint[i]].append(i)
        endpoints = {}
        for ep, ids in sorted(per.items()):
            statuses = collections.Counter(self.status[i] for i in ids)
            ok_ms = [self.ms[i] for i in ids if not self.is_error(ep, self.status[i])]
            errors = sum(n for s, n in statuses.items() if self.is_error(ep, s))
            endpoints[ep] = {"count": len(ids), "rps": len(ids) / duration if duration else 0, "errors": errors,
                             "error_rate": errors / len(ids), "statuses": {str(k): v for k, v in statuses.items()},
                             "latency_ms": latency_summary(ok_ms)}
        all_ok = [self.ms[i] for i in idx if not self.is_error(self.endpoint[i], self.status[i])]
        errors = sum(1 for i in idx if self.is_error(self.endpoint[i], self.status[i]))
        return {"requests": len(idx), "duration_s": duration, "rps": len(idx) / duration if duration else 0,
                "errors": errors, "error_rate": errors / len(idx) if idx else 0.0,
                "statuses": {str(k): v for k, v in collections.Counter(self.status[i] for i in idx).items()},
                "latency_ms": latency_summary(all_ok), "endpoints": endpoints}

    def timeline(self, bucket=1.0):
        """Per second: requests, errors, p50/p90/p99 of the answers that succeeded."""
        if not self.t:
            return []
        n = int(max(self.t) // bucket) + 1
        groups = [[] for _ in range(n)]
        errs = [collections.Counter() for _ in range(n)]
        for i, t in enumerate(self.t):
            b = int(t // bucket)
            if self.is_error(self.endpoint[i], self.status[i]):
                errs[b][str(self.status[i])] += 1
            else:
                groups[b].append(self.ms[i])
        out = []
        for b in range(n):
            ms = sorted(groups[b])
            out.append({"t": b * bucket, "requests": len(ms) + sum(errs[b].values()), "errors": dict(errs[b]),
                        "p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99)})
        return out

    def disturbance(self, since=0.0):
        """Client-visible errors after `since`: first and last error, by status."""
        idx = [i for i in self.window(since) if self.is_error(self.endpoint[i], self.status[i])]
        if not idx:
            return {"errors": 0, "by_status": {}, "first_s": None, "last_s": None, "duration_s": 0.0}
        first, last = self.t[idx[0]], self.t[idx[-1]]
        return {"errors": len(idx), "by_status": {str(k): v for k, v in collections.Counter(
            self.status[i] for i in idx).items()}, "first_s": round(first - since, 3), "last_s": round(last - since, 3),
                "duration_s": round(last - first, 3)}

    # ------------------------------------------------------------------ output

    def to_json(self, **extra):
        return {"name": self.name, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.t0)),
                "duration_s": round(self.now(), 3), "machine": stackenv.machine_load(), "phases": self.phases,
                "events": self.events, "notes": self.notes, "summary": self.summary(),
                "timeline": self.timeline(),
                "expected": {k: sorted(v) for k, v in self.expected.items()},
                "samples": {"t": self.t, "endpoint": self.endpoint, "status": self.status, "ms": self.ms}, **extra}

    def save(self, folder, **extra):
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{self.name}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(self.to_json(**extra), f, separators=(",", ":"))
        os.replace(path + ".tmp", path)
        return path


class Progress:
    """A line on stderr every few seconds: phase, elapsed/remaining, rate, errors."""

    def __init__(self, recorder, total_s=None, every=5.0):
        self.rec, self.total_s, self.every = recorder, total_s, every
        self.label = "starting"
        self.extra = lambda: ""
        self.greenlet = None
        self.cpu = stackenv.cpu_times()

    def __enter__(self):
        self.greenlet = gevent.spawn(self._run)
        return self

    def __exit__(self, *exc):
        if self.greenlet:
            self.greenlet.kill()

    def _run(self):
        last_n, last_t = 0, self.rec.now()
        while True:
            gevent.sleep(self.every)
            n, now = len(self.rec.t), self.rec.now()
            recent = range(last_n, n)
            errors = sum(1 for i in recent if self.rec.is_error(self.rec.endpoint[i], self.rec.status[i]))
            rate = (n - last_n) / max(1e-9, now - last_t)
            total, idle = stackenv.cpu_times()
            busy = 100 * (1 - (idle - self.cpu[1]) / max(1, total - self.cpu[0]))
            self.cpu = (total, idle)
            remaining = f", ~{max(0, self.total_s - now):.0f}s left" if self.total_s else ""
            print(f"[{self.rec.name}] {self.label}: {now:.0f}s elapsed{remaining}; {rate:.0f} req/s, "
                  f"{errors} errors in the last {now - last_t:.0f}s; machine CPU {busy:.0f}% busy"
                  f"{self.extra()}", file=sys.stderr, flush=True)
            last_n, last_t = n, now
