"""Accounts end to end: through nginx to 3 API instances, codes read from maildev's REST
API as a person reads their inbox. The test stack runs with a 6 s code TTL, a 2 s resend
cooldown and a 3 s refresh grace window (see app_env in deploy/local/lib.sh)."""
import base64
import json
import os
import random
import re
import threading
import time
import uuid

import jwt
import requests

import private
import stack
from stack import psql

MAILDEV = os.environ["NIMBUS_TEST_MAILDEV"]
ISSUER = os.environ["NIMBUS_TEST_AUTH_ISSUER"]
JSON = {"Content-Type": "application/json"}


def new_email():
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def start(email, base=stack.GATEWAY):
    return requests.post(f"{base}/v1/auth/email/start", json={"email": email}, timeout=10)


def mails_to(email):
    return [m for m in requests.get(f"{MAILDEV}/email", timeout=5).json()
            if any(t["address"] == email for t in m["to"])]


def code_in(mail):
    found = re.search(r"\b(\d{6})\b", mail["text"])
    assert found, mail["text"]
    return found.group(1)


# How long a mail may take through the outbox, RabbitMQ, a worker and SMTP: seconds
# normally; generous, since a loaded machine (or a drill that stops the workers) slows it
# and the wait ends as soon as the mail is there.
MAIL_WAIT = 60


# A mail carries a 6-digit code, or (once short codes are closed for the address or the
# asking client) a long one: 20 digits in groups of four.
LONG_CODE = re.compile(r"\b(\d{4}(?:[ -]\d{4}){4})\b")


def sign_in_code(mail):
    found = LONG_CODE.search(mail["text"])
    return found.group(1) if found else code_in(mail)


def next_mail(email, seen, timeout=MAIL_WAIT):
    """The first email to `email` beyond the `seen` it already had."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        mails = mails_to(email)
        if len(mails) > seen:
            return mails[seen]
        time.sleep(0.05)
    raise AssertionError(f"no new email for {email}")


def next_code(email, seen, timeout=MAIL_WAIT):
    """The 6-digit code of the first email to `email` beyond the `seen` it already had."""
    return code_in(next_mail(email, seen, timeout))


def verify(email, code, base=stack.GATEWAY):
    return requests.post(f"{base}/v1/auth/email/verify", json={"email": email, "code": code}, timeout=10)


def start_after_cooldown(email, timeout=15):
    """POST start once the address's resend cooldown (2 s on the test stack) is over."""
    deadline = time.monotonic() + timeout
    while True:
        r = start(email)
        if r.status_code != 429 or r.json().get("code") != "resend_cooldown" or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def sign_in(email=None):
    """Signs in by email code (a setup step for most tests). The test stack's codes live
    6 s; a mail slower than that (a loaded machine) gets a new code, at most twice."""
    email = email or new_email()
    for _ in range(3):
        seen = len(mails_to(email))
        r = start_after_cooldown(email)
        assert r.status_code == 202, r.text
        r = verify(email, sign_in_code(next_mail(email, seen)))
        if r.status_code == 401 and r.json().get("code") == "code_expired":
            continue
        assert r.status_code == 200, r.text
        return email, r.json()
    raise AssertionError(f"every code for {email} expired before it arrived")


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------------------
# Other clients: an instance sees the address the gateway forwards (X-Forwarded-For with
# the gateway's proof), so a test is a client of its choosing by talking to an instance
# the way the gateway does. Through the gateway itself every test is 127.0.0.1.

SETTINGS = private.instance_env()
GATEWAY_SECRET = private.gateway_secret()


def setting(name, default):
    """One of the instances' numeric settings (the app's default where the stack sets none)."""
    return int(str(SETTINGS.get(name, default)).rstrip("s"))


CODE_TTL = setting("NIMBUS_AUTH_CODE_TTL", 600)
CODE_ATTEMPTS = setting("NIMBUS_AUTH_CODE_ATTEMPTS", 5)
ADDRESS_DAILY = setting("NIMBUS_AUTH_DAILY_ATTEMPTS", 20)
CLIENT_DAILY = setting("NIMBUS_AUTH_CLIENT_DAILY_ATTEMPTS", 10)
DAILY_CODES = setting("NIMBUS_AUTH_DAILY_CODES", 10)
# What docs/adr/0009 states: wrong 6-digit guesses evaluated against live codes, per
# address per day, whatever the number of clients and codes.
GUESS_BOUND = min(ADDRESS_DAILY, DAILY_CODES * CODE_ATTEMPTS)


def attacker_client():
    """A client address of its own: an IPv4 /32 or an IPv6 /64 (documentation ranges)."""
    if random.random() < 0.5:
        return f"198.51.100.{random.randrange(1, 255)}" if random.random() < 0.5 else \
            f"203.0.113.{random.randrange(1, 255)}"
    return f"2001:db8:{random.randrange(1 << 16):x}:{random.randrange(1 << 16):x}::{random.randrange(1, 1 << 16):x}"


def as_client(ip):
    return {"X-Nimbus-Gateway": GATEWAY_SECRET, "X-Forwarded-For": ip}


def start_from(ip, email, instance=1):
    return requests.post(f"{stack.api_url(instance)}/v1/auth/email/start", json={"email": email},
                         headers=as_client(ip), timeout=10)


def verify_from(ip, email, code, instance=1):
    return requests.post(f"{stack.api_url(instance)}/v1/auth/email/verify", json={"email": email, "code": code},
                         headers=as_client(ip), timeout=10)


def attack(victim, askers, guessers, rounds):
    """An attacker without the mailbox: `askers` take turns asking for a code for `victim`
    (each goes to the victim's mailbox), then every one of `guessers` guesses it, each
    until refused. Returns (guesses answered `invalid_code` while a code the attacker
    asked for was live, codes sent). Ends early once a whole round had no guess taken."""
    taken = sent = 0
    for i in range(rounds):
        asker = askers[i % len(askers)]
        r = start_from(asker, victim)
        while r.status_code == 429 and r.json()["code"] == "resend_cooldown":
            time.sleep(0.2)
            r = start_from(asker, victim)
        assert r.status_code == 202, r.text
        sent += 1
        live_until = time.monotonic() + CODE_TTL - 1
        this_round = 0
        for ip in guessers:
            for _ in range(CODE_ATTEMPTS + 1):
                if time.monotonic() > live_until:
                    break
                r = verify_from(ip, victim, f"{random.randrange(10 ** 6):06d}")
                assert r.status_code in (401, 429), r.text
                if r.status_code == 429:
                    assert r.json()["code"] == "too_many_attempts", r.text
                    break
                assert r.json()["code"] == "invalid_code", r.text
                this_round += 1
        taken += this_round
        if this_round == 0:
            break
    return taken, sent


def owner_signs_in(email, sent_before):
    """The owner, through the gateway (a client the attacker is not), asks for a code and
    signs in with what the mail says, once every mail the attacker caused is in."""
    stack.wait_until(lambda: len(mails_to(email)) >= sent_before, timeout=MAIL_WAIT, what="the attacker's mails")
    for _ in range(3):
        seen = len(mails_to(email))
        r = start_after_cooldown(email)
        assert r.status_code == 202, r.text
        r = verify(email, sign_in_code(next_mail(email, seen)))
        if r.status_code == 401 and r.json().get("code") == "code_expired":
            continue  # a loaded machine: the mail came after the test stack's 6 s
        assert r.status_code == 200, r.text
        return r.json(), seen + 1
    raise AssertionError(f"every code for {email} expired before it arrived")


def test_happy_path_and_me():
    email, tokens = sign_in()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["user"]["email"] == email
    me = requests.get(f"{stack.GATEWAY}/v1/me", headers=bearer(tokens["access_token"]), timeout=5)
    assert me.status_code == 200
    assert me.json()["id"] == tokens["user"]["id"]
    assert me.json()["email"] == email
    # The same address signs in to the same account.
    _, again = sign_in(email)
    assert again["user"]["id"] == tokens["user"]["id"]


def test_access_token_verifies_against_the_published_jwks():
    _, tokens = sign_in()
    jwks = requests.get(f"{stack.GATEWAY}/.well-known/jwks.json", timeout=5).json()
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    claims = jwt.decode(tokens["access_token"], key.key, algorithms=["EdDSA"], audience="nimbus-api", issuer=ISSUER)
    assert set(claims) >= {"iss", "aud", "sub", "sid", "jti", "iat", "exp"}
    assert claims["exp"] - claims["iat"] == 900


def test_start_answers_alike_for_new_and_known_addresses():
    known, _ = sign_in()
    a, b = start_after_cooldown(known), start(new_email())
    assert a.status_code == b.status_code == 202
    assert a.json() == b.json() == {"status": "sent"}


def test_five_wrong_codes_burn_the_code_and_a_new_one_works():
    email = new_email()
    assert start(email).status_code == 202
    code = next_code(email, 0)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        r = verify(email, wrong)
        assert r.status_code == 401 and r.json()["code"] == "invalid_code"
    r = verify(email, code)
    assert r.status_code == 429
    assert r.json()["code"] == "too_many_attempts"
    # The code is burnt; asking again gives a fresh one, with its own attempts.
    assert start_after_cooldown(email).status_code == 202
    r = verify(email, sign_in_code(next_mail(email, 1)))
    assert r.status_code == 200, r.text


def test_expired_code_is_refused():
    email = new_email()
    assert start(email).status_code == 202
    code = next_code(email, 0)
    time.sleep(7)  # the test stack's code TTL is 6 s
    r = verify(email, code)
    assert r.status_code == 401
    assert r.json()["code"] == "code_expired"


def test_a_code_works_once():
    email = new_email()
    assert start(email).status_code == 202
    code = next_code(email, 0)
    first = verify(email, code)
    assert first.status_code == 200, first.text
    r = verify(email, code)
    assert r.status_code == 401 and r.json()["code"] == "invalid_code", r.text
    assert "access_token" not in r.json()
    # The second use opened no session.
    user = first.json()["user"]["id"]
    assert psql(f"SELECT count(*) FROM sessions WHERE user_id = '{user}'") == "1"


def test_resend_cooldown_and_a_new_code_voids_the_old_one():
    email = new_email()
    assert start(email).status_code == 202
    first = next_code(email, 0)
    again = start(email)
    assert again.status_code == 429
    assert again.json()["code"] == "resend_cooldown"
    assert int(again.headers["Retry-After"]) >= 1
    assert start_after_cooldown(email).status_code == 202
    second = next_code(email, 1)
    if second != first:  # (one in a million they are equal)
        assert verify(email, first).status_code == 401, "the old code is void"
    assert verify(email, second).status_code == 200


def test_refresh_rotates_and_reuse_after_the_grace_window_revokes_the_session():
    _, tokens = sign_in()
    old = tokens["refresh_token"]
    r = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": old}, timeout=5)
    assert r.status_code == 200
    fresh = r.json()
    assert fresh["refresh_token"] != old
    time.sleep(4)  # past the test stack's 3 s grace window (the deadline is the point; 1 s of headroom)
    reuse = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": old}, timeout=5)
    assert reuse.status_code == 401
    assert reuse.headers["WWW-Authenticate"].startswith("Bearer")
    # Theft detected: the whole session is gone, the new pair included.
    r = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}, timeout=5)
    assert r.status_code == 401
    me = requests.get(f"{stack.GATEWAY}/v1/me", headers=bearer(fresh["access_token"]), timeout=5)
    assert me.status_code == 401


def test_two_concurrent_refreshes_with_the_same_token_both_succeed():
    _, tokens = sign_in()
    results = []

    def refresh(base):
        results.append(requests.post(f"{base}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]},
                                     timeout=10))

    threads = [threading.Thread(target=refresh, args=(stack.api_url(i),)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    for r in results:
        me = requests.get(f"{stack.GATEWAY}/v1/me", headers=bearer(r.json()["access_token"]), timeout=5)
        assert me.status_code == 200
    # One session, one chain: the replay got the very successor the first exchange
    # issued, not a second token that would live on independently.
    assert results[0].json()["refresh_token"] == results[1].json()["refresh_token"]


def test_a_replay_in_the_grace_window_gets_the_newest_token_of_the_chain():
    _, tokens = sign_in()
    first = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]},
                          timeout=5)
    assert first.status_code == 200
    second = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]},
                           timeout=5)
    assert second.status_code == 200
    # The original token, replayed within its grace window (a retry after a lost answer):
    # it gets the chain's newest token, and the session stays one chain.
    replay = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]},
                           timeout=5)
    assert replay.status_code == 200, replay.text
    assert replay.json()["refresh_token"] == second.json()["refresh_token"]
    newest = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": replay.json()["refresh_token"]},
                           timeout=5)
    assert newest.status_code == 200


def test_new_codes_do_not_reset_a_clients_daily_budget_and_then_come_long():
    """An attacker who asks for a new code after every few guesses is stopped all the
    same: one client gets CLIENT_DAILY wrong guesses per address per day (CODE_ATTEMPTS
    per code). Then the same client's next code comes in its long form and signs in."""
    email = new_email()
    wrong_total, seen = 0, 0
    refused = None
    for _ in range(CLIENT_DAILY):
        assert start_after_cooldown(email).status_code == 202
        code = next_code(email, seen)
        seen += 1
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(CODE_ATTEMPTS - 1):
            r = verify(email, wrong)
            if r.status_code == 429:
                refused = r
                break
            assert r.json()["code"] == "invalid_code"
            wrong_total += 1
        if refused is not None:
            break
    assert refused is not None, "the budget never ran out"
    assert wrong_total == CLIENT_DAILY
    assert refused.json()["code"] == "too_many_attempts"
    assert 1 <= int(refused.headers["Retry-After"]) <= 24 * 3600  # until the UTC day ends
    # The 6-digit code is refused unseen now, right or not; a new code comes long.
    r = verify(email, code)
    assert r.status_code == 429 and r.json()["code"] == "too_many_attempts"
    assert start_after_cooldown(email).status_code == 202
    mail = next_mail(email, seen)
    assert LONG_CODE.search(mail["text"]), mail["text"]
    assert "many sign-in attempts" in mail["text"]
    r = verify(email, sign_in_code(mail))
    assert r.status_code == 200, r.text
    # Single use, like any code.
    r = verify(email, sign_in_code(mail))
    assert r.status_code == 401 and r.json()["code"] == "invalid_code", r.text


def test_nobody_without_the_mailbox_can_stop_the_owner_signing_in():
    """Issue 22, item 2: wrong codes from other clients, with no code outstanding or
    against codes the attacker asks for, from one client and from several: the owner
    still asks for a code and signs in with the one the mail gives."""
    victim = new_email()
    one = attacker_client()
    # Made-up codes while no code is outstanding: three days' worth of the address's budget.
    for _ in range(3 * ADDRESS_DAILY):
        r = verify_from(one, victim, f"{random.randrange(10 ** 6):06d}")
        assert r.status_code in (401, 429) and r.status_code < 500, r.text
    _, sent = owner_signs_in(victim, 0)
    # Codes the attacker asks for (they reach the owner's mailbox) guessed until refused:
    # from one client, then from several (IPv4 and IPv6 /64s).
    _, more = attack(victim, [one], [one], rounds=2 * DAILY_CODES)
    _, sent = owner_signs_in(victim, sent + more)
    several = [attacker_client() for _ in range(4)]
    _, more = attack(victim, several, several, rounds=2 * DAILY_CODES)
    _, sent = owner_signs_in(victim, sent + more)
    # And the attacker carrying on meanwhile changes nothing for the owner.
    _, more = attack(victim, several, several, rounds=3)
    owner_signs_in(victim, sent + more)


def test_guessing_an_address_stays_bounded_whatever_the_number_of_clients():
    """Wrong 6-digit guesses taken against live codes of one address, from as many
    clients as it takes, never exceed the stated daily bound; past it a fresh client's
    guess is refused unseen."""
    victim = new_email()
    asker = attacker_client()
    guessers = [attacker_client() for _ in range(2 * ADDRESS_DAILY // CLIENT_DAILY + 2)]
    taken, sent = attack(victim, [asker], guessers, rounds=DAILY_CODES)
    assert 0 < taken <= GUESS_BOUND, (taken, GUESS_BOUND)
    again, more = attack(victim, [asker], [attacker_client()], rounds=2)
    assert again == 0, "guessing went on past the bound"


def test_code_expired_is_told_only_to_whoever_holds_the_code():
    email = new_email()
    assert start(email).status_code == 202
    code = next_code(email, 0)
    time.sleep(7)  # the test stack's code TTL is 6 s
    wrong = "000000" if code != "000000" else "111111"
    # A stranger learns nothing about whether this address asked for a code lately.
    r = verify(email, wrong)
    assert r.status_code == 401 and r.json()["code"] == "invalid_code"
    assert verify(new_email(), wrong).json()["code"] == "invalid_code"
    # The owner of the code hears why it failed.
    r = verify(email, code)
    assert r.status_code == 401 and r.json()["code"] == "code_expired"


def test_non_ascii_addresses_get_422_not_an_account():
    for email in ("jörg@example.com", "user@bücher.example", "用户@例子.广告"):
        r = start(email)
        assert r.status_code == 422 and r.json()["code"] == "invalid_email", email
        r = verify(email, "123456")
        assert r.status_code == 422 and r.json()["code"] == "invalid_email", email


def test_instances_trust_forwarded_addresses_only_from_the_gateway():
    """Any local process can reach an instance directly; forging X-Forwarded-For there
    must not move its requests to another address's rate limit (nor reach /metrics)."""
    forged = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    for headers in ({"X-Forwarded-For": forged}, {"X-Forwarded-For": forged, "X-Nimbus-Gateway": "guess-" * 4}):
        r = requests.post(f"{stack.api_url(1)}/v1/auth/email/start", json={"email": new_email()}, headers=headers,
                          timeout=5)
        assert r.status_code == 202
    assert stack.redis_cli("--scan", "--pattern", f"auth:rl:start:{forged}:*") == ""
    # Through the gateway, the client's own X-Forwarded-For is replaced by its address.
    r = start(new_email())
    assert r.status_code == 202
    assert stack.redis_cli("--scan", "--pattern", f"auth:rl:start:{forged}:*") == ""
    assert stack.redis_cli("--scan", "--pattern", "auth:rl:start:127.0.0.1:*") != ""
    assert requests.get(f"{stack.api_url(1)}/metrics", timeout=5).status_code == 404
    ops = requests.get(f"http://127.0.0.1:{stack.OPS_BASE_PORT + 1}/metrics", timeout=5)
    assert ops.status_code == 200 and "nimbus_http_requests_total" in ops.text


def test_logout_on_one_instance_rejects_the_token_on_another_at_once():
    _, tokens = sign_in()
    token = tokens["access_token"]
    assert requests.get(f"{stack.api_url(2)}/v1/me", headers=bearer(token), timeout=5).status_code == 200
    out = requests.post(f"{stack.api_url(1)}/v1/auth/logout", headers=bearer(token), json={"scope": "local"},
                        timeout=5)
    assert out.status_code == 204
    for i in range(1, stack.APIS + 1):
        r = requests.get(f"{stack.api_url(i)}/v1/me", headers=bearer(token), timeout=5)
        assert r.status_code == 401, f"api-{i}"
    r = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=5)
    assert r.status_code == 401


def test_global_logout_ends_every_session_of_the_user():
    email, first = sign_in()
    _, second = sign_in(email)
    r = requests.post(f"{stack.GATEWAY}/v1/auth/logout", headers=bearer(first["access_token"]),
                      json={"scope": "global"}, timeout=5)
    assert r.status_code == 204
    for tokens in (first, second):
        assert requests.get(f"{stack.GATEWAY}/v1/me", headers=bearer(tokens["access_token"]),
                            timeout=5).status_code == 401
        assert requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]},
                             timeout=5).status_code == 401


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_forged_tokens_get_401_with_www_authenticate():
    _, tokens = sign_in()
    header, payload, signature = tokens["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    jwks = requests.get(f"{stack.GATEWAY}/.well-known/jwks.json", timeout=5).json()
    public_raw = base64.urlsafe_b64decode(jwks["keys"][0]["x"] + "==")
    none_header = b64(b'{"alg":"none","typ":"JWT"}')
    unknown_kid = b64(b'{"alg":"EdDSA","typ":"JWT","kid":"nope"}')
    forged = {
        "alg none": f"{none_header}.{payload}.",
        "hs256 with public key": jwt.encode(claims, public_raw, algorithm="HS256", headers={"kid": "k1"}),
        "tampered payload": f"{header}.{b64(json.dumps({**claims, 'sub': str(uuid.uuid4())}).encode())}.{signature}",
        "unknown kid": f"{unknown_kid}.{payload}.{signature}",
        "garbage": "not-a-token",
    }
    for name, token in forged.items():
        r = requests.get(f"{stack.GATEWAY}/v1/me", headers=bearer(token), timeout=5)
        assert r.status_code == 401, name
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="nimbus", error="invalid_token"', name
        assert r.json()["code"] == "invalid_token", name
    r = requests.get(f"{stack.GATEWAY}/v1/me", timeout=5)
    assert r.status_code == 401 and r.json()["code"] == "missing_token"
    assert "error=" not in r.headers["WWW-Authenticate"]


def test_bad_input_gets_clear_4xx():
    url = f"{stack.GATEWAY}/v1/auth/email/start"
    cases = [
        (requests.post(url, data="{", headers=JSON, timeout=5), 400, "malformed_json"),
        (requests.post(url, data="email=a@b.co", timeout=5), 415, "unsupported_media_type"),
        (requests.post(url, json=["a@b.co"], timeout=5), 422, "invalid_body"),
        (requests.post(url, json={}, timeout=5), 422, "invalid_email"),
        (requests.post(url, json={"email": 42}, timeout=5), 422, "invalid_email"),
        (requests.post(url, json={"email": "not-an-email"}, timeout=5), 422, "invalid_email"),
        (requests.post(url, json={"email": "a" * 400 + "@x.io"}, timeout=5), 422, "invalid_email"),
        (requests.post(url, json={"email": "x@y.z", "pad": "p" * 10000}, timeout=5), 413, "payload_too_large"),
        (requests.post(f"{stack.GATEWAY}/v1/auth/email/verify", json={"email": "a@b.co", "code": 123456},
                       timeout=5), 422, "invalid_code_format"),
        (requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": None}, timeout=5), 422,
         "invalid_refresh_token"),
        (requests.post(f"{stack.GATEWAY}/v1/auth/refresh", json={"refresh_token": "x" * 43}, timeout=5), 401,
         "invalid_token"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (code, response.status_code, response.text)
        assert response.headers["Content-Type"] == "application/problem+json", code
        assert response.json()["code"] == code


def test_browser_mode_keeps_the_refresh_token_in_an_httponly_cookie():
    email = new_email()
    assert start(email).status_code == 202
    code = next_code(email, 0)
    r = requests.post(f"{stack.GATEWAY}/v1/auth/email/verify", json={"email": email, "code": code, "cookie": True},
                      timeout=5)
    assert r.status_code == 200
    assert "refresh_token" not in r.json()
    set_cookie = r.headers["Set-Cookie"]
    assert set_cookie.startswith("nimbus_refresh=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/v1/auth"):
        assert attribute in set_cookie
    cookie = set_cookie.split(";")[0]
    refreshed = requests.post(f"{stack.GATEWAY}/v1/auth/refresh", headers={"Cookie": cookie}, timeout=5)
    assert refreshed.status_code == 200, refreshed.text
    assert "refresh_token" not in refreshed.json()
    new_cookie = refreshed.headers["Set-Cookie"].split(";")[0]
    assert new_cookie != cookie
    out = requests.post(f"{stack.GATEWAY}/v1/auth/logout", headers={**bearer(refreshed.json()["access_token"]),
                                                                     "Cookie": new_cookie}, timeout=5)
    assert out.status_code == 204
    assert "Max-Age=0" in out.headers["Set-Cookie"]
