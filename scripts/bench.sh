#!/usr/bin/env bash
# Runs Cairn's benchmarks (criterion). Numbers go to docs/benchmarks.md by hand, with
# the machine they were measured on.
#   scripts/bench.sh            all benchmarks
#   scripts/bench.sh tlog       the transparency log (durable appends, proofs at 1M)
#   scripts/bench.sh attestation quote verification (first and cached)
#   scripts/bench.sh kms        KMS releases over RA-TLS against anvil (docs/benchmarks.md)
#   scripts/bench.sh gateway [SECS CONNS REVOCATIONS]
#                               wrk through the gateway vs direct (terminate, passthrough,
#                               plain opt-in; keep-alive and new connections) and the
#                               revocation latency (docs/benchmarks.md)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"

what="${1:-all}"
case "$what" in
  tlog) cargo bench -p cairn-tlog ;;
  attestation) cargo bench -p cairn-attestation ;;
  kms)
    # closed loop at 64 clients (saturation), then 64 clients at an offered 1000/s
    cargo run --release -p cairn-kms --example kms_bench -- 64 10
    cargo run --release -p cairn-kms --example kms_bench -- 64 10 1000
    ;;
  gateway)
    need wrk "Debian's wrk package (apt-get install wrk)"
    ensure_npm_tools
    cargo build --release -p cairn-e2e --bin cairn-echo-app
    cargo run --release -p cairn-e2e --example gateway_bench -- "${2:-10}" "${3:-32}" "${4:-10}"
    ;;
  all)
    cargo bench -p cairn-tlog
    cargo bench -p cairn-attestation
    "$0" kms
    "$0" gateway
    ;;
  *) die "unknown benchmark '$what' (expected: tlog, attestation, kms, gateway, all)" ;;
esac
