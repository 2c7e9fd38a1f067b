"""Anchor for the publish benchmark: pika (Debian python3-pika) publishing persistent,
mandatory messages with publisher confirms to a private quorum queue, BATCH at a time:
publish BATCH messages, wait until the broker has confirmed every one of them, then the
next BATCH — what Nimbus's publisher does with a batch (BATCH=1: confirm each).

pika's BlockingConnection waits for the confirm of each basic_publish once
confirm_delivery() is on, so it cannot batch; this uses the SelectConnection (callback)
API for every batch size, so both rows share one client path.

Usage: amqp_pika.py AMQP_URL COUNT [BATCH]. Prints one JSON line like nimbus-bench-data.
"""
import json
import sys
import time
import uuid

import pika
from pika.spec import Basic

BODY = b'{"image_id":"0190f5a2-7d4e-7b1c-9a31-5f2c8e6d4b10","attempt":1}'


class BatchedPublisher:
    """Lives on the connection's ioloop thread; every method is a pika callback."""

    def __init__(self, url, count, batch):
        self.count, self.batch = count, batch
        self.queue = "bench.pika." + uuid.uuid4().hex[:8]
        self.sent = 0
        self.unconfirmed = set()
        self.next_tag = 1  # delivery tag of the next publish on this channel
        self.began = self.seconds = None
        self.error = None
        self.channel = None
        self.conn = pika.SelectConnection(pika.URLParameters(url), on_open_callback=self.on_open,
                                          on_open_error_callback=self.on_failed, on_close_callback=self.on_closed)

    def run(self):
        self.conn.ioloop.start()
        if self.error:
            raise SystemExit(f"amqp_pika: {self.error}")
        return self.seconds

    def on_open(self, conn):
        conn.channel(on_open_callback=self.on_channel)

    def on_failed(self, _conn, error):
        self.error = f"cannot connect: {error}"
        self.conn.ioloop.stop()

    def on_closed(self, _conn, reason):
        if self.seconds is None and self.error is None:
            self.error = f"connection closed: {reason}"
        self.conn.ioloop.stop()

    def fail(self, why):
        self.error = why
        self.conn.close()

    def on_channel(self, channel):
        self.channel = channel
        channel.add_on_return_callback(lambda *_: self.fail("a message was returned (unroutable)"))
        channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"},
                              callback=lambda _frame: channel.confirm_delivery(self.on_confirm,
                                                                               callback=self.on_confirm_mode))

    def on_confirm_mode(self, _frame):
        self.began = time.perf_counter()
        self.publish_batch()

    def publish_batch(self):
        n = min(self.batch, self.count - self.sent)
        for i in range(n):
            props = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                         message_id=str(self.sent + i), headers={})
            self.channel.basic_publish("", self.queue, BODY, props, mandatory=True)
            self.unconfirmed.add(self.next_tag)
            self.next_tag += 1
        self.sent += n

    def on_confirm(self, frame):
        method = frame.method
        if isinstance(method, Basic.Nack):
            self.fail("the broker refused a message (nack)")
            return
        if method.multiple:
            self.unconfirmed = {t for t in self.unconfirmed if t > method.delivery_tag}
        else:
            self.unconfirmed.discard(method.delivery_tag)
        if self.unconfirmed or self.error:
            return
        if self.sent < self.count:
            self.publish_batch()
            return
        self.seconds = time.perf_counter() - self.began
        self.channel.queue_delete(self.queue, callback=lambda _frame: self.conn.close())


def main():
    url, count = sys.argv[1], int(sys.argv[2])
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    seconds = BatchedPublisher(url, count, batch).run()
    print(json.dumps({"bench": f"amqp-pika-batch-{batch}", "msgs": count, "seconds": round(seconds, 3),
                      "msgs_per_s": round(count / seconds, 1)}))


if __name__ == "__main__":
    main()
