#!/usr/bin/env python3
"""Light sleep through the edge (called by bench.sh; not a test).

Per round, on the same sandbox: a request to it awake, then the same
request right after it was put to light sleep (frozen), each on a new
connection, timed to the end of the answer. The reference the target is
set against is the Docker CLI doing the same by hand: `docker unpause`,
then the request straight to the app.

    light_sleep.py API EDGE_PORT HOST SANDBOX_ID APP_IP [rounds]
"""

import http.client
import json
import statistics
import subprocess
import sys
import time


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def api(base, method, path):
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request(method, path, body="{}", headers={"content-type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 200, (r.status, body)
    return json.loads(body)


def get(addr, port, host):
    """Milliseconds from connect to the whole answer, on a new connection."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection(addr, port, timeout=60)
    conn.request("GET", "/", headers={"host": host})
    r = conn.getresponse()
    r.read()
    conn.close()
    took = (time.perf_counter() - t) * 1000
    assert r.status == 200, r.status
    return took


def main():
    base, edge_port, host, sid, ip = sys.argv[1:6]
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 50
    edge_port = int(edge_port)
    awake, asleep, cli = [], [], []
    for _ in range(3):
        get("127.0.0.1", edge_port, host)
    for _ in range(rounds):
        awake.append(get("127.0.0.1", edge_port, host))
        assert api(base, "POST", f"/v1/sandboxes/{sid}/sleep")["status"] == "asleep"
        # A sandbox falls asleep after its idle timeout: long after, the
        # edge has seen Docker's pause event. Give it that moment here.
        time.sleep(0.05)
        asleep.append(get("127.0.0.1", edge_port, host))
        assert api(base, "GET", f"/v1/sandboxes/{sid}")["status"] == "running"
    # The reference: the same thaw and request by hand with the CLI.
    name = f"berth-{sid}"
    for _ in range(min(rounds, 20)):
        subprocess.run(["docker", "pause", name], check=True, capture_output=True)
        t = time.perf_counter()
        subprocess.run(["docker", "unpause", name], check=True, capture_output=True)
        get(ip, 3000, host)
        cli.append((time.perf_counter() - t) * 1000)
    a50, s50, c50 = statistics.median(awake), statistics.median(asleep), statistics.median(cli)
    print(f"light sleep ({rounds} rounds, same sandbox, a new connection per request)")
    print(f"  awake -> whole answer via edge    p50 {a50:6.1f} ms   p99 {pct(awake, 99):6.1f} ms")
    print(f"  asleep -> whole answer via edge   p50 {s50:6.1f} ms   p99 {pct(asleep, 99):6.1f} ms")
    print(f"  docker unpause CLI + request      p50 {c50:6.1f} ms   p99 {pct(cli, 99):6.1f} ms   ({len(cli)} rounds)")
    print(f"  light wake cost (asleep - awake)  p50 {s50 - a50:+6.1f} ms   p99 {pct(asleep, 99) - pct(awake, 99):+6.1f} ms   (target p50 <= +25 ms)")
    print(f"  ratio via edge / CLI              {s50 / c50:6.2f}   (target < 1.00)")


if __name__ == "__main__":
    main()
