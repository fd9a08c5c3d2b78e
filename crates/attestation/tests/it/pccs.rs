//! The simulator serves its collateral like a PCCS; the verifier fetches it over HTTP
//! (loopback, port 0) and caches it per FMSPC/CA until nextUpdate.

use std::sync::Arc;

use cairn_attestation::simulator::{SimPccs, SimPki, SimPkiConfig};
use cairn_attestation::{Error, PccsClient};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::common::*;

async fn start(pccs: SimPccs) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        pccs.serve(listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), tx, task)
}

#[tokio::test]
async fn verifier_fetches_collateral_from_the_simulated_pccs_and_caches_it() {
    let pki = pki();
    let pccs = SimPccs::new(Arc::clone(&pki));
    let (url, stop, task) = start(pccs.clone()).await;
    let client = PccsClient::new(&url).unwrap();
    let ev = evidence();
    let v = cairn_attestation::Verifier::dangerous_with_simulator_root(pki.root_ca_der());

    let q = v
        .verify_with_pccs(&client, &ev.quote, &ev.log, &rd(1), NOW)
        .await
        .expect("verifies with fetched collateral");
    assert_eq!(q.tcb_status(), "UpToDate");
    assert_eq!(pccs.requests(), 4, "pckcrl, tcb, qe identity, root crl");

    // The fetched collateral is byte-identical to the PKI's.
    let fetched = client.collateral_for_quote(&ev.quote, NOW).await.unwrap();
    assert_eq!(fetched.inner(), &pki.collateral());
    assert_eq!(pccs.requests(), 4, "served from the cache");

    // After nextUpdate the cache refetches (and the PKI's old collateral is expired).
    let later = fetched.not_after();
    let mut cfg = SimPkiConfig::new([7u8; 32], later);
    cfg.collateral_validity_secs = 30 * DAY;
    pccs.set_pki(Arc::new(SimPki::new(cfg).unwrap()));
    let refreshed = client.collateral_for_quote(&ev.quote, later).await.unwrap();
    assert_eq!(pccs.requests(), 8);
    assert!(refreshed.is_valid_at(later));
    assert_ne!(refreshed.version(), fetched.version());

    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn unreachable_pccs_is_a_retryable_fetch_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = PccsClient::new(&format!("http://{addr}")).unwrap();
    let ev = evidence();
    let err = client
        .collateral_for_quote(&ev.quote, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CollateralFetch { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn pccs_serves_compact_json_that_round_trips_through_serde() {
    let pki = pki();
    let (url, stop, task) = start(SimPccs::new(Arc::clone(&pki))).await;
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
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn revoked_collateral_fetched_over_http_is_rejected() {
    let pki = pki_with(cairn_attestation::simulator::SimTcbStatus::Revoked);
    let (url, stop, task) = start(SimPccs::new(Arc::clone(&pki))).await;
    let client = PccsClient::new(&url).unwrap();
    let ev = evidence_on(&pki, 5, false);
    let err = cairn_attestation::Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .verify_with_pccs(&client, &ev.quote, &ev.log, &rd(1), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Revoked), "{err}");
    let _ = stop.send(());
    task.await.unwrap();
}
