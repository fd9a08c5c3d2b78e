#!/usr/bin/env bash
# Runs Cairn's benchmarks (criterion). Numbers go to docs/benchmarks.md by hand, with
# the machine they were measured on.
#   scripts/bench.sh            all benchmarks
#   scripts/bench.sh tlog       the transparency log (durable appends, proofs at 1M)
#   scripts/bench.sh attestation quote verification (first and cached)
#   scripts/bench.sh kms        KMS releases over RA-TLS against anvil, quorum 1 and 2 (docs/benchmarks.md)
#   scripts/bench.sh audit      the audit of a 100k-release KMS log anchored on anvil (docs/benchmarks.md)
#   scripts/bench.sh boot       guest boot to app start against the real KMS (cairn-e2e)
#   scripts/bench.sh vmm        VMM deploy latency and 50 CVMs on one VMM (list p99, RSS)
#   scripts/bench.sh gateway [SECS CONNS REVOCATIONS]
#                               wrk through the gateway vs direct (terminate, passthrough,
#                               plain opt-in; keep-alive and new connections) and the
#                               revocation latency (docs/benchmarks.md)
#   scripts/bench.sh soak       3 cairn-kms processes, 500 releases/s for 10 min, a node restart every
#                               2 min (not in `all`: 10 minutes; docs/benchmarks.md "Soak")
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
  audit)
    # 100k releases of four apps (eight boot infos) judged over 100 policy blocks, then
    # over 1000 (ten times the distinct eth_calls)
    cargo run --release -p cairn-e2e --example audit_bench -- 100000 100
    cargo run --release -p cairn-e2e --example audit_bench -- 100000 1000
    ;;
  boot) cargo bench -p cairn-e2e --bench boot ;;
  vmm)
    # release builds of the VMM and the guest it runs; 50 CVMs, 1000 list calls
    cargo build --release -p cairn-vmm -p cairn-guest
    CAIRN_VMM_BIN="${CARGO_TARGET_DIR:-$CAIRN_ROOT/target}/release/cairn-vmm" \
      CAIRN_GUEST_BIN="${CARGO_TARGET_DIR:-$CAIRN_ROOT/target}/release/cairn-guest" \
      cargo run --release -p cairn-e2e --example vmm_bench -- 50 1000
    ;;
  gateway)
    need wrk "Debian's wrk package (apt-get install wrk)"
    ensure_npm_tools
    cargo build --release -p cairn-e2e --bin cairn-echo-app
    cargo run --release -p cairn-e2e --example gateway_bench -- "${2:-10}" "${3:-32}" "${4:-10}"
    ;;
  soak)
    # [secs] [rate/s] [restart every secs] [callers] may follow: scripts/bench.sh soak 60 200 20
    shift
    cargo build --release -p cairn-kms --bin cairn-kms --example kms_soak
    cargo run --release -p cairn-kms --example kms_soak -- "$@"
    ;;
  all)
    cargo bench -p cairn-tlog
    cargo bench -p cairn-attestation
    "$0" kms
    "$0" audit
    "$0" boot
    "$0" vmm
    "$0" gateway
    ;;
  *) die "unknown benchmark '$what' (expected: tlog, attestation, kms, audit, boot, vmm, gateway, soak, all)" ;;
esac
