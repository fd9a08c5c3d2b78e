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
# (tests/tests/it/python_sdk.rs uses .venv/bin/python; scripts/devnet.sh too).
DSTACK_SDK_VERSION=0.5.4
need python3 "Python 3.9+ with venv"
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('dstack-sdk') != '$DSTACK_SDK_VERSION')" 2>/dev/null; then
  log "creating .venv with dstack-sdk==$DSTACK_SDK_VERSION"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "dstack-sdk==$DSTACK_SDK_VERSION"
fi

# The public JavaScript dstack SDK, pinned with its lock file, for the guest-agent
# interop test (guest/tests/it/js_sdk.rs).
JS_SDK_DIR=guest/tests/it/node
if [ ! -f "$JS_SDK_DIR/node_modules/.package-lock.json" ] ||
  [ "$JS_SDK_DIR/package-lock.json" -nt "$JS_SDK_DIR/node_modules/.package-lock.json" ]; then
  log "installing @phala/dstack-sdk in $JS_SDK_DIR (npm ci)"
  (cd "$JS_SDK_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

# dstack's Rust SDK in its own small crate outside the workspace (own Cargo.lock: it
# brings alloy 1 and reqwest 0.12); guest/tests/it/rust_sdk.rs runs the binary.
log "building the dstack Rust SDK interop client (guest/tests/rust-sdk)"
cargo build --locked --quiet --manifest-path guest/tests/rust-sdk/Cargo.toml \
  --target-dir "${CARGO_TARGET_DIR:-target}/dstack-rust-sdk"

log "toolchain: $(cargo --version), node $(node --version), $("$FORGE" --version | head -n1)"

log "building contracts (forge, solcjs via tools/solc)"
"$FORGE" build --quiet

log "fetching and building the Rust workspace"
cargo fetch --locked
cargo build --workspace --locked --all-targets

log "setup complete: run scripts/test.sh"
