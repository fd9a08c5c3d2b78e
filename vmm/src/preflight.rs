//! The chain pre-flight: before a CVM is created, started or upgraded, ask the chain —
//! at one pinned policy block, as the KMS will — whether it would release keys to it, so
//! a refused deploy costs nothing and says why in the contract's words.
//!
//! ```text
//! policy block = head − confirmations (by hash)
//!   1 app registered     KmsAuth.isAppRegistered(app_id)        "App not registered"
//!   2 OS image allowed   KmsAuth.allowedOsImages(os_image_hash)  "OS image is not allowed"
//!   3 compose hash       KmsAuth.isAppAllowed(boot info the VMM knows) → the app's AppAuth
//!                        allowed | "Compose hash not allowed" | "Compose hash not yet
//!                        active" (scheduled: AppAuth.composeHashActivation says when)
//!   4 evidence           TCB status, advisories, device: the VMM holds no quote; left to
//!                        the KMS (device judged here only when `cvm.device_id` is set)
//! ```
//!
//! The boot info the VMM sends has the app id, compose hash and OS image hash it will
//! deploy, TCB status `UpToDate`, no advisories, the configured device id (or zero) and
//! zero instance id / MRs. The contract's reason strings come back unchanged. What the
//! pre-flight proves is only that the VMM will not waste resources on a CVM the chain
//! refuses; the KMS decides on the CVM's real evidence.

use std::sync::Arc;

use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::{AppAuthClient, BootInfo, ChainClient, ChainConfig, Check, Verdict};
use cairn_protocol::vmm::{CheckOutcome, CheckStatus, PreflightCheck, PreflightReport};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};

/// The TCB status the pre-flight assumes (the KMS judges the real one).
pub const ASSUMED_TCB_STATUS: &str = "UpToDate";

/// A lazily connected chain client (a VMM serves list/stop/logs while the chain is down;
/// a failed connect is retried on the next use).
#[derive(Debug)]
pub struct Chain {
    config: ChainConfig,
    client: OnceCell<Arc<ChainClient>>,
    device_id: Option<[u8; 32]>,
}

impl Chain {
    /// A chain with `config`; `device_id` is this host's, when known.
    pub fn new(config: ChainConfig, device_id: Option<[u8; 32]>) -> Self {
        Chain {
            config,
            client: OnceCell::new(),
            device_id,
        }
    }

    /// The connected client.
    pub async fn client(&self) -> Result<Arc<ChainClient>> {
        let c = self
            .client
            .get_or_try_init(|| async {
                ChainClient::connect(&self.config, None).await.map(Arc::new)
            })
            .await?;
        Ok(Arc::clone(c))
    }

    /// The pre-flight of (`app_id`, `compose_hash`, `os_image_hash`) at the current
    /// policy block. A chain failure is an error (fail closed), never a pass.
    pub async fn preflight(
        &self,
        app_id: [u8; 20],
        compose_hash: [u8; 32],
        os_image_hash: [u8; 32],
    ) -> Result<PreflightReport> {
        let client = self.client().await?;
        let at = client.policy_block().await?;
        let block_timestamp = client.block_timestamp(at).await?;
        let app = Address::from(app_id);
        let mut checks = Vec::with_capacity(4);

        let registered = client.is_app_registered(app, at).await?;
        checks.push(if registered {
            pass(PreflightCheck::AppRegistered)
        } else {
            fail(PreflightCheck::AppRegistered, Check::AppNotRegistered)
        });
        let image_ok = client
            .is_os_image_allowed(B256::from(os_image_hash), at)
            .await?;
        checks.push(if image_ok {
            pass(PreflightCheck::OsImage)
        } else {
            fail(PreflightCheck::OsImage, Check::OsImage)
        });

        let evidence_note = if self.device_id.is_some() {
            "TCB status and advisories are judged by the KMS on the CVM's quote"
        } else {
            "TCB status, advisories and the device are judged by the KMS on the CVM's quote"
        };
        let mut evidence = deferred(PreflightCheck::Evidence, evidence_note);
        let compose = if !registered || !image_ok {
            deferred(
                PreflightCheck::ComposeHash,
                "not reached: an earlier check failed",
            )
        } else {
            let boot = BootInfo {
                appId: app,
                composeHash: B256::from(compose_hash),
                instanceId: Address::ZERO,
                deviceId: B256::from(self.device_id.unwrap_or([0; 32])),
                mrAggregated: B256::ZERO,
                mrSystem: B256::ZERO,
                osImageHash: B256::from(os_image_hash),
                tcbStatus: ASSUMED_TCB_STATUS.to_owned(),
                advisoryIds: Vec::new(),
            };
            match client.is_app_allowed(&boot, at).await {
                Ok(Verdict::Allowed) => pass(PreflightCheck::ComposeHash),
                Err(cairn_onchain::Error::Denied { check, reason }) => match check {
                    Check::ComposeHashNotActive => {
                        let activates_at = AppAuthClient::new(client.connection().clone(), app)
                            .compose_hash_activation(B256::from(compose_hash), at)
                            .await
                            .ok()
                            .flatten()
                            .map(|a| a.activates_at);
                        CheckOutcome {
                            check: PreflightCheck::ComposeHash,
                            status: CheckStatus::Scheduled,
                            code: Some(check.code().to_owned()),
                            reason: Some(reason),
                            activates_at,
                        }
                    }
                    // The app's policy got past the compose hash; what stopped it depends
                    // on evidence the VMM does not hold (unless it knows its device).
                    Check::Device | Check::TcbNotUpToDate
                        if !(check == Check::Device && self.device_id.is_some()) =>
                    {
                        evidence.reason = Some(reason);
                        pass(PreflightCheck::ComposeHash)
                    }
                    Check::Device => {
                        evidence = CheckOutcome {
                            check: PreflightCheck::Evidence,
                            status: CheckStatus::Fail,
                            code: Some(check.code().to_owned()),
                            reason: Some(reason),
                            activates_at: None,
                        };
                        pass(PreflightCheck::ComposeHash)
                    }
                    // KmsAuth's platform TCB policy refused the assumed status; the
                    // compose hash was not reached.
                    Check::TcbStatus | Check::Advisory => {
                        evidence.reason = Some(reason);
                        deferred(
                            PreflightCheck::ComposeHash,
                            "not reached: KmsAuth's TCB policy refused the assumed status",
                        )
                    }
                    // Not listed, a failing app contract, or a custom contract's own
                    // reason: refused (fail closed), with the contract's words.
                    check => CheckOutcome {
                        check: PreflightCheck::ComposeHash,
                        status: CheckStatus::Fail,
                        code: Some(check.code().to_owned()),
                        reason: Some(reason),
                        activates_at: None,
                    },
                },
                Err(e) => return Err(e.into()),
            }
        };
        checks.push(compose);
        checks.push(evidence);
        let allowed = checks
            .iter()
            .all(|c| matches!(c.status, CheckStatus::Pass | CheckStatus::Deferred));
        Ok(PreflightReport {
            block_number: at.number,
            block_hash: at.hash.0,
            block_timestamp,
            app_id,
            compose_hash,
            os_image_hash,
            allowed,
            checks,
        })
    }

    /// Whether KmsAuth allows each of `hashes`, at the current policy block (returned).
    pub async fn os_images_allowed(&self, hashes: &[[u8; 32]]) -> Result<(u64, Vec<bool>)> {
        let client = self.client().await?;
        let at = client.policy_block().await?;
        let mut out = Vec::with_capacity(hashes.len());
        for h in hashes {
            out.push(client.is_os_image_allowed(B256::from(*h), at).await?);
        }
        Ok((at.number, out))
    }
}

fn pass(check: PreflightCheck) -> CheckOutcome {
    CheckOutcome {
        check,
        status: CheckStatus::Pass,
        code: None,
        reason: None,
        activates_at: None,
    }
}

fn fail(check: PreflightCheck, denial: Check) -> CheckOutcome {
    let reason = match denial {
        Check::AppNotRegistered => cairn_onchain::reasons::APP_NOT_REGISTERED,
        Check::OsImage => cairn_onchain::reasons::OS_IMAGE,
        _ => "",
    };
    CheckOutcome {
        check,
        status: CheckStatus::Fail,
        code: Some(denial.code().to_owned()),
        reason: Some(reason.to_owned()),
        activates_at: None,
    }
}

fn deferred(check: PreflightCheck, note: &str) -> CheckOutcome {
    CheckOutcome {
        check,
        status: CheckStatus::Deferred,
        code: None,
        reason: Some(note.to_owned()),
        activates_at: None,
    }
}

/// The first refusal of a report as an error: the failed check and the contract's
/// reason (for a scheduled hash, plus when it activates). `Ok` when allowed.
pub fn refusal(report: &PreflightReport) -> Result<()> {
    for c in &report.checks {
        match c.status {
            CheckStatus::Pass | CheckStatus::Deferred => {}
            CheckStatus::Fail | CheckStatus::Scheduled => {
                let check = c.code.as_deref().map(check_of_code).unwrap_or(Check::Other);
                let reason = c.reason.clone().unwrap_or_default();
                let reason = match (c.status, c.activates_at) {
                    (CheckStatus::Scheduled, Some(t)) => format!(
                        "{reason}: activates at unix time {t} (in {} s of chain time)",
                        t.saturating_sub(report.block_timestamp)
                    ),
                    (CheckStatus::Scheduled, None) => {
                        format!("{reason}: scheduled, activation time unknown")
                    }
                    _ => reason,
                };
                return Err(Error::Denied { check, reason });
            }
        }
    }
    Ok(())
}

fn check_of_code(code: &str) -> Check {
    [
        Check::AppNotRegistered,
        Check::OsImage,
        Check::TcbStatus,
        Check::Advisory,
        Check::ComposeHash,
        Check::ComposeHashNotActive,
        Check::Device,
        Check::TcbNotUpToDate,
        Check::AppContractFailed,
        Check::KmsMr,
        Check::KmsDevice,
    ]
    .into_iter()
    .find(|c| c.code() == code)
    .unwrap_or(Check::Other)
}

/// Whether a refusal may turn into an allow by an on-chain vote or timelock (the compose
/// hash is absent or scheduled): `wait_for_approval` keeps waiting on these only.
pub fn awaits_governance(check: Check) -> bool {
    matches!(check, Check::ComposeHash | Check::ComposeHashNotActive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<CheckOutcome>) -> PreflightReport {
        PreflightReport {
            block_number: 7,
            block_hash: [0; 32],
            block_timestamp: 1000,
            app_id: [1; 20],
            compose_hash: [2; 32],
            os_image_hash: [3; 32],
            allowed: false,
            checks,
        }
    }

    #[test]
    fn the_first_failure_is_the_refusal_with_the_contract_reason() {
        let r = report(vec![
            fail(PreflightCheck::AppRegistered, Check::AppNotRegistered),
            fail(PreflightCheck::OsImage, Check::OsImage),
        ]);
        let e = refusal(&r).unwrap_err();
        assert!(
            matches!(&e, Error::Denied { check: Check::AppNotRegistered, reason } if reason == "App not registered"),
            "{e}"
        );
    }

    #[test]
    fn a_scheduled_hash_says_when_it_activates() {
        let r = report(vec![
            pass(PreflightCheck::AppRegistered),
            CheckOutcome {
                check: PreflightCheck::ComposeHash,
                status: CheckStatus::Scheduled,
                code: Some("denied.compose_hash_not_active".into()),
                reason: Some("Compose hash not yet active".into()),
                activates_at: Some(1600),
            },
        ]);
        let e = refusal(&r).unwrap_err();
        assert!(
            matches!(&e, Error::Denied { check: Check::ComposeHashNotActive, reason }
                if reason.starts_with("Compose hash not yet active") && reason.contains("1600") && reason.contains("in 600 s")),
            "{e}"
        );
        assert!(awaits_governance(Check::ComposeHashNotActive));
        assert!(!awaits_governance(Check::AppNotRegistered));
    }

    #[test]
    fn deferred_checks_do_not_refuse() {
        let r = report(vec![
            pass(PreflightCheck::ComposeHash),
            deferred(PreflightCheck::Evidence, "left to the KMS"),
        ]);
        refusal(&r).unwrap();
        assert_eq!(check_of_code("denied.os_image"), Check::OsImage);
        assert_eq!(check_of_code("denied.whatever"), Check::Other);
    }
}
