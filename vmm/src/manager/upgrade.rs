//! Upgrades: a new compose (a new compose hash) for the same app and CVM.
//!
//! The chain decides when: the new hash is pre-flighted like a deploy. Allowed → the CVM
//! is stopped, its manifest and share rewritten (atomically) and, if it ran, started
//! again (same app id and `.instance-info`, so the same instance id). Not allowed yet —
//! the hash is absent (a DAO vote has not executed) or scheduled (a timelock has not
//! passed) — and `wait_for_approval`: the VMM persists the pending upgrade, answers
//! 202, and polls the chain every `cvm.approval_poll_ms`, reporting progress in the
//! CVM's `upgrade` field, until the chain allows it (then applies it), refuses it for a
//! reason a vote cannot change (failed), or the deadline passes (timed out, the CVM
//! unchanged). A VMM restart resumes the wait.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_onchain::unix_now;
use cairn_protocol::vmm::{
    CheckStatus, CvmInfo, PreflightCheck, PreflightReport, UpgradeRequest, UpgradeState,
    UpgradeStatus, MAX_APPROVAL_TIMEOUT_SECS,
};

use super::{write_share, CvmRef, Vmm};
use crate::error::{Conflict, Error, Result};
use crate::preflight::{awaits_governance, refusal};
use crate::store::{self, Manifest, PendingUpgrade};

/// Default `approval_timeout_secs`.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 3600;

/// What `upgrade` did.
#[derive(Debug)]
pub enum UpgradeOutcome {
    /// Applied now.
    Applied(CvmInfo),
    /// Waiting for the chain (202); progress in `CvmInfo::upgrade`.
    Waiting(CvmInfo),
}

impl Vmm {
    /// Upgrade a CVM (`POST /v1/cvms/{id}/upgrade`).
    pub async fn upgrade(
        self: &Arc<Self>,
        key: &str,
        req: UpgradeRequest,
    ) -> Result<UpgradeOutcome> {
        let r = self.upgrade_inner(key, req).await;
        self.count("upgrade", &r);
        r
    }

    async fn upgrade_inner(
        self: &Arc<Self>,
        key: &str,
        req: UpgradeRequest,
    ) -> Result<UpgradeOutcome> {
        let compose_hash = self.validate_compose(&req.compose)?;
        let timeout = req
            .approval_timeout_secs
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_SECS);
        if timeout == 0 || timeout > MAX_APPROVAL_TIMEOUT_SECS {
            return Err(Error::invalid(
                "approval_timeout_secs",
                format!("must be 1..={MAX_APPROVAL_TIMEOUT_SECS}"),
            ));
        }
        let cvm = self.find(key)?;
        let _op = cvm.op.lock().await;
        let current = cvm.read(|d| d.manifest.clone());
        if cvm.read(|d| {
            d.state
                .upgrade
                .as_ref()
                .is_some_and(|u| u.status.state.is_pending())
        }) {
            return Err(Error::conflict(
                Conflict::UpgradePending,
                format!("CVM {} already has an upgrade waiting for approval", cvm.id),
            ));
        }
        let image = match &req.image {
            Some(i) => self.catalog.get(i)?.clone(),
            None => self.catalog.get(&current.image)?.clone(),
        };
        self.backend.check_image(&image)?;
        let target = Manifest {
            compose: req.compose,
            image: image.reference.clone(),
            os_image_hash: image.os_image_hash,
            encrypted_env: req.encrypted_env.or(current.encrypted_env.clone()),
            ..current
        };
        let report = self
            .preflight(target.app_id, compose_hash, target.os_image_hash)
            .await?;
        match refusal(&report) {
            Ok(()) => {
                self.apply(&cvm, target, report.block_number).await?;
                cvm.update(|d| d.state.upgrade = None)?;
                Ok(UpgradeOutcome::Applied(cvm.info(self.backend.kind())))
            }
            Err(Error::Denied { check, reason })
                if req.wait_for_approval && awaits_governance(check) =>
            {
                let now = unix_now();
                let status = UpgradeStatus {
                    compose_hash,
                    state: UpgradeState::WaitingForApproval,
                    detail: progress(&report, &reason),
                    activates_at: activation(&report),
                    started_at: now,
                    deadline: now.saturating_add(timeout),
                    checked_at_block: Some(report.block_number),
                };
                cvm.update(|d| d.state.upgrade = Some(PendingUpgrade { status, target }))?;
                tracing::info!(cvm = %cvm.id, compose_hash = %hex::encode(compose_hash), "upgrade waits for on-chain approval");
                spawn_waiter(self, &cvm);
                Ok(UpgradeOutcome::Waiting(cvm.info(self.backend.kind())))
            }
            Err(e) => Err(e),
        }
    }

    /// Replace `cvm`'s manifest with `target` (the caller holds the `op` lock and the
    /// chain allows `target` at policy block `allowed_at`): stop if active, rewrite,
    /// start again if it was active.
    async fn apply(&self, cvm: &CvmRef, target: Manifest, allowed_at: u64) -> Result<()> {
        let was_active = cvm.read(|d| d.state.state.is_active());
        if was_active {
            self.stop_locked(cvm).await?;
        }
        write_share(&cvm.dir, &target)?;
        store::write_json(&cvm.dir.manifest(), &target)?;
        cvm.touch(|d| d.manifest = target);
        tracing::info!(cvm = %cvm.id, "upgrade applied");
        if was_active {
            crate::ports::check_free(&cvm.read(|d| d.manifest.ports.clone()))?;
            self.launch(cvm, allowed_at)?;
        }
        Ok(())
    }
}

fn activation(report: &PreflightReport) -> Option<u64> {
    report
        .checks
        .iter()
        .find(|c| c.check == PreflightCheck::ComposeHash && c.status == CheckStatus::Scheduled)
        .and_then(|c| c.activates_at)
}

fn progress(report: &PreflightReport, reason: &str) -> String {
    format!("at block {}: {reason}", report.block_number)
}

/// Resume a persisted pending upgrade (at open).
pub(super) fn resume(vmm: &Arc<Vmm>, cvm: &CvmRef) {
    let pending = cvm.read(|d| {
        d.state
            .upgrade
            .as_ref()
            .is_some_and(|u| u.status.state.is_pending())
    });
    if pending {
        tracing::info!(cvm = %cvm.id, "resuming an upgrade that waits for approval");
        spawn_waiter(vmm, cvm);
    }
}

fn spawn_waiter(vmm: &Arc<Vmm>, cvm: &CvmRef) {
    let task = tokio::spawn(wait_for_approval(Arc::downgrade(vmm), Arc::clone(cvm)));
    cvm.add_task(task.abort_handle());
}

fn set_status(cvm: &CvmRef, f: impl FnOnce(&mut UpgradeStatus)) {
    let r = cvm.update(|d| {
        if let Some(u) = d.state.upgrade.as_mut() {
            f(&mut u.status);
        }
    });
    if let Err(e) = r {
        tracing::error!(cvm = %cvm.id, error = %e, "cannot record upgrade progress");
    }
}

async fn wait_for_approval(vmm: Weak<Vmm>, cvm: CvmRef) {
    loop {
        let Some(v) = vmm.upgrade() else { return };
        let Some((target, deadline)) = cvm.read(|d| {
            d.state
                .upgrade
                .as_ref()
                .filter(|u| u.status.state.is_pending())
                .map(|u| (u.target.clone(), u.status.deadline))
        }) else {
            return;
        };
        if unix_now() > deadline {
            set_status(&cvm, |s| {
                s.state = UpgradeState::TimedOut;
                s.detail = format!("not approved on chain before the deadline; {}", s.detail);
            });
            return;
        }
        let poll = Duration::from_millis(v.config.cvm.approval_poll_ms);
        match v
            .preflight(target.app_id, target.compose_hash(), target.os_image_hash)
            .await
        {
            Ok(report) => match refusal(&report) {
                Ok(()) => {
                    let _op = cvm.op.lock().await;
                    set_status(&cvm, |s| {
                        s.state = UpgradeState::Applying;
                        s.detail = format!("allowed at block {}; applying", report.block_number);
                        s.checked_at_block = Some(report.block_number);
                    });
                    match v.apply(&cvm, target, report.block_number).await {
                        Ok(()) => set_status(&cvm, |s| {
                            s.state = UpgradeState::Done;
                            s.detail =
                                format!("applied (allowed at block {})", report.block_number);
                        }),
                        Err(e) => set_status(&cvm, |s| {
                            s.state = UpgradeState::Failed;
                            s.detail = format!("allowed, but applying failed: {e}");
                        }),
                    }
                    return;
                }
                Err(Error::Denied { check, reason }) if awaits_governance(check) => {
                    set_status(&cvm, |s| {
                        s.detail = progress(&report, &reason);
                        s.activates_at = activation(&report);
                        s.checked_at_block = Some(report.block_number);
                    });
                }
                Err(e) => {
                    set_status(&cvm, |s| {
                        s.state = UpgradeState::Failed;
                        s.detail = format!("refused at block {}: {e}", report.block_number);
                        s.checked_at_block = Some(report.block_number);
                    });
                    return;
                }
            },
            Err(e) => set_status(&cvm, |s| {
                s.detail = format!("chain unavailable ({e}); retrying");
            }),
        }
        drop(v);
        tokio::time::sleep(poll).await;
    }
}
