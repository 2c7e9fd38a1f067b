"""The load simulation, with Locust (Debian's python3-locust) as a library.

- Closed model: virtual users (Locust Users) that sign in, then loop with think times;
  their number steps up (e.g. 100 -> 1,000), each step held and measured on its own.
- Open model: votes sent at a fixed arrival rate, whatever the answers do (a vote's
  latency runs from the moment it was due, not from when a free connection took it:
  no coordinated omission); the rate steps up until the p99 budget breaks.

Every request is a sample in the run's Recorder; acknowledged votes and accepted uploads
go into the Ledger, and the checkers compare them with the database and storage after
the run."""
import random
import time
import uuid

import gevent
import gevent.pool
import gevent.queue
from locust import User, between, events, task
from locust.env import Environment

import checks
import corpus
import recorder as recording
import stackenv
import users as vu


class Context:
    """What every virtual user of a run shares."""

    def __init__(self, rec, ledger, mailbox, images=None, stream_share=0.1):
        self.rec, self.ledger, self.mailbox, self.images = rec, ledger, mailbox, images or []
        self.stream_share = stream_share
        self.next_index = 0
        self.signed_in = 0
        self.sign_in_failed = 0
        self.streams_open = 0
        self.stream_events = 0

    def new_client(self):
        i = self.next_index
        self.next_index += 1
        return vu.Client(i, self.rec, self.ledger, self.mailbox)


CTX: Context = None  # set by run_closed before the users start


def think(low=0.3, high=1.0):
    gevent.sleep(random.uniform(low, high))


class SimUser(User):
    abstract = True

    def on_start(self):
        self.c = CTX.new_client()
        if self.c.sign_in():
            CTX.signed_in += 1
        else:
            CTX.sign_in_failed += 1
            self.c.token = None

    def on_stop(self):
        self.c.close()


class Voter(SimUser):
    """Lists open polls, opens one, votes, reads its results; a share keeps a live
    results stream open for a while."""
    weight = 20
    wait_time = between(1, 3)

    def on_start(self):
        super().on_start()
        self.voted = set()
        self.stream = None

    @task
    def visit(self):
        if not self.c.token:
            gevent.sleep(5)
            return
        r = self.c.call("GET /v1/polls", "GET", "/v1/polls?status=open&limit=20")
        if r is None or r.status != 200:
            return
        polls = [p for p in r.json()["items"] if p["id"] not in self.voted]
        if not polls:
            return
        think()
        poll_id = random.choice(polls)["id"]
        r = self.c.call("GET /v1/polls/{id}", "GET", f"/v1/polls/{poll_id}")
        if r is None or r.status != 200:
            return
        options = [o["id"] for o in r.json()["options"]]
        think()
        status = self.c.vote(poll_id, random.choice(options), retries=5)
        self.voted.add(poll_id)
        if status not in (200, 201):
            return
        think()
        self.c.call("GET /v1/polls/{id}/results", "GET", f"/v1/polls/{poll_id}/results")
        if (self.stream is None or self.stream.dead) and random.random() < CTX.stream_share:
            self.stream = gevent.spawn(watch_results, self.c, poll_id, random.uniform(15, 40))


def watch_results(client, poll_id, seconds):
    """A live results stream held open for `seconds` (its own connection); the time
    to the first event is its sample."""
    client.bind()
    http = stackenv.Http(client.base, timeout=seconds + 10)
    CTX.streams_open += 1
    start, at = time.monotonic(), client.rec.now()
    first = None
    try:
        r = http.client.request("GET", f"/v1/polls/{poll_id}/results/stream",
                                headers={"Authorization": f"Bearer {client.token}", "Accept": "text/event-stream"})
        try:
            if r.status_code != 200:
                client.rec.add("GET /v1/polls/{id}/results/stream", r.status_code, (time.monotonic() - start) * 1000,
                               at=at)
                return
            with gevent.Timeout(seconds, False):
                while True:
                    chunk = r.read(4096)
                    if not chunk:
                        break
                    if b"event:" in chunk or b"data:" in chunk:
                        CTX.stream_events += chunk.count(b"\n\n")
                        if first is None:
                            first = time.monotonic()
                            client.rec.add("GET /v1/polls/{id}/results/stream", 200, (first - start) * 1000, at=at)
        finally:
            r.release()
    except Exception:  # noqa: BLE001
        if first is None:
            client.rec.add("GET /v1/polls/{id}/results/stream", 0, (time.monotonic() - start) * 1000, at=at)
    finally:
        CTX.streams_open -= 1
        http.close()


class Owner(SimUser):
    """Creates polls and closes its older ones."""
    fixed_count = 2
    wait_time = between(4, 8)

    def on_start(self):
        super().on_start()
        self.mine = []

    @task
    def manage(self):
        if not self.c.token:
            gevent.sleep(5)
            return
        poll = self.c.create_poll(f"sim poll {uuid.uuid4().hex[:6]}")
        if poll:
            self.mine.append((time.monotonic(), poll["id"]))
        while self.mine and time.monotonic() - self.mine[0][0] > 90:
            _, poll_id = self.mine.pop(0)
            self.c.call("POST /v1/polls/{id}/close", "POST", f"/v1/polls/{poll_id}/close")


class Uploader(SimUser):
    """Uploads an image (raw or multipart), waits for it to be ready, fetches its
    thumbnail and preview, pages through its history."""
    weight = 1
    wait_time = between(1, 3)

    @task
    def upload(self):
        if not self.c.token or not CTX.images:
            gevent.sleep(5)
            return
        image = corpus.pick(CTX.images)
        image_id = self.c.upload(image, multipart=random.random() < 0.5, retries=5)
        if not image_id:
            return
        done = self.c.wait_ready(image_id, timeout=240, interval=1.0)
        if done and done["status"] == "ready":
            self.c.fetch_variant(image_id, "thumb")
            self.c.fetch_variant(image_id, "preview")
        think()
        self.c.history()


def seed_polls(ctx, n):
    owner = ctx.new_client()
    assert owner.sign_in(), "the seeding owner could not sign in"
    for k in range(n):
        owner.create_poll(f"sim seed poll {k}")
    return owner


def make_expected(rec):
    # Answers that are the service doing its job, not errors: a vote on a poll closed
    # meanwhile (409 poll_closed), already voted (409), a poll gone (404).
    rec.expected["POST /v1/polls/{id}/votes"].update({409})
    for ep in ("GET /v1/polls/{id}", "GET /v1/polls/{id}/results", "POST /v1/polls/{id}/close"):
        rec.expected[ep].update({404, 409})


def run_closed(name, steps, hold, user_classes, out, spawn_rate=25, images=None, seed=20, settle=5.0,
               stream_share=0.1):
    """Steps of virtual users; returns the path of the results file."""
    global CTX
    rec = recording.Recorder(name)
    make_expected(rec)
    ledger = vu.Ledger()
    mailbox = vu.Mailbox(stackenv.env("NIMBUS_TEST_MAILDEV"))
    CTX = Context(rec, ledger, mailbox, images, stream_share)
    if any(c is Voter for c in user_classes):
        seed_polls(CTX, seed)
    env = Environment(user_classes=user_classes, events=events)
    runner = env.create_local_runner()
    cpu0 = stackenv.cpu_times()
    total = sum(hold + n / spawn_rate + settle for n in steps)
    with recording.Progress(rec, total_s=total) as progress:
        progress.extra = lambda: (f"; {runner.user_count} users, {CTX.signed_in} signed in, "
                                  f"{CTX.streams_open} streams open")
        for n in steps:
            progress.label = f"ramping to {n} users"
            ramp_start = rec.now()
            runner.start(n, spawn_rate=spawn_rate)
            deadline = time.monotonic() + n / spawn_rate + 120
            while (CTX.signed_in + CTX.sign_in_failed) < n and time.monotonic() < deadline:
                gevent.sleep(0.5)
            gevent.sleep(settle)
            start = rec.now()
            progress.label = f"{n} users, holding {hold:.0f}s"
            c0 = stackenv.cpu_times()
            gevent.sleep(hold)
            c1 = stackenv.cpu_times()
            busy = 1 - (c1[1] - c0[1]) / max(1, c1[0] - c0[0])
            rec.phase(f"{n} users", start, rec.now(), users=n, ramp_start=round(ramp_start, 3),
                      machine_cpu_busy=round(busy, 3), signed_in=CTX.signed_in, sign_in_failed=CTX.sign_in_failed,
                      **stackenv.machine_load())
        progress.label = "stopping"
        runner.quit()
    c1 = stackenv.cpu_times()
    mailbox.close()
    rec.notes.update({"steps": steps, "hold_s": hold, "spawn_rate": spawn_rate, "signed_in": CTX.signed_in,
                      "sign_in_failed": CTX.sign_in_failed, "stream_events": CTX.stream_events,
                      "user_classes": [c.__name__ for c in user_classes],
                      "machine_cpu_busy": round(1 - (c1[1] - cpu0[1]) / max(1, c1[0] - cpu0[0]), 3)})
    rec.phases = [dict(p, summary=rec.summary(p["start"], p["end"])) for p in rec.phases]
    observed, verdict = checks.settle_and_check(ledger, rec)
    return rec.save(out, ledger=ledger.to_json(), observed=observed, checks=verdict)


# ---------------------------------------------------------------------- open model

def run_open(name, rates, step_s, out, budget_p99_ms=100.0, voters=200, connections=256, max_error_rate=0.01):
    """Votes at fixed arrival rates, stepped up until the p99 budget breaks."""
    global CTX
    rec = recording.Recorder(name)
    make_expected(rec)
    ledger = vu.Ledger()
    mailbox = vu.Mailbox(stackenv.env("NIMBUS_TEST_MAILDEV"))
    CTX = Context(rec, ledger, mailbox)
    needed = int(sum(r * step_s for r in rates) * 1.05) + 100
    with recording.Progress(rec, total_s=len(rates) * step_s) as progress:
        progress.label = f"signing in {voters} voters"
        clients = [CTX.new_client() for _ in range(voters)]
        pool = gevent.pool.Pool(50)
        for c in clients:
            pool.spawn(c.sign_in)
        pool.join()
        clients = [c for c in clients if c.token]
        polls_needed = needed // max(1, len(clients)) + 1
        progress.label = f"creating {polls_needed} polls"
        owner = clients[0]
        polls = [owner.create_poll(f"open model {k}") for k in range(polls_needed)]
        polls = [p for p in polls if p]
        pairs = ((p["id"], c, random.choice(p["options"])["id"]) for p in polls for c in clients)
        conns = gevent.queue.Queue()
        for i in range(connections):
            conns.put((i, stackenv.Http(stackenv.gateway(), timeout=15)))
        lag = []

        def send(due, poll_id, client, option):
            i, http = conns.get()  # waiting for a connection counts: the clock runs from `due`
            gevent.getcurrent().nimbus_source = stackenv.source_address(5000 + i)
            started = time.monotonic()
            lag.append(started - due)
            status = 0
            try:
                r = http.request("POST", f"/v1/polls/{poll_id}/votes", body={"option_ids": [option]},
                                 headers={"Authorization": f"Bearer {client.token}"})
                status = r.status
            except Exception:  # noqa: BLE001
                http.close()
                http = stackenv.Http(stackenv.gateway(), timeout=15)
            finally:
                conns.put((i, http))
            ms = (time.monotonic() - due) * 1000
            rec.add("POST /v1/polls/{id}/votes", status, ms, at=due - rec.m0)
            ledger.votes_sent.append([poll_id, client.user, option])
            if status in (200, 201):
                ledger.votes_acked.append([poll_id, client.user, option, status, round(due - rec.m0, 3)])

        senders = gevent.pool.Group()
        knee = None
        for rate in rates:
            progress.label = f"open model at {rate} votes/s"
            start = rec.now()
            t0 = time.monotonic()
            n = int(rate * step_s)
            lag.clear()
            c0 = stackenv.cpu_times()
            for k in range(n):
                due = t0 + k / rate
                delay = due - time.monotonic()
                if delay > 0:
                    gevent.sleep(delay)
                try:
                    poll_id, client, option = next(pairs)
                except StopIteration:
                    break
                senders.spawn(send, due, poll_id, client, option)
            end = rec.now()
            senders.join(timeout=30)
            c1 = stackenv.cpu_times()
            s = rec.summary(start, end)
            lag_sorted = sorted(lag)
            step = {"rate": rate, "summary": s, "sent": n,
                    "schedule_lag_ms": {"p50": 1000 * (recording.percentile(lag_sorted, 50) or 0),
                                        "p99": 1000 * (recording.percentile(lag_sorted, 99) or 0)},
                    "machine_cpu_busy": round(1 - (c1[1] - c0[1]) / max(1, c1[0] - c0[0]), 3),
                    **stackenv.machine_load()}
            p99 = s["latency_ms"].get("p99") or 0
            within = p99 <= budget_p99_ms and s["error_rate"] <= max_error_rate
            step["within_budget"] = within
            rec.phase(f"{rate} votes/s", start, end, **step)
            if within:
                knee = rate
            else:
                break
        for _, http in list(conns.queue):
            http.close()
    mailbox.close()
    rec.notes.update({"rates": rates, "step_s": step_s, "budget_p99_ms": budget_p99_ms, "voters": len(clients),
                      "polls": len(polls), "connections": connections, "capacity_votes_per_s": knee,
                      "max_error_rate": max_error_rate})
    observed, verdict = checks.settle_and_check(ledger, rec)
    return rec.save(out, ledger=ledger.to_json(), observed=observed, checks=verdict)
