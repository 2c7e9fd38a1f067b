"""Anchor for the S3 benchmark: boto3 (Debian python3-boto3) putting COUNT objects of MIB
MiB of random bytes, IN_FLIGHT at a time from a thread pool sharing one client — what
`nimbus-bench-data s3 COUNT MIB IN_FLIGHT` does. One PutObject per object (no multipart),
SigV4 with a signed payload over plain HTTP, path-style addressing, as Nimbus's client.
botocore also adds a Content-MD5 and an `Expect: 100-continue` round trip to each PUT,
which Nimbus's client does not: both are turned off, so the two clients do the same work.

Usage: s3_boto3.py COUNT MIB [IN_FLIGHT], with the stack's NIMBUS_TEST_S3_* variables
set. Prints one JSON line like nimbus-bench-data.
"""
import concurrent.futures
import json
import os
import sys
import time
import uuid

import boto3
from botocore.config import Config
from botocore.handlers import add_expect_header, conditionally_calculate_md5


def main():
    count, mib = int(sys.argv[1]), int(sys.argv[2])
    in_flight = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    env = os.environ
    client = boto3.client(
        "s3", endpoint_url=env["NIMBUS_TEST_S3_ENDPOINT"], region_name=env["NIMBUS_TEST_S3_REGION"],
        aws_access_key_id=env["NIMBUS_TEST_S3_ACCESS_KEY"], aws_secret_access_key=env["NIMBUS_TEST_S3_SECRET_KEY"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, max_pool_connections=in_flight,
                      retries={"max_attempts": 3, "mode": "standard"}))
    client.meta.events.unregister("before-call.s3.PutObject", conditionally_calculate_md5)
    client.meta.events.unregister("before-call.s3", add_expect_header)
    bucket = env["NIMBUS_TEST_S3_BUCKET"]
    prefix = f"bench-boto3-{uuid.uuid4().hex[:8]}/"
    data = os.urandom(mib * 1024 * 1024)
    keys = [f"{prefix}{i}" for i in range(count)]

    def put(key):
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/octet-stream")

    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        began = time.perf_counter()
        list(pool.map(put, keys))
        seconds = time.perf_counter() - began
        list(pool.map(lambda key: client.delete_object(Bucket=bucket, Key=key), keys))
    print(json.dumps({"bench": f"s3-boto3-{in_flight}", "MiB": count * mib, "seconds": round(seconds, 3),
                      "MiB_per_s": round(count * mib / seconds, 1)}))


if __name__ == "__main__":
    main()
