//! [`RunningKms`]: a node serving on a free port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use cairn_attestation::RaTlsCert;
use cairn_kms_client::KmsConnection;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::cluster::{kms_client, DEADLINE};
use crate::node::Node;

/// A KMS node serving on `127.0.0.1:0` (started by [`TestNet`](super::TestNet)); stopped
/// when [`RunningKms::stop`] is called or the test's runtime ends.
#[derive(Debug)]
pub struct RunningKms {
    /// The node (its log, keys, metrics).
    pub node: Arc<Node>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory (kept alive for a restart on the same data).
    pub dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<crate::Result<()>>>,
}

impl RunningKms {
    pub(super) fn new(
        node: Arc<Node>,
        addr: SocketAddr,
        dir: Arc<TempDir>,
        stop: oneshot::Sender<()>,
        task: JoinHandle<crate::Result<()>>,
    ) -> RunningKms {
        RunningKms {
            node,
            addr,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The node's URL (what a guest's `sys-config.json` lists).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A connection presenting `cert` (or none, for the public endpoints), the node's
    /// evidence and `kms:rpc` usage verified by [`kms_client`].
    pub async fn client(&self, cert: Option<&RaTlsCert>) -> KmsConnection {
        kms_client()
            .connect(&self.url(), cert)
            .await
            .expect("connect to the KMS")
    }

    /// A connection presenting `cert` (or none), the node's evidence verified at `now`
    /// (a caller whose clock agrees with a node that runs on an injected clock: the
    /// node's certificate is valid from five minutes before the node's "now").
    pub async fn client_at(&self, cert: Option<&RaTlsCert>, now: u64) -> KmsConnection {
        kms_client()
            .with_clock(move || now)
            .connect(&self.url(), cert)
            .await
            .expect("connect to the KMS")
    }

    /// Signal shutdown (as SIGTERM would) without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shut down, wait for the server to drain, and wait until every handle on the node
    /// is gone (so its directory can be opened again); returns the directory.
    pub async fn stop(mut self) -> Arc<TempDir> {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            task.await
                .expect("KMS server task")
                .expect("KMS server stops cleanly");
        }
        let deadline = Instant::now() + DEADLINE;
        while Arc::strong_count(&self.node) > 1 {
            assert!(
                Instant::now() < deadline,
                "node handles still alive {DEADLINE:?} after shutdown"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Arc::clone(&self.dir)
    }
}
