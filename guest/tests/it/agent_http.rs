//! The agent's HTTP surface: one concurrency limit for every route, JSON error bodies
//! for every rejection, unknown paths naming their replacement, the legacy tappd paths,
//! and the `GetTlsKey` options checked against what the KMS issued.

use std::future::Future;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cairn_guest::agent;
use cairn_protocol::agent::*;
use tower::ServiceExt;

use crate::agent::{booted, call, call_ok, call_raw, tls_key_refused};
use crate::hostile::Hostile;
use crate::world::*;

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_concurrency_limit_covers_every_route() {
    // GetTlsKey requests held at the KMS fill every permit.
    let w = World::with_kms(Hostile::StallSignCert).await;
    let (_s, state, _) = booted(&w).await;
    let router = agent::router(state);
    let held: Vec<_> = (0..agent::MAX_CONCURRENT_REQUESTS)
        .map(|_| {
            tokio::spawn(
                router
                    .clone()
                    .oneshot(post("/GetTlsKey", r#"{"subject":"x"}"#)),
            )
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let gate = w.gate.as_ref().unwrap();
    while gate.arrived() < agent::MAX_CONCURRENT_REQUESTS as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "requests never reached the KMS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Another route, whose method never waits, must wait for a permit: its first poll
    // does not complete (with a limit per route it would answer at once).
    let mut next = Box::pin(router.clone().oneshot(post("/Version", "{}")));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(
        matches!(next.as_mut().poll(&mut cx), Poll::Pending),
        "a request ran while {} were in flight",
        agent::MAX_CONCURRENT_REQUESTS
    );
    gate.open();
    assert_eq!(next.await.unwrap().status(), StatusCode::OK);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn every_rejection_is_a_json_error() {
    let w = World::start().await;
    let (_s, state, _) = booted(&w).await;
    let cases = [
        // 405: a method the route does not take
        (
            Request::get("/GetKey").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        // 413: a body over the cap
        (
            post(
                "/GetKey",
                &format!(r#"{{"path":"{}"}}"#, "a".repeat(MAX_REQUEST_LEN)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        // 415: protobuf (dstack's prpc speaks it; this agent does not)
        (
            Request::post("/GetKey")
                .header("content-type", "application/x-protobuf")
                .body(Body::from("\x0a\x01p"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        // 400: not JSON
        (post("/GetQuote", "{not json"), StatusCode::BAD_REQUEST),
        // 404: unknown
        (post("/Nope", "{}"), StatusCode::NOT_FOUND),
    ];
    for (req, want) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (st, ct, body) = call_raw(&state, req).await;
        assert_eq!(st, want, "{what}");
        assert_eq!(ct.as_deref(), Some("application/json"), "{what}");
        let v: AgentError = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&body)));
        assert!(!v.error.is_empty(), "{what}");
    }
}

#[tokio::test]
async fn unknown_paths_name_their_replacement() {
    let w = World::start().await;
    let (_s, state, _) = booted(&w).await;
    for (path, names) in [
        ("/prpc/DstackGuest.GetKey", "POST /GetKey"),
        ("/prpc/Worker.Version", "POST /Version"),
        ("/prpc/Tappd.GetQuote", "POST /GetQuote"),
        ("/GetKeys", "POST /GetKey, POST /GetTlsKey"),
        ("/", "/prpc/Tappd.DeriveKey"),
    ] {
        let (st, v) = call(&state, path, "{}").await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(names), "{path}: {msg}");
    }
}

#[tokio::test]
async fn legacy_tappd_methods_map_onto_the_current_ones() {
    let w = World::start().await;
    let (s, state, _) = booted(&w).await;

    // DeriveK256Key is GetKey under tappd's field names
    let (st, v) = call(
        &state,
        "/prpc/Tappd.DeriveK256Key",
        r#"{"path":"wallet/0","purpose":"eth"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, k) = call(&state, "GetKey", r#"{"path":"wallet/0","purpose":"eth"}"#).await;
    assert_eq!(v["k256_key"], k["key"]);
    assert_eq!(v["k256_signature_chain"], k["signature_chain"]);

    // TdxQuote: report data = sha512("app-data:" ‖ content), verifiable with the log
    let r: TdxQuoteResponse = call_ok(
        &state,
        "/prpc/Tappd.TdxQuote",
        r#"{"report_data":"68656c6c6f"}"#,
    )
    .await;
    assert_eq!(
        (r.hash_algorithm.as_str(), r.prefix.as_str()),
        ("sha512", "app-data")
    );
    let (rd, _, _) = tappd_report_data(b"hello", "sha512", "").unwrap();
    let vq = verify_hex_quote(&r.quote, &r.event_log, &rd);
    assert_eq!(*vq.app_id(), s.app_id());
    // RawQuote: the 64 bytes as given
    let r: TdxQuoteResponse = call_ok(
        &state,
        "/prpc/Tappd.RawQuote",
        &format!(r#"{{"report_data":"{}"}}"#, "07".repeat(64)),
    )
    .await;
    assert_eq!(r.hash_algorithm, "raw");
    verify_hex_quote(&r.quote, &r.event_log, &[7; 64]);
    let (st, _) = call(
        &state,
        "/prpc/Tappd.TdxQuote",
        r#"{"report_data":"00","hash_algorithm":"sha3-256"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Info and Version
    let (st, v) = call(&state, "/prpc/Tappd.Info", "{}").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["app_id"], hex::encode(s.app_id().0));
    let (st, v) = call(&state, "/prpc/Tappd.Version", "{}").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["version"].is_string());
}

fn leaf_key(pem: &str) -> Vec<u8> {
    let kp = rcgen::KeyPair::from_pem(pem).unwrap();
    rcgen::PublicKeyData::subject_public_key_info(&kp)
}

#[tokio::test]
async fn tappd_derive_key_is_stable_per_path_and_random_on_request() {
    let w = World::start().await;
    let (_s, state, _) = booted(&w).await;
    let derive = |body: &'static str| {
        let state = state.clone();
        async move {
            let r: GetTlsKeyResponse = call_ok(&state, "/prpc/Tappd.DeriveKey", body).await;
            assert_eq!(r.certificate_chain.len(), 3);
            // the leaf certifies the returned key
            let (_, leaf) =
                x509_parser::pem::parse_x509_pem(r.certificate_chain[0].as_bytes()).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&leaf.contents).unwrap();
            assert_eq!(cert.public_key().raw, leaf_key(&r.key).as_slice());
            r.key
        }
    };
    let a = derive(r#"{"path":"p","subject":"legacy"}"#).await;
    let b = derive(r#"{"path":"p","subject":"other"}"#).await;
    let c = derive(r#"{"path":"q"}"#).await;
    let d = derive(r#"{"path":"p","random_seed":true}"#).await;
    assert_eq!(a, b, "the same path derives the same key");
    assert_ne!(a, c);
    assert_ne!(a, d);
    // dstack: the P-256 scalar is HKDF(app key, "RATLS", path), the GetKey bytes of `p`
    let (_, k) = call(&state, "GetKey", r#"{"path":"p"}"#).await;
    let scalar = hex::decode(k["key"].as_str().unwrap()).unwrap();
    let expected = p256::SecretKey::from_slice(&scalar).unwrap();
    use p256::pkcs8::DecodePrivateKey;
    let got = p256::SecretKey::from_pkcs8_pem(&a).unwrap();
    assert_eq!(got.to_bytes(), expected.to_bytes());
}

#[tokio::test]
async fn the_real_kms_issues_the_validity_get_tls_key_asked_for() {
    let w = World::start().await;
    let (_s, state, _) = booted(&w).await;
    let not_after = unix_now() + 86_400;
    let r: GetTlsKeyResponse = call_ok(
        &state,
        "GetTlsKey",
        &format!(r#"{{"subject":"x","not_after":{not_after}}}"#),
    )
    .await;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(r.certificate_chain[0].as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.contents).unwrap();
    assert_eq!(
        cert.validity().not_after.timestamp(),
        i64::try_from(not_after).unwrap()
    );
}

#[tokio::test]
async fn get_tls_key_options_are_checked_against_the_issued_leaf() {
    // A KMS that issues every leaf for a year from now: an app that asks for a day must
    // not get a year-long certificate handed out as if it were one.
    let w = World::with_kms(Hostile::IgnoresValidity).await;
    let (_s, state, _) = booted(&w).await;
    let now = unix_now();
    let (st, v) = call(
        &state,
        "GetTlsKey",
        &format!(r#"{{"subject":"x","not_after":{}}}"#, now + 86_400),
    )
    .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("not_after") && msg.contains("KMS-issued leaf"),
        "{msg}"
    );
    assert!(v.get("key").is_none());
    // inverted bounds are bad input
    let (st, v) = call(
        &state,
        "GetTlsKey",
        &format!(r#"{{"not_before":{},"not_after":{}}}"#, now, now),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // with_app_info: the leaf carries this app's id (the re-issued leaf keeps the KMS's)
    let (st, v) = call(
        &state,
        "GetTlsKey",
        r#"{"subject":"x","with_app_info":true}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_leaf_without_the_app_id_is_refused_with_or_without_with_app_info() {
    // The guest checks every KMS-issued chain as a relying party would
    // (cairn_attestation::verify_app_chain): the leaf must carry this app's id, so such a
    // leaf is never handed out, whether or not the caller asked for the app info.
    let bodies = [
        r#"{"subject":"x"}"#,
        r#"{"subject":"x","with_app_info":true}"#,
    ];
    tls_key_refused(Hostile::LeafWithoutAppId, &bodies, "no app id extension").await;
}
