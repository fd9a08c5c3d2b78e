//! cairn-kms-client — the one client of the Cairn KMS API (DESIGN.md §1, §5;
//! docs/kms.md "The client").
//!
//! Used by the guest (app keys, `sign-cert`), KMS replication (`onboard`), the auditing
//! light client (the public log endpoints, as an audit [`cairn_onchain::LogSource`]), the
//! end-to-end tests, and what comes next (VMM, gateway, CLI).
//!
//! ```text
//!  KmsClient::connect(url, client cert?)          each stage under its own timeout
//!    TCP connect ─► TLS handshake (the KMS proves it holds its certificate key;
//!                   we present our RA-TLS certificate when given)
//!               ─► the KMS's certificate: RA-TLS, usage kms:rpc, quote + event log
//!                  verified (collateral configured or from a PCCS), validity
//!               ─► KmsConnection: requests, one at a time, responses ≤ 1 MiB
//!  app_key()    ─► the returned root CA is a self-signed P-256 CA that issued the
//!                  KMS's TLS certificate
//!  sign_cert()  ─► the KMS is rooted in the caller's root; the chain is leaf → app CA
//!                  → root for the caller's app id; the leaf certifies the caller's key
//! ```
//!
//! What it trusts: the [`cairn_attestation::Verifier`] it is given (trust root and
//! collateral) to judge the KMS's quote, the root CA the caller pins or checks, and the
//! chain client the caller passes to [`KmsConnection::check_kms_allowed`]. What it does
//! **not** do: decide on its own whether a KMS is *allowed* (callers ask
//! [`KmsConnection::check_kms_allowed`]), compare a root with a pin (the caller's
//! policy), retry (errors say whether retrying makes sense:
//! [`Error::is_retryable`]), or trust a response body before the KMS's evidence verified.
//!
//! # Layout
//! - `client` — [`KmsClient`], [`Timeouts`]: trust, and opening a verified connection.
//! - `connection` — [`KmsConnection`]: requests and the typed calls of the API.
//! - `policy` — [`boot_info`], and a KMS's measurements judged by `KmsAuth.isKmsAllowed`
//!   ([`KmsConnection::check_kms_allowed`]).
//! - `audit` — [`KmsConnection`] as the audit's [`cairn_onchain::LogSource`].
//! - `error` — [`Error`], [`Stage`].

mod audit;
mod client;
mod connection;
mod error;
mod policy;

pub use client::{
    KmsClient, Timeouts, DEFAULT_ATTESTATION_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, MAX_RESPONSE_LEN,
};
pub use connection::{AppKeyRelease, KmsConnection, KmsPeer};
pub use error::{Error, Result, Stage};
pub use policy::boot_info;
