//! [`crate::Verifier`] as the RA-TLS [`EvidenceVerifier`].

use super::EvidenceVerifier;
use crate::{Error, VerifiedQuote, Verifier};

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
