//! The crate's error type.

use crate::tee::TeeError;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a piece of TDX evidence or collateral was rejected.
///
/// Every security check of [`crate::Verifier::verify`] has its own variant, so callers
/// (and tests) can tell *why* a quote failed without looking at message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input was larger than its documented limit; nothing was parsed.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Which input.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The quote bytes are not a TDX quote dcap-qvl can parse.
    #[error("malformed quote: {0}")]
    MalformedQuote(String),
    /// The quote is not a TDX quote (e.g. an SGX enclave quote).
    #[error("not a TDX quote")]
    NotTdx,
    /// The event log is not valid JSON of the documented shape.
    #[error("malformed event log: {0}")]
    MalformedEventLog(String),
    /// An event's recorded digest differs from the digest of its name and payload.
    #[error("event {index} ({name}): recorded digest does not match its payload")]
    EventDigestMismatch {
        /// Position in the log.
        index: usize,
        /// Event name.
        name: String,
    },
    /// The runtime events do not follow the boot order of FORMATS.md.
    #[error("event {index}: expected {expected:?}, found {found:?}")]
    EventOrder {
        /// Position in the log.
        index: usize,
        /// The event the boot order requires here.
        expected: &'static str,
        /// The event found (empty when the log ended early).
        found: String,
    },
    /// A boot event's payload has the wrong size or shape.
    #[error("event {name}: {reason}")]
    EventPayload {
        /// Event name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Replaying the event log does not give the quoted RTMR3.
    #[error("RTMR3 replay mismatch: quoted {quoted}, replayed {replayed}")]
    Rtmr3Mismatch {
        /// RTMR3 in the quote (hex).
        quoted: String,
        /// RTMR3 from the event log (hex).
        replayed: String,
    },
    /// The quote's report data is not the expected 64 bytes.
    #[error("report data mismatch")]
    ReportDataMismatch,
    /// The TD runs in debug mode (TDATTRIBUTES.TUD.DEBUG or profiling bits set).
    #[error("debug TD rejected (TDATTRIBUTES {0})")]
    DebugTd(String),
    /// MRSIGNERSEAM is not zero: the TDX module is not Intel's.
    #[error("non-zero MRSIGNERSEAM {0}")]
    NonIntelTdxModule(String),
    /// The collateral's validity window does not contain the verification time.
    #[error(
        "collateral expired or not yet valid at {now}: valid from {not_before} until {not_after}"
    )]
    CollateralExpired {
        /// Verification time (unix seconds).
        now: u64,
        /// Start of the window (unix seconds).
        not_before: u64,
        /// End of the window (unix seconds).
        not_after: u64,
    },
    /// [`crate::Verifier::verify`] was called on a verifier without collateral.
    #[error("no collateral configured")]
    NoCollateral,
    /// The collateral itself is malformed (bad JSON, bad CRL, bad PEM).
    #[error("malformed collateral: {0}")]
    MalformedCollateral(String),
    /// The platform's TCB level is revoked.
    #[error("TCB status is Revoked")]
    Revoked,
    /// dcap-qvl rejected the quote: bad signature, broken chain, wrong root, CRL, FMSPC,
    /// QE identity, TCB level… The dcap-qvl error text is carried for diagnosis.
    #[error("quote verification failed: {0}")]
    QuoteVerification(String),
    /// The quote's PCK certificate chain does not verify to the trust root. Checked before
    /// any collateral is fetched for the platform the chain names, so nothing was fetched.
    #[error("PCK certificate chain does not verify to the trust root: {source}")]
    UntrustedPckChain {
        /// rustls-webpki's reason.
        source: webpki::Error,
    },
    /// Collateral had to be fetched, but the PCCS client's fetch budget
    /// ([`crate::PccsLimits`]) is spent; retry later.
    #[error(
        "collateral fetch for FMSPC {} refused: over the limit of {per_minute} PCCS fetches per minute",
        hex::encode_upper(.fmspc)
    )]
    PccsRateLimited {
        /// The platform's FMSPC.
        fmspc: [u8; 6],
        /// The configured sustained rate.
        per_minute: u32,
    },
    /// Collateral could not be fetched from a PCCS.
    #[error("collateral fetch from {url} failed: {reason}")]
    CollateralFetch {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An I/O error reading collateral or fixtures from disk.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An OS image manifest is not JSON of the documented shape.
    #[error("malformed OS image manifest")]
    MalformedManifest {
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An OS image manifest is not in its canonical form (compact, fields in order), so
    /// the hash of its bytes would not be its `os_image_hash`.
    #[error("OS image manifest is not canonical")]
    ManifestNotCanonical,
    /// The simulator could not build its PKI, quote or collateral.
    #[error("simulator: {0}")]
    Simulator(String),
    /// A TEE backend failed.
    #[error(transparent)]
    Tee(#[from] TeeError),
}

impl Error {
    /// True when retrying later (e.g. after fetching fresh collateral) might succeed:
    /// fetch failures, rate-limited fetches and expired collateral. Evidence failures are
    /// never retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::CollateralFetch { .. }
                | Error::PccsRateLimited { .. }
                | Error::CollateralExpired { .. }
        )
    }
}

/// [`Error::TooLarge`] when `len` is over `max`: the bound every parser checks first.
pub(crate) fn check_len(what: &'static str, len: usize, max: usize) -> Result<()> {
    if len > max {
        Err(Error::TooLarge { what, len, max })
    } else {
        Ok(())
    }
}
