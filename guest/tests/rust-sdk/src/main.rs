//! Calls the Cairn guest agent with dstack's public Rust SDK (crates.io `dstack-sdk`,
//! pinned in Cargo.toml), unchanged, and prints what it got as one JSON object.
//!
//! Usage: cairn-dstack-rust-sdk-interop <agent unix socket>
//!
//! Every method the SDK offers is called: `DstackClient` (get_key, get_quote, attest,
//! info, version, emit_event, get_tls_key, sign, verify), `TappdClient` (derive_key,
//! derive_key_with_subject, derive_key_with_subject_and_alt_names, get_quote, info) and
//! `ethereum::to_account`. A failing call is printed as `{"error": ...}` under its name,
//! so the test names the method that failed. Run by guest/tests/it/rust_sdk.rs.

use dstack_sdk::dstack_client::{DstackClient, TlsKeyConfig};
use dstack_sdk::tappd_client::TappdClient;
use serde_json::{json, Value};

fn show<T>(r: anyhow::Result<T>, f: impl FnOnce(T) -> Value) -> Value {
    match r {
        Ok(v) => f(v),
        Err(e) => json!({ "error": format!("{e:#}") }),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let socket = std::env::args().nth(1).expect("usage: <agent unix socket>");
    let client = DstackClient::new(Some(&socket));
    let mut out = serde_json::Map::new();

    let key = client
        .get_key(Some("wallet/0".into()), Some("eth".into()))
        .await;
    let account = key
        .as_ref()
        .ok()
        .map(|k| match dstack_sdk::ethereum::to_account(k) {
            Ok(a) => json!(format!("{:?}", a.address())),
            Err(e) => json!({ "error": e.to_string() }),
        });
    out.insert(
        "get_key".into(),
        show(key, |k| json!({"key": k.key, "signature_chain": k.signature_chain})),
    );
    out.insert("to_account".into(), account.unwrap_or(Value::Null));
    out.insert(
        "get_quote".into(),
        show(client.get_quote(b"rust-sdk".to_vec()).await, |q| {
            let rtmr3 = q.replay_rtmrs().ok().and_then(|r| r.get(&3).cloned());
            json!({"quote": q.quote, "event_log": q.event_log, "report_data": q.report_data,
                   "replayed_rtmr3": rtmr3})
        }),
    );
    out.insert(
        "attest".into(),
        show(client.attest(b"rust-sdk".to_vec()).await, |a| {
            json!({"attestation": a.attestation})
        }),
    );
    out.insert(
        "info".into(),
        show(client.info().await, |i| {
            json!({"app_id": i.app_id, "compose_hash": i.compose_hash,
                   "rtmr3": i.tcb_info.rtmr3, "events": i.tcb_info.event_log.len()})
        }),
    );
    out.insert(
        "version".into(),
        show(client.version().await, |v| json!({"version": v.version, "rev": v.rev})),
    );
    out.insert(
        "emit_event".into(),
        show(
            client
                .emit_event("rust-sdk".into(), b"payload".to_vec())
                .await,
            |()| json!("ok"),
        ),
    );
    let tls = TlsKeyConfig::builder()
        .subject("rust.example")
        .alt_names(vec!["rust.example".into()])
        .usage_ra_tls(true)
        .build();
    out.insert(
        "get_tls_key".into(),
        show(client.get_tls_key(tls).await, |t| {
            json!({"key": t.key, "certificate_chain": t.certificate_chain})
        }),
    );
    let signed = client.sign("secp256k1", b"hello rust".to_vec()).await;
    let verdicts = match &signed {
        Ok(s) => {
            let sig = s.decode_signature().unwrap_or_default();
            let pk = s.decode_public_key().unwrap_or_default();
            let good = client
                .verify("secp256k1", b"hello rust".to_vec(), sig.clone(), pk.clone())
                .await;
            let bad = client
                .verify("secp256k1", b"hello ruts".to_vec(), sig, pk)
                .await;
            json!({"valid": show(good, |v| json!(v.valid)), "tampered": show(bad, |v| json!(v.valid))})
        }
        Err(_) => Value::Null,
    };
    out.insert(
        "sign".into(),
        show(signed, |s| {
            json!({"signature": s.signature, "signature_chain": s.signature_chain,
                   "public_key": s.public_key})
        }),
    );
    out.insert("verify".into(), verdicts);

    // The deprecated legacy client, against the same socket (dstack serves it on
    // tappd.sock; Cairn serves /prpc/Tappd.* on the agent socket).
    let tappd = TappdClient::new(Some(&socket));
    out.insert(
        "tappd_derive_key".into(),
        show(tappd.derive_key("legacy/path").await, |k| {
            json!({"key": k.key, "certificate_chain": k.certificate_chain,
                   "raw_key": k.decode_key().map(hex::encode).ok()})
        }),
    );
    out.insert(
        "tappd_derive_key_with_subject".into(),
        show(
            tappd
                .derive_key_with_subject("legacy/path", "legacy.example")
                .await,
            |k| json!({"certificate_chain": k.certificate_chain}),
        ),
    );
    out.insert(
        "tappd_derive_key_with_subject_and_alt_names".into(),
        show(
            tappd
                .derive_key_with_subject_and_alt_names(
                    "legacy/path",
                    Some("legacy.example"),
                    Some(vec!["legacy.example".into()]),
                )
                .await,
            |k| json!({"certificate_chain": k.certificate_chain}),
        ),
    );
    out.insert(
        "tappd_get_quote".into(),
        show(tappd.get_quote([7u8; 64].to_vec()).await, |q| {
            let rtmr3 = q.replay_rtmrs().ok().and_then(|r| r.get(&3).cloned());
            json!({"quote": q.quote, "event_log": q.event_log, "replayed_rtmr3": rtmr3,
                   "hash_algorithm": q.hash_algorithm})
        }),
    );
    out.insert(
        "tappd_info".into(),
        show(tappd.info().await, |i| {
            json!({"app_id": i.app_id, "rtmr3": i.tcb_info.rtmr3})
        }),
    );
    println!("{}", Value::Object(out));
}
