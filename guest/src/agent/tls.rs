//! Issuing a TLS key and its certificate chain through the KMS (`GetTlsKey`,
//! `Tappd.DeriveKey`).
//!
//! The guest builds an RA-TLS certificate for the key (its quote binds the key), uses it
//! as the client certificate of KMS `POST /v1/sign-cert`, and sends a PKCS#10 CSR for the
//! same key with the requested validity. The KMS returns `[leaf, app CA, root CA]`; the
//! guest checks that the leaf has what was asked for (evidence, app id, validity) before
//! handing the key out.

use std::sync::Arc;

use cairn_attestation::{RaTlsCertBuilder, Usage};
use cairn_protocol::agent::GetTlsKeyResponse;
use cairn_protocol::api::SignCertRequest;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};

use super::{bad, blocking, AgentFailure};
use crate::error::Error;
use crate::state::GuestState;

/// Most alt names in a `GetTlsKey` request.
pub const MAX_ALT_NAMES: usize = 32;
/// Longest subject common name.
const MAX_SUBJECT_LEN: usize = 256;

/// What the caller asked for.
#[derive(Debug, Clone)]
pub(crate) struct TlsKeyOptions {
    pub(crate) subject: String,
    pub(crate) alt_names: Vec<String>,
    pub(crate) usage_ra_tls: bool,
    pub(crate) usage_server_auth: bool,
    pub(crate) usage_client_auth: bool,
    pub(crate) not_before: Option<u64>,
    pub(crate) not_after: Option<u64>,
    pub(crate) with_app_info: bool,
}

fn kms_response(msg: String) -> AgentFailure {
    AgentFailure(Error::BadKmsResponse(msg))
}

/// Issue a certificate chain for `key` (a fresh P-256 key when `None`).
pub(crate) async fn issue(
    s: &Arc<GuestState>,
    o: TlsKeyOptions,
    key: Option<KeyPair>,
) -> Result<GetTlsKeyResponse, AgentFailure> {
    if o.alt_names.len() > MAX_ALT_NAMES || o.subject.len() > MAX_SUBJECT_LEN {
        return Err(bad(format!(
            "at most {MAX_ALT_NAMES} alt names and a {MAX_SUBJECT_LEN}-byte subject"
        )));
    }
    if let (Some(nb), Some(na)) = (o.not_before, o.not_after) {
        if na <= nb {
            return Err(bad(format!(
                "not_after ({na}) must be later than not_before ({nb})"
            )));
        }
    }
    let s2 = s.clone();
    let o2 = o.clone();
    let (client_cert, csr_der) = blocking(move || {
        let gen = |e: rcgen::Error| Error::BadRequest(format!("certificate request: {e}"));
        let subject = if o2.subject.is_empty() {
            s2.compose.name.clone()
        } else {
            o2.subject.clone()
        };
        // The key's own RA-TLS certificate: its quote binds the key, and it is the client
        // certificate of the sign-cert call (the KMS requires the CSR key to be the
        // attested client key).
        let cert = {
            let log = s2.event_log();
            let mut builder = RaTlsCertBuilder::new(Usage::AppCustom)
                .common_name(subject.clone())
                .alt_names(o2.alt_names.clone())
                .event_log(&log.to_json())
                .app_id(s2.app_id.0);
            if let Some(key) = key {
                builder = builder.key_pair(key);
            }
            builder.build(s2.tee.as_ref())?
        };
        let key = cert.key_pair()?;
        let mut params = CertificateParams::new(o2.alt_names.clone()).map_err(gen)?;
        params.distinguished_name.push(DnType::CommonName, subject);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if o2.usage_server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if o2.usage_client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        let csr = params.serialize_request(&key).map_err(gen)?;
        Ok((cert, csr.der().to_vec()))
    })
    .await?;
    // The root the guest booted with (checked then to have issued the KMS's TLS cert).
    let root = cairn_attestation::RootCa::from_pem(&s.secrets.root_ca_cert)
        .map_err(|e| AgentFailure(Error::RootCa(e)))?;
    let request = SignCertRequest {
        csr: csr_der,
        not_before: o.not_before,
        not_after: o.not_after,
    };
    let resp = s
        .kms
        .sign_cert(
            &s.secrets.kms_url,
            &client_cert,
            request,
            &root,
            &s.app_id.0,
        )
        .await
        .map_err(|e| AgentFailure(Error::Kms(e)))?;
    let leaf = resp
        .certificate_chain
        .first()
        .ok_or_else(|| kms_response("empty certificate chain".to_owned()))?;
    check_leaf(s, &o, leaf)?;
    let key_pem = client_cert
        .key_pair()
        .map_err(|e| AgentFailure(Error::RaTls(e)))?
        .serialize_pem();
    Ok(GetTlsKeyResponse {
        key: key_pem,
        certificate_chain: resp.certificate_chain,
    })
}

/// The KMS-issued leaf has what the caller asked for, or the key is not handed out.
fn check_leaf(s: &GuestState, o: &TlsKeyOptions, leaf_pem: &str) -> Result<(), AgentFailure> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes())
        .map_err(|e| kms_response(format!("leaf PEM: {e}")))?;
    if o.usage_ra_tls {
        if let Err(e) = cairn_attestation::parse_ra_tls_extensions(&pem.contents) {
            return Err(kms_response(format!(
                "usage_ra_tls was requested but the KMS-issued leaf carries no RA-TLS evidence ({e})"
            )));
        }
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
        .map_err(|e| kms_response(format!("leaf: {e}")))?;
    if o.with_app_info {
        {
            let app_id = leaf_app_id(&cert);
            if app_id != Some(s.app_id.0) {
                return Err(kms_response(format!(
                    "with_app_info was requested but the KMS-issued leaf carries app id {}, not {}",
                    app_id.map(hex::encode).unwrap_or_else(|| "none".to_owned()),
                    hex::encode(s.app_id.0)
                )));
            }
        }
    }
    if o.not_before.is_some() || o.not_after.is_some() {
        let validity = cert.validity();
        let check = |what: &str, asked: Option<u64>, got: i64| match asked {
            Some(t) if i64::try_from(t).ok() != Some(got) => Err(kms_response(format!(
                "{what} {t} was requested but the KMS-issued leaf has {got}"
            ))),
            _ => Ok(()),
        };
        check("not_before", o.not_before, validity.not_before.timestamp())?;
        check("not_after", o.not_after, validity.not_after.timestamp())?;
    }
    Ok(())
}

/// The app id extension (`…62397.1.3`, an OCTET STRING of 20 bytes) of a certificate.
fn leaf_app_id(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<[u8; 20]> {
    let oid = cairn_attestation::ratls_consts::OID_APP_ID;
    let ext = cert.extensions().iter().find(|e| {
        e.oid
            .iter()
            .is_some_and(|arcs| arcs.eq(oid.iter().copied()))
    })?;
    match ext.value {
        [0x04, 20, rest @ ..] => <[u8; 20]>::try_from(rest).ok(),
        _ => None,
    }
}
