//! The guest → host channel (dstack's "host API"): a guest reports its boot progress to
//! the VMM that runs it, which shows it in the CVM's status.
//!
//! HTTP/1.1 with a JSON body over a per-CVM unix socket (process backend; the address is
//! `sys-config.json`'s `host_api_url`, `unix:/path`): `POST /prpc/HostApi.Notify` with a
//! [`Notification`], answered `204`. Named after dstack's `HostApi.Notify(event, payload)`.
//!
//! Trust: none, in either direction. The guest sends nothing secret (step names, a log
//! receipt, exit codes, error messages) and never waits for or acts on the answer; the
//! VMM displays what it receives and acts on nothing in it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::bounded;

/// `POST`: one report.
pub const PATH_NOTIFY: &str = "/prpc/HostApi.Notify";
/// `GET`: which host this is ([`HostInfo`]).
pub const PATH_INFO: &str = "/prpc/HostApi.Info";

/// Longest event name.
pub const MAX_EVENT_LEN: usize = 64;
/// Longest payload.
pub const MAX_PAYLOAD_LEN: usize = 2048;
/// Largest request body the host accepts.
pub const MAX_BODY: usize = 8 * 1024;

/// A boot step was taken: the payload names it (e.g. `measured compose-hash`).
pub const EVENT_BOOT_PROGRESS: &str = "boot.progress";
/// A KMS released the keys: the payload is the receipt's summary
/// (`kms=<url> log_index=<n> policy_block=<n>`).
pub const EVENT_BOOT_RECEIPT: &str = "boot.receipt";
/// The app was started: the payload names the runner.
pub const EVENT_APP_STARTED: &str = "app.started";
/// The app exited: the payload is its exit status.
pub const EVENT_APP_EXITED: &str = "app.exited";
/// The boot failed: the payload is the error (names the failed step, never a secret).
pub const EVENT_BOOT_ERROR: &str = "boot.error";

/// `POST /prpc/HostApi.Notify` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// The event name (`boot.progress`, `boot.receipt`, `app.started`, `app.exited`,
    /// `boot.error`; others are shown as they are).
    #[serde(with = "bounded::Str::<MAX_EVENT_LEN>")]
    pub event: String,
    /// The payload, free text.
    #[serde(with = "bounded::Str::<MAX_PAYLOAD_LEN>")]
    pub payload: String,
}

impl Notification {
    /// A notification, with `payload` cut at [`MAX_PAYLOAD_LEN`] on a char boundary.
    /// (`event` likewise at [`MAX_EVENT_LEN`]).
    pub fn new(event: &str, payload: impl Into<String>) -> Self {
        Notification {
            event: cut(event.to_owned(), MAX_EVENT_LEN),
            payload: cut(payload.into(), MAX_PAYLOAD_LEN),
        }
    }
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// `GET /prpc/HostApi.Info` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// `cairn-vmm`.
    pub name: String,
    /// The VMM's version.
    pub version: String,
}

/// A parsed `host_api_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostApiAddr {
    /// `unix:/absolute/path`: a unix socket (the process backend).
    Unix(PathBuf),
    /// `vsock://CID:PORT` (dstack's form; QEMU guests).
    Vsock {
        /// Context id (2 = the host).
        cid: u32,
        /// Port.
        port: u32,
    },
}

/// Why a `host_api_url` was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostApiAddrError {
    /// Neither `unix:/…` nor `vsock://CID:PORT`.
    #[error("unsupported host_api_url scheme (expected unix:/path or vsock://CID:PORT)")]
    Scheme,
    /// `unix:` with a relative or empty path.
    #[error("unix: host_api_url needs an absolute path")]
    RelativePath,
    /// `vsock://` whose CID or port is not a number.
    #[error("vsock: host_api_url needs numeric CID and port")]
    BadVsock,
}

impl HostApiAddr {
    /// Parse `unix:/path` or `vsock://CID:PORT` (with an optional trailing path, ignored).
    pub fn parse(url: &str) -> Result<Self, HostApiAddrError> {
        if let Some(path) = url.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(HostApiAddrError::RelativePath);
            }
            return Ok(HostApiAddr::Unix(path));
        }
        if let Some(rest) = url.strip_prefix("vsock://") {
            let authority = rest.split('/').next().unwrap_or_default();
            let (cid, port) = authority
                .split_once(':')
                .ok_or(HostApiAddrError::BadVsock)?;
            return Ok(HostApiAddr::Vsock {
                cid: cid.parse().map_err(|_| HostApiAddrError::BadVsock)?,
                port: port.parse().map_err(|_| HostApiAddrError::BadVsock)?,
            });
        }
        Err(HostApiAddrError::Scheme)
    }

    /// The URL form ([`HostApiAddr::parse`] reads it back).
    pub fn to_url(&self) -> String {
        match self {
            HostApiAddr::Unix(p) => format!("unix:{}", p.display()),
            HostApiAddr::Vsock { cid, port } => format!("vsock://{cid}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_round_trip() {
        let a = HostApiAddr::parse("unix:/run/cvm/host-api.sock").unwrap();
        assert_eq!(a, HostApiAddr::Unix("/run/cvm/host-api.sock".into()));
        assert_eq!(HostApiAddr::parse(&a.to_url()).unwrap(), a);
        assert_eq!(
            HostApiAddr::parse("vsock://2:10000/api").unwrap(),
            HostApiAddr::Vsock {
                cid: 2,
                port: 10000
            }
        );
        assert_eq!(
            HostApiAddr::parse("unix:relative.sock").unwrap_err(),
            HostApiAddrError::RelativePath
        );
        assert_eq!(
            HostApiAddr::parse("vsock://two:1").unwrap_err(),
            HostApiAddrError::BadVsock
        );
        assert_eq!(
            HostApiAddr::parse("http://10.0.0.1/").unwrap_err(),
            HostApiAddrError::Scheme
        );
    }

    #[test]
    fn notifications_are_bounded() {
        let n = Notification::new(EVENT_BOOT_ERROR, "é".repeat(MAX_PAYLOAD_LEN));
        assert!(n.payload.len() <= MAX_PAYLOAD_LEN);
        assert!(n.payload.chars().all(|c| c == 'é'));
        let body = serde_json::json!({"event": "x".repeat(MAX_EVENT_LEN + 1), "payload": ""});
        assert!(serde_json::from_value::<Notification>(body).is_err());
        let unknown = serde_json::json!({"event": "a", "payload": "", "extra": 1});
        assert!(serde_json::from_value::<Notification>(unknown).is_err());
    }
}
