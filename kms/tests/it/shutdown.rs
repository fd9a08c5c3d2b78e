//! A chain that hangs, and shutdown with a release in flight.

use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::release::app_key;
use crate::world::{pki, GateProxy, Running, World};

/// A node whose chain RPC goes through `proxy`.
async fn start_behind(w: &World, proxy: &GateProxy, host_seed: u8) -> Running {
    let (mut opts, dir) = w.prepare(host_seed, &pki()).await;
    // The head advances only when asked (never during the test): every RPC the gate
    // holds is the release's own.
    opts.chain = w
        .chain_config()
        .with_rpc_urls(vec![proxy.url.clone()], 1)
        .with_head_poll_interval(Duration::from_secs(3600));
    w.serve(opts, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_chain_answers_503_after_the_rpc_timeout_not_never() {
    let w = World::new().await;
    let mut proxy = GateProxy::start(&w.endpoint()).await;
    let kms = start_behind(&w, &proxy, 0xF1).await;
    let mut client = w.guest_client(&kms, 0x61).await;
    proxy.close();
    let t = Instant::now();
    let err = app_key(&mut client).await.unwrap_err();
    err.assert_code(StatusCode::SERVICE_UNAVAILABLE, "unavailable.chain");
    assert!(err.body.error.message.contains("timed out"), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        proxy.held.try_recv().is_ok(),
        "the RPC was held at the gate"
    );
    assert_eq!(kms.node.log().size(), 0);
    proxy.open();
    kms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_release_finish() {
    let w = World::new().await;
    let mut proxy = GateProxy::start(&w.endpoint()).await;
    let mut kms = start_behind(&w, &proxy, 0xF2).await;
    let mut client = w.guest_client(&kms, 0x62).await;
    proxy.close();
    let request = tokio::spawn(async move { app_key(&mut client).await });
    // The release is now waiting on the chain: shut down while it is in flight.
    proxy.held.recv().await.unwrap();
    kms.signal_stop();
    // Wait until the server stopped accepting (its listener is closed) ...
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(kms.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "server still accepting after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... and only then let the chain answer: the in-flight release still completes.
    proxy.open();
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.receipt.log_index, 0);
    assert_eq!(kms.node.log().size(), 1);
    kms.stop().await;
}
