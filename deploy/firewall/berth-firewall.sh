#!/usr/bin/env bash
# Host firewall rules for berth's sandbox bridge (BERTH_NETWORK_BRIDGE,
# berth0 by default): sandboxes may reach the internet, but not
#   - the cloud metadata service (169.254.169.254 and fd00:ec2::254),
#   - the host itself (its SSH, databases, the Docker API, berth's own API),
#   - private networks (other machines of your VPC/LAN).
# The edge (on the host network) can still reach sandboxes: replies to
# connections it opened are allowed.
#
#   sudo deploy/firewall/berth-firewall.sh [bridge]          add the rules
#   sudo deploy/firewall/berth-firewall.sh [bridge] --remove  remove them
#
# The rules live in iptables' DOCKER-USER and INPUT chains and do not survive
# a reboot by themselves: run this from a systemd unit or save them with
# iptables-persistent. Allow other private ranges in $ALLOW if sandboxes need them.
set -euo pipefail
BRIDGE="${1:-berth0}"
ACTION="-I"
[ "${2:-}" = "--remove" ] && ACTION="-D"
ALLOW="${ALLOW:-}"
TAG="berth-sandbox-guard"

# rule CHAIN MATCHES… -j TARGET (a missing rule is fine when removing)
rule() {
  local chain="$1"; shift
  iptables "$ACTION" "$chain" -m comment --comment "$TAG" "$@" 2>/dev/null || [ "$ACTION" = -D ]
}

# To the host itself: only replies to connections the host (the edge) opened.
rule INPUT -i "$BRIDGE" -j DROP
rule INPUT -i "$BRIDGE" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT

# Forwarded traffic out of the sandbox bridge.
for net in 169.254.0.0/16 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10; do
  rule DOCKER-USER -i "$BRIDGE" -d "$net" -j DROP
done
for net in $ALLOW; do
  rule DOCKER-USER -i "$BRIDGE" -d "$net" -j ACCEPT
done
rule DOCKER-USER -i "$BRIDGE" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT

if command -v ip6tables >/dev/null 2>&1; then
  ip6tables "$ACTION" DOCKER-USER -m comment --comment "$TAG" -i "$BRIDGE" -d fd00:ec2::254 -j DROP 2>/dev/null || true
  ip6tables "$ACTION" INPUT -m comment --comment "$TAG" -i "$BRIDGE" -j DROP 2>/dev/null || true
fi
if [ "$ACTION" = -I ]; then echo "berth firewall rules added for $BRIDGE"; else echo "berth firewall rules removed for $BRIDGE"; fi
