"""An API instance at its connection limit (NIMBUS_HTTP_MAX_CONNECTIONS) costs no
request sent through the gateway (issue 15: with 10,000 live-results streams on one
instance, a vote the gateway routed to it failed with 503 too_many_connections).

The instance stops listening at its limit, so the gateway's connect is refused and the
request goes to another instance; once a connection closes, it listens again. Here
api-1 is filled with idle connections of the test's own until it takes no more."""
import resource
import select
import socket
import time

import requests

import stack
from test_polls import G, new_poll, vote


def setting_of(program, name, default):
    """A setting of a running instance, from its environment."""
    with open(f"/proc/{stack.pid_of(program)}/environ", "rb") as f:
        env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
    return int(env.get(name.encode(), str(default).encode()))


def fill(port, held):
    """Opens connections to `port` until one is refused or answered (a 503 for one that
    was waiting in the kernel's queue): the instance is at its limit. Returns how many
    were turned away in the last round."""
    while len(held) < 50_000:
        batch = []
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            batch.append(s)
        poller = select.poll()
        for s in batch:
            poller.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
        answered = dict(poller.poll(300))
        turned_away = 0
        for s in batch:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or answered.get(s.fileno()):
                turned_away += 1
                s.close()
            else:
                held.append(s)
        if turned_away:
            return turned_away
    raise AssertionError(f"api-1 took {len(held)} connections and kept taking more")


def test_votes_go_to_another_instance_while_one_is_at_its_connection_limit():
    limit = setting_of("api:api-1", "NIMBUS_HTTP_MAX_CONNECTIONS", 10_000)
    needed = limit + 1_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed:
        try:  # root may raise its hard limit (a fresh machine's may be 4,096)
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        except (ValueError, OSError):
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= needed, f"this test holds {limit} connections: RLIMIT_NOFILE hard limit is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    owner, *voters = stack.mint_users(1 + 10 * stack.APIS)
    poll = new_poll(owner)
    option = poll["options"][0]["id"]
    port = stack.API_BASE_PORT + 1
    held = []
    try:
        fill(port, held)
        # The gateway's idle connections to api-1 expire (its keepalive_timeout is 1 s),
        # so its next request to api-1 needs a new connection; their places are taken.
        time.sleep(1.5)  # past the gateway's 1 s keepalive_timeout: the time is the point
        fill(port, held)
        answers = [vote(token, poll["id"], [option]) for token in voters]
        assert [r.status_code for r in answers] == [201] * len(voters), [(r.status_code, r.text) for r in answers]
        assert len(held) >= limit - 200, f"api-1 took only {len(held)} of its {limit} connections"
    finally:
        for s in held:
            s.close()
    r = requests.get(f"{G}/v1/polls/{poll['id']}/results", headers={"Authorization": f"Bearer {owner}"}, timeout=5)
    assert r.json()["total_votes"] == len(voters), r.text

    def listening():
        try:
            return requests.get(f"{stack.api_url(1)}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    stack.wait_until(listening, timeout=10, interval=0.1, what="api-1 listening again")
    stack.wait_all_in_rotation()  # leave the gateway as it was found
