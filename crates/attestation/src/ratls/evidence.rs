//! [`crate::Verifier`] as the RA-TLS [`EvidenceVerifier`].

use super::verify::{check_app_id, precheck};
use super::{ra_tls_report_data, EvidenceVerifier, RaTlsError, Usage};
use crate::{Error, PccsClient, VerifiedQuote, Verifier};

/// RA-TLS verification with the crate's [`Verifier`]: dcap-qvl against its trust root,
/// the configured collateral ([`Verifier::with_collateral`]), event-log replay against
/// RTMR3, the report-data check, and the verified-result cache — at the current time.
///
/// rustls verifiers are synchronous, so the collateral must already be in the verifier;
/// a verifier without collateral rejects every certificate
/// (`Error::MalformedCollateral("no collateral configured")`).
impl EvidenceVerifier for Verifier {
    type Identity = VerifiedQuote;
    type Error = Error;

    fn verify_evidence(
        &self,
        quote: &[u8],
        event_log_json: &[u8],
        expected_report_data: &[u8; 64],
    ) -> Result<VerifiedQuote, Error> {
        // A clock before 1970 is a broken host: 0 makes every collateral look not yet valid.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.verify(quote, event_log_json, expected_report_data, now)
    }

    fn app_id(&self, identity: &VerifiedQuote) -> Option<[u8; 20]> {
        Some(identity.app_id().0)
    }
}

impl Verifier {
    /// Checks 1–7 of the RA-TLS verification order (docs/ratls.md) on a certificate
    /// outside a handshake, at `now` (unix seconds): the same checks as
    /// [`crate::RaTlsServerVerifier::verify_cert_der`], with the quote's collateral from
    /// `pccs` (cached there until it expires) when given, else the configured collateral.
    /// Async because a PCCS fetch is, which a rustls callback cannot wait for.
    ///
    /// It does not prove that the peer holds the certificate key: use it on the
    /// end-entity certificate of a connection whose handshake a possession-only verifier
    /// checked ([`crate::PossessionServerVerifier`]).
    pub async fn verify_ra_tls_cert(
        &self,
        cert_der: &[u8],
        required_usage: Option<Usage>,
        pccs: Option<&PccsClient>,
        now: u64,
    ) -> Result<VerifiedQuote, RaTlsError> {
        let parsed = precheck(cert_der, required_usage, now)?;
        let report_data = ra_tls_report_data(&parsed.spki_der);
        let (quote, event_log) = (&parsed.evidence.quote, &parsed.evidence.event_log);
        let verified = match pccs {
            Some(pccs) => {
                self.verify_with_pccs(pccs, quote, event_log, &report_data, now)
                    .await
            }
            None => self.verify(quote, event_log, &report_data, now),
        }
        .map_err(|e| RaTlsError::Evidence(Box::new(e)))?;
        check_app_id(&parsed, Some(verified.app_id().0))?;
        Ok(verified)
    }
}
