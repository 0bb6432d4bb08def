#!/usr/bin/env bash
# berth-control installs its sandboxes' egress rules itself, at start and on
# every reconciler pass (see docs/SECURITY.md): two iptables chains per
# install, BERTH-<tag>-FWD (jumped to from DOCKER-USER and FORWARD for traffic leaving a
# sandbox bridge) and BERTH-<tag>-IN (jumped to from INPUT for traffic to
# the host), where <tag> is the last 16 characters of the install's instance
# id (<data dir>/instance-id), upper-cased. This script shows or removes them.
#
#   sudo deploy/firewall/berth-firewall.sh show   [INSTANCE_ID | DATA_DIR]
#   sudo deploy/firewall/berth-firewall.sh remove [INSTANCE_ID | DATA_DIR]
#
# Without an argument it reads /var/lib/berth/instance-id. uninstall.sh runs
# `remove`. Removing the rules while berth runs only lasts until its next
# reconciler pass: stop berth first (or set BERTH_FIREWALL=false).
set -euo pipefail
action="${1:-show}"
target="${2:-/var/lib/berth}"
if [ -d "$target" ]; then
  [ -f "$target/instance-id" ] || { echo "no instance-id in $target" >&2; exit 1; }
  instance="$(cat "$target/instance-id")"
else
  instance="$target"
fi
[ "${#instance}" -ge 16 ] || { echo "not an instance id: $instance" >&2; exit 1; }
tag="$(printf '%s' "$instance" | tail -c 16 | tr '[:lower:]' '[:upper:]')"

for family in iptables ip6tables; do
  for flavour in "" -nft -legacy; do
    prog="$family$flavour"
    command -v "$prog" >/dev/null 2>&1 || continue
    for chain in "BERTH-$tag-FWD" "BERTH-$tag-IN"; do
      "$prog" -w -n -L "$chain" >/dev/null 2>&1 || continue
      case "$action" in
        show)
          echo "# $prog"
          "$prog" -w -S | grep -E -- "(-j|-N|-A) $chain( |\$)" || true ;;
        remove)
          # Every jump to the chain, then the chain itself.
          "$prog" -w -S | grep -E -- "^-A .* -j $chain\$" | sed 's/^-A /-D /' | while read -r rule; do
            # shellcheck disable=SC2086
            "$prog" -w $rule
          done
          "$prog" -w -F "$chain"
          "$prog" -w -X "$chain"
          echo "removed $chain ($prog)" ;;
        *) echo "usage: $0 show|remove [INSTANCE_ID | DATA_DIR]" >&2; exit 2 ;;
      esac
    done
  done
done
