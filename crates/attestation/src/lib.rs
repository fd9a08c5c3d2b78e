//! cairn-attestation — TDX evidence for Cairn.
//!
//! Everything in Cairn trusts a confidential VM only through its TDX quote. This crate
//! holds the evidence model and its verification:
//!
//! - the RTMR3 runtime-event log (dstack-compatible digests, replay, JSON) and the
//!   identities it carries (app id, compose hash, instance id, OS image hash, key provider);
//! - identity derivations of DESIGN.md §2 (device id, mr_system, mr_aggregated);
//! - [`Verifier`]: dcap-qvl 0.7.1 with an explicit trust root, collateral from files or a
//!   PCCS ([`PccsClient`]: fetches only for PCK chains that verify to the root, one fetch
//!   per platform at a time, rate-limited, bounded caches), event-log replay, report-data
//!   binding, and a verified-result cache;
//! - [`simulator`]: an in-process TDX with a mock Intel PKI whose quotes the real verifier
//!   accepts — *only* when the verifier is explicitly configured with the simulator root.
//!
//! What it trusts: Intel's SGX root CA (or a simulator root when configured by name), and
//! the clock value the caller passes. What it does **not** do: judge TCB status or
//! advisories (returned for the on-chain policy), or decide whether an identity is allowed.
//!
//! # Layout
//! - `consts` — size limits, event names, Intel's root CA.
//! - `ids` — identity newtypes and derivations.
//! - `eventlog` — runtime events, replay, JSON, boot order.
//! - `collateral` — collateral loading, expiry, version.
//! - `pck` — the quote's PCK chain, verified to the root before anything is fetched for it.
//! - `pccs` — the PCCS client: bounded caches, per-platform coalescing, a fetch rate limit.
//! - `bounded` — the entry- and byte-bounded cache every peer-growable cache uses.
//! - `verify` — [`Verifier`], [`VerifiedQuote`], the verified-result cache.
//! - `simulator` — mock PKI, quotes, collateral, and a PCCS server.
//! - `tee` — the [`Tee`] trait and the configfs-tsm backend.
//! - `ratls` — RA-TLS certificates and rustls verifiers.

mod bounded;
mod collateral;
pub mod consts;
mod error;
pub mod eventlog;
pub mod ids;
mod pccs;
mod pck;
mod ratls;
pub mod simulator;
mod tee;
mod verify;

pub use collateral::Collateral;
pub use error::{Error, Result};
pub use eventlog::{EventLog, RuntimeEvent};
pub use pccs::{
    PccsClient, PccsLimits, PccsStats, DEFAULT_PCCS_COLLATERAL_BYTES, DEFAULT_PCCS_CONNECT_TIMEOUT,
    DEFAULT_PCCS_FAILURE_TTL_SECS, DEFAULT_PCCS_FETCHES_PER_MINUTE, DEFAULT_PCCS_FETCH_BURST,
    DEFAULT_PCCS_FETCH_TIMEOUT, DEFAULT_PCCS_MAX_COLLATERAL, DEFAULT_PCCS_MAX_FAILURES,
    DEFAULT_PCCS_REQUEST_TIMEOUT,
};
pub use pck::MAX_PCK_CHAIN_CERTS;
pub use ratls::{
    consts as ratls_consts, generate_ra_tls_cert, parse_ra_tls_extensions, ra_tls_report_data,
    Evidence, EvidenceVerifier, RaTlsCert, RaTlsCertBuilder, RaTlsClientVerifier, RaTlsError,
    RaTlsServerVerifier, Usage,
};
pub use tee::TdxTee;
pub use tee::{Tee, TeeError};
pub use verify::{TrustRoot, VerifiedQuote, VerifiedReport, Verifier, MAX_CACHE_ENTRIES};
