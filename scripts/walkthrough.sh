#!/usr/bin/env bash
# Runs the README's walkthrough exactly as written: every fenced block whose info string is
# `sh walkthrough` in README.md (and docs/developer-guide.md when it has any), in order, in
# one bash session (set -eu) from the repository root, against a fresh devnet in .devnet/,
# and prints how long it took (the figure in docs/benchmarks.md).
#
# The devnet listens on free ports (CAIRN_DEVNET_PORT / CAIRN_DEVNET_KMS_PORT, which
# `cairn devnet up` reads) so a developer's own chain on 8545 is no obstacle; the devnet is
# stopped on exit whatever happened. Refuses to start when a devnet already runs in .devnet/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"
ensure_npm_tools

[ -e .devnet/state.json ] && die "a devnet runs in .devnet/ (cairn devnet down first)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Hermetic: nothing from a developer's shell (e.g. a sourced devnet.env).
for v in $(env | grep -o '^CAIRN_[A-Z_]*' || true); do unset "$v"; done
export CAIRN_DEVNET_PORT=$(free_port) CAIRN_DEVNET_KMS_PORT=$(free_port)

blocks=$(mktemp)
trap 'rm -f "$blocks"; target/debug/cairn devnet down >/dev/null 2>&1 || true' EXIT
python3 - README.md docs/developer-guide.md >"$blocks" <<'PY'
import re, sys, os
out = []
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    text = open(path).read()
    for m in re.finditer(r"^```sh walkthrough\n(.*?)^```$", text, re.S | re.M):
        out.append(f"# --- {path}\n{m.group(1)}")
if not out:
    sys.exit("no ```sh walkthrough blocks found")
print("\n".join(out))
PY
log "running $(grep -c '^# --- ' "$blocks") walkthrough blocks from README.md (and docs/developer-guide.md)"
started=$(date +%s%N)
bash -eu -x "$blocks"
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
log "the walkthrough ran as written in $((elapsed_ms / 1000)).$(((elapsed_ms % 1000) / 100)) s"
