//! The OpenAPI document lists exactly the router's routes, and is what `/openapi.json`
//! serves.

use std::collections::BTreeSet;

use hyper::{Method, StatusCode};

use crate::support::*;

fn documented() -> BTreeSet<(String, String)> {
    let doc = cairn_vmm::openapi();
    let mut out = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ] {
            if op.is_some() {
                out.insert((path.clone(), method.to_owned()));
            }
        }
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_serves() {
    let routed: BTreeSet<(String, String)> = cairn_vmm::route_table()
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m.to_string()))
        .collect();
    let doc = documented();
    assert_eq!(
        doc,
        routed,
        "documented but not routed: {:?}; routed but not documented: {:?}",
        doc.difference(&routed).collect::<Vec<_>>(),
        routed.difference(&doc).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn every_documented_route_is_served_and_openapi_json_is_the_document() {
    let s = Served::start("").await;
    let c = s.unix_client();
    for (path, method) in documented() {
        let path = path
            .replace("{id}", "no-such-cvm")
            .replace("{app_id}", "0x1111111111111111111111111111111111111111");
        let method: Method = method.parse().unwrap();
        let body = (method == Method::POST).then(|| b"{}".to_vec());
        let (status, body) = c.raw(method.clone(), &path, body).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("no route"),
            "{method} {path} fell through to the fallback: {status} {text}"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    let (status, body) = c.raw(Method::GET, "/openapi.json", None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let expected = serde_json::to_value(cairn_vmm::openapi()).unwrap();
    assert_eq!(served, expected);
    assert!(served["components"]["schemas"]["CreateCvmRequest"].is_object());
    s.stop().await;
}
