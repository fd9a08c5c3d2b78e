//! Collateral: loading (file, JSON, in memory), its validity window and version. The
//! PCCS client that fetches it is `pccs`.

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::consts::MAX_COLLATERAL_LEN;
use crate::error::{check_len, Error, Result};

/// Verification collateral with its validity window and a version fingerprint.
///
/// The window is the intersection of: TCB Info and QE Identity `issueDate`..`nextUpdate`,
/// both CRLs' `nextUpdate`, and the validity of every certificate in the PCK CRL, TCB
/// Info and QE Identity issuer chains. The version is SHA-256 over every field, so replaced
/// collateral always has a different version.
#[derive(Clone, Debug)]
pub struct Collateral {
    inner: QuoteCollateralV3,
    version: [u8; 32],
    not_before: u64,
    not_after: u64,
}

#[derive(Deserialize)]
struct Dates {
    #[serde(rename = "issueDate")]
    issue_date: String,
    #[serde(rename = "nextUpdate")]
    next_update: String,
}

fn malformed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::MalformedCollateral(format!("{what}: {e}"))
}

fn rfc3339_unix(s: &str, what: &str) -> Result<u64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| malformed(what, e))?;
    u64::try_from(t.unix_timestamp()).map_err(|e| malformed(what, e))
}

fn x509_time(t: x509_parser::time::ASN1Time) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

impl Collateral {
    /// Wrap dcap-qvl collateral, computing its window and version.
    pub fn new(inner: QuoteCollateralV3) -> Result<Self> {
        let mut not_before = 0u64;
        let mut not_after = u64::MAX;
        let mut window = |nb: u64, na: u64| {
            not_before = not_before.max(nb);
            not_after = not_after.min(na);
        };
        for (json, what) in [
            (&inner.tcb_info, "TCB Info"),
            (&inner.qe_identity, "QE Identity"),
        ] {
            check_len("collateral JSON", json.len(), MAX_COLLATERAL_LEN)?;
            let d: Dates = serde_json::from_str(json).map_err(|e| malformed(what, e))?;
            window(
                rfc3339_unix(&d.issue_date, what)?,
                rfc3339_unix(&d.next_update, what)?,
            );
        }
        for (der, what) in [
            (&inner.root_ca_crl, "root CA CRL"),
            (&inner.pck_crl, "PCK CRL"),
        ] {
            let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| malformed(what, e))?;
            let next = crl
                .next_update()
                .ok_or_else(|| malformed(what, "no nextUpdate"))?;
            window(0, x509_time(next));
        }
        for (pem, what) in [
            (&inner.pck_crl_issuer_chain, "PCK CRL issuer chain"),
            (&inner.tcb_info_issuer_chain, "TCB Info issuer chain"),
            (&inner.qe_identity_issuer_chain, "QE Identity issuer chain"),
        ] {
            let mut n = 0;
            for p in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
                let p = p.map_err(|e| malformed(what, e))?;
                let cert = p.parse_x509().map_err(|e| malformed(what, e))?;
                let v = cert.validity();
                window(x509_time(v.not_before), x509_time(v.not_after));
                n += 1;
            }
            if n == 0 {
                return Err(malformed(what, "no certificate"));
            }
        }
        let version = fingerprint(&inner);
        Ok(Collateral {
            inner,
            version,
            not_before,
            not_after,
        })
    }

    /// Parse collateral JSON in dcap-qvl's `QuoteCollateralV3` shape (byte fields as hex),
    /// bounded by [`MAX_COLLATERAL_LEN`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        check_len("collateral", bytes.len(), MAX_COLLATERAL_LEN)?;
        let inner: QuoteCollateralV3 =
            serde_json::from_slice(bytes).map_err(|e| malformed("collateral JSON", e))?;
        Self::new(inner)
    }

    /// Read [`Self::from_json`] from a file (size checked before reading).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_COLLATERAL_LEN as u64 {
            return Err(Error::TooLarge {
                what: "collateral file",
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max: MAX_COLLATERAL_LEN,
            });
        }
        Self::from_json(&std::fs::read(path).map_err(io)?)
    }

    /// Serialise as dcap-qvl's collateral JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.inner).unwrap_or_default()
    }

    /// The dcap-qvl collateral.
    pub fn inner(&self) -> &QuoteCollateralV3 {
        &self.inner
    }

    /// SHA-256 fingerprint of every field.
    pub fn version(&self) -> [u8; 32] {
        self.version
    }

    /// Earliest time (unix seconds) this collateral is valid.
    pub fn not_before(&self) -> u64 {
        self.not_before
    }

    /// Latest time (unix seconds) this collateral is valid; `now` must be strictly less
    /// than this (CRLs expire at `nextUpdate`).
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// Whether `now` is inside the validity window.
    pub fn is_valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// `Ok` if valid at `now`, else [`Error::CollateralExpired`].
    pub fn check_valid_at(&self, now: u64) -> Result<()> {
        if self.is_valid_at(now) {
            Ok(())
        } else {
            Err(Error::CollateralExpired {
                now,
                not_before: self.not_before,
                not_after: self.not_after,
            })
        }
    }
}

impl Collateral {
    /// Estimated memory it holds: the struct plus every field's bytes (for cache budgets).
    pub(crate) fn estimated_bytes(&self) -> usize {
        let c = &self.inner;
        std::mem::size_of::<Self>()
            + c.pck_crl_issuer_chain.len()
            + c.root_ca_crl.len()
            + c.pck_crl.len()
            + c.tcb_info_issuer_chain.len()
            + c.tcb_info.len()
            + c.tcb_info_signature.len()
            + c.qe_identity_issuer_chain.len()
            + c.qe_identity.len()
            + c.qe_identity_signature.len()
            + c.pck_certificate_chain.as_ref().map_or(0, String::len)
    }
}

fn fingerprint(c: &QuoteCollateralV3) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(c.pck_crl_issuer_chain.as_bytes());
    field(&c.root_ca_crl);
    field(&c.pck_crl);
    field(c.tcb_info_issuer_chain.as_bytes());
    field(c.tcb_info.as_bytes());
    field(&c.tcb_info_signature);
    field(c.qe_identity_issuer_chain.as_bytes());
    field(c.qe_identity.as_bytes());
    field(&c.qe_identity_signature);
    match &c.pck_certificate_chain {
        Some(chain) => field(chain.as_bytes()),
        None => field(b"\xff-none"),
    }
    h.finalize().into()
}

/// Percent-decode an HTTP header value (PCS issuer-chain headers are URL-encoded).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding_round_trips_pem() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIC+/=\n-----END CERTIFICATE-----\n";
        let enc = percent_encode(pem);
        assert!(!enc.contains('\n'));
        assert_eq!(percent_decode(&enc).as_deref(), Some(pem));
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn window_includes_the_pck_crl_issuer_chain() {
        let now = 1_790_000_000;
        let pki =
            crate::simulator::SimPki::new(crate::simulator::SimPkiConfig::new([7u8; 32], now))
                .unwrap();
        let mut inner = pki.collateral();
        let base = Collateral::new(inner.clone()).unwrap().not_after();
        // A PCK CRL issuer chain whose certificate expires before everything else.
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(now as i64 - 10).unwrap();
        let short = now as i64 + 3600;
        p.not_after = time::OffsetDateTime::from_unix_timestamp(short).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        inner.pck_crl_issuer_chain = p.self_signed(&key).unwrap().pem();
        let c = Collateral::new(inner).unwrap();
        assert!(base > short as u64);
        assert_eq!(c.not_after(), short as u64);
    }
}
