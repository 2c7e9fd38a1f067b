"""Start-to-ready time of a binary: from exec until GET /readyz answers 200.

Usage: startup.py BINARY RUNS. Prints each run and the median, in milliseconds.
"""
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(binary):
    port = free_port()
    env = dict(os.environ, NIMBUS_HTTP_ADDRESS="127.0.0.1", NIMBUS_HTTP_PORT=str(port),
               NIMBUS_INSTANCE="bench", NIMBUS_DRAIN_DELAY="0ms")
    started = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return (time.perf_counter() - started) * 1000
            except OSError:
                time.sleep(0.001)
            if time.perf_counter() - started > 10:
                raise RuntimeError("not ready after 10 s")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def main():
    binary, runs = sys.argv[1], int(sys.argv[2])
    times = [one_run(binary) for _ in range(runs)]
    for t in times:
        print(f"  {t:7.1f} ms")
    print(f"median start-to-ready: {statistics.median(times):.1f} ms")


if __name__ == "__main__":
    main()
