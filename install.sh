#!/usr/bin/env bash
# Installs (or upgrades in place) berth on this host: checks Docker and
# Compose, writes .env on first run, builds the images, starts the stack,
# waits until the API is ready, and prints how to use it.
#
#   ./install.sh [--domain example.com] [--tls off|local|acme] [--email you@example.com]
#                [--runtime gvisor|runc]
#
# --runtime gvisor installs Debian's runsc, registers it with Docker (in
# /etc/docker/daemon.json, keeping your other settings) and makes it the
# default runtime of sandboxes (BERTH_RUNTIME=runsc).
#
# Any setting of .env.example may also be given in the environment on the
# command line (e.g. `BERTH_HTTP_PORT=8080 ./install.sh`); it is written to
# .env. Re-running keeps .env and the data, rebuilds and restarts.
# Where images cannot be pulled (no registry), everything is built locally:
# the binaries with the host's cargo, the Debian base with debootstrap.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

DOMAIN="" TLS="" EMAIL="" RUNTIME=""
while [ $# -gt 0 ]; do
  case "$1" in
    --domain) DOMAIN="${2:?--domain needs a value}"; shift 2 ;;
    --domain=*) DOMAIN="${1#*=}"; shift ;;
    --tls) TLS="${2:?--tls needs local, acme or off}"; shift 2 ;;
    --tls=*) TLS="${1#*=}"; shift ;;
    --email) EMAIL="${2:?--email needs a value}"; shift 2 ;;
    --email=*) EMAIL="${1#*=}"; shift ;;
    --runtime) RUNTIME="${2:?--runtime needs gvisor or runc}"; shift 2 ;;
    --runtime=*) RUNTIME="${1#*=}"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$TLS" in ""|off|local|acme) ;; *) die "--tls must be off, local or acme" ;; esac
case "$RUNTIME" in ""|gvisor|runsc|runc) ;; *) die "--runtime must be gvisor or runc" ;; esac

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# need_packages PKG...: installs the Debian packages that are missing.
need_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "this host needs: ${missing[*]} (install them, then re-run)"
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
if command -v dpkg-query >/dev/null 2>&1; then
  need_packages curl
else
  command -v curl >/dev/null 2>&1 || die "this host needs curl"
fi

# ── Docker and Compose ───────────────────────────────────────────────────────
DOCKER=(docker)
command -v docker >/dev/null 2>&1 || die "Docker is not installed: https://docs.docker.com/engine/install/"
if ! docker info >/dev/null 2>&1; then
  if sudo -n docker info >/dev/null 2>&1; then
    DOCKER=(sudo docker)
  elif [ "$(id -u)" -eq 0 ] && command -v dockerd >/dev/null 2>&1; then
    say "starting the Docker daemon"
    (command -v systemctl >/dev/null 2>&1 && systemctl start docker 2>/dev/null) \
      || (nohup dockerd >/var/log/dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "the Docker daemon did not start (see /var/log/dockerd.log)"
  else
    die "the Docker daemon is not answering, and this user may not start it (try as root, or join the docker group)"
  fi
fi
if "${DOCKER[@]}" compose version >/dev/null 2>&1; then
  COMPOSE=("${DOCKER[@]}" compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
  [ "${DOCKER[0]}" = sudo ] && COMPOSE=(sudo docker-compose)
else
  die "Docker Compose is missing: install the compose plugin (docker compose) or docker-compose"
fi

# ── gVisor ───────────────────────────────────────────────────────────────────
# register_runsc ARGS...: (re)writes Docker's runsc runtime with ARGS and
# makes dockerd reload its configuration (runtimes reload without a restart).
register_runsc() {
  as_root runsc install -- "$@"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
    as_root systemctl reload docker
  else
    as_root kill -HUP "$(pidof dockerd)"
  fi
  sleep 1
  for _ in $(seq 1 20); do docker_runtimes | grep -qw runsc && return 0; sleep 1; done
  die "Docker did not pick up the runsc runtime (see /etc/docker/daemon.json)"
}
docker_runtimes() { "${DOCKER[@]}" info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}' 2>/dev/null; }
if [ "$RUNTIME" = gvisor ] || [ "$RUNTIME" = runsc ]; then
  if ! docker_runtimes | grep -qw runsc; then
    command -v runsc >/dev/null 2>&1 || need_packages runsc
    say "registering gVisor (runsc) with Docker: adding a \"runsc\" runtime to /etc/docker/daemon.json (your other settings are kept), then reloading dockerd"
    register_runsc --platform=ptrace
  fi
fi

# ── .env ─────────────────────────────────────────────────────────────────────
secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# set_env KEY VALUE: replace KEY's line (commented or not), or append it.
set_env() {
  local key="$1" value="$2" tmp
  tmp="$(mktemp)"
  awk -v k="$key" -v v="$value" '
    BEGIN { done = 0 }
    $0 ~ "^#? ?" k "=" { if (!done) { print k "=" v; done = 1 }; next }
    { print }
    END { if (!done) print k "=" v }' .env >"$tmp"
  cat "$tmp" >.env && rm -f "$tmp"
}
get_env() { grep -E "^$1=" .env | tail -1 | cut -d= -f2- || true; }

if [ ! -f .env ]; then
  say "writing .env (from .env.example)"
  cp .env.example .env
  chmod 600 .env
  admin="$(secret)" edge="$(secret)"
  set_env BERTH_API_TOKENS "admin:$admin"
  set_env BERTH_EDGE_TOKEN "$edge"
  set_env BERTH_CONTROL_TOKEN "$edge"
else
  say "keeping the existing .env"
  chmod 600 .env
  # Installs from before the edge's scoped token gave it a full API token
  # ("edge:…" in BERTH_API_TOKENS): that secret becomes the scoped one.
  if [ -z "$(get_env BERTH_EDGE_TOKEN)" ]; then
    tokens="$(get_env BERTH_API_TOKENS)"
    edge="$(printf '%s' "$tokens" | tr ',' '\n' | grep '^edge:' | cut -d: -f2- || true)"
    if [ -n "$edge" ]; then
      say "the edge's token now opens only the edge's routes (BERTH_EDGE_TOKEN)"
      set_env BERTH_API_TOKENS "$(printf '%s' "$tokens" | tr ',' '\n' | grep -v '^edge:' | paste -sd, -)"
    else
      edge="$(secret)"
    fi
    set_env BERTH_EDGE_TOKEN "$edge"
    set_env BERTH_CONTROL_TOKEN "$edge"
  fi
fi
# Settings given in the environment win.
for key in $(grep -oE '^#? ?(BERTH_[A-Z0-9_]+|COMPOSE_PROJECT_NAME|RUST_LOG)=' .env.example | tr -d '#= '); do
  if [ -n "${!key+x}" ]; then set_env "$key" "${!key}"; fi
done
[ -n "$DOMAIN" ] && set_env BERTH_PREVIEW_DOMAIN "$DOMAIN"
[ -n "$TLS" ] && set_env BERTH_TLS "$TLS"
[ -n "$EMAIL" ] && set_env BERTH_ACME_EMAIL "$EMAIL"
case "$RUNTIME" in
  gvisor|runsc) set_env BERTH_RUNTIME runsc ;;
  runc) sed -i 's/^BERTH_RUNTIME=.*/# BERTH_RUNTIME=/' .env ;;
esac
if [ "$(get_env BERTH_TLS)" = "acme" ] && [ -z "$(get_env BERTH_DNS_PROVIDER)" ]; then
  die "--tls acme needs a DNS provider in .env (BERTH_DNS_PROVIDER and its settings): see docs/TLS.md"
fi
# Preview URLs follow the edge's scheme and port.
if [ "$(get_env BERTH_TLS)" = "off" ]; then
  set_env BERTH_PREVIEW_SCHEME http
  port="$(get_env BERTH_HTTP_PORT)"; [ "${port:-80}" = 80 ] && port=""
else
  set_env BERTH_PREVIEW_SCHEME https
  port="$(get_env BERTH_HTTPS_PORT)"; [ "${port:-443}" = 443 ] && port=""
fi
if [ -n "$port" ]; then set_env BERTH_PREVIEW_PORT "$port"; else sed -i 's/^BERTH_PREVIEW_PORT=.*/# BERTH_PREVIEW_PORT=/' .env; fi

VERSION="$(get_env BERTH_VERSION)"; VERSION="${VERSION:-latest}"
SANDBOX_IMAGE="$(get_env BERTH_IMAGE)"; SANDBOX_IMAGE="${SANDBOX_IMAGE:-berth-sandbox:latest}"
DATA_DIR="$(get_env BERTH_DATA_DIR)"; DATA_DIR="${DATA_DIR:-/var/lib/berth}"
API_PORT="$(get_env BERTH_API_PORT)"; API_PORT="${API_PORT:-9090}"
BASE_IMAGE="${BERTH_BASE_IMAGE:-berth-base:bookworm}"
# Where the `berth` CLI goes on the host.
BIN_DIR="${BERTH_BIN_DIR:-/usr/local/bin}"

# ── Images ───────────────────────────────────────────────────────────────────
# The sandbox image; its build log is kept, its warnings (missing agents) shown.
build_sandbox_image() {
  say "building the sandbox image $SANDBOX_IMAGE (toolchains and agent CLIs)"
  local log
  log="$(mktemp)"
  if ! "${DOCKER[@]}" build "$@" -t "$SANDBOX_IMAGE" agent-image/ >"$log" 2>&1; then
    tail -30 "$log"; rm -f "$log"
    die "building the sandbox image failed"
  fi
  grep -A1 "WARNING: the npm registry" "$log" || true
  rm -f "$log"
}

# Claude Code's pinned wheel, fetched by the host (its TLS trust, a cache in
# /var/tmp/berth-cache) for the sandbox image build.
agent-image/fetch-claude.sh || say "could not fetch Claude Code's wheel here: the image build will download it"

online=1
if [ "${BERTH_OFFLINE:-0}" = 1 ]; then
  online=0
elif ! timeout 60 "${DOCKER[@]}" pull -q debian:bookworm-slim >/dev/null 2>&1; then
  online=0
fi
if [ "$online" = 1 ]; then
  say "building images (from source, in Docker)"
  "${DOCKER[@]}" build -q -f deploy/Dockerfile --target control -t "berth-control:$VERSION" . >/dev/null
  "${DOCKER[@]}" build -q -f deploy/Dockerfile --target edge -t "berth-edge:$VERSION" . >/dev/null
  say "installing the berth CLI in $BIN_DIR"
  "${DOCKER[@]}" build -q -f deploy/Dockerfile --target cli -t "berth-cli:$VERSION" . >/dev/null
  cid="$("${DOCKER[@]}" create "berth-cli:$VERSION")"
  mkdir -p "$BIN_DIR"
  "${DOCKER[@]}" cp "$cid:/usr/local/bin/berth" "$BIN_DIR/berth.new"
  "${DOCKER[@]}" rm "$cid" >/dev/null
  "${DOCKER[@]}" rmi "berth-cli:$VERSION" >/dev/null || true
  chmod 0755 "$BIN_DIR/berth.new" && mv -f "$BIN_DIR/berth.new" "$BIN_DIR/berth"
  "${DOCKER[@]}" build -f agent-image/Dockerfile -t "$SANDBOX_IMAGE" agent-image/ | grep -E "WARNING|^Step [0-9]+/" || true
else
  say "no image registry: building locally (host cargo + debootstrap)"
  command -v cargo >/dev/null 2>&1 || die "offline install needs a Rust toolchain (cargo) on this host"
  # What building berth (pingora, openssl) and the base image need.
  command -v dpkg-query >/dev/null 2>&1 && need_packages cmake pkg-config libssl-dev build-essential debootstrap
  agent-image/build-base.sh "$BASE_IMAGE"
  say "compiling berth-control, berth-edge and the berth CLI (release)"
  cargo build --release --locked -q -p berth-control -p berth-edge -p berth-cli
  target="${CARGO_TARGET_DIR:-$PWD/target}"
  say "installing the berth CLI in $BIN_DIR"
  mkdir -p "$BIN_DIR"
  install -m 0755 "$target/release/berth" "$BIN_DIR/berth"
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/bin"
  cp "$target/release/berth-control" "$target/release/berth-edge" "$ctx/bin/"
  cp deploy/Dockerfile.prebuilt "$ctx/Dockerfile"
  "${DOCKER[@]}" build -q --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" --target control -t "berth-control:$VERSION" "$ctx" >/dev/null
  "${DOCKER[@]}" build -q --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" --target edge -t "berth-edge:$VERSION" "$ctx" >/dev/null
  build_sandbox_image --build-arg "BASE_IMAGE=$BASE_IMAGE"
fi

# gVisor must actually run the sandbox image. Older runsc releases take any
# network namespace for the host's on newer kernels and refuse to start; they
# then run with --network=host, which passes networking to the container's
# own namespace (still not the host's) instead of gVisor's network stack.
if [ "$(get_env BERTH_RUNTIME)" = runsc ]; then
  smoke() { "${DOCKER[@]}" run --rm --runtime runsc --entrypoint /bin/true "$SANDBOX_IMAGE" 2>&1; }
  if ! out="$(smoke)"; then
    if printf '%s' "$out" | grep -q "root network namespace"; then
      say "this runsc cannot start its own network stack on this kernel: using --network=host"
      register_runsc --platform=ptrace --network=host
      out="$(smoke)" || die "gVisor cannot run the sandbox image: $out"
    else
      die "gVisor cannot run the sandbox image: $out"
    fi
  fi
fi

# ── Start ────────────────────────────────────────────────────────────────────
say "starting the stack"
# Owner-only: the database holds sandbox secrets and the preview key.
as_root mkdir -p "$DATA_DIR/edge"
as_root chmod 700 "$DATA_DIR" "$DATA_DIR/edge"
"${COMPOSE[@]}" up -d --no-build --remove-orphans

say "waiting for the API"
ready=0
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 1
done
if [ "$ready" != 1 ]; then
  "${COMPOSE[@]}" logs --tail 30 control || true
  die "the API did not become ready on 127.0.0.1:$API_PORT"
fi

token="$(get_env BERTH_API_TOKENS | tr ',' '\n' | grep '^admin:' | cut -d: -f2- || true)"
scheme="$(get_env BERTH_PREVIEW_SCHEME)"
domain="$(get_env BERTH_PREVIEW_DOMAIN)"
suffix="$(get_env BERTH_PREVIEW_PORT)"; suffix="${suffix:+:$suffix}"
cat <<EOF

berth is running.

  API:      http://127.0.0.1:$API_PORT   (loopback only; token below)
  Token:    $token
  Previews: $scheme://s-<id>-<port>.preview.$domain$suffix
  Data:     $DATA_DIR

Try it with the CLI:

  berth login http://127.0.0.1:$API_PORT --token $token
  berth create --port 3000 --start "cd ~/workspace && python3 -m http.server 3000"
  berth task <id> "make a todo app on port 3000" --follow

or with curl:

  API=http://127.0.0.1:$API_PORT; AUTH="Authorization: Bearer $token"
  curl -s -H "\$AUTH" -XPOST \$API/sandbox -d '{"ports":[3000],"start":"cd ~/workspace && python3 -m http.server 3000"}'
  curl -s -H "\$AUTH" -XPOST \$API/v1/sandboxes/<id>/tasks -d '{"prompt":"make a todo app on port 3000","agent":"opencode"}'

Then open $scheme://s-<id>-3000.preview.$domain$suffix
EOF
if [ -s "$DATA_DIR/edge/tls-local/local-ca.pem" ]; then
  echo "HTTPS uses a local CA: trust $DATA_DIR/edge/tls-local/local-ca.pem (docs/TLS.md)."
fi
