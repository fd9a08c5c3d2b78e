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
//!    3   ChainClient::is_app_allowed @ head − N      4 self-check is_kms_allowed
//!    5   AppKeys::derive                             6 Log::append (fsync) + checkpoint
//!    7   keys + receipt ◄──────────────────────────────────────────────────────────
//!  anchor task ──► KmsAuth.anchorCheckpoint(size, root) when the log grew
//! ```
//!
//! What it trusts: its configured quote trust root and collateral, the chain RPC endpoint
//! (chain id checked), its local disk. What it does **not** do: decide policy (the
//! contracts do), keep a cluster protocol (replicas share only the root secret), or
//! trust anything a caller says about itself outside its verified evidence.
//!
//! # Layout
//! - `kdf`, `keys`, `store` — derivation, root/app keys, the secret store.
//! - `config` — [`Config`] (TOML + `CAIRN_KMS_*`).
//! - `evidence` — release-path steps 1-2.
//! - `node` — [`Node`], the release path.
//! - `reject` — [`Check`], [`ApiError`].
//! - `server` — [`run`], the TLS accept loop and router.
//! - `anchor` — checkpoint anchoring task.
//! - `lifecycle` — `bootstrap` and `serve`.
//! - `onboard` — replication (new node side).
//! - `client` — an RA-TLS client of the API.
//! - `metrics` — Prometheus metrics.

pub mod anchor;
pub mod client;
pub mod config;
mod error;
pub mod evidence;
pub mod kdf;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod onboard;
pub mod reject;
pub mod server;
pub mod store;

pub use config::Config;
pub use error::{Error, Result};
pub use evidence::{Attested, CollateralSource};
pub use kdf::{DerivedSecret, MasterSecret};
pub use keys::{AppKeys, CaKeys, P256Signer, RootKeys};
pub use node::{Node, NodeOptions};
pub use onboard::{onboard, OnboardReport};
pub use reject::{ApiError, Check, Dependency};
pub use server::{router, run, Peer};
pub use store::{Identity, NodeKey, SecretStore};
