//! The web page: plain HTML, JS and CSS shipped in the binary (`include_str!`), no build
//! step, nothing from elsewhere. The page is static and holds no data, so it is served
//! without auth; everything it shows comes from the API with the API's auth (a bearer
//! token the operator types in, sent in the `Authorization` header, never in a URL).
//!
//! Trust: the API's strings (CVM names, contract reasons, guest reports, console logs)
//! are attacker-influenced; `app.js` only ever inserts them as text. The CSP
//! ([`PAGE_CSP`]) allows scripts, styles and requests from this origin only, no inline
//! script or style, no frames, no form posts elsewhere.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page's path.
pub const PAGE_PATH: &str = "/";
/// The script's path.
pub const SCRIPT_PATH: &str = "/ui/app.js";
/// The stylesheet's path.
pub const STYLE_PATH: &str = "/ui/style.css";

/// The Content-Security-Policy of the page and its files.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// The routes of the page (no auth, no state).
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            PAGE_PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            SCRIPT_PATH,
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            STYLE_PATH,
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_has_no_inline_script_or_style() {
        // Nothing from another origin, no inline handlers or scripts the CSP would block.
        for (name, text) in [("index.html", INDEX_HTML), ("app.js", APP_JS)] {
            for bad in ["http://", "https://", "onclick=", "onerror=", "javascript:"] {
                assert!(!text.contains(bad), "{name} contains {bad:?}");
            }
        }
        assert!(!INDEX_HTML.contains("<script>"));
        assert!(!INDEX_HTML.contains("style="));
        assert!(INDEX_HTML.contains(&format!("src=\"{SCRIPT_PATH}\"")));
        assert!(INDEX_HTML.contains(&format!("href=\"{STYLE_PATH}\"")));
        // The script never parses API data as HTML.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }
}
