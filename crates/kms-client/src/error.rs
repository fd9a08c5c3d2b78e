//! The crate's error type: one variant per way a KMS exchange fails, each keeping its
//! source.

use std::time::Duration;

use cairn_attestation::{ChainError, RaTlsError};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of an exchange ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The TCP connect.
    Connect,
    /// The TLS handshake.
    Handshake,
    /// Verifying the KMS's evidence (including a PCCS fetch of its collateral).
    Attestation,
    /// One request: sending it and reading the whole response.
    Request,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Handshake => "TLS handshake",
            Stage::Attestation => "KMS attestation",
            Stage::Request => "request",
        })
    }
}

/// Why talking to a KMS failed. `addr` is the `host:port` dialled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL does not parse.
    #[error("bad KMS URL {url:?}")]
    UrlParse {
        /// The URL given.
        url: String,
        /// The parser's error.
        #[source]
        source: url::ParseError,
    },
    /// The URL is not `https://host[:port][/prefix]`.
    #[error("bad KMS URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The TCP connection failed.
    #[error("connecting to the KMS at {addr}")]
    Connect {
        /// Where.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A stage did not finish within its timeout.
    #[error("{stage} with the KMS at {addr} timed out after {after:?}")]
    Timeout {
        /// Where.
        addr: String,
        /// Which stage.
        stage: Stage,
        /// The timeout that expired.
        after: Duration,
    },
    /// The TLS configuration could not be built (no protocol version in common with the
    /// crypto provider).
    #[error("building the TLS configuration")]
    TlsConfig {
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The client certificate could not be used (key and certificate do not match).
    #[error("the client certificate cannot be used")]
    ClientCert {
        /// rustls' error.
        #[source]
        source: rustls::Error,
    },
    /// The TLS handshake failed: the KMS does not hold its certificate key, it refused
    /// our client certificate, or the transport broke.
    #[error("TLS handshake with the KMS at {addr}")]
    Handshake {
        /// Where.
        addr: String,
        /// The transport error (a `rustls::Error` inside for TLS failures).
        #[source]
        source: std::io::Error,
    },
    /// The KMS presented no certificate.
    #[error("the KMS at {addr} presented no certificate")]
    NoServerCertificate {
        /// Where.
        addr: String,
    },
    /// The collateral for the KMS's quote could not be obtained from the PCCS.
    #[error("collateral for the quote of the KMS at {addr}")]
    Collateral {
        /// Where.
        addr: String,
        /// The attestation error.
        #[source]
        source: cairn_attestation::Error,
    },
    /// The KMS's certificate failed RA-TLS verification: not an RA-TLS certificate,
    /// usage not `kms:rpc`, quote or event log rejected, expired, …
    #[error("the KMS at {addr} failed RA-TLS verification")]
    KmsEvidence {
        /// Where.
        addr: String,
        /// The exact check that failed.
        #[source]
        source: RaTlsError,
    },
    /// The KMS's TLS certificate is not issued by the root CA it returned (or that the
    /// caller trusts): a TDX VM with a valid `kms:rpc` quote that is not a node of that
    /// KMS, or a malformed root.
    #[error("the KMS at {addr} is not rooted in the KMS root CA")]
    NotRooted {
        /// Where.
        addr: String,
        /// The chain check that failed.
        #[source]
        source: ChainError,
    },
    /// A `sign-cert` chain is not leaf → app CA → the root, for the expected app.
    #[error("the certificate chain from the KMS at {addr} is refused")]
    BadChain {
        /// Where.
        addr: String,
        /// The chain check that failed.
        #[source]
        source: ChainError,
    },
    /// The `sign-cert` leaf does not certify the key of the client certificate.
    #[error("the leaf from the KMS at {addr} does not certify the requested key")]
    LeafKeyMismatch {
        /// Where.
        addr: String,
    },
    /// The KMS's OS image manifest (`meta`) is malformed or not canonical.
    #[error("the OS image manifest of the KMS at {addr}")]
    KmsImage {
        /// Where.
        addr: String,
        /// The manifest error.
        #[source]
        source: cairn_attestation::Error,
    },
    /// The KMS's OS image manifest does not match the MRTD/RTMR0-2 of its verified quote.
    #[error("the OS image manifest of the KMS at {addr} does not match its quote")]
    KmsImageMismatch {
        /// Where.
        addr: String,
    },
    /// `KmsAuth.isKmsAllowed` denied the KMS (the source carries the contract's check and
    /// reason), or the chain could not be read (fail closed).
    #[error("the chain does not allow the KMS at {addr}")]
    KmsPolicy {
        /// Where.
        addr: String,
        /// The chain client's error (`Denied { check, reason }` for a denial).
        #[source]
        source: Box<cairn_onchain::Error>,
    },
    /// The call needs a client certificate and the connection was opened without one.
    #[error("this call needs a client certificate; the connection has none")]
    NoClientCert,
    /// The HTTP exchange failed.
    #[error("HTTP exchange with the KMS at {addr}")]
    Http {
        /// Where.
        addr: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// Reading the response body failed.
    #[error("reading the response of the KMS at {addr}")]
    Body {
        /// Where.
        addr: String,
        /// The body error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The response body is larger than the limit; the rest was not read.
    #[error("the response of the KMS at {addr} exceeds {max} bytes")]
    ResponseTooLarge {
        /// Where.
        addr: String,
        /// The limit.
        max: usize,
    },
    /// The KMS answered with an error status (the API's `{"error":{code,message}}`).
    #[error("the KMS at {addr} returned {status}: {code}: {message}")]
    Status {
        /// Where.
        addr: String,
        /// HTTP status.
        status: u16,
        /// Error code (`denied.compose_hash`, `unavailable.chain`, …; `unparsed` when the
        /// body was not the API's error shape).
        code: String,
        /// Message (for denials, the contract's reason).
        message: String,
    },
    /// The response is not the documented JSON.
    #[error("the response of the KMS at {addr} to {path} is not the documented JSON")]
    Decode {
        /// Where.
        addr: String,
        /// The request path.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be built (a path that is not a valid URI, a body that does
    /// not serialise).
    #[error("building the request to {path}")]
    Request {
        /// The request path.
        path: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// True when asking again later (or another KMS node) may succeed: transport
    /// failures, timeouts, a collateral fetch that failed, and `5xx` answers. Policy
    /// denials, evidence and chain failures, `4xx` answers and malformed responses are
    /// not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::Handshake { .. }
            | Error::Http { .. }
            | Error::Body { .. } => true,
            Error::Collateral { source, .. } => source.is_retryable(),
            Error::KmsPolicy { source, .. } => source.is_retryable(),
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The RA-TLS check that rejected the KMS's certificate, if that is what failed.
    pub fn ratls_error(&self) -> Option<&RaTlsError> {
        match self {
            Error::KmsEvidence { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The HTTP status and error code of an error answer.
    pub fn status(&self) -> Option<(u16, &str)> {
        match self {
            Error::Status { status, code, .. } => Some((*status, code)),
            _ => None,
        }
    }
}
