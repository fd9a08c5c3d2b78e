//! The public Python `dstack-sdk` (PyPI, pinned in scripts/setup.sh) talks to the guest
//! agent unchanged over its unix socket: get_key, get_quote, info, get_tls_key, version,
//! sign and verify.
//! The quote it receives verifies with Cairn's verifier, and the SDK's `replay_rtmrs()`
//! equals the quoted RTMR3.
//!
//! Needs `.venv/bin/python` with dstack-sdk installed (`scripts/setup.sh`); fails loudly
//! when it is missing.

use cairn_guest::testing::*;

use crate::agent::{world_booted, ServedAgent};
use crate::world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_python_dstack_sdk_works_against_the_agent_unchanged() {
    let python = venv_python();
    let (_w, s, state, _tee) = world_booted().await;
    let out = ServedAgent::during(&s, state, |socket| async move {
        run_python_sdk_client(&python, &socket).await
    })
    .await;
    let v = client_json("python", &out);
    assert_eq!(v["sdk_version"], DSTACK_SDK_VERSION);

    // get_quote: verifies with Cairn's verifier; the SDK's replay equals the quoted RTMR3
    let rd = python_sdk_report_data();
    assert_eq!(v["report_data"], hex::encode(rd));
    let vq = verified_sdk_quote(&v, &rd, &verifier());
    assert_eq!(*vq.app_id(), s.app_id());

    // info
    assert_eq!(v["app_id"], hex::encode(s.app_id().0));
    assert_eq!(v["compose_hash"], hex::encode(s.compose_hash().0));
    assert_eq!(v["tcb_rtmr3"], vq.rtmrs()[3].to_hex());
    assert_eq!(v["tcb_event_count"], 9);

    // get_key: the signature chain verifies to the KMS root
    checked_get_key(&v, &s.app_id().0, "eth", root_keys().k256().verifying_key());

    // get_tls_key: leaf + app CA + root CA, leaf carries RA-TLS evidence
    let chain = v["tls_chain"].as_array().unwrap();
    assert_eq!(chain.len(), 3);
    let (_, leaf) =
        x509_parser::pem::parse_x509_pem(chain[0].as_str().unwrap().as_bytes()).unwrap();
    let ev = cairn_attestation::parse_ra_tls_extensions(&leaf.contents).unwrap();
    assert_eq!(ev.app_id, Some(s.app_id().0));
    assert!(v["tls_key"].as_str().unwrap().contains("PRIVATE KEY"));
    assert!(v["agent_version"].is_string());

    // sign / verify through the SDK
    assert_eq!(v["sign_valid"], true);
    assert_eq!(v["tampered_valid"], false);
    // dstack's shape: [signature, app signature, KMS signature]
    assert_eq!(v["sign_chain_len"], 3);
}

/// The SDK's `encrypt_env_vars` (dstack's legacy format, what a dstack developer runs)
/// produces an `.encrypted-env` the guest decrypts: the interop check that used to live in
/// the devnet (`scripts/devnet/encrypt-env.py`, retired: the devnet encrypts with Cairn).
#[test]
fn an_env_encrypted_by_the_python_dstack_sdk_decrypts_in_the_guest() {
    let python = venv_python();
    let secret = x25519_dalek::StaticSecret::from([0x5a; 32]);
    let public = x25519_dalek::PublicKey::from(&secret);
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(
            "import sys\n\
             from dstack_sdk import EnvVar\n\
             from dstack_sdk.encrypt_env_vars import encrypt_env_vars_sync\n\
             print(encrypt_env_vars_sync([EnvVar(key='GREETING', value='hello = from the SDK'), \
             EnvVar(key='EMPTY', value='')], sys.argv[1]))",
        )
        .arg(hex::encode(public.as_bytes()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let text = text.trim();
    let blob = hex::decode(text.strip_prefix("0x").unwrap_or(text)).unwrap();
    let (vars, format) = cairn_protocol::env::decrypt(&secret, &[0x11; 20], &blob).unwrap();
    assert_eq!(format, cairn_protocol::env::EnvFormat::DstackLegacy);
    let got: Vec<(&str, &str)> = vars
        .env
        .iter()
        .map(|v| (v.key.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(got, [("GREETING", "hello = from the SDK"), ("EMPTY", "")]);

    // Another key cannot open it.
    let other = x25519_dalek::StaticSecret::from([0x5b; 32]);
    assert!(matches!(
        cairn_protocol::env::decrypt(&other, &[0x11; 20], &blob),
        Err(cairn_protocol::Error::EnvDecrypt)
    ));
}
