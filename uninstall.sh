#!/usr/bin/env bash
# Removes berth from this host: the stack, the sandboxes, their networks and
# the egress firewall rules.
# Keeps the data (workspaces, database, certificates) unless asked.
#
#   ./uninstall.sh            stop the stack, remove sandboxes and the network
#   ./uninstall.sh --images   also remove berth's images
#   ./uninstall.sh --data     also DELETE the data directory (asks to confirm)
#   ./uninstall.sh --all      --images and --data
# The berth CLI install.sh put in BERTH_BIN_DIR (/usr/local/bin) is removed too.
#   ./uninstall.sh --yes      do not ask
#
# Only what berth made is touched: containers of this install (labelled
# berth.managed=true and berth.instance=<this install's id>), its network,
# its images and its data directory.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

images=0 data=0 yes=0
for arg in "$@"; do
  case "$arg" in
    --images) images=1 ;;
    --data) data=1 ;;
    --all) images=1; data=1 ;;
    --yes|-y) yes=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown option $arg (see --help)" ;;
  esac
done

DOCKER=(docker)
docker info >/dev/null 2>&1 || { sudo -n docker info >/dev/null 2>&1 && DOCKER=(sudo docker); } \
  || die "the Docker daemon is not answering"
if "${DOCKER[@]}" compose version >/dev/null 2>&1; then
  COMPOSE=("${DOCKER[@]}" compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  COMPOSE=()
fi

# Settings: .env when present, the defaults otherwise.
env_file=.env
[ -f "$env_file" ] || env_file=.env.example
get_env() { grep -E "^$1=" "$env_file" | tail -1 | cut -d= -f2- || true; }
DATA_DIR="$(get_env BERTH_DATA_DIR)"; DATA_DIR="${DATA_DIR:-/var/lib/berth}"
NETWORK="$(get_env BERTH_NETWORK)"; NETWORK="${NETWORK:-berth}"
VERSION="$(get_env BERTH_VERSION)"; VERSION="${VERSION:-latest}"
SANDBOX_IMAGE="$(get_env BERTH_IMAGE)"; SANDBOX_IMAGE="${SANDBOX_IMAGE:-berth-sandbox:latest}"
BASE_IMAGE="${BERTH_BASE_IMAGE:-berth-base:bookworm}"
BIN_DIR="${BERTH_BIN_DIR:-/usr/local/bin}"

if [ "$data" = 1 ] && [ "$yes" != 1 ]; then
  printf 'This DELETES every workspace and the database in %s. Type "delete" to go on: ' "$DATA_DIR"
  read -r answer
  [ "$answer" = delete ] || die "nothing was deleted"
fi

# The CLI install.sh put on the host (its config in ~/.config/berth stays).
if [ -x "$BIN_DIR/berth" ] && "$BIN_DIR/berth" --version 2>/dev/null | grep -q '^berth '; then
  say "removing the berth CLI from $BIN_DIR"
  rm -f "$BIN_DIR/berth"
fi

say "stopping the stack"
if [ "${#COMPOSE[@]}" -gt 0 ] && [ -f .env ]; then
  "${COMPOSE[@]}" down --remove-orphans >/dev/null 2>&1 || true
fi

say "removing sandboxes"
instance=""
[ -s "$DATA_DIR/instance-id" ] && instance="$(cat "$DATA_DIR/instance-id")"
if [ -n "$instance" ]; then
  filter="label=berth.instance=$instance"
else
  # No record of the instance (data already gone): every berth sandbox.
  filter="label=berth.managed=true"
fi
ids="$("${DOCKER[@]}" ps -aq --filter "$filter")"
if [ -n "$ids" ]; then
  # shellcheck disable=SC2086
  "${DOCKER[@]}" rm -f -v $ids >/dev/null
fi
echo "removed $(printf '%s' "$ids" | grep -c . || true) sandbox container(s)"

# The sandbox network and the one of sandboxes without egress.
for net in "$NETWORK" "$NETWORK-internal"; do
  "${DOCKER[@]}" network inspect "$net" >/dev/null 2>&1 || continue
  managed="$("${DOCKER[@]}" network inspect -f '{{index .Labels "berth.managed"}}' "$net")"
  if [ "$managed" = true ]; then
    "${DOCKER[@]}" network rm "$net" >/dev/null && echo "removed network $net"
  else
    echo "network $net was not made by berth: left alone"
  fi
done

# The egress firewall control installed (iptables chains of this install).
if [ -n "$instance" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    deploy/firewall/berth-firewall.sh remove "$instance"
  elif sudo -n true 2>/dev/null; then
    sudo deploy/firewall/berth-firewall.sh remove "$instance"
  else
    echo "left the firewall rules: run 'sudo deploy/firewall/berth-firewall.sh remove $instance'"
  fi
fi

if [ "$images" = 1 ]; then
  say "removing images"
  for image in "berth-control:$VERSION" "berth-edge:$VERSION" "$SANDBOX_IMAGE" "$BASE_IMAGE"; do
    label="$("${DOCKER[@]}" image inspect -f '{{index .Config.Labels "berth.image"}}' "$image" 2>/dev/null || true)"
    if [ -n "$label" ]; then
      "${DOCKER[@]}" rmi "$image" >/dev/null 2>&1 && echo "removed $image" || echo "could not remove $image (in use?)"
    fi
  done
  # The Claude Code wheel agent-image/fetch-claude.sh downloaded for them
  # is a download cache, shared with other checkouts: left, and named.
  cache="${BERTH_CACHE_DIR:-/var/tmp/berth-cache}"
  if ls "$cache"/claude_agent_sdk-*.whl >/dev/null 2>&1; then
    echo "left the download cache $cache (Claude Code's wheel): rm -rf $cache to remove it"
  fi
fi

if [ "$data" = 1 ]; then
  say "deleting $DATA_DIR"
  rm -rf --one-file-system "$DATA_DIR"
fi
say "done"
