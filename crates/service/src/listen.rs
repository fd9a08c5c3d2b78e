//! The accept loop's admission: a connection counts against the listener's connection
//! limit and against its source's ([`Sources`]) before any byte of it is read, and an
//! accept error backs off instead of spinning.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::{SourceSlot, Sources};

/// How long the accept loop pauses after an accept error.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why a connection was closed at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The listener already serves its maximum number of connections.
    MaxConnections,
    /// The source address already has its maximum number of connections.
    MaxPerSource,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxPerSource => "max_per_source",
        }
    }
}

/// The connection limits of one listener: in all, and per source.
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    slots: Arc<Semaphore>,
    sources: Arc<Sources>,
}

/// One admitted connection: it holds its slot and its source's until dropped.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _source: SourceSlot,
}

impl ConnectionGate {
    /// At most `max_connections` open connections, `max_per_source` from one source.
    pub fn new(max_connections: usize, max_per_source: usize) -> Self {
        ConnectionGate {
            slots: Arc::new(Semaphore::new(max_connections)),
            sources: Sources::new(max_per_source),
        }
    }

    /// Admit a connection from `ip`, or say which limit refuses it.
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, Refusal> {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            tracing::warn!(%ip, "connection limit reached; closing");
            return Err(Refusal::MaxConnections);
        };
        let Some(source) = self.sources.admit(ip) else {
            tracing::debug!(%ip, "per-source connection limit reached; closing");
            return Err(Refusal::MaxPerSource);
        };
        Ok(Admitted {
            _slot: slot,
            _source: source,
        })
    }
}

/// After a failed accept (EMFILE and friends): log it and pause [`ACCEPT_BACKOFF`], so
/// the loop does not spin while the process is out of descriptors.
pub async fn accept_failed(error: &std::io::Error) {
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// The next TCP connection `gate` admits on `listener`, or `None` once `stop` completes.
/// A refused connection is closed at once (after `refused` counts it); an accept error
/// backs off ([`accept_failed`]).
pub async fn accept_admitted(
    listener: &TcpListener,
    gate: &ConnectionGate,
    stop: impl Future<Output = ()>,
    refused: impl Fn(Refusal),
) -> Option<(TcpStream, SocketAddr, Admitted)> {
    tokio::pin!(stop);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut stop => return None,
        };
        match gate.admit(remote.ip()) {
            Ok(admitted) => return Some((tcp, remote, admitted)),
            Err(why) => refused(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn the_gate_refuses_past_either_limit_and_frees_on_drop() {
        let gate = ConnectionGate::new(3, 2);
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), Refusal::MaxPerSource);
        let _third = gate.admit(b).unwrap();
        assert_eq!(gate.admit(b).unwrap_err(), Refusal::MaxConnections);
        drop(first);
        let _again = gate.admit(a).unwrap();
    }

    #[tokio::test]
    async fn accept_admitted_closes_refused_connections_and_ends_at_stop() {
        use std::sync::Mutex;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = ConnectionGate::new(1, 1);
        let refusals = Mutex::new(Vec::new());
        let count = |why| refusals.lock().unwrap().push(why);
        let _first = TcpStream::connect(addr).await.unwrap();
        let (_tcp, _, held) = accept_admitted(&listener, &gate, std::future::pending(), count)
            .await
            .unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let accepting = accept_admitted(
            &listener,
            &gate,
            async move {
                let _ = stop_rx.await;
            },
            count,
        );
        tokio::pin!(accepting);
        // The second connection is refused at the limit; the loop goes on until stopped.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while refusals.lock().unwrap().is_empty() {
            tokio::select! {
                r = &mut accepting => panic!("returned early: {:?}", r.map(|(_, a, _)| a)),
                () = tokio::time::sleep_until(deadline) => panic!("no refusal"),
                () = tokio::task::yield_now() => {}
            }
        }
        assert_eq!(*refusals.lock().unwrap(), [Refusal::MaxConnections]);
        stop_tx.send(()).unwrap();
        assert!(accepting.await.is_none());
        drop(held);
    }

    #[test]
    fn refusals_have_their_metric_labels() {
        assert_eq!(Refusal::MaxConnections.label(), "max_connections");
        assert_eq!(Refusal::MaxPerSource.label(), "max_per_source");
    }
}
