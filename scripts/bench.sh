#!/usr/bin/env bash
# Runs Cairn's benchmarks (criterion). Numbers go to docs/benchmarks.md by hand, with
# the machine they were measured on.
#   scripts/bench.sh            all benchmarks
#   scripts/bench.sh tlog       the transparency log (durable appends, proofs at 1M)
#   scripts/bench.sh attestation quote verification (first and cached)
#   scripts/bench.sh kms        KMS releases over RA-TLS against anvil, quorum 1 and 2 (docs/benchmarks.md)
#   scripts/bench.sh boot       guest boot to app start against the real KMS (cairn-e2e)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"

what="${1:-all}"
case "$what" in
  tlog) cargo bench -p cairn-tlog ;;
  attestation) cargo bench -p cairn-attestation ;;
  kms)
    # closed loop at 64 clients (saturation), then 64 clients at an offered 1000/s with
    # one RPC endpoint (quorum 1) and with two proxies in front of anvil that must agree
    # (quorum 2)
    cargo run --release -p cairn-kms --example kms_bench -- 64 10
    cargo run --release -p cairn-kms --example kms_bench -- 64 10 1000
    CAIRN_BENCH_QUORUM=2 cargo run --release -p cairn-kms --example kms_bench -- 64 10 1000
    ;;
  boot) cargo bench -p cairn-e2e --bench boot ;;
  all)
    cargo bench -p cairn-tlog
    cargo bench -p cairn-attestation
    "$0" kms
    "$0" boot
    ;;
  *) die "unknown benchmark '$what' (expected: tlog, attestation, kms, boot, all)" ;;
esac
