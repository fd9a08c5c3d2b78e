//! What a failed quote or event-log verification means for the request, decided once for
//! the KMS's release path and the gateway's admission: which step refused (403 naming
//! it), or unavailable collateral (503: retry, never a denial of the evidence itself).

use cairn_attestation::Error as A;

/// The step an attestation error ([`cairn_attestation::Error`]) belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvidenceStep {
    /// The quote's report data does not bind the certificate key.
    ReportData,
    /// The event log is malformed or does not replay to RTMR3.
    EventLog,
    /// Collateral is expired, unreachable, rate-limited, missing or malformed: the
    /// evidence was not judged, so the answer is "unavailable", not a denial.
    Collateral,
    /// The quote itself: a bad signature, wrong root, a PCK chain that does not verify, a
    /// debug TD, a revoked TCB, a malformed or oversized quote, and any error not named
    /// above (fail closed).
    Quote,
}

/// An attestation error as a refusal: its [`EvidenceStep`] and the reason the client is
/// told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceFailure {
    /// The step that refused.
    pub step: EvidenceStep,
    /// Why, for the client.
    pub reason: String,
}

impl From<A> for EvidenceFailure {
    fn from(e: A) -> Self {
        let step = match &e {
            A::ReportDataMismatch => {
                return EvidenceFailure {
                    step: EvidenceStep::ReportData,
                    reason: "the quote's report data does not bind the certificate key".to_owned(),
                }
            }
            A::MalformedEventLog(_)
            | A::EventDigestMismatch { .. }
            | A::EventOrder { .. }
            | A::EventPayload { .. }
            | A::Rtmr3Mismatch { .. } => EvidenceStep::EventLog,
            A::CollateralExpired { .. }
            | A::CollateralFetch { .. }
            | A::PccsRateLimited { .. }
            | A::NoCollateral
            | A::MalformedCollateral(_) => EvidenceStep::Collateral,
            _ => EvidenceStep::Quote,
        };
        EvidenceFailure {
            step,
            reason: e.to_string(),
        }
    }
}

/// `impl From<EvidenceFailure> for $api`, for a service whose error answer `$api` has a
/// `denied($check, reason)` constructor and an `Unavailable { dependency, reason }`
/// variant, whose `$check` names the steps `ReportData`, `EventLog` and `Quote`, and whose
/// `$dependency` has `Collateral`: unavailable collateral is `Unavailable` (503, retry),
/// every other step a denial naming it (403).
#[macro_export]
macro_rules! evidence_answer {
    ($api:ident, $check:ident, $dependency:ident) => {
        impl From<$crate::EvidenceFailure> for $api {
            fn from(f: $crate::EvidenceFailure) -> Self {
                let check = match f.step {
                    $crate::EvidenceStep::ReportData => $check::ReportData,
                    $crate::EvidenceStep::EventLog => $check::EventLog,
                    $crate::EvidenceStep::Quote => $check::Quote,
                    $crate::EvidenceStep::Collateral => {
                        return $api::Unavailable {
                            dependency: $dependency::Collateral,
                            reason: f.reason,
                        }
                    }
                };
                $api::denied(check, f.reason)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_attestation_error_has_its_step_and_unknown_ones_are_quote_denials() {
        let cases = [
            (
                "report data",
                A::ReportDataMismatch,
                EvidenceStep::ReportData,
            ),
            (
                "malformed event log",
                A::MalformedEventLog("x".into()),
                EvidenceStep::EventLog,
            ),
            ("no collateral", A::NoCollateral, EvidenceStep::Collateral),
            (
                "PCCS rate limit",
                A::PccsRateLimited {
                    fmspc: [0; 6],
                    per_minute: 30,
                },
                EvidenceStep::Collateral,
            ),
            ("revoked TCB", A::Revoked, EvidenceStep::Quote),
            (
                "debug TD",
                A::DebugTd("attributes".into()),
                EvidenceStep::Quote,
            ),
        ];
        for (case, e, step) in cases {
            let text = e.to_string();
            let failure = EvidenceFailure::from(e);
            assert_eq!(failure.step, step, "{case}");
            if step != EvidenceStep::ReportData {
                assert_eq!(failure.reason, text, "{case}");
            }
        }
    }
}
