"""What the shared test instances turn off or make too long to wait for, on an API
instance of the suite's own (private.py): per-IP sign-in limits, which address they
count (X-Forwarded-For only with the gateway's secret; IPv6 by /64), and refresh-token
idle and absolute expiry.

Each test owns its data: addresses from the documentation ranges (RFC 5737, RFC 3849),
random per run, and fresh email addresses."""
import secrets
import time

import pytest
import requests

import stack
from private import PrivateInstance, gateway_secret, start_of_a_fresh_minute
from test_accounts import mails_to, new_email, next_code

START_LIMIT, VERIFY_LIMIT = 3, 4


@pytest.fixture(scope="module")
def limited():
    with PrivateInstance(NIMBUS_AUTH_IP_START_PER_MINUTE=START_LIMIT,
                         NIMBUS_AUTH_IP_VERIFY_PER_MINUTE=VERIFY_LIMIT) as instance:
        yield instance


def random_v4():
    """An address of the documentation ranges no request counted against this minute
    (a previous run may have used the same one moments ago)."""
    while True:
        ip = f"{secrets.choice(('192.0.2', '198.51.100', '203.0.113'))}.{secrets.randbelow(254) + 1}"
        if rate_keys(ip) == "" and stack.redis_cli("--scan", "--pattern", f"auth:rl:verify:{ip}:*") == "":
            return ip


def random_v6_prefix():
    """A /64 of 2001:db8::/32 of this run's own."""
    return f"2001:db8:{secrets.randbelow(0xffff):x}:{secrets.randbelow(0xffff):x}"


def start(instance, forwarded=None, secret=None, email=None):
    headers = {}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    if secret:
        headers["X-Nimbus-Gateway"] = secret
    return requests.post(f"{instance.url}/v1/auth/email/start", json={"email": email or new_email()},
                         headers=headers, timeout=10)


def rate_keys(subject):
    return stack.redis_cli("--scan", "--pattern", f"auth:rl:start:{subject}:*")


def assert_limited(r):
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited", r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 60, r.headers


def test_starts_per_address_are_limited_and_addresses_do_not_share(limited):
    secret = gateway_secret()
    used, other = random_v4(), random_v4()
    start_of_a_fresh_minute()
    for _ in range(START_LIMIT):
        assert start(limited, used, secret).status_code == 202
    assert_limited(start(limited, used, secret))
    assert start(limited, other, secret).status_code == 202, "another address has its own budget"
    # Through a chain of proxies, the address the gateway appended (the last) counts.
    assert_limited(start(limited, f"{other}, {used}", secret))


def test_forwarded_addresses_count_only_with_the_gateways_secret(limited):
    forged = random_v4()
    assert rate_keys(forged) == ""
    for secret in (None, "guess-" * 6, gateway_secret()[:-1] + "x"):
        start(limited, forged, secret)
        assert rate_keys(forged) == "", f"X-Forwarded-For trusted with secret {secret!r}"
    start(limited, forged, gateway_secret())
    assert rate_keys(forged) != "", "with the secret, the forwarded address is the one counted"


def test_ipv6_clients_are_limited_per_64(limited):
    secret = gateway_secret()
    prefix, neighbour = random_v6_prefix(), random_v6_prefix()
    start_of_a_fresh_minute()
    # One /64 is one subscriber: its addresses share a budget.
    for host in ("::1", "::2", ":ffff:ffff:ffff:ffff")[:START_LIMIT]:
        assert start(limited, f"{prefix}{host}", secret).status_code == 202
    assert_limited(start(limited, f"{prefix}::abcd", secret))
    assert start(limited, f"{neighbour}::1", secret).status_code == 202, "the next /64 is someone else"
    # An IPv4 address written as IPv6 counts as that IPv4 address.
    v4 = random_v4()
    start_of_a_fresh_minute()
    for _ in range(START_LIMIT):
        assert start(limited, v4, secret).status_code == 202
    assert_limited(start(limited, f"::ffff:{v4}", secret))


def test_code_guesses_per_address_are_limited_across_addresses(limited):
    """Guessing codes for many emails from one address meets the per-IP verify limit."""
    secret = gateway_secret()
    ip = random_v4()
    headers = {"X-Forwarded-For": ip, "X-Nimbus-Gateway": secret}
    start_of_a_fresh_minute()
    for _ in range(VERIFY_LIMIT):
        r = requests.post(f"{limited.url}/v1/auth/email/verify", json={"email": new_email(), "code": "123456"},
                          headers=headers, timeout=10)
        assert r.status_code == 401 and r.json()["code"] == "invalid_code", r.text
    r = requests.post(f"{limited.url}/v1/auth/email/verify", json={"email": new_email(), "code": "123456"},
                      headers=headers, timeout=10)
    assert_limited(r)


# --------------------------------------------------------------------------------------
# Refresh tokens: idle and absolute expiry (the stack's own are 14 and 30 days).

IDLE, ABSOLUTE = 5, 13  # seconds


@pytest.fixture(scope="module")
def short_sessions():
    with PrivateInstance(NIMBUS_AUTH_REFRESH_IDLE=f"{IDLE}s", NIMBUS_AUTH_REFRESH_ABSOLUTE=f"{ABSOLUTE}s",
                         NIMBUS_AUTH_REFRESH_GRACE="1s") as instance:
        yield instance


def sign_in_at(instance):
    email = new_email()
    seen = len(mails_to(email))
    r = requests.post(f"{instance.url}/v1/auth/email/start", json={"email": email}, timeout=10)
    assert r.status_code == 202, r.text
    r = requests.post(f"{instance.url}/v1/auth/email/verify", json={"email": email, "code": next_code(email, seen)},
                      timeout=10)
    assert r.status_code == 200, r.text
    return r.json(), time.monotonic()


def refresh(instance, token):
    return requests.post(f"{instance.url}/v1/auth/refresh", json={"refresh_token": token}, timeout=10)


def test_a_refresh_token_left_unused_expires_after_the_idle_time(short_sessions):
    tokens, _ = sign_in_at(short_sessions)
    r = refresh(short_sessions, tokens["refresh_token"])
    assert r.status_code == 200, r.text
    newest = r.json()["refresh_token"]
    time.sleep(IDLE + 1.5)  # the idle time is the point: unused for longer than it
    r = refresh(short_sessions, newest)
    assert r.status_code == 401 and r.json()["code"] == "invalid_token", r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_session_in_use_still_ends_at_its_absolute_lifetime(short_sessions):
    tokens, signed_in = sign_in_at(short_sessions)
    token = tokens["refresh_token"]
    # Used every 2 s (well within the idle time): it keeps working... (until 5 s before
    # the absolute end: headroom for a slow request on a loaded machine)
    while time.monotonic() - signed_in < ABSOLUTE - 5:
        time.sleep(2)  # the pace of use is the point: more often than the idle time
        r = refresh(short_sessions, token)
        assert r.status_code == 200, (time.monotonic() - signed_in, r.text)
        token = r.json()["refresh_token"]
    # ... until its absolute lifetime, counted from the sign-in, is over.
    time.sleep(max(0.0, ABSOLUTE + 1.5 - (time.monotonic() - signed_in)))  # past the absolute lifetime
    r = refresh(short_sessions, token)
    assert r.status_code == 401 and r.json()["code"] == "invalid_token", r.text
    # The access token of that session is not refreshed either way; a new sign-in works.
    again, _ = sign_in_at(short_sessions)
    assert refresh(short_sessions, again["refresh_token"]).status_code == 200



USER_POLLS, USER_VOTES, USER_UPLOADS = 3, 3, 2


def test_creating_polls_voting_and_uploading_are_limited_per_user_and_minute():
    from test_images import jpeg  # (Pillow: only this test of the suite needs it)

    with PrivateInstance(NIMBUS_LIMIT_POLLS_PER_MINUTE=USER_POLLS, NIMBUS_LIMIT_VOTES_PER_MINUTE=USER_VOTES,
                         NIMBUS_LIMIT_UPLOADS_PER_MINUTE=USER_UPLOADS) as instance:
        token, other = stack.mint_users(2)

        def post(path, who, headers=None, **kwargs):
            return requests.post(f"{instance.url}{path}", headers={"Authorization": f"Bearer {who}", **(headers or {})},
                                 timeout=30, **kwargs)

        def new_poll(who):
            return post("/v1/polls", who, json={"title": "Lunch?", "options": ["Pizza", "Sushi"]})

        def vote(who, poll):
            return post(f"/v1/polls/{poll['id']}/votes", who, json={"option_ids": [poll["options"][0]["id"]]})

        start_of_a_fresh_minute(needed=30)  # every count below in one window
        polls = [new_poll(token) for _ in range(USER_POLLS)]
        assert [p.status_code for p in polls] == [201] * USER_POLLS, [p.text for p in polls]
        polls = [p.json() for p in polls]
        assert_limited(new_poll(token))
        theirs = new_poll(other)
        assert theirs.status_code == 201, "another user's limit is their own"

        assert [vote(token, p).status_code for p in polls] == [201] * USER_VOTES
        assert_limited(vote(token, theirs.json()))
        assert vote(other, polls[0]).status_code == 201

        # Streamed and direct uploads count together, and a refused one reads no byte.
        picture = jpeg(16, 16)
        first = post("/v1/images", token, data=picture, headers={"Content-Type": "image/jpeg"})
        assert first.status_code == 202, first.text
        reserved = post("/v1/images/uploads", token, json={"content_type": "image/jpeg", "bytes": len(picture)})
        assert reserved.status_code == 201, reserved.text
        assert_limited(post("/v1/images", token, data=picture, headers={"Content-Type": "image/jpeg"}))
        assert_limited(post("/v1/images/uploads", token, json={"content_type": "image/jpeg", "bytes": len(picture)}))
        assert post("/v1/images", other, data=picture, headers={"Content-Type": "image/jpeg"}).status_code == 202
