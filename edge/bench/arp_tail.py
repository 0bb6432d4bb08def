#!/usr/bin/env python3
"""The start -> port-ready tail, with plain Docker and no berth (not a test).

Per round: stop the container, make one connection attempt to its address
(as a request that meets a stopped sandbox does: it leaves the host's
neighbour entry unresolved), start it through the Docker API, and time until
a connection succeeds (150 ms attempts, 25 ms apart, as the edge waits).
With the kernel's default ARP retry (retrans_time_ms 1000) some starts wait
for the next probe; with berth's 100 ms none should.

    edge/bench/arp_tail.py [rounds (20)] [retrans_ms (1000)]

Needs the berth-bench-sandbox image (control/bench/bench.py builds it).
Makes its own network and container, and removes them.
"""
import os
import socket
import statistics
import subprocess
import sys
import time

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
retrans = sys.argv[2] if len(sys.argv) > 2 else "1000"
name = f"berth-arp-{os.getpid()}"
bridge = f"brarp{os.getpid() % 100000}"


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def attempt(ip, timeout):
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((ip, 8080))
        return True
    except OSError:
        return False
    finally:
        s.close()


docker("network", "create", "-o", f"com.docker.network.bridge.name={bridge}", name)
try:
    docker("run", "-d", "--name", name, "--network", name, "berth-bench-sandbox:latest", "httpd", "-f", "-p", "8080")
    with open(f"/proc/sys/net/ipv4/neigh/{bridge}/retrans_time_ms", "w") as f:
        f.write(retrans)
    ip = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{name}").IPAddress}}}}', name)
    took = []
    for _ in range(rounds):
        docker("stop", "-t", "0", name)
        attempt(ip, 0.05)
        subprocess.run(["curl", "-sf", "--unix-socket", "/var/run/docker.sock", "-XPOST",
                        f"http://localhost/containers/{name}/start"], check=True)
        t = time.perf_counter()
        while not attempt(ip, 0.15):
            time.sleep(0.025)
        took.append(round((time.perf_counter() - t) * 1000))
    print(f"retrans_time_ms {retrans}: start -> connect, {rounds} rounds: p50 {statistics.median(took)} ms, "
          f"max {max(took)} ms, over 100 ms: {sum(t > 100 for t in took)}   {sorted(took)}")
finally:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "network", "rm", name], capture_output=True)
