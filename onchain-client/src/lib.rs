//! cairn-onchain: Cairn's client of its on-chain policy (KmsAuth, AppAuth, governance).
//!
//! What it does:
//! - **Policy reads pinned to a block.** [`ChainClient::policy_block`] picks
//!   `head − confirmations`; [`ChainClient::is_app_allowed`] / [`ChainClient::is_kms_allowed`]
//!   `eth_call` KmsAuth at that block *by hash*. An allow is `Ok(Verdict::Allowed)`; a
//!   denial is [`Error::Denied`] carrying a typed [`Check`] and the contract's exact reason.
//! - **Fail closed.** Every RPC runs under a per-call timeout; any transport failure,
//!   timeout or RPC error is an [`Error`] (see [`Error::is_retryable`]), never an allow.
//! - **Verdict cache** keyed by (query, keccak256 of the ABI-encoded boot info, block
//!   hash), bounded; errors are never cached.
//! - **Chain-id check** on connect ([`Error::ChainIdMismatch`]).
//! - **Transactions**: deploy the whole system ([`Connection::deploy_system`]), apps
//!   ([`ChainClient::deploy_app`]), allowlists, KMS identity and nodes, anchoring, and DAO
//!   governance ([`Connection::deploy_governance`], [`Dao`]). Reverts are decoded into the
//!   generated custom-error enums ([`Revert`]).
//! - **Event history**: [`AppAuthClient::policy_history`], [`ChainClient::kms_history`],
//!   [`ChainClient::anchors`].
//! - **Audit**: [`audit_app`] checks a node's anchors, checkpoint, inclusion of an app's
//!   releases and re-evaluates each release's policy at its recorded block.
//!
//! What it does *not* do: verify quotes (cairn-attestation), keep the transparency log
//! (cairn-tlog), retry (callers decide; errors say whether retrying makes sense), or
//! speak anything but plain HTTP JSON-RPC.
//!
//! It trusts the configured RPC endpoint to answer honestly about the chain; it checks
//! the chain id and that KmsAuth has code. See `docs/onchain-client.md`.
//!
//! # Layout
//! - `bindings`: `sol!` bindings from the committed forge artifacts (`artifacts/*.json`).
//! - `config`: [`ChainConfig`].
//! - `connection`: [`Connection`], timeouts, transaction sending.
//! - `client`: [`ChainClient`], pinned policy reads.
//! - `cache`: the verdict cache.
//! - `kms_admin`, `app`: KmsAuth and AppAuth transactions.
//! - `deploy`, `governance`: system and DAO deployment, proposals.
//! - `history`: event queries.
//! - `record`: the release record's boot info ↔ the chain's `BootInfo`.
//! - [`audit`]: the auditing light client of a node's key-release log.
//! - `error`: [`Error`], [`Check`], [`Revert`].
//!
//! # Feature flags
//! - `test-utils`: adds the `testing` module (spawning the pinned anvil); changes nothing
//!   else.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use cairn_onchain::alloy::primitives::address;
//! use cairn_onchain::{BootInfo, ChainClient, ChainConfig, Check, Error, Verdict};
//!
//! # async fn demo(boot: BootInfo) -> Result<(), Error> {
//! let kms_auth = address!("0x5FbDB2315678afecb367f032d93F642f64180aa3");
//! let rpc = "http://127.0.0.1:8545".parse().expect("valid URL");
//! let config = ChainConfig::new(rpc, 31337, kms_auth)
//!     .with_confirmations(2)
//!     .with_call_timeout(Duration::from_secs(3));
//! let client = ChainClient::connect(&config, None).await?;
//!
//! let at = client.policy_block().await?; // head − 2, by hash
//! match client.is_app_allowed(&boot, at).await {
//!     Ok(Verdict::Allowed) => { /* release, recording `at` */ }
//!     Err(Error::Denied { check: Check::ComposeHash, reason }) => { /* 403 with `reason` */ }
//!     Err(e) if e.is_retryable() => { /* 503: chain unavailable, never an allow */ }
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```

mod app;
pub mod audit;
mod bindings;
mod cache;
mod client;
mod config;
mod connection;
mod deploy;
mod error;
mod governance;
mod history;
mod kms_admin;
mod record;
#[cfg(feature = "test-utils")]
pub mod testing;

// The public interface is:
pub use app::{AppAuthClient, ComposeHashActivation};
pub use audit::{audit_app, AuditReport, AuditedRelease, Finding, LogSource, SourceError};
pub use bindings::{
    app_auth, governor, kms_auth, proxy, timelock, token, AppAuth, CairnGovernor, CairnToken,
    ERC1967Proxy, KmsAuth, TimelockController,
};
pub use client::{Anchor, BootInfo, ChainClient, PolicyBlock, RootKeys, Verdict, MAX_REASON_LEN};
pub use config::{
    ChainConfig, DEFAULT_CALL_TIMEOUT, DEFAULT_CONFIRMATIONS, DEFAULT_VERDICT_CACHE_ENTRIES,
};
pub use connection::Connection;
pub use deploy::Deployment;
pub use error::{reasons, Check, Error, Result, Revert};
pub use governance::{Dao, Governance, GovernanceParams, Proposal, ProposalState, Support};
pub use history::{BlockRange, Logged, MAX_LOG_BLOCK_SPAN};
pub use kms_admin::AppParams;
pub use record::{boot_info_of, recorded_boot_info};

/// Re-export of the alloy crate this client is built on.
pub use alloy;
