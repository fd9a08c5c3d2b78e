//! The crate's errors: [`Error`] for everything, [`DnsError`] for a DNS provider's call,
//! [`MonitorError`] for a failed check of a published certificate key.

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a DNS provider call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The call did not finish within its timeout.
    #[error("{op} timed out after {secs} s")]
    Timeout {
        /// The operation (`set_txt`, `clear_txt`, `list`).
        op: &'static str,
        /// The timeout.
        secs: u64,
    },
    /// The HTTP request failed below the API (connect, TLS, I/O).
    #[error("{op}: request failed")]
    Transport {
        /// The operation.
        op: &'static str,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The provider answered with a non-success status.
    #[error("{op}: HTTP {status}: {body}")]
    Status {
        /// The operation.
        op: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the response body (at most [`crate::consts::MAX_ERROR_BODY_CHARS`]).
        body: String,
    },
    /// The API said `success: false` (Cloudflare), with its error codes and messages.
    #[error("{op}: API error: {}", format_api_errors(.errors))]
    Api {
        /// The operation.
        op: &'static str,
        /// `(code, message)` pairs as the API sent them.
        errors: Vec<(i64, String)>,
    },
    /// The response was larger than the bound.
    #[error("{op}: response larger than {max} bytes")]
    ResponseTooLarge {
        /// The operation.
        op: &'static str,
        /// The bound.
        max: usize,
    },
    /// The response did not parse.
    #[error("{op}: malformed response")]
    Malformed {
        /// The operation.
        op: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A host name or value the provider would not accept (checked before any request).
    #[error("invalid {what}: {value:?}")]
    Invalid {
        /// `host` or `value`.
        what: &'static str,
        /// The offending input (truncated).
        value: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
}

fn format_api_errors(errors: &[(i64, String)]) -> String {
    if errors.is_empty() {
        return "no error details".to_owned();
    }
    errors
        .iter()
        .map(|(c, m)| format!("{c} {m}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a published certificate key did not verify (what a monitor reports).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The served certificate's key is not among the published keys.
    #[error("the served certificate key {spki_sha256} is not published")]
    KeyNotPublished {
        /// SHA-256 of the served SubjectPublicKeyInfo, hex.
        spki_sha256: String,
    },
    /// The published entry's key is not the served certificate's key.
    #[error("the published key does not match the served certificate")]
    KeyMismatch,
    /// The published document is larger than the bound.
    #[error("the published document is larger than {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// The published document does not parse.
    #[error("the published document is malformed")]
    MalformedDocument(#[source] serde_json::Error),
    /// The published entry has no quote.
    #[error("the published key has no quote")]
    NoQuote,
    /// The published quote document does not parse.
    #[error("the published quote document is malformed")]
    MalformedQuote(#[source] serde_json::Error),
    /// Hex in the published entry does not decode (or is too long).
    #[error("malformed hex in {field}")]
    MalformedHex {
        /// The field.
        field: &'static str,
    },
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    MalformedCertificate(String),
    /// The quote or its event log failed verification, or the report data does not bind
    /// the key (`Error::ReportDataMismatch` inside).
    #[error("the quote does not verify")]
    Quote(#[source] cairn_attestation::Error),
    /// The quote verifies but was made by another app than the gateway.
    #[error("the quote is from app {got}, not the gateway app {expected}")]
    WrongApp {
        /// The gateway's app id, hex.
        expected: String,
        /// The quoted app id, hex.
        got: String,
    },
}

/// Every error of the crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A DNS provider call failed.
    #[error("DNS provider: {op} {host}")]
    Dns {
        /// `set_txt` or `clear_txt`.
        op: &'static str,
        /// The record name.
        host: String,
        /// What failed.
        #[source]
        source: DnsError,
    },
    /// The ACME server or the protocol exchange failed.
    #[error("ACME: {context}")]
    Acme {
        /// What was being done.
        context: &'static str,
        /// instant-acme's error (problem documents from the CA are inside, as data).
        #[source]
        source: instant_acme::Error,
    },
    /// An authorization ended `invalid`: the CA could not validate the DNS-01 challenge.
    #[error("ACME authorization for {identifier} is invalid: {problem}")]
    AuthorizationInvalid {
        /// The identifier (`*.example.com` or `example.com`).
        identifier: String,
        /// The CA's problem type and detail.
        problem: String,
    },
    /// The order ended in a state other than the one expected.
    #[error("ACME order is {status} ({problem})")]
    OrderFailed {
        /// The order's status.
        status: String,
        /// The CA's problem, if it sent one.
        problem: String,
    },
    /// The CA offered no DNS-01 challenge for an authorization.
    #[error("the CA offers no dns-01 challenge for {identifier}")]
    NoDns01Challenge {
        /// The identifier.
        identifier: String,
    },
    /// The whole issuance did not finish within the order timeout.
    #[error("issuance did not finish within {secs} s")]
    IssuanceTimeout {
        /// The timeout.
        secs: u64,
    },
    /// The certificate the CA returned is not acceptable (wrong key, names, validity, or
    /// it does not parse).
    #[error("the issued certificate is not acceptable: {0}")]
    BadCertificate(String),
    /// Key generation, CSR or key encoding failed.
    #[error("key or CSR: {0}")]
    Key(String),
    /// The guest agent could not be reached or answered badly.
    #[error("guest agent {method}: {reason}")]
    Agent {
        /// The agent method (`GetKey`, `GetQuote`).
        method: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The guest agent did not answer within its timeout.
    #[error("guest agent {method} timed out after {secs} s")]
    AgentTimeout {
        /// The agent method.
        method: &'static str,
        /// The timeout.
        secs: u64,
    },
    /// A configuration value is invalid (the key is named).
    #[error("config {key}: {reason}")]
    Config {
        /// The config key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// Reading or writing the state directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A state file does not parse.
    #[error("{path} is malformed: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A published key failed a monitor check.
    #[error("monitor check failed")]
    Monitor(#[from] MonitorError),
}

impl Error {
    pub(crate) fn acme(context: &'static str) -> impl FnOnce(instant_acme::Error) -> Error {
        move |source| Error::Acme { context, source }
    }
}
