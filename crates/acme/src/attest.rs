//! Attested certificate keys: the report data that binds a key to a quote, the document
//! the gateway publishes for monitors ([`AcmeInfo`] at [`crate::consts::ACME_INFO_PATH`],
//! dstack-gateway's shape), and the checks a monitor runs on it.
//!
//! ```text
//! report_data(cert key)    = SHA-512("zt-cert:" ‖ SubjectPublicKeyInfo DER)
//! report_data(account uri) = SHA-512("acme-account:" ‖ account URI)
//! ```
//!
//! A monitor that sees a certificate for the gateway's domain (served, or in a CT log)
//! accepts it only if its key is published with a quote that verifies, whose report data
//! is the key's, and whose app id is the gateway's (KmsAuth's `gatewayAppId`): a key the
//! CA certified but no gateway CVM generated is then visible as such.

use cairn_attestation::consts::MAX_QUOTE_LEN;
use cairn_attestation::ids::AppId;
use cairn_attestation::{VerifiedQuote, Verifier};
use cairn_protocol::agent::{decode_hex, GetQuoteResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::consts::{ACCOUNT_URI_TAG, CERT_KEY_TAG, MAX_ACME_INFO_LEN};
use crate::error::{MonitorError, Result};

/// Largest SubjectPublicKeyInfo accepted in a published entry.
const MAX_SPKI_LEN: usize = 4096;

fn tagged_report_data(tag: &str, content: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(tag.as_bytes());
    h.update(b":");
    h.update(content);
    h.finalize().into()
}

/// `SHA-512("zt-cert:" ‖ spki_der)`: the report data that binds a certificate key.
pub fn cert_key_report_data(spki_der: &[u8]) -> [u8; 64] {
    tagged_report_data(CERT_KEY_TAG, spki_der)
}

/// `SHA-512("acme-account:" ‖ uri)`: the report data that binds the ACME account.
pub fn account_uri_report_data(uri: &str) -> [u8; 64] {
    tagged_report_data(ACCOUNT_URI_TAG, uri.as_bytes())
}

/// One attested certificate key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotedPublicKey {
    /// The key's SubjectPublicKeyInfo DER, hex.
    pub public_key: String,
    /// The guest agent's `GetQuote` response over [`cert_key_report_data`], as a JSON
    /// string (dstack's encoding).
    pub quote: String,
}

/// What the gateway publishes for monitors (dstack-gateway's `AcmeInfoResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeInfo {
    /// The ACME account URL.
    pub account_uri: String,
    /// `GetQuote` over [`account_uri_report_data`], as a JSON string (empty if none).
    #[serde(default)]
    pub account_quote: String,
    /// Every certificate key this node had certified, hex SPKI (dstack's older field).
    #[serde(default)]
    pub hist_keys: Vec<String>,
    /// The same keys with their quotes, oldest first.
    #[serde(default)]
    pub quoted_hist_keys: Vec<QuotedPublicKey>,
    /// The certificate chain being served, PEM.
    #[serde(default)]
    pub active_cert: String,
    /// The base domain.
    #[serde(default)]
    pub base_domain: String,
}

impl AcmeInfo {
    /// Parse a published document (at most [`MAX_ACME_INFO_LEN`] bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, MonitorError> {
        if bytes.len() > MAX_ACME_INFO_LEN {
            return Err(MonitorError::TooLarge {
                max: MAX_ACME_INFO_LEN,
            });
        }
        serde_json::from_slice(bytes).map_err(MonitorError::MalformedDocument)
    }
}

/// Attest `spki_der` with `attestor`: the entry to publish.
pub(crate) async fn attest_key(
    attestor: &dyn crate::agent::Attestor,
    spki_der: &[u8],
) -> Result<QuotedPublicKey> {
    let quote = attestor.quote(cert_key_report_data(spki_der)).await?;
    Ok(QuotedPublicKey {
        public_key: hex::encode(spki_der),
        quote: quote_json(&quote)?,
    })
}

pub(crate) fn quote_json(q: &GetQuoteResponse) -> Result<String> {
    serde_json::to_string(q).map_err(|e| crate::error::Error::Agent {
        method: cairn_protocol::agent::METHOD_GET_QUOTE,
        reason: format!("encoding the quote: {e}"),
    })
}

/// Check one published entry: its quote verifies (dcap-qvl, event log replay) with
/// report data [`cert_key_report_data`] of its key, and the quoting app is `gateway_app`.
/// Returns the verified quote (TCB status, compose hash … for the monitor to judge).
pub fn verify_quoted_key(
    verifier: &Verifier,
    entry: &QuotedPublicKey,
    gateway_app: &AppId,
    now_unix: u64,
) -> Result<VerifiedQuote, MonitorError> {
    let spki =
        decode_hex(&entry.public_key, MAX_SPKI_LEN).map_err(|_| MonitorError::MalformedHex {
            field: "public_key",
        })?;
    if entry.quote.is_empty() {
        return Err(MonitorError::NoQuote);
    }
    let doc: GetQuoteResponse =
        serde_json::from_str(&entry.quote).map_err(MonitorError::MalformedQuote)?;
    let quote = decode_hex(&doc.quote, MAX_QUOTE_LEN)
        .map_err(|_| MonitorError::MalformedHex { field: "quote" })?;
    let verified = verifier
        .verify(
            &quote,
            doc.event_log.as_bytes(),
            &cert_key_report_data(&spki),
            now_unix,
        )
        .map_err(MonitorError::Quote)?;
    if verified.app_id() != gateway_app {
        return Err(MonitorError::WrongApp {
            expected: gateway_app.to_hex(),
            got: verified.app_id().to_hex(),
        });
    }
    Ok(verified)
}

/// The SubjectPublicKeyInfo DER of a certificate.
pub fn certificate_spki(cert_der: &[u8]) -> Result<Vec<u8>, MonitorError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| MonitorError::MalformedCertificate(e.to_string()))?;
    Ok(cert.public_key().raw.to_vec())
}

/// Check a certificate the gateway serves (or one found in a CT log): its key must be
/// published in `info` and that entry must pass [`verify_quoted_key`].
pub fn verify_served_certificate(
    verifier: &Verifier,
    info: &AcmeInfo,
    leaf_der: &[u8],
    gateway_app: &AppId,
    now_unix: u64,
) -> Result<VerifiedQuote, MonitorError> {
    let spki = certificate_spki(leaf_der)?;
    let wanted = hex::encode(&spki);
    let entry = info
        .quoted_hist_keys
        .iter()
        .find(|e| e.public_key.eq_ignore_ascii_case(&wanted))
        .ok_or_else(|| MonitorError::KeyNotPublished {
            spki_sha256: hex::encode(Sha256::digest(&spki)),
        })?;
    verify_quoted_key(verifier, entry, gateway_app, now_unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_is_sha512_of_tag_colon_content() {
        let mut h = Sha512::new();
        h.update(b"zt-cert:abc");
        let want: [u8; 64] = h.finalize().into();
        assert_eq!(cert_key_report_data(b"abc"), want);
        assert_ne!(account_uri_report_data("abc"), want);
    }

    #[test]
    fn oversized_and_malformed_documents_are_refused() {
        assert!(matches!(
            AcmeInfo::parse(&vec![b' '; MAX_ACME_INFO_LEN + 1]),
            Err(MonitorError::TooLarge { .. })
        ));
        assert!(matches!(
            AcmeInfo::parse(b"{\"account_uri\": 3}"),
            Err(MonitorError::MalformedDocument(_))
        ));
        let ok = AcmeInfo::parse(b"{\"account_uri\":\"u\"}").unwrap();
        assert_eq!(ok.account_uri, "u");
    }
}
