#!/usr/bin/env bash
# Installs everything Cairn needs on a fresh machine. Idempotent: a second run only
# checks. Needs: cargo (rustup), Node.js 20+ with npm, python3, a C compiler.
# As root on Debian it also installs the system packages below, starts a Docker engine
# when none answers (it keeps running after this script) and builds the local busybox
# base image of the docker-compose tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CAIRN_ROOT"

# ------------------------------------------------------------------ system packages
# Debian's: a Docker engine with Compose v1 and a static busybox (the docker-compose
# e2e tests), Chromium and a font (the VMM page test), pebble (a local ACME server),
# wrk (HTTP benchmarks).
SYSTEM_PACKAGES=(docker.io docker-compose busybox-static chromium fonts-liberation pebble wrk)
is_root() { [ "$(id -u)" -eq 0 ]; }

install_system_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    log "not a Debian system: install ${SYSTEM_PACKAGES[*]} (or their equivalents) by hand"
    return 0
  fi
  local missing=() p
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "system packages present: ${SYSTEM_PACKAGES[*]}"
    return 0
  fi
  if ! is_root; then
    log "SKIPPING system packages (not root); missing: ${missing[*]}"
    log "  install them with: sudo apt-get install --no-install-recommends ${missing[*]}"
    return 0
  fi
  log "installing system packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# A Docker engine for the docker-compose runner's tests: vfs storage (no overlay
# needed), no iptables and no bridge (compose services use network_mode: host).
DOCKERD_WAIT_SECS=60
start_docker_engine() {
  if docker_answers; then
    log "Docker engine answers: $(docker info --format '{{.ServerVersion}} ({{.Driver}})')"
    return 0
  fi
  if ! is_root; then
    log "SKIPPING the Docker engine (not root): the docker-compose tests need one; as root run"
    log "  dockerd --storage-driver vfs --iptables=false --bridge=none &"
    return 0
  fi
  command -v dockerd >/dev/null 2>&1 || die "dockerd not found (install docker.io)"
  local pid="" logf="${CAIRN_DOCKERD_LOG:-/var/log/cairn-dockerd.log}"
  if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    pid=$(cat /var/run/docker.pid)
    log "waiting for the running dockerd (pid $pid)"
  else
    rm -f /var/run/docker.pid # a stale pid file keeps a new dockerd from starting
    log "starting dockerd (vfs storage, no iptables, no bridge; log $logf)"
    setsid nohup dockerd --storage-driver vfs --iptables=false --bridge=none \
      >>"$logf" 2>&1 </dev/null &
    pid=$!
  fi
  local deadline=$((SECONDS + DOCKERD_WAIT_SECS))
  until docker_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$logf" >&2 || true
      die "dockerd exited before answering (log $logf)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$logf" >&2 || true
      die "dockerd did not answer within ${DOCKERD_WAIT_SECS} s (log $logf)"
    fi
    sleep 0.2
  done
  log "Docker engine answers: $(docker info --format '{{.ServerVersion}} ({{.Driver}})')"
}

# The base image of the docker-compose tests: FROM scratch with the static busybox and
# its applets (sh, httpd, nc, wget, ...). Rebuilt only when the busybox binary changes.
build_busybox_image() {
  if ! docker_answers; then
    log "SKIPPING $CAIRN_BUSYBOX_IMAGE (no Docker engine answers)"
    return 0
  fi
  local bb
  bb=$(command -v busybox || true)
  [ -n "$bb" ] || die "busybox not found (install busybox-static)"
  bb=$(readlink -f "$bb")
  if ldd "$bb" >/dev/null 2>&1; then
    die "$bb is dynamically linked: a FROM scratch image needs busybox-static"
  fi
  local sum have
  sum=$(sha256sum "$bb" | cut -d' ' -f1)
  have=$(docker image inspect -f '{{index .Config.Labels "cairn.busybox.sha256"}}' "$CAIRN_BUSYBOX_IMAGE" 2>/dev/null || true)
  if [ "$have" = "$sum" ]; then
    log "image $CAIRN_BUSYBOX_IMAGE is up to date (busybox $sum)"
    return 0
  fi
  log "building $CAIRN_BUSYBOX_IMAGE (FROM scratch + $bb)"
  local ctx
  ctx=$(mktemp -d)
  cp "$bb" "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/mkdir", "-p", "-m", "1777", "/tmp"]
CMD ["/bin/sh"]
DOCKERFILE
  if ! DOCKER_BUILDKIT=0 docker build -q --label "cairn.busybox.sha256=$sum" \
    -t "$CAIRN_BUSYBOX_IMAGE" "$ctx" >"$ctx/build.log" 2>&1; then
    cat "$ctx/build.log" >&2
    rm -rf "$ctx"
    die "docker build of $CAIRN_BUSYBOX_IMAGE failed"
  fi
  rm -rf "$ctx"
  docker run --rm --network none "$CAIRN_BUSYBOX_IMAGE" /bin/sh -c 'command -v httpd && command -v nc' >/dev/null ||
    die "the image $CAIRN_BUSYBOX_IMAGE does not run or lacks httpd/nc"
}

install_system_packages
start_docker_engine
build_busybox_image

need cargo "install Rust with rustup"
need cc "a C compiler (gcc) for ring"
ensure_npm_tools

# The public Python dstack SDK, pinned, for the guest-agent compatibility test
# (tests/tests/it/python_sdk.rs uses .venv/bin/python; scripts/devnet.sh too).
DSTACK_SDK_VERSION=0.5.4
need python3 "Python 3.9+ with venv"
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('dstack-sdk') != '$DSTACK_SDK_VERSION')" 2>/dev/null; then
  log "creating .venv with dstack-sdk==$DSTACK_SDK_VERSION"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "dstack-sdk==$DSTACK_SDK_VERSION"
fi

# The public JavaScript dstack SDK, pinned with its lock file, for the guest-agent
# interop test (guest/tests/it/js_sdk.rs).
JS_SDK_DIR=guest/tests/it/node
if [ ! -f "$JS_SDK_DIR/node_modules/.package-lock.json" ] ||
  [ "$JS_SDK_DIR/package-lock.json" -nt "$JS_SDK_DIR/node_modules/.package-lock.json" ]; then
  log "installing @phala/dstack-sdk in $JS_SDK_DIR (npm ci)"
  (cd "$JS_SDK_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

# dstack's Rust SDK in its own small crate outside the workspace (own Cargo.lock: it
# brings alloy 1 and reqwest 0.12); guest/tests/it/rust_sdk.rs runs the binary.
log "building the dstack Rust SDK interop client (guest/tests/rust-sdk)"
cargo build --locked --quiet --manifest-path guest/tests/rust-sdk/Cargo.toml \
  --target-dir "${CARGO_TARGET_DIR:-target}/dstack-rust-sdk"

log "toolchain: $(cargo --version), node $(node --version), $("$FORGE" --version | head -n1)"

log "building contracts (forge, solcjs via tools/solc)"
"$FORGE" build --quiet

log "fetching and building the Rust workspace"
cargo fetch --locked
cargo build --workspace --locked --all-targets

log "setup complete: run scripts/test.sh"
