//! One managed CVM: its manifest, its persisted state machine and its live process.
//!
//! Locks: `op` (async) serializes lifecycle operations on this CVM; `data` (sync, never
//! held across an `.await` or file I/O) guards what is read for status; `persist`
//! orders `state.json` writes so the file always holds the latest state.

use std::sync::{Arc, Mutex, PoisonError};

use cairn_onchain::unix_now;
use cairn_protocol::hostapi::{Notification, EVENT_APP_STARTED, EVENT_BOOT_ERROR};
use cairn_protocol::vmm::{
    CvmInfo, CvmState, CvmSummary, GuestEvent, MAX_GUEST_EVENTS, MAX_STATUS_TEXT_LEN,
};
use cairn_service::cut_message;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::error::Result;
use crate::store::{self, CvmDir, Manifest, Persisted, ProcessRef};
use crate::supervisor::Exit;

/// The live side of an active CVM.
#[derive(Debug)]
pub(crate) struct Running {
    /// Becomes `Some` when the process ended (after the state was updated).
    pub exit: watch::Receiver<Option<Exit>>,
    /// The VMM asked it to stop: its end is a `stopped`, not a `failed`.
    pub stopping: bool,
}

/// What `data` guards.
#[derive(Debug)]
pub(crate) struct CvmData {
    pub manifest: Manifest,
    pub state: Persisted,
    pub running: Option<Running>,
}

/// A managed CVM.
#[derive(Debug)]
pub(crate) struct Cvm {
    pub id: String,
    pub dir: CvmDir,
    pub op: tokio::sync::Mutex<()>,
    data: Mutex<CvmData>,
    persist: Mutex<()>,
    /// Background tasks tied to this CVM (host API server, process watcher, upgrade
    /// waiter), aborted when it is removed or the VMM shuts down.
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Cvm {
    pub fn new(dir: CvmDir, manifest: Manifest, state: Persisted) -> Self {
        Cvm {
            id: manifest.id.clone(),
            dir,
            op: tokio::sync::Mutex::new(()),
            data: Mutex::new(CvmData {
                manifest,
                state,
                running: None,
            }),
            persist: Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Read under the data lock.
    pub fn read<R>(&self, f: impl FnOnce(&CvmData) -> R) -> R {
        f(&self.data.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Change under the data lock without persisting (runtime-only fields).
    pub fn touch<R>(&self, f: impl FnOnce(&mut CvmData) -> R) -> R {
        f(&mut self.data.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Change, then write `state.json` atomically (in change order).
    pub fn update<R>(&self, f: impl FnOnce(&mut CvmData) -> R) -> Result<R> {
        let _order = self.persist.lock().unwrap_or_else(PoisonError::into_inner);
        let (r, snapshot) = {
            let mut d = self.data.lock().unwrap_or_else(PoisonError::into_inner);
            let r = f(&mut d);
            (r, d.state.clone())
        };
        store::write_json(&self.dir.state(), &snapshot)?;
        Ok(r)
    }

    /// Set the lifecycle state (and reason), persisted.
    pub fn set_state(&self, state: CvmState, reason: Option<String>) -> Result<()> {
        self.update(|d| {
            d.state.state = state;
            d.state.reason = reason.map(|r| cut_message(r, MAX_STATUS_TEXT_LEN));
            d.state.changed_at = unix_now();
            if !state.is_active() {
                d.state.process = None;
            }
        })
    }

    pub fn add_task(&self, h: AbortHandle) {
        let mut t = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        t.retain(|h| !h.is_finished());
        t.push(h);
    }

    pub fn abort_tasks(&self) {
        abort_all(&self.tasks);
    }

    /// A guest report arrived over the host API. Display only: recorded (bounded), and
    /// `app.started` moves `booting` to `running`. Ignored unless the CVM is active.
    pub fn on_report(&self, n: Notification) -> Result<()> {
        self.update(|d| {
            if !d.state.state.is_active() {
                return;
            }
            if n.event == EVENT_APP_STARTED && d.state.state == CvmState::Booting {
                d.state.state = CvmState::Running;
                d.state.changed_at = unix_now();
            }
            let events = &mut d.state.events;
            if events.len() >= MAX_GUEST_EVENTS {
                events.remove(0);
            }
            events.push(GuestEvent {
                at: unix_now(),
                event: n.event,
                payload: n.payload,
            });
        })
    }

    /// The watched process `process` ended with `exit`: `stopped` when the VMM stopped it
    /// or it exited cleanly, else `failed` with the guest's last reported error or the
    /// exit status. A stale report (another process is current) changes nothing.
    pub fn on_exit(&self, process: &ProcessRef, exit: Exit) -> Result<()> {
        self.update(|d| {
            if d.state.process.as_ref() != Some(process) {
                return;
            }
            let stopping = d.running.take().is_some_and(|r| r.stopping);
            let (state, reason) = if stopping || exit.success() {
                (CvmState::Stopped, None)
            } else {
                let reported = d
                    .state
                    .events
                    .iter()
                    .rev()
                    .find(|e| e.event == EVENT_BOOT_ERROR)
                    .map(|e| e.payload.clone());
                let reason = match reported {
                    Some(r) => format!("{r} (guest ended with {exit})"),
                    None => format!("the guest ended with {exit}"),
                };
                (
                    CvmState::Failed,
                    Some(cut_message(reason, MAX_STATUS_TEXT_LEN)),
                )
            };
            d.state.state = state;
            d.state.reason = reason;
            d.state.changed_at = unix_now();
            d.state.process = None;
        })
    }

    pub fn summary(&self) -> CvmSummary {
        self.read(|d| CvmSummary {
            id: self.id.clone(),
            name: d.manifest.name.clone(),
            app_id: d.manifest.app_id,
            compose_hash: d.manifest.compose_hash(),
            image: d.manifest.image.clone(),
            state: d.state.state,
            reason: d.state.reason.clone(),
            ports: d.manifest.ports.clone(),
            last_event: d.state.events.last().cloned(),
            upgrade: d.state.upgrade.as_ref().map(|u| u.status.state),
        })
    }

    pub fn info(&self, backend: &str) -> CvmInfo {
        self.read(|d| CvmInfo {
            id: self.id.clone(),
            name: d.manifest.name.clone(),
            app_id: d.manifest.app_id,
            compose_hash: d.manifest.compose_hash(),
            image: d.manifest.image.clone(),
            os_image_hash: d.manifest.os_image_hash,
            backend: backend.to_owned(),
            vcpus: d.manifest.vcpus,
            memory_mb: d.manifest.memory_mb,
            ports: d.manifest.ports.clone(),
            kms_urls: d.manifest.kms_urls.clone(),
            gateway_urls: d.manifest.gateway_urls.clone(),
            has_encrypted_env: d.manifest.encrypted_env.is_some(),
            state: d.state.state,
            reason: d.state.reason.clone(),
            pid: d.state.process.as_ref().map(|p| p.pid),
            created_at: d.manifest.created_at,
            state_changed_at: d.state.changed_at,
            events: d.state.events.clone(),
            upgrade: d.state.upgrade.as_ref().map(|u| u.status.clone()),
        })
    }
}

/// Shared handle.
pub(crate) type CvmRef = Arc<Cvm>;

/// Abort every task in `tasks` (and forget them).
pub(super) fn abort_all(tasks: &Mutex<Vec<AbortHandle>>) {
    for h in tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain(..)
    {
        h.abort();
    }
}
