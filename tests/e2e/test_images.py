"""Images end to end: streamed uploads through nginx, thumbnails by the workers,
hostile files, a worker killed mid-batch, the stuck-image sweeper."""
import base64
import datetime
import hashlib
import io
import os
import secrets
import signal
import struct
import subprocess
import tempfile
import time
import urllib.parse
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
    token = who["access_token"]
    before = psql("SELECT count(*) FROM images")
    objects_before = set(storage.list_keys("originals/"))
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
    assert psql("SELECT count(*) FROM images") == before, "a refused upload leaves no row"
    assert set(storage.list_keys("originals/")) == objects_before, "a refused upload leaves no object"
    assert requests.post(f"{G}/v1/images", data=jpeg(10, 10), headers={"Content-Type": "image/jpeg"},
                         timeout=10).status_code == 401
    # Still serving.
    assert upload_raw(token, jpeg(64, 64)).status_code == 202


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


def test_worker_killed_mid_batch_every_image_still_ends_ready():
    sent = upload_batch(4, 100, jpeg(3000, 2000))
    victim = "workers:worker-1"
    pid = stack.pid_of(victim)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    stack.wait_running(victim, pid)
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

    # Not an image behind an image type: refused after reading the object.
    fake = reserve(token, 5000).json()
    assert put_upload(fake, b"<svg>" + b" " * 4995).status_code == 200
    r = complete(token, fake["id"])
    assert r.status_code == 415
    assert original_of(token, fake["id"])[0] == 404
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
    put_upload(up, other)
    body = wait_final(token, [up["id"]])[up["id"]]
    assert body["status"] == "ready", body
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert original_of(token, up["id"]) == (302, data), "the original is what was checked"
    # After a delete, a PUT to the old URL brings nothing back.
    assert requests.delete(f"{G}/v1/images/{up['id']}", headers=bearer(token), timeout=10).status_code == 204
    put_upload(up, data)
    assert original_of(token, up["id"])[0] == 404
    assert not storage.list_keys(f"originals/{up['id']}"), "no original without a row"
    # After a refusal, a PUT of a real image cannot revive the upload.
    refused = reserve(token, 5000).json()
    assert put_upload(refused, b"<svg>" + b" " * 4995).status_code == 200
    assert complete(token, refused["id"]).status_code == 415
    put_upload(refused, padded_jpeg(5000))
    assert complete(token, refused["id"]).status_code == 409
    assert original_of(token, refused["id"])[0] == 404
    assert not storage.list_keys(f"originals/{refused['id']}")


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


def test_worker_sigterm_mid_batch_finishes_or_returns_jobs_and_exits_zero():
    sent = upload_batch(3, 30, jpeg(3000, 2000))
    victim = "workers:worker-2"
    pid = stack.pid_of(victim)
    log_offset = len(stack.supervisor_log())
    ids = ",".join(f"'{i}'" for _, i in sent)
    # Mid-batch: once the workers have started on it (no fixed sleep: a loaded machine is slow).
    stack.wait_until(lambda: int(psql(f"SELECT count(*) FROM images WHERE id IN ({ids}) AND attempts > 0")) >= 2,
                     timeout=60, what="the workers took jobs")
    os.kill(pid, signal.SIGTERM)
    stack.wait_until(lambda: stack.exit_status_logged("worker-2", log_offset) is not None, timeout=60,
                     what="worker-2 exit logged")
    assert stack.exit_status_logged("worker-2", log_offset) == 0
    stack.wait_running(victim, pid)
    assert_all_ready(sent)
    # Its metrics count the work (on the private port of the worker that stayed up).
    metrics = requests.get(f"http://127.0.0.1:{int(os.environ['NIMBUS_STACK_WORKER_BASE_PORT']) + 1}/metrics",
                           timeout=5).text
    assert "nimbus_image_jobs_ready_total" in metrics


def test_storage_outage_during_processing_is_retried_until_ready():
    tokens = mint_users(1)
    stack.ctl("stop", "workers:*")
    try:
        ids = [upload_raw(tokens[0], jpeg(800, 600)).json()["id"] for _ in range(5)]
        stack.ctl("stop", "swift-proxy")
        stack.ctl("start", "workers:*")
        time.sleep(3)  # the jobs fail against the missing storage and wait in the delay queues
    finally:
        stack.ctl("start", "swift-proxy")
        stack.ctl("start", "workers:*")
    final = wait_final(tokens[0], ids, timeout=120)
    assert all(b["status"] == "ready" for b in final.values()), final
    retried = 0
    for i in (1, 2):
        text = requests.get(f"http://127.0.0.1:{int(os.environ['NIMBUS_STACK_WORKER_BASE_PORT']) + i}/metrics",
                            timeout=5).text
        retried += sum(float(line.split()[1]) for line in text.splitlines()
                       if line.startswith("nimbus_image_jobs_retried_total"))
    assert retried >= 1, "the outage was met by delayed retries"


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
        # Five starts, each of which killed its worker (nothing was caught): the job comes back.
        psql(f"UPDATE images SET status = 'processing', attempts = 5 WHERE id = '{redelivered}'")
        # The same, and its message is gone too: only the sweeper sees it.
        psql(f"UPDATE images SET status = 'processing', attempts = 5, updated_at = now() - interval '1 hour' "
             f"WHERE id = '{lost}'")
        psql(f"DELETE FROM outbox WHERE published_at IS NULL AND payload->>'image_id' = '{lost}'")
    finally:
        stack.ctl("start", "workers:*")
    final = wait_final(token, [redelivered, lost], timeout=90)
    for image_id, body in final.items():
        assert body["status"] == "failed" and body["variants"] == [], body
        assert "attempt" in body["error"], body
        assert psql(f"SELECT attempts FROM images WHERE id = '{image_id}'") == "5", "not started again"


def process_tree(pid):
    pids = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                children = f.read().split()
        except OSError:
            continue
        for child in children:
            pids += process_tree(int(child))
    return pids


def test_worker_sigterm_returns_unfinished_jobs_within_the_drain_timeout():
    (token,) = mint_users(1)
    stack.ctl("stop", "workers:*")
    frozen = []
    try:
        ids = [upload_raw(token, jpeg(800, 600)).json()["id"] for _ in range(6)]
        in_list = ",".join(f"'{i}'" for i in ids)
        # Storage answers nothing (accepts connections, never replies): jobs hang on it.
        frozen = process_tree(stack.pid_of("swift-proxy"))
        for p in frozen:
            os.kill(p, signal.SIGSTOP)
        stack.ctl("start", "workers:*")
        # Both workers hold jobs (two each at most): then worker-2 holds at least one.
        stack.wait_until(lambda: int(psql(f"SELECT count(*) FROM images WHERE id IN ({in_list}) "
                                          "AND status = 'processing'")) >= 3, timeout=60, what="jobs in flight")
        pid = stack.pid_of("workers:worker-2")
        log_offset = len(stack.supervisor_log())
        sent = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        stack.wait_until(lambda: stack.exit_status_logged("worker-2", log_offset) is not None, timeout=45,
                         interval=0.2, what="worker-2 exit logged")
        took = time.monotonic() - sent
        assert stack.exit_status_logged("worker-2", log_offset) == 0
        # Kubernetes' default grace period is 30 s; the default drain is 20 s.
        assert took < 28, took
    finally:
        for p in frozen:
            os.kill(p, signal.SIGCONT)
    final = wait_final(token, ids, timeout=180)
    assert all(b["status"] == "ready" for b in final.values()), final
    # A job handed back at the drain deadline did not count as an attempt.
    assert psql(f"SELECT max(attempts) FROM images WHERE id IN ({in_list})") == "1"


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
