#!/usr/bin/env bash
# Runs Cairn's benchmarks (criterion). Numbers go to docs/benchmarks.md by hand, with
# the machine they were measured on.
#   scripts/bench.sh            all benchmarks
#   scripts/bench.sh tlog       the transparency log (durable appends, proofs at 1M)
#   scripts/bench.sh attestation quote verification (first and cached)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"

what="${1:-all}"
case "$what" in
  tlog) cargo bench -p cairn-tlog ;;
  attestation) cargo bench -p cairn-attestation ;;
  all)
    cargo bench -p cairn-tlog
    cargo bench -p cairn-attestation
    ;;
  *) die "unknown benchmark '$what' (expected: tlog, attestation, all)" ;;
esac
