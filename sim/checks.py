"""Jepsen-style checkers: what clients were told (the ledger) against what the system
holds afterwards (the observation: ballot table, published results, image rows,
storage). The checkers are pure functions of a results file, so they can be fed a
doctored one and be seen to fail (tests/e2e/test_sim.py); collecting the observation
from a live stack is separate.

Votes: every acknowledged vote (201/200) is stored exactly once with its selection; no
ballot is stored that no client sent; the published results equal the ballot table.
Images: every accepted upload (202) ends `ready` with its original and both variants in
storage, none duplicated, none stuck; with `deep`, every object is read back (format,
dimensions, the original's SHA-256)."""
import collections
import hashlib
import io
import time

import gevent
import gevent.pool

import stackenv

STUCK = ("uploading", "queued", "processing")


def _ids_sql(ids):
    return ",".join(f"'{i}'" for i in sorted(ids)) or "NULL"


# ---------------------------------------------------------------------- votes

def observe_votes(ledger, reader=None):
    polls = set(ledger["polls"]) | {p for p, _, _ in ledger["votes_sent"]}
    if not polls:
        return {"ballots": [], "table": {}, "results": {}}
    ballots = stackenv.psql_rows(
        f"SELECT poll_id, user_id, array_to_string(option_ids, ',') FROM ballots WHERE poll_id IN ({_ids_sql(polls)})")
    table = collections.defaultdict(lambda: {"total": 0, "options": collections.Counter()})
    for poll, _, options in ballots:
        table[poll]["total"] += 1
        for o in options.split(","):
            table[poll]["options"][o] += 1
    results = {}
    if reader is not None:
        for poll in sorted(polls):
            r = reader.call("GET /v1/polls/{id}/results (check)", "GET", f"/v1/polls/{poll}/results")
            if r is not None and r.status == 200:
                body = r.json()
                results[poll] = {"total": body["total_votes"],
                                 "options": {o["id"]: o["votes"] for o in body["options"] if o["votes"]}}
            elif r is not None and r.status == 404:
                results[poll] = None  # deleted: nothing published
    return {"ballots": ballots, "table": {p: {"total": t["total"], "options": dict(t["options"])}
                                          for p, t in table.items()}, "results": results}


def check_votes(ledger, observed):
    stored = collections.defaultdict(list)
    for poll, user, options in observed["ballots"]:
        stored[(poll, user)].append(options)
    sent = {(p, u) for p, u, _ in ledger["votes_sent"]}
    acked = {}
    for p, u, o, *_ in ledger["votes_acked"]:
        acked[(p, u)] = o
    missing = [[p, u, o, stored.get((p, u), [])] for (p, u), o in acked.items() if stored.get((p, u)) != [o]]
    duplicates = [[p, u, v] for (p, u), v in stored.items() if len(v) > 1]
    # A ballot of one of the run's users that none of its clients sent. (Ballots of other
    # users are not the run's: the stack may be shared, and voters vote in any open poll.)
    ours = set(ledger["users"])
    phantom = [[p, u] for (p, u) in stored if u in ours and (p, u) not in sent]
    mismatched = []
    for poll, published in observed.get("results", {}).items():
        if published is None:
            continue
        table = observed["table"].get(poll, {"total": 0, "options": {}})
        if published["total"] != table["total"] or published["options"] != table["options"]:
            mismatched.append({"poll": poll, "published": published, "table": table})
    passed = not (missing or duplicates or phantom or mismatched)
    return {"passed": passed, "acknowledged": len(acked), "sent": len(sent), "stored": len(stored),
            "missing": missing[:20], "missing_count": len(missing), "duplicates": duplicates[:20],
            "duplicate_count": len(duplicates), "phantom": phantom[:20], "phantom_count": len(phantom),
            "results_mismatch": mismatched[:10], "results_mismatch_count": len(mismatched),
            "polls_checked": len(observed.get("results", {}))}


# ---------------------------------------------------------------------- images

def observe_images(ledger, deep=False, uploaded=None):
    """Rows of every image of the run's users, their variant rows, and the storage
    objects under their keys; `deep` reads every object back."""
    users = set(ledger["users"])
    accepted = {i for i, *_ in ledger["uploads_accepted"]}
    if not users and not accepted:
        return {"images": [], "variants": [], "objects": [], "readback": {}}
    rows = stackenv.psql_rows(
        "SELECT id, status, content_type, bytes, coalesce(width, 0), coalesce(height, 0), coalesce(sha256, ''), "
        f"owner_id FROM images WHERE owner_id IN ({_ids_sql(users)}) OR id IN ({_ids_sql(accepted)})")
    ids = {r[0] for r in rows} | accepted
    variants = stackenv.psql_rows(
        f"SELECT image_id, name, width, height, content_type, bytes FROM image_variants WHERE image_id IN ({_ids_sql(ids)})")
    objects = []
    # Image ids are UUIDv7 (time first): one listing per common prefix, then filtered.
    for prefix in sorted({i[:8] for i in ids}):
        for key in stackenv.s3_list(f"originals/{prefix}") + stackenv.s3_list(f"variants/{prefix}"):
            image_id = key.split("/")[1]
            if image_id in ids:
                objects.append(key)
    readback = {}
    if deep:
        readback = read_back(rows, variants, uploaded or {})
    return {"images": rows, "variants": variants, "objects": objects, "readback": readback}


def read_back(rows, variants, uploaded):
    """Every ready image's three objects from storage: the original's SHA-256 and
    size, each variant's real format and dimensions (decoded with Pillow)."""
    from PIL import Image  # noqa: PLC0415

    per = collections.defaultdict(dict)
    for image_id, name, w, h, ct, size in variants:
        per[image_id][name] = (int(w), int(h), ct, int(size))
    out = {}
    pool = gevent.pool.Pool(8)

    def one(row):
        image_id, status, ct, size, width, height, sha = row[:7]
        if status != "ready":
            return
        found = {}
        code, body = stackenv.s3_get(f"originals/{image_id}")
        found["original"] = {"status": code, "bytes": len(body), "sha256_ok": hashlib.sha256(body).hexdigest() == sha,
                             "size_ok": len(body) == int(size)}
        if image_id in uploaded:
            found["original"]["same_as_sent"] = hashlib.sha256(body).hexdigest() == uploaded[image_id]
        for name in ("thumb", "preview"):
            code, body = stackenv.s3_get(f"variants/{image_id}/{name}")
            entry = {"status": code, "bytes": len(body)}
            try:
                img = Image.open(io.BytesIO(body))
                entry.update(format=img.format, width=img.width, height=img.height)
            except Exception as e:  # noqa: BLE001
                entry["error"] = repr(e)[:100]
            row_v = per[image_id].get(name)
            ok = code == 200 and row_v is not None and entry.get("width") == row_v[0] and entry.get("height") == row_v[1]
            if name == "thumb":
                ok = ok and entry.get("format") == "WEBP" and (entry.get("width"), entry.get("height")) == (256, 256)
            else:
                w, h = entry.get("width") or 0, entry.get("height") or 0
                ok = ok and entry.get("format") == "JPEG" and max(w, h) <= 1280 and min(w, h) > 0
                if int(width) and int(height) and w and h:
                    # Same shape as the original (or its EXIF-rotated self), within rounding.
                    r0, r1 = int(width) / int(height), w / h
                    ok = ok and (abs(r0 - r1) / r0 < 0.02 or abs(1 / r0 - r1) * r0 < 0.02)
            entry["ok"] = ok
            found[name] = entry
        out[image_id] = found

    for row in rows:
        pool.spawn(one, row)
    pool.join()
    return out


def check_images(ledger, observed):
    rows = collections.defaultdict(list)
    for r in observed["images"]:
        rows[r[0]].append(r)
    accepted = [i for i, *_ in ledger["uploads_accepted"]]
    accepted_set = set(accepted)
    variant_rows = collections.Counter((v[0], v[1]) for v in observed["variants"])
    objects = collections.Counter(observed["objects"])
    duplicates, not_ready, stuck, missing_rows, missing_objects = [], [], [], [], []
    for image_id, n in collections.Counter(accepted).items():
        if n > 1:
            duplicates.append({"image": image_id, "accepted": n})
    for image_id, rs in rows.items():
        if len(rs) > 1:
            duplicates.append({"image": image_id, "rows": len(rs)})
    for (image_id, name), n in variant_rows.items():
        if n > 1:
            duplicates.append({"image": image_id, "variant": name, "rows": n})
    for key, n in objects.items():
        if n > 1:
            duplicates.append({"object": key, "listed": n})
    for image_id in accepted_set:
        rs = rows.get(image_id)
        if not rs:
            missing_rows.append(image_id)
            continue
        status = rs[0][1]
        if status in STUCK:
            stuck.append([image_id, status])
        elif status != "ready":
            not_ready.append([image_id, status])
        else:
            for key in (f"originals/{image_id}", f"variants/{image_id}/thumb", f"variants/{image_id}/preview"):
                if objects[key] < 1:
                    missing_objects.append(key)
            for name in ("thumb", "preview"):
                if variant_rows[(image_id, name)] < 1:
                    missing_objects.append(f"row {image_id}/{name}")
    # Images of the run's users that no 202 announced: only uploads whose answer was
    # lost may have made one.
    unannounced = [i for i in rows if i not in accepted_set]
    readback = observed.get("readback") or {}
    bad_readback = [i for i, f in readback.items()
                    if not (f["original"]["sha256_ok"] and f["original"]["size_ok"]
                            and f["original"].get("same_as_sent", True) and f["thumb"]["ok"] and f["preview"]["ok"])]
    passed = not (duplicates or not_ready or stuck or missing_rows or missing_objects or bad_readback
                  or len(unannounced) > ledger.get("uploads_unknown", 0))
    formats = collections.Counter(f for *_, f, _ in ledger["uploads_accepted"])
    return {"passed": passed, "accepted": len(accepted_set), "sent": ledger.get("uploads_sent", 0),
            "ready": sum(1 for i in accepted_set if rows.get(i) and rows[i][0][1] == "ready"),
            "duplicates": duplicates[:20], "duplicate_count": len(duplicates), "not_ready": not_ready[:20],
            "stuck": stuck[:20], "stuck_count": len(stuck), "missing_rows": missing_rows[:20],
            "missing_objects": missing_objects[:20], "missing_object_count": len(missing_objects),
            "unannounced": len(unannounced), "uploads_unknown": ledger.get("uploads_unknown", 0),
            "objects_checked": len(objects), "read_back": len(readback), "read_back_bad": bad_readback[:20],
            "formats": dict(formats)}


def check_results(data):
    """Both checkers over a results file's ledger and observation."""
    ledger, observed = data["ledger"], data.get("observed", {})
    out = {}
    if "votes" in observed:
        out["votes"] = check_votes(ledger, observed["votes"])
    if "images" in observed:
        out["images"] = check_images(ledger, observed["images"])
    out["passed"] = all(v["passed"] for v in out.values())
    return out


# ---------------------------------------------------------------------- settling

def settle(ledger, reader=None, images_timeout=240, results_timeout=70):
    """Waits until accepted images are no longer in flight and the published results
    equal the ballot table (or the time is up: the checkers then say what is wrong)."""
    accepted = {i for i, *_ in ledger.uploads_accepted}
    if accepted:
        deadline = time.monotonic() + images_timeout
        while time.monotonic() < deadline:
            left = stackenv.psql(f"SELECT count(*) FROM images WHERE id IN ({_ids_sql(accepted)}) "
                                 f"AND status IN ('uploading', 'queued', 'processing')")
            if left == "0":
                break
            gevent.sleep(1)
    if reader is not None and ledger.votes_sent:
        deadline = time.monotonic() + results_timeout
        while time.monotonic() < deadline:
            obs = observe_votes(ledger.to_json(), reader)
            if not check_votes(ledger.to_json(), obs)["results_mismatch_count"]:
                break
            gevent.sleep(2)


def settle_and_check(ledger, rec, reader=None, deep=False, uploaded=None):
    """Observe the stack after a run, check, and return {observed, checks}."""
    import users as vu  # noqa: PLC0415

    if reader is None and ledger.votes_sent:
        import recorder as recording  # noqa: PLC0415

        # Its own recorder: the checkers' reads are not part of the run's samples.
        reader = vu.Client(9999, recording.Recorder("checker"), ledger, None)
        reader.token = _any_token(ledger)
    settle(ledger, reader)
    data = {"ledger": ledger.to_json(), "observed": {}}
    if ledger.votes_sent:
        data["observed"]["votes"] = observe_votes(data["ledger"], reader)
    if ledger.uploads_accepted or ledger.uploads_sent:
        data["observed"]["images"] = observe_images(data["ledger"], deep=deep, uploaded=uploaded)
    return data["observed"], check_results(data)


def _any_token(ledger):
    import users as vu  # noqa: PLC0415

    return vu.LAST_TOKEN[0]
