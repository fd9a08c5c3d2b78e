//! DNS providers for the DNS-01 challenge: the [`DnsProvider`] trait and its two
//! implementations, [`CloudflareDns`] (Cloudflare's v4 HTTP API) and [`ChallTestSrvDns`]
//! (`pebble-challtestsrv`'s management API, for tests and local development).
//!
//! Every call has a timeout, every response is size-bounded, and host names and values
//! are checked before a request is made (a record name never reaches a URL unchecked).

use std::future::Future;
use std::pin::Pin;

use crate::error::DnsError;

mod challtestsrv;
mod cloudflare;

pub use challtestsrv::ChallTestSrvDns;
pub use cloudflare::{ApiToken, CloudflareConfig, CloudflareDns};

/// A boxed future (the trait is used as `Arc<dyn DnsProvider>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the TXT records of a DNS-01 challenge go.
///
/// `host` is a record name without the trailing dot (`_acme-challenge.example.com`);
/// `value` is the base64url challenge digest. Both authorizations of a wildcard order
/// (`*.d` and `d`) use the same name with different values, so `set_txt` **adds** a
/// record and `clear_txt` removes every TXT record at the name.
pub trait DnsProvider: Send + Sync {
    /// Add the TXT record `value` at `host`.
    fn set_txt<'a>(&'a self, host: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>>;
    /// Remove every TXT record at `host`.
    fn clear_txt<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<(), DnsError>>;
}

/// Longest DNS name.
const MAX_NAME_LEN: usize = 253;
/// Longest TXT value we ever set (a challenge digest is 43 characters).
const MAX_VALUE_LEN: usize = 255;

fn truncated(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A record name: LDH labels (plus `_`), no trailing dot, at most 253 bytes.
pub(crate) fn check_host(host: &str) -> Result<(), DnsError> {
    let ok = !host.is_empty()
        && host.len() <= MAX_NAME_LEN
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid_if(ok, "host", host)
}

/// A TXT value: printable ASCII without quotes or backslashes, at most 255 bytes.
pub(crate) fn check_value(value: &str) -> Result<(), DnsError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_VALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    valid_if(ok, "value", value)
}

/// `Ok` when `ok`, else [`DnsError::Invalid`] naming `what` with (a prefix of) `value`.
fn valid_if(ok: bool, what: &'static str, value: &str) -> Result<(), DnsError> {
    if ok {
        Ok(())
    } else {
        Err(DnsError::Invalid {
            what,
            value: truncated(value),
        })
    }
}

/// Map a reqwest error of `op`.
pub(crate) fn transport(
    op: &'static str,
    timeout_secs: u64,
) -> impl Fn(reqwest::Error) -> DnsError {
    move |source| {
        if source.is_timeout() {
            DnsError::Timeout {
                op,
                secs: timeout_secs,
            }
        } else {
            DnsError::Transport { op, source }
        }
    }
}

/// Read a bounded body of `op`.
pub(crate) async fn body(
    op: &'static str,
    timeout_secs: u64,
    resp: reqwest::Response,
) -> Result<Vec<u8>, DnsError> {
    crate::http::read_bounded(resp, crate::consts::MAX_DNS_RESPONSE_LEN)
        .await
        .map_err(|e| match e {
            crate::http::ReadError::TooLarge(max) => DnsError::ResponseTooLarge { op, max },
            crate::http::ReadError::Transport(source) => transport(op, timeout_secs)(source),
        })
}

/// The start of an error body, for an error message.
pub(crate) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(crate::consts::MAX_ERROR_BODY_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_values_are_checked_before_any_request() {
        check_host("_acme-challenge.gw.example.com").unwrap();
        for bad in ["", "a..b", "a/b", "a b", "x.", "é.com", &"a".repeat(64)] {
            assert!(
                matches!(check_host(bad), Err(DnsError::Invalid { what: "host", .. })),
                "{bad:?}"
            );
        }
        check_value("abcDEF-_0123").unwrap();
        for bad in ["", "a\"b", "a b", "a\\b", &"x".repeat(256)] {
            assert!(
                matches!(
                    check_value(bad),
                    Err(DnsError::Invalid { what: "value", .. })
                ),
                "{bad:?}"
            );
        }
    }
}
