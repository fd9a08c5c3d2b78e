//! Certificates the node issues: its own RA-TLS server certificate (usage `kms:rpc`,
//! issued by the root CA) and `sign-cert` leaves (issued by the app CA for the attested
//! key). Leaf validity is judged by the node's clock, passed in as `now`.

use std::time::Duration;

use cairn_attestation::{
    ra_tls_extensions, ExtensionValues, RaTlsCert, RaTlsCertBuilder, Tee, Usage,
};
use cairn_protocol::api::SignCertRequest;
use rcgen::PublicKeyData as _;

use crate::error::{Error, Result};
use crate::evidence::Attested;
use crate::keys::{AppKeys, RootKeys};
use crate::reject::{ApiError, Check};

/// Validity of a leaf certificate issued by `sign-cert`.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Most subject alternative names a CSR may ask for.
pub const MAX_CSR_ALT_NAMES: usize = 32;
/// How long before the node's "now" a leaf's `notBefore` lies (clock skew).
const LEAF_BACKDATE: time::Duration = time::Duration::minutes(5);

/// The node's own RA-TLS certificate (usage `kms:rpc`), issued by the root CA at `now`
/// (the node's clock: valid from five minutes before it).
pub(crate) fn own_cert(
    tee: &dyn Tee,
    event_log: &[u8],
    issuer: &RootKeys,
    now: u64,
) -> Result<RaTlsCert> {
    Ok(RaTlsCertBuilder::new(Usage::KmsRpc)
        .common_name("Cairn KMS")
        .event_log(event_log)
        .issued_at(now)
        .build_signed_by(tee, &issuer.ca().issuer())?)
}

/// Parse `csr_der` and check its binding to the attested caller `a`: the CSR's whole
/// SubjectPublicKeyInfo is the attested certificate's, and it asks for at most
/// [`MAX_CSR_ALT_NAMES`] SANs. Any failure is a [`Check::Csr`] denial.
pub(super) fn bound_csr(
    csr_der: &[u8],
    a: &Attested,
) -> Result<rcgen::CertificateSigningRequestParams, ApiError> {
    let der = rustls_pki_types::CertificateSigningRequestDer::from(csr_der);
    let csr = rcgen::CertificateSigningRequestParams::from_der(&der)
        .map_err(|e| ApiError::denied(Check::Csr, format!("CSR rejected: {e}")))?;
    // The whole SubjectPublicKeyInfo (algorithm and parameters, not only the key
    // bits) must be the attested certificate's.
    if csr.public_key.subject_public_key_info() != a.spki_der {
        return Err(ApiError::denied(
            Check::Csr,
            "the CSR key is not the key of the attested client certificate",
        ));
    }
    if csr.params.subject_alt_names.len() > MAX_CSR_ALT_NAMES {
        return Err(ApiError::denied(
            Check::Csr,
            format!("CSR asks for more than {MAX_CSR_ALT_NAMES} alt names"),
        ));
    }
    Ok(csr)
}

/// The validity of a sign-cert leaf issued at `now` (seconds since the Unix epoch): the
/// requested bounds (guest agent `GetTlsKey` `not_before`/`not_after`), by default from
/// five minutes before `now` to [`LEAF_VALIDITY`] after it. A notAfter beyond that, or
/// not after the notBefore, is denied ([`Check::Csr`]).
pub(super) fn requested_window(
    now: u64,
    req: &SignCertRequest,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), ApiError> {
    let (default_nb, latest) = leaf_window(now)?;
    let at = |what: &str, secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| ApiError::denied(Check::Csr, format!("{what} {secs} is out of range")))
    };
    let not_before = match req.not_before {
        Some(secs) => at("not_before", secs)?,
        None => default_nb,
    };
    let not_after = match req.not_after {
        Some(secs) => at("not_after", secs)?,
        None => latest,
    };
    if not_after > latest {
        return Err(ApiError::denied(
            Check::Csr,
            format!(
                "not_after {} is later than this KMS issues leaves for ({} s from now)",
                not_after.unix_timestamp(),
                LEAF_VALIDITY.as_secs()
            ),
        ));
    }
    if not_after <= not_before {
        return Err(ApiError::denied(
            Check::Csr,
            format!(
                "not_after {} is not later than not_before {}",
                not_after.unix_timestamp(),
                not_before.unix_timestamp()
            ),
        ));
    }
    Ok((not_before, not_after))
}

/// The leaf for a checked CSR: the CSR's subject and SANs, usage `app:custom`, the
/// caller's evidence and app id, serverAuth + clientAuth, valid for `window` (from
/// [`requested_window`]), a random serial; issued by the app CA in `keys`.
pub(super) fn app_leaf(
    csr: &rcgen::CertificateSigningRequestParams,
    a: &Attested,
    keys: &AppKeys,
    window: (time::OffsetDateTime, time::OffsetDateTime),
) -> Result<rcgen::Certificate> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = csr.params.distinguished_name.clone();
    params.subject_alt_names = csr.params.subject_alt_names.clone();
    let (not_before, not_after) = window;
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let serial: [u8; 16] = rand_serial();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    // The caller's RA-TLS evidence binds this same key (checked above), so the leaf
    // is itself a valid RA-TLS certificate, issued by the app CA.
    params.custom_extensions = ra_tls_extensions(ExtensionValues {
        quote: Some(&a.raw_quote),
        event_log: Some(&a.event_log),
        app_id: Some(&a.quote.app_id().0),
        usage: Some(Usage::AppCustom),
    });
    Ok(params.signed_by(&csr.public_key, &keys.ca().issuer())?)
}

/// `(notBefore, notAfter)` of a leaf issued at `now`.
fn leaf_window(now: u64) -> Result<(time::OffsetDateTime, time::OffsetDateTime)> {
    let out_of_range = || Error::ClockOutOfRange { now };
    let now_odt = i64::try_from(now)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(out_of_range)?;
    let validity = time::Duration::try_from(LEAF_VALIDITY).map_err(|_| out_of_range())?;
    let not_before = now_odt
        .checked_sub(LEAF_BACKDATE)
        .ok_or_else(out_of_range)?;
    let not_after = now_odt.checked_add(validity).ok_or_else(out_of_range)?;
    Ok((not_before, not_after))
}

fn rand_serial() -> [u8; 16] {
    use rand_core::RngCore as _;
    let mut s = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut s);
    s[0] &= 0x7f; // positive INTEGER
    s[0] |= 0x01; // and minimal (no leading zero octet)
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_window_is_now_minus_five_minutes_to_now_plus_the_validity() {
        let now = 1_700_000_000u64;
        let (nb, na) = leaf_window(now).unwrap();
        assert_eq!(nb.unix_timestamp(), 1_700_000_000 - 300);
        assert_eq!(
            na.unix_timestamp(),
            1_700_000_000 + i64::try_from(LEAF_VALIDITY.as_secs()).unwrap()
        );
    }

    #[test]
    fn a_clock_beyond_the_certificate_date_range_is_a_typed_error() {
        assert!(matches!(
            leaf_window(u64::MAX),
            Err(Error::ClockOutOfRange { now: u64::MAX })
        ));
        // Representable as a timestamp, but not once the validity is added.
        let last =
            u64::try_from(time::PrimitiveDateTime::MAX.assume_utc().unix_timestamp()).unwrap();
        assert!(matches!(
            leaf_window(last),
            Err(Error::ClockOutOfRange { .. })
        ));
    }

    #[test]
    fn serials_are_positive_minimal_and_random() {
        let a = rand_serial();
        let b = rand_serial();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s[0] & 0x80, 0);
            assert_ne!(s[0], 0);
        }
    }
}
