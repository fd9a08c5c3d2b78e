//! The crate's one error type, and the typed policy checks a denial names.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, B256};
use alloy::transports::{RpcError, TransportError, TransportErrorKind};

use crate::bindings::{AppAuth, CairnGovernor, KmsAuth, TimelockController};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which policy check denied a request.
///
/// Mapped from the exact reason strings that `KmsAuth.isAppAllowed`,
/// `AppAuth.isAppAllowed` and `KmsAuth.isKmsAllowed` return (docs/contracts.md).
/// The reason string itself travels next to it in [`Error::Denied`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// `"App not registered"`: the app id is not in the KmsAuth registry.
    AppNotRegistered,
    /// `"OS image is not allowed"`.
    OsImage,
    /// `"TCB status not acceptable"` (KmsAuth TCB policy).
    TcbStatus,
    /// `"Advisory not tolerated"`.
    Advisory,
    /// `"Compose hash not allowed"`: the compose hash is not listed.
    ComposeHash,
    /// `"Compose hash not yet active"`: listed, but its activation time is in the future.
    ComposeHashNotActive,
    /// `"Device not allowed"`.
    Device,
    /// `"TCB status is not UpToDate"` (the app requires an up-to-date TCB).
    TcbNotUpToDate,
    /// `"App contract call failed"`: the app's policy contract reverted, ran out of gas or
    /// returned malformed data.
    AppContractFailed,
    /// `"KMS aggregated MR not allowed"`.
    KmsMr,
    /// `"KMS device not allowed"`.
    KmsDevice,
    /// Any other reason, e.g. a custom app contract's own reason string (or none).
    Other,
}

/// The reason strings the contracts return, exactly as docs/contracts.md fixes them.
pub mod reasons {
    /// KmsAuth check 1.
    pub const APP_NOT_REGISTERED: &str = "App not registered";
    /// KmsAuth check 2 (and KMS check 3).
    pub const OS_IMAGE: &str = "OS image is not allowed";
    /// KmsAuth check 3 (and KMS check 4).
    pub const TCB_STATUS: &str = "TCB status not acceptable";
    /// KmsAuth check 4 (and KMS check 5).
    pub const ADVISORY: &str = "Advisory not tolerated";
    /// AppAuth check 1.
    pub const COMPOSE_HASH: &str = "Compose hash not allowed";
    /// AppAuth check 2.
    pub const COMPOSE_HASH_NOT_ACTIVE: &str = "Compose hash not yet active";
    /// AppAuth check 3.
    pub const DEVICE: &str = "Device not allowed";
    /// AppAuth check 4.
    pub const TCB_NOT_UP_TO_DATE: &str = "TCB status is not UpToDate";
    /// KmsAuth check 5': the app contract misbehaved.
    pub const APP_CONTRACT_FAILED: &str = "App contract call failed";
    /// KMS check 1.
    pub const KMS_MR: &str = "KMS aggregated MR not allowed";
    /// KMS check 2.
    pub const KMS_DEVICE: &str = "KMS device not allowed";
}

impl Check {
    /// Maps a contract reason string to its check; unknown reasons are [`Check::Other`].
    pub fn from_reason(reason: &str) -> Self {
        use reasons::*;
        match reason {
            APP_NOT_REGISTERED => Self::AppNotRegistered,
            OS_IMAGE => Self::OsImage,
            TCB_STATUS => Self::TcbStatus,
            ADVISORY => Self::Advisory,
            COMPOSE_HASH => Self::ComposeHash,
            COMPOSE_HASH_NOT_ACTIVE => Self::ComposeHashNotActive,
            DEVICE => Self::Device,
            TCB_NOT_UP_TO_DATE => Self::TcbNotUpToDate,
            APP_CONTRACT_FAILED => Self::AppContractFailed,
            KMS_MR => Self::KmsMr,
            KMS_DEVICE => Self::KmsDevice,
            _ => Self::Other,
        }
    }

    /// A stable machine-readable code, e.g. `denied.compose_hash` (used in 403 bodies).
    pub fn code(self) -> &'static str {
        match self {
            Self::AppNotRegistered => "denied.app_not_registered",
            Self::OsImage => "denied.os_image",
            Self::TcbStatus => "denied.tcb_status",
            Self::Advisory => "denied.advisory",
            Self::ComposeHash => "denied.compose_hash",
            Self::ComposeHashNotActive => "denied.compose_hash_not_active",
            Self::Device => "denied.device",
            Self::TcbNotUpToDate => "denied.tcb_not_up_to_date",
            Self::AppContractFailed => "denied.app_contract_failed",
            Self::KmsMr => "denied.kms_mr",
            Self::KmsDevice => "denied.kms_device",
            Self::Other => "denied.other",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A contract revert, decoded into the generated custom-error enum of the contract that
/// was called when its revert data matches one of its errors.
#[derive(Debug)]
#[non_exhaustive]
pub enum Revert {
    /// A `KmsAuth` custom error (including inherited OpenZeppelin errors).
    KmsAuth(KmsAuth::KmsAuthErrors),
    /// An `AppAuth` custom error (including inherited OpenZeppelin errors).
    AppAuth(AppAuth::AppAuthErrors),
    /// A `CairnGovernor` custom error.
    Governor(CairnGovernor::CairnGovernorErrors),
    /// A `TimelockController` custom error.
    Timelock(TimelockController::TimelockControllerErrors),
    /// Revert data that matched none of the called contract's errors (may be empty).
    Undecoded(Bytes),
}

impl std::fmt::Display for Revert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KmsAuth(e) => write!(f, "KmsAuth: {e:?}"),
            Self::AppAuth(e) => write!(f, "AppAuth: {e:?}"),
            Self::Governor(e) => write!(f, "CairnGovernor: {e:?}"),
            Self::Timelock(e) => write!(f, "TimelockController: {e:?}"),
            Self::Undecoded(data) => write!(f, "undecoded revert data {data}"),
        }
    }
}

/// Everything that can go wrong talking to the chain.
///
/// Three classes matter to callers: the chain could not be asked, or not trustworthily
/// ([`Error::is_retryable`]: `Unreachable`, `Timeout`, `Rpc`, `ChainDisagreement`,
/// `NoQuorum`, `StaleHead`, and `PolicyHead` wrapping one of them), the chain said no
/// ([`Error::Denied`], [`Error::Revert`]), and the client is set up wrongly
/// ([`Error::ChainIdMismatch`], [`Error::InsecureRpc`], [`Error::Misconfigured`]). None
/// of them is ever an allow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The RPC endpoint could not be reached (connection refused, HTTP failure, …).
    #[error("chain RPC unreachable during {op}: {source}")]
    Unreachable {
        /// The operation that was attempted.
        op: &'static str,
        /// The transport failure.
        #[source]
        source: Box<TransportError>,
    },
    /// The RPC call did not finish within the configured per-call timeout.
    #[error("chain RPC {op} timed out after {after:?}")]
    Timeout {
        /// The operation that was attempted.
        op: &'static str,
        /// The configured timeout.
        after: Duration,
    },
    /// The node answered with a JSON-RPC error that is not a revert (unknown block, rate
    /// limit, internal error, …).
    #[error("chain RPC {op} failed with code {code}: {message}")]
    Rpc {
        /// The operation that was attempted.
        op: &'static str,
        /// JSON-RPC error code.
        code: i64,
        /// JSON-RPC error message.
        message: String,
    },
    /// The endpoint serves a different chain than configured.
    #[error("chain id mismatch: expected {expected}, endpoint reports {actual}")]
    ChainIdMismatch {
        /// The configured chain id.
        expected: u64,
        /// The chain id the endpoint reported.
        actual: u64,
    },
    /// The policy contracts denied the request; `reason` is the contract's exact string.
    #[error("denied by on-chain policy ({check}): {reason:?}")]
    Denied {
        /// The typed check, mapped from `reason`.
        check: Check,
        /// The contract's reason string, unchanged.
        reason: String,
    },
    /// The client or the deployment is set up wrongly (no contract at an address, no
    /// signer for a transaction, a bad parameter, …).
    #[error("misconfigured: {0}")]
    Misconfigured(String),
    /// A call or transaction reverted.
    #[error("{op} reverted: {revert}")]
    Revert {
        /// The operation that was attempted.
        op: &'static str,
        /// The decoded revert (boxed: the generated error enums are large).
        revert: Box<Revert>,
    },
    /// A mined transaction failed (status 0) without a revert seen during estimation.
    #[error("transaction {tx_hash} for {op} failed on chain")]
    TransactionFailed {
        /// The operation that was attempted.
        op: &'static str,
        /// The transaction hash.
        tx_hash: B256,
    },
    /// A transaction succeeded but did not emit the event it must emit.
    #[error("transaction {tx_hash} emitted no {event} event")]
    MissingEvent {
        /// The event that was expected.
        event: &'static str,
        /// The transaction hash.
        tx_hash: B256,
    },
    /// The contract at an address returned no data: it is not the expected contract.
    #[error("{op}: no contract code answered at {address}")]
    NoContract {
        /// The operation that was attempted.
        op: &'static str,
        /// The address called.
        address: Address,
    },
    /// ABI encoding or decoding failed (malformed data from the node or a contract).
    #[error("ABI decoding failed during {op}: {source}")]
    Decode {
        /// The operation that was attempted.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: alloy::sol_types::Error,
    },
    /// Any other contract-binding failure (unlikely: malformed node responses).
    #[error("{op}: {message}")]
    Contract {
        /// The operation that was attempted.
        op: &'static str,
        /// A description of the failure.
        message: String,
    },
    /// A plain-HTTP RPC URL to a host that is not loopback, without
    /// `allow_insecure_rpc`. Refused before anything is sent.
    #[error(
        "refusing plain-HTTP RPC endpoint {endpoint}: it is not loopback, so whoever is on \
         the network path (e.g. the CVM's host) could answer isAppAllowed, the block hash \
         and every policy read; use https://, or set allow_insecure_rpc = true to accept \
         that risk"
    )]
    InsecureRpc {
        /// The endpoint (`scheme://host:port`, no path or credentials).
        endpoint: String,
    },
    /// Endpoints answered the same question differently: one of them lies, lags behind a
    /// reorg, or serves another chain. Nothing is used; ask again later.
    #[error("RPC endpoints disagree on {what}: {}", endpoints.join(", "))]
    ChainDisagreement {
        /// The endpoints whose answers conflict (`scheme://host:port`).
        endpoints: Vec<String>,
        /// What was asked (operation and block).
        what: String,
    },
    /// Fewer than `needed` endpoints answered alike (the others failed); `source` is the
    /// first endpoint failure.
    #[error("no RPC quorum for {what}: {agreeing} of {needed} endpoints answered ({source})")]
    NoQuorum {
        /// What was asked.
        what: String,
        /// The configured quorum.
        needed: usize,
        /// How many endpoints gave the answer that came closest.
        agreeing: usize,
        /// The first endpoint failure.
        #[source]
        source: Box<Error>,
    },
    /// The chain head (by its block timestamp) is older than the configured bound: the
    /// endpoints are stuck or lagging, and policy must not freeze at an old block.
    #[error("chain head {number} is {age:?} old, more than the allowed {max:?}: the RPC endpoints are stuck or lagging")]
    StaleHead {
        /// The head block number.
        number: u64,
        /// Its age at the client's clock.
        age: Duration,
        /// The configured bound.
        max: Duration,
    },
    /// The background [`PolicyHead`](crate::PolicyHead) could not advance the pinned
    /// block; `source` says why. Releases fail until it advances again.
    #[error("policy head unavailable: {source}")]
    PolicyHead {
        /// Why the last advance failed (shared by every caller that sees it).
        #[source]
        source: Arc<Error>,
    },
}

/// `Error::as_*_error`: the decoded custom error of one contract, if this is one.
macro_rules! revert_accessors {
    ($($(#[$doc:meta])* $name:ident => $variant:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Option<&$ty> {
                match self.as_revert() {
                    Some(Revert::$variant(e)) => Some(e),
                    _ => None,
                }
            }
        )*
    };
}

impl Error {
    /// True when asking again later (or another node) may succeed: the chain was not
    /// reachable, too slow, or refused to answer. A retryable error is never an allow.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::Rpc { .. }
            | Self::ChainDisagreement { .. }
            | Self::NoQuorum { .. }
            | Self::StaleHead { .. } => true,
            Self::PolicyHead { source } => source.is_retryable(),
            _ => false,
        }
    }

    /// The error itself, or for [`Error::PolicyHead`] the failure it wraps (what a
    /// service maps to a status code).
    pub fn cause(&self) -> &Error {
        match self {
            Self::PolicyHead { source } => source.cause(),
            other => other,
        }
    }

    /// True when endpoints gave conflicting answers ([`Error::ChainDisagreement`], also
    /// behind [`Error::PolicyHead`]).
    pub fn is_disagreement(&self) -> bool {
        matches!(self.cause(), Self::ChainDisagreement { .. })
    }

    /// True for a policy denial.
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Denied { .. })
    }

    /// The decoded revert, if this is one.
    pub fn as_revert(&self) -> Option<&Revert> {
        match self {
            Self::Revert { revert, .. } => Some(revert),
            _ => None,
        }
    }

    revert_accessors! {
        /// The decoded `KmsAuth` custom error, if this is one.
        as_kms_auth_error => KmsAuth: KmsAuth::KmsAuthErrors;
        /// The decoded `AppAuth` custom error, if this is one.
        as_app_auth_error => AppAuth: AppAuth::AppAuthErrors;
        /// The decoded `CairnGovernor` custom error, if this is one.
        as_governor_error => Governor: CairnGovernor::CairnGovernorErrors;
        /// The decoded `TimelockController` custom error, if this is one.
        as_timelock_error => Timelock: TimelockController::TimelockControllerErrors;
    }

    #[cold]
    pub(crate) fn denied(reason: String) -> Self {
        Self::Denied {
            check: Check::from_reason(&reason),
            reason,
        }
    }

    #[cold]
    pub(crate) fn misconfigured(msg: impl Into<String>) -> Self {
        Self::Misconfigured(msg.into())
    }

    /// Classifies a transport-level failure.
    #[cold]
    pub(crate) fn from_transport(op: &'static str, err: TransportError) -> Self {
        match err {
            RpcError::ErrorResp(payload) => {
                if let Some(data) = payload.as_revert_data() {
                    Self::Revert {
                        op,
                        revert: Box::new(Revert::Undecoded(data)),
                    }
                } else {
                    Self::Rpc {
                        op,
                        code: payload.code,
                        message: payload.message.to_string(),
                    }
                }
            }
            RpcError::Transport(TransportErrorKind::Custom(_))
            | RpcError::Transport(TransportErrorKind::HttpError(_))
            | RpcError::Transport(_) => Self::Unreachable {
                op,
                source: Box::new(err),
            },
            RpcError::NullResp => Self::Rpc {
                op,
                code: 0,
                message: "null response".into(),
            },
            other => Self::Contract {
                op,
                message: other.to_string(),
            },
        }
    }
}

/// Which contract a call targets, to pick the custom-error enum for decoding reverts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    KmsAuth,
    AppAuth,
    Governor,
    Timelock,
    Other,
}

impl Target {
    fn decode(self, data: Bytes) -> Revert {
        use alloy::sol_types::SolInterface;
        let decoded = match self {
            Self::KmsAuth => KmsAuth::KmsAuthErrors::abi_decode(&data)
                .ok()
                .map(Revert::KmsAuth),
            Self::AppAuth => AppAuth::AppAuthErrors::abi_decode(&data)
                .ok()
                .map(Revert::AppAuth),
            // The governor executes through the timelock, whose errors bubble up.
            Self::Governor => CairnGovernor::CairnGovernorErrors::abi_decode(&data)
                .ok()
                .map(Revert::Governor)
                .or_else(|| {
                    TimelockController::TimelockControllerErrors::abi_decode(&data)
                        .ok()
                        .map(Revert::Timelock)
                }),
            Self::Timelock => TimelockController::TimelockControllerErrors::abi_decode(&data)
                .ok()
                .map(Revert::Timelock),
            Self::Other => None,
        };
        decoded.unwrap_or(Revert::Undecoded(data))
    }
}

/// Converts a contract-binding error into [`Error`], decoding revert data for `target`.
#[cold]
pub(crate) fn from_contract(
    op: &'static str,
    target: Target,
    address: Address,
    err: alloy::contract::Error,
) -> Error {
    use alloy::contract::Error as C;
    match err {
        C::TransportError(t) => match Error::from_transport(op, t) {
            Error::Revert { op, revert } => match *revert {
                Revert::Undecoded(data) => Error::Revert {
                    op,
                    revert: Box::new(target.decode(data)),
                },
                decoded => Error::Revert {
                    op,
                    revert: Box::new(decoded),
                },
            },
            other => other,
        },
        C::ZeroData(..) => Error::NoContract { op, address },
        C::AbiError(e) => Error::Contract {
            op,
            message: e.to_string(),
        },
        C::PendingTransactionError(e) => from_pending(op, e),
        C::ContractNotDeployed => Error::Contract {
            op,
            message: "contract not deployed".into(),
        },
        other => Error::Contract {
            op,
            message: other.to_string(),
        },
    }
}

/// Converts a failure while waiting for a receipt.
#[cold]
pub(crate) fn from_pending(
    op: &'static str,
    err: alloy::providers::PendingTransactionError,
) -> Error {
    use alloy::providers::PendingTransactionError as P;
    match err {
        P::TransportError(t) => Error::from_transport(op, t),
        other => Error::Contract {
            op,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use alloy::sol_types::SolCall;

    use super::*;

    #[test]
    fn every_documented_reason_maps_to_its_check() {
        use reasons::*;
        let table = [
            (APP_NOT_REGISTERED, Check::AppNotRegistered),
            (OS_IMAGE, Check::OsImage),
            (TCB_STATUS, Check::TcbStatus),
            (ADVISORY, Check::Advisory),
            (COMPOSE_HASH, Check::ComposeHash),
            (COMPOSE_HASH_NOT_ACTIVE, Check::ComposeHashNotActive),
            (DEVICE, Check::Device),
            (TCB_NOT_UP_TO_DATE, Check::TcbNotUpToDate),
            (APP_CONTRACT_FAILED, Check::AppContractFailed),
            (KMS_MR, Check::KmsMr),
            (KMS_DEVICE, Check::KmsDevice),
        ];
        let mut codes = std::collections::HashSet::new();
        for (reason, check) in table {
            assert_eq!(Check::from_reason(reason), check, "{reason}");
            assert!(
                codes.insert(check.code()),
                "duplicate code {}",
                check.code()
            );
        }
        // Near misses and custom reasons are not mistaken for a known check.
        for other in [
            "",
            "compose hash not allowed",
            "Compose hash not allowed ",
            "custom",
        ] {
            assert_eq!(Check::from_reason(other), Check::Other, "{other:?}");
        }
    }

    #[test]
    fn iappauth_interface_id_is_the_is_app_allowed_selector() {
        let selector = crate::bindings::KmsAuth::isAppAllowedCall::SELECTOR;
        assert_eq!(selector, [0x1e, 0x07, 0x91, 0x98]);
        assert_eq!(
            crate::bindings::AppAuth::isAppAllowedCall::SELECTOR,
            selector
        );
    }

    #[test]
    fn denied_carries_the_exact_reason_and_is_not_retryable() {
        let err = Error::denied(reasons::COMPOSE_HASH_NOT_ACTIVE.to_owned());
        assert!(
            matches!(&err, Error::Denied { check: Check::ComposeHashNotActive, reason }
            if reason == reasons::COMPOSE_HASH_NOT_ACTIVE)
        );
        assert!(err.is_denied());
        assert!(!err.is_retryable());
    }

    #[test]
    fn transport_failures_are_classified() {
        let down = Error::from_transport("op", TransportErrorKind::backend_gone());
        assert!(
            matches!(down, Error::Unreachable { op: "op", .. }),
            "{down:?}"
        );
        assert!(down.is_retryable());

        // (`ErrorPayload` is not re-exported by alloy's features in use; let serde build it.)
        let node_err: TransportError = RpcError::ErrorResp(
            serde_json::from_str(r#"{"code":-32000,"message":"header not found"}"#).unwrap(),
        );
        let rpc = Error::from_transport("op", node_err);
        assert!(
            matches!(&rpc, Error::Rpc { code: -32000, message, .. } if message == "header not found")
        );
        assert!(rpc.is_retryable());

        // Revert data from a KmsAuth call decodes into the generated error enum.
        let shrink = KmsAuth::KmsAuthCheckpointShrinks {
            anchored: 10,
            given: 5,
        };
        let data = alloy::primitives::hex::encode_prefixed(alloy::sol_types::SolError::abi_encode(
            &shrink,
        ));
        let payload = format!(r#"{{"code":3,"message":"execution reverted","data":"{data}"}}"#);
        let revert: TransportError = RpcError::ErrorResp(serde_json::from_str(&payload).unwrap());
        let err = from_contract(
            "KmsAuth.anchorCheckpoint",
            Target::KmsAuth,
            Address::ZERO,
            alloy::contract::Error::TransportError(revert),
        );
        assert!(!err.is_retryable());
        match err.as_kms_auth_error() {
            Some(KmsAuth::KmsAuthErrors::KmsAuthCheckpointShrinks(e)) => {
                assert_eq!((e.anchored, e.given), (10, 5))
            }
            _ => panic!("expected decoded shrink, got {err:?}"),
        }
    }
}
