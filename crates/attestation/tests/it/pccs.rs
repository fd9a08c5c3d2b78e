//! The simulator serves its collateral like a PCCS; the verifier fetches it over HTTP
//! (loopback, port 0) and caches it per FMSPC/CA until nextUpdate.

use std::sync::Arc;

use cairn_attestation::simulator::{SimPccs, SimPki, SimPkiConfig};
use cairn_attestation::testing::ServedPccs;
use cairn_attestation::{Error, PccsClient};
use tokio::net::TcpListener;

use crate::common::*;

#[tokio::test]
async fn verifier_fetches_collateral_from_the_simulated_pccs_and_caches_it() {
    let pki = pki();
    let pccs = SimPccs::new(Arc::clone(&pki));
    let served = ServedPccs::start(pccs.clone()).await;
    let url = served.url();
    let client = PccsClient::new(url).unwrap();
    let ev = evidence();
    let v = cairn_attestation::Verifier::dangerous_with_simulator_root(pki.root_ca_der());

    let q = v
        .verify_with_pccs(&client, &ev.quote, &ev.log, &rd(1), NOW)
        .await
        .expect("verifies with fetched collateral");
    assert_eq!(q.tcb_status(), "UpToDate");
    assert_eq!(pccs.requests(), 4, "pckcrl, tcb, qe identity, root crl");

    // The fetched collateral is byte-identical to the PKI's.
    let fetched = client
        .collateral_for_quote(&ev.quote, pki.root_ca_der(), NOW)
        .await
        .unwrap();
    assert_eq!(fetched.inner(), &pki.collateral());
    assert_eq!(pccs.requests(), 4, "served from the cache");

    // After nextUpdate the cache refetches (and the PKI's old collateral is expired).
    let later = fetched.not_after();
    let mut cfg = SimPkiConfig::new([7u8; 32], later);
    cfg.collateral_validity_secs = 30 * DAY;
    pccs.set_pki(Arc::new(SimPki::new(cfg).unwrap()));
    let refreshed = client
        .collateral_for_quote(&ev.quote, pki.root_ca_der(), later)
        .await
        .unwrap();
    assert_eq!(pccs.requests(), 8);
    assert!(refreshed.is_valid_at(later));
    assert_ne!(refreshed.version(), fetched.version());

    served.stop().await.unwrap();
}

#[tokio::test]
async fn unreachable_pccs_is_a_retryable_fetch_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = PccsClient::new(&format!("http://{addr}")).unwrap();
    let ev = evidence();
    let err = client
        .collateral_for_quote(&ev.quote, pki().root_ca_der(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CollateralFetch { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn pccs_serves_compact_json_that_round_trips_through_serde() {
    let pki = pki();
    let served = ServedPccs::start(SimPccs::new(Arc::clone(&pki))).await;
    let url = served.url();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = reqwest::get(format!(
        "{url}/tdx/certification/v4/tcb?fmspc={}",
        hex::encode_upper(cairn_attestation::simulator::SIM_FMSPC)
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // dcap-qvl's own PCCS client re-serialises the object: it must be byte-identical.
    assert_eq!(v["tcbInfo"].to_string(), pki.tcb_info_json());
    let r = reqwest::get(format!("{url}/tdx/certification/v4/tcb?fmspc=000000000000"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    served.stop().await.unwrap();
}

#[tokio::test]
async fn revoked_collateral_fetched_over_http_is_rejected() {
    let pki = pki_with(cairn_attestation::simulator::SimTcbStatus::Revoked);
    let served = ServedPccs::start(SimPccs::new(Arc::clone(&pki))).await;
    let url = served.url();
    let client = PccsClient::new(url).unwrap();
    let ev = evidence_on(&pki, 5, false);
    let err = cairn_attestation::Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .verify_with_pccs(&client, &ev.quote, &ev.log, &rd(1), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Revoked), "{err}");
    served.stop().await.unwrap();
}

/// A tiny HTTP/1.1 server: counts requests, records paths and answers each with
/// `respond(path)` = (status, extra headers, body).
async fn tiny_server(
    respond: impl Fn(&str) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&paths);
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            let respond = Arc::clone(&respond);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                seen.lock().unwrap().push(path.clone());
                let (status, headers, body) = respond(&path);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                let _ = s.write_all(&bytes).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (url, paths)
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn failed_fetch_is_remembered_for_thirty_seconds() {
    let (url, paths) = tiny_server(|_| (500, vec![], vec![])).await;
    let client = PccsClient::new(&url).unwrap();
    let ev = evidence();
    let v = cairn_attestation::Verifier::dangerous_with_simulator_root(pki().root_ca_der());
    let first = v
        .verify_with_pccs(&client, &ev.quote, &ev.log, &rd(1), NOW)
        .await
        .unwrap_err();
    assert!(matches!(first, Error::CollateralFetch { .. }), "{first}");
    assert_eq!(paths.lock().unwrap().len(), 1, "the first request failed");

    // Within the window: the same error, no request.
    let again = v
        .verify_with_pccs(&client, &ev.quote, &ev.log, &rd(1), NOW + 29)
        .await
        .unwrap_err();
    assert_eq!(again.to_string(), first.to_string());
    assert!(again.is_retryable());
    assert_eq!(
        paths.lock().unwrap().len(),
        1,
        "served from the failure cache"
    );

    // After it: fetched again (the server still fails), so `requests` in all by then.
    let ttl = cairn_attestation::DEFAULT_PCCS_FAILURE_TTL_SECS;
    assert_eq!(client.limits().failure_ttl_secs, ttl);
    let fetched_and_failed = async |requests: usize| {
        let err = client
            .collateral_for_quote(&ev.quote, pki().root_ca_der(), NOW + ttl)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CollateralFetch { .. }), "{err}");
        assert_eq!(paths.lock().unwrap().len(), requests);
    };
    fetched_and_failed(2).await;
    // clear_cache forgets failures too.
    client.clear_cache();
    fetched_and_failed(3).await;
}

#[tokio::test]
async fn root_crl_fallback_never_follows_a_url_from_the_served_chain() {
    // A PCCS without `rootcacrl` whose QE Identity issuer chain ends in a certificate
    // whose CRL distribution point is on the PCCS itself, where it serves the real CRL.
    let pki = pki();
    let c = pki.collateral();
    let evil_key = rcgen::KeyPair::generate().unwrap();
    let holder: Arc<std::sync::OnceLock<String>> = Arc::new(std::sync::OnceLock::new());
    let chain_for = Arc::clone(&holder);
    let (url, paths) = tiny_server(move |path| {
        let chain = |s: &str| vec![("SGX-PCK-CRL-Issuer-Chain".to_owned(), pct(s))];
        if path.starts_with("/sgx/certification/v4/pckcrl") {
            (200, chain(&c.pck_crl_issuer_chain), c.pck_crl.clone())
        } else if path.starts_with("/tdx/certification/v4/tcb") {
            let body = format!(
                r#"{{"tcbInfo":{},"signature":"{}"}}"#,
                c.tcb_info,
                hex::encode(&c.tcb_info_signature)
            );
            let h = vec![(
                "TCB-Info-Issuer-Chain".to_owned(),
                pct(&c.tcb_info_issuer_chain),
            )];
            (200, h, body.into_bytes())
        } else if path.starts_with("/tdx/certification/v4/qe/identity") {
            let body = format!(
                r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
                c.qe_identity,
                hex::encode(&c.qe_identity_signature)
            );
            let served = format!("{}{}", c.qe_identity_issuer_chain, chain_for.get().unwrap());
            let h = vec![("SGX-Enclave-Identity-Issuer-Chain".to_owned(), pct(&served))];
            (200, h, body.into_bytes())
        } else if path == "/evil-root.crl" {
            (200, vec![], c.root_ca_crl.clone())
        } else {
            (404, vec![], vec![])
        }
    })
    .await;
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
        uris: vec![format!("{url}/evil-root.crl")],
    }];
    holder.set(p.self_signed(&evil_key).unwrap().pem()).unwrap();

    let client = PccsClient::new(&url).unwrap();
    let ev = evidence();
    let err = cairn_attestation::Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .verify_with_pccs(&client, &ev.quote, &ev.log, &rd(1), NOW)
        .await
        .unwrap_err();
    match &err {
        Error::CollateralFetch { url, reason } => {
            assert!(url.ends_with("/sgx/certification/v4/rootcacrl"), "{url}");
            assert!(
                reason.contains("trust root certificate has no CRL distribution point"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
    let seen = paths.lock().unwrap().clone();
    assert!(!seen.iter().any(|p| p == "/evil-root.crl"), "{seen:?}");
    assert!(
        seen.iter().any(|p| p == "/sgx/certification/v4/rootcacrl"),
        "{seen:?}"
    );
}
