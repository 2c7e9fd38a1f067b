"""The simulation and drill machinery (sim/) in seconds, so it cannot silently rot: a
short closed- and open-model vote simulation, one short drill under load, and the
checkers shown to catch loss — fed the drill's results file with one acknowledged vote
missing and one image stored twice, they fail. The full runs (minutes) are
`./stack sim|drill|report`, never part of `./stack test`."""
import copy
import json
import os
import subprocess
import sys

import pytest

import stack  # noqa: F401  (the stack's variables, as every suite)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAIN = os.path.join(ROOT, "sim", "main.py")


def sim(out, *args, timeout=150):
    env = dict(os.environ)
    env.pop("NIMBUS_STACK_ENV", None)  # the stack under test: NIMBUS_STACK_RUN names it
    return subprocess.run([sys.executable, MAIN, "--out", str(out), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("sim")


def test_short_vote_simulation_closed_and_open_model(out):
    r = sim(out, "sim", "votes", "--short")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    closed, open_ = load(out / "sim-votes-closed.json"), load(out / "sim-votes-open.json")
    for data in (closed, open_):
        assert data["checks"]["passed"], data["checks"]
        assert data["checks"]["votes"]["acknowledged"] > 0
        assert len(data["samples"]["t"]) == data["summary"]["requests"] > 0
        assert data["timeline"] and data["phases"]
    assert [p["users"] for p in closed["phases"]] == [4, 8]
    # Every virtual user signed in by the email-code flow (plus the owner who seeds polls).
    verify = closed["summary"]["endpoints"]["POST /v1/auth/email/verify"]["statuses"]
    assert closed["notes"]["signed_in"] == 8 and verify.get("200", 0) >= 8
    assert all("rate" in p and "schedule_lag_ms" in p for p in open_["phases"])


def test_short_drill_under_load_is_checked(out):
    r = sim(out, "drill", "gateway-reload", "--short")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = load(out / "drill-gateway-reload.json")
    assert data["checks"]["passed"], data["checks"]
    assert any(label.startswith("nginx reload") for _, label in data["events"])
    assert data["checks"]["votes"]["acknowledged"] >= 20
    assert data["notes"]["recovery_s"] >= 0 and "disturbance" in data["notes"]


def test_checkers_catch_a_lost_vote_and_a_duplicate_image(out):
    path = out / "drill-gateway-reload.json"
    data = load(path)
    assert sim(out, "check", str(path)).returncode == 0, "the real results pass"

    bad = copy.deepcopy(data)
    # One acknowledged vote missing from the ballot table...
    poll, user, *_ = bad["ledger"]["votes_acked"][0]
    bad["observed"]["votes"]["ballots"] = [b for b in bad["observed"]["votes"]["ballots"] if (b[0], b[1]) != (poll, user)]
    # ...and one accepted image stored twice (a row and its objects again).
    images = bad["observed"]["images"]
    if not bad["ledger"]["uploads_accepted"]:  # the short drill's uploader was slow: stage one
        row = ["0190d8e4-0000-7000-8000-000000000001", "ready", "image/jpeg", "1000", "8", "8", "0" * 64, user]
        bad["ledger"]["uploads_accepted"].append([row[0], user, 1000, "JPEG", 1.0])
        images["images"].append(row)
        images["variants"] += [[row[0], n, "8", "8", "image/webp", "10"] for n in ("thumb", "preview")]
        images["objects"] += [f"originals/{row[0]}", f"variants/{row[0]}/thumb", f"variants/{row[0]}/preview"]
    image_id = bad["ledger"]["uploads_accepted"][0][0]
    images["images"] += [r for r in images["images"] if r[0] == image_id]
    doctored = out / "doctored.json"
    with open(doctored, "w", encoding="utf-8") as f:
        json.dump(bad, f)

    r = sim(out, "check", str(doctored))
    assert r.returncode == 1, r.stdout[-2000:]
    verdict = json.loads(r.stdout)
    assert not verdict["passed"]
    assert verdict["votes"]["missing_count"] == 1 and verdict["votes"]["missing"][0][:2] == [poll, user]
    assert not verdict["images"]["passed"]
    assert {"image": image_id, "rows": 2} in verdict["images"]["duplicates"]


def test_an_upload_cut_off_by_the_end_of_a_run_is_an_unknown_outcome(monkeypatch):
    """A run ends by killing its virtual users, some in the middle of a request. An upload
    cut off that way may still have been stored, so the image checker must count it as
    'outcome unknown to the client', as it does a lost connection (a real full run failed
    its check on two such images)."""
    sys.path.insert(0, os.path.join(ROOT, "sim"))
    import gevent  # noqa: E402  (the simulation's own dependencies)
    import users  # noqa: E402

    ledger = users.Ledger()
    recorder = type("Recorder", (), {"now": lambda self: 0.0})()
    client = users.Client(0, recorder=recorder, ledger=ledger, mailbox=None, base="http://127.0.0.1:9")
    in_call = gevent.event.Event()

    def call_that_never_answers(*_args, **_kwargs):
        in_call.set()
        gevent.sleep(60)

    monkeypatch.setattr(client, "call", call_that_never_answers)
    image = type("Image", (), {"name": "a.jpg", "content_type": "image/jpeg", "data": b"x", "format": "JPEG"})()
    uploader = gevent.spawn(client.upload, image, False)
    assert in_call.wait(timeout=5)
    uploader.kill()  # what the end of a run does
    assert ledger.uploads_sent == 1 and not ledger.uploads_accepted
    assert ledger.uploads_unknown == 1, "an upload without an answer is an unknown outcome"

    # An answered upload is not unknown.
    answered = type("Response", (), {"status": 202, "json": lambda self: {"id": "i-1"}})()
    monkeypatch.setattr(client, "call", lambda *_a, **_k: answered)
    assert client.upload(image, False) == "i-1"
    assert ledger.uploads_sent == 2 and ledger.uploads_unknown == 1
