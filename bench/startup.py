"""Start-to-ready time of a binary: from exec until GET /readyz answers 200 (its
PostgreSQL, Redis and S3 checks included), with the environment of the stack's api-1.

Usage: startup.py BINARY RUNS SUPERVISORD_CONF. Prints each run and the median, in ms.
"""
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from stack_env import supervised_program


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(binary, base_env):
    port = free_port()
    env = {**os.environ, **base_env, "NIMBUS_HTTP_ADDRESS": "127.0.0.1", "NIMBUS_HTTP_PORT": str(port),
           "NIMBUS_INSTANCE": "bench", "NIMBUS_DRAIN_DELAY": "0ms"}
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
    binary, runs, conf = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    base_env = supervised_program("api-1", conf)[1]
    times = [one_run(binary, base_env) for _ in range(runs)]
    for t in times:
        print(f"  {t:7.1f} ms")
    print(f"median start-to-ready: {statistics.median(times):.1f} ms")


if __name__ == "__main__":
    main()
