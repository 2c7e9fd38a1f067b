"""Images end to end: streamed uploads through nginx, thumbnails by the workers,
hostile files, a worker killed mid-batch, the stuck-image sweeper."""
import base64
import datetime
import hashlib
import io
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

import stack
import storage
from test_accounts import bearer, sign_in
from test_live import mint_users, psql

G = stack.GATEWAY


def jpeg(width, height, color=(200, 30, 30), mode="RGB", exif_orientation=None, quality=90):
    img = Image.new(mode, (width, height), color if mode == "RGB" else (0, 200, 200, 0))
    # A gradient, so the encoder has real work and the variants real content.
    for x in range(0, width, max(1, width // 64)):
        img.paste((x * 255 // width, 120, 40) if mode == "RGB" else (x * 255 // width, 0, 0, 0),
                  (x, 0, min(width, x + max(1, width // 64)), height))
    out = io.BytesIO()
    kwargs = {"quality": quality}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    img.save(out, "JPEG", **kwargs)
    return out.getvalue()


def noisy_jpeg(width, height):
    """A JPEG of several megabytes (noise does not compress)."""
    out = io.BytesIO()
    Image.effect_noise((width, height), 60).convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()


def png_with_alpha(width, height):
    img = Image.new("RGBA", (width, height), (0, 120, 255, 128))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def png_bomb(width, height):
    """A tiny PNG that claims huge dimensions (the IDAT is a few bytes of zeros)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + chunk(b"IEND", b""))


def interlaced_png(width, height, depth=16, colour=6, valid=True):
    """An Adam7-interlaced PNG of zeros (a few hundred KB however large: zeros compress
    1000:1). valid=False: the header alone (a few bytes of IDAT), for the API's check."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 1)
    if not valid:
        idat = zlib.compress(b"\0" * 1024)
    else:
        pixel = {0: 1, 2: 3, 4: 2, 6: 4}[colour] * depth // 8
        z = zlib.compressobj(9)
        parts = []
        # Adam7 passes: (x0, y0, dx, dy); each row of a pass is a filter byte and its pixels.
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                               (0, 1, 1, 2)):
            cols, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
            if cols <= 0 or rows <= 0:
                continue
            row = b"\0" * (1 + cols * pixel)
            for start in range(0, rows, 256):
                parts.append(z.compress(row * min(256, rows - start)))
        parts.append(z.flush())
        idat = b"".join(parts)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def upload_raw(token, data, content_type="image/jpeg", base=G):
    return requests.post(f"{base}/v1/images", data=data, headers={**bearer(token), "Content-Type": content_type},
                         timeout=60)


def upload_form(token, data, filename="photo.jpg", base=G):
    return requests.post(f"{base}/v1/images", files={"file": (filename, data, "application/octet-stream")},
                         headers=bearer(token), timeout=60)


def image(token, image_id):
    return requests.get(f"{G}/v1/images/{image_id}", headers=bearer(token), timeout=10)


def wait_final(token, ids, timeout=120):
    final = {}

    def done():
        for i in ids:
            if i not in final:
                body = image(token, i).json()
                if body["status"] in ("ready", "failed"):
                    final[i] = body
        return len(final) == len(ids)

    stack.wait_until(done, timeout=timeout, interval=0.5, what=f"{len(ids) - len(final)} images final")
    return final


def upload_batch(users, count, data):
    """`count` uploads of `data` by `users` fresh users, 10 at a time: [(token, image id)]."""
    tokens = mint_users(users)
    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(lambda i: (tokens[i % users], upload_raw(tokens[i % users], data).json()["id"]),
                             range(count)))


def assert_all_ready(sent):
    """Every image of the batch ends `ready`, with exactly one row per variant."""
    by_token = {}
    for token, image_id in sent:
        by_token.setdefault(token, []).append(image_id)
    for token, ids in by_token.items():
        final = wait_final(token, ids, timeout=240)
        assert all(b["status"] == "ready" for b in final.values()), [b for b in final.values() if b["status"] != "ready"]
    ids = ",".join(f"'{i}'" for _, i in sent)
    assert psql(f"SELECT count(*) FROM image_variants WHERE image_id IN ({ids})") == str(2 * len(sent))
    stored = set(storage.list_keys("variants/")) | set(storage.list_keys("originals/"))
    for _, i in sent:
        assert {f"originals/{i}", f"variants/{i}/thumb", f"variants/{i}/preview"} <= stored, i


def fetch(url):
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return r.content


def uuid7_seconds(image_id):
    """When a UUIDv7 image id was minted (its first 48 bits: Unix milliseconds)."""
    return int(uuid.UUID(image_id).hex[:12], 16) / 1000


def assert_no_new_orphans(user_id, since, prefixes=("originals/", "uploads/"), keep=()):
    """No object minted since `since` (Unix seconds) is left without a row, and none
    belongs to a row of `user_id`. Other suites upload into the same bucket meanwhile:
    only ids minted in this window count, and an object whose row is still being
    written or deleted by someone else gets a moment to settle."""
    def offenders():
        keys = [k for p in prefixes for k in storage.list_keys(p)]
        minted = {}
        for k in keys:
            image_id = k.split("/")[1]
            try:
                if uuid7_seconds(image_id) >= since - 1:
                    minted.setdefault(image_id, []).append(k)
            except ValueError:
                continue
        if not minted:
            return {}
        owners = dict(line.split("|") for line in psql(
            "SELECT id, owner_id FROM images WHERE id IN (" + ",".join(f"'{i}'" for i in minted) + ")").splitlines())
        mine = {i: ks for i, ks in minted.items() if owners.get(i) == user_id and i not in keep}
        assert not mine, f"objects of {user_id}'s refused uploads: {mine}"
        return {i: ks for i, ks in minted.items() if i not in owners}
    try:
        stack.wait_until(lambda: not offenders(), timeout=20, interval=0.5, what="no new object without a row")
    except AssertionError:
        raise AssertionError(f"objects without a row left in storage: {offenders()}") from None


def rows_of(user_id):
    return int(psql(f"SELECT count(*) FROM images WHERE owner_id = '{user_id}'"))


def test_upload_process_download_and_delete():
    _, who = sign_in()
    token = who["access_token"]
    original = jpeg(1600, 1200)
    r = upload_form(token, original)
    assert r.status_code == 202, r.text
    image_id = r.json()["id"]
    assert r.headers["Location"] == f"/v1/images/{image_id}" and r.json()["status"] == "queued"
    body = wait_final(token, [image_id])[image_id]
    assert body["status"] == "ready", body
    assert (body["width"], body["height"], body["bytes"]) == (1600, 1200, len(original))
    assert body["content_type"] == "image/jpeg"
    import hashlib
    assert body["sha256"] == hashlib.sha256(original).hexdigest()
    variants = {v["name"]: v for v in body["variants"]}
    thumb = Image.open(io.BytesIO(fetch(variants["thumb"]["url"])))
    preview = Image.open(io.BytesIO(fetch(variants["preview"]["url"])))
    assert (thumb.format, thumb.size) == ("WEBP", (256, 256))
    assert (preview.format, preview.size) == ("JPEG", (1280, 960))
    assert (variants["preview"]["width"], variants["preview"]["height"]) == (1280, 960)
    # Downloads are redirects to short-lived presigned URLs, for the owner only.
    r = requests.get(f"{G}/v1/images/{image_id}/original", headers=bearer(token), allow_redirects=False, timeout=10)
    assert r.status_code == 302 and fetch(r.headers["Location"]) == original
    r = requests.get(f"{G}/v1/images/{image_id}/variants/thumb", headers=bearer(token), allow_redirects=False,
                     timeout=10)
    assert r.status_code == 302
    _, other = sign_in()
    assert image(other["access_token"], image_id).status_code == 404
    assert requests.get(f"{G}/v1/images/{image_id}/original", headers=bearer(other["access_token"]),
                        allow_redirects=False, timeout=10).status_code == 404
    # Several megabytes, straight to one instance and through the gateway.
    big = noisy_jpeg(3000, 2000)
    assert len(big) > 3 * 1024 * 1024
    for base in (stack.api_url(1), G):
        r = upload_raw(token, big, base=base)
        assert r.status_code == 202, r.text
        assert wait_final(token, [r.json()["id"]])[r.json()["id"]]["status"] == "ready"
    # History, newest first.
    second = upload_raw(token, jpeg(300, 200)).json()["id"]
    mine = requests.get(f"{G}/v1/me/images", headers=bearer(token), timeout=10).json()["items"]
    assert mine[0]["id"] == second and mine[3]["id"] == image_id, "newest first"
    # Delete: row and objects gone.
    assert requests.delete(f"{G}/v1/images/{image_id}", headers=bearer(token), timeout=10).status_code == 204
    assert image(token, image_id).status_code == 404
    assert requests.get(variants["thumb"]["url"], timeout=10).status_code == 404
    assert not [k for k in storage.list_keys("") if image_id in k], "no object of a deleted image stays"


def test_100_parallel_uploads_of_many_kinds_all_become_ready():
    tokens = mint_users(10)
    kinds = [
        ("photo", jpeg(2400, 1600), (2400, 1600), (1280, 853)),
        ("small", jpeg(320, 240), (320, 240), (320, 240)),
        ("alpha", png_with_alpha(800, 600), (800, 600), (800, 600)),
        ("rotated", jpeg(1200, 800, exif_orientation=6), (1200, 800), (800, 1200)),
        ("cmyk", None, (1000, 700), (1000, 700)),
    ]
    cmyk = io.BytesIO()
    Image.new("CMYK", (1000, 700), (0, 255, 255, 0)).save(cmyk, "JPEG")
    kinds[4] = ("cmyk", cmyk.getvalue(), (1000, 700), (1000, 700))

    def send(i):
        name, data, _, _ = kinds[i % len(kinds)]
        token = tokens[i % len(tokens)]
        r = upload_form(token, data, f"{name}.jpg") if i % 2 else upload_raw(
            token, data, "image/png" if name == "alpha" else "image/jpeg")
        assert r.status_code == 202, r.text
        return token, r.json()["id"], i % len(kinds)

    with ThreadPoolExecutor(max_workers=20) as pool:
        sent = list(pool.map(send, range(100)))
    by_token = {}
    for token, image_id, kind in sent:
        by_token.setdefault(token, []).append((image_id, kind))
    for token, items in by_token.items():
        final = wait_final(token, [i for i, _ in items], timeout=240)
        for image_id, kind in items:
            name, _, size, preview_size = kinds[kind]
            body = final[image_id]
            assert body["status"] == "ready", (name, body)
            assert (body["width"], body["height"]) == size, name
            v = {x["name"]: x for x in body["variants"]}
            assert (v["thumb"]["width"], v["thumb"]["height"]) == (256, 256), name
            preview = Image.open(io.BytesIO(fetch(v["preview"]["url"])))
            # EXIF orientation 6 (rotate 90°) is applied: the preview is portrait.
            expected = preview_size if name != "small" else size
            assert preview.size == expected, (name, preview.size)
            assert preview.mode == "RGB", (name, preview.mode)
            original = requests.get(f"{G}/v1/images/{image_id}/original", headers=bearer(token),
                                    allow_redirects=False, timeout=10)
            with requests.get(original.headers["Location"], stream=True, timeout=10) as stored:
                assert stored.status_code == 200, name  # (a presigned GET is signed for GET only)
    assert psql("SELECT count(*) FROM image_variants WHERE image_id IN ("
                + ",".join(f"'{i}'" for _, i, _ in sent) + ")") == "200", "one row per variant, no duplicates"


def test_hostile_uploads_are_refused_and_leave_nothing():
    _, who = sign_in()
    token, user_id = who["access_token"], who["user"]["id"]
    started = time.time()
    truncated = jpeg(800, 600)[:-2000]
    cases = [
        ("decompression bomb", upload_raw(token, png_bomb(100_000, 100_000), "image/png"), 422, "too_many_pixels"),
        ("truncated jpeg", upload_raw(token, truncated), 422, "corrupt_image"),
        ("not an image", upload_form(token, b"MZ\x90\x00" + b"\x00" * 5000, "cat.jpg"), 415, "unsupported_image_type"),
        ("svg", upload_raw(token, b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                           "image/svg+xml"), 415, "unsupported_image_type"),
        ("empty", upload_raw(token, b""), 422, "empty_file"),
        ("30 MB", upload_raw(token, b"\xff\xd8\xff" + b"\0" * (30 * 1024 * 1024)), 413, "payload_too_large"),
        ("30 MB direct", upload_raw(token, b"\xff\xd8\xff" + b"\0" * (30 * 1024 * 1024), base=stack.api_url(2)), 413,
         "payload_too_large"),
        ("no file field", requests.post(f"{G}/v1/images", files={"photo": ("a.jpg", jpeg(10, 10))},
                                        headers=bearer(token), timeout=10), 400, "missing_file"),
        ("text body", upload_raw(token, b"hello", "text/plain"), 415, "unsupported_media_type"),
        ("field after the file", requests.post(f"{G}/v1/images", files=[("file", ("a.jpg", jpeg(64, 64))),
                                                                         ("note", ("n.txt", b"after"))],
                                               headers=bearer(token), timeout=10), 400, "multipart_layout"),
        ("big file, field after it", requests.post(f"{G}/v1/images", files=[("file", ("b.jpg", noisy_jpeg(2000, 1500))),
                                                                              ("note", ("n.txt", b"after"))],
                                                   headers=bearer(token), timeout=30), 400, "multipart_layout"),
    ]
    for name, r, status, code in cases:
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/problem+json"), name
        if code:
            assert r.json()["code"] == code, (name, r.text)
    assert rows_of(user_id) == 0, "a refused upload leaves no row"
    assert_no_new_orphans(user_id, started)
    assert requests.post(f"{G}/v1/images", data=jpeg(10, 10), headers={"Content-Type": "image/jpeg"},
                         timeout=10).status_code == 401
    # Still serving.
    assert upload_raw(token, jpeg(64, 64)).status_code == 202


def test_an_upload_too_costly_to_decode_is_refused_from_its_header():
    """Issue 22, item 7: within the pixel limit (48 MP), but interlaced 16-bit RGBA: the
    decoder would hold 384 MB. Refused before a byte is stored; the same image
    non-interlaced streams through the decoder and is accepted."""
    _, who = sign_in()
    token, user_id = who["access_token"], who["user"]["id"]
    started = time.time()
    for name, r in (("raw", upload_raw(token, interlaced_png(8000, 6000, valid=False), "image/png")),
                    ("form", upload_form(token, interlaced_png(8000, 6000, valid=False), "bomb.png"))):
        assert r.status_code == 422, (name, r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/problem+json"), name
        assert r.json()["code"] == "too_costly_to_decode", (name, r.text)
        assert "MiB" in r.json()["detail"], r.text
    assert rows_of(user_id) == 0, "a refused upload leaves no row"
    assert_no_new_orphans(user_id, started)
    plain = bytearray(interlaced_png(8000, 6000, valid=False))
    plain[28] = 0  # IHDR interlace method: none
    plain[29:33] = struct.pack(">I", zlib.crc32(bytes(plain[12:29])) & 0xFFFFFFFF)
    assert upload_raw(token, bytes(plain), "image/png").status_code == 202


def test_undecodable_image_fails_with_a_reason():
    _, who = sign_in()
    token = who["access_token"]
    # A valid frame header and ending, but a Huffman table no decoder accepts: only
    # decoding can tell.
    good = bytearray(jpeg(640, 480))
    dht = good.find(b"\xff\xc4")
    good[dht + 5:dht + 21] = b"\xff" * 16
    broken = bytes(good)
    r = upload_raw(token, broken)
    assert r.status_code == 202, r.text
    body = wait_final(token, [r.json()["id"]])[r.json()["id"]]
    assert body["status"] == "failed" and body["error"], body
    assert upload_raw(token, jpeg(64, 64)).status_code == 202, "the worker is still up"


def processing_and_queued(ids):
    in_list = ",".join(f"'{i}'" for i in ids)
    rows = psql(f"SELECT id, status FROM images WHERE id IN ({in_list}) AND status IN ('processing', 'queued')")
    processing, queued = set(), set()
    for line in rows.splitlines():
        image_id, status = line.split("|")
        (processing if status == "processing" else queued).add(image_id)
    return processing, queued


def both_workers_busy(ids, queued_left=0, seen=None):
    """True once both workers hold jobs of `ids` (each takes two at most, so three in
    `processing` means each holds one) while at least `queued_left` still wait. The
    images in processing then are kept in `seen`."""
    processing, queued = processing_and_queued(ids)
    if seen is not None:
        seen.clear()
        seen.update(processing)
    return len(processing) >= 3 and len(queued) >= queued_left


def test_worker_killed_mid_batch_every_image_still_ends_ready():
    sent = upload_batch(4, 100, jpeg(3000, 2000))
    ids = [i for _, i in sent]
    victim = "workers:worker-1"
    # Mid-batch: both workers hold jobs, and plenty still wait (no fixed sleep: a
    # loaded machine is slow, and an idle worker would prove nothing). Between seeing
    # both busy and the signal landing, the victim may finish its jobs and not yet have
    # begun its next (seen under stress-ng: the kill then cut nothing short). So the
    # kill is repeated until one provably cut a job short: a job in processing around
    # the kill came back and was taken again (its attempts show it).
    cut_short = None
    for kill in range(4):
        in_flight = set()
        stack.wait_until(lambda: both_workers_busy(ids, queued_left=20 if kill == 0 else 6, seen=in_flight),
                         timeout=120, what="both workers busy")
        pid = stack.signal_program(victim, signal.SIGKILL)
        # (The killed worker's job stays in processing until it is taken again: seen
        # here even if the one seen just before the kill was finished meanwhile.)
        in_flight |= processing_and_queued(ids)[0]
        stack.wait_running(victim, pid)
        # Until each of them is finished (taken again first if the kill cut it short).
        stack.wait_until(lambda: not any(processing_and_queued(list(in_flight))), timeout=180,
                         what="the jobs in flight at the kill finished")
        in_list = ",".join(f"'{i}'" for i in in_flight)
        # (Only a kill mid-decode shows in attempts: one elsewhere gives its attempt
        # back — docs/adr/0010 — so a kill between decodes proves nothing here.)
        if int(psql(f"SELECT max(attempts) FROM images WHERE id IN ({in_list})")) >= 2:
            cut_short = kill + 1
            break
    assert cut_short, "no kill of four caught the worker with a job in flight"
    assert_all_ready(sent)


def test_sweeper_requeues_an_image_stuck_in_queue():
    _, who = sign_in()
    token = who["access_token"]
    image_id = upload_raw(token, jpeg(400, 300)).json()["id"]
    wait_final(token, [image_id])
    # As if its message had been lost: queued, untouched for an hour, no job anywhere.
    psql(f"UPDATE images SET status = 'queued', updated_at = now() - interval '1 hour' WHERE id = '{image_id}'")
    stack.wait_until(lambda: image(token, image_id).json()["status"] == "ready", timeout=30,
                     what="the sweeper re-queued the image")


def reserve(token, size, content_type="image/jpeg"):
    return requests.post(f"{G}/v1/images/uploads", json={"content_type": content_type, "bytes": size},
                         headers=bearer(token), timeout=10)


def put_upload(up, data, content_type=None):
    """A PUT to a presigned upload URL with the headers the reservation asked for (or
    another Content-Type, as an attacker would send)."""
    headers = dict(up.get("headers", {}))
    if content_type:
        headers["Content-Type"] = content_type
    return requests.put(up["upload_url"], data=data, headers=headers, timeout=30)


def complete(token, image_id):
    return requests.post(f"{G}/v1/images/{image_id}/complete", headers=bearer(token), timeout=30)


def padded_jpeg(size, color=(200, 30, 30)):
    """A valid JPEG of exactly `size` bytes (a comment segment after SOI fills it up)."""
    data = jpeg(64, 64, color)
    extra = size - len(data)
    assert 4 <= extra <= 65535, extra
    return data[:2] + b"\xff\xfe" + struct.pack(">H", extra - 2) + b"x" * (extra - 4) + data[2:]


def original_of(token, image_id):
    r = requests.get(f"{G}/v1/images/{image_id}/original", headers=bearer(token), allow_redirects=False, timeout=10)
    return r.status_code, (fetch(r.headers["Location"]) if r.status_code == 302 else None)


def test_direct_upload_with_a_presigned_url():
    _, who = sign_in()
    token = who["access_token"]
    data = jpeg(900, 600)

    r = reserve(token, len(data))
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["headers"] == {"Content-Type": "image/jpeg"}, up
    assert image(token, up["id"]).json()["status"] == "uploading"
    missing = complete(token, up["id"])
    assert missing.status_code == 409 and missing.json()["code"] == "upload_missing"
    assert put_upload(up, data).status_code == 200
    done = complete(token, up["id"])
    assert done.status_code == 202, done.text
    again = complete(token, up["id"])
    assert again.status_code == 409
    body = wait_final(token, [up["id"]])[up["id"]]
    assert body["status"] == "ready" and (body["width"], body["height"]) == (900, 600)
    assert original_of(token, up["id"]) == (302, data)

    # Not an image behind an image type: refused after reading the object, and nothing
    # of it stays (no row to read, no staged or original object).
    fake = reserve(token, 5000).json()
    assert put_upload(fake, b"<svg>" + b" " * 4995).status_code == 200
    r = complete(token, fake["id"])
    assert r.status_code == 415 and r.json()["code"] == "unsupported_image_type", r.text
    assert image(token, fake["id"]).status_code == 404
    assert original_of(token, fake["id"])[0] == 404
    stack.wait_until(lambda: not storage.list_keys(f"uploads/{fake['id']}") + storage.list_keys(
        f"originals/{fake['id']}"), timeout=10, what="the refused upload's objects removed")
    for bad in ({"content_type": "image/svg+xml", "bytes": 10}, {"content_type": "image/png", "bytes": -1},
                {"content_type": "image/png", "bytes": "10"}):
        assert requests.post(f"{G}/v1/images/uploads", json=bad, headers=bearer(token), timeout=10).status_code == 422
    assert reserve(token, 26 * 1024 * 1024).status_code == 413


def test_a_presigned_put_is_bound_to_the_declared_size_and_type():
    (token,) = mint_users(1)
    data = jpeg(500, 400)
    up = reserve(token, len(data)).json()
    # Any other type (served back later as the object's type), any other size: refused by storage.
    html = b"<html><script>alert(1)</script>" + b" " * (len(data) - 32)
    assert put_upload(up, html, "text/html").status_code == 403
    assert put_upload(up, data + b"more bytes").status_code == 403
    assert put_upload(up, data[:-10]).status_code == 403
    assert put_upload(up, data).status_code == 200
    assert complete(token, up["id"]).status_code == 202
    query = urllib.parse.parse_qs(urllib.parse.urlparse(up["upload_url"]).query)
    assert int(query["X-Amz-Expires"][0]) <= 300, "a short-lived URL"


def test_a_put_after_complete_refusal_or_delete_changes_nothing():
    (token,) = mint_users(1)
    data = jpeg(900, 600)
    up = reserve(token, len(data)).json()
    assert put_upload(up, data).status_code == 200
    assert complete(token, up["id"]).status_code == 202
    # The URL still works for a while: the same size and type, other bytes.
    middle = len(data) // 2
    other = data[:middle] + bytes(b ^ 0x5A for b in data[middle:middle + 2000]) + data[middle + 2000:]
    assert put_upload(up, other).status_code == 200, "the swap must land for the check below to mean anything"
    body = wait_final(token, [up["id"]])[up["id"]]
    assert body["status"] == "ready", body
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert original_of(token, up["id"]) == (302, data), "the original is what was checked"
    # After a delete, a PUT to the old URL brings nothing back.
    assert requests.delete(f"{G}/v1/images/{up['id']}", headers=bearer(token), timeout=10).status_code == 204
    assert put_upload(up, data).status_code == 200, "the late PUT must land for the check below to mean anything"
    assert original_of(token, up["id"])[0] == 404
    assert not storage.list_keys(f"originals/{up['id']}"), "no original without a row"
    s3_request("DELETE", f"uploads/{up['id']}")  # (the orphan sweep would, after its grace period)
    # After a refusal, a PUT of a real image cannot revive the upload.
    refused = reserve(token, 5000).json()
    assert put_upload(refused, b"<svg>" + b" " * 4995).status_code == 200
    assert complete(token, refused["id"]).status_code == 415
    assert put_upload(refused, padded_jpeg(5000)).status_code == 200, "the revival attempt must land"
    assert complete(token, refused["id"]).status_code == 409
    assert original_of(token, refused["id"])[0] == 404
    assert not storage.list_keys(f"originals/{refused['id']}")
    s3_request("DELETE", f"uploads/{refused['id']}")


def test_open_reservations_are_limited_per_user():
    first, second = mint_users(2)
    answers = []
    for _ in range(60):
        answers.append(reserve(first, 1000))
        if answers[-1].status_code != 201:
            break
    last = answers[-1]
    assert len(answers) > 1 and all(a.status_code == 201 for a in answers[:-1])
    assert last.status_code == 429, last.text
    assert last.json()["code"] == "too_many_uploads" and int(last.headers["Retry-After"]) >= 1, last.headers
    assert reserve(second, 1000).status_code == 201, "another user is not affected"
    # Completing one frees its place.
    data = padded_jpeg(1000)
    done = answers[0].json()
    assert put_upload(done, data).status_code == 200 and complete(first, done["id"]).status_code == 202
    assert reserve(first, 1000).status_code == 201


# How long a worker may take from SIGTERM to its exit, one step after the other
# (src/runtime/lifecycle.cpp, src/worker/main.cpp): the drain delay (1.5 s on the
# stack), its ops listener's shutdown (NIMBUS_SHUTDOWN_TIMEOUT, 15 s, only if a probe
# hangs), the image drain (NIMBUS_WORKER_DRAIN_TIMEOUT, 20 s) and its 3 s overrun, the
# outbox relay's stop (5 s at most): 45 s at worst, about 25 s in practice. The wait
# leaves headroom above the worst case; where the drain's own bound is the point, it is
# checked apart.
WORKER_EXIT_WAIT = 60


def test_worker_sigterm_mid_batch_finishes_or_returns_jobs_and_exits_zero():
    sent = upload_batch(3, 30, jpeg(3000, 2000))
    ids = [i for _, i in sent]
    victim = "workers:worker-2"
    ready_before = stack.metric(stack.worker_metrics_url(1), "nimbus_image_jobs_ready_total")
    stack.wait_until(lambda: both_workers_busy(ids), timeout=120, what="both workers busy")
    log_offset = len(stack.supervisor_log())
    log, victim_offset = stack.log_offset("worker-2")
    pid = stack.signal_program(victim, signal.SIGTERM)
    stack.wait_until(lambda: stack.exit_status_logged("worker-2", log_offset) is not None, timeout=WORKER_EXIT_WAIT,
                     what="worker-2 exit logged")
    assert stack.exit_status_logged("worker-2", log_offset) == 0
    # A job of the batch was in flight on it: after the signal it finished that job (or
    # handed it back at the drain deadline).
    after = stack.log_lines_since(log, victim_offset)
    drained = [line for line in after if line.get("image_id") in ids
               and line.get("msg") in ("image ready", "image job handed back at shutdown")]
    assert drained, "worker-2 held no job of the batch when it was signalled"
    stack.wait_running(victim, pid)
    assert_all_ready(sent)
    # The worker that stayed up counted its share of the work in its metrics.
    assert stack.metric(stack.worker_metrics_url(1), "nimbus_image_jobs_ready_total") > ready_before


def retried_ids(offsets):
    """Image ids the workers sent back for a delayed retry since `offsets`."""
    return {line.get("image_id") for log, offset in offsets for line in stack.log_lines_since(log, offset)
            if line.get("msg") == "image job failed; retrying"}


def test_storage_outage_during_processing_is_retried_until_ready():
    tokens = mint_users(1)
    offsets = [stack.log_offset(f"worker-{i}") for i in (1, 2)]
    stack.ctl("stop", "workers:*")
    try:
        ids = []
        for _ in range(5):
            r = upload_raw(tokens[0], jpeg(800, 600))
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        stack.ctl("stop", "swift-proxy")
        stack.ctl("start", "workers:*")
        # Every job failed against the missing storage and waits in a delay queue.
        stack.wait_until(lambda: set(ids) <= retried_ids(offsets), timeout=90, interval=0.5,
                         what="each job failed once and was sent back for a delayed retry")
    finally:
        stack.ctl("start", "swift-proxy")
        stack.ctl("start", "workers:*")
    final = wait_final(tokens[0], ids, timeout=120)
    assert all(b["status"] == "ready" for b in final.values()), final


def avif(width, height):
    """An AVIF made by libvips (libvips-tools), from a JPEG of the given size."""
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/in.jpg", "wb") as f:
            f.write(jpeg(width, height))
        subprocess.run(["vips", "copy", f"{d}/in.jpg", f"{d}/out.avif[Q=50]"], check=True)
        with open(f"{d}/out.avif", "rb") as f:
            return f.read()


def test_avif_is_accepted_and_a_truncated_one_refused():
    _, who = sign_in()
    token = who["access_token"]
    data = avif(1200, 800)
    r = upload_form(token, data, "photo.avif")
    assert r.status_code == 202, r.text
    body = wait_final(token, [r.json()["id"]])[r.json()["id"]]
    assert body["status"] == "ready", body
    assert (body["content_type"], body["width"], body["height"]) == ("image/avif", 1200, 800)
    v = {x["name"]: x for x in body["variants"]}
    assert Image.open(io.BytesIO(fetch(v["preview"]["url"]))).size == (1200, 800)
    cut = upload_raw(token, data[:-500], "image/avif")
    assert cut.status_code == 422 and cut.json()["code"] == "corrupt_image", cut.text


def test_the_fifth_failed_attempt_marks_the_image_failed():
    (token,) = mint_users(1)
    stack.ctl("stop", "workers:*")
    try:
        image_id = upload_raw(token, jpeg(400, 300)).json()["id"]
        # Four attempts already spent (as after four failures); storage is down for the fifth.
        psql(f"UPDATE images SET attempts = 4 WHERE id = '{image_id}'")
        stack.ctl("stop", "swift-proxy")
        stack.ctl("start", "workers:*")
        body = wait_final(token, [image_id], timeout=60)[image_id]
    finally:
        stack.ctl("start", "swift-proxy")
        stack.ctl("start", "workers:*")
    assert body["status"] == "failed", body
    assert "5 times" in body["error"], body


def s3_request(method, key, data=b"", content_type="application/octet-stream"):
    """A signed request on the stack's bucket as the server would make it (for tests that
    play a storage-side attacker or leave garbage behind)."""
    endpoint = os.environ["NIMBUS_TEST_S3_ENDPOINT"]
    bucket, region = os.environ["NIMBUS_TEST_S3_BUCKET"], os.environ["NIMBUS_TEST_S3_REGION"]
    access, secret = os.environ["NIMBUS_TEST_S3_ACCESS_KEY"], os.environ["NIMBUS_TEST_S3_SECRET_KEY"]
    host = urllib.parse.urlparse(endpoint).netloc
    path = f"/{bucket}/{urllib.parse.quote(key, safe='/-_.~')}"
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(data).hexdigest()
    headers = {"content-type": content_type, "host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    names = ";".join(sorted(headers))
    canonical = "\n".join([method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", names, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = storage._sign(storage._sign(storage._sign(storage._sign(("AWS4" + secret).encode(), day), region),
                                              "s3"), "aws4_request")
    signature = hmac_hex(signing_key, to_sign)
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={names}, " \
                               f"Signature={signature}"
    del headers["host"]
    return requests.request(method, f"{endpoint}{path}", data=data, headers=headers, timeout=60)


def hmac_hex(key, msg):
    import hmac
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


def uuid7(unix_seconds):
    """A UUIDv7 minted at `unix_seconds` (ids carry their creation time)."""
    value = (int(unix_seconds * 1000) << 80) | (0x7 << 76) | (secrets.randbits(12) << 64) | (0b10 << 62) \
        | secrets.randbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def big_jpeg(size):
    """A valid 64×64 JPEG padded past `size` bytes with application segments."""
    small = jpeg(64, 64)
    segment = b"\xff\xef" + struct.pack(">H", 65535) + b"\0" * 65533
    return small[:2] + segment * (size // len(segment) + 1) + small[2:]


def test_the_worker_refuses_an_original_over_the_limit_before_reading_it():
    (token,) = mint_users(1)
    stack.ctl("stop", "workers:*")
    try:
        image_id = upload_raw(token, jpeg(400, 300)).json()["id"]
        # Whatever lies in storage (a bug, an operator, a leaked credential): 26 MB, a valid JPEG.
        assert s3_request("PUT", f"originals/{image_id}", big_jpeg(26 * 1024 * 1024), "image/jpeg").status_code == 200
    finally:
        stack.ctl("start", "workers:*")
    body = wait_final(token, [image_id], timeout=60)[image_id]
    assert body["status"] == "failed" and body["variants"] == [], body


def test_objects_without_a_row_are_swept_after_a_grace_period():
    old, fresh = uuid7(time.time() - 3 * 3600), uuid7(time.time())
    garbage = [f"originals/{old}", f"uploads/{old}", f"variants/{old}/thumb"]
    for key in garbage + [f"uploads/{fresh}"]:
        assert s3_request("PUT", key, b"left behind").status_code == 200
    try:
        stack.wait_until(lambda: not any(storage.list_keys(k) for k in garbage), timeout=90, interval=1,
                         what="the sweeper removed objects without a row")
        assert storage.list_keys(f"uploads/{fresh}"), "within its grace period an object stays"
    finally:
        s3_request("DELETE", f"uploads/{fresh}")


def test_an_image_at_the_attempt_limit_fails_instead_of_running_again():
    (token,) = mint_users(1)
    stack.ctl("stop", "workers:*")
    try:
        redelivered = upload_raw(token, jpeg(400, 300)).json()["id"]
        lost = upload_raw(token, jpeg(400, 300)).json()["id"]
        # Five starts, each of which killed its worker while decoding it (nothing was
        # caught): the job comes back.
        psql(f"UPDATE images SET status = 'processing', attempts = 5, decoding_since = now() "
             f"WHERE id = '{redelivered}'")
        # The same, and its message is gone too: only the sweeper sees it.
        psql(f"UPDATE images SET status = 'processing', attempts = 5, decoding_since = now(), "
             f"updated_at = now() - interval '1 hour' WHERE id = '{lost}'")
        psql(f"DELETE FROM outbox WHERE published_at IS NULL AND payload->>'image_id' = '{lost}'")
    finally:
        stack.ctl("start", "workers:*")
    final = wait_final(token, [redelivered, lost], timeout=90)
    for image_id, body in final.items():
        assert body["status"] == "failed" and body["variants"] == [], body
        assert "attempt" in body["error"], body
        assert psql(f"SELECT attempts FROM images WHERE id = '{image_id}'") == "5", "not started again"


def test_a_worker_death_outside_its_decode_is_not_charged_to_the_image():
    """Issue 22, item 7: the worker died while the image was not decoding (another
    image's decode ran it out of memory, say): that start is given back, so an image
    with its five attempts spent that way still runs — and does not spend a sixth."""
    (token,) = mint_users(1)
    stack.ctl("stop", "workers:*")
    try:
        redelivered = upload_raw(token, jpeg(400, 300)).json()["id"]
        lost = upload_raw(token, jpeg(400, 300)).json()["id"]
        psql(f"UPDATE images SET status = 'processing', attempts = 5 WHERE id = '{redelivered}'")
        psql(f"UPDATE images SET status = 'processing', attempts = 5, updated_at = now() - interval '1 hour' "
             f"WHERE id = '{lost}'")
        psql(f"DELETE FROM outbox WHERE published_at IS NULL AND payload->>'image_id' = '{lost}'")
    finally:
        stack.ctl("start", "workers:*")
    final = wait_final(token, [redelivered, lost], timeout=90)
    for image_id, body in final.items():
        assert body["status"] == "ready", body
        assert psql(f"SELECT attempts, decoding_since IS NULL FROM images WHERE id = '{image_id}'") == "5|t"


def test_an_image_whose_workers_keep_dying_outside_the_decode_fails_in_the_end():
    """Deaths outside the decode cost no attempt (above), so without a bound an image
    whose workers kept stopping elsewhere would be taken again forever: starts are
    counted as well, and after four times the attempts' limit the image fails."""
    (token,) = mint_users(1)
    stack.ctl("stop", "workers:*")
    try:
        image_id = upload_raw(token, jpeg(400, 300)).json()["id"]
        # Its workers died 100 times, each time outside the decode.
        psql(f"UPDATE images SET status = 'processing', attempts = 1, starts = 100 WHERE id = '{image_id}'")
    finally:
        stack.ctl("start", "workers:*")
    body = wait_final(token, [image_id], timeout=90)[image_id]
    assert body["status"] == "failed", body
    assert psql(f"SELECT attempts, starts, error FROM images WHERE id = '{image_id}'") == \
        "0|100|gave up after 100 starts whose workers stopped outside the decode"  # (that last death given back)


def test_a_worker_killed_mid_decode_charges_only_the_image_it_was_decoding():
    """Issue 22, item 7, end to end: one worker, two 50 MP interlaced RGB PNGs (each
    decode holds 143 MiB, within the bound; two would pass the worker's 256 MiB decode
    budget, so one waits). The worker is killed while it decodes the first: that image's start
    counts (2 attempts when it is done), the one waiting for budget is given back (1)."""
    (token,) = mint_users(1)
    data = interlaced_png(8660, 5773, depth=8, colour=2)
    lone, other = "workers:worker-1", "workers:worker-2"
    stack.ctl("stop", "workers:*")
    try:
        stack.ctl("start", lone)
        stack.wait_running(lone)
        pid = stack.pid_of(lone)  # (supervisorctl is slow: asked before, not at the kill)
        ids = [upload_raw(token, data, "image/png").json()["id"] for _ in range(2)]
        in_list = ",".join(f"'{i}'" for i in ids)

        def one_decoding_one_waiting():
            rows = psql(f"SELECT id, status, decoding_since IS NOT NULL FROM images WHERE id IN ({in_list})")
            seen = [line.split("|") for line in rows.splitlines()]
            decoding = [i for i, status, d in seen if status == "processing" and d == "t"]
            waiting = [i for i, status, d in seen if status == "processing" and d == "f"]
            return (decoding[0], waiting[0]) if len(decoding) == 1 and len(waiting) == 1 else None

        seen = []
        stack.wait_until(lambda: seen.append(one_decoding_one_waiting()) or seen[-1], timeout=60, interval=0.01,
                         what="one decoding, one waiting")
        # At once: the decode takes over a second, the poll a few milliseconds.
        stack.send_signal(pid, signal.SIGKILL)
        decoding, waiting = seen[-1]
        stack.wait_running(lone, pid)
    finally:
        stack.ctl("start", lone)
        stack.ctl("start", other)
    final = wait_final(token, ids, timeout=180)
    assert all(body["status"] == "ready" for body in final.values()), final
    assert psql(f"SELECT attempts FROM images WHERE id = '{decoding}'") == "2", "its decode killed the worker"
    assert psql(f"SELECT attempts FROM images WHERE id = '{waiting}'") == "1", "it was waiting: not charged"


def test_the_worker_refuses_an_original_too_costly_to_decode_without_retrying():
    """Issue 22, item 7: an original in storage whose header says decoding it would hold
    more than the bound (48 MP interlaced 16-bit RGBA: 384 MB; a valid file of a few
    hundred KB) — queued before the API checked this, or put there behind its back —
    fails at once with the reason, not decoded and not retried."""
    (token,) = mint_users(1)
    bomb = interlaced_png(8000, 6000)
    stack.ctl("stop", "workers:*")
    try:
        image_id = upload_raw(token, png_with_alpha(64, 64), "image/png").json()["id"]
        assert s3_request("PUT", f"originals/{image_id}", bomb, "image/png").status_code == 200
        psql(f"UPDATE images SET bytes = {len(bomb)}, sha256 = '{hashlib.sha256(bomb).hexdigest()}', width = 8000, "
             f"height = 6000 WHERE id = '{image_id}'")
    finally:
        stack.ctl("start", "workers:*")
    body = wait_final(token, [image_id], timeout=60)[image_id]
    assert body["status"] == "failed" and body["variants"] == [], body
    assert "too costly to decode" in body["error"] and "MiB" in body["error"], body
    assert psql(f"SELECT attempts FROM images WHERE id = '{image_id}'") == "1", "not retried"


def test_worker_sigterm_returns_unfinished_jobs_within_the_drain_timeout():
    (token,) = mint_users(1)
    stack.ctl("stop", "workers:*")
    try:
        ids = []
        for _ in range(6):
            r = upload_raw(token, jpeg(800, 600))
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        # Storage answers nothing (accepts connections, never replies): jobs hang on it.
        with stack.Frozen("swift-proxy"):
            stack.ctl("start", "workers:*")
            stack.wait_until(lambda: both_workers_busy(ids), timeout=60, what="jobs in flight on both workers")
            log_offset = len(stack.supervisor_log())
            log, victim_offset = stack.log_offset("worker-2")
            sent = time.monotonic()
            # SIGTERM through supervisord, which then leaves worker-2 stopped: nothing
            # takes the jobs it hands back while they are looked at below (worker-1
            # holds its two hung jobs, its prefetch).
            stack.ctl("stop", "workers:worker-2")
            took = time.monotonic() - sent
            assert stack.exit_status_logged("worker-2", log_offset) == 0, stack.supervisor_log()[log_offset:]
            # The deadline is the point here: Kubernetes' default grace period is 30 s, and
            # the drain (20 s) plus its overrun and the drain delay must fit in it.
            assert took < 28, took
            handed_back = [line["image_id"] for line in stack.log_lines_since(log, victim_offset)
                           if line.get("msg") == "image job handed back at shutdown"]
            assert set(handed_back) & set(ids), "worker-2 handed back none of the hung jobs"
            # A job handed back at the drain deadline did not count as an attempt: queued
            # again with none spent (or, if worker-1's hung calls timed out meanwhile and
            # it took one, with only that new attempt).
            rows = psql("SELECT status, attempts FROM images WHERE id IN ("
                        + ",".join(f"'{i}'" for i in handed_back) + ")").splitlines()
            for row in rows:
                status, attempts = row.split("|")
                assert (status, int(attempts)) in (("queued", 0), ("processing", 1)), rows
    finally:
        stack.ctl("start", "workers:*")
    final = wait_final(token, ids, timeout=180)
    assert all(b["status"] == "ready" for b in final.values()), final


def test_a_cursor_tells_nothing_about_other_users_images():
    mine_token, their_token = mint_users(2)
    mine = upload_raw(mine_token, jpeg(64, 64)).json()["id"]
    time.sleep(0.01)
    theirs = upload_raw(their_token, jpeg(64, 64)).json()["id"]
    # A made-up id of the same instant: its first 48 bits (the time) kept, the rest random.
    made_up = uuid7(0)
    made_up = theirs[:14] + made_up[14:]

    def page(cursor):
        c = base64.urlsafe_b64encode(cursor.encode()).rstrip(b"=").decode()
        r = requests.get(f"{G}/v1/me/images", params={"cursor": c}, headers=bearer(mine_token), timeout=10)
        return r.status_code, [i["id"] for i in r.json().get("items", [])]

    assert page(theirs) == page(made_up), "another user's id reads like any id"
    assert page(theirs) == (200, [mine])


def sub_of(token):
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["sub"]


def abandon_upload(address, token, body, declared, reset):
    """A streamed upload whose client goes away after sending part of its body: closed
    (FIN), or reset (RST) when `reset`."""
    host = urllib.parse.urlparse(address)
    with socket.create_connection((host.hostname, host.port), timeout=10) as s:
        s.sendall((f"POST /v1/images HTTP/1.1\r\nHost: nimbus\r\nAuthorization: Bearer {token}\r\n"
                   f"Content-Type: image/jpeg\r\nContent-Length: {declared}\r\n\r\n").encode() + body)
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_client_gone_mid_upload_leaves_no_row_object_or_storage_thread():
    (token,) = mint_users(1)
    user = sub_of(token)
    started = time.time()
    whole = noisy_jpeg(1600, 1200)
    part = whole[:len(whole) // 2]
    # More abandoned uploads straight to one instance than it has storage threads (the
    # test stack gives each 64; an upload holds one while it lasts), then a few through
    # the gateway.
    instance = stack.api_url(3)
    for n in range(70):
        abandon_upload(instance, token, part, len(whole), reset=n % 2 == 1)
    for n in range(4):
        abandon_upload(G, token, part, len(whole), reset=n % 2 == 1)
    # The instance still takes an upload at once: no storage thread stayed with a client
    # that is gone. (Its body timeout is 60 s: a thread kept until then would make this
    # one wait or fail.)
    began = time.monotonic()
    r = upload_raw(token, jpeg(64, 64), base=instance)
    assert r.status_code == 202, r.text
    assert time.monotonic() - began < 15, "an upload waited for storage threads held by clients long gone"
    kept = r.json()["id"]
    # No row but the finished upload's, no object without a row.
    stack.wait_until(lambda: rows_of(user) == 1, timeout=30, interval=0.5,
                     what="the abandoned uploads' rows removed")
    assert_no_new_orphans(user, started, keep=(kept,))


def test_an_abandoned_reservation_is_removed_with_its_staged_object():
    (token,) = mint_users(1)
    data = jpeg(300, 200)
    staged, empty, fresh = (reserve(token, len(data)).json() for _ in range(3))
    assert put_upload(staged, data).status_code == 200
    assert put_upload(fresh, data).status_code == 200
    assert storage.list_keys(f"uploads/{staged['id']}")
    # Reserved two hours ago and never completed (NIMBUS_IMAGE_ABANDONED_AFTER is 1 h):
    # the sweeper (every second on the test stack) removes the row and what was staged.
    psql("UPDATE images SET created_at = now() - interval '2 hours' "
         f"WHERE id IN ('{staged['id']}', '{empty['id']}')")

    def gone(up):
        return image(token, up["id"]).status_code == 404 and not storage.list_keys(f"uploads/{up['id']}")
    stack.wait_until(lambda: gone(staged) and gone(empty), timeout=30, interval=0.5,
                     what="the abandoned reservations removed")
    late = complete(token, staged["id"])
    assert late.status_code == 409 and late.json()["code"] == "not_uploading", late.text
    # A reservation within its time is untouched, and completes.
    assert image(token, fresh["id"]).json()["status"] == "uploading"
    assert complete(token, fresh["id"]).status_code == 202
    assert wait_final(token, [fresh["id"]])[fresh["id"]]["status"] == "ready"
