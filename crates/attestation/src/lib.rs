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
//!   accepts — *only* when the verifier is explicitly configured with the simulator root;
//! - RA-TLS: certificates whose key a quote binds, the rustls verifiers that check them,
//!   and the X.509 chain checks relying parties of KMS-issued certificates use.
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
//! - `os_image` — [`OsImageManifest`]: what an OS image measures, and its hash.
//! - `tee` — the [`Tee`] trait and the configfs-tsm backend.
//! - `der` — the one DER writer ([`der_octet_string`]) and OCTET STRING reader.
//! - `ratls` — the RA-TLS trust module: certificates and their extensions
//!   ([`RaTlsCertBuilder`], [`ra_tls_extensions`]), the RA-TLS rustls verifiers, the
//!   possession-only verifiers ([`PossessionServerVerifier`], [`PossessionClientVerifier`]),
//!   and X.509 chains under a KMS root CA ([`RootCa`], [`verify_app_chain`]).
//! - `testing` (feature `test-utils`, public) — test support shared by the RA-TLS tests
//!   of several crates: the wall-clock simulator PKI and its verifier, a possession-only
//!   rustls client, a resolver presenting any certificate with any key, a served PCCS.
//!
//! # Features
//! - `test-utils`: adds the public `testing` module. It changes no behaviour.

mod bounded;
mod collateral;
pub mod consts;
mod der;
mod error;
pub mod eventlog;
pub mod ids;
mod os_image;
mod pccs;
mod pck;
mod ratls;
pub mod simulator;
mod tee;
#[cfg(feature = "test-utils")]
pub mod testing;
mod verify;

pub use collateral::Collateral;
pub use der::der_octet_string;
pub use error::{Error, Result};
pub use eventlog::{EventLog, RuntimeEvent};
pub use os_image::{booted_os_image, OsImageManifest, OsImageMismatch, MAX_MANIFEST_LEN};
pub use pccs::{
    PccsClient, PccsLimits, PccsStats, DEFAULT_PCCS_COLLATERAL_BYTES, DEFAULT_PCCS_CONNECT_TIMEOUT,
    DEFAULT_PCCS_FAILURE_TTL_SECS, DEFAULT_PCCS_FETCHES_PER_MINUTE, DEFAULT_PCCS_FETCH_BURST,
    DEFAULT_PCCS_FETCH_TIMEOUT, DEFAULT_PCCS_MAX_COLLATERAL, DEFAULT_PCCS_MAX_FAILURES,
    DEFAULT_PCCS_REQUEST_TIMEOUT,
};
pub use pck::MAX_PCK_CHAIN_CERTS;
pub use ratls::{
    consts as ratls_consts, generate_ra_tls_cert, parse_ra_tls_extensions, peer_end_entity,
    pem_to_der, ra_tls_extensions, ra_tls_report_data, spki_of, verify_app_chain, CertRole,
    ChainError, Evidence, EvidenceVerifier, ExtensionValues, PossessionClientVerifier,
    PossessionServerVerifier, RaTlsCert, RaTlsCertBuilder, RaTlsClientVerifier, RaTlsError,
    RaTlsServerVerifier, RootCa, Usage, VerifiedAppChain, MAX_CERT_PEM_LEN,
};
pub use tee::TdxTee;
pub use tee::{Tee, TeeError};
pub use verify::{TrustRoot, VerifiedQuote, VerifiedReport, Verifier, MAX_CACHE_ENTRIES};
