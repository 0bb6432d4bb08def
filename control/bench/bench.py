#!/usr/bin/env python3
"""berth-control benchmark (not a test): one run, printed side by side.

  - create latency p50/p95 (POST /sandbox → running container) next to
    `docker run -d` of the same image on the same network, and their ratio
  - the same creates claimed from the warm pool (BERTH_WARM_POOL), next to
    the cold ones (target: p50 <= 0.1x cold)
  - wake latency p50 (POST …/start of a stopped sandbox) next to
    `docker start` of a stopped container, and their ratio
  - light wake (POST …/start of a frozen sandbox) next to `docker unpause`
  - exec latency p50 through the API (the sandbox's exec agent) next to
    `docker exec` CLI on the same container, and their ratio (target:
    <= 0.1), and through the API with Docker's exec (no agent)
  - streamed exec: request to first output, through the agent (target
    p50 <= 5 ms) and through Docker's exec
  - control's resident memory with N sandboxes

Runs the release binary against the local Docker daemon with a static
busybox image built on the spot; removes everything it made.

    python3 control/bench/bench.py [--sandboxes 50] [--execs 100] [--creates 20]
                                   [--wakes 10] [--binary path/to/berth-control]

--binary runs another build (e.g. an older commit's) under the same
measurements, for before/after figures.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "berth-bench-sandbox:latest"


def sh(*args, check=True, capture=True):
    return subprocess.run(args, check=check, capture_output=capture, text=True)


def build_image():
    busybox = shutil.which("busybox") or "/bin/busybox"
    ctx = tempfile.mkdtemp(prefix="berth-bench-img-")
    shutil.copy(busybox, os.path.join(ctx, "busybox"))
    with open(os.path.join(ctx, "passwd"), "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCOPY passwd /etc/passwd\n'
            "CMD [\"/bin/sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done\"]\n"
        )
    sh("docker", "build", "-q", "-t", IMAGE, ctx)
    shutil.rmtree(ctx)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def metric(port, series):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


# Kills a sandbox's exec agent (busybox has no pkill): the pattern is
# anchored, so the shell running this never matches itself.
KILL_AGENT = """for d in /proc/[0-9]*; do
  case "$(tr '\\0' ' ' < $d/cmdline 2>/dev/null)" in "/.berth/execd serve"*) kill ${d#/proc/};; esac
done"""


def first_output_ms(port, path):
    """Milliseconds from sending a streamed exec to reading its first
    stdout event (the connection is made beforehand)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    body = json.dumps({"cmd": "echo hi; sleep 0.02"})
    t = time.perf_counter()
    conn.request("POST", path, body=body, headers={"content-type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.status
    took = None
    while True:
        line = r.fp.readline()
        if not line:
            break
        if took is None and line.startswith(b"event: stdout"):
            took = (time.perf_counter() - t) * 1000
            break
    r.close()
    conn.close()
    assert took is not None, "no stdout event"
    return took


class Api:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None):
        payload = json.dumps(body) if body is not None else None
        self.conn.request(method, path, body=payload, headers={"content-type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=50)
    ap.add_argument("--execs", type=int, default=100)
    ap.add_argument("--creates", type=int, default=20)
    ap.add_argument("--wakes", type=int, default=10)
    ap.add_argument("--binary")
    args = ap.parse_args()

    if args.binary:
        binary = args.binary
    else:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        print("building berth-control (release)…", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "berth-control"], cwd=ROOT, check=True)
        binary = os.path.join(target, "release", "berth-control")
    build_image()

    data = tempfile.mkdtemp(prefix="berth-bench-")
    port = free_port()
    network = f"berth-bench-{os.getpid()}"
    env = {
        "PATH": os.environ["PATH"],
        "BERTH_DATA_DIR": data,
        "BERTH_API_BIND": f"127.0.0.1:{port}",
        "BERTH_IMAGE": IMAGE,
        "BERTH_NETWORK": network,
        "BERTH_DEFAULT_MEMORY": "64m",
        "BERTH_DEFAULT_CPUS": "1",
        "RUST_LOG": "warn",
        "BERTH_WARM_POOL": str(args.creates),
    }
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    instance = None
    references = []
    try:
        api = Api(port)
        for _ in range(100):
            try:
                status, info = api.call("GET", "/v1/info")
                instance = info["instance_id"]
                break
            except OSError:
                api = Api(port)
                time.sleep(0.1)
        # Warm up: the network and the image inspect path.
        api.call("POST", "/sandbox", {"id": "warm"})

        def pool_ready():
            return api.call("GET", "/v1/info")[1]["warm_pool"]["ready"]

        def pool_full():
            deadline = time.time() + 300
            while pool_ready() < args.creates and time.time() < deadline:
                time.sleep(0.2)

        # Every series runs with the pool full and not refilling, so that
        # none competes with the pool's background creates (but the warm
        # one, whose claims start refills as they would in use).
        pool_full()
        # Cold: a client-chosen id is never served from the pool.
        create_ms = []
        for i in range(args.creates):
            t = time.perf_counter()
            status, body = api.call("POST", "/sandbox", {"id": f"cold-{i}"})
            create_ms.append((time.perf_counter() - t) * 1000)
            assert status == 201, body
        # Warm: the same creates without an id, each claiming a pooled one.
        warm_ms = []
        for i in range(args.creates):
            t = time.perf_counter()
            status, body = api.call("POST", "/sandbox", {})
            warm_ms.append((time.perf_counter() - t) * 1000)
            assert status == 201, body
        warm_claimed = int(metric(port, 'berth_control_warm_pool_creates_total{result="warm"}'))
        pool_full()
        # The reference: the Docker CLI starting the same image on the same
        # network, with the same limits.
        docker_run_ms = []
        for i in range(args.creates):
            name = f"berth-bench-ref-{os.getpid()}-{i}"
            references.append(name)
            t = time.perf_counter()
            sh("docker", "run", "-d", "--name", name, "--network", network,
               "--memory", "64m", "--cpus", "1", IMAGE)
            docker_run_ms.append((time.perf_counter() - t) * 1000)

        # Wake: a stopped sandbox started through the API, next to
        # `docker start` of a stopped container.
        wake_ms, docker_start_ms = [], []
        status, body = api.call("POST", "/sandbox", {"id": "sleeper"})
        assert status == 201, body
        for i in range(args.wakes):
            status, body = api.call("POST", "/sandbox/sleeper/stop")
            assert status == 200, body
            t = time.perf_counter()
            status, body = api.call("POST", "/sandbox/sleeper/start")
            wake_ms.append((time.perf_counter() - t) * 1000)
            assert status == 200 and body["status"] == "running", body
            ref = references[i % len(references)]
            sh("docker", "stop", "-t", "0", ref)
            t = time.perf_counter()
            sh("docker", "start", ref)
            docker_start_ms.append((time.perf_counter() - t) * 1000)

        # Light wake: a frozen sandbox started through the API, next to
        # `docker unpause` of a paused container.
        light_ms, unpause_ms = [], []
        for i in range(args.wakes * 2):
            status, body = api.call("POST", "/v1/sandboxes/sleeper/sleep")
            assert status == 200 and body["status"] == "asleep", body
            t = time.perf_counter()
            status, body = api.call("POST", "/v1/sandboxes/sleeper/start")
            light_ms.append((time.perf_counter() - t) * 1000)
            assert status == 200 and body["status"] == "running", body
            ref = references[i % len(references)]
            sh("docker", "pause", ref)
            t = time.perf_counter()
            sh("docker", "unpause", ref)
            unpause_ms.append((time.perf_counter() - t) * 1000)

        for _ in range(5):
            api.call("POST", "/sandbox/warm/exec", {"cmd": ["true"]})
        api_ms = []
        for _ in range(args.execs):
            t = time.perf_counter()
            status, body = api.call("POST", "/sandbox/warm/exec", {"cmd": ["true"]})
            api_ms.append((time.perf_counter() - t) * 1000)
            assert status == 200 and body["exit_code"] == 0, body
        cli_ms = []
        for _ in range(args.execs):
            t = time.perf_counter()
            sh("docker", "exec", "berth-warm", "true")
            cli_ms.append((time.perf_counter() - t) * 1000)
        # The same through the API once the sandbox's exec agent is gone:
        # control falls back to Docker's exec.
        status, body = api.call("POST", "/sandbox", {"id": "noagent"})
        assert status == 201, body
        sh("docker", "exec", "berth-noagent", "sh", "-c", KILL_AGENT)
        fallback_ms = []
        for _ in range(args.execs):
            t = time.perf_counter()
            status, body = api.call("POST", "/sandbox/noagent/exec", {"cmd": ["true"]})
            fallback_ms.append((time.perf_counter() - t) * 1000)
            assert status == 200 and body["exit_code"] == 0, body
        # Streamed output: from sending the request to its first stdout event.
        stream_ms = [first_output_ms(port, "/v1/sandboxes/warm/exec/stream") for _ in range(args.execs)]
        stream_fallback_ms = [
            first_output_ms(port, "/v1/sandboxes/noagent/exec/stream") for _ in range(args.execs)
        ]

        existing = 3 + 2 * args.creates
        for _ in range(max(0, args.sandboxes - existing)):
            status, body = api.call("POST", "/sandbox", {})
            assert status == 201, body
        status, listing = api.call("GET", "/sandboxes")
        count = len(listing["sandboxes"])
        with open(f"/proc/{proc.pid}/status") as f:
            rss_kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

        engine = sh("docker", "version", "-f", "{{.Server.Version}}").stdout.strip()
        print(f"berth-control benchmark — Docker {engine}, {os.cpu_count()} CPUs")
        c50, r50 = statistics.median(create_ms), statistics.median(docker_run_ms)
        print(f"create latency ({args.creates} creates):")
        print(f"  through berth API   p50 {c50:7.1f} ms   p95 {pct(create_ms, 95):7.1f} ms   (target p50 < 1000 ms)")
        print(f"  docker run -d CLI   p50 {r50:7.1f} ms   p95 {pct(docker_run_ms, 95):7.1f} ms")
        print(f"  ratio API/CLI       {c50 / r50:7.2f}")
        m50 = statistics.median(warm_ms)
        print(f"create from the warm pool ({args.creates} creates, {warm_claimed} claimed):")
        print(f"  warm through API    p50 {m50:7.1f} ms   p95 {pct(warm_ms, 95):7.1f} ms")
        print(f"  ratio warm/cold     {m50 / c50:7.2f}      (target <= 0.10)")
        w50, s50 = statistics.median(wake_ms), statistics.median(docker_start_ms)
        print(f"wake latency ({args.wakes} starts of a stopped sandbox):")
        print(f"  through berth API   p50 {w50:7.1f} ms   p95 {pct(wake_ms, 95):7.1f} ms")
        print(f"  docker start CLI    p50 {s50:7.1f} ms   p95 {pct(docker_start_ms, 95):7.1f} ms")
        print(f"  ratio API/CLI       {w50 / s50:7.2f}")
        l50, u50 = statistics.median(light_ms), statistics.median(unpause_ms)
        print(f"light wake ({len(light_ms)} starts of a frozen sandbox):")
        print(f"  through berth API   p50 {l50:7.1f} ms   p99 {pct(light_ms, 99):7.1f} ms")
        print(f"  docker unpause CLI  p50 {u50:7.1f} ms   p99 {pct(unpause_ms, 99):7.1f} ms")
        print(f"  ratio API/CLI       {l50 / u50:7.2f}      (target < 1.0)")
        a50, c50 = statistics.median(api_ms), statistics.median(cli_ms)
        print(f"exec latency ({args.execs} runs of `true`):")
        print(f"  through berth API   p50 {a50:7.1f} ms   p95 {pct(api_ms, 95):7.1f} ms")
        print(f"  docker exec CLI     p50 {c50:7.1f} ms   p95 {pct(cli_ms, 95):7.1f} ms")
        f50 = statistics.median(fallback_ms)
        print(f"  API, Docker's exec  p50 {f50:7.1f} ms   p95 {pct(fallback_ms, 95):7.1f} ms   (no exec agent: the fallback)")
        print(f"  ratio API/CLI       {a50 / c50:7.2f}      (target <= 0.10)")
        print(f"  ratio agent/Docker's exec through the API {a50 / f50:7.2f}")
        s50, sf50 = statistics.median(stream_ms), statistics.median(stream_fallback_ms)
        print(f"streamed exec, request to first output ({args.execs} runs):")
        print(f"  through the agent   p50 {s50:7.1f} ms   p95 {pct(stream_ms, 95):7.1f} ms   (target p50 <= 5 ms)")
        print(f"  Docker's exec       p50 {sf50:7.1f} ms   p95 {pct(stream_fallback_ms, 95):7.1f} ms")
        print(f"control RSS with {count} sandboxes: {rss_kb / 1024:.1f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if instance:
            ids = sh("docker", "ps", "-aq", "--filter", f"label=berth.instance={instance}").stdout.split()
            if ids:
                sh("docker", "rm", "-f", *ids, check=False)
            # The egress rules control installed for this run.
            sh(os.path.join(ROOT, "deploy/firewall/berth-firewall.sh"), "remove", instance, check=False)
        if references:
            sh("docker", "rm", "-f", *references, check=False)
        sh("docker", "network", "rm", network, f"{network}-internal", check=False)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
