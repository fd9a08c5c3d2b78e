//! The Cloudflare provider against a loopback server that speaks Cloudflare's v4 API
//! shapes (envelope, pagination, bearer token): the real Cloudflare is not reachable from
//! tests, so this checks our requests and our handling of its answers and failures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use cairn_acme::{ApiToken, CloudflareConfig, CloudflareDns, DnsError, DnsProvider};
use serde_json::{json, Value};

const TOKEN: &str = "cf-test-token";
const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";

#[derive(Default)]
struct Zone {
    records: BTreeMap<String, Value>,
    next: u64,
    per_page_cap: usize,
}

type S = Arc<Mutex<Zone>>;

fn authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn denied() -> (StatusCode, Json<Value>) {
    (
        StatusCode::FORBIDDEN,
        Json(
            json!({"success": false, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": [], "result": null}),
        ),
    )
}

async fn create(
    State(s): State<S>,
    Path(zone): Path<String>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&h) || zone != ZONE {
        return denied();
    }
    let mut z = s.lock().unwrap();
    for f in ["type", "name", "content", "ttl"] {
        if body.get(f).is_none() {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"success": false, "errors": [{"code": 9000, "message": format!("missing {f}")}], "messages": [], "result": null}),
                ),
            );
        }
    }
    z.next += 1;
    let id = format!("rec{:029}", z.next);
    let mut rec = body.clone();
    rec["id"] = id.clone().into();
    z.records.insert(id, rec.clone());
    (
        StatusCode::OK,
        Json(json!({"success": true, "errors": [], "messages": [], "result": rec})),
    )
}

async fn list(
    State(s): State<S>,
    Path(zone): Path<String>,
    h: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&h) || zone != ZONE {
        return denied();
    }
    let z = s.lock().unwrap();
    let matching: Vec<Value> = z
        .records
        .values()
        .filter(|r| Some(r["type"].as_str().unwrap()) == q.get("type").map(String::as_str))
        .filter(|r| Some(r["name"].as_str().unwrap()) == q.get("name").map(String::as_str))
        .cloned()
        .collect();
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(20)
        .min(z.per_page_cap);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1);
    let total_pages = matching.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    (
        StatusCode::OK,
        Json(
            json!({"success": true, "errors": [], "messages": [], "result": slice,
        "result_info": {"page": page, "per_page": per_page, "count": slice.len(), "total_pages": total_pages}}),
        ),
    )
}

async fn remove(
    State(s): State<S>,
    Path((zone, id)): Path<(String, String)>,
    h: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&h) || zone != ZONE {
        return denied();
    }
    match s.lock().unwrap().records.remove(&id) {
        Some(_) => (
            StatusCode::OK,
            Json(json!({"success": true, "errors": [], "messages": [], "result": {"id": id}})),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"success": false, "errors": [{"code": 81044, "message": "Record does not exist."}], "messages": [], "result": null}),
            ),
        ),
    }
}

async fn serve(router: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    format!("http://{addr}/client/v4")
}

async fn fake_cloudflare(per_page_cap: usize) -> (String, S) {
    let s: S = Arc::new(Mutex::new(Zone {
        per_page_cap,
        ..Zone::default()
    }));
    let router = Router::new()
        .route(
            "/client/v4/zones/{zone}/dns_records",
            get(list).post(create),
        )
        .route("/client/v4/zones/{zone}/dns_records/{id}", delete(remove))
        .with_state(s.clone());
    (serve(router).await, s)
}

fn provider(base: &str, token: &str, timeout: Duration) -> CloudflareDns {
    CloudflareDns::new(
        &CloudflareConfig {
            api_base: base.to_owned(),
            zone_id: ZONE.to_owned(),
            api_token: ApiToken::new(token.to_owned()),
            ttl: 60,
        },
        timeout,
    )
    .unwrap()
}

#[tokio::test]
async fn txt_records_are_added_and_every_one_at_the_name_is_cleared_across_pages() {
    let (base, zone) = fake_cloudflare(2).await;
    let cf = provider(&base, TOKEN, Duration::from_secs(5));
    let host = "_acme-challenge.gw.example.com";
    for v in ["value-one", "value-two", "value-three"] {
        cf.set_txt(host, v).await.unwrap();
    }
    cf.set_txt("_acme-challenge.other.example.com", "keep-me")
        .await
        .unwrap();
    {
        let z = zone.lock().unwrap();
        let rec = z
            .records
            .values()
            .find(|r| r["content"] == "value-two")
            .unwrap();
        assert_eq!(rec["type"], "TXT");
        assert_eq!(rec["name"], host);
        assert_eq!(rec["ttl"], 60);
        assert_eq!(z.records.len(), 4);
    }
    // three records at the name over two pages of two
    cf.clear_txt(host).await.unwrap();
    let z = zone.lock().unwrap();
    let left: Vec<_> = z
        .records
        .values()
        .map(|r| r["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["keep-me"]);
}

#[tokio::test]
async fn a_rejected_token_is_an_api_error_with_cloudflares_code() {
    let (base, _) = fake_cloudflare(100).await;
    let cf = provider(&base, "wrong-token", Duration::from_secs(5));
    match cf.set_txt("_acme-challenge.gw.example.com", "v").await {
        Err(DnsError::Api { op, errors }) => {
            assert_eq!(op, "set_txt");
            assert_eq!(errors, vec![(10000, "Authentication error".to_owned())]);
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{cf:?}").contains("wrong-token"));
}

#[tokio::test]
async fn a_silent_api_times_out() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // accepts and never answers
    let _t = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = l.accept().await.unwrap();
            held.push(s);
        }
    });
    let cf = provider(
        &format!("http://{addr}/client/v4"),
        TOKEN,
        Duration::from_millis(300),
    );
    match cf.clear_txt("_acme-challenge.gw.example.com").await {
        Err(DnsError::Timeout { op: "list", .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_or_malformed_answer_is_refused() {
    let big = "x".repeat(cairn_acme::consts::MAX_DNS_RESPONSE_LEN + 1);
    let router = Router::new()
        .route(
            "/big/zones/{zone}/dns_records",
            get(move || async move { big.clone() }),
        )
        .route(
            "/bad/zones/{zone}/dns_records",
            get(|| async { "{\"success\": true, \"result\": 5}" }),
        );
    let base = serve(router).await.replace("/client/v4", "");
    let cf = provider(&format!("{base}/big"), TOKEN, Duration::from_secs(5));
    assert!(matches!(
        cf.clear_txt("_acme-challenge.gw.example.com").await,
        Err(DnsError::ResponseTooLarge { op: "list", .. })
    ));
    let cf = provider(&format!("{base}/bad"), TOKEN, Duration::from_secs(5));
    assert!(matches!(
        cf.clear_txt("_acme-challenge.gw.example.com").await,
        Err(DnsError::Malformed { op: "list", .. })
    ));
}

#[tokio::test]
async fn names_that_could_escape_the_url_never_reach_the_api() {
    let (base, zone) = fake_cloudflare(100).await;
    let cf = provider(&base, TOKEN, Duration::from_secs(5));
    assert!(matches!(
        cf.set_txt("../../zones/x", "v").await,
        Err(DnsError::Invalid { what: "host", .. })
    ));
    assert!(zone.lock().unwrap().records.is_empty());
    let bad_zone = CloudflareDns::new(
        &CloudflareConfig {
            api_base: base,
            zone_id: "../evil".to_owned(),
            api_token: ApiToken::new(TOKEN.to_owned()),
            ttl: 60,
        },
        Duration::from_secs(1),
    );
    assert!(matches!(
        bad_zone,
        Err(DnsError::Invalid {
            what: "zone id",
            ..
        })
    ));
}
