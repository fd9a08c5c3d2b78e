//! cairn-onchain: Cairn's client of its on-chain policy (KmsAuth, AppAuth, governance).
//!
//! What it does:
//! - **Policy reads pinned to a block.** [`ChainClient::policy_block`] picks
//!   `head − confirmations`; [`ChainClient::is_app_allowed`] / [`ChainClient::is_kms_allowed`]
//!   `eth_call` KmsAuth at that block *by hash*. An allow is `Ok(Verdict::Allowed)`; a
//!   denial is [`Error::Denied`] carrying a typed [`Check`] and the contract's exact reason.
//! - **An RPC quorum.** Every read is asked of every configured endpoint at once and used
//!   only when [`ChainConfig::quorum`] of them gave the same answer: the pinned block's
//!   hash, each verdict, the root keys, node registrations. Conflicting answers are
//!   [`Error::ChainDisagreement`] (logged, counted), never a pick.
//! - **TLS only.** A non-loopback endpoint must be `https://` (rustls with ring, system
//!   roots plus configured ones) unless the config says `allow_insecure_rpc`
//!   ([`Error::InsecureRpc`]).
//! - **A fresh head.** A head whose block timestamp is older than
//!   [`ChainConfig::max_head_age`] is [`Error::StaleHead`]: a stuck or lagging endpoint
//!   cannot freeze policy at an old block.
//! - **A background policy head.** [`PolicyHead`] advances the pinned block on an
//!   interval and keeps recently used reads answered at each new block, so a release
//!   reads cached state; a failed or stale head is an error, never the old block.
//! - **Fail closed.** Every RPC runs under a per-call timeout; any transport failure,
//!   timeout, RPC error or disagreement is an [`Error`] (see [`Error::is_retryable`]),
//!   never an allow.
//! - **Read cache** keyed by (query, keccak256 of the ABI-encoded input, block hash),
//!   bounded; errors are never cached.
//! - **Chain-id check** on connect, for every endpoint ([`Error::ChainIdMismatch`]).
//! - **Transactions** (to the first healthy endpoint): deploy the whole system
//!   ([`Connection::deploy_system`]), apps ([`ChainClient::deploy_app`]), allowlists, KMS
//!   identity and nodes, anchoring, and DAO governance ([`Connection::deploy_governance`],
//!   [`Dao`]). Reverts are decoded into the generated custom-error enums ([`Revert`]).
//! - **Event history**: [`AppAuthClient::policy_history`], [`ChainClient::kms_history`],
//!   [`ChainClient::anchors`].
//! - **Audit**: [`audit_app`] checks a node's anchors, checkpoint, inclusion of an app's
//!   releases and re-evaluates each release's policy at its recorded block;
//!   [`verify_receipt`] checks one release receipt the same way.
//!
//! What it does *not* do: verify quotes (cairn-attestation), keep the transparency log
//! (cairn-tlog), retry (callers decide; errors say whether retrying makes sense), or
//! speak anything but HTTP(S) JSON-RPC.
//!
//! What it trusts: that fewer than `quorum` of the configured endpoints lie about the
//! chain (a quorum of liars decides every read), the TLS roots for `https://`
//! endpoints, and the clock head ages are judged against. It checks the chain id and
//! that KmsAuth has code. See `docs/onchain-client.md` and `docs/security.md`.
//!
//! # Layout
//! - `bindings`: `sol!` bindings from the committed forge artifacts (`artifacts/*.json`).
//! - `config`: [`ChainConfig`], URL checks ([`check_rpc_url`]).
//! - `connection`: [`Connection`] to one endpoint, TLS client, timeouts, transaction sending.
//! - `quorum`: fan-out of each read to every endpoint, agreement, the primary endpoint.
//! - `client`: [`ChainClient`], the head and pinned policy reads.
//! - `head`: [`PolicyHead`], the background-advanced pinned block.
//! - `cache`: the read cache.
//! - `kms_admin`, `app`: KmsAuth and AppAuth transactions (the one-call wrappers generated
//!   by `wrappers`' `contract_sends!`).
//! - `deploy`, `governance`: system and DAO deployment, proposals.
//! - `history`: event queries.
//! - `record`: the release record's boot info ↔ the chain's `BootInfo`.
//! - [`audit`]: the auditing light client of a node's key-release log and receipts.
//! - `error`: [`Error`], [`Check`], [`Revert`].
//! - [`testing`] (feature `test-utils`): anvil, a deployed-system fixture, a lying
//!   JSON-RPC proxy.
//!
//! # Feature flags
//! - `test-utils`: adds the `testing` module (anvil fixture, JSON-RPC proxy); changes
//!   nothing else.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use cairn_onchain::alloy::primitives::address;
//! use cairn_onchain::{
//!     BootInfo, ChainClient, ChainConfig, Check, Error, HeadOptions, PolicyHead, Verdict,
//! };
//!
//! # async fn demo(boot: BootInfo) -> Result<(), Error> {
//! let kms_auth = address!("0x5FbDB2315678afecb367f032d93F642f64180aa3");
//! let url = |s: &str| s.parse().expect("valid URL");
//! let config = ChainConfig::new(url("https://rpc-a.example/"), 1, kms_auth)
//!     // both endpoints must agree on every read
//!     .with_rpc_urls(vec![url("https://rpc-a.example/"), url("https://rpc-b.example/")], 2)
//!     .with_confirmations(2)
//!     .with_call_timeout(Duration::from_secs(3));
//! let client = Arc::new(ChainClient::connect(&config, None).await?);
//! let head = PolicyHead::start(client, HeadOptions::new(&config)).await?;
//!
//! let view = head.view()?; // head − 2, agreed by both endpoints, fresh
//! match view.is_app_allowed(&boot).await {
//!     Ok(Verdict::Allowed) => { /* release, recording view.block() */ }
//!     Err(Error::Denied { check: Check::ComposeHash, reason }) => { /* 403 with `reason` */ }
//!     Err(e) if e.is_retryable() => { /* 503: chain unavailable, never an allow */ }
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```

/// Builder setters that each set one field of `self` and return it, with their docs:
/// `fn with_x(x: T);` sets `self.x = x`, and `fn with_x(x: T) => Some;` sets
/// `self.x = Some(x)`. The parameter is named after the field it sets.
macro_rules! setters {
    ($($(#[$doc:meta])* fn $name:ident($field:ident: $ty:ty) $(=> $wrap:path)?;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $field: $ty) -> Self {
                self.$field = $($wrap)?($field);
                self
            }
        )*
    };
}

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
mod head;
mod history;
mod kms_admin;
mod quorum;
mod record;
#[cfg(feature = "test-utils")]
pub mod testing;
mod wrappers;

// The public interface is:
pub use app::{AppAuthClient, ComposeHashActivation};
pub use audit::{
    audit_all, audit_app, verify_receipt, AuditOptions, AuditOutcome, AuditReport, AuditStats,
    AuditedRelease, Auditor, Finding, LogSource, LogSources, NodeSummary, ReceiptError,
    SourceError, Staleness, TreeHead, DEFAULT_MAX_POLICY_AGE, MAX_AUDIT_ENTRIES,
};
pub use bindings::{
    app_auth, governor, kms_auth, proxy, timelock, token, AppAuth, CairnGovernor, CairnToken,
    ERC1967Proxy, KmsAuth, TimelockController,
};
pub use client::{
    unix_now, Anchor, BlockHeader, BootInfo, ChainClient, Head, KeyGenerations, PolicyBlock,
    PreviousGeneration, RootKeys, Verdict, MAX_REASON_LEN,
};
pub use config::{
    check_rpc_url, endpoint_label, is_loopback, ChainConfig, RpcTransport, DEFAULT_CALL_TIMEOUT,
    DEFAULT_CONFIRMATIONS, DEFAULT_HEAD_POLL_INTERVAL, DEFAULT_MAX_HEAD_AGE, DEFAULT_QUORUM,
    DEFAULT_VERDICT_CACHE_ENTRIES, MAX_RPC_URLS,
};
pub use connection::Connection;
pub use deploy::Deployment;
pub use error::{reasons, Check, Error, Result, Revert};
pub use governance::{Dao, Governance, GovernanceParams, Proposal, ProposalState, Support};
pub use head::{
    Clock, HeadOptions, HeadStatus, HeadView, PolicyHead, DEFAULT_TRACKED_READS,
    REFRESH_CONCURRENCY,
};
pub use history::{BlockRange, Logged, MAX_LOG_BLOCK_SPAN};
pub use kms_admin::AppParams;
pub use record::{boot_info_of, recorded_boot_info};

/// Re-export of the alloy crate this client is built on.
pub use alloy;
