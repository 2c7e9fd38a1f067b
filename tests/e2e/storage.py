"""Direct access to the stack's S3 bucket (AWS Signature V4, standard library only), for
tests that must prove what storage holds — e.g. that a refused upload left no object
behind — or put an object there themselves."""
import datetime
import hashlib
import hmac
import os
import re
import urllib.parse

import requests


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def request(method, key="", params=None, data=b"", headers=None):
    """One signed request on the bucket (or on `key` in it); the response."""
    endpoint = os.environ["NIMBUS_TEST_S3_ENDPOINT"]
    bucket, region = os.environ["NIMBUS_TEST_S3_BUCKET"], os.environ["NIMBUS_TEST_S3_REGION"]
    access, secret = os.environ["NIMBUS_TEST_S3_ACCESS_KEY"], os.environ["NIMBUS_TEST_S3_SECRET_KEY"]
    path = f"/{bucket}/{urllib.parse.quote(key)}" if key else f"/{bucket}"
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                     for k, v in sorted((params or {}).items()))
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    digest = hashlib.sha256(data).hexdigest()
    signed = {k.lower(): v for k, v in (headers or {}).items()}
    signed.update({"host": urllib.parse.urlparse(endpoint).netloc, "x-amz-content-sha256": digest,
                   "x-amz-date": stamp})
    names = ";".join(sorted(signed))
    canonical = "\n".join([method, path, query, *(f"{k}:{signed[k]}" for k in sorted(signed)), "", names, digest])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key_ = _sign(_sign(_sign(_sign(("AWS4" + secret).encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key_, to_sign.encode(), hashlib.sha256).hexdigest()
    sent = {k: v for k, v in signed.items() if k != "host"}
    sent["Authorization"] = f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={names}, Signature={signature}"
    return requests.request(method, f"{endpoint}{path}" + (f"?{query}" if query else ""), data=data or None,
                            headers=sent, timeout=30)


def list_keys(prefix):
    """Every key under `prefix` (follows continuation tokens)."""
    keys, token = [], None
    while True:
        params = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
        r = request("GET", params=params)
        assert r.status_code == 200, r.text[:300]
        keys += re.findall(r"<Key>([^<]+)</Key>", r.text)
        match = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", r.text)
        if not match:
            return keys
        token = match.group(1)
