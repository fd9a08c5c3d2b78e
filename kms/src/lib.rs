//! cairn-kms — the Cairn KMS node: chain-gated, logged key release over RA-TLS.
//!
//! A node releases an app's keys only when the caller's TDX evidence verifies (RA-TLS
//! client certificate) **and** the on-chain policy allows it at a pinned block, and it
//! appends the release to its transparency log, durably, before answering
//! (DESIGN.md §5-6, `docs/kms.md`).
//!
//! ```text
//!  guest ──RA-TLS──► server (tls: possession) ──► Node::release_app_key
//!    1-2 evidence::attest (quote, report data, event log, OS image)
//!    3   PolicyHead view: is_app_allowed @ head − N  4 self-check (is_kms_allowed,
//!                                                      is_kms_node, anchoring bound)
//!    5   AppKeys::derive                             6 Log::append (fsync) + checkpoint
//!    7   keys + receipt ◄──────────────────────────────────────────────────────────
//!  anchor task ──► KmsAuth.anchorCheckpoint(size, root) when the log grew
//!  policy head ──► every poll: head (RPC quorum), fresh?, re-read used verdicts
//! ```
//!
//! What it trusts: its configured quote trust root and collateral, a quorum of the chain
//! RPC endpoints (TLS off loopback, chain id checked, head freshness bounded by its
//! clock), its local disk. What it does **not** do: decide policy (the
//! contracts do), keep a cluster protocol (replicas share only the root secret), or
//! trust anything a caller says about itself outside its verified evidence.
//!
//! # Layout
//! Private modules; the `pub use` block below is the whole API. The KMS's API client is
//! `cairn-kms-client` (also used here for onboarding): `kms/` keeps only the server.
//! - `kdf`, `keys`, `store` — derivation, root/app keys, the secret store.
//! - `clock` — [`Clock`], the injected wall clock.
//! - `config` — [`Config`] (TOML + `CAIRN_KMS_*`).
//! - `evidence` — release-path steps 1-2.
//! - `node` — [`Node`]: `node/mod.rs` (state, open, public endpoints), `node/release.rs`
//!   (the release path), `node/policy.rs` (steps 3-4 and per-block caches),
//!   `node/issue.rs` (certificates the node issues).
//! - `reject` — [`Check`], [`ApiError`].
//! - `server` — [`run`], [`run_with`], the TLS accept loop, router and the limits that
//!   keep slow clients from stalling it ([`ServerLimits`]).
//! - `anchor` — checkpoint anchoring task and the bound on unanchored releases
//!   ([`AnchorLimits`]).
//! - `lifecycle` — the binary's commands (`bootstrap`, `describe`, `serve`, `onboard`).
//! - `onboard` — replication (new node side).
//! - `metrics` — Prometheus metrics.
//! - `testing` (feature `test-utils`, public) — the test cluster and nodes serving on
//!   free ports, honest or in disguise, and clusters of real `cairn-kms` processes, for
//!   the tests and benchmarks of this and other crates.
//!
//! # Feature flags
//! - `test-utils`: adds the public [`testing`] module. It changes no behaviour.

mod anchor;
mod clock;
mod config;
mod error;
mod evidence;
mod kdf;
mod keys;
mod lifecycle;
mod metrics;
mod node;
mod onboard;
mod reject;
mod server;
mod store;
#[cfg(feature = "test-utils")]
pub mod testing;

// The public API, by concern. Users: the `cairn-kms` binary (`Config`, `Command`,
// `execute`), the KMS integration tests and benchmark (`kms/tests`, `kms/examples`),
// the e2e harness (`tests/`) and the guest's tests (derived keys for a stub KMS).
pub use crate::{
    // Running a node: options, the node, its server and anchoring, its clock.
    anchor::{
        anchor_once, AnchorGauges, AnchorLimits, DEFAULT_MAX_ANCHOR_AGE, DEFAULT_MAX_UNANCHORED,
    },
    clock::{unix_now, Clock},
    // Configuration and the binary's commands.
    config::{
        simulated_kms_boot, AttestationSection, ChainSection, Config, LogSection, ServerSection,
        TeeKind, TeeSection, Trust,
    },
    // Errors: the crate's error and the API's error answer.
    error::{Error, Result},
    // Release-path steps 1-2 and what they produce.
    evidence::{Attested, CollateralSource},
    // Keys: KDF (docs/kdf.md), root and app keys, the secret store.
    kdf::{derive_bytes, label, DerivedSecret, MasterSecret},
    keys::{env_public_key, AppKeys, CaKeys, P256Signer, RootKeys},
    lifecycle::{execute, own_evidence, rotate, Command, RotateOutput},
    // Metrics.
    metrics::{GaugeGuard, Metrics, Refusal, Stage, BUCKETS},
    node::{
        install_crypto_provider, Node, NodeOptions, DEFAULT_ANCHOR_INTERVAL, DEFAULT_HEAD_WAIT,
        LEAF_VALIDITY, LOG_DIR, LOG_RECOVERY_INTERVAL, MAX_CSR_ALT_NAMES, MAX_HEAD_WAIT,
        MAX_HEAD_WAITERS, MAX_POLICY_BLOCK_LEAD, SECRETS_DIR,
    },
    // Replication (the new node's side).
    onboard::{onboard, onboard_generation, OnboardReport},
    reject::{ApiError, Check, Dependency},
    server::{
        router, run, run_with, Peer, ServerLimits, DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_BODY_TIMEOUT,
        DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
        DEFAULT_WRITE_STALL_TIMEOUT, MAX_IN_FLIGHT, MAX_PUBLIC_IN_FLIGHT,
    },
    store::{Held, Identity, NodeKey, SecretStore, MAX_HELD_GENERATIONS},
};
