#!/usr/bin/env python3
"""Resident memory of berth-control and berth-edge together (not a test).

Release binaries, N busybox sandboxes, 2000 preview requests through the
edge to one of them; prints each process's RSS (anonymous and file-backed)
idle and loaded, and the sum against the target (< 40 MB with 100).

    python3 control/bench/footprint.py [sandboxes (100)]

Run control/bench/bench.py first once: it builds the release binaries and
the berth-bench-sandbox image this uses.
"""
import subprocess, os, time, json, http.client, tempfile, shutil, sys, socket
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release") + "/"
n = int(sys.argv[1]) if len(sys.argv) > 1 else 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


data = tempfile.mkdtemp(prefix="berth-foot-")
api_port, edge_port, admin_port = free_port(), free_port(), free_port()
net = f"berth-foot-{os.getpid()}"
env = {"PATH": os.environ["PATH"], "BERTH_DATA_DIR": data, "BERTH_API_BIND": f"127.0.0.1:{api_port}",
       "BERTH_IMAGE": "berth-bench-sandbox:latest", "BERTH_NETWORK": net,
       "BERTH_DEFAULT_MEMORY": "32m", "RUST_LOG": "warn"}
c = subprocess.Popen([T + "berth-control"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
eenv = {"PATH": os.environ["PATH"], "BERTH_EDGE_DATA_DIR": data + "/edge", "BERTH_EDGE_HTTP_BIND": f"127.0.0.1:{edge_port}",
        "BERTH_EDGE_ADMIN_BIND": f"127.0.0.1:{admin_port}", "BERTH_CONTROL_URL": f"http://127.0.0.1:{api_port}", "RUST_LOG": "warn"}
def rss(p):
    with open(f"/proc/{p.pid}/status") as f:
        d = {l.split(":")[0]: int(l.split()[1]) for l in f if l.startswith(("VmRSS", "RssAnon", "RssFile"))}
    return d["VmRSS"] / 1024, d["RssAnon"] / 1024, d["RssFile"] / 1024
def maps(p, name):
    """Resident KiB by mapping (FOOTPRINT_MAPS=1): what the RSS is made of."""
    by = {}
    cur = None
    with open(f"/proc/{p.pid}/smaps") as f:
        for l in f:
            parts = l.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                cur = (parts[5] if len(parts) > 5 else "[anon]") + " " + parts[1]
            elif parts[0] == "Rss:":
                by[cur] = by.get(cur, 0) + int(parts[1])
    for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {name} {v/1024:6.1f} MiB  {k}")
def call(m, path, body=None, port=api_port, host=None):
    k = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    k.request(m, path, body=json.dumps(body) if body is not None else None, headers={"host": host} if host else {})
    r = k.getresponse(); d = r.read(); return r.status, d
inst = None; e = None
try:
    for _ in range(100):
        try: inst = json.loads(call("GET", "/v1/info")[1])["instance_id"]; break
        except OSError: time.sleep(0.1)
    e = subprocess.Popen([T + "berth-edge"], env=eenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    print("idle: control %.1f (anon %.1f file %.1f)  edge %.1f (anon %.1f file %.1f)" % (rss(c) + rss(e)))
    call("POST", "/sandbox", {"id": "web", "ports": [8080], "start": "httpd -f -p 8080 -h /tmp"})
    for i in range(n - 1): call("POST", "/sandbox", {"id": f"f{i}"})
    time.sleep(1)
    for _ in range(2000):
        try: call("GET", "/", port=edge_port, host="s-web-8080.preview.localhost")
        except OSError: pass
    time.sleep(6)
    rc, re_ = rss(c), rss(e)
    print("%d sandboxes, 2000 preview requests: control %.1f (anon %.1f file %.1f)  edge %.1f (anon %.1f file %.1f)" % ((n,) + rc + re_))
    if os.environ.get("FOOTPRINT_MAPS"):
        maps(c, "control"); maps(e, "edge")
        for p, name in ((c, "control"), (e, "edge")):
            print(f"  {name} threads: {len(os.listdir(f'/proc/{p.pid}/task'))}")
    print("together %.1f MiB (anon %.1f, file-backed %.1f)   target < 40 MB" % (rc[0] + re_[0], rc[1] + re_[1], rc[2] + re_[2]))
finally:
    for p in (e, c):
        if p:
            p.terminate()
            p.wait()
    ids = subprocess.run(["docker","ps","-aq","--filter",f"label=berth.instance={inst}"],capture_output=True,text=True).stdout.split()
    if ids: subprocess.run(["docker","rm","-f",*ids],capture_output=True)
    subprocess.run([os.path.join(ROOT, "deploy/firewall/berth-firewall.sh"),"remove",inst],capture_output=True)
    subprocess.run(["docker","network","rm",net,net+"-internal"],capture_output=True)
    shutil.rmtree(data, ignore_errors=True)
