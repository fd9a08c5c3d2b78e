#!/usr/bin/env bash
# Runs the docs' walkthroughs exactly as written: every fenced block whose info string is
# `sh walkthrough`, README.md's and then docs/developer-guide.md's, in order. Each document
# runs in a bash session of its own (set -eu, from the repository root, a clean CAIRN_*
# environment): README's ends with `cairn devnet down`, and the developer guide starts its
# own devnet with `cairn devnet up` and stops it, as a reader following only that page
# would. Prints how long each took (the figures in docs/benchmarks.md).
#
# The devnets listen on free ports (CAIRN_DEVNET_PORT / CAIRN_DEVNET_KMS_PORT, which
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

work=$(mktemp -d)
trap 'rm -rf "$work"; target/debug/cairn devnet down >/dev/null 2>&1 || true' EXIT
python3 - "$work" README.md docs/developer-guide.md <<'PY'
import re, sys, os
work, docs = sys.argv[1], sys.argv[2:]
for i, path in enumerate(docs):
    text = open(path).read()
    blocks = re.findall(r"^```sh walkthrough\n(.*?)^```$", text, re.S | re.M)
    if not blocks:
        sys.exit(f"{path}: no ```sh walkthrough blocks found")
    with open(os.path.join(work, f"{i}.sh"), "w") as f:
        f.write(f"# --- {path}: {len(blocks)} blocks\n" + "\n".join(blocks))
PY
total_started=$(date +%s%N)
for script in "$work"/*.sh; do
  doc=$(head -n1 "$script" | sed 's/^# --- //')
  log "running $doc"
  started=$(date +%s%N)
  # Free ports for this document's devnet; nothing else carries over between documents.
  CAIRN_DEVNET_PORT="$(free_port)" CAIRN_DEVNET_KMS_PORT="$(free_port)" bash -eu -x "$script"
  elapsed_ms=$((($(date +%s%N) - started) / 1000000))
  log "${doc%%:*} ran as written in $((elapsed_ms / 1000)).$(((elapsed_ms % 1000) / 100)) s"
done
elapsed_ms=$((($(date +%s%N) - total_started) / 1000000))
log "the walkthroughs ran as written in $((elapsed_ms / 1000)).$(((elapsed_ms % 1000) / 100)) s"
