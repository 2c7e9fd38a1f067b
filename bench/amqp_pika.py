"""Anchor for the publish benchmark: pika (Debian python3-pika) publishing persistent
messages with publisher confirms, one confirm per message, to a private queue.

Usage: amqp_pika.py AMQP_URL COUNT. Prints one JSON line like nimbus-bench-data.
"""
import json
import sys
import time
import uuid

import pika


def main():
    url, count = sys.argv[1], int(sys.argv[2])
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    queue = "bench.pika." + uuid.uuid4().hex[:8]
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    ch.confirm_delivery()
    body = b'{"image_id":"0190f5a2-7d4e-7b1c-9a31-5f2c8e6d4b10","attempt":1}'
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    began = time.perf_counter()
    for i in range(count):
        ch.basic_publish("", queue, body, props, mandatory=True)
    seconds = time.perf_counter() - began
    ch.queue_delete(queue)
    conn.close()
    print(json.dumps({"bench": "amqp-pika", "msgs": count, "seconds": round(seconds, 3),
                      "msgs_per_s": round(count / seconds, 1)}))


if __name__ == "__main__":
    main()
