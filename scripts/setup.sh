#!/usr/bin/env bash
# Installs everything Cairn needs on a fresh machine. Idempotent: a second run only
# checks. Needs: cargo (rustup), Node.js 20+ with npm, python3, a C compiler.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"

need cargo "install Rust with rustup"
need cc "a C compiler (gcc) for ring"
ensure_npm_tools

log "toolchain: $(cargo --version), node $(node --version), $("$FORGE" --version | head -n1)"

log "building contracts (forge, solcjs via tools/solc)"
"$FORGE" build --quiet

log "fetching and building the Rust workspace"
cargo fetch --locked
cargo build --workspace --locked --all-targets

log "setup complete: run scripts/test.sh"
