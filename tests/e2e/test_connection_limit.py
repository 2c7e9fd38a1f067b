"""An API instance at its connection limit (NIMBUS_HTTP_MAX_CONNECTIONS) costs no
request sent through the gateway (issue 15: with 10,000 live-results streams on one
instance, a vote the gateway routed to it failed with 503 too_many_connections).

The instance stops listening at its limit, so the gateway's connect is refused and the
request goes to another instance; once a connection closes, it listens again. Here
api-1 is filled with kept-alive connections of the test's own until it takes no more."""
import resource
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


HELLO = b"GET /healthz HTTP/1.1\r\nHost: api-1\r\n\r\n"


def fill(port, held):
    """Opens connections to `port`, each making one request and then staying open (a
    kept-alive client), until one is refused or answered 503 (the instance is at its
    limit). Connections that never send a byte would not do: at the limit the instance
    closes the oldest of those to make room. Returns how many were turned away."""
    while len(held) < 50_000:
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(HELLO)
            status_line = s.recv(65536).split(b"\r\n", 1)[0]
        except OSError:
            s.close()
            return 1
        if status_line.split()[1:2] != [b"200"]:
            s.close()
            return 1
        held.append(s)
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
