# shellcheck shell=bash
# Shared helpers for Cairn's scripts. Sourced, not executed.

CAIRN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CAIRN_ROOT
FOUNDRY_BIN="$CAIRN_ROOT/node_modules/@foundry-rs"
FORGE="$FOUNDRY_BIN/forge-linux-amd64/bin/forge"
ANVIL="$FOUNDRY_BIN/anvil-linux-amd64/bin/anvil"
CAST="$FOUNDRY_BIN/cast-linux-amd64/bin/cast"
export FORGE ANVIL CAST

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed ($2)"
}

# Installs the pinned npm tools when node_modules is missing or older than the lockfile.
ensure_npm_tools() {
  need node "Node.js 20+"
  need npm "npm"
  local stamp="$CAIRN_ROOT/node_modules/.package-lock.json"
  if [ ! -x "$FORGE" ] || [ ! -f "$stamp" ] || [ "$CAIRN_ROOT/package-lock.json" -nt "$stamp" ]; then
    log "installing pinned npm tools (npm ci)"
    (cd "$CAIRN_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  [ -x "$FORGE" ] || die "forge not found at $FORGE after npm ci"
  [ -x "$ANVIL" ] || die "anvil not found at $ANVIL after npm ci"
}

# The local base image of the docker-compose tests: a static busybox FROM scratch (no
# registry is reachable here). Built by scripts/setup.sh.
CAIRN_BUSYBOX_IMAGE="cairn/busybox:local"
export CAIRN_BUSYBOX_IMAGE

# Whether a Docker engine answers.
docker_answers() {
  command -v docker >/dev/null 2>&1 && docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}
