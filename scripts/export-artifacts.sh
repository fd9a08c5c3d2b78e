#!/usr/bin/env bash
# Builds the contracts with forge and writes trimmed artifacts (abi, bytecode.object,
# deployedBytecode.object) to onchain-client/artifacts/<Name>.json, where the Rust
# bindings (`sol!`) read them.
#
#   scripts/export-artifacts.sh           export (overwrite the committed files)
#   scripts/export-artifacts.sh --check   fail when the committed files differ from a fresh build
#
# Bytecode carries no metadata hash (foundry.toml: bytecode_hash = "none",
# cbor_metadata = false), so the artifacts depend only on the sources and the compiler.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"

# <Name>=<forge artifact path under out/>
ARTIFACTS=(
  "KmsAuth=KmsAuth.sol/KmsAuth.json"
  "AppAuth=AppAuth.sol/AppAuth.json"
  "IAppAuth=IAppAuth.sol/IAppAuth.json"
  "ERC1967Proxy=ERC1967Proxy.sol/ERC1967Proxy.json"
  "CairnToken=CairnToken.sol/CairnToken.json"
  "CairnGovernor=CairnGovernor.sol/CairnGovernor.json"
  "TimelockController=TimelockController.sol/TimelockController.json"
)
DEST="$CAIRN_ROOT/onchain-client/artifacts"

mode=export
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) die "usage: $0 [--check]" ;;
esac

[ -x "$FORGE" ] || die "forge not found at $FORGE (run scripts/setup.sh or npm ci)"
need node "Node.js 20+"

log "forge build"
"$FORGE" build --quiet

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for entry in "${ARTIFACTS[@]}"; do
  name="${entry%%=*}"
  src="$CAIRN_ROOT/out/${entry#*=}"
  [ -f "$src" ] || die "missing forge artifact $src"
  node - "$src" "$tmp/$name.json" <<'JS'
const fs = require("fs");
const [src, dst] = process.argv.slice(2);
const a = JSON.parse(fs.readFileSync(src, "utf8"));
const obj = (b) => {
  const o = b && typeof b.object === "string" ? b.object : null;
  if (o === null) throw new Error(`${src}: no bytecode object`);
  if (o.includes("__$")) throw new Error(`${src}: unlinked library placeholder in bytecode`);
  return o;
};
if (!Array.isArray(a.abi)) throw new Error(`${src}: no abi`);
const out = { abi: a.abi, bytecode: { object: obj(a.bytecode) }, deployedBytecode: { object: obj(a.deployedBytecode) } };
fs.writeFileSync(dst, JSON.stringify(out, null, 2) + "\n");
JS
done

if [ "$mode" = check ]; then
  drift=0
  for entry in "${ARTIFACTS[@]}"; do
    name="${entry%%=*}"
    if [ ! -f "$DEST/$name.json" ]; then
      printf 'artifact drift: onchain-client/artifacts/%s.json is missing\n' "$name" >&2
      drift=1
    elif ! cmp -s "$tmp/$name.json" "$DEST/$name.json"; then
      printf 'artifact drift: onchain-client/artifacts/%s.json differs from a fresh build\n' "$name" >&2
      drift=1
    fi
  done
  for f in "$DEST"/*.json; do
    [ -e "$f" ] || continue
    [ -f "$tmp/$(basename "$f")" ] || { printf 'artifact drift: unexpected %s\n' "${f#"$CAIRN_ROOT"/}" >&2; drift=1; }
  done
  [ "$drift" = 0 ] || die "committed contract artifacts are stale: run scripts/export-artifacts.sh and commit onchain-client/artifacts/"
  log "artifacts up to date (${#ARTIFACTS[@]} files)"
else
  mkdir -p "$DEST"
  for entry in "${ARTIFACTS[@]}"; do
    name="${entry%%=*}"
    cp "$tmp/$name.json" "$DEST/$name.json"
  done
  log "exported ${#ARTIFACTS[@]} artifacts to onchain-client/artifacts/"
fi
