#!/usr/bin/env bash
# Runs every check and test Cairn has: formatting, lints, contract artifact drift,
# forge tests, then the Rust tests (unit, integration with anvil, doc tests).
# `.ci/run` calls this on a fresh clone after scripts/setup.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"
ensure_npm_tools

log "format: cargo fmt --check, forge fmt --check"
cargo fmt --all -- --check
"$FORGE" fmt --check

log "contracts: committed artifacts match the sources"
scripts/export-artifacts.sh --check

log "contracts: forge test"
"$FORGE" test

log "rust: clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "rust: tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --locked --doc

log "all tests passed"
