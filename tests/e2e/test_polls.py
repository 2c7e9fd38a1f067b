"""Polls and votes end to end, through nginx with 3 instances."""
import datetime
import json
import socket
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

import stack
from test_accounts import bearer, sign_in

G = stack.GATEWAY


def create(token, **fields):
    body = {"title": "Lunch?", "options": ["Pizza", "Sushi", "Salad"], **fields}
    return requests.post(f"{G}/v1/polls", json=body, headers=bearer(token), timeout=10)


def new_poll(token, **fields):
    """A poll for a test's setup: created, or the test stops here."""
    r = create(token, **fields)
    assert r.status_code == 201, r.text
    return r.json()


def close(token, poll_id):
    r = requests.post(f"{G}/v1/polls/{poll_id}/close", headers=bearer(token), timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "closed", r.text
    return r.json()


def vote(token, poll_id, option_ids, base=G):
    return requests.post(f"{base}/v1/polls/{poll_id}/votes", json={"option_ids": option_ids},
                         headers=bearer(token), timeout=10)


def results(token, poll_id):
    return requests.get(f"{G}/v1/polls/{poll_id}/results", headers=bearer(token), timeout=10)


def test_create_get_and_vote_once():
    _, owner = sign_in()
    r = create(owner["access_token"], max_choices=2)
    assert r.status_code == 201, r.text
    poll = r.json()
    assert r.headers["Location"] == f"/v1/polls/{poll['id']}"
    assert [o["text"] for o in poll["options"]] == ["Pizza", "Sushi", "Salad"]
    assert poll["status"] == "open" and poll["max_choices"] == 2
    assert requests.get(f"{G}/v1/polls/{poll['id']}", timeout=5).json() == poll
    ids = [o["id"] for o in poll["options"]]
    token = owner["access_token"]
    assert vote(token, poll["id"], [ids[1], ids[0]]).status_code == 201
    again = vote(token, poll["id"], [ids[0], ids[1]])  # same selection, other order: a safe retry
    assert again.status_code == 200
    assert sorted(again.json()["option_ids"]) == sorted(ids[:2])
    other = vote(token, poll["id"], [ids[2]])
    assert other.status_code == 409 and other.json()["code"] == "already_voted"
    me = requests.get(f"{G}/v1/polls/{poll['id']}/votes/me", headers=bearer(token), timeout=5)
    assert me.status_code == 200 and sorted(me.json()["option_ids"]) == sorted(ids[:2])
    res = results(token, poll["id"]).json()
    assert res["total_votes"] == 1
    assert [o["votes"] for o in res["options"]] == [1, 1, 0]


def test_one_user_200_concurrent_ballots_across_instances_make_exactly_one():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    ids = [o["id"] for o in poll["options"]]
    barrier = threading.Barrier(20)

    def cast(i):
        if i < 20:
            barrier.wait()
        choice = [ids[i % 3]]
        return choice, vote(token, poll["id"], choice, base=stack.api_url(i % stack.APIS + 1))

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(cast, range(200)))
    created = [c for c, r in outcomes if r.status_code == 201]
    assert len(created) == 1, [r.status_code for _, r in outcomes][:20]
    winner = created[0]
    for choice, r in outcomes:
        if r.status_code == 201:
            continue
        if choice == winner:
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 409 and r.json()["code"] == "already_voted", r.text
    res = results(token, poll["id"]).json()
    assert res["total_votes"] == 1
    assert sum(o["votes"] for o in res["options"]) == 1


def test_many_users_voting_at_once_give_exact_counts():
    _, owner = sign_in()
    poll = new_poll(owner["access_token"])
    ids = [o["id"] for o in poll["options"]]
    voters = [sign_in()[1]["access_token"] for _ in range(24)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda iv: vote(iv[1], poll["id"], [ids[iv[0] % 3]]).status_code,
                                 enumerate(voters)))
    assert statuses == [201] * len(voters)
    res = results(owner["access_token"], poll["id"]).json()
    assert res["total_votes"] == len(voters)
    assert [o["votes"] for o in res["options"]] == [8, 8, 8]


def test_closed_and_not_yet_open_polls_refuse_votes():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    close(token, poll["id"])
    r = vote(token, poll["id"], [poll["options"][0]["id"]])
    assert r.status_code == 409 and r.json()["code"] == "poll_closed"
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()
    future = new_poll(token, opens_at=later)
    assert future["status"] == "scheduled"
    r = vote(token, future["id"], [future["options"][0]["id"]])
    assert r.status_code == 409 and r.json()["code"] == "poll_closed"


def test_results_visibility_rules():
    _, owner = sign_in()
    _, voter = sign_in()
    poll = new_poll(owner["access_token"], results_visibility="after_vote")
    assert results(voter["access_token"], poll["id"]).status_code == 403
    assert results(voter["access_token"], poll["id"]).json()["code"] == "results_hidden"
    assert results(owner["access_token"], poll["id"]).status_code == 200, "the owner always sees them"
    assert vote(voter["access_token"], poll["id"], [poll["options"][0]["id"]]).status_code == 201
    seen = results(voter["access_token"], poll["id"])
    assert seen.status_code == 200 and seen.json()["total_votes"] == 1, seen.text
    hidden = new_poll(owner["access_token"], results_visibility="after_close")
    assert vote(voter["access_token"], hidden["id"], [hidden["options"][0]["id"]]).status_code == 201
    r = results(voter["access_token"], hidden["id"])
    assert r.status_code == 403 and r.json()["code"] == "results_hidden", r.text
    close(owner["access_token"], hidden["id"])
    r = results(voter["access_token"], hidden["id"])
    assert r.status_code == 200 and r.json()["total_votes"] == 1, r.text


def test_only_the_owner_closes_or_deletes():
    _, owner = sign_in()
    _, other = sign_in()
    poll = new_poll(owner["access_token"])
    for method, path in (("post", "close"), ("delete", "")):
        url = f"{G}/v1/polls/{poll['id']}" + (f"/{path}" if path else "")
        r = getattr(requests, method)(url, headers=bearer(other["access_token"]), timeout=5)
        assert r.status_code == 403 and r.json()["code"] == "not_owner"
    r = requests.delete(f"{G}/v1/polls/{poll['id']}", headers=bearer(owner["access_token"]), timeout=5)
    assert r.status_code == 204
    assert requests.get(f"{G}/v1/polls/{poll['id']}", timeout=5).status_code == 404


def test_bad_input_gets_4xx_with_codes():
    _, owner = sign_in()
    token = owner["access_token"]
    poll = new_poll(token)
    other = new_poll(token)
    cases = [
        (create(token, title=""), 422, "invalid_title"),
        (create(token, title="x" * 201), 422, "invalid_title"),
        (create(token, title=["not", "a", "string"]), 422, "invalid_title"),
        (create(token, options=["only one"]), 422, "invalid_options"),
        (create(token, options=[str(i) for i in range(21)]), 422, "invalid_options"),
        (create(token, options=["a", "a"]), 422, "invalid_options"),
        (create(token, options=["a", 1]), 422, "invalid_options"),
        (create(token, max_choices=4), 422, "invalid_max_choices"),
        (create(token, max_choices="2"), 422, "invalid_max_choices"),
        (create(token, results_visibility="never"), 422, "invalid_results_visibility"),
        (create(token, opens_at="tomorrow"), 422, "invalid_time"),
        (create(token, opens_at="2030-01-02T00:00:00Z", closes_at="2030-01-01T00:00:00Z"), 422, "invalid_time"),
        (vote(token, poll["id"], []), 422, "invalid_options"),
        (vote(token, poll["id"], ["not-a-uuid"]), 422, "invalid_options"),
        (vote(token, poll["id"], [poll["options"][0]["id"]] * 2), 422, "invalid_options"),
        (vote(token, poll["id"], [other["options"][0]["id"]]), 422, "invalid_options"),
        (vote(token, poll["id"], [o["id"] for o in poll["options"][:2]]), 422, "invalid_options"),
        (vote(token, "not-a-uuid", [poll["options"][0]["id"]]), 404, "not_found"),
        (vote(token, "01937b2e-5f3a-7c41-9d2e-6a8b4c1f0e27", [poll["options"][0]["id"]]), 404, "not_found"),
        (requests.post(f"{G}/v1/polls", json={"title": "x", "options": ["a", "b"]}, timeout=5), 401, "missing_token"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (code, response.status_code, response.text)
        assert response.json()["code"] == code, (code, response.text)
    # Nothing was stored by the refused ballots.
    me = requests.get(f"{G}/v1/polls/{poll['id']}/votes/me", headers=bearer(token), timeout=5)
    assert me.status_code == 404 and me.json()["code"] == "not_found", me.text
    assert results(token, poll["id"]).json()["total_votes"] == 0


def raw_get(address, target):
    """A GET of `target` exactly as written (an HTTP library would resolve dot segments
    before sending): (status, body)."""
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: nimbus\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def test_dot_segments_in_the_target_reach_nothing():
    gateway = (urllib.parse.urlparse(G).hostname, urllib.parse.urlparse(G).port)
    for address in (gateway, ("127.0.0.1", stack.API_BASE_PORT + 1)):
        for target in ("/v1/polls/../../etc/passwd", "/v1/polls/%2e%2e/%2e%2e/etc/passwd",
                       "/v1/polls/..%2f..%2fetc%2fpasswd", "/../../etc/passwd"):
            status, head, body = raw_get(address, target)
            where = (address, target, head[:200], body[:200])
            assert b"root:" not in body, where
            assert b"application/problem+json" in head, where
            # A route never matches (404); nginx refuses a path above the root itself (400).
            assert (status, json.loads(body)["code"]) in ((404, "not_found"), (400, "malformed_request")), where


def test_list_filters_and_paginates_newest_first():
    _, owner = sign_in()
    token = owner["access_token"]
    made = [new_poll(token, title=f"poll {i}")["id"] for i in range(5)]
    close(token, made[0])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"mine": "true", "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = requests.get(f"{G}/v1/polls", params=params, headers=bearer(token), timeout=5)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [p["id"] for p in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(made)), "newest first, every poll once"
    assert pages == 3
    open_ids = [p["id"] for p in requests.get(f"{G}/v1/polls", params={"mine": "true", "status": "open"},
                                              headers=bearer(token), timeout=5).json()["items"]]
    assert made[0] not in open_ids and set(made[1:]) <= set(open_ids)
    closed = requests.get(f"{G}/v1/polls", params={"mine": "true", "status": "closed"}, headers=bearer(token),
                          timeout=5).json()["items"]
    assert [p["id"] for p in closed] == [made[0]]
    for params, code in (({"limit": 0}, "invalid_limit"), ({"limit": 101}, "invalid_limit"),
                         ({"limit": "x"}, "invalid_limit"), ({"status": "both"}, "invalid_status"),
                         ({"cursor": "!!"}, "invalid_cursor")):
        r = requests.get(f"{G}/v1/polls", params=params, timeout=5)
        assert r.status_code == 422 and r.json()["code"] == code, (params, r.text)
    assert requests.get(f"{G}/v1/polls", params={"mine": "true"}, timeout=5).status_code == 401


def test_a_retried_creation_with_an_idempotency_key_returns_the_first_poll():
    _, owner = sign_in()
    token = owner["access_token"]
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    body = {"title": "Retry-safe?", "options": ["Yes", "No"]}

    def post(b=body, headers=key, base=G):
        return requests.post(f"{base}/v1/polls", json=b, headers={**bearer(token), **headers}, timeout=10)
    first = post()
    assert first.status_code == 201, first.text
    # The answer was lost; the client sends the same request again, to any instance.
    again = [post(base=stack.api_url(i)) for i in (1, 2, 3)]
    for r in again:
        assert r.status_code == 201
        assert r.json()["id"] == first.json()["id"]
        assert r.headers["Idempotent-Replayed"] == "true"
    mine = requests.get(f"{G}/v1/polls?mine=true&status=all", headers=bearer(token), timeout=10).json()
    assert [p["id"] for p in mine["items"]] == [first.json()["id"]]
    # The same key with another request is refused; another user's same key is theirs.
    other = post(b={"title": "Something else", "options": ["A", "B"]})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    _, stranger = sign_in()
    theirs = requests.post(f"{G}/v1/polls", json=body, headers={**bearer(stranger["access_token"]), **key}, timeout=10)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    for bad in ("", "x" * 256, "tab\there"):
        r = post(headers={"Idempotency-Key": bad})
        assert r.status_code == 422 and r.json()["code"] == "invalid_idempotency_key", bad


def iso_in(seconds):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)).isoformat()


def status_of(poll_id):
    r = requests.get(f"{G}/v1/polls/{poll_id}", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["status"]


def test_a_scheduled_poll_opens_and_closes_by_itself():
    _, owner = sign_in()
    _, voter = sign_in()
    token = owner["access_token"]
    # Times a few seconds ahead: the clock passing them is the point. The waits end at
    # the change (5 s of headroom past each time, for a loaded machine and the 1 s
    # cache of a poll's facts).
    poll = new_poll(token, opens_at=iso_in(3), closes_at=iso_in(7))
    opens, closes = (datetime.datetime.fromisoformat(poll[k].replace("Z", "+00:00")).timestamp()
                     for k in ("opens_at", "closes_at"))
    option = poll["options"][0]["id"]
    assert poll["status"] == "scheduled"
    early = vote(token, poll["id"], [option])
    assert early.status_code == 409 and early.json()["code"] == "poll_closed", early.text

    stack.wait_until(lambda: status_of(poll["id"]) == "open", timeout=opens - time.time() + 5, interval=0.2,
                     what="the poll opened at its opens_at")
    assert time.time() >= opens - 1, "opened before its time"
    assert vote(token, poll["id"], [option]).status_code == 201
    assert vote(voter["access_token"], poll["id"], [option]).status_code == 201

    stack.wait_until(lambda: status_of(poll["id"]) == "closed", timeout=closes - time.time() + 5, interval=0.2,
                     what="the poll closed at its closes_at")
    assert time.time() >= closes - 1, "closed before its time"
    # Every instance refuses votes now, and the results are final and visible.
    for i in range(1, stack.APIS + 1):
        late = vote(stack.mint_users(1)[0], poll["id"], [option], base=stack.api_url(i))
        assert late.status_code == 409 and late.json()["code"] == "poll_closed", (i, late.text)
    res = results(token, poll["id"]).json()
    assert res["total_votes"] == 2 and res["closed"] is True, res
    closed = requests.get(f"{G}/v1/polls", params={"mine": "true", "status": "closed"}, headers=bearer(token),
                          timeout=5).json()["items"]
    assert [p["id"] for p in closed] == [poll["id"]]


def test_a_scheduled_poll_is_not_listed_as_open():
    """`GET /v1/polls?status=open` lists what one can vote in now: a poll whose opens_at
    is ahead shows `status: scheduled` and refuses votes, so it is not among them."""
    _, owner = sign_in()
    token = owner["access_token"]
    later = new_poll(token, opens_at=iso_in(3600))
    assert later["status"] == "scheduled"
    listed = requests.get(f"{G}/v1/polls", params={"mine": "true", "status": "open"}, headers=bearer(token),
                          timeout=5).json()["items"]
    assert [(p["id"], p["status"]) for p in listed if p["id"] == later["id"]] == [], \
        "a scheduled poll is listed under status=open"
