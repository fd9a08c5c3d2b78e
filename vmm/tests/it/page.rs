//! The web page's files: served without the API's token (they hold no data), with a
//! strict CSP, while the API behind them still needs the token. The page itself is
//! exercised in a real Chromium by `cairn-e2e` (`vmm_page`).

use cairn_vmm::{API_CSP, PAGE_CSP, PAGE_PATH, SCRIPT_PATH, STYLE_PATH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{config, Served};

/// `GET path` over plain HTTP/1.1 (`Connection: close`): status, lowercase headers, body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_csp_without_the_token_and_the_api_still_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "0123456789abcdef-vmm-token\n").unwrap();
    let config = config(
        dir.path(),
        &format!("[api]\ntoken_file = \"{}\"\n", token_file.display()),
    );
    let s = Served::start_with(dir, config).await;

    for (path, content_type, marker) in [
        (
            PAGE_PATH,
            "text/html; charset=utf-8",
            "<title>Cairn VMM</title>",
        ),
        (
            SCRIPT_PATH,
            "text/javascript; charset=utf-8",
            "\"use strict\";",
        ),
        (STYLE_PATH, "text/css; charset=utf-8", ":root {"),
    ] {
        let (status, headers, body) = get(s.tcp, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            header(&headers, "content-security-policy"),
            Some(PAGE_CSP),
            "{path}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&headers, "x-frame-options"), Some("DENY"));
        assert!(body.contains(marker), "{path}: {body}");
    }
    assert!(PAGE_CSP.contains("script-src 'self'") && !PAGE_CSP.contains("unsafe"));

    // The data is the API's: 401 without the token, and even an error is not a document.
    let (status, headers, body) = get(s.tcp, "/v1/cvms").await;
    assert_eq!(status, 401);
    assert!(body.contains("\"unauthorized\""), "{body}");
    assert_eq!(header(&headers, "content-security-policy"), Some(API_CSP));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    // Nothing else under /ui/.
    let (status, _, _) = get(s.tcp, "/ui/other.js").await;
    assert_eq!(status, 401);
    s.stop().await;
}
