//! Running a backend's command: spawn it in its own session, watch it, stop it.
//!
//! - **Spawn**: `setsid <command…>` with the CVM directory as working directory, an empty
//!   environment plus `PATH` and the configured variables, stdin from `/dev/null`,
//!   stdout and stderr appended to `console.log`. `setsid` runs the command in a new
//!   session *in place* (the child is not a group leader, so it does not fork), so the
//!   spawned pid is the guest's pid and its session id: every process the guest starts
//!   (its app, in the app's own process group) stays in that session.
//! - **Identity**: pid + start time (`/proc/<pid>/stat`) + boot id, persisted, so a VMM
//!   restart re-adopts exactly that process and never a reused pid.
//! - **Watch**: our own child is awaited; an adopted one (a previous VMM's child) is
//!   polled in `/proc` every [`ADOPTED_POLL`].
//! - **Stop**: SIGTERM to the guest (it stops its app and exits), then after the grace
//!   period SIGKILL to every process of the session, then a final sweep of the session
//!   for stragglers.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::logs;
use crate::procfs::{self, Signal};
use crate::store::{CvmDir, ProcessRef};

/// How often an adopted process is checked.
pub const ADOPTED_POLL: Duration = Duration::from_millis(250);
/// How long a stop waits after SIGKILL for the exit to be observed.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a watched process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Gone; how is unknown (an adopted process, or the wait failed).
    Unknown,
}

impl Exit {
    /// Whether it exited cleanly (code 0).
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::Unknown => f.write_str("an unknown status"),
        }
    }
}

/// A future that ends when the watched process ends.
pub type Wait = std::pin::Pin<Box<dyn std::future::Future<Output = Exit> + Send>>;

/// A started (or adopted) process: who it is, and a future that ends with it.
pub struct Watched {
    /// Who it is.
    pub process: ProcessRef,
    /// Ends when it ends (the caller spawns it and publishes the result).
    pub wait: Wait,
}

cairn_protocol::redacted_debug!(Watched { process, .. });

/// Spawn `command` (program first) for the CVM in `dir`.
pub fn spawn(
    setsid: &Path,
    env: &BTreeMap<String, String>,
    command: Vec<OsString>,
    dir: &CvmDir,
) -> Result<Watched> {
    let console = logs::open_for_guest(&dir.console())?;
    let console_err = console
        .try_clone()
        .map_err(|e| Error::io("dup", dir.console(), e))?;
    let mut cmd = Command::new(setsid);
    cmd.args(&command)
        .current_dir(&dir.root)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::from(console))
        .stderr(Stdio::from(console_err))
        .kill_on_drop(false);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env);
    let program = command
        .first()
        .map(|p| PathBuf::from(p).display().to_string())
        .unwrap_or_default();
    let mut child = cmd.spawn().map_err(|e| Error::Process {
        op: "spawn",
        reason: format!("{} {program}: {e}", setsid.display()),
    })?;
    let pid = child.id().ok_or_else(|| Error::Process {
        op: "spawn",
        reason: format!("{program} exited at once"),
    })?;
    let process = procfs::identify(pid).ok_or_else(|| Error::Process {
        op: "spawn",
        reason: format!("{program} (pid {pid}) exited at once"),
    })?;
    let wait: Wait = Box::pin(async move {
        match child.wait().await {
            Ok(status) => {
                use std::os::unix::process::ExitStatusExt as _;
                match (status.code(), status.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(s)) => Exit::Signal(s),
                    _ => Exit::Unknown,
                }
            }
            Err(_) => Exit::Unknown,
        }
    });
    Ok(Watched { process, wait })
}

/// Watch a process a previous VMM started (it is not our child): poll `/proc` until it
/// is gone.
pub fn adopt(process: ProcessRef) -> Watched {
    let p = process.clone();
    let wait: Wait = Box::pin(async move {
        while procfs::is_alive(&p) {
            tokio::time::sleep(ADOPTED_POLL).await;
        }
        Exit::Unknown
    });
    Watched { process, wait }
}

/// Wait until `exit` reports an end, up to `within`.
async fn ended(exit: &mut watch::Receiver<Option<Exit>>, within: Duration) -> bool {
    tokio::time::timeout(within, exit.wait_for(Option::is_some))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Stop the process `pid` (a session leader) whose end `exit` reports: SIGTERM, up to
/// `grace`, then SIGKILL to its whole session, then a sweep of the session. Errors when
/// the end is never observed.
pub async fn stop(
    pid: u32,
    exit: &mut watch::Receiver<Option<Exit>>,
    grace: Duration,
) -> Result<()> {
    procfs::signal(pid, Signal::TERM);
    if !ended(exit, grace).await {
        let n = procfs::kill_session(pid, |_| true);
        tracing::warn!(
            pid,
            killed = n,
            "the guest did not stop in time; killed its session"
        );
        if !ended(exit, KILL_WAIT).await {
            return Err(Error::Process {
                op: "stop",
                reason: format!("pid {pid} did not end after SIGKILL"),
            });
        }
    }
    sweep(pid, None);
    Ok(())
}

/// SIGKILL what is left of session `sid` (processes the guest started that outlived
/// it). With `only_under`, only processes whose working directory is inside that
/// directory (used when the session leader is gone and its pid might be reused).
pub fn sweep(sid: u32, only_under: Option<&Path>) -> usize {
    let n = procfs::kill_session(sid, |pid| match only_under {
        None => true,
        Some(dir) => procfs::cwd(pid).is_some_and(|c| c.starts_with(dir)),
    });
    if n > 0 {
        tracing::info!(
            sid,
            killed = n,
            "killed leftover processes of a guest's session"
        );
    }
    n
}
