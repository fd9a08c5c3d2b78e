#!/usr/bin/env bash
# Installs everything Cairn needs on a fresh machine. Idempotent: a second run only
# checks. Needs: cargo (rustup), Node.js 20+ with npm, python3, a C compiler.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"

need cargo "install Rust with rustup"
need cc "a C compiler (gcc) for ring"
ensure_npm_tools

# The public Python dstack SDK, pinned, for the guest-agent compatibility test
# (guest/tests/it/python_sdk.rs uses .venv/bin/python).
DSTACK_SDK_VERSION=0.5.4
need python3 "Python 3.9+ with venv"
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('dstack-sdk') != '$DSTACK_SDK_VERSION')" 2>/dev/null; then
  log "creating .venv with dstack-sdk==$DSTACK_SDK_VERSION"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "dstack-sdk==$DSTACK_SDK_VERSION"
fi

# Debian's pebble (an ACME test CA) and pebble-challtestsrv (its DNS server), for the
# gateway's ACME tests (crates/acme/tests/it/pebble.rs starts both).
if [ ! -x /usr/bin/pebble ] || [ ! -x /usr/bin/pebble-challtestsrv ]; then
  need apt-get "Debian's apt, to install the pebble package"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  log "installing Debian's pebble (ACME test CA) with apt-get"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq pebble
fi
[ -x /usr/bin/pebble-challtestsrv ] || die "pebble-challtestsrv missing after installing the pebble package"

log "toolchain: $(cargo --version), node $(node --version), $("$FORGE" --version | head -n1)"

log "building contracts (forge, solcjs via tools/solc)"
"$FORGE" build --quiet

log "fetching and building the Rust workspace"
cargo fetch --locked
cargo build --workspace --locked --all-targets

log "setup complete: run scripts/test.sh"
