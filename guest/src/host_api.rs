//! Boot-progress reports to the host (the VMM's host API, `cairn_protocol::hostapi`).
//!
//! Best effort, bounded, never in the way: [`Reporter::report`] only queues (a full
//! queue drops the report); one background task sends the queue in order, each report
//! under [`REPORT_TIMEOUT`]; nothing the host answers is read beyond the status. The
//! reports carry step names, the log receipt's index and policy block, the app's exit
//! status and error messages — never a key or a decrypted value. Only `unix:` host API
//! addresses are served (the process backend); others are accepted and not used.

use std::path::PathBuf;
use std::time::Duration;

use cairn_protocol::hostapi::{HostApiAddr, Notification, PATH_NOTIFY};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};

/// Time allowed for one report (connect, send, answer).
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reports queued at most; more are dropped.
pub const QUEUE: usize = 64;

enum Msg {
    Report(Notification),
    Flush(oneshot::Sender<()>),
}

/// A handle that queues reports for the host. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reporter {
    tx: Option<mpsc::Sender<Msg>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Report(n) => write!(f, "Report({})", n.event),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Reporter {
    /// A reporter that reports nothing.
    pub fn disabled() -> Self {
        Reporter { tx: None }
    }

    /// A reporter for `sys-config.json`'s `host_api_url` (none, unparsable or not
    /// `unix:` → disabled, logged).
    pub fn from_url(url: Option<&str>) -> Self {
        let Some(url) = url else {
            return Reporter::disabled();
        };
        match HostApiAddr::parse(url) {
            Ok(HostApiAddr::Unix(path)) => Reporter::unix(path),
            Ok(other) => {
                tracing::info!(addr = ?other, "host API address not served by this guest; not reporting");
                Reporter::disabled()
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring host_api_url");
                Reporter::disabled()
            }
        }
    }

    /// A reporter sending to the unix socket `path`.
    pub fn unix(path: PathBuf) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Report(n) => {
                        match tokio::time::timeout(REPORT_TIMEOUT, send(&path, &n)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => {
                                tracing::debug!(event = %n.event, error = %e, "host report not delivered")
                            }
                            Err(_) => tracing::debug!(event = %n.event, "host report timed out"),
                        }
                    }
                    Msg::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Reporter { tx: Some(tx) }
    }

    /// Queue a report (dropped when the queue is full or reporting is disabled).
    pub fn report(&self, event: &str, payload: impl Into<String>) {
        if let Some(tx) = &self.tx {
            if tx
                .try_send(Msg::Report(Notification::new(event, payload)))
                .is_err()
            {
                tracing::debug!(event, "host report dropped (queue full)");
            }
        }
    }

    /// Wait (at most `within`) until the reports queued so far were sent or given up.
    pub async fn flush(&self, within: Duration) {
        let Some(tx) = &self.tx else { return };
        let (done_tx, done_rx) = oneshot::channel();
        let _ = tokio::time::timeout(within, async {
            if tx.send(Msg::Flush(done_tx)).await.is_ok() {
                let _ = done_rx.await;
            }
        })
        .await;
    }
}

async fn send(path: &std::path::Path, n: &Notification) -> Result<(), String> {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|e| format!("connect {}: {e}", path.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
    let req = hyper::Request::post(PATH_NOTIFY)
        .header(hyper::header::HOST, "host")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("host answered {}", resp.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_host_or_an_unserved_address_drops_reports_silently() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reporter::unix(dir.path().join("nobody-listens.sock"));
        for i in 0..(QUEUE * 2) {
            r.report("boot.progress", format!("step {i}"));
        }
        r.flush(Duration::from_secs(20)).await;
        assert!(Reporter::from_url(Some("vsock://2:10000")).tx.is_none());
        assert!(Reporter::from_url(Some("not a url")).tx.is_none());
        assert!(Reporter::from_url(None).tx.is_none());
    }
}
