#!/usr/bin/env bash
# Puts the pinned claude-agent-sdk wheel (which carries the Claude Code CLI)
# into agent-image/wheels/ for the image build, from a cache directory when
# it is already there, else from PyPI's simple index with the host's curl
# (so the host's own TLS trust applies). The version and hashes are the
# ones pinned in agent-image/Dockerfile; a file with another hash is
# refused. Idempotent.
#
#   agent-image/fetch-claude.sh
#
# Settings: BERTH_CACHE_DIR (/var/tmp/berth-cache), BERTH_PYPI_SIMPLE
# (https://pypi.org/simple).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pin() { sed -nE "s/^ARG $1=(.*)$/\1/p" "$here/Dockerfile" | head -1; }
version="$(pin CLAUDE_SDK_VERSION)"
case "$(uname -m)" in
  x86_64|amd64) arch=x86_64; sha="$(pin CLAUDE_SDK_SHA256_X86_64)" ;;
  aarch64|arm64) arch=aarch64; sha="$(pin CLAUDE_SDK_SHA256_AARCH64)" ;;
  *) echo "fetch-claude: no Claude Code wheel for $(uname -m); the image build will try PyPI" >&2; exit 0 ;;
esac
[ -n "$version" ] && [ -n "$sha" ] || { echo "fetch-claude: no pin found in $here/Dockerfile" >&2; exit 1; }
name="claude_agent_sdk-$version-py3-none-manylinux_2_17_$arch.whl"
cache="${BERTH_CACHE_DIR:-/var/tmp/berth-cache}"
index="${BERTH_PYPI_SIMPLE:-https://pypi.org/simple}"
mkdir -p "$cache" "$here/wheels"

good() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha" ]; }

# Only the pinned wheel is left in the build context.
find "$here/wheels" -name '*.whl' ! -name "$name" -delete
if good "$here/wheels/$name"; then exit 0; fi
if ! good "$cache/$name"; then
  command -v curl >/dev/null 2>&1 || {
    echo "fetch-claude: installing curl"
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
    else sudo apt-get update -qq && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; fi
  }
  url="$(curl -fsSL "$index/claude-agent-sdk/" | grep -oE "href=\"[^\"]*$name[^\"]*\"" | head -1 | sed -E 's/^href="([^"#]*).*/\1/')"
  [ -n "$url" ] || { echo "fetch-claude: $name is not in $index; the image build will try PyPI" >&2; exit 0; }
  case "$url" in http*) ;; /*) url="${index%%/simple*}$url" ;; *) url="$index/claude-agent-sdk/$url" ;; esac
  echo "fetch-claude: downloading $name (about 180 MB, once)"
  curl -fsSL -o "$cache/$name.part" "$url"
  good "$cache/$name.part" || { rm -f "$cache/$name.part"; echo "fetch-claude: $name does not have the pinned sha256 $sha" >&2; exit 1; }
  mv "$cache/$name.part" "$cache/$name"
fi
# A hard link where the cache shares the file system, else a copy.
ln -f "$cache/$name" "$here/wheels/$name" 2>/dev/null || cp "$cache/$name" "$here/wheels/$name"
