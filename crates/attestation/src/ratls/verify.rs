//! rustls verifiers for RA-TLS peers.
//!
//! [`RaTlsServerVerifier`] (a `rustls::client::danger::ServerCertVerifier`, used in a
//! `ClientConfig`) and [`RaTlsClientVerifier`] (a `rustls::server::danger::ClientCertVerifier`,
//! used in a `ServerConfig`) *replace* WebPKI: they trust no CA, only the evidence in the
//! peer's end-entity certificate. Checks, in order (the first failure aborts the handshake):
//!
//! 1. the certificate is at most 64 KiB and parses as DER X.509 with no trailing bytes;
//! 2. it carries the quote and event-log extensions, well-formed (plain certs stop here);
//! 3. its key is EC P-256;
//! 4. the verification time is inside its validity window;
//! 5. if the verifier requires a usage, the usage extension equals it;
//! 6. the [`EvidenceVerifier`] accepts the quote and event log with expected report data
//!    `SHA-512("ratls-cert:" ‖ SPKI)` of *this* certificate — so a quote taken from
//!    another certificate (or made for another key) fails here;
//! 7. if the certificate has an app-id extension and the verifier can tell the verified
//!    app id, they are equal;
//! 8. rustls then asks for the handshake signature, checked with the certificate key
//!    (`rustls::crypto::verify_tls1{2,3}_signature`, ring's algorithms): the peer holds
//!    the attested key.
//!
//! Identities reach the application through [`RaTlsServerVerifier::peer_identity`] /
//! [`RaTlsClientVerifier::peer_identity`]: step 6 stores the verified identity in a
//! small cache keyed by SHA-256 of the certificate DER (at most
//! [`VERIFIED_CACHE_CAPACITY`](super::consts::VERIFIED_CACHE_CAPACITY) entries, each for
//! [`VERIFIED_CACHE_TTL`](super::consts::VERIFIED_CACHE_TTL)); on a miss
//! (evicted, expired) the evidence is verified again. Either way the identity only ever
//! comes out of a successful `verify_evidence` on the peer's certificate.
//! Call `peer_identity` only on connections whose config uses this same verifier: the
//! handshake signature (step 8) is what ties the certificate to the connection.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CommonState, Error};
use rustls_pki_types::UnixTime;
use sha2::{Digest, Sha256};

use super::cert::ParsedCert;
use super::consts::{VERIFIED_CACHE_CAPACITY, VERIFIED_CACHE_TTL};
use super::danger::{
    handshake_signature_method, handshake_signature_methods, impl_client_cert_verifier,
    impl_server_cert_verifier, peer_end_entity, ring_algorithms, Cert, Dss, EndEntityCheck,
    SigValid,
};
use super::{ra_tls_report_data, RaTlsError, Usage};

/// Verifies the evidence of an RA-TLS certificate and returns who the peer is.
///
/// The transport only needs this trait; [`crate::Verifier`] implements it with dcap-qvl,
/// event-log replay and the report-data check.
pub trait EvidenceVerifier: Send + Sync + fmt::Debug {
    /// What a successful verification proves about the peer.
    type Identity: Clone + Send + Sync + 'static;
    /// Why evidence was rejected.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Verifies `quote` (signature, collateral, TD attributes), replays `event_log_json`
    /// against its RTMR3, and requires its report data to equal `expected_report_data`.
    fn verify_evidence(
        &self,
        quote: &[u8],
        event_log_json: &[u8],
        expected_report_data: &[u8; 64],
    ) -> Result<Self::Identity, Self::Error>;

    /// The app id a verified identity carries, if the verifier knows it. When it returns
    /// `Some`, a certificate's app-id extension must match it.
    fn app_id(&self, identity: &Self::Identity) -> Option<[u8; 20]> {
        let _ = identity;
        None
    }
}

/// Verifies RA-TLS *server* certificates: put it in a `rustls::ClientConfig` with
/// `.dangerous().with_custom_certificate_verifier(Arc::new(..))`.
///
/// The server name is not checked: the peer is identified by its evidence, not its name.
pub struct RaTlsServerVerifier<V: EvidenceVerifier> {
    core: Core<V>,
}

/// Verifies RA-TLS *client* certificates: put it in a `rustls::ServerConfig` with
/// `.with_client_cert_verifier(Arc::new(..))`. Client authentication is mandatory.
pub struct RaTlsClientVerifier<V: EvidenceVerifier> {
    core: Core<V>,
}

macro_rules! common_api {
    ($ty:ident) => {
        impl<V: EvidenceVerifier> $ty<V> {
            /// A verifier that accepts any usage.
            pub fn new(evidence_verifier: V) -> Self {
                Self {
                    core: Core::new(evidence_verifier),
                }
            }

            /// Require the certificate's special usage to be `usage` (e.g. [`Usage::KmsRpc`]).
            pub fn require_usage(mut self, usage: Usage) -> Self {
                self.core.required_usage = Some(usage);
                self
            }

            /// The evidence verifier in use.
            pub fn evidence_verifier(&self) -> &V {
                &self.core.evidence
            }

            /// The verified identity of the peer of `conn` (a `ServerConnection` or
            /// `ClientConnection`, which deref to `CommonState`), after the handshake.
            /// `conn` must use a config with this verifier.
            pub fn peer_identity(&self, conn: &CommonState) -> Result<V::Identity, RaTlsError> {
                self.core.peer_identity(conn)
            }

            /// Runs checks 1–7 on a certificate outside a handshake (no proof of key
            /// possession: the caller must obtain that separately).
            pub fn verify_cert_der(
                &self,
                cert_der: &[u8],
                now: UnixTime,
            ) -> Result<V::Identity, RaTlsError> {
                self.core.verify_cert(cert_der, now)
            }
        }

        impl<V: EvidenceVerifier> EndEntityCheck for $ty<V> {
            fn check_end_entity(&self, end_entity: &[u8], now: UnixTime) -> Result<(), Error> {
                self.core
                    .verify_cert(end_entity, now)
                    .map(drop)
                    .map_err(to_rustls)
            }

            fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
                &self.core.algorithms
            }
        }

        impl<V: EvidenceVerifier> fmt::Debug for $ty<V> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("evidence", &self.core.evidence)
                    .field("required_usage", &self.core.required_usage)
                    .finish_non_exhaustive()
            }
        }
    };
}

common_api!(RaTlsServerVerifier);
common_api!(RaTlsClientVerifier);

impl_server_cert_verifier!(RaTlsServerVerifier<V: EvidenceVerifier>);
impl_client_cert_verifier!(RaTlsClientVerifier<V: EvidenceVerifier>);

/// Every RA-TLS rejection becomes `InvalidCertificate(Other(..))` carrying the
/// [`RaTlsError`] (so the local side can match the exact reason), which rustls answers
/// with a `certificate_unknown` alert (the peer learns no detail).
fn to_rustls(err: RaTlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(err),
    )))
}

/// What both verifiers share.
struct Core<V: EvidenceVerifier> {
    evidence: V,
    required_usage: Option<Usage>,
    algorithms: WebPkiSupportedAlgorithms,
    verified: Mutex<VerifiedCache<V::Identity>>,
}

impl<V: EvidenceVerifier> Core<V> {
    fn new(evidence: V) -> Self {
        Self {
            evidence,
            required_usage: None,
            algorithms: ring_algorithms(),
            verified: Mutex::new(VerifiedCache::default()),
        }
    }

    fn verify_cert(&self, cert_der: &[u8], now: UnixTime) -> Result<V::Identity, RaTlsError> {
        let parsed = precheck(cert_der, self.required_usage, now.as_secs())?;
        let identity = self
            .evidence
            .verify_evidence(
                &parsed.evidence.quote,
                &parsed.evidence.event_log,
                &ra_tls_report_data(&parsed.spki_der),
            )
            .map_err(|e| RaTlsError::Evidence(Box::new(e)))?;
        check_app_id(&parsed, self.evidence.app_id(&identity))?;
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cert_key(cert_der), identity.clone(), Instant::now());
        Ok(identity)
    }

    fn peer_identity(&self, conn: &CommonState) -> Result<V::Identity, RaTlsError> {
        let cert = peer_end_entity(conn).ok_or(RaTlsError::NoPeerCertificate)?;
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cert_key(cert), Instant::now());
        match cached {
            Some(identity) => Ok(identity),
            None => self.verify_cert(cert, UnixTime::now()),
        }
    }
}

/// Checks 1–5 on a certificate at `now` (unix seconds): size, DER, the quote and
/// event-log extensions, a P-256 key, the validity window, the required usage. What the
/// evidence check (step 6) needs comes back parsed.
pub(crate) fn precheck(
    cert_der: &[u8],
    required_usage: Option<Usage>,
    now: u64,
) -> Result<ParsedCert, RaTlsError> {
    let parsed = ParsedCert::parse(cert_der)?;
    let t = i128::from(now);
    if t < i128::from(parsed.not_before) || t > i128::from(parsed.not_after) {
        return Err(RaTlsError::NotValidAt {
            now,
            not_before: parsed.not_before,
            not_after: parsed.not_after,
        });
    }
    if let Some(required) = required_usage {
        if parsed.evidence.usage != Some(required) {
            return Err(RaTlsError::WrongUsage {
                required,
                presented: parsed.evidence.usage,
            });
        }
    }
    Ok(parsed)
}

/// Check 7: a certificate's app-id extension, when present, equals the verified app id
/// (when the evidence verifier can tell it).
pub(crate) fn check_app_id(
    parsed: &ParsedCert,
    verified: Option<[u8; 20]>,
) -> Result<(), RaTlsError> {
    if let (Some(claimed), Some(verified)) = (parsed.evidence.app_id, verified) {
        if claimed != verified {
            return Err(RaTlsError::AppIdMismatch {
                cert: hex::encode(claimed),
                verified: hex::encode(verified),
            });
        }
    }
    Ok(())
}

fn cert_key(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// Verified identities by certificate hash; bounded (FIFO eviction) and time-limited.
struct VerifiedCache<I> {
    entries: HashMap<[u8; 32], (I, Instant)>,
    order: VecDeque<[u8; 32]>,
}

impl<I> Default for VerifiedCache<I> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<I: Clone> VerifiedCache<I> {
    fn insert(&mut self, key: [u8; 32], identity: I, now: Instant) {
        if self.entries.insert(key, (identity, now)).is_none() {
            self.order.push_back(key);
            while self.order.len() > VERIFIED_CACHE_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
        }
    }

    fn get(&self, key: &[u8; 32], now: Instant) -> Option<I> {
        let (identity, at) = self.entries.get(key)?;
        (now.saturating_duration_since(*at) < VERIFIED_CACHE_TTL).then(|| identity.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_expires() {
        let mut cache = VerifiedCache::default();
        let t0 = Instant::now();
        for i in 0..=VERIFIED_CACHE_CAPACITY {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(key, i, t0);
        }
        assert_eq!(cache.entries.len(), VERIFIED_CACHE_CAPACITY);
        assert_eq!(cache.get(&[0; 32], t0), None, "oldest entry evicted");
        let mut last = [0u8; 32];
        last[..8].copy_from_slice(&(VERIFIED_CACHE_CAPACITY as u64).to_le_bytes());
        assert_eq!(cache.get(&last, t0), Some(VERIFIED_CACHE_CAPACITY));
        assert_eq!(cache.get(&last, t0 + VERIFIED_CACHE_TTL), None, "expired");
    }
}
