//! The quote's PCK certificate chain: the platform it names, and the check that it
//! verifies to the trust root *before* anything is fetched for that platform.
//!
//! A quote's FMSPC and PCK CA come from its PCK leaf certificate. Until the chain is
//! checked they are whatever the sender wrote, so [`crate::PccsClient`] contacts a PCCS
//! only for a chain that passes [`verify_pck_chain`]: leaf → PCK platform/processor CA →
//! the configured root, with ECDSA P-256/SHA-256 signatures, CA basic constraints and
//! validity at `now` (rustls-webpki path building, the same path validation dcap-qvl runs
//! later). Revocation is not checked here: the CRLs are part of the collateral being
//! fetched, and dcap-qvl checks them when it verifies the quote.

use dcap_qvl::quote::Quote;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::error::{check_len, Error, Result};

/// Most certificates accepted in a quote's PCK chain (Intel's is leaf, PCK CA, root).
pub const MAX_PCK_CHAIN_CERTS: usize = 5;

/// The platform a quote's PCK leaf names: what collateral is fetched for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Platform {
    /// FMSPC from the leaf's SGX extension.
    pub(crate) fmspc: [u8; 6],
    /// PCK CA (`"platform"` or `"processor"`) from the leaf's issuer.
    pub(crate) ca: &'static str,
    /// An SGX quote (collateral from the `sgx` paths) rather than TDX.
    pub(crate) for_sgx: bool,
}

/// The quote's PCK chain (DER, leaf first), bounded by [`MAX_PCK_CHAIN_CERTS`].
pub(crate) fn pck_chain(quote: &Quote) -> Result<Vec<Vec<u8>>> {
    let chain = dcap_qvl::intel::extract_cert_chain(quote)
        .map_err(|e| Error::MalformedQuote(format!("PCK certificate chain: {e:#}")))?;
    if chain.is_empty() {
        return Err(Error::MalformedQuote(
            "PCK certificate chain: no certificate".into(),
        ));
    }
    check_len(
        "PCK certificate chain (certificates)",
        chain.len(),
        MAX_PCK_CHAIN_CERTS,
    )?;
    Ok(chain)
}

/// The platform the leaf of `chain` claims, **without** checking any signature: use it
/// only as a lookup key, never as a reason to fetch.
pub(crate) fn claimed_platform(quote: &Quote, chain: &[Vec<u8>]) -> Result<Platform> {
    let leaf = chain
        .first()
        .ok_or_else(|| Error::MalformedQuote("PCK certificate chain: no certificate".into()))?;
    let fmspc = dcap_qvl::intel::parse_pck_extension(leaf)
        .map_err(|e| Error::MalformedQuote(format!("PCK certificate: {e:#}")))?
        .fmspc;
    let ca = dcap_qvl::intel::pck_ca(leaf)
        .map_err(|e| Error::MalformedQuote(format!("PCK certificate: {e:#}")))?
        .as_id_str();
    Ok(Platform {
        fmspc,
        ca,
        for_sgx: quote.header.is_sgx(),
    })
}

/// Check that `chain` (leaf first) is a path from its leaf to the root certificate
/// `root_der`, valid at `now` (unix seconds). Every failure is
/// [`Error::UntrustedPckChain`] with rustls-webpki's reason.
pub(crate) fn verify_pck_chain(chain: &[Vec<u8>], root_der: &[u8], now: u64) -> Result<()> {
    let untrusted = |source| Error::UntrustedPckChain { source };
    let leaf_der = chain
        .first()
        .map(|d| CertificateDer::from(d.as_slice()))
        .ok_or_else(|| Error::MalformedQuote("PCK certificate chain: no certificate".into()))?;
    let leaf = webpki::EndEntityCert::try_from(&leaf_der).map_err(untrusted)?;
    let root = CertificateDer::from(root_der);
    let anchors = [webpki::anchor_from_trusted_cert(&root).map_err(untrusted)?];
    let intermediates: Vec<CertificateDer<'_>> = chain
        .iter()
        .skip(1)
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now));
    leaf.verify_for_usage(
        &[webpki::ring::ECDSA_P256_SHA256],
        &anchors,
        &intermediates,
        time,
        // Intel's PCK leaves carry no extended key usage; server_auth accepts that (it
        // checks the EKU only when present).
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(untrusted)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn intel_pck_chains_of_the_fixtures_verify_to_intels_root() {
        // Each at the fixed time its collateral is verified at (tests/fixtures/README.md).
        for (name, now, sgx) in [
            ("tdx_quote", 1_750_400_000, false),
            ("tdx_quote_outdated", 1_772_323_200, false),
            ("tdx_quote_td15ex", 1_791_500_000, false),
            ("sgx_quote", 1_750_400_000, true),
        ] {
            let quote = fixture(name);
            let parsed = Quote::parse(&quote).unwrap();
            let chain = pck_chain(&parsed).unwrap();
            verify_pck_chain(&chain, crate::consts::INTEL_ROOT_CA_DER, now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let p = claimed_platform(&parsed, &chain).unwrap();
            assert_eq!(p.for_sgx, sgx, "{name}");
            assert!(matches!(p.ca, "platform" | "processor"), "{name}");
        }
    }

    #[test]
    fn an_intel_chain_is_refused_outside_its_validity() {
        let quote = fixture("tdx_quote");
        let chain = pck_chain(&Quote::parse(&quote).unwrap()).unwrap();
        // 2100-01-01: every certificate of the chain has expired.
        let err =
            verify_pck_chain(&chain, crate::consts::INTEL_ROOT_CA_DER, 4_102_444_800).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UntrustedPckChain {
                    source: webpki::Error::CertExpired { .. }
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_intel_chain_does_not_verify_to_another_root() {
        let quote = fixture("tdx_quote");
        let chain = pck_chain(&Quote::parse(&quote).unwrap()).unwrap();
        let pki = crate::simulator::SimPki::new(crate::simulator::SimPkiConfig::new(
            [7u8; 32],
            1_750_400_000,
        ))
        .unwrap();
        let err = verify_pck_chain(&chain, pki.root_ca_der(), 1_750_400_000).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UntrustedPckChain {
                    source: webpki::Error::UnknownIssuer
                }
            ),
            "{err}"
        );
    }
}
