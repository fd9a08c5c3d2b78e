//! The collateral fetch itself: PCK CRL, TCB Info, QE Identity and root CA CRL from the
//! Intel PCS v4 paths, each body bounded by [`MAX_COLLATERAL_LEN`].

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::PccsClient;
use crate::collateral::{percent_decode, Collateral};
use crate::consts::MAX_COLLATERAL_LEN;
use crate::error::{Error, Result};
use crate::pck::Platform;

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

impl PccsClient {
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

    pub(super) async fn fetch(&self, platform: Platform, root_der: &[u8]) -> Result<Collateral> {
        let Platform { fmspc, ca, for_sgx } = platform;
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
    use crate::consts::INTEL_ROOT_CA_DER;

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
}
