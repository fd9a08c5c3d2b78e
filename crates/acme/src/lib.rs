//! cairn-acme — the Cairn gateway's serving certificate by ACME DNS-01.
//!
//! The gateway terminates TLS for `*.<base_domain>`. This crate gets it a publicly
//! trusted wildcard certificate (`*.<base_domain>` + `<base_domain>`) from an ACME CA
//! (Let's Encrypt; Pebble in the tests) with `instant-acme`, proves each certificate key
//! was made inside the gateway's CVM, and keeps the certificate fresh:
//!
//! - the ACME **account key** is derived from the gateway app's KMS key (guest agent
//!   `GetKey`, then HKDF to P-256), so every gateway node of the app uses one account;
//! - **DNS-01** records go through a [`DnsProvider`]: [`CloudflareDns`] or, for tests,
//!   [`ChallTestSrvDns`];
//! - every new certificate key is **quoted** (`GetQuote` over
//!   `SHA-512("zt-cert:" ‖ SPKI)`) *before* the CA sees it, and listed in [`AcmeInfo`],
//!   served at `/.dstack/acme-info` ([`acme_info_router`]) — dstack-gateway's document, so
//!   its monitor works; [`verify_served_certificate`] is the check a monitor runs;
//! - [`AcmeManager::run`] **renews** after a configurable fraction of the lifetime, backs
//!   off on failure, and never replaces the serving certificate with anything less than a
//!   complete, checked one ([`CertStore`] is the gateway's `ResolvesServerCert`).
//!
//! What it trusts: the guest agent (the gateway's own TEE), the CA's HTTPS endpoint
//! (platform roots or the configured `ca_roots`), the DNS provider's API. What it does
//! **not** do: serve TLS or HTTP itself (the gateway does, with [`CertStore`] and
//! [`acme_info_router`]), coordinate nodes (each node orders its own certificate under the
//! shared account and publishes its own keys), revoke certificates, or judge a quote's
//! TCB status (a monitor gets the [`cairn_attestation::VerifiedQuote`] to judge).
//!
//! # Layout
//! - `consts` — labels, paths, bounds, defaults.
//! - `error` — [`Error`], [`DnsError`], [`MonitorError`].
//! - `account` — [`AccountKey`] derivation.
//! - `agent` — [`AgentClient`] (guest agent) and the [`Attestor`] trait.
//! - `dns` — [`DnsProvider`], [`CloudflareDns`], [`ChallTestSrvDns`].
//! - `http` — instant-acme over reqwest, bounded bodies.
//! - `order` — one DNS-01 order.
//! - `store` — [`ServingCert`], [`CertStore`].
//! - `persist` — the optional state directory.
//! - `attest` — report data, [`AcmeInfo`], the monitor checks.
//! - `config` — [`AcmeConfig`], [`DnsConfig`].
//! - `manager` — [`AcmeManager`]: issuance, renewal, backoff.
//! - `publish` — [`acme_info_router`].
//! - `testing` (feature `test-utils`, public) — the Pebble harness shared by this crate's
//!   tests and the cairn-e2e gateway test.
//!
//! # Feature flags
//! - `test-utils`: adds the public [`testing`] module. It changes no behaviour.

mod account;
mod agent;
mod attest;
mod config;
pub mod consts;
mod dns;
mod error;
mod http;
mod manager;
mod order;
mod persist;
mod publish;
mod store;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use account::AccountKey;
pub use agent::{AgentClient, AgentEndpoint, Attestor};
pub use attest::{
    account_uri_report_data, cert_key_report_data, certificate_spki, verify_quoted_key,
    verify_served_certificate, AcmeInfo, QuotedPublicKey,
};
pub use config::{AcmeConfig, DnsConfig};
pub use dns::{ApiToken, BoxFuture, ChallTestSrvDns, CloudflareConfig, CloudflareDns, DnsProvider};
pub use error::{DnsError, Error, MonitorError, Result};
pub use manager::{AcmeManager, AcmeParts, Clock, RenewalStatus, SystemClock};
pub use publish::acme_info_router;
pub use store::{CertStore, ServingCert};
