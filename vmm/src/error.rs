//! The crate's one error type. Every variant knows its HTTP status and error code
//! (`reject.rs` holds the table), so a handler returns `Result<_, Error>` and the answer
//! names what went wrong.

use std::path::PathBuf;

use cairn_onchain::Check;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a conflict is about (409).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Conflict {
    /// Another CVM has this name.
    Name,
    /// A host port is taken (by another CVM or another process on the host).
    Port,
    /// The CVM is not in a state that allows the operation (e.g. start while running).
    State,
    /// A configured limit (CVM count, vCPUs, memory) is reached.
    Limit,
    /// An upgrade is already waiting for approval.
    UpgradePending,
}

impl Conflict {
    /// The error code, e.g. `conflict.port`.
    pub fn code(self) -> &'static str {
        match self {
            Conflict::Name => "conflict.name",
            Conflict::Port => "conflict.port",
            Conflict::State => "conflict.state",
            Conflict::Limit => "conflict.limit",
            Conflict::UpgradePending => "conflict.upgrade_pending",
        }
    }
}

/// Everything that can go wrong in the VMM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; `key` names the setting.
    #[error("config {key}: {reason}")]
    Config {
        /// The dotted key, e.g. `api.tcp`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A request field is invalid (400).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, e.g. `compose`, `ports[1].host_port`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The request body is not JSON of the expected shape, or too large (400 / 413).
    #[error("bad request body: {reason}")]
    Body {
        /// Whether it exceeded the body limit (413).
        too_large: bool,
        /// The parser's message.
        reason: String,
    },
    /// `app-compose.json` is larger than the guest accepts (413).
    #[error("app-compose.json is {len} bytes, larger than the limit of {max}")]
    ComposeTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No OS image of that reference is configured (400).
    #[error("unknown OS image {image:?} (known: {known})")]
    UnknownImage {
        /// The reference asked for.
        image: String,
        /// The known references, comma-separated.
        known: String,
    },
    /// No CVM with that id or name (404).
    #[error("no CVM {0:?}")]
    NotFound(String),
    /// A route that does not exist (404).
    #[error("no route {0}")]
    NoRoute(String),
    /// The request conflicts with the VMM's state (409).
    #[error("{message}")]
    Conflict {
        /// What the conflict is about.
        kind: Conflict,
        /// In words.
        message: String,
    },
    /// The chain pre-flight refused: `check` names the failed check, `reason` is the
    /// contract's reason string (plus, for a scheduled hash, when it activates) (403).
    #[error("denied by on-chain policy ({check}): {reason}")]
    Denied {
        /// The failed check.
        check: Check,
        /// The contract's reason.
        reason: String,
    },
    /// The chain could not be asked or answered wrongly (503 when retryable, else 500).
    #[error("chain: {0}")]
    Chain(#[from] cairn_onchain::Error),
    /// A missing or wrong bearer token (401).
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// Too many concurrent requests of a kind (e.g. log followers) (503).
    #[error("busy: {0}")]
    Busy(&'static str),
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`write`, `read`, `rename`, …).
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file the VMM wrote is unreadable (corrupt manifest or state).
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backend cannot run on this host (e.g. qemu without TDX).
    #[error("backend {backend} unavailable: {reason}")]
    BackendUnavailable {
        /// `process` or `qemu`.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// Starting or stopping a guest failed.
    #[error("{op} failed: {reason}")]
    Process {
        /// `spawn`, `stop`, …
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// Another VMM holds the state directory.
    #[error("state directory {} is in use by another cairn-vmm", .0.display())]
    Locked(PathBuf),
}

impl From<cairn_service::ConfigError> for Error {
    fn from(e: cairn_service::ConfigError) -> Self {
        Error::Config {
            key: e.key,
            reason: e.reason,
        }
    }
}

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Conflict`].
    pub fn conflict(kind: Conflict, message: impl Into<String>) -> Self {
        Error::Conflict {
            kind,
            message: message.into(),
        }
    }

    /// An [`Error::Config`].
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether retrying later may succeed (chain unavailable, busy).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Chain(e) => e.is_retryable(),
            Error::Busy(_) => true,
            _ => false,
        }
    }
}
