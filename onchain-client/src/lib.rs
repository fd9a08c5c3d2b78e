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
//! - `error`: [`Error`], [`Check`], [`Revert`].
//!
//! # Feature flags
//! - `test-utils`: adds [`testing`] (spawning the pinned anvil); changes nothing else.

mod app;
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
#[cfg(feature = "test-utils")]
pub mod testing;

// The public interface is:
pub use app::{AppAuthClient, ComposeHashActivation};
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

/// Re-export of the alloy crate this client is built on.
pub use alloy;
