//! Release-path steps 1 and 2: verify a peer's RA-TLS certificate and turn its evidence
//! into the `AppBootInfo` the contracts judge.
//!
//! Step 1: the certificate is at most 64 KiB, parses (no trailing bytes), is inside its
//! validity window and carries the quote and event-log extensions; the quote verifies
//! (dcap-qvl with the configured trust root and collateral) and its report data equals
//! `SHA-512("ratls-cert:" ‖ SPKI)` of *this* certificate. The TLS handshake has already
//! proved that the peer holds the certificate key (see `server::tls`).
//! Step 2: the event log replays to RTMR3 (inside `Verifier::verify`), the identities
//! are decoded, and MRTD/RTMR0-2 must match one of the OS image manifests this node knows;
//! an `os-image-hash` event, when already measured, must name that same image.

use cairn_attestation::ratls_consts::MAX_RA_TLS_CERT_LEN;
use cairn_attestation::{
    parse_ra_tls_extensions, ra_tls_report_data, OsImageManifest, PccsClient, RaTlsError, Usage,
    VerifiedQuote, Verifier,
};
use cairn_onchain::BootInfo;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::reject::{ApiError, Check};

/// A peer whose evidence verified.
#[derive(Clone, Debug)]
pub struct Attested {
    /// The verified quote and identities.
    pub quote: VerifiedQuote,
    /// The OS image hash its measurements match.
    pub os_image_hash: [u8; 32],
    /// The boot info the contracts judge.
    pub boot: BootInfo,
    /// SHA-256 of the raw quote (logged).
    pub quote_hash: [u8; 32],
    /// SHA-256 of the certificate's SubjectPublicKeyInfo DER (logged).
    pub client_key_hash: [u8; 32],
    /// The certificate key's raw public key bits (SEC1 point).
    pub public_key: Vec<u8>,
    /// The certificate's SubjectPublicKeyInfo DER (algorithm and key), for CSR binding.
    pub spki_der: Vec<u8>,
    /// The usage the certificate declares.
    pub usage: Option<Usage>,
    /// The raw quote of the certificate (extension `…62397.1.1`), verified above; copied
    /// into `sign-cert` leaves, which certify the same key.
    pub raw_quote: Vec<u8>,
    /// The certificate's event log JSON (extension `…62397.1.2`), replayed above.
    pub event_log: Vec<u8>,
}

/// Where collateral for quote verification comes from.
#[derive(Debug)]
pub enum CollateralSource {
    /// The collateral configured in the [`Verifier`] (a file, or the simulator's).
    Configured,
    /// A PCCS (Intel PCS v4 API), cached until `nextUpdate`.
    Pccs(std::sync::Arc<PccsClient>),
}

/// A failed quote or event-log verification as the answer: the step that refused
/// ([`cairn_service::EvidenceStep`], shared with the gateway; an error it does not name is
/// a quote denial), or 503 for unavailable collateral.
fn attestation_error(e: cairn_attestation::Error) -> ApiError {
    cairn_service::EvidenceFailure::from(e).into()
}

/// The OS image whose manifest matches the quote's MRTD and RTMR0-2
/// ([`cairn_attestation::booted_os_image`]), as a `denied.os_image_measurements` refusal.
pub fn match_os_image(
    quote: &VerifiedQuote,
    images: &[OsImageManifest],
) -> Result<[u8; 32], ApiError> {
    cairn_attestation::booted_os_image(quote, images)
        .map_err(|e| ApiError::denied(Check::OsImageMeasurements, e.to_string()))
}

/// Steps 1 and 2 on a peer certificate (DER) at `now` (seconds since the Unix epoch, the
/// node's [`Clock`](crate::Clock)): the certificate's validity window and the
/// collateral's are checked against it. `None` (no certificate) is a denial.
pub async fn attest(
    cert_der: Option<&[u8]>,
    verifier: &Verifier,
    collateral: &CollateralSource,
    images: &[OsImageManifest],
    now: u64,
) -> Result<Attested, ApiError> {
    let cert_der = cert_der.ok_or_else(|| {
        ApiError::denied(
            Check::ClientCert,
            "this endpoint requires an RA-TLS client certificate",
        )
    })?;
    if cert_der.len() > MAX_RA_TLS_CERT_LEN {
        return Err(ApiError::denied(
            Check::ClientCert,
            format!(
                "client certificate of {} bytes exceeds {MAX_RA_TLS_CERT_LEN}",
                cert_der.len()
            ),
        ));
    }
    let bad_cert = |e: &dyn std::fmt::Display| ApiError::denied(Check::ClientCert, e.to_string());
    let (rest, cert) = X509Certificate::from_der(cert_der).map_err(|e| bad_cert(&e))?;
    if !rest.is_empty() {
        return Err(bad_cert(&"trailing bytes after the client certificate"));
    }
    let validity = cert.validity();
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    if now_i < validity.not_before.timestamp() || now_i > validity.not_after.timestamp() {
        return Err(bad_cert(&"client certificate is not valid now"));
    }
    let spki_der = cert.tbs_certificate.subject_pki.raw;
    let public_key = cert
        .tbs_certificate
        .subject_pki
        .subject_public_key
        .data
        .to_vec();
    let evidence = parse_ra_tls_extensions(cert_der).map_err(|e: RaTlsError| bad_cert(&e))?;
    let report_data = ra_tls_report_data(spki_der);

    let verified = match collateral {
        CollateralSource::Configured => {
            verifier.verify(&evidence.quote, &evidence.event_log, &report_data, now)
        }
        CollateralSource::Pccs(pccs) => {
            verifier
                .verify_with_pccs(
                    pccs,
                    &evidence.quote,
                    &evidence.event_log,
                    &report_data,
                    now,
                )
                .await
        }
    }
    .map_err(attestation_error)?;
    if let Some(claimed) = evidence.app_id {
        if claimed != verified.app_id().0 {
            return Err(ApiError::denied(
                Check::EventLog,
                format!(
                    "app id extension 0x{} differs from the measured app id 0x{}",
                    hex::encode(claimed),
                    verified.app_id().to_hex()
                ),
            ));
        }
    }
    let os_image_hash = match_os_image(&verified, images)?;
    let boot = cairn_kms_client::boot_info(&verified, os_image_hash);
    Ok(Attested {
        os_image_hash,
        boot,
        quote_hash: Sha256::digest(&evidence.quote).into(),
        client_key_hash: Sha256::digest(spki_der).into(),
        public_key,
        spki_der: spki_der.to_vec(),
        usage: evidence.usage,
        quote: verified,
        raw_quote: evidence.quote,
        event_log: evidence.event_log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::Dependency;

    fn attest_blocking(cert: Option<&[u8]>) -> Result<Attested, ApiError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(attest(
            cert,
            &Verifier::intel(),
            &CollateralSource::Configured,
            &[],
            crate::clock::unix_now(),
        ))
    }

    fn check_of(r: Result<Attested, ApiError>) -> Option<Check> {
        match r {
            Err(ApiError::Denied { check, .. }) => Some(check),
            _ => None,
        }
    }

    #[test]
    fn missing_oversized_and_garbage_certificates_are_client_cert_denials() {
        assert_eq!(check_of(attest_blocking(None)), Some(Check::ClientCert));
        let big = vec![0x30; MAX_RA_TLS_CERT_LEN + 1];
        assert_eq!(
            check_of(attest_blocking(Some(&big))),
            Some(Check::ClientCert)
        );
        assert_eq!(
            check_of(attest_blocking(Some(&[0x30, 0x03, 0x02, 0x01, 0x00]))),
            Some(Check::ClientCert)
        );
    }

    #[test]
    fn pccs_rate_limit_is_unavailable_and_an_untrusted_pck_chain_a_quote_denial() {
        use cairn_attestation::Error as E;
        let limited = attestation_error(E::PccsRateLimited {
            fmspc: [0; 6],
            per_minute: 30,
        });
        assert!(
            matches!(
                limited,
                ApiError::Unavailable {
                    dependency: Dependency::Collateral,
                    ..
                }
            ),
            "{limited}"
        );
        let untrusted = attestation_error(E::UntrustedPckChain {
            source: webpki::Error::UnknownIssuer,
        });
        assert_eq!(check_of(Err(untrusted)), Some(Check::Quote));
    }

    proptest::proptest! {
        #[test]
        fn random_certificate_bytes_are_denied_never_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let r = attest_blocking(Some(&bytes));
            let denied = matches!(r, Err(ApiError::Denied { .. }));
            proptest::prop_assert!(denied);
        }
    }
}
