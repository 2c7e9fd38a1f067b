"""Failover drills, each under load and each checked.

A drill signs in voters and uploaders (the real email-code flow, each from a loopback
address of its own), starts them (votes in polls of its own, retried with the same
selection on 503 or a lost connection, as a careful client does; small uploads,
retried likewise), waits for the load to flow, applies its fault (the moment is marked
on the timeline), waits for the service to be back, lets the load run on, stops it,
settles, and runs the checkers (checks.py) on what clients were told against what the
database and storage hold."""
import hashlib
import os
import random

import gevent
import gevent.lock
import gevent.pool

import checks
import corpus
import recorder as recording
import stackenv
import users as vu


class Drill:
    def __init__(self, name, title, fault, voters=16, uploaders=2, polls=150, batch=0, batch_fault=None,
                 deep=False):
        self.name, self.title, self.fault = name, title, fault
        self.voters, self.uploaders, self.polls = voters, uploaders, polls
        self.batch, self.batch_fault, self.deep = batch, batch_fault, deep


# ---------------------------------------------------------------------- faults

def _ready(port):
    try:
        h = stackenv.Http(f"http://127.0.0.1:{port}", timeout=2)
        try:
            return h.request("GET", "/readyz").status == 200
        finally:
            h.close()
    except Exception:  # noqa: BLE001
        return False


def all_ready(timeout=90):
    base = int(stackenv.env("NIMBUS_STACK_API_BASE_PORT"))
    for i in range(1, int(stackenv.env("NIMBUS_STACK_APIS")) + 1):
        stackenv.wait_until(lambda i=i: _ready(base + i), timeout, what=f"api-{i} ready")


def wait_running(program, old_pid, timeout=60):
    stackenv.wait_until(lambda: "RUNNING" in stackenv.ctl("status", program)
                        and stackenv.pid_of(program) not in (0, old_pid), timeout, what=f"{program} running again")


def fault_api_kill9(rec, short):
    pid = stackenv.kill9("api:api-2")
    rec.mark("kill -9 api-2")
    wait_running("api:api-2", pid)
    all_ready()
    rec.mark("api-2 ready")


def fault_rolling_restart(rec, short):
    rec.mark("rolling restart begins")
    stackenv.lib_sh("rolling_restart")
    all_ready()
    rec.mark("rolling restart done")


def _restart(program, rec):
    pid = stackenv.pid_of(program)
    rec.mark(f"restart {program}")
    stackenv.ctl("restart", program)
    wait_running(program, pid)
    all_ready()
    rec.mark(f"{program} back, instances ready")


def fault_redis(rec, short):
    _restart("redis", rec)


def fault_postgres(rec, short):
    _restart("postgres", rec)


def fault_rabbitmq(rec, short):
    _restart("rabbitmq", rec)


def fault_s3_outage(rec, short):
    rec.mark("storage (swift-proxy) stopped")
    stackenv.ctl("stop", "swift-proxy")
    try:
        gevent.sleep(3 if short else 20)
    finally:
        stackenv.ctl("start", "swift-proxy")
    rec.mark("storage started")
    port = int(stackenv.urllib.parse.urlparse(stackenv.env("NIMBUS_TEST_S3_ENDPOINT")).port)
    stackenv.wait_until(lambda: stackenv.Http(f"http://127.0.0.1:{port}", 2).request("GET", "/healthcheck").status == 200,
                        60, what="storage back")
    all_ready()
    rec.mark("storage back, instances ready")


def fault_gateway_reload(rec, short):
    for k in range(1 if short else 3):
        rec.mark("nginx reload (HUP)")
        stackenv.ctl("signal", "HUP", "nginx")
        gevent.sleep(1 if short else 3)


def fault_stack_restart(rec, short):
    """The whole stack stopped by hand and started again (every process, the
    services included), as the brief's failover scenario says."""
    rec.mark("whole stack stopping")
    stackenv.lib_sh("init_services >/dev/null; stop_supervisor")
    rec.mark("whole stack stopped")
    gevent.sleep(2 if short else 5)
    rec.mark("whole stack starting")
    stackenv.lib_sh(f"init_services >/dev/null; start_supervisor; wait_ready {stackenv.env('NIMBUS_STACK_APIS')}")
    all_ready()
    rec.mark("whole stack ready")


def fault_none(rec, short):
    rec.mark("no fault (baseline)")


def batch_fault_worker_kill9(rec, ids, short):
    """kill -9 of worker-1 once the batch is being processed; supervisord restarts it."""
    stackenv.wait_until(lambda: int(stackenv.psql(
        f"SELECT count(*) FROM images WHERE id IN ({checks._ids_sql(ids)}) AND status = 'ready'") or 0) >= max(1, len(ids) // 10),
        180, interval=0.2, what="the batch being processed")
    pid = stackenv.kill9("workers:worker-1")
    rec.mark("kill -9 worker-1 mid-batch")
    wait_running("workers:worker-1", pid)
    rec.mark("worker-1 running again")


DRILLS = {d.name: d for d in [
    Drill("api-kill9", "kill -9 of an API instance", fault_api_kill9),
    Drill("rolling-restart", "rolling restart of every instance (zero-downtime deploy)", fault_rolling_restart),
    Drill("redis-restart", "Redis restart", fault_redis),
    Drill("postgres-restart", "PostgreSQL restart", fault_postgres),
    Drill("rabbitmq-restart", "RabbitMQ restart", fault_rabbitmq),
    Drill("s3-outage", "storage (S3) down for 20 s", fault_s3_outage),
    Drill("gateway-reload", "gateway (nginx) reload", fault_gateway_reload),
    Drill("stack-restart", "whole stack stopped by hand and started again", fault_stack_restart, polls=250),
    Drill("images-100", "100 parallel uploads, every original and variant read back", fault_none, voters=4,
          uploaders=0, polls=60, batch=100, deep=True),
    Drill("images-100-worker-kill9", "100 parallel uploads with a worker killed (-9) and restarted mid-batch",
          fault_none, voters=4, uploaders=0, polls=60, batch=100, batch_fault=batch_fault_worker_kill9, deep=True),
]}


# ---------------------------------------------------------------------- load

class Load:
    def __init__(self, rec, ledger, owner, voters, uploaders, polls, images):
        self.rec, self.ledger, self.owner = rec, ledger, owner
        self.voters, self.uploaders, self.polls, self.images = voters, uploaders, polls, images
        self.lock = gevent.lock.Semaphore()
        self.stopping = False
        self.group = gevent.pool.Group()
        self.acks = 0

    def start(self):
        for k, c in enumerate(self.voters):
            self.group.spawn(self._vote, k, c)
        for c in self.uploaders:
            self.group.spawn(self._upload, c)

    def _poll(self, j):
        """The j-th poll of the drill; the owner makes more when the voters reach the end."""
        while j >= len(self.polls) and not self.stopping:
            with self.lock:
                if j >= len(self.polls):
                    p = self.owner.create_poll(f"drill poll {j}")
                    if p:
                        self.polls.append(p)
                    else:
                        gevent.sleep(0.5)
            self.owner.bind()
        return self.polls[j] if j < len(self.polls) else None

    def _vote(self, k, c):
        j = 0
        while not self.stopping:
            poll = self._poll(j)
            j += 1
            if poll is None:
                return
            c.bind()
            option = random.choice(poll["options"])["id"]
            if c.vote(poll["id"], option, retries=10_000, pause=0.2) in (200, 201):
                self.acks += 1
            gevent.sleep(random.uniform(0.15, 0.35))

    def _upload(self, c):
        c.bind()
        while not self.stopping:
            c.upload(corpus.pick(self.images), multipart=random.random() < 0.5, retries=10_000, pause=0.5)
            gevent.sleep(random.uniform(0.5, 1.5))

    def wait_acks(self, n, timeout):
        target = self.acks + n
        stackenv.wait_until(lambda: self.acks >= target, timeout, interval=0.1, what=f"{n} more acknowledged votes")

    def stop(self, grace=30):
        self.stopping = True
        self.group.join(timeout=grace)
        self.group.kill()


def sign_in_all(clients):
    pool = gevent.pool.Pool(20)
    for c in clients:
        pool.spawn(c.sign_in)
    pool.join()
    for c in clients:  # a sign-in lost to a busy moment gets a second round
        if not c.token:
            c.sign_in()
    bad = [c for c in clients if not c.token]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(clients)} drill users could not sign in")


def run_batch(rec, ledger, clients, images, batch_fault, short):
    """`len(clients)` uploads at once (one per user), then the batch's fault."""
    uploaded = {}
    ids = []

    def one(c, image):
        image_id = c.upload(image, multipart=c.index % 2 == 0, retries=10_000, pause=0.5)
        if image_id:
            uploaded[image_id] = hashlib.sha256(image.data).hexdigest()
            ids.append(image_id)

    rec.mark(f"{len(clients)} parallel uploads begin")
    group = gevent.pool.Group()
    for k, c in enumerate(clients):
        group.spawn(one, c, images[k % len(images)])
    group.join()
    rec.mark(f"{len(ids)} uploads accepted")
    if batch_fault is not None:
        batch_fault(rec, ids, short)
    stackenv.wait_until(lambda: stackenv.psql(
        f"SELECT count(*) FROM images WHERE id IN ({checks._ids_sql(ids)}) AND status IN ('ready', 'failed')")
        == str(len(ids)), 300, interval=0.5, what="every image of the batch processed")
    rec.mark("every image of the batch processed")
    return uploaded


def run(name, out, short=False):
    d = DRILLS[name]
    rec = recording.Recorder(f"drill-{name}")
    rec.expected["POST /v1/polls/{id}/votes"].update({409})
    ledger = vu.Ledger()
    mailbox = vu.Mailbox(stackenv.env("NIMBUS_TEST_MAILDEV"))
    images = corpus.load(os.path.join(os.environ["NIMBUS_STACK_RUN"], "sim", "corpus"), small_only=True)
    n_voters = min(d.voters, 4) if short else d.voters
    n_uploaders = min(d.uploaders, 1) if short else d.uploaders
    n_polls = 20 if short else d.polls
    batch = (10 if short else d.batch) if d.batch else 0
    base = 2000 + 200 * list(DRILLS).index(name)
    with recording.Progress(rec, every=5 if not short else 2) as progress:
        progress.label = "signing in"
        all_ready()
        clients = [vu.Client(base + i, rec, ledger, mailbox) for i in range(n_voters + n_uploaders + 1)]
        batch_clients = [vu.Client(base + 50 + i, rec, ledger, mailbox) for i in range(batch)]
        sign_in_all(clients + batch_clients)
        owner, voters, uploaders = clients[0], clients[1:1 + n_voters], clients[1 + n_voters:]
        progress.label = f"creating {n_polls} polls"
        polls = [p for p in (owner.create_poll(f"drill {name} {k}") for k in range(n_polls)) if p]
        load = Load(rec, ledger, owner, voters, uploaders, polls, images)
        progress.extra = lambda: f"; {load.acks} votes acknowledged, {len(ledger.uploads_accepted)} uploads accepted"
        progress.label = "load before the fault"
        load.start()
        load.wait_acks(10 if short else 150, timeout=60)
        progress.label = f"fault: {d.title}"
        fault_at = rec.now()
        rec.mark(f"fault: {d.title}")
        d.fault(rec, short)
        uploaded = {}
        if batch:
            progress.label = f"{batch} parallel uploads"
            uploaded = run_batch(rec, ledger, batch_clients, images if short else corpus.load(
                os.path.join(os.environ["NIMBUS_STACK_RUN"], "sim", "corpus")), d.batch_fault, short)
        recovered_at = rec.now()
        progress.label = "load after recovery"
        load.wait_acks(10 if short else 150, timeout=120)
        load.stop()
        end = rec.now()
        rec.mark("load stopped")
        progress.label = "settling and checking"
        reader = vu.Client(base + 199, recording.Recorder("checker"), ledger, None)
        reader.token = owner.token
        observed, verdict = checks.settle_and_check(ledger, rec, reader=reader, deep=d.deep, uploaded=uploaded)
    mailbox.close()
    rec.phase("before the fault", 0, fault_at)
    rec.phase("fault and recovery", fault_at, recovered_at)
    rec.phase("after recovery", recovered_at, end)
    rec.phases = [dict(p, summary=rec.summary(p["start"], p["end"])) for p in rec.phases]
    rec.notes.update({"drill": name, "title": d.title, "fault_at": round(fault_at, 3),
                      "recovered_at": round(recovered_at, 3), "recovery_s": round(recovered_at - fault_at, 3),
                      "disturbance": rec.disturbance(fault_at), "voters": n_voters, "uploaders": n_uploaders,
                      "batch": batch, "polls": len(polls), "short": short})
    return rec.save(out, ledger=ledger.to_json(), observed=observed, checks=verdict)
