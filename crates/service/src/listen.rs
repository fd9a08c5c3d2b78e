//! The accept loop's admission: a connection counts against the listener's connection
//! limit and against its source's ([`Sources`]) before any byte of it is read, and an
//! accept error backs off instead of spinning.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

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

    #[test]
    fn refusals_have_their_metric_labels() {
        assert_eq!(Refusal::MaxConnections.label(), "max_connections");
        assert_eq!(Refusal::MaxPerSource.label(), "max_per_source");
    }
}
