"""Live results (SSE), the Redis tally and 500 voters at once, through the stack."""
import json
import queue
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import requests

import stack
from test_accounts import bearer, sign_in
from test_polls import G, new_poll, results, vote


psql = stack.psql


mint_users = stack.mint_users


class Stream:
    """Reads an SSE stream on a thread; events and comments land in a queue, and every
    event is also kept in order (`events`). How the stream ended is recorded: `error` is
    None only for a clean end (for a chunked response, its terminating zero-length
    chunk); a reset or a connection cut mid-stream is an error, unless the test itself
    closed the response."""

    def __init__(self, base, poll_id, token):
        self.response = requests.get(f"{base}/v1/polls/{poll_id}/results/stream", headers=bearer(token),
                                     stream=True, timeout=(5, 30))
        self.items = queue.Queue()
        self.events = []
        self.ended = threading.Event()
        self.error = None
        self.closing = False
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        event = {}
        try:
            for line in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                if line.startswith(":"):
                    self.items.put(("comment", line))
                elif line.startswith("event: "):
                    event["event"] = line[7:]
                elif line.startswith("data: "):
                    event["data"] = line[6:]
                elif line == "" and event:
                    self.events.append(event)
                    self.items.put(("event", event))
                    event = {}
        except Exception as e:  # noqa: BLE001 (anything but a clean end is recorded)
            if not self.closing:
                self.error = repr(e)
        self.ended.set()

    def next_event(self, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            kind, item = self.items.get(timeout=max(0.01, deadline - time.monotonic()))
            if kind == "event":
                return item

    def end_reason(self, timeout):
        """The reason of the stream's `end` event, once the stream has ended cleanly after it."""
        deadline = time.monotonic() + timeout
        while True:
            e = self.next_event(timeout=deadline - time.monotonic())
            if e.get("event") == "end":
                assert self.ended.wait(timeout=5), "the stream went on after its end event"
                assert self.error is None, f"the stream broke off after its end event: {self.error}"
                assert self.events[-1] is e, f"events after the end event: {self.events[self.events.index(e):]}"
                return json.loads(e["data"])["reason"]

    def assert_ended_cleanly(self, timeout, what):
        assert self.ended.wait(timeout), f"{what}: the stream did not end within {timeout}s"
        assert self.error is None, f"{what}: the stream broke off instead of ending: {self.error}"
        assert self.response.headers.get("Transfer-Encoding", "").lower() == "chunked", self.response.headers

    def events_until(self, predicate, timeout=5):
        """Events seen until one satisfies predicate (inclusive)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            e = self.next_event(timeout=deadline - time.monotonic())
            seen.append(json.loads(e["data"]))
            if predicate(seen[-1]):
                return seen

    def close(self):
        self.closing = True
        self.response.close()


def test_stream_on_one_instance_sees_a_vote_cast_on_another():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    stream = Stream(stack.api_url(1), poll["id"], token)
    assert stream.response.status_code == 200
    assert stream.response.headers["Content-Type"] == "text/event-stream"
    first = json.loads(stream.next_event()["data"])
    assert first["total_votes"] == 0 and first["poll_id"] == poll["id"]
    assert vote(token, poll["id"], [poll["options"][1]["id"]], base=stack.api_url(2)).status_code == 201
    seen = stream.events_until(lambda r: r["total_votes"] == 1)
    assert [o["votes"] for o in seen[-1]["options"]] == [0, 1, 0]
    stream.close()


def test_stream_through_the_gateway_coalesces_a_burst_and_beats():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    voters = mint_users(120)
    stream = Stream(G, poll["id"], token)
    assert stream.response.status_code == 200
    stream.next_event()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda v: vote(v, poll["id"], [poll["options"][0]["id"]]).status_code, voters))
    assert statuses == [201] * len(voters)
    seen = stream.events_until(lambda r: r["total_votes"] == len(voters), timeout=10)
    elapsed = time.monotonic() - started
    # At most one event per coalescing interval (250 ms) plus the one in flight.
    assert len(seen) <= elapsed / 0.25 + 2, (len(seen), elapsed)
    assert seen[-1]["options"][0]["votes"] == len(voters)
    # Idle: heartbeats (the test stack beats every second).
    kind, item = stream.items.get(timeout=5)
    assert kind == "comment" and "heartbeat" in item
    stream.close()


def test_stream_respects_visibility_and_unknown_polls():
    _, owner = sign_in()
    _, other = sign_in()
    hidden = new_poll(owner["access_token"], results_visibility="after_close")
    r = requests.get(f"{G}/v1/polls/{hidden['id']}/results/stream", headers=bearer(other["access_token"]), timeout=5)
    assert r.status_code == 403 and r.json()["code"] == "results_hidden"
    r = requests.get(f"{G}/v1/polls/{uuid.uuid4()}/results/stream", headers=bearer(other["access_token"]), timeout=5)
    assert r.status_code == 404
    r = requests.get(f"{G}/v1/polls/{hidden['id']}/results/stream", timeout=5)
    assert r.status_code == 401


def test_closing_and_deleting_reach_the_stream():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    stream = Stream(stack.api_url(3), poll["id"], token)
    assert stream.response.status_code == 200
    stream.next_event()
    closed = requests.post(f"{G}/v1/polls/{poll['id']}/close", headers=bearer(token), timeout=5)
    assert closed.status_code == 200, closed.text
    stream.events_until(lambda r: r["closed"])
    deleted = requests.delete(f"{G}/v1/polls/{poll['id']}", headers=bearer(token), timeout=5)
    assert deleted.status_code == 204, deleted.text
    # Ended by the server, cleanly, with the closed results last (no `end` event: that
    # one tells a client to refresh its token).
    stream.assert_ended_cleanly(10, "a deleted poll ends its streams")
    assert stream.events[-1].get("event") == "results" and json.loads(stream.events[-1]["data"])["closed"]


def test_sigterm_ends_open_streams_cleanly_and_exits_zero():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    victim = "api:api-2"
    log_offset = len(stack.supervisor_log())
    streams = [Stream(stack.api_url(2), poll["id"], token) for _ in range(5)]
    for s in streams:
        assert s.response.status_code == 200
        s.next_event()
    pid = stack.signal_program(victim, signal.SIGTERM)
    # They end at once (README: "on SIGTERM streams end at once so clients reconnect");
    # 10 s is headroom for a loaded machine, well under the 15 s shutdown timeout that
    # would cut them instead.
    for s in streams:
        s.assert_ended_cleanly(10, "the stream ends when its instance shuts down")
        assert [e.get("event") for e in s.events] == ["results"], s.events
    stack.wait_until(lambda: stack.exit_status_logged("api-2", log_offset) is not None, timeout=20,
                     what="api-2 exit logged")
    assert stack.exit_status_logged("api-2", log_offset) == 0
    stack.wait_running(victim, pid)
    stack.wait_until(lambda: requests.get(f"{stack.api_url(2)}/readyz", timeout=2).status_code == 200, timeout=20,
                     what="api-2 ready again")


def test_500_voters_at_once_results_equal_the_ballot_table():
    _, owner = sign_in()
    poll = new_poll(owner["access_token"], max_choices=2)
    ids = [o["id"] for o in poll["options"]]
    voters = mint_users(500)

    def cast(i):
        choice = [ids[i % 3]] if i % 4 else sorted([ids[0], ids[2]])
        return vote(voters[i], poll["id"], choice, base=stack.api_url(i % stack.APIS + 1)).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(cast, range(len(voters))))
    assert statuses == [201] * len(voters)
    res = results(owner["access_token"], poll["id"]).json()
    table = dict(row.split("|") for row in psql(
        f"SELECT option_id, count(*) FROM ballot_choices WHERE poll_id = '{poll['id']}' GROUP BY option_id").splitlines())
    assert res["total_votes"] == int(psql(f"SELECT count(*) FROM ballots WHERE poll_id = '{poll['id']}'")) == 500
    assert {o["id"]: o["votes"] for o in res["options"] if o["votes"]} == {k: int(v) for k, v in table.items()}


def test_tally_lost_from_redis_is_rebuilt_from_postgres():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    voters = mint_users(30)
    for i, v in enumerate(voters):
        assert vote(v, poll["id"], [poll["options"][i % 3]["id"]]).status_code == 201
    expected = [10, 10, 10]
    stack.redis_cli("DEL", f"poll:{{{poll['id']}}}:tally", f"poll:{{{poll['id']}}}:ballots")
    # Exact at once (from PostgreSQL), and rebuilt in Redis behind the scenes.
    assert [o["votes"] for o in results(token, poll["id"]).json()["options"]] == expected
    stack.wait_until(lambda: stack.redis_cli("HGET", f"poll:{{{poll['id']}}}:tally", "_ready") == "1", timeout=10,
                     what="tally rebuilt")
    # Retried ballots (a client that never heard its 201) are not counted twice.
    for i, v in enumerate(voters[:5]):
        assert vote(v, poll["id"], [poll["options"][i % 3]["id"]]).status_code == 200
    assert [o["votes"] for o in results(token, poll["id"]).json()["options"]] == expected
    # "Did I vote?" answers from the rebuilt hash and from PostgreSQL alike.
    me = requests.get(f"{G}/v1/polls/{poll['id']}/votes/me", headers=bearer(voters[0]), timeout=5)
    assert me.status_code == 200 and me.json()["option_ids"] == [poll["options"][0]["id"]]


def test_a_ballot_committed_but_never_counted_is_counted_by_the_reconciler():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    option = poll["options"][2]["id"]
    (voter,) = mint_users(1)
    user = jwt.decode(voter, options={"verify_signature": False})["sub"]
    # What an API instance killed between COMMIT and counting leaves behind: the poll
    # marked active (done before writing), the ballot committed, no count.
    stack.redis_cli("ZADD", "tally:active", str(int(time.time())), poll["id"])
    psql(f"INSERT INTO ballots (poll_id, user_id, option_ids) VALUES ('{poll['id']}', '{user}', '{{{option}}}');"
         f"INSERT INTO ballot_choices VALUES ('{poll['id']}', '{user}', '{option}')")
    stack.wait_until(lambda: results(token, poll["id"]).json()["total_votes"] == 1, timeout=15,
                     what="the reconciler counted the ballot")
    assert [o["votes"] for o in results(token, poll["id"]).json()["options"]] == [0, 0, 1]
    me = requests.get(f"{G}/v1/polls/{poll['id']}/votes/me", headers=bearer(voter), timeout=5)
    assert me.json()["option_ids"] == [option]


def test_a_stream_ends_when_its_token_expires():
    _, owner = sign_in()
    poll = new_poll(owner["access_token"])
    token = mint_users(1, ttl=3)[0]
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    stream = Stream(stack.GATEWAY, poll["id"], token)
    assert stream.response.status_code == 200
    assert stream.end_reason(timeout=15) == "token_expired"
    # At the expiry, not before it (the claim is in whole seconds) and not long after:
    # the bound is 5 s of headroom for a loaded machine, while a stream that waited for
    # anything but its expiry (another heartbeat, a vote) would never end here.
    ended = time.time()
    assert expires - 1 <= ended <= expires + 5, (ended, expires)
    # The same expired token opens no new stream: refused, or (within the 30 s leeway
    # for clock skew that access checks allow) ended at once.
    again = Stream(stack.GATEWAY, poll["id"], token)
    if again.response.status_code == 200:
        assert again.end_reason(timeout=2) == "token_expired"
    else:
        assert again.response.status_code == 401


def test_a_stream_ends_when_its_session_is_signed_out():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    stream = Stream(stack.api_url(1), poll["id"], token)
    assert stream.response.status_code == 200
    stream.next_event()  # the opening results
    # Signed out through another instance: the stream's next check (every heartbeat, 1 s
    # on the test stack) finds the session revoked.
    out = requests.post(f"{stack.api_url(2)}/v1/auth/logout", headers=bearer(token), json={"scope": "local"},
                        timeout=5)
    assert out.status_code == 204
    assert stream.end_reason(timeout=5) == "token_revoked"


def test_live_streams_are_capped_per_user():
    _, owner = sign_in()
    poll = new_poll(owner["access_token"])
    token = mint_users(1)[0]
    streams = [Stream(stack.api_url(i % stack.APIS + 1), poll["id"], token) for i in range(8)]
    try:
        assert [s.response.status_code for s in streams] == [200] * 8
        over = requests.get(f"{stack.GATEWAY}/v1/polls/{poll['id']}/results/stream", headers=bearer(token),
                            timeout=5)
        assert over.status_code == 429
        assert over.json()["code"] == "too_many_streams"
        assert int(over.headers["Retry-After"]) >= 1
        # Another user is not affected.
        other = Stream(stack.GATEWAY, poll["id"], mint_users(1)[0])
        assert other.response.status_code == 200
        other.close()
        # A stream closed by its client gives its slot back (noticed at its next write).
        streams.pop().close()

        def opens():
            s = Stream(stack.GATEWAY, poll["id"], token)
            if s.response.status_code == 200:
                streams.append(s)
                return True
            return False
        stack.wait_until(opens, timeout=10, interval=0.5, what="a slot given back")
    finally:
        for s in streams:
            s.close()


def test_a_stream_whose_slot_is_gone_ends_when_the_slots_are_taken():
    _, owner = sign_in()
    poll = new_poll(owner["access_token"])
    token = mint_users(1)[0]
    key = "live:streams:" + jwt.decode(token, options={"verify_signature": False})["sub"]
    cap = 8
    old = [Stream(stack.api_url(i % stack.APIS + 1), poll["id"], token) for i in range(cap)]
    new = []
    try:
        assert [s.response.status_code for s in old] == [200] * cap
        assert int(stack.redis_cli("ZCARD", key)) == cap
        # The slots vanish (a Redis failover, an eviction): new streams take them, and the
        # old ones, at their next renewal (a heartbeat, 1 s on the test stack), find no
        # slot of theirs and none free.
        stack.redis_cli("DEL", key)

        def open_one(i):
            return Stream(stack.api_url(i % stack.APIS + 1), poll["id"], token)
        with ThreadPoolExecutor(max_workers=16) as pool:
            for s in pool.map(open_one, range(200)):
                if s.response.status_code == 200:
                    new.append(s)
                else:
                    assert s.response.status_code == 429, s.response.status_code
                    s.close()
        assert 1 <= len(new) <= cap, len(new)

        def settled():
            return sum(not s.ended.is_set() for s in old + new) == cap
        stack.wait_until(settled, timeout=10, interval=0.2, what=f"only {cap} streams left open")
        ended = [s for s in old if s.ended.is_set()]
        assert len(ended) == len(new) > 0
        for s in ended:
            assert s.end_reason(timeout=1) == "too_many_streams"
        assert all(not s.ended.is_set() for s in new)
        assert int(stack.redis_cli("ZCARD", key)) == cap
    finally:
        for s in old + new:
            s.close()


def test_head_requests_on_a_stream_keep_no_slot():
    _, owner = sign_in()
    poll = new_poll(owner["access_token"])
    token = mint_users(1)[0]
    url = f"/v1/polls/{poll['id']}/results/stream"
    for i in range(12):  # more than the cap of 8
        head = requests.head(stack.api_url(i % stack.APIS + 1) + url, headers=bearer(token), timeout=5)
        assert head.status_code == 200, (i, head.status_code)
        assert head.headers["Content-Type"] == "text/event-stream"
    stream = Stream(stack.GATEWAY, poll["id"], token)
    try:
        assert stream.response.status_code == 200
    finally:
        stream.close()
