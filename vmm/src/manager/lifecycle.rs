//! Start, stop, restart, remove; re-adoption after a VMM restart.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use cairn_onchain::unix_now;
use cairn_protocol::sysconfig::ChainSection;
use cairn_protocol::vmm::{CvmInfo, CvmState};
use tokio::sync::watch;

use super::cvm::Running;
use super::{CvmRef, Vmm};
use crate::backend::Launch;
use crate::error::{Conflict, Error, Result};
use crate::store;
use crate::supervisor::{self, Watched};
use crate::{ports, procfs};

impl Vmm {
    /// Take over what a previous VMM left of `cvm` (called at open, before serving).
    pub(super) fn adopt(self: &Arc<Self>, cvm: &CvmRef) -> Result<()> {
        let (state, process) = cvm.read(|d| (d.state.state, d.state.process.clone()));
        if !state.is_active() {
            return Ok(());
        }
        match process {
            Some(p) if procfs::is_alive(&p) => {
                tracing::info!(cvm = %cvm.id, pid = p.pid, "re-adopting a running guest");
                self.watch(cvm, supervisor::adopt(p));
                Ok(())
            }
            Some(p) => {
                // Gone while no VMM watched it. What it started may live on in its
                // session; its pid may have been reused, so only processes working
                // inside this CVM's directory are killed.
                supervisor::sweep(p.pid, Some(&cvm.dir.root));
                cvm.set_state(
                    CvmState::Failed,
                    Some(format!(
                        "the guest (pid {}) exited while the VMM was not running",
                        p.pid
                    )),
                )
            }
            None => cvm.set_state(
                CvmState::Failed,
                Some("the VMM stopped while starting the guest".to_owned()),
            ),
        }
    }

    /// Watch a started or adopted process: record its end in the state machine.
    fn watch(&self, cvm: &CvmRef, w: Watched) {
        let (tx, rx) = watch::channel(None);
        cvm.touch(|d| {
            d.running = Some(Running {
                exit: rx,
                stopping: false,
            })
        });
        let c = Arc::clone(cvm);
        let process = w.process.clone();
        let wait = w.wait;
        let task = tokio::spawn(async move {
            let exit = wait.await;
            tracing::info!(cvm = %c.id, pid = process.pid, %exit, "guest ended");
            if let Err(e) = c.on_exit(&process, exit) {
                tracing::error!(cvm = %c.id, error = %e, "cannot record the guest's end");
            }
            let _ = tx.send(Some(exit));
        });
        cvm.add_task(task.abort_handle());
    }

    /// Spawn the guest of `cvm` (the caller holds its `op` lock and has run the
    /// pre-flight and port checks; the pre-flight allowed it at policy block
    /// `allowed_at`): `sys-config.json`, the backend's command in its own session, state
    /// `booting`.
    pub(super) fn launch(&self, cvm: &CvmRef, allowed_at: u64) -> Result<()> {
        let manifest = cvm.read(|d| d.manifest.clone());
        let image = self.image_of(&manifest)?;
        let launch = Launch {
            dir: &cvm.dir,
            manifest: &manifest,
            image: &image,
        };
        let mut sys = self
            .backend
            .sys_config(launch, self.config.cvm.pccs_url.as_deref());
        // Where the guest checks its KMS on chain (`isKmsAllowed`): the VMM's chain; and
        // the block the pre-flight allowed this launch at, which the guest passes to its
        // KMS so that a KMS whose head lags waits for it (docs/vmm.md "Deploy, then boot").
        sys.chain = Some(sys_chain(&self.config.chain, allowed_at));
        store::write_json(&cvm.dir.shared().join("sys-config.json"), &sys)?;
        let command = self.backend.command(launch)?;
        let spawned = supervisor::spawn(
            &self.config.backend.setsid,
            &self.config.backend.env,
            command,
            &cvm.dir,
        );
        let w = match spawned {
            Ok(w) => w,
            Err(e) => {
                cvm.set_state(CvmState::Failed, Some(e.to_string()))?;
                return Err(e);
            }
        };
        let process = w.process.clone();
        cvm.update(|d| {
            d.state.state = CvmState::Booting;
            d.state.reason = None;
            d.state.changed_at = unix_now();
            d.state.process = Some(process.clone());
            d.state.events.clear();
        })?;
        tracing::info!(cvm = %cvm.id, pid = process.pid, backend = self.backend.kind(), "guest started");
        self.watch(cvm, w);
        Ok(())
    }

    /// Start a created, stopped or failed CVM (`POST /v1/cvms/{id}/start`): pre-flight,
    /// ports free, spawn.
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<CvmInfo> {
        let r = self.start_inner(key).await;
        self.count("start", &r);
        r
    }

    async fn start_inner(self: &Arc<Self>, key: &str) -> Result<CvmInfo> {
        let cvm = self.find(key)?;
        let _op = cvm.op.lock().await;
        self.start_locked(&cvm).await?;
        Ok(cvm.info(self.backend.kind()))
    }

    async fn start_locked(self: &Arc<Self>, cvm: &CvmRef) -> Result<()> {
        let (state, manifest) = cvm.read(|d| (d.state.state, d.manifest.clone()));
        if state.is_active() {
            return Err(Error::conflict(
                Conflict::State,
                format!("CVM {} is already {state}", cvm.id),
            ));
        }
        let allowed = self
            .require_allowed(
                manifest.app_id,
                manifest.compose_hash(),
                manifest.os_image_hash,
            )
            .await?;
        ports::check_free(&manifest.ports)?;
        self.launch(cvm, allowed.block_number)
    }

    /// Stop a CVM (`POST /v1/cvms/{id}/stop`); stopping a stopped CVM is a no-op.
    pub async fn stop(self: &Arc<Self>, key: &str) -> Result<CvmInfo> {
        let r = async {
            let cvm = self.find(key)?;
            let _op = cvm.op.lock().await;
            self.stop_locked(&cvm).await?;
            Ok(cvm.info(self.backend.kind()))
        }
        .await;
        self.count("stop", &r);
        r
    }

    pub(super) async fn stop_locked(&self, cvm: &CvmRef) -> Result<()> {
        let target = cvm.touch(|d| {
            let pid = d.state.process.as_ref().map(|p| p.pid)?;
            let running = d.running.as_mut()?;
            running.stopping = true;
            Some((pid, running.exit.clone()))
        });
        let Some((pid, mut exit)) = target else {
            // Nothing runs (created, stopped, failed, or a state without a process).
            if cvm.read(|d| d.state.state.is_active()) {
                cvm.set_state(CvmState::Stopped, None)?;
            }
            return Ok(());
        };
        let grace = Duration::from_millis(self.config.cvm.stop_grace_ms);
        supervisor::stop(pid, &mut exit, grace).await?;
        tracing::info!(cvm = %cvm.id, pid, "guest stopped");
        Ok(())
    }

    /// Stop, then start with a fresh pre-flight (`POST /v1/cvms/{id}/restart`).
    pub async fn restart(self: &Arc<Self>, key: &str) -> Result<CvmInfo> {
        let r = async {
            let cvm = self.find(key)?;
            let _op = cvm.op.lock().await;
            self.stop_locked(&cvm).await?;
            self.start_locked(&cvm).await?;
            Ok(cvm.info(self.backend.kind()))
        }
        .await;
        self.count("restart", &r);
        r
    }

    /// Stop (its whole session) and delete a CVM (`DELETE /v1/cvms/{id}`).
    pub async fn remove(self: &Arc<Self>, key: &str) -> Result<()> {
        let r = self.remove_inner(key).await;
        self.count("remove", &r);
        r
    }

    async fn remove_inner(self: &Arc<Self>, key: &str) -> Result<()> {
        let cvm = self.find(key)?;
        let _op = cvm.op.lock().await;
        self.stop_locked(&cvm).await?;
        cvm.abort_tasks();
        self.cvms
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&cvm.id);
        // Renamed first, so a crash mid-delete never leaves a half CVM that loads.
        let cvms = cvm
            .dir
            .root
            .parent()
            .map(|p| p.to_owned())
            .unwrap_or_default();
        let gone = cvms.join(format!(".removed-{}", cvm.id));
        std::fs::rename(&cvm.dir.root, &gone).map_err(|e| Error::io("rename", &gone, e))?;
        store::sync_dir(&cvms)?;
        std::fs::remove_dir_all(&gone).map_err(|e| Error::io("remove", &gone, e))?;
        tracing::info!(cvm = %cvm.id, "CVM removed");
        Ok(())
    }

    pub(super) fn count<T>(&self, op: &'static str, r: &Result<T>) {
        match r {
            Ok(_) => self.metrics.operation(op, "ok"),
            Err(e) => self.metrics.operation(op, e.code()),
        }
    }
}

/// The `chain` section of a CVM's `sys-config.json`: the VMM's chain (where the guest
/// checks its KMS) and `allowed_at`, the policy block at which the pre-flight allowed this
/// launch (sent by the guest as its `min_policy_block`).
fn sys_chain(chain: &crate::config::ChainSection, allowed_at: u64) -> ChainSection {
    ChainSection {
        rpc_url: chain.rpc_url.to_string(),
        chain_id: chain.chain_id,
        kms_auth: format!("{:#x}", chain.kms_auth),
        confirmations: Some(chain.confirmations),
        min_policy_block: Some(allowed_at),
    }
}

#[cfg(test)]
mod tests {
    use cairn_protocol::sysconfig::SysConfig;

    use super::*;

    #[test]
    fn the_sys_config_chain_section_carries_the_preflight_block() {
        let chain = crate::config::ChainSection {
            rpc_url: "http://127.0.0.1:8545".parse().unwrap(),
            chain_id: 31337,
            kms_auth: [0xab; 20].into(),
            confirmations: 3,
            timeout_ms: 1000,
        };
        let sys = SysConfig {
            chain: Some(sys_chain(&chain, 1234)),
            ..SysConfig::default()
        };
        // What the guest reads back from the file.
        let back = SysConfig::parse(&serde_json::to_vec(&sys).unwrap()).unwrap();
        let section = back.chain.unwrap();
        assert_eq!(section.min_policy_block, Some(1234));
        assert_eq!(section.confirmations(), 3);
        assert_eq!(section.kms_auth().unwrap(), [0xab; 20]);
    }
}
