//! The public Python `dstack-sdk` against the real stack: the guest SDK script
//! (`guest/tests/it/python/sdk_client.py`, run unchanged) talks to the agent of a guest
//! that booted against the real KMS; its `get_tls_key(usage_ra_tls=True)` leaf is a valid
//! RA-TLS certificate issued by the KMS `sign-cert`.
//!
//! Needs `.venv/bin/python` with dstack-sdk (`scripts/setup.sh`); fails loudly without it.

use cairn_e2e::*;
use cairn_guest::testing::*;
use cairn_kms::unix_now;
use x509_parser::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_python_dstack_sdk_works_against_a_guest_of_the_real_kms() {
    let python = venv_python();
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let (app, cvm) = net.allowed_cvm(&kms, 0x21, "v1").await;
    let app_id = app.app_id().into_array();
    let booted = cvm.boot().await.unwrap();
    let agent = Agent::serve(&cvm.agent_socket(), booted.state.clone());
    // The socket is bound inside the spawned task: wait until it answers.
    let (st, _) = agent.call("Version", serde_json::json!({})).await;
    assert_eq!(st, hyper::StatusCode::OK);

    let out = run_python_sdk_client(&python, &agent.socket).await;
    agent.stop().await;
    let v = client_json("python", &out);

    // get_quote: verifies with Cairn's verifier; the SDK's replay equals the quoted RTMR3.
    let vq = verified_sdk_quote(&v, &python_sdk_report_data(), &verifier());
    assert_eq!(vq.app_id().0, app_id);

    // info
    assert_eq!(v["app_id"], hex::encode(app_id));
    assert_eq!(v["compose_hash"], hex::encode(cvm.compose_hash()));

    // get_key: the chain verifies to the root key registered on chain.
    checked_get_key(&v, &app_id, "eth", &net.chain_k256_root().await);

    // get_tls_key(usage_ra_tls=True): [leaf, app CA, root CA] from the real KMS; the
    // leaf's evidence verifies against the leaf's own key.
    let tls = v["tls_chain"].as_array().unwrap();
    assert_eq!(tls.len(), 3);
    assert_eq!(
        tls[2].as_str().unwrap(),
        kms.node.root_keys().ca().cert_pem()
    );
    let (_, pem) = x509_parser::pem::parse_x509_pem(tls[0].as_str().unwrap().as_bytes()).unwrap();
    let ev = cairn_attestation::parse_ra_tls_extensions(&pem.contents).unwrap();
    assert_eq!(ev.app_id, Some(app_id));
    let (_, leaf) = X509Certificate::from_der(&pem.contents).unwrap();
    let leaf_vq = verifier()
        .verify(
            &ev.quote,
            &ev.event_log,
            &cairn_attestation::ra_tls_report_data(leaf.public_key().raw),
            unix_now(),
        )
        .unwrap();
    assert_eq!(leaf_vq.app_id().0, app_id);

    assert_eq!(v["sign_valid"], true);
    assert_eq!(v["tampered_valid"], false);
    kms.stop().await;
}
