//! The crate's error type, and [`with_causes`], the one way Cairn spells out an error's
//! `source()` chain in a message.

/// Errors of the signature chain and the env-var encryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A recoverable signature is not 65 bytes `r ‖ s ‖ v` with `v ∈ {0, 1}`, or `r`/`s`
    /// are out of range or `s` is high.
    #[error("malformed recoverable signature")]
    MalformedSignature,
    /// No public key could be recovered from the signature and message.
    #[error("signature does not recover to a public key")]
    RecoveryFailed,
    /// The recovered signer is not the expected key.
    #[error("signature was made by an unexpected key")]
    WrongSigner,
    /// A public key is not a valid SEC1 point.
    #[error("invalid secp256k1 public key")]
    InvalidPublicKey,
    /// A derived secret is zero or not below the curve order (probability about 2^-128).
    #[error("derived secret is not a valid secp256k1 scalar")]
    DerivedKeyOutOfRange,
    /// Signing failed inside the ECDSA implementation.
    #[error("signing failed")]
    Signing,
    /// A signed timestamp is older than the caller accepts.
    #[error("timestamp {timestamp} is more than {max_age}s older than now ({now})")]
    StaleTimestamp {
        /// The signed timestamp.
        timestamp: u64,
        /// The caller's clock.
        now: u64,
        /// The largest accepted age in seconds.
        max_age: u64,
    },
    /// A signed timestamp lies further in the future than the allowed clock skew.
    #[error("timestamp {timestamp} is in the future (now {now})")]
    FutureTimestamp {
        /// The signed timestamp.
        timestamp: u64,
        /// The caller's clock.
        now: u64,
    },
    /// An encrypted env blob is larger than [`crate::env::MAX_ENCRYPTED_ENV_LEN`].
    #[error("encrypted env of {len} bytes exceeds the limit of {max}")]
    EnvTooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An encrypted env blob is too short to hold its header and tag.
    #[error("encrypted env is truncated")]
    EnvTruncated,
    /// The X25519 exchange produced the all-zero secret (a low-order ephemeral key).
    #[error("ephemeral key is a low-order point")]
    EnvLowOrderKey,
    /// AES-GCM authentication failed: wrong key, wrong app id or tampered bytes.
    #[error("env decryption failed (wrong key, wrong app id or tampered data)")]
    EnvDecrypt,
    /// The plaintext is not the JSON `{"env":[{"key","value"}]}`.
    #[error("env plaintext is not valid: {0}")]
    EnvJson(String),
    /// An env var name does not match `^[A-Za-z_][A-Za-z0-9_]*$` or is too long.
    #[error("invalid env var name {0:?}")]
    EnvInvalidName(String),
    /// The same env var name appears twice.
    #[error("duplicate env var name {0:?}")]
    EnvDuplicateName(String),
    /// More env vars than [`crate::env::MAX_ENV_VARS`].
    #[error("{count} env vars exceed the limit of {max}")]
    EnvTooManyVars {
        /// Number of vars in the input.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `err` and its `source()` chain, joined by `": "` (what `anyhow`'s `{:#}` prints), for
/// messages that must carry the whole cause: status fields, log lines, error texts that
/// cross a crate boundary as strings.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::with_causes;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn with_causes_joins_the_whole_source_chain_in_order() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(with_causes(&e), "outer: middle: inner");
        assert_eq!(with_causes(&std::io::Error::other("alone")), "alone");
    }
}
