#!/usr/bin/env bash
# Starts a local Cairn devnet: an anvil chain with Cairn's contracts deployed, a demo app
# registered through the KmsAuth factory, and its compose hash allowed. It then shows the
# on-chain policy answering for the demo app (allowed) and for an unapproved compose
# (denied, with the contract's reason), prints where everything is, and keeps the chain
# running until Ctrl-C, which stops everything it started.
#
# Environment: CAIRN_DEVNET_PORT (default 8545), CAIRN_DEVNET_DIR (default .devnet),
# CAIRN_DEVNET_EXIT=1 to stop after the demo instead of waiting (used by tests).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"
ensure_npm_tools

port="${CAIRN_DEVNET_PORT:-8545}"
dir="${CAIRN_DEVNET_DIR:-$CAIRN_ROOT/.devnet}"
rpc="http://127.0.0.1:$port"
chain_id=31337
# anvil's well-known first test account (public test key, funded on every anvil chain).
deployer_key=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
mkdir -p "$dir"

anvil_pid=""
cleanup() {
  if [ -n "$anvil_pid" ] && kill -0 "$anvil_pid" 2>/dev/null; then
    log "stopping anvil (pid $anvil_pid)"
    kill "$anvil_pid" 2>/dev/null || true
    wait "$anvil_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if "$CAST" chain-id --rpc-url "$rpc" >/dev/null 2>&1; then
  die "something already answers on $rpc; stop it or set CAIRN_DEVNET_PORT"
fi

log "starting anvil on $rpc (log: $dir/anvil.log)"
"$ANVIL" --port "$port" --chain-id "$chain_id" >"$dir/anvil.log" 2>&1 &
anvil_pid=$!
deadline=$((SECONDS + 30))
until "$CAST" chain-id --rpc-url "$rpc" >/dev/null 2>&1; do
  kill -0 "$anvil_pid" 2>/dev/null || die "anvil exited; see $dir/anvil.log"
  [ "$SECONDS" -lt "$deadline" ] || die "anvil did not answer within 30 s"
  sleep 0.2
done

# Returns the value of a forge script's named return from its broadcast record.
script_return() { # <script file> <return name>
  python3 - "$CAIRN_ROOT/broadcast/$1/$chain_id/run-latest.json" "$2" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
print(record["returns"][sys.argv[2]]["value"])
PY
}

os_image_hash="0x$(printf 'cairn-devnet-os-image' | sha256sum | cut -d' ' -f1)"
compose="scripts/devnet/app-compose.json"
compose_hash="0x$(sha256sum "$compose" | cut -d' ' -f1)"

log "deploying KmsAuth + AppAuth implementation"
PRIVATE_KEY=$deployer_key CAIRN_OS_IMAGE_HASHES=$os_image_hash \
  "$FORGE" script contracts/script/Deploy.s.sol --rpc-url "$rpc" --broadcast --silent >"$dir/deploy.log" 2>&1 ||
  { cat "$dir/deploy.log" >&2; die "deployment failed"; }
kms_auth=$(script_return Deploy.s.sol kms)

log "registering the demo app (compose hash $compose_hash)"
PRIVATE_KEY=$deployer_key CAIRN_KMS_AUTH=$kms_auth CAIRN_COMPOSE_HASH=$compose_hash CAIRN_ALLOW_ANY_DEVICE=true \
  "$FORGE" script contracts/script/RegisterApp.s.sol --rpc-url "$rpc" --broadcast --silent >"$dir/register.log" 2>&1 ||
  { cat "$dir/register.log" >&2; die "app registration failed"; }
app_id=$(script_return RegisterApp.s.sol appId)

zero32=0x0000000000000000000000000000000000000000000000000000000000000000
zero20=0x0000000000000000000000000000000000000000
boot_info_sig="isAppAllowed((address,bytes32,address,bytes32,bytes32,bytes32,bytes32,string,string[]))(bool,string)"
ask_policy() { # <compose hash>
  "$CAST" call "$kms_auth" "$boot_info_sig" \
    "($app_id,$1,$zero20,$zero32,$zero32,$zero32,$os_image_hash,UpToDate,[])" --rpc-url "$rpc"
}
other_hash="0x$(printf 'an unapproved compose' | sha256sum | cut -d' ' -f1)"
allowed=$(ask_policy "$compose_hash" | tr '\n' ' ')
denied=$(ask_policy "$other_hash" | tr '\n' ' ')

cat >"$dir/devnet.env" <<ENV
export CAIRN_RPC_URL=$rpc
export CAIRN_CHAIN_ID=$chain_id
export CAIRN_KMS_AUTH=$kms_auth
export CAIRN_APP_ID=$app_id
export CAIRN_COMPOSE_HASH=$compose_hash
export CAIRN_OS_IMAGE_HASH=$os_image_hash
ENV

cat <<TXT

Cairn devnet is up.
  chain          $rpc (chain id $chain_id, anvil log $dir/anvil.log)
  KmsAuth        $kms_auth
  demo app       $app_id (AppAuth proxy, owner = anvil account 0)
  compose hash   $compose_hash  ($compose)
  OS image       $os_image_hash
  env file       $dir/devnet.env

On-chain policy for the demo app:
  approved compose    -> $allowed
  unapproved compose  -> $denied

Try it:
  source $dir/devnet.env
  PRIVATE_KEY=$deployer_key CAIRN_ACTION=remove \\
    $FORGE script contracts/script/ComposeHash.s.sol --rpc-url \$CAIRN_RPC_URL --broadcast
  (then the approved compose is denied too)

Ctrl-C stops the devnet.
TXT

case "$allowed" in "true "*) ;; *) die "the approved compose was not allowed: $allowed" ;; esac
case "$denied" in "false \"Compose hash not allowed\""*) ;; *) die "the unapproved compose was not denied as expected: $denied" ;; esac

if [ "${CAIRN_DEVNET_EXIT:-0}" = 1 ]; then
  exit 0
fi
wait "$anvil_pid"
