"""A read-only look into the stack's S3 bucket (AWS Signature V4, standard library
only), for tests that must prove what storage holds — e.g. that a refused upload left
no object behind."""
import datetime
import hashlib
import hmac
import os
import re
import urllib.parse

import requests


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def list_keys(prefix):
    """Every key under `prefix` (follows continuation tokens)."""
    endpoint = os.environ["NIMBUS_TEST_S3_ENDPOINT"]
    bucket, region = os.environ["NIMBUS_TEST_S3_BUCKET"], os.environ["NIMBUS_TEST_S3_REGION"]
    access, secret = os.environ["NIMBUS_TEST_S3_ACCESS_KEY"], os.environ["NIMBUS_TEST_S3_SECRET_KEY"]
    host = urllib.parse.urlparse(endpoint).netloc
    keys, token = [], None
    while True:
        params = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
        query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                         for k, v in sorted(params.items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        empty = hashlib.sha256(b"").hexdigest()
        canonical = "\n".join(["GET", f"/{bucket}", query, f"host:{host}", f"x-amz-content-sha256:{empty}",
                               f"x-amz-date:{stamp}", "", "host;x-amz-content-sha256;x-amz-date", empty])
        scope = f"{day}/{region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = _sign(_sign(_sign(_sign(("AWS4" + secret).encode(), day), region), "s3"), "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        auth = (f"AWS4-HMAC-SHA256 Credential={access}/{scope}, "
                f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}")
        r = requests.get(f"{endpoint}/{bucket}?{query}", timeout=10, headers={
            "x-amz-date": stamp, "x-amz-content-sha256": empty, "Authorization": auth})
        assert r.status_code == 200, r.text[:300]
        keys += re.findall(r"<Key>([^<]+)</Key>", r.text)
        match = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", r.text)
        if not match:
            return keys
        token = match.group(1)
