"""Live-results benchmark (not a test), issue 15 — a voting night: everyone watches.

STREAMS results streams (default 10,000) are opened straight on ONE API instance, all
on the same poll; then votes for that poll arrive through the gateway at RATE/s
(default 1,000) for SECONDS (default 25). Measured:

- establish: from the first connect to the last stream's first event (goal: all within
  10 s); streams refused or cut are counted;
- fan-out delay: for each event on each stream, its arrival minus the 201 of the
  earliest-acknowledged vote it is the first on that stream to count. With the 201s
  sorted by time, an event showing total T on a stream whose previous event showed T0
  is dated against the (T0+1)-th 201: the oldest news it carries. Both times are the
  kernel's receive timestamps (SO_TIMESTAMPNS) of the bytes, so neither client's own
  lag is counted. p50/p99 (goal: p99 < coalescing window 250 ms + 50 ms);
- dropped: streams closed or reset during the run; missed: streams whose last event
  does not show the final count 1 s after the last vote's answer (goal: none);
- the instance: peak RSS (VmHWM; goal < 200 MB) and CPU-seconds while establishing and
  while voting; each client process's CPU share (a client near 100 % of a core is the
  bottleneck, not the server: raise CLIENTS);
- at the connection limit: api-1 of the stack is filled with idle connections until it
  takes no more, then votes are sent through the gateway; each must succeed on another
  instance (goal: all 201).

Which instance, which poll: the instance under test is the bench's own (the stack's
binary and environment, on free ports, as tests/e2e/private.py starts one), outside
the gateway, so that only the streams count against its connection limit and its RSS
and CPU are the streams' alone. It keeps the stack's settings except the two the test
profile shortens for its tests, set back to the defaults production runs with: the
stream heartbeat (NIMBUS_LIVE_HEARTBEAT, 15 s; the test profile's 1 s makes every
stream check its token and renew its slot every second) and the header timeout (10 s).
Votes go through the gateway to the stack's instances and reach this one the way they
reach any instance: on the poll's Redis channel. One poll, because a voting night is one
question on every screen and it is the worst case for fan-out: every refresh goes to
every stream. One user per stream (the per-user stream cap is 8), one ballot per voter.

Usage: NIMBUS_STACK_ENV=.run/test/stack.env /usr/bin/python3 bench/streams.py [streams] [rate] [seconds]
Environment: CLIENTS (stream client processes, default 4), VOTE_CONNECTIONS (default
64), HEARTBEAT (default 15s), LIMIT_CHECK=0 to skip the connection-limit check, INSTANCE_WRAPPER (a command the
instance is started under, e.g. "heaptrack -o /tmp/api-bench"; its RSS and CPU are
then the wrapper's), INSTANCE_THREADS (its NIMBUS_THREADS; the stack's otherwise), PROFILE (a path: perf record -g of the instance while voting).
Needs RLIMIT_NOFILE above streams + 100 (the script raises it, the hard one too as root) and
enough local ports (net.ipv4.ip_local_port_range: 28,000 by default, plenty here).
"""
import collections
import errno
import http.client
import multiprocessing
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
from array import array

from stack_env import BenchIds, access_tokens, create_polls, load_env, raise_nofile, save_result, supervised_program

SO_TIMESTAMPNS = 35  # Linux; Python's socket module does not name it
CMSG_SIZE = socket.CMSG_SPACE(16)
TOTAL = re.compile(rb'"total_votes":(\d+)')
TAG = f"{uuid.uuid4().int % 65536:04x}"
CONNECT_WINDOW = 256  # streams being opened at once per client process
GOAL_ESTABLISH_S, GOAL_P99_MS, GOAL_RSS_MB = 10.0, 300.0, 200.0


IDS = BenchIds(TAG, 5)  # version 5: apart from bench/votes.py's ids
uid = IDS.uid


def setup(users, polls):
    create_polls(IDS, users, polls, "bench-streams")


def kernel_time(ancillary):
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


# ---------------------------------------------------------------- the instance under test

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    def __init__(self, heartbeat):
        command, env = supervised_program("api-1")
        self.name = f"api-bench-{TAG}"
        self.port, self.ops_port = free_port(), free_port()
        env.update({"NIMBUS_INSTANCE": self.name, "NIMBUS_HTTP_PORT": str(self.port),
                    "NIMBUS_OPS_PORT": str(self.ops_port), "NIMBUS_LIVE_HEARTBEAT": heartbeat,
                    "NIMBUS_HTTP_HEADER_TIMEOUT": "10s"})
        if os.environ.get("INSTANCE_THREADS"):
            env["NIMBUS_THREADS"] = os.environ["INSTANCE_THREADS"]
        self.threads = env.get("NIMBUS_THREADS", "default")
        self.env = env
        self.log_path = os.path.join(os.environ["NIMBUS_STACK_RUN"], "logs", f"{self.name}.log")
        self.log = open(self.log_path, "ab")
        wrapper = os.environ.get("INSTANCE_WRAPPER", "").split()  # e.g. "heaptrack -o /tmp/api-bench"
        self.proc = subprocess.Popen([*wrapper, command], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while not self.ready():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                sys.exit(f"{self.name} did not get ready; see {self.log_path}")
            time.sleep(0.1)

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def cpu_seconds(self):
        return proc_cpu(self.proc.pid)

    def memory(self):
        """(VmRSS, VmHWM) in MB."""
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))

    def stop(self, keep_log=False):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: a wrapper's child too
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        if self.proc.returncode == 0 and not keep_log:
            os.unlink(self.log_path)
        else:
            print(f"instance log kept: {self.log_path}")


def machine_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- stream clients

class Stream:
    __slots__ = ("sock", "buf", "head", "opened", "last", "last_update", "max_gap", "ended")

    def __init__(self, sock):
        self.sock, self.buf, self.head = sock, b"", False
        self.opened = self.last_update = 0
        self.last, self.max_gap, self.ended = -1, 0, None


def stream_client(pipe, port, path, tokens, start_at):
    """One process holding len(tokens) streams. Tells the parent when every stream is
    open (or failed), then reads until told to stop, and sends back what it saw."""
    raise_nofile(len(tokens) + 64)
    sel = selectors.EpollSelector()
    sel.register(pipe.fileno(), selectors.EVENT_READ, None)
    waiting = collections.deque(range(len(tokens)))
    streams = [None] * len(tokens)
    failures = collections.Counter()
    opening, open_count = 0, 0
    news, arrivals = array("q"), array("q")  # per update: first newly counted vote (1-based), arrival ns
    voting = False
    reported = False
    time.sleep(max(0.0, (start_at - time.time_ns()) / 1e9))
    cpu_start = time.process_time()

    def connect_next():
        nonlocal opening
        while waiting and opening < CONNECT_WINDOW:
            i = waiting.popleft()
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            err = s.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                failures[f"connect: {errno.errorcode.get(err, err)}"] += 1
                s.close()
                continue
            streams[i] = Stream(s)
            sel.register(s, selectors.EVENT_WRITE, i)
            opening += 1

    def fail(i, why):
        nonlocal opening, open_count
        st = streams[i]
        sel.unregister(st.sock)
        st.sock.close()
        if st.opened:
            open_count -= 1
            st.ended = why
        else:
            opening -= 1
            failures[why] += 1

    def on_writable(i):
        st = streams[i]
        err = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            fail(i, f"connect: {errno.errorcode.get(err, err)}")
            return
        request = (f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
                   f"Authorization: Bearer {tokens[i]}\r\n\r\n").encode()
        st.sock.send(request)  # small: fits the empty send buffer
        sel.modify(st.sock, selectors.EVENT_READ, i)

    def on_readable(i):
        nonlocal opening, open_count
        st = streams[i]
        try:
            data, ancillary, _, _ = st.sock.recvmsg(65536, CMSG_SIZE)
        except ConnectionError as e:
            fail(i, f"reset: {e.__class__.__name__}")
            return
        if not data:
            fail(i, "closed by the server" if st.opened else "closed before the first event")
            return
        at = kernel_time(ancillary)
        buf = st.buf + data
        if not st.head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                st.buf = buf
                return
            status = buf[9:12].decode(errors="replace")
            if status != "200":
                fail(i, f"HTTP {status}")
                return
            st.head, buf = True, buf[end + 4:]
        end = buf.rfind(b"\n\n")
        if end < 0:
            st.buf = buf
            return
        events, st.buf = buf[:end], buf[end + 2:]
        for m in TOTAL.finditer(events):
            total = int(m.group(1))
            if not st.opened:
                st.opened, st.last, st.last_update = at, total, at
                opening -= 1
                open_count += 1
            elif total > st.last:
                news.append(st.last + 1)
                arrivals.append(at)
                if voting:
                    st.max_gap = max(st.max_gap, at - st.last_update)
                st.last, st.last_update = total, at
        if b"event: end" in events:
            reason = re.search(rb'event: end\ndata: \{"reason":"(\w+)"', events)
            fail(i, f"event: end ({reason.group(1).decode() if reason else '?'})")

    connect_next()
    while True:
        for key, mask in sel.select(timeout=1.0):
            i = key.data
            if i is None:
                message = pipe.recv()
                if message == "voting":
                    voting = True
                    now = time.time_ns()
                    for st in streams:
                        if st is not None:
                            st.last_update = now
                    continue
                # "stop": report and leave
                cpu = time.process_time() - cpu_start
                pipe.send({"last": [st.last if st and st.opened and not st.ended else None for st in streams],
                           "ended": collections.Counter(st.ended for st in streams if st and st.ended),
                           "max_gap": max((st.max_gap for st in streams if st), default=0),
                           "news": news.tobytes(), "arrivals": arrivals.tobytes(), "cpu": cpu})
                return
            if mask & selectors.EVENT_WRITE:
                on_writable(i)
            else:
                on_readable(i)
        connect_next()
        if not reported and not waiting and opening == 0:
            reported = True
            pipe.send({"open": open_count, "failures": failures,
                       "opened": [st.opened for st in streams if st and st.opened],
                       "cpu": time.process_time() - cpu_start})


# ---------------------------------------------------------------- the voters

def vote_sender(pipe, port, poll, option, tokens, rate, seconds, connections):
    """Open-loop voting: vote i is due at start + i / rate, sent on the first free
    keep-alive connection to the gateway. Sends back the 201s' kernel receive times,
    the other answers, and how late the sends ran."""
    sel = selectors.EpollSelector()
    body = f'{{"option_ids":["{option}"]}}'
    idle, conns = [], {}
    t201, statuses, late = array("q"), collections.Counter(), array("q")

    def open_connection():
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns[s.fileno()] = [s, b""]
        idle.append(s)

    for _ in range(connections):
        open_connection()
    total = int(rate * seconds)
    interval = 1e9 / rate
    start = time.monotonic_ns()
    cpu_start = time.process_time()
    sent = answered = resent = 0
    retry = collections.deque()  # votes whose connection closed unanswered: sent again (a vote is idempotent)
    in_flight = {}  # fd: the vote it carries

    def send(s, i):
        s.send((f"POST /v1/polls/{poll}/votes HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {tokens[i]}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
        sel.register(s, selectors.EVENT_READ, None)
        in_flight[s.fileno()] = i

    while answered < total:
        now = time.monotonic_ns()
        while retry and idle:
            send(idle.pop(), retry.popleft())
            resent += 1
        while sent < total and idle and start + sent * interval <= now:
            s = idle.pop()
            late.append(int(now - (start + sent * interval)))
            send(s, sent)
            sent += 1
        wait = None
        if sent < total and idle:
            wait = max(0.0, (start + sent * interval - time.monotonic_ns()) / 1e9)
        for key, _ in sel.select(timeout=wait if wait is not None else 1.0):
            s = key.fileobj
            entry = conns[s.fileno()]
            try:
                data, ancillary, _, _ = s.recvmsg(65536, CMSG_SIZE)
            except ConnectionError:
                data, ancillary = b"", []
            at = kernel_time(ancillary)
            buf = entry[1] + data
            head_end = buf.find(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", buf[:head_end]) if head_end >= 0 else None
            if not data and not buf:  # closed by the gateway before answering: send it again elsewhere
                sel.unregister(s)
                retry.append(in_flight.pop(s.fileno()))
                del conns[s.fileno()]
                s.close()
                open_connection()
                continue
            if not data or (head_end >= 0 and len(buf) >= head_end + 4 + int(length.group(1) if length else 0)):
                status = int(buf[9:12]) if len(buf) >= 12 else 0
                in_flight.pop(s.fileno(), None)
                if status in (200, 201):  # 200: a vote sent again that had been counted the first time
                    t201.append(at)
                else:
                    code = re.search(rb'"code":"(\w+)"', buf)
                    statuses[f"{status or 'closed'} {code.group(1).decode() if code else ''}".strip()] += 1
                answered += 1
                sel.unregister(s)
                entry[1] = b""
                if not data or re.search(rb"(?i)\r\nconnection: *close", buf[:head_end]):
                    del conns[s.fileno()]
                    s.close()
                    open_connection()
                else:
                    idle.append(s)
            else:
                entry[1] = buf
    late_sorted = sorted(late)
    if resent:
        statuses[f"(sent again after an unanswered close: {resent})"] = 0
    pipe.send({"t201": t201.tobytes(), "statuses": statuses, "cpu": time.process_time() - cpu_start,
               "wall": (time.monotonic_ns() - start) / 1e9,
               "late_p99_ms": late_sorted[int(0.99 * (len(late_sorted) - 1))] / 1e6 if late_sorted else 0.0})


# ---------------------------------------------------------------- the connection-limit check

def limit_check(poll, option, tokens):
    """Fills api-1 of the stack until it takes no more connections, lets the gateway's
    idle connections to it expire, tops up, and votes through the gateway. Returns
    (votes sent, 201s, other answers, answered by api-1, connections held)."""
    port = int(os.environ["NIMBUS_STACK_API_BASE_PORT"]) + 1
    held = []

    def fill():
        """Opens connections until the instance refuses one or answers one (503)."""
        while len(held) < 30_000:
            batch = []
            for _ in range(200):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                batch.append(s)
            poller = select_poll(batch, 0.2)
            full = False
            for s in batch:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or poller.get(s.fileno(), 0):
                    full = True
                    s.close()
                else:
                    held.append(s)
            if full:
                return

    fill()
    time.sleep(1.5)  # the gateway's idle keep-alive connections to it expire (keepalive_timeout 1s)
    fill()
    gateway = os.environ["NIMBUS_TEST_GATEWAY"].split("//", 1)[1]
    ok, other, by_full = 0, collections.Counter(), 0
    body = f'{{"option_ids":["{option}"]}}'
    for token in tokens:
        c = http.client.HTTPConnection(gateway, timeout=20)
        c.request("POST", f"/v1/polls/{poll}/votes", body=body,
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        r = c.getresponse()
        text = r.read()
        if r.status == 201:
            ok += 1
        else:
            other[f"{r.status} {text[:80]!r}"] += 1
        by_full += r.getheader("X-Nimbus-Instance") == "api-1"
        c.close()
    # Still full after the votes (not restarted, no connection of ours gone): a new
    # connection is turned away.
    probe = socket.socket()
    probe.settimeout(2)
    still_full = probe.connect_ex(("127.0.0.1", port)) != 0 or bool(select_poll([probe], 0.3))
    probe.close()
    count = len(held)
    for s in held:
        s.close()
    return len(tokens), ok, other, by_full, count, still_full


def select_poll(sockets, timeout):
    """{fd: revents} of the sockets that have something to say within `timeout`."""
    import select
    p = select.poll()
    for s in sockets:
        p.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
    return dict(p.poll(timeout * 1000))


# ---------------------------------------------------------------- the run

def percentile(values, p):
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def verdict(ok):
    return "met" if ok else "NOT MET <<<<<<<<<<"


def main():
    load_env()
    n_streams = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    clients = int(os.environ.get("CLIENTS", "4"))
    vote_connections = int(os.environ.get("VOTE_CONNECTIONS", "64"))
    heartbeat = os.environ.get("HEARTBEAT", "15s")
    check_limit = os.environ.get("LIMIT_CHECK", "1") != "0"
    raise_nofile(max(n_streams, 10_000) + 500)

    votes = rate * seconds
    check_votes = 10 * int(os.environ["NIMBUS_STACK_APIS"])
    users = max(n_streams, votes + check_votes)
    print(f"== {n_streams} streams on one instance, {rate} votes/s for {seconds} s through the gateway; "
          f"{clients} stream client processes; heartbeat {heartbeat}")
    t = time.time()
    setup(users, 2)
    ids = [uid(1, n) for n in range(1, users + 1)]
    size = -(-users // 4)
    with multiprocessing.get_context("fork").Pool(4) as pool:  # Ed25519 signing: ~1 ms a token here
        tokens = [t for part in pool.map(access_tokens, [ids[k:k + size] for k in range(0, users, size)]) for t in part]
    print(f"setup: {users} users, 2 polls, {len(tokens)} tokens minted ({time.time() - t:.1f} s, not measured)")
    poll, option = uid(2, 1), uid(3, 11)

    instance = Instance(heartbeat)
    rss_idle = instance.memory()[0]
    print(f"instance under test: {instance.name}, port {instance.port}, NIMBUS_THREADS={instance.threads}")
    ctx = multiprocessing.get_context("fork")
    path = f"/v1/polls/{poll}/results/stream"
    share = [tokens[:n_streams][k::clients] for k in range(clients)]
    start_at = time.time_ns() + 300_000_000
    cpu0 = instance.cpu_seconds()
    procs, pipes = [], []
    for k in range(clients):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=stream_client, args=(child, instance.port, path, share[k], start_at))
        p.start()
        procs.append(p)
        pipes.append(parent)
    opened = [pipe.recv() for pipe in pipes]
    cpu_established = instance.cpu_seconds()
    open_count = sum(o["open"] for o in opened)
    failures = sum((o["failures"] for o in opened), collections.Counter())
    firsts = sorted(t for o in opened for t in o["opened"])
    establish_s = (firsts[-1] - start_at) / 1e9 if firsts else float("nan")
    half_s = (percentile(firsts, 50) - start_at) / 1e9 if firsts else float("nan")
    rss_open = instance.memory()[0]
    print(f"established: {open_count}/{n_streams} streams, last first-event {establish_s:.2f} s after the first "
          f"connect (half by {half_s:.2f} s); failed: {dict(failures) or 'none'}; instance CPU "
          f"{cpu_established - cpu0:.1f} s; client CPU {max(o['cpu'] for o in opened):.1f} s max per process")
    print(f"instance RSS: {rss_idle:.1f} MB idle, {rss_open:.1f} MB with the streams open")

    time.sleep(2)
    for pipe in pipes:
        pipe.send("voting")
    parent, child = ctx.Pipe()
    voter = ctx.Process(target=vote_sender, args=(child, int(os.environ["NIMBUS_TEST_GATEWAY"].rsplit(":", 1)[1]),
                                                 poll, option, tokens[:votes], rate, seconds, vote_connections))
    cpu1 = instance.cpu_seconds()
    machine1 = machine_cpu()
    client_cpu1 = [proc_cpu(p.pid) for p in procs]
    t_vote = time.time()
    voter.start()
    profiler = None
    if os.environ.get("PROFILE"):  # perf record of the instance for the voting phase
        profiler = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(instance.proc.pid), "-o",
                                     os.environ["PROFILE"], "--", "sleep", str(seconds)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss_peak_sampled = 0.0
    while not parent.poll(0.5):
        rss_peak_sampled = max(rss_peak_sampled, instance.memory()[0])
    voted = parent.recv()
    if profiler:
        profiler.wait()
    vote_wall = time.time() - t_vote
    voter.join()
    time.sleep(1.0)  # the last coalesced refresh (250 ms) reaches every stream
    cpu2 = instance.cpu_seconds()
    machine2 = machine_cpu()
    client_cpu2 = [proc_cpu(p.pid) for p in procs]
    for pipe in pipes:
        pipe.send("stop")
    reports = [pipe.recv() for pipe in pipes]
    for p in procs:
        p.join()
    rss_now, rss_hwm = instance.memory()
    instance.stop(keep_log=any(r["ended"] for r in reports))  # why streams ended: its warnings

    t201 = sorted(array("q", voted["t201"]))
    final = len(t201)
    delays, windows = [], collections.defaultdict(list)  # windows: by 5 s of the voting phase
    for r in reports:
        news, arrivals = array("q", r["news"]), array("q", r["arrivals"])
        for k, at in zip(news, arrivals):
            if k <= final:
                delay = (at - t201[k - 1]) / 1e6
                delays.append(delay)
                windows[int((at - t201[0]) / 5e9)].append(delay)
    delays.sort()
    lasts = [x for r in reports for x in r["last"]]
    ended = sum((r["ended"] for r in reports), collections.Counter())
    dropped = sum(ended.values())
    missed = sum(1 for x in lasts if x is not None and x != final)
    max_gap = max(r["max_gap"] for r in reports) / 1e6
    client_share = [(b - a) / vote_wall for a, b in zip(client_cpu1, client_cpu2)]
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    print(f"votes: {final} answered 201 of {votes} in {voted['wall']:.1f} s (sender CPU {voted['cpu']:.1f} s, "
          f"send lateness p99 {voted['late_p99_ms']:.1f} ms); other answers: {dict(voted['statuses']) or 'none'}")
    print(f"fan-out delay over {len(delays)} updates: p50 {p50:.1f} ms, p90 {percentile(delays, 90):.1f} ms, "
          f"p99 {p99:.1f} ms, p99.9 {percentile(delays, 99.9):.1f} ms, max {delays[-1] if delays else 0:.1f} ms; "
          f"longest gap between updates on a stream while voting: {max_gap:.0f} ms")
    for w, values in sorted(windows.items()):
        values.sort()
        print(f"   {5 * w:3d}-{5 * w + 5:3d} s: {len(values):7d} updates, p50 {percentile(values, 50):7.1f} ms, "
              f"p99 {percentile(values, 99):7.1f} ms")
    print(f"instance while voting: CPU {cpu2 - cpu1:.1f} s over {vote_wall:.1f} s "
          f"({100 * (cpu2 - cpu1) / vote_wall:.0f} % of a core); RSS now {rss_now:.1f} MB, "
          f"peak {rss_hwm:.1f} MB (VmHWM)")
    busy = (machine2[0] - machine1[0]) / max(1, machine2[1] - machine1[1])
    print(f"machine while voting: {100 * busy:.0f} % busy over {os.cpu_count()} cores (everything: the stack, "
          f"the clients, whatever else runs)")
    print(f"stream clients while voting: {', '.join(f'{100 * s:.0f} %' for s in client_share)} of a core each"
          + ("  <<<<<<<<<< a client near saturation: raise CLIENTS" if max(client_share) > 0.9 else ""))

    limit = None
    if check_limit:
        limit = limit_check(uid(2, 2), uid(3, 21), tokens[votes:votes + check_votes])
        sent, ok, other, by_full, held, still_full = limit
        print(f"at the limit: api-1 held {held} idle connections and took no more; {ok}/{sent} votes through the "
              f"gateway answered 201 ({by_full} by api-1, over connections the gateway already had); other answers: "
              f"{dict(other) or 'none'}; api-1 still at its limit afterwards: {'yes' if still_full else 'NO'}")

    # The README's table (bench/summary.py) reads "streams" results: the setting only.
    default = (n_streams, rate, seconds, heartbeat) == (10_000, 1_000, 25, "15s") and not os.environ.get(
        "INSTANCE_WRAPPER")
    save_result("streams" if default else "streams_custom", {
        "streams": n_streams, "votes_per_s_asked": rate, "seconds": seconds, "heartbeat": heartbeat,
        "instance_threads": instance.threads, "established": open_count, "established_s": establish_s,
        "establish_failures": dict(failures), "instance_cpu_establishing_s": cpu_established - cpu0,
        "rss_open_mb": rss_open, "peak_rss_mb": rss_hwm, "votes_acked": final, "vote_wall_s": vote_wall,
        "vote_answers_other": {str(k): v for k, v in voted["statuses"].items()},
        "send_lateness_p99_ms": voted["late_p99_ms"], "updates": len(delays),
        "updates_per_stream_per_s": len(delays) / max(1, n_streams) / vote_wall,
        "fanout_p50_ms": p50, "fanout_p90_ms": percentile(delays, 90), "fanout_p99_ms": p99,
        "fanout_p999_ms": percentile(delays, 99.9), "fanout_max_ms": delays[-1] if delays else None,
        "dropped": dropped, "dropped_why": {str(k): v for k, v in ended.items()}, "missed": missed,
        "instance_cpu_voting_s": cpu2 - cpu1, "machine_busy": busy, "client_cpu_share": client_share,
        "limit_check": None if not limit else {"votes": limit[0], "ok": limit[1], "still_full": limit[5]},
    })

    print("\ngoal                                        measured")
    print(f"every stream established within {GOAL_ESTABLISH_S:.0f} s         {open_count}/{n_streams} in "
          f"{establish_s:.2f} s: {verdict(open_count == n_streams and establish_s <= GOAL_ESTABLISH_S)}")
    print(f"fan-out p99 < {GOAL_P99_MS:.0f} ms (250 ms window + 50)   p50 {p50:.0f} ms, p99 {p99:.0f} ms: "
          f"{verdict(p99 < GOAL_P99_MS)}")
    print(f"instance RSS < {GOAL_RSS_MB:.0f} MB                       peak {rss_hwm:.0f} MB: "
          f"{verdict(rss_hwm < GOAL_RSS_MB)}")
    print(f"no stream dropped, no update missed           dropped {dropped} {dict(ended) or ''}, missed {missed}: "
          f"{verdict(dropped == 0 and missed == 0 and open_count == n_streams)}")
    if limit:
        print(f"votes succeed with an instance at its limit   {limit[1]}/{limit[0]}: {verdict(limit[1] == limit[0])}")


if __name__ == "__main__":
    main()
