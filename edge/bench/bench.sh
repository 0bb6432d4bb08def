#!/usr/bin/env bash
# berth-edge benchmark (not a test): one run, side by side, same upstream.
#
#   1. Throughput: wrk through berth-edge, through nginx and through Caddy
#      (Debian packages), all proxying to the same sandbox container (nginx
#      serving a small file). Prints requests/s and p99, and the ratios.
#   2. Wake latency: stopped sandbox -> first byte through the edge, next to
#      raw `docker start` -> port accepting connections, same container.
#   3. Light sleep: a request to a frozen sandbox next to the same request
#      awake, and next to `docker unpause` + the request by hand
#      (light_sleep.py).
#   4. HTTPS: the edge and nginx with the same certificate.
#
# Targets: edge req/s >= nginx's with p99 no worse, >= 2x Caddy's; a wake
# adds < 50 ms to raw docker start -> ready; a light wake adds <= 25 ms to
# an awake request (p50) and beats the CLI.
#
#   edge/bench/bench.sh [seconds per run (10)] [connections (64)] [rounds (3)]
#   BERTH_EDGE_WORK_STEALING=false edge/bench/bench.sh   # any edge setting
#   BERTH_BENCH_SECTIONS="wake sleep" edge/bench/bench.sh   # some sections only
#   BERTH_BENCH_BIN=/some/dir edge/bench/bench.sh   # that dir's berth-control and berth-edge, not built here
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
CONNECTIONS="${2:-64}"
ROUNDS="${3:-3}"
SECTIONS=" ${BERTH_BENCH_SECTIONS:-throughput wake sleep https} "
section() { [[ "$SECTIONS" == *" $1 "* ]]; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/berth-target}"
WORK="$(mktemp -d /tmp/berth-edge-bench.XXXXXX)"
IMAGE=berth-bench-nginx:latest
NETWORK="berth-bench-$$"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${INSTANCE:-}" ]; then
    docker ps -aq --filter "label=berth.instance=$INSTANCE" | xargs -r docker rm -f >/dev/null
    # The egress rules control installed for this run.
    deploy/firewall/berth-firewall.sh remove "$INSTANCE" >/dev/null 2>&1 || true
  fi
  docker network rm "$NETWORK" "$NETWORK-internal" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
for tool in wrk nginx caddy; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "building release binaries and the upstream image…" >&2
BIN="${BERTH_BENCH_BIN:-$CARGO_TARGET_DIR/release}"
[ -n "${BERTH_BENCH_BIN:-}" ] || cargo build --release -q -p berth-control -p berth-edge
agent-image/build-base.sh >/dev/null
mkdir -p "$WORK/img"
cat > "$WORK/img/nginx.conf" <<'EOF'
worker_processes auto;
pid /tmp/nginx.pid;
error_log /dev/stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path /tmp/body; proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fcgi; uwsgi_temp_path /tmp/uwsgi; scgi_temp_path /tmp/scgi;
  keepalive_requests 100000;
  server { listen 3000; location / { root /srv; } }
}
EOF
head -c 1024 /dev/urandom | base64 > "$WORK/img/index.html"
cat > "$WORK/img/Dockerfile" <<'EOF'
FROM berth-base:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null && rm -rf /var/lib/apt/lists/*
COPY nginx.conf /etc/nginx/bench.conf
COPY index.html /srv/index.html
CMD ["nginx", "-c", "/etc/nginx/bench.conf", "-g", "daemon off;"]
EOF
docker build -q -t "$IMAGE" "$WORK/img" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API_PORT=$(free_port); EDGE_PORT=$(free_port); ADMIN_PORT=$(free_port); NGINX_PORT=$(free_port); CADDY_PORT=$(free_port)
PLAIN_PORT=$(free_port); PLAIN_ADMIN=$(free_port)
API="http://127.0.0.1:$API_PORT"

BERTH_DATA_DIR="$WORK/data" BERTH_API_BIND="127.0.0.1:$API_PORT" BERTH_IMAGE="$IMAGE" \
  BERTH_NETWORK="$NETWORK" RUST_LOG=warn "$BIN/berth-control" >"$WORK/control.log" 2>&1 &
pids+=($!)
BERTH_EDGE_HTTP_BIND="127.0.0.1:$EDGE_PORT" BERTH_EDGE_ADMIN_BIND="127.0.0.1:$ADMIN_PORT" \
  BERTH_CONTROL_URL="$API" RUST_LOG=warn "$BIN/berth-edge" >"$WORK/edge.log" 2>&1 &
pids+=($!); EDGE_PID=$!
# The same edge with its relay off: every request through Pingora's proxy loop.
BERTH_EDGE_RELAY=false BERTH_EDGE_HTTP_BIND="127.0.0.1:$PLAIN_PORT" BERTH_EDGE_ADMIN_BIND="127.0.0.1:$PLAIN_ADMIN" \
  BERTH_CONTROL_URL="$API" RUST_LOG=warn "$BIN/berth-edge" >"$WORK/edge-plain.log" 2>&1 &
pids+=($!); PLAIN_PID=$!
for _ in $(seq 100); do curl -sf "$API/healthz" >/dev/null && curl -sf "http://127.0.0.1:$ADMIN_PORT/healthz" >/dev/null && curl -sf "http://127.0.0.1:$PLAIN_ADMIN/healthz" >/dev/null && break; sleep 0.1; done
INSTANCE=$(curl -sf "$API/v1/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["instance_id"])')

ID=bench$$
curl -sf -XPOST "$API/sandbox" -d "{\"id\":\"$ID\",\"ports\":[3000],\"cpus\":2,\"memory\":\"1g\"}" >/dev/null
IP=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "berth-$ID")
HOST="s-$ID-3000.preview.localhost"
for _ in $(seq 100); do curl -sf -H "Host: $HOST" "http://127.0.0.1:$EDGE_PORT/" >/dev/null && break; sleep 0.1; done

# nginx as a reverse proxy to the same app, forwarding what the edge
# forwards: start_nginx NAME 'listen …; [ssl_* …;]'
start_nginx() {
  local name=$1 server=$2 dir="$WORK/nginx-$1"
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<EOF
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/b; proxy_temp_path $dir/p;
  fastcgi_temp_path $dir/f; uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
  upstream app { server $IP:3000; keepalive 128; }
  server {
    $server
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
EOF
  nginx -c "$dir/nginx.conf" -g 'daemon off;' &
  pids+=($!); NGINX_PID=$!
}
start_nginx http "listen 127.0.0.1:$NGINX_PORT;"
NGINX_HTTP_PID=$NGINX_PID
cat > "$WORK/Caddyfile" <<EOF
{
  admin off
  auto_https off
}
http://:$CADDY_PORT {
  bind 127.0.0.1
  reverse_proxy $IP:3000
}
EOF
caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
pids+=($!); CADDY_PID=$!
sleep 1

# wrk's --latency output -> "requests/s p99_ms errors"
parse_wrk() {
  python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
total = re.search(r"(\d+) requests in", text).group(1)
print(f"{rps:.0f} {p99:.2f} {errors.group(1) if errors else 0} {total}")
EOF
}

# CPU time (clock ticks) of processes and their children, all threads.
cpu_ticks() {
  local t=0 p task line f
  for p in "$@" $(for m in "$@"; do pgrep -P "$m"; done); do
    for task in /proc/"$p"/task/*/stat; do
      line=$(cat "$task" 2>/dev/null) || continue
      # After the command name (which may hold spaces): state is field 3,
      # utime and stime fields 14 and 15.
      read -r -a f <<<"${line##*) }"
      t=$(( t + f[11] + f[12] ))
    done
  done
  echo "$t"
}

# measure PORT PID -> "requests/s p99_ms errors cpu_us_per_request"
measure() {
  local before after
  before=$(cpu_ticks "$2")
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $HOST" "http://127.0.0.1:$1/" >"$WORK/wrk.out" 2>&1
  after=$(cpu_ticks "$2")
  read -r rps p99 err total < <(parse_wrk "$WORK/wrk.out")
  echo "$rps $p99 $err $(( (after - before) * 1000000 / $(getconf CLK_TCK) / (total > 0 ? total : 1) ))"
}

# The upstream without any proxy: the ceiling every proxy shares.
measure_direct() {
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$IP:3000/" >"$WORK/wrk.out" 2>&1
  read -r rps p99 err _ < <(parse_wrk "$WORK/wrk.out")
  echo "$rps $p99 $err 0"
}

if section throughput; then
echo "warming up…" >&2
for port in "$EDGE_PORT" "$PLAIN_PORT" "$NGINX_PORT" "$CADDY_PORT"; do
  wrk -t2 -c"$CONNECTIONS" -d2s -H "Host: $HOST" "http://127.0.0.1:$port/" >/dev/null 2>&1
done
# Two shared CPUs make single runs noisy: rounds interleave the proxies, and
# the medians are compared.
declare -A RPS P99 ERR CPU
names=(direct berth-edge edge-no-relay nginx caddy)
declare -A PORT=([berth-edge]=$EDGE_PORT [edge-no-relay]=$PLAIN_PORT [nginx]=$NGINX_PORT [caddy]=$CADDY_PORT)
declare -A PID=([berth-edge]=$EDGE_PID [edge-no-relay]=$PLAIN_PID [nginx]=$NGINX_HTTP_PID [caddy]=$CADDY_PID)
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS…" >&2
  for name in "${names[@]}"; do
    if [ "$name" = direct ]; then read -r rps p99 err cpu < <(measure_direct)
    else read -r rps p99 err cpu < <(measure "${PORT[$name]}" "${PID[$name]}"); fi
    RPS[$name]+="$rps "; P99[$name]+="$p99 "; CPU[$name]+="$cpu "; ERR[$name]=$(( ${ERR[$name]:-0} + err ))
  done
done

echo
echo "berth-edge benchmark — $(nproc) CPUs, wrk -t2 -c$CONNECTIONS -d${DURATION}s x $ROUNDS rounds, 1.4 KiB static file from nginx in a sandbox"
for name in "${names[@]}"; do echo "$name|${RPS[$name]}|${P99[$name]}|${ERR[$name]}|${CPU[$name]}"; done >"$WORK/rounds.txt"
python3 - "$WORK/rounds.txt" <<'EOF'
import statistics, sys
rows = {}
print(f"{'proxy':<14} {'requests/s':>12} {'p99 ms':>10} {'CPU us/req':>11} {'errors':>8}   (medians; requests/s of each round)")
for line in open(sys.argv[1]):
    name, rps, p99, err, cpu = line.strip().split("|")
    rps = [float(x) for x in rps.split()]
    p99 = [float(x) for x in p99.split()]
    cpu = statistics.median([float(x) for x in cpu.split()])
    rows[name] = (statistics.median(rps), statistics.median(p99), cpu)
    each = " ".join(f"{r:.0f}" for r in rps)
    shown = f"{cpu:.1f}" if cpu else "-"
    print(f"{name:<14} {rows[name][0]:>12.0f} {rows[name][1]:>10.2f} {shown:>11} {err:>8}   [{each}]")
e, n, c = rows["berth-edge"], rows["nginx"], rows["caddy"]
print(f"edge/nginx requests/s {e[0]/n[0]:5.2f}  (target >= 1.00)   edge/nginx p99 {e[1]/n[1]:5.2f}  (target <= 1.00)")
print(f"edge/caddy requests/s {e[0]/c[0]:5.2f}  (target >= 2.00; ceiling here direct/caddy {rows['direct'][0]/c[0]:5.2f})")
print(f"proxy CPU per request: caddy/edge {c[2]/e[2]:5.2f}   nginx/edge {n[2]/e[2]:5.2f}   (on cores of its own, a proxy's requests/s scale with 1/CPU)")
p = rows["edge-no-relay"]
print(f"relay on/off requests/s {e[0]/p[0]:5.2f}   p99 {e[1]/p[1]:5.2f}")
EOF
fi

if section wake; then
echo
wake_rounds="${BERTH_BENCH_WAKE_ROUNDS:-20}"
echo "wake latency ($wake_rounds rounds each, same container; raw = Docker API start + port poll)"

raw=(); via=()
for _ in $(seq $wake_rounds); do
  curl -sf -XPOST "$API/v1/sandboxes/$ID/stop" >/dev/null
  t0=$(date +%s%N)
  # Through the Docker API, as control does, not the CLI (whose own start-up would count).
  curl -sf --unix-socket /var/run/docker.sock -XPOST "http://localhost/containers/berth-$ID/start"
  until (exec 3<>"/dev/tcp/$IP/3000") 2>/dev/null; do :; done
  t1=$(date +%s%N)
  raw+=($(( (t1 - t0) / 1000000 )))
  # Let control see it as running, then stop it the berth way.
  curl -sf -XPOST "$API/v1/sandboxes/$ID/start" >/dev/null
  curl -sf -XPOST "$API/v1/sandboxes/$ID/stop" >/dev/null
  first=$(curl -s -o /dev/null -w '%{time_starttransfer}' -H "Host: $HOST" "http://127.0.0.1:$EDGE_PORT/")
  via+=($(python3 -c "print(round($first*1000))"))
done
python3 - "${raw[*]}" "${via[*]}" <<'EOF'
import statistics, sys
raw = [int(x) for x in sys.argv[1].split()]
via = [int(x) for x in sys.argv[2].split()]
def p99(xs):
    xs = sorted(xs)
    return xs[max(0, min(len(xs) - 1, round(0.99 * (len(xs) - 1))))]
r, v = statistics.median(raw), statistics.median(via)
print(f"raw docker start -> port ready   median {r:6.0f} ms   p99 {p99(raw):6.0f} ms   {sorted(raw)}")
print(f"stopped -> first byte via edge   median {v:6.0f} ms   p99 {p99(via):6.0f} ms   {sorted(via)}")
print(f"wake overhead                    {v - r:+6.0f} ms   (target < 50 ms)")
print(f"wake tail via edge, p99 - p50    {p99(via) - v:+6.0f} ms   (target <= +100 ms)")
EOF
fi

if section sleep; then
  echo
  python3 edge/bench/light_sleep.py "$API" "$EDGE_PORT" "$HOST" "$ID" "$IP" "${BERTH_BENCH_SLEEP_ROUNDS:-50}"
fi

section https || exit 0

echo
echo "HTTPS (same certificate for both: the edge's local one)"
EDGE_TLS_PORT=$(free_port); EDGE2_HTTP=$(free_port); EDGE2_ADMIN=$(free_port); NGINX_TLS_PORT=$(free_port)
BERTH_TLS=local BERTH_EDGE_DATA_DIR="$WORK/edge2" BERTH_EDGE_HTTPS_BIND="127.0.0.1:$EDGE_TLS_PORT" \
  BERTH_EDGE_HTTP_BIND="127.0.0.1:$EDGE2_HTTP" BERTH_EDGE_ADMIN_BIND="127.0.0.1:$EDGE2_ADMIN" \
  BERTH_CONTROL_URL="$API" RUST_LOG=warn "$BIN/berth-edge" >"$WORK/edge2.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$WORK/edge2/tls-local/key.pem" ] && curl -sf "http://127.0.0.1:$EDGE2_ADMIN/healthz" >/dev/null && break; sleep 0.1; done
start_nginx https "listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    ssl_certificate $WORK/edge2/tls-local/cert.pem;
    ssl_certificate_key $WORK/edge2/tls-local/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;"
sleep 1
measure_tls() {
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $HOST" "$@" >"$WORK/wrk.out" 2>&1
  parse_wrk "$WORK/wrk.out"
}
for port in "$EDGE_TLS_PORT" "$NGINX_TLS_PORT"; do
  wrk -t2 -c"$CONNECTIONS" -d2s -H "Host: $HOST" "https://127.0.0.1:$port/" >/dev/null 2>&1
done
read -r ET_RPS ET_P99 _ < <(measure_tls "https://127.0.0.1:$EDGE_TLS_PORT/")
read -r NT_RPS NT_P99 _ < <(measure_tls "https://127.0.0.1:$NGINX_TLS_PORT/")
read -r EH_RPS _ _ < <(measure_tls -H "Connection: close" "https://127.0.0.1:$EDGE_TLS_PORT/")
read -r NH_RPS _ _ < <(measure_tls -H "Connection: close" "https://127.0.0.1:$NGINX_TLS_PORT/")
printf '%-12s %16s %10s %22s\n' proxy "HTTPS req/s" "p99 ms" "new TLS conns/s"
printf '%-12s %16s %10s %22s\n' berth-edge "$ET_RPS" "$ET_P99" "$EH_RPS"
printf '%-12s %16s %10s %22s\n' nginx "$NT_RPS" "$NT_P99" "$NH_RPS"
python3 - "$ET_RPS" "$NT_RPS" "$EH_RPS" "$NH_RPS" <<'EOF2'
import sys
e, n, eh, nh = map(float, sys.argv[1:])
print(f"edge/nginx HTTPS requests/s {e/n:5.2f}   edge/nginx new TLS connections/s {eh/nh:5.2f}")
EOF2
