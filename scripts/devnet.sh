#!/usr/bin/env bash
# Starts a local Cairn devnet, all real parts, the TDX simulator in place of hardware:
#   anvil with Cairn's contracts and a DAO (token + Governor + timelock, votes delegated by
#   anvil's account 0) deployed → a KMS node (cairn-kms) bootstrapped, registered
#   on chain (root keys, node address, MR, device, OS image) and serving (with
#   CAIRN_DEVNET_KMS_NODES=N, N-1 more nodes on their own simulated hosts onboard from it
#   over mutual RA-TLS, each registered and anchoring its own log) → a demo app (owned by
#   the DAO's timelock: the README walkthrough upgrades it by vote) and the gateway app
#   registered through the KmsAuth factory with their compose hashes allowed (the
#   gateway's named by KmsAuth's gatewayAppId) → a VMM (cairn-vmm, process backend:
#   each CVM is cairn-guest on the simulator) → the gateway deployed through it (its TLS
#   identity from the KMS, a certificate for *.$base_domain from a CA of the devnet's own)
#   → the demo app deployed through it with its env encrypted by `cairn vm deploy`: it
#   gets its keys and env, its guest agent answers, it registers with the gateway, which
#   admits it, and a curl through the gateway reaches it → an unapproved compose refused by
#   the VMM's chain pre-flight, and booted anyway by hand: refused by the KMS, no keys on
#   disk. Then it prints where everything runs and keeps running until Ctrl-C, which stops
#   everything it started (the CVMs through the VMM first).
#
# Environment: CAIRN_DEVNET_PORT (anvil, default 8545), CAIRN_DEVNET_KMS_PORT (default
# 8443; the other nodes take free ports), CAIRN_DEVNET_KMS_NODES (default 1),
# CAIRN_DEVNET_DIR (default .devnet; its kms/, app/, vmm/, gateway/, refused/ are recreated),
# CAIRN_DEVNET_EXIT=1 to stop after the demo instead of waiting (used by scripts/test.sh);
# CAIRN_DEVNET_BUILD=0 to use target/debug/cairn-{kms,guest,vmm,gateway,echo-app} and cairn as built when all
# exist (the `cairn devnet` test: a test run must not recompile the workspace under other
# tests). Any failed step exits non-zero. While it runs, $CAIRN_DEVNET_DIR/state.json lists
# what it started (pids, URLs) for `cairn devnet status|down`; it is removed when the
# devnet stops. `cairn devnet up` runs this script in the background and waits for it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"
ensure_npm_tools
need curl "curl"
need openssl "openssl"

port="${CAIRN_DEVNET_PORT:-8545}"
kms_port="${CAIRN_DEVNET_KMS_PORT:-8443}"
kms_nodes="${CAIRN_DEVNET_KMS_NODES:-1}"
case "$kms_nodes" in '' | *[!0-9]* | 0) die "CAIRN_DEVNET_KMS_NODES must be a positive number, not '$kms_nodes'" ;; esac
dir="${CAIRN_DEVNET_DIR:-$CAIRN_ROOT/.devnet}"
rpc="http://127.0.0.1:$port"
kms_url="https://127.0.0.1:$kms_port"
chain_id=31337
# anvil's well-known first test account (public test key, funded on every anvil chain).
deployer_key=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
# The simulator's mock Intel PKI: the KMS and the guest must use the same seed.
sim_pki_seed=4242424242424242424242424242424242424242424242424242424242424242
# Simulated hosts: another seed is another device.
kms_host_seed=0202020202020202020202020202020202020202020202020202020202020202
app_host_seed=0101010101010101010101010101010101010101010101010101010101010101
greeting="hello from the devnet's encrypted env"
# The gateway routes <app id>[-port][s].$base_domain (curl --resolve points it at loopback).
base_domain=devnet.cairn.test
kms_bin="$CAIRN_ROOT/target/debug/cairn-kms"
guest_bin="$CAIRN_ROOT/target/debug/cairn-guest"
cairn_bin="$CAIRN_ROOT/target/debug/cairn"
vmm_bin="$CAIRN_ROOT/target/debug/cairn-vmm"
gateway_bin="$CAIRN_ROOT/target/debug/cairn-gateway"
echo_bin="$CAIRN_ROOT/target/debug/cairn-echo-app"
bins=("$kms_bin" "$guest_bin" "$cairn_bin" "$vmm_bin" "$gateway_bin" "$echo_bin")
now_ms() { echo $(($(date +%s%N) / 1000000)); }
started_ms=$(now_ms)
secs_since() { # <start ms>: elapsed seconds with one decimal
  local t=$((($(now_ms) - $1 + 50) / 100))
  echo "$((t / 10)).$((t % 10))"
}
step() { log "[$(secs_since "$started_ms") s] $*"; }

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
rm -rf "$dir/kms" "$dir"/kms-[0-9]* "$dir/app" "$dir/vmm" "$dir/gateway" "$dir/refused" "$dir/reboot" "$dir/state.json"
mkdir -p "$dir/kms" "$dir/app" "$dir/vmm" "$dir/gateway"

anvil_pid="" kms_pid="" vmm_pid="" refused_pid="" vmm_sock=""
replica_pids=() replica_urls=() replica_addrs=() replica_ports=() cvm_pids=() cvm_names=()
stop() { # <pid> <name> [process group too]
  local pid=$1
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  # A guest runs in its own process group (setsid): its app goes with it.
  if [ "${3:-}" = group ]; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
}
cleanup() {
  trap - INT TERM
  rm -f "$dir/state.json"
  stop "$refused_pid" "refused guest" group
  local p n
  # The CVMs outlive their VMM (by design): remove every CVM it runs (ours and any a user
  # deployed; the apps before the gateway; each stop sweeps the guest's session), then make
  # sure no process of our CVMs' sessions is left.
  if [ -n "$vmm_pid" ] && kill -0 "$vmm_pid" 2>/dev/null; then
    for n in $(timeout 10 "$cairn_bin" --json vm --vmm "unix:$vmm_sock" list 2>/dev/null |
      python3 -c 'import json,sys; print(" ".join(sorted((c["name"] for c in json.load(sys.stdin)["cvms"]), key=lambda n: n == "gateway")))' 2>/dev/null); do
      log "removing CVM $n (cairn vm rm)"
      timeout 30 "$cairn_bin" vm --vmm "unix:$vmm_sock" rm "$n" >/dev/null 2>&1 || log "cairn vm rm $n failed"
    done
  fi
  for p in "${cvm_pids[@]}"; do
    pkill -KILL -s "$p" 2>/dev/null || true
  done
  stop "$vmm_pid" "cairn-vmm"
  for p in "${replica_pids[@]}"; do stop "$p" "cairn-kms replica"; done
  stop "$kms_pid" "cairn-kms"
  stop "$anvil_pid" "anvil"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Dies showing the end of a log. <log> <message>
die_log() {
  [ -f "$1" ] && { printf -- '--- last lines of %s:\n' "$1" >&2; tail -n 15 "$1" >&2; }
  # A panic's message sits above its backtrace, which fills the tail: show it too.
  [ -f "$1" ] && grep -q 'panicked at' "$1" &&
    { printf -- '--- the panic in %s:\n' "$1" >&2; grep -m1 -A3 'panicked at' "$1" >&2; }
  die "$2"
}
# Waits until a command succeeds, or dies. <seconds> <what> <pid to watch> <its log> <command...>
wait_for() {
  local secs=$1 what=$2 pid=$3 plog=$4
  shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die_log "$plog" "$what: the process exited"
    [ "$SECONDS" -lt "$deadline" ] || die_log "$plog" "$what: not ready within $secs s"
    sleep 0.05
  done
}
json_field() { # <file> <field>
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
script_return() { # <script file> <return name>: a forge script's named return value
  python3 - "$CAIRN_ROOT/broadcast/$1/$chain_id/run-latest.json" "$2" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
print(record["returns"][sys.argv[2]]["value"])
PY
}
send() { # <contract> <signature> <args...>: a transaction from the KmsAuth owner
  "$CAST" send --private-key "$deployer_key" --rpc-url "$rpc" "$@" >>"$dir/kms/register.log" 2>&1 ||
    { cat "$dir/kms/register.log" >&2; die "cast send $2 failed"; }
}

listening() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The KMS at <url> reads policy from a head it advances in the background: true once it
# has read block <n> (its /metrics show the pinned block).
kms_policy_block_at_least() { # <url> <n>
  local at
  at=$(curl -fsk --max-time 2 "$1/metrics" | awk '$1 == "cairn_kms_chain_policy_block" {print $2}')
  [ -n "$at" ] && [ "$at" -ge "$2" ]
}
listening "$port" && die "something already listens on 127.0.0.1:$port; stop it or set CAIRN_DEVNET_PORT"
if listening "$kms_port"; then
  [ -z "${CAIRN_DEVNET_KMS_PORT:-}" ] || die "something already listens on 127.0.0.1:$kms_port; set another CAIRN_DEVNET_KMS_PORT"
  kms_port=$(free_port)
  kms_url="https://127.0.0.1:$kms_port"
  log "port 8443 is taken; the KMS listens on $kms_port"
fi
all_built() { local b; for b in "${bins[@]}"; do [ -x "$b" ] || return 1; done; }
if [ "${CAIRN_DEVNET_BUILD:-1}" = 0 ] && all_built; then
  log "CAIRN_DEVNET_BUILD=0: using the built cairn-kms, cairn-guest, cairn-vmm, cairn-gateway, cairn-echo-app and cairn as they are"
else
  all_built || log "building cairn-kms, cairn-guest, cairn-vmm, cairn-gateway, cairn-echo-app and cairn"
  # One package per build, as README's `cargo build -p cairn-cli` and the tests' harness
  # build them: one invocation for all would unify their features differently, and each
  # side would relink the other's binaries on every run.
  for pkg in cairn-kms cairn-guest cairn-cli cairn-vmm cairn-gateway; do cargo build --quiet -p "$pkg"; done
  cargo build --quiet -p cairn-e2e --bin cairn-echo-app
fi

# ---------------------------------------------------------------- chain
step "starting anvil on $rpc (log: $dir/anvil.log)"
# A block every second, like a live chain: the KMS refuses a head older than
# chain.max_head_age_secs, and anvil alone mines only when a transaction arrives.
"$ANVIL" --port "$port" --chain-id "$chain_id" --block-time 1 >"$dir/anvil.log" 2>&1 &
anvil_pid=$!
wait_for 30 "anvil on $rpc" "$anvil_pid" "$dir/anvil.log" "$CAST" chain-id --rpc-url "$rpc"

step "deploying KmsAuth + AppAuth implementation"
PRIVATE_KEY=$deployer_key \
  "$FORGE" script contracts/script/Deploy.s.sol --rpc-url "$rpc" --broadcast --silent >"$dir/deploy.log" 2>&1 ||
  { cat "$dir/deploy.log" >&2; die "deployment failed"; }
kms_auth=$(script_return Deploy.s.sol kms)

# ---------------------------------------------------------------- DAO (governance)
# The demo app is owned by a DAO, as docs/governance.md describes: CairnToken (votes) +
# CairnGovernor + TimelockController, the timelock owning the app's AppAuth. The periods
# are short for a devnet: the vote opens 1 block after the proposal and lasts 10 blocks
# (blocks, so `cairn dao … --wait --mine` mines them at once), and the timelock holds a
# passed proposal 60 s (`--mine` advances anvil's clock; it stays well inside the KMS's
# and the audit's clock checks). anvil's account 0 holds the whole supply and delegates
# it to itself here, before any proposal, so its votes count at every snapshot.
dao_voting_delay=1 dao_voting_period=10 dao_timelock_delay=60
step "deploying the DAO: token, governor, timelock (votes: anvil account 0)"
PRIVATE_KEY=$deployer_key CAIRN_VOTING_DELAY=$dao_voting_delay CAIRN_VOTING_PERIOD=$dao_voting_period \
  CAIRN_TIMELOCK_DELAY=$dao_timelock_delay \
  "$FORGE" script contracts/script/DeployGovernance.s.sol --rpc-url "$rpc" --broadcast --silent >"$dir/dao.log" 2>&1 ||
  { cat "$dir/dao.log" >&2; die "deploying the DAO failed"; }
# The named return `g` is the (token, timelock, governor) struct.
read -r dao_token dao_timelock dao_governor < <(script_return DeployGovernance.s.sol g | tr -d '()' | tr ',' ' ')
for a in "$dao_token" "$dao_timelock" "$dao_governor"; do
  case "$a" in 0x[0-9a-fA-F]*) [ "${#a}" = 42 ] || die "DeployGovernance returned '$a', not an address" ;; *) die "DeployGovernance returned '$a', not an address" ;; esac
done
"$CAST" send --private-key "$deployer_key" --rpc-url "$rpc" "$dao_token" "delegate(address)" \
  "$("$CAST" wallet address --private-key "$deployer_key")" >>"$dir/dao.log" 2>&1 ||
  { cat "$dir/dao.log" >&2; die "delegating the DAO's votes failed"; }
# The voter's key for `cairn dao` (CAIRN_PRIVATE_KEY_FILE in devnet.env): anvil's public
# test key, in a 0600 file all the same.
(umask 077 && printf '%s\n' "$deployer_key" >"$dir/dao-voter.key")
# ---------------------------------------------------------------- end of DAO

# ---------------------------------------------------------------- KMS node
write_kms_config() { # <file> <port> <data dir> <host seed hex>
  cat >"$1" <<TOML
# Written by scripts/devnet.sh. Reference: docs/kms.md.
listen = "127.0.0.1:$2"
data_dir = "$3"

[chain]
rpc_url = "$rpc"
chain_id = $chain_id
kms_auth = "$kms_auth"
# A local chain is final at once; a revocation takes effect at the next block the
# policy head reads (it advances every poll_interval_ms).
confirmations = 0
poll_interval_ms = 200
# anvil runs with --block-time 1: a head older than this means the chain stopped.
max_head_age_secs = 30

[attestation]
trust = "simulator"              # development only: the node logs a WARN
simulator_seed = "0x$sim_pki_seed"

[tee]
kind = "simulator"
simulator_host_seed = "0x$4"

[log]
anchor_interval_secs = 5
TOML
}
write_kms_config "$dir/kms/kms.toml" "$kms_port" "$dir/kms/data" "$kms_host_seed"

step "bootstrapping the KMS node (cairn-kms bootstrap)"
"$kms_bin" --config "$dir/kms/kms.toml" bootstrap >"$dir/kms/identity.json" 2>"$dir/kms/bootstrap.log" ||
  { cat "$dir/kms/bootstrap.log" >&2; die "cairn-kms bootstrap failed"; }
id_field() { json_field "$dir/kms/identity.json" "$1"; }
node_address=$(id_field node_address)
os_image_hash=$(id_field os_image_hash)

step "registering the KMS on chain: root keys, node $node_address, MR, device, OS image"
send "$kms_auth" "setKmsRootKeys(uint32,bytes,bytes)" "$(id_field key_generation)" \
  "$(id_field root_k256_public_key)" "$(id_field root_ca_spki)"
send "$kms_auth" "addOsImageHash(bytes32)" "$os_image_hash"
send "$kms_auth" "addKmsAggregatedMr(bytes32)" "$(id_field mr_aggregated)"
send "$kms_auth" "addKmsDevice(bytes32)" "$(id_field device_id)"
send "$kms_auth" "addKmsNode(address)" "$node_address"
# Gas for anchoring the log checkpoint.
"$CAST" rpc --rpc-url "$rpc" anvil_setBalance "$node_address" 0x8ac7230489e80000 >/dev/null

step "starting the KMS on $kms_url (log: $dir/kms/kms.log)"
RUST_LOG="${RUST_LOG:-info}" "$kms_bin" --config "$dir/kms/kms.toml" serve >"$dir/kms/kms.log" 2>&1 &
kms_pid=$!
wait_for 30 "cairn-kms on $kms_url/healthz" "$kms_pid" "$dir/kms/kms.log" curl -fsk --max-time 2 "$kms_url/healthz"

# ---------------------------------------------------------------- more KMS nodes
for i in $(seq 1 $((kms_nodes - 1))); do
  rdir="$dir/kms-$i"
  mkdir -p "$rdir"
  rport=$(free_port)
  rseed=$(printf '%02x' $((2 + i)))
  rseed=$(printf "$rseed%.0s" $(seq 32))
  write_kms_config "$rdir/kms.toml" "$rport" "$rdir/data" "$rseed"
  step "KMS node $i: registering its evidence, onboarding it from $kms_url (mutual RA-TLS)"
  "$kms_bin" --config "$rdir/kms.toml" describe >"$rdir/evidence.json" 2>"$rdir/describe.log" ||
    { cat "$rdir/describe.log" >&2; die "cairn-kms describe (node $i) failed"; }
  mr=$(json_field "$rdir/evidence.json" mr_aggregated)
  device=$(json_field "$rdir/evidence.json" device_id)
  # KmsAuth setters reject no-ops: allow the MR only when it is new.
  [ "$("$CAST" call "$kms_auth" "kmsAllowedAggregatedMrs(bytes32)(bool)" "$mr" --rpc-url "$rpc")" = true ] ||
    send "$kms_auth" "addKmsAggregatedMr(bytes32)" "$mr"
  send "$kms_auth" "addKmsDevice(bytes32)" "$device"
  # The source judges the new node at its pinned block: wait until it has read this one.
  at=$("$CAST" block-number --rpc-url "$rpc")
  wait_for 10 "the KMS policy head at block $at" "$kms_pid" "$dir/kms/kms.log" \
    kms_policy_block_at_least "$kms_url" "$at"
  "$kms_bin" --config "$rdir/kms.toml" onboard "127.0.0.1:$kms_port" >"$rdir/onboard.json" 2>"$rdir/onboard.log" ||
    { cat "$rdir/onboard.log" >&2; die "cairn-kms onboard (node $i) failed"; }
  raddr=$(json_field "$rdir/onboard.json" node_address)
  send "$kms_auth" "addKmsNode(address)" "$raddr"
  "$CAST" rpc --rpc-url "$rpc" anvil_setBalance "$raddr" 0x8ac7230489e80000 >/dev/null
  RUST_LOG="${RUST_LOG:-info}" "$kms_bin" --config "$rdir/kms.toml" serve >"$rdir/kms.log" 2>&1 &
  replica_pids+=($!)
  replica_urls+=("https://127.0.0.1:$rport")
  replica_addrs+=("$raddr") replica_ports+=("$rport")
  wait_for 30 "cairn-kms node $i on 127.0.0.1:$rport" "$!" "$rdir/kms.log" curl -fsk --max-time 2 "https://127.0.0.1:$rport/healthz"
  step "KMS node $i serving on https://127.0.0.1:$rport, node $raddr"
done

# ---------------------------------------------------------------- apps on chain
# The demo app: cairn-echo-app (HTTPS with its KMS-issued certificate, on the port the VMM
# maps for its port 8080) after a greeting line that shows its decrypted env and keys. The
# compose names the binary by its path in this tree, so it is written from the template.
compose="$dir/app/app-compose.json"
sed "s|@ECHO_APP@|$echo_bin|" scripts/devnet/app-compose.json >"$compose"
# Version 2 of the demo app (another greeting), for the README walkthrough's upgrade by vote.
sed "s|@ECHO_APP@|$echo_bin|" scripts/devnet/app-compose-v2.json >"$dir/app/app-compose-v2.json"
compose_hash="0x$(sha256sum "$compose" | cut -d' ' -f1)"
step "registering the demo app, owned by the DAO's timelock (compose hash $compose_hash)"
register_app() { # <compose hash> <log> [more `cairn app deploy` args]: registers an app through the KmsAuth factory, prints its id
  # `cairn app deploy`: a new AppAuth (owned by the signer, anvil account 0, unless
  # --owner), this compose hash allowed, any device.
  local hash=$1 log=$2
  shift 2
  CAIRN_PRIVATE_KEY=$deployer_key "$cairn_bin" --json app deploy --compose-hash "$hash" "$@" \
    --rpc-url "$rpc" --chain-id "$chain_id" --kms-auth "$kms_auth" >"$log" 2>&1 ||
    { cat "$log" >&2; die "app registration failed"; }
  json_field "$log" app_id
}
app_id=$(register_app "$compose_hash" "$dir/register.log" --owner "$dao_timelock")
app_id_lc=$(echo "${app_id#0x}" | tr 'A-F' 'a-f')

# The gateway is a Cairn app like any other (docs/gateway.md): its own compose (it runs
# cairn-gateway with the config in $dir/gateway/), registered through the factory, and
# named by KmsAuth's gatewayAppId. Its certificate for *.$base_domain comes from a CA of
# the devnet's own (clients trust $dir/gateway/ca.pem).
gw="$dir/gateway"
step "making the gateway's CA and its certificate for *.$base_domain ($gw/ca.pem)"
(
  cd "$gw"
  umask 077
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 30 -subj "/CN=Cairn devnet gateway CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr \
    -subj "/CN=*.$base_domain" 2>/dev/null
  printf 'subjectAltName=DNS:*.%s,DNS:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "$base_domain" "$base_domain" >leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile leaf.ext \
    -out leaf.pem 2>/dev/null
  cat leaf.pem ca.pem >cert.pem
  chmod 644 ca.pem cert.pem
  rm -f leaf.csr leaf.ext ca.srl
) || die "openssl could not make the gateway's certificate"
cat >"$gw/gateway.toml" <<TOML
# Written by scripts/devnet.sh. Reference: docs/gateway.md. The listeners and the agent
# are set by the CVM's command (CAIRN_GATEWAY_* overrides): the ports the VMM mapped.
listen = "127.0.0.1:443"
registration_listen = "127.0.0.1:8444"
admin_listen = "127.0.0.1:8090"
base_domain = "$base_domain"

[chain]
rpc_url = "$rpc"
chain_id = $chain_id
kms_auth = "$kms_auth"
confirmations = 0
poll_interval_ms = 1000
max_policy_age_ms = 30000

[attestation]
trust = "simulator"              # development only
simulator_seed = "0x$sim_pki_seed"

[tls]
cert_file = "$gw/cert.pem"
key_file = "$gw/key.pem"

[registration]
ttl_secs = 30
reregister_after_secs = 5
TOML
sed -e "s|@GATEWAY@|$gateway_bin|" -e "s|@CONFIG@|$gw/gateway.toml|" scripts/devnet/gateway-compose.json >"$gw/app-compose.json"
gw_compose_hash="0x$(sha256sum "$gw/app-compose.json" | cut -d' ' -f1)"
step "registering the gateway app (compose hash $gw_compose_hash) and naming it KmsAuth's gatewayAppId"
gw_app_id=$(register_app "$gw_compose_hash" "$gw/register.log")
send "$kms_auth" "setGatewayAppId(address)" "$gw_app_id"

# The KMS reads policy from a head it advances in the background: wait until it has read
# the block that registered the apps (its /metrics show the pinned block).
registered_at=$("$CAST" block-number --rpc-url "$rpc")
for u in "$kms_url" "${replica_urls[@]}"; do
  wait_for 10 "the KMS policy head of $u at block $registered_at" "$kms_pid" "$dir/kms/kms.log" \
    kms_policy_block_at_least "$u" "$registered_at"
done

# ---------------------------------------------------------------- VMM
vm_dir="$dir/vmm"
vmm_sock="$vm_dir/vmm.sock"
vmm_port=$(free_port)
vmm_url="http://127.0.0.1:$vmm_port"
# Host ports for CVMs: 32 from a port the kernel just found free.
port_lo=$(free_port)
[ "$port_lo" -le 65500 ] || port_lo=65500
# The gateway's registration port (the range's first; the gateway is deployed first) is
# fixed before the VMM starts, so that the VMM's default sys-config lists it: every CVM
# deployed here registers with the gateway.
gw_reg_port=$port_lo
all_kms_urls=$(printf '"%s",' "$kms_url" "${replica_urls[@]}")
cat >"$vm_dir/vmm.toml" <<TOML
# Written by scripts/devnet.sh. Reference: docs/vmm.md.
state_dir = "$vm_dir/state"

[api]
unix_socket = "$vmm_sock"
tcp = "127.0.0.1:$vmm_port"      # loopback: no token (the web page is at /)

[chain]
rpc_url = "$rpc"
chain_id = $chain_id
kms_auth = "$kms_auth"
confirmations = 0
timeout_ms = 3000

[cvm]
kms_urls = [${all_kms_urls%,}]
gateway_urls = ["https://127.0.0.1:$gw_reg_port"]
port_range = [$port_lo, $((port_lo + 31))]
stop_grace_ms = 5000

[backend]
env = { RUST_LOG = "info" }

[backend.process]
guest_bin = "$guest_bin"
guest_args = ["--kms-trust", "simulator", "--sim-pki-seed", "$sim_pki_seed", "--sim-host-seed", "$app_host_seed"]

[[image]]
name = "cairn-os"
version = "1.0"
kind = "simulator"
TOML
step "starting the VMM on $vmm_url and $vmm_sock (process backend; log: $vm_dir/vmm.log)"
RUST_LOG="${RUST_LOG:-info}" "$vmm_bin" --config "$vm_dir/vmm.toml" >"$vm_dir/vmm.log" 2>&1 &
vmm_pid=$!
wait_for 30 "cairn-vmm on $vmm_url/healthz" "$vmm_pid" "$vm_dir/vmm.log" curl -fs --max-time 2 "$vmm_url/healthz"

vm() { "$cairn_bin" --json vm --vmm "unix:$vmm_sock" "$@"; }
py_field() { # <json text> <python expression over j>
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
host_port() { # <cvm json> <guest port>
  py_field "$1" "[p['host_port'] for p in j['ports'] if p['guest_port'] == $2][0]"
}
# fd 3: the script's stderr, for a failure found inside wait_for (which silences its command).
exec 3>&2
cvm_running() { # <name>: true once the VMM shows it running; dies when it failed
  local s state
  s=$(vm status "$1") || return 1
  state=$(py_field "$s" "j['state']")
  case "$state" in
    running) return 0 ;;
    failed | stopped) die_log "$vm_dir/state/cvms/$(py_field "$s" "j['id']")/console.log" "CVM $1 $state: $(py_field "$s" "j.get('reason')")" 2>&3 ;;
  esac
  return 1
}
deploy_cvm() { # <name> <out json> <deploy args…>: deploys through the VMM, waits for running
  local name=$1 out=$2
  shift 2
  vm deploy --name "$name" "$@" >"$out" 2>"$out.err" || { cat "$out" "$out.err" >&2; die "cairn vm deploy $name failed"; }
  wait_for 60 "CVM $name running" "$vmm_pid" "$vm_dir/vmm.log" cvm_running "$name"
  cvm_pids+=("$(py_field "$(vm status "$name")" "j['pid']")")
  cvm_names+=("$name")
}

# ---------------------------------------------------------------- gateway
step "deploying the gateway through the VMM (cairn vm deploy; its identity from the KMS)"
deploy_cvm gateway "$gw/cvm.json" --compose "$gw/app-compose.json" --app-id "$gw_app_id" \
  --port 443 --port "8444:$gw_reg_port" --port 8090
gw_cvm=$(cat "$gw/cvm.json")
gw_port=$(host_port "$gw_cvm" 443)
gw_admin_port=$(host_port "$gw_cvm" 8090)
gw_admin="http://127.0.0.1:$gw_admin_port"
gw_console="$vm_dir/state/cvms/$(py_field "$gw_cvm" "j['id']")/console.log"
wait_for 60 "cairn-gateway's admin endpoint $gw_admin (its start-up checks)" "$vmm_pid" "$gw_console" \
  curl -fs --max-time 2 "$gw_admin/healthz"

# ---------------------------------------------------------------- demo app
step "deploying the demo app through the VMM (cairn vm deploy; its env encrypted by cairn for the KMS's env key)"
boot_started_ms=$(now_ms)
deploy_cvm demo "$dir/app/cvm.json" --compose "$compose" --app-id "$app_id" --port 8080 \
  --env "GREETING=$greeting" --env-kms-url "$kms_url" --rpc-url "$rpc" --chain-id "$chain_id" \
  --kms-auth "$kms_auth" --kms-trust simulator --sim-pki-seed "$sim_pki_seed"
app_cvm=$(cat "$dir/app/cvm.json")
cvm_dir="$vm_dir/state/cvms/$(py_field "$app_cvm" "j['id']")"
app_port=$(host_port "$app_cvm" 8080)
console="$cvm_dir/console.log"
wait_for 30 "the demo app's greeting in $console" "$vmm_pid" "$vm_dir/vmm.log" grep -q "hello from a Cairn CVM" "$console"
agent_socket="$cvm_dir/agent.sock"
wait_for 10 "the guest agent on $agent_socket" "$vmm_pid" "$console" test -S "$agent_socket"
boot_ms=$(($(now_ms) - boot_started_ms))
env_note="GREETING, encrypted by cairn vm deploy (Cairn's format) for the env key the KMS signed"
receipt=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("log index %d, policy block %d" % (r["log_index"], r["policy_block_number"]))' "$cvm_dir/keys/receipt.json") ||
  die "unreadable release receipt $cvm_dir/keys/receipt.json"
for f in app.key disk.key root-ca.pem receipt.json; do
  [ -f "$cvm_dir/keys/$f" ] || die "the approved boot has no $f in $cvm_dir/keys"
done
greeting_line=$(grep -m1 "hello from a Cairn CVM" "$console")
case "$greeting_line" in *"GREETING=$greeting;"*) ;; *) die "the app did not get its decrypted env: $greeting_line" ;; esac
agent() { # <method> <json body>
  curl -fsS --max-time 10 --unix-socket "$agent_socket" -H 'content-type: application/json' \
    -d "$2" "http://localhost/$1"
}
info=$(agent Info '{}') || die "the guest agent did not answer Info"
get_key=$(agent GetKey '{"path":"devnet/demo","purpose":"signing"}') || die "the guest agent did not answer GetKey"
info_app_id=$(py_field "$info" "j['app_id']")
[ "${info_app_id#0x}" = "$app_id_lc" ] || die "agent Info app_id $info_app_id != $app_id"
instance_id=$(py_field "$info" "j['instance_id']")
key_summary=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("key %s…, signature chain of %d" % (r["key"][:16], len(r["signature_chain"])))' "$get_key")
log_size=$(curl -fsk --max-time 5 "$kms_url/v1/log/checkpoint" | python3 -c 'import json,sys; print(json.load(sys.stdin)["checkpoint"].splitlines()[1])')

# ---------------------------------------------------------------- through the gateway
step "waiting until the gateway admits the demo app (cairn gateway status)"
gw_admits() {
  local s
  s=$("$cairn_bin" --json gateway --admin "$gw_admin" status) || return 1
  [ "$(py_field "$s" "sum(len(a['instances']) for a in j['apps'] if a['app_id'].lower().removeprefix('0x') == '$app_id_lc')")" -ge 1 ]
}
wait_for 60 "the gateway admitting app $app_id" "$vmm_pid" "$gw_console" gw_admits
app_host="$app_id_lc-8080.$base_domain"
curl_line="curl --cacert $gw/ca.pem --resolve $app_host:$gw_port:127.0.0.1 https://$app_host:$gw_port/"
step "reaching the demo app through the gateway: $curl_line"
through_gw=$(curl -fsS --max-time 10 --cacert "$gw/ca.pem" --resolve "$app_host:$gw_port:127.0.0.1" \
  "https://$app_host:$gw_port/devnet") || die_log "$gw_console" "the demo app did not answer through the gateway"
case "$through_gw" in
  "echo ${instance_id#0x} /devnet" | "echo $instance_id /devnet") ;;
  *) die "the answer through the gateway is not the demo app's: $through_gw" ;;
esac

# ---------------------------------------------------------------- refused
step "deploying an unapproved compose through the VMM (expected: its chain pre-flight refuses it)"
mkdir -p "$dir/refused/share"
python3 - "$compose" "$dir/refused/share/app-compose.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["command"] = ["/bin/sh", "-c", "echo this must never run; exec sleep 86400"]
open(sys.argv[2], "w").write(json.dumps(c, separators=(",", ":")) + "\n")
PY
refused_hash="0x$(sha256sum "$dir/refused/share/app-compose.json" | cut -d' ' -f1)"
set +e
preflight=$(vm deploy --name refused --compose "$dir/refused/share/app-compose.json" --app-id "$app_id" 2>"$dir/refused/deploy.err")
preflight_status=$?
set -e
[ "$preflight_status" -ne 0 ] || die "the VMM deployed the unapproved compose: $preflight"
preflight_code=$(py_field "$preflight" "j['error']['code']") || die "no API error from the refused deploy: $preflight"
preflight_message=$(py_field "$preflight" "j['error']['message']")
[ "$preflight_code" = denied.compose_hash ] || die "the refused deploy failed with $preflight_code, not denied.compose_hash: $preflight_message"
case "$preflight_message" in *"Compose hash not allowed"*) ;; *) die "the pre-flight refusal does not name the contract's reason: $preflight_message" ;; esac
[ "$(py_field "$(vm list)" "len([c for c in j['cvms'] if c['name'] == 'refused'])")" = 0 ] ||
  die "the refused deploy left a CVM behind"

step "booting the unapproved compose anyway, by hand (expected: the KMS refuses it)"
printf '{"kms_urls":[%s]}\n' "${all_kms_urls%,}" >"$dir/refused/share/sys-config.json"
printf '{"app_id":"%s"}\n' "$app_id_lc" >"$dir/refused/share/.instance-info"
guest_args=(--tee simulator --kms-trust simulator --sim-pki-seed "$sim_pki_seed" --sim-host-seed "$app_host_seed")
set +e
RUST_LOG="${RUST_LOG:-info}" setsid "$guest_bin" boot --share "$dir/refused/share" --keys "$dir/refused/keys" \
  --work "$dir/refused/work" --agent-socket "$dir/refused/agent.sock" "${guest_args[@]}" \
  >"$dir/refused/guest.log" 2>&1 &
refused_pid=$!
deadline=$((SECONDS + 30))
while kill -0 "$refused_pid" 2>/dev/null; do
  grep -q "this must never run" "$dir/refused/guest.log" && die_log "$dir/refused/guest.log" "the unapproved app ran"
  [ -n "$(ls -A "$dir/refused/keys" 2>/dev/null)" ] && die_log "$dir/refused/guest.log" "the unapproved boot got keys"
  [ "$SECONDS" -lt "$deadline" ] || die_log "$dir/refused/guest.log" "the unapproved boot was not refused within 30 s"
  sleep 0.05
done
wait "$refused_pid"
refused_status=$?
refused_pid=""
set -e
[ "$refused_status" -ne 0 ] || die_log "$dir/refused/guest.log" "the unapproved boot exited 0"
grep -q "Compose hash not allowed" "$dir/refused/guest.log" ||
  die_log "$dir/refused/guest.log" "the refused boot does not name the contract's reason"
if grep -q "this must never run" "$dir/refused/guest.log"; then die "the unapproved app ran"; fi
if [ -n "$(ls -A "$dir/refused/keys" 2>/dev/null)" ]; then die "the refused boot left keys in $dir/refused/keys"; fi
refusal=$(grep -o 'denied\.compose_hash[^"]*' "$dir/refused/guest.log" | head -n1)

# A script that boots the demo app again, or another compose of it (`--compose FILE`): the
# README's walkthrough boots compose v2 after the DAO's vote and v1 after it, with it. It
# boots the demo CVM's share, without the VMM's host channel and the gateway (a reboot by
# hand is nobody's CVM), into fresh dirs.
share="$dir/app/share"
rm -rf "$share" && cp -r "$cvm_dir/shared" "$share"
python3 - "$share/sys-config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for k in ("host_api_url", "gateway_urls"):
    c.pop(k, None)
open(sys.argv[1], "w").write(json.dumps(c) + "\n")
PY
cat >"$dir/reboot-app.sh" <<SH
#!/usr/bin/env bash
# Boots the devnet's demo app again into fresh dirs ($dir/reboot/), from its share, or with
# --compose FILE as its app-compose.json; other arguments go to cairn-guest boot. It first
# waits until the KMS's policy head has read the chain's current block (so a change just
# made on chain, e.g. an executed DAO vote, is what this boot is judged by; at most 10 s).
# Then it reports and stops the guest: exit 0 once the app runs with its keys (its first
# line and the release receipt are printed), else the guest's exit code with its log (a
# refused boot names the contract's reason), 124 when neither happens within 60 s.
set -u
rm -rf "$dir/reboot" && mkdir -p "$dir/reboot/share"
cp -R "$share/." "$dir/reboot/share/"
if [ "\${1:-}" = --compose ]; then
  [ -f "\${2:-}" ] || { echo "reboot-app.sh: --compose needs an app-compose.json file" >&2; exit 2; }
  cp "\$2" "$dir/reboot/share/app-compose.json"
  shift 2
fi
echo "booting compose hash 0x\$(sha256sum "$dir/reboot/share/app-compose.json" | cut -d' ' -f1)"
target=\$("$CAST" block-number --rpc-url "$rpc")
deadline=\$((SECONDS + 10))
while [ "\$SECONDS" -lt "\$deadline" ]; do
  at=\$(curl -fsk --max-time 2 "$kms_url/metrics" | awk '\$1 == "cairn_kms_chain_policy_block" {print \$2}')
  [ -n "\$at" ] && [ "\$at" -ge "\$target" ] && break
  sleep 0.1
done
log="$dir/reboot/guest.log"
setsid "$guest_bin" boot --share "$dir/reboot/share" --keys "$dir/reboot/keys" --work "$dir/reboot/work" \\
  --agent-socket "$dir/reboot/agent.sock" ${guest_args[*]} "\$@" >"\$log" 2>&1 &
pid=\$!
deadline=\$((SECONDS + 60))
while kill -0 "\$pid" 2>/dev/null && [ "\$SECONDS" -lt "\$deadline" ]; do
  if grep -q "hello from a Cairn CVM" "\$log" && [ -f "$dir/reboot/keys/receipt.json" ]; then
    grep -m1 "hello from a Cairn CVM" "\$log"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("release receipt: log index %d, policy block %d" % (r["log_index"], r["policy_block_number"]))' "$dir/reboot/keys/receipt.json"
    kill -TERM -- "-\$pid" 2>/dev/null
    wait "\$pid" 2>/dev/null
    exit 0
  fi
  sleep 0.05
done
if kill -0 "\$pid" 2>/dev/null; then
  kill -TERM -- "-\$pid" 2>/dev/null
  wait "\$pid" 2>/dev/null
  cat "\$log" >&2
  echo "reboot-app.sh: neither up nor refused within 60 s" >&2
  exit 124
fi
wait "\$pid"
status=\$?
cat "\$log" >&2
exit "\$status"
SH
chmod +x "$dir/reboot-app.sh"

cat >"$dir/devnet.env" <<ENV
export CAIRN_RPC_URL=$rpc
export CAIRN_CHAIN_ID=$chain_id
export CAIRN_KMS_AUTH=$kms_auth
export CAIRN_KMS_URL=$kms_url
# Every KMS node (the first, then the onboarded ones), comma-separated; audit them all with
# \`cairn audit --all --kms-url "\$CAIRN_KMS_URLS"\`.
export CAIRN_KMS_URLS=$(IFS=,; echo "$kms_url${replica_urls[*]:+,${replica_urls[*]}}")
export CAIRN_KMS_NODE=$node_address
export CAIRN_APP_ID=$app_id
export CAIRN_COMPOSE_HASH=$compose_hash
export CAIRN_OS_IMAGE_HASH=$os_image_hash
export CAIRN_AGENT_SOCKET=$agent_socket
export DSTACK_SIMULATOR_ENDPOINT=$agent_socket
export CAIRN_KMS_TRUST=simulator
export CAIRN_SIM_PKI_SEED=$sim_pki_seed
# The DAO that owns the demo app (\`cairn dao\` reads CAIRN_GOVERNOR, CAIRN_APP and the signer).
export CAIRN_GOVERNOR=$dao_governor
export CAIRN_DAO_TIMELOCK=$dao_timelock
export CAIRN_DAO_TOKEN=$dao_token
export CAIRN_APP=$app_id
export CAIRN_PRIVATE_KEY_FILE=$dir/dao-voter.key
export CAIRN_VMM=unix:$vmm_sock
export CAIRN_VMM_URL=$vmm_url
export CAIRN_GATEWAY_APP_ID=$gw_app_id
export CAIRN_GATEWAY_ADMIN=$gw_admin
export CAIRN_GATEWAY_URL=https://127.0.0.1:$gw_port
export CAIRN_GATEWAY_PORT=$gw_port
export CAIRN_GATEWAY_REGISTRATION_URL=https://127.0.0.1:$gw_reg_port
export CAIRN_GATEWAY_BASE_DOMAIN=$base_domain
export CAIRN_GATEWAY_CA=$gw/ca.pem
export CAIRN_ECHO_APP=$echo_bin
ENV

up_secs=$(secs_since "$started_ms")
cat <<TXT

Cairn devnet is up in $up_secs s (the demo app deployed, booted, got its keys and ran within ${boot_ms} ms).
  chain          $rpc (chain id $chain_id; log $dir/anvil.log)
  KmsAuth        $kms_auth (owner = anvil account 0)
  DAO            governor $dao_governor, timelock $dao_timelock
                 token $dao_token (votes: anvil account 0, delegated)
                 voting delay $dao_voting_delay block, period $dao_voting_period blocks, timelock $dao_timelock_delay s
  KMS node       $kms_url  node $node_address  (simulator TEE)
                 config $dir/kms/kms.toml, data $dir/kms/data, log $dir/kms/kms.log
                 transparency log size $log_size, anchored every 5 s
  more KMS nodes ${replica_urls[*]:-none} (CAIRN_DEVNET_KMS_NODES=$kms_nodes; $dir/kms-N/)
  VMM            $vmm_url (API; web page $vmm_url/) and unix:$vmm_sock
                 config $vm_dir/vmm.toml, log $vm_dir/vmm.log; CVMs: gateway, demo (cairn vm list)
  gateway        https://127.0.0.1:$gw_port  SNI <app id>[-port].$base_domain, CA $gw/ca.pem
                 app $gw_app_id (KmsAuth gatewayAppId), registration https://127.0.0.1:$gw_reg_port,
                 admin $gw_admin (cairn gateway status), config $gw/gateway.toml
  demo app       $app_id (owner = the DAO's timelock)
                 compose hash $compose_hash ($compose)
                 OS image $os_image_hash
                 CVM $cvm_dir (console.log, keys/), port 8080 -> 127.0.0.1:$app_port
                 env: $env_note
  guest agent    $agent_socket
  env file       $dir/devnet.env

The demo app got its keys:
  $greeting_line
  agent Info   -> app_id $info_app_id
  agent GetKey -> $key_summary
  receipt      -> $receipt (keys/receipt.json; the KMS logged the release before answering)
The gateway admitted it, and it answers through the gateway:
  $curl_line
  -> $through_gw
The unapproved compose $refused_hash was refused:
  by the VMM's chain pre-flight, before anything ran: $preflight_code: $preflight_message
  by the KMS, booted anyway by hand (exit $refused_status, no keys on disk): $refusal

Try it (docs/walkthrough.md, docs/developer-guide.md):
  $curl_line
  source $dir/devnet.env
  cairn vm list; cairn gateway status
  cairn dao propose revoke \$CAIRN_COMPOSE_HASH     # then vote, queue, execute (--wait --mine)
  $dir/reboot-app.sh      # once executed, refused: Compose hash not allowed

Ctrl-C (in the foreground) or "cairn devnet down" stops the devnet; "cairn devnet status" shows it.
TXT

# What `cairn devnet status|down` read (written last and atomically: its presence means up).
python3 - "$dir/state.json" "${replica_pids[*]:-}" "${replica_ports[*]:-}" "${replica_addrs[*]:-}" <<PY
import json, os, sys
replicas = list(zip(sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()))
state = {
    "version": 2,
    "dir": "$dir",
    "script_pid": $$,
    "processes": [
        {"name": "anvil", "pid": $anvil_pid, "group": False, "port": $port},
        {"name": "cairn-kms", "pid": $kms_pid, "group": False, "port": $kms_port},
    ] + [
        {"name": f"cairn-kms (node {i + 2})", "pid": int(pid), "group": False, "port": int(port)}
        for i, (pid, port, _) in enumerate(replicas)
    ] + [
        {"name": "cairn-vmm", "pid": $vmm_pid, "group": False, "port": $vmm_port},
        # CVMs: a guest leads its own session (the VMM's setsid); its app is in it.
        {"name": "cairn-guest (CVM gateway)", "pid": ${cvm_pids[0]}, "group": True, "port": $gw_port},
        {"name": "cairn-guest (CVM demo)", "pid": ${cvm_pids[1]}, "group": True, "port": $app_port},
    ],
    "rpc_url": "$rpc",
    "chain_id": $chain_id,
    "kms_auth": "$kms_auth",
    "kms_urls": ["$kms_url"] + [f"https://127.0.0.1:{port}" for _, port, _ in replicas],
    "kms_nodes": ["$node_address"] + [addr for _, _, addr in replicas],
    "app_id": "$app_id",
    "compose_hash": "$compose_hash",
    "dao": {"governor": "$dao_governor", "timelock": "$dao_timelock", "token": "$dao_token"},
    "agent_socket": "$agent_socket",
    "env_file": "$dir/devnet.env",
    "vmm_url": "$vmm_url",
    "vmm_socket": "$vmm_sock",
    "gateway_url": "https://127.0.0.1:$gw_port",
    "gateway_admin": "$gw_admin",
    "gateway_app_id": "$gw_app_id",
    "base_domain": "$base_domain",
    "curl": "$curl_line",
    "up_secs": $up_secs,
}
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    json.dump(state, f, indent=1)
os.replace(tmp, sys.argv[1])
PY

if [ "${CAIRN_DEVNET_EXIT:-0}" = 1 ]; then
  # The smoke run's last check: every node's log audits clean (an onboarded node's entry 0
  # is its kms-onboard-receipt, logged before it was registered: not a finding).
  step "auditing every KMS node: cairn audit --all --kms-url \$CAIRN_KMS_URLS"
  (. "$dir/devnet.env" && timeout 120 "$cairn_bin" audit --all --kms-url "$CAIRN_KMS_URLS") >"$dir/audit.log" 2>&1 ||
    { cat "$dir/audit.log" >&2; die "cairn audit of the devnet's KMS nodes was not clean (log: $dir/audit.log)"; }
  exit 0
fi
# Runs until Ctrl-C, or until a part dies.
while kill -0 "$anvil_pid" 2>/dev/null && kill -0 "$kms_pid" 2>/dev/null && kill -0 "$vmm_pid" 2>/dev/null; do
  sleep 1
done
die "a devnet process exited; see the logs in $dir"
