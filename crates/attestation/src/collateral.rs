//! Collateral: loading (file, JSON, in memory), its validity window and version, and a
//! PCCS client (Intel PCS v4 API) with a cache keyed by FMSPC and CA that honours
//! `nextUpdate`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::consts::{INTEL_ROOT_CA_DER, MAX_COLLATERAL_LEN, MAX_QUOTE_LEN};
use crate::error::{Error, Result};

/// Timeout for connecting to a PCCS.
pub const DEFAULT_PCCS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout for a whole PCCS request.
pub const DEFAULT_PCCS_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

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
            if json.len() > MAX_COLLATERAL_LEN {
                return Err(Error::TooLarge {
                    what: "collateral JSON",
                    len: json.len(),
                    max: MAX_COLLATERAL_LEN,
                });
            }
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
        if bytes.len() > MAX_COLLATERAL_LEN {
            return Err(Error::TooLarge {
                what: "collateral",
                len: bytes.len(),
                max: MAX_COLLATERAL_LEN,
            });
        }
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

#[derive(Deserialize)]
struct TcbInfoResponse<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct QeIdentityResponse<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

/// The cache key: FMSPC and PCK CA.
type CacheKey = ([u8; 6], &'static str);

/// A failed fetch, remembered for [`PccsClient::FAILURE_CACHE_SECS`].
struct Failure {
    at: u64,
    error: Error,
}

/// A copy of a fetch error (the variants [`PccsClient`] fetches produce; others as text).
fn replay_error(e: &Error) -> Error {
    match e {
        Error::CollateralFetch { url, reason } => Error::CollateralFetch {
            url: url.clone(),
            reason: reason.clone(),
        },
        Error::MalformedCollateral(m) => Error::MalformedCollateral(m.clone()),
        Error::TooLarge { what, len, max } => Error::TooLarge {
            what,
            len: *len,
            max: *max,
        },
        other => Error::MalformedCollateral(other.to_string()),
    }
}

/// A PCCS / Intel PCS v4 client that caches collateral per (FMSPC, CA) until it expires.
///
/// TCB Info and QE Identity are kept as the exact bytes the server sent (they are what
/// Intel signed), never re-serialised.
pub struct PccsClient {
    base_url: String,
    http: reqwest::Client,
    cache: Mutex<HashMap<CacheKey, Arc<Collateral>>>,
    failures: Mutex<HashMap<CacheKey, Failure>>,
}

impl std::fmt::Debug for PccsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PccsClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl PccsClient {
    /// A client for `base_url` (e.g. `https://pccs.example:8081` or
    /// `https://api.trustedservices.intel.com`) with the default timeouts. Installs ring as
    /// the process-wide rustls provider if none is installed yet.
    pub fn new(base_url: &str) -> Result<Self> {
        // Err only means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(DEFAULT_PCCS_CONNECT_TIMEOUT)
            .timeout(DEFAULT_PCCS_REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::CollateralFetch {
                url: base_url.to_owned(),
                reason: e.to_string(),
            })?;
        let base_url = base_url
            .trim_end_matches('/')
            .trim_end_matches("/sgx/certification/v4")
            .trim_end_matches("/tdx/certification/v4")
            .to_owned();
        Ok(PccsClient {
            base_url,
            http,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// How long (seconds of the caller's `now`) a failed fetch for an (FMSPC, CA) is
    /// remembered: within it the same error is returned without contacting the PCCS, so
    /// quotes from unauthenticated peers cannot drive repeated outbound fetches.
    pub const FAILURE_CACHE_SECS: u64 = 30;

    /// Collateral for the platform that produced `quote`, from the cache when it is still
    /// valid at `now`, else freshly fetched. When the PCCS has no root CA CRL, it is taken
    /// from the CRL distribution point of Intel's SGX root CA.
    pub async fn collateral_for_quote(&self, quote: &[u8], now: u64) -> Result<Arc<Collateral>> {
        self.collateral_for_quote_rooted(quote, INTEL_ROOT_CA_DER, now)
            .await
    }

    /// [`Self::collateral_for_quote`] with the verifier's trust root, whose CRL
    /// distribution point is the fallback for the root CA CRL.
    pub(crate) async fn collateral_for_quote_rooted(
        &self,
        quote: &[u8],
        root_der: &[u8],
        now: u64,
    ) -> Result<Arc<Collateral>> {
        if quote.len() > MAX_QUOTE_LEN {
            return Err(Error::TooLarge {
                what: "quote",
                len: quote.len(),
                max: MAX_QUOTE_LEN,
            });
        }
        let parsed = dcap_qvl::quote::Quote::parse(quote)
            .map_err(|e| Error::MalformedQuote(format!("{e:#}")))?;
        let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
            .map_err(|e| Error::MalformedQuote(format!("PCK certificate: {e:#}")))?;
        let ca = dcap_qvl::intel::quote_ca(&parsed)
            .map_err(|e| Error::MalformedQuote(format!("PCK certificate: {e:#}")))?
            .as_id_str();
        let for_sgx = parsed.header.is_sgx();
        self.collateral_for_rooted(fmspc, ca, for_sgx, root_der, now)
            .await
    }

    /// Collateral for `fmspc` under PCK CA `ca` (`"platform"` or `"processor"`); the root
    /// CA CRL fallback is Intel's SGX root CA's distribution point.
    pub async fn collateral_for(
        &self,
        fmspc: [u8; 6],
        ca: &'static str,
        for_sgx: bool,
        now: u64,
    ) -> Result<Arc<Collateral>> {
        self.collateral_for_rooted(fmspc, ca, for_sgx, INTEL_ROOT_CA_DER, now)
            .await
    }

    async fn collateral_for_rooted(
        &self,
        fmspc: [u8; 6],
        ca: &'static str,
        for_sgx: bool,
        root_der: &[u8],
        now: u64,
    ) -> Result<Arc<Collateral>> {
        let key = (fmspc, ca);
        if let Some(c) = self.lock().get(&key) {
            if c.is_valid_at(now) {
                return Ok(Arc::clone(c));
            }
        }
        {
            let mut failures = self.lock_failures();
            if let Some(f) = failures.get(&key) {
                if f.at <= now && now < f.at.saturating_add(Self::FAILURE_CACHE_SECS) {
                    return Err(replay_error(&f.error));
                }
                failures.remove(&key);
            }
        }
        let fetched = match self.fetch(fmspc, ca, for_sgx, root_der).await {
            Ok(c) => Arc::new(c),
            Err(error) => {
                tracing::debug!(fmspc = %hex::encode(fmspc), ca, %error, "collateral fetch failed");
                let copy = replay_error(&error);
                self.lock_failures().insert(key, Failure { at: now, error });
                return Err(copy);
            }
        };
        tracing::debug!(
            fmspc = %hex::encode(fmspc),
            ca,
            not_after = fetched.not_after(),
            "fetched collateral"
        );
        self.lock().insert(key, Arc::clone(&fetched));
        Ok(fetched)
    }

    /// Drop every cached collateral and remembered fetch failure.
    pub fn clear_cache(&self) {
        self.lock().clear();
        self.lock_failures().clear();
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Failure>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Collateral>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn get(&self, url: &str) -> Result<(reqwest::header::HeaderMap, Vec<u8>)> {
        let fail = |reason: String| Error::CollateralFetch {
            url: url.to_owned(),
            reason,
        };
        let mut resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_COLLATERAL_LEN as u64)
        {
            return Err(fail("response too large".into()));
        }
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            if body.len() + chunk.len() > MAX_COLLATERAL_LEN {
                return Err(fail("response too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((headers, body))
    }

    fn header(url: &str, headers: &reqwest::header::HeaderMap, names: &[&str]) -> Result<String> {
        for name in names {
            if let Some(v) = headers.get(*name) {
                let v = v.to_str().map_err(|e| Error::CollateralFetch {
                    url: url.to_owned(),
                    reason: format!("{name}: {e}"),
                })?;
                return percent_decode(v).ok_or_else(|| Error::CollateralFetch {
                    url: url.to_owned(),
                    reason: format!("{name}: bad percent-encoding"),
                });
            }
        }
        Err(Error::CollateralFetch {
            url: url.to_owned(),
            reason: format!("missing header {}", names.join(" / ")),
        })
    }

    async fn fetch(
        &self,
        fmspc: [u8; 6],
        ca: &str,
        for_sgx: bool,
        root_der: &[u8],
    ) -> Result<Collateral> {
        let tee = if for_sgx { "sgx" } else { "tdx" };
        let base = &self.base_url;
        let bad = |url: &str, reason: String| Error::CollateralFetch {
            url: url.to_owned(),
            reason,
        };

        let url = format!("{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der");
        let (h, pck_crl) = self.get(&url).await?;
        let pck_crl_issuer_chain = Self::header(&url, &h, &["SGX-PCK-CRL-Issuer-Chain"])?;

        let url = format!(
            "{base}/{tee}/certification/v4/tcb?fmspc={}",
            hex::encode_upper(fmspc)
        );
        let (h, body) = self.get(&url).await?;
        let tcb_info_issuer_chain = Self::header(
            &url,
            &h,
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        )?;
        let r: TcbInfoResponse<'_> =
            serde_json::from_slice(&body).map_err(|e| bad(&url, e.to_string()))?;
        let tcb_info = r.tcb_info.get().to_owned();
        let tcb_info_signature = hex::decode(&r.signature).map_err(|e| bad(&url, e.to_string()))?;

        let url = format!("{base}/{tee}/certification/v4/qe/identity");
        let (h, body) = self.get(&url).await?;
        let qe_identity_issuer_chain =
            Self::header(&url, &h, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let r: QeIdentityResponse<'_> =
            serde_json::from_slice(&body).map_err(|e| bad(&url, e.to_string()))?;
        let qe_identity = r.enclave_identity.get().to_owned();
        let qe_identity_signature =
            hex::decode(&r.signature).map_err(|e| bad(&url, e.to_string()))?;

        // A PCCS serves the root CA CRL at `rootcacrl`, hex-encoded. Intel's PCS does not:
        // there it is at the CRL distribution point of the root certificate (DER). That URL
        // comes from the configured trust root, never from a chain the server sent.
        let url = format!("{base}/sgx/certification/v4/rootcacrl");
        let body = match self.get(&url).await {
            Ok((_, body)) => body,
            Err(first) => match crl_distribution_point(root_der) {
                Some(dp) => self.get(&dp).await?.1,
                None => {
                    return Err(Error::CollateralFetch {
                        url,
                        reason: format!(
                            "{first}; no fallback: the configured trust root certificate has \
                             no CRL distribution point"
                        ),
                    })
                }
            },
        };
        let root_ca_crl = match std::str::from_utf8(&body)
            .ok()
            .and_then(|s| hex::decode(s.trim()).ok())
        {
            Some(der) => der,
            None => body,
        };

        Collateral::new(QuoteCollateralV3 {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        })
    }
}

/// The first URI CRL distribution point of a DER certificate (the trust root).
fn crl_distribution_point(cert_der: &[u8]) -> Option<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name {
                            return Some((*uri).to_owned());
                        }
                    }
                }
            }
        }
    }
    None
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
    fn intel_root_crl_distribution_point_comes_from_the_configured_root() {
        let dp = crl_distribution_point(INTEL_ROOT_CA_DER).unwrap();
        assert!(
            dp.starts_with("https://") && dp.contains("IntelSGXRootCA"),
            "{dp}"
        );
    }

    #[test]
    fn simulator_root_has_no_crl_distribution_point() {
        let pki = crate::simulator::SimPki::new(crate::simulator::SimPkiConfig::new(
            [7u8; 32],
            1_790_000_000,
        ))
        .unwrap();
        assert_eq!(crl_distribution_point(pki.root_ca_der()), None);
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
