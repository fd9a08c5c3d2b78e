//! Connecting to an app's instances: pick the best candidates, race connects to them,
//! and — when the gateway terminated the client's TLS — open TLS to the app and check
//! that its certificate is a KMS-issued chain *for the routed app* before a byte of the
//! client's flows.
//!
//! ```text
//!  candidates: port policy allows the port, not removed
//!  order:      healthy first, then fewest open connections, ties rotated
//!  race:       the first `race` candidates at once (TCP connect [+ PROXY v2 header]
//!              [+ TLS + chain check]); the first to finish wins, the others are dropped;
//!              if all fail, the next `race` candidates; each failure marks the instance
//!              unhealthy for a while
//!  TLS hop:    the app proves it holds its certificate key (handshake), and its chain is
//!              leaf → app CA → the KMS root registered on chain with the routed app id
//!              in both (verify_app_chain); plain TCP only for apps configured so
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_attestation::{verify_app_chain, ChainError, RootCa};
use rustls_pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::forward::Io;
use crate::registry::Instance;
use crate::service::Shared;
use cairn_onchain::unix_now;

/// How long a verified app chain is remembered.
pub const CHAIN_CACHE_TTL: Duration = Duration::from_secs(60);
/// How many verified app chains are remembered.
pub const CHAIN_CACHE_ENTRIES: usize = 1024;

/// One place an app port is reached.
#[derive(Clone)]
pub(crate) struct Target {
    pub instance: Arc<Instance>,
    pub addr: SocketAddr,
    pub proxy_header: bool,
}

/// What runs over the connection to the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop {
    /// TLS to the app, its chain checked for the app id.
    Tls,
    /// Bytes as they are: passthrough, or an app configured for plain TCP.
    Raw,
}

/// Why one connect attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to {addr}: no answer within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("TLS to {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} presented no certificate")]
    NoCertificate { addr: SocketAddr },
    #[error("{addr}: its certificate is not the routed app's: {source}")]
    Chain {
        addr: SocketAddr,
        #[source]
        source: ChainError,
    },
}

/// The connection to the winning instance.
pub(crate) struct Connected {
    pub stream: Box<dyn Io>,
    pub instance: Arc<Instance>,
}

/// Order the candidates (see the module docs).
fn order(mut targets: Vec<Target>) -> Vec<Target> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    if !targets.is_empty() {
        let n = targets.len();
        targets.rotate_left(NEXT.fetch_add(1, Ordering::Relaxed) % n);
    }
    targets.sort_by_key(|t| (!t.instance.health.healthy(), t.instance.open_connections()));
    targets
}

/// Connect to the best instance among `targets` for `app_id`, racing `g`'s configured
/// number at a time. `client` and `local` are the client connection's addresses (for a
/// PROXY header).
pub(crate) async fn connect(
    g: &Arc<Shared>,
    app_id: [u8; 20],
    targets: Vec<Target>,
    hop: Hop,
    client: SocketAddr,
    local: SocketAddr,
) -> Option<Connected> {
    let race = g.options.proxy.race.max(1);
    for group in order(targets).chunks(race) {
        let mut set = JoinSet::new();
        for t in group {
            let (g, t) = (Arc::clone(g), t.clone());
            set.spawn(async move {
                let r = attempt(&g, &app_id, &t, hop, client, local).await;
                (t.instance, r)
            });
        }
        while let Some(joined) = set.join_next().await {
            let Ok((instance, result)) = joined else {
                continue;
            };
            match result {
                Ok(stream) => {
                    instance.health.ok();
                    // the losers are dropped (and their sockets closed) with the set
                    return Some(Connected { stream, instance });
                }
                Err(e) => {
                    instance.health.failed();
                    g.metrics.backend_failed();
                    tracing::debug!(app_id = %hex::encode(app_id), instance = %hex::encode(&instance.instance_id), error = %e, "instance did not answer");
                }
            }
        }
    }
    None
}

async fn attempt(
    g: &Shared,
    app_id: &[u8; 20],
    t: &Target,
    hop: Hop,
    client: SocketAddr,
    local: SocketAddr,
) -> Result<Box<dyn Io>, BackendError> {
    let addr = t.addr;
    let after = g.options.proxy.connect_timeout;
    let deadline = tokio::time::Instant::now() + after;
    let mut tcp = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| BackendError::Timeout { addr, after })?
        .map_err(|source| BackendError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    if t.proxy_header {
        tokio::time::timeout_at(deadline, tcp.write_all(&proxy_v2_header(client, local)))
            .await
            .map_err(|_| BackendError::Timeout { addr, after })?
            .map_err(|source| BackendError::Connect { addr, source })?;
    }
    if hop == Hop::Raw {
        return Ok(Box::new(tcp));
    }
    let tls = tokio::time::timeout_at(
        deadline,
        TlsConnector::from(Arc::clone(&g.backend_tls))
            .connect(ServerName::IpAddress(addr.ip().into()), tcp),
    )
    .await
    .map_err(|_| BackendError::Timeout { addr, after })?
    .map_err(|source| BackendError::Tls { addr, source })?;
    let certs = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or(BackendError::NoCertificate { addr })?;
    g.chains
        .check(&g.identity.root, certs, app_id, unix_now())
        .map_err(|source| BackendError::Chain { addr, source })?;
    Ok(Box::new(tls))
}

/// Verified app chains, so that a burst of connections to the same app costs one chain
/// verification (ECDSA) per [`CHAIN_CACHE_TTL`]; keyed by the app id and every
/// certificate's bytes, bounded by [`CHAIN_CACHE_ENTRIES`].
#[derive(Debug, Default)]
pub(crate) struct ChainCache {
    entries: Mutex<HashMap<[u8; 32], (Instant, i64)>>,
}

impl ChainCache {
    /// `verify_app_chain(root, chain, app_id, now)`, or a recent equal success.
    pub fn check(
        &self,
        root: &RootCa,
        chain: &[CertificateDer<'_>],
        app_id: &[u8; 20],
        now: u64,
    ) -> Result<(), ChainError> {
        let mut h = Sha256::new();
        h.update(app_id);
        for c in chain {
            h.update((c.len() as u64).to_be_bytes());
            h.update(c.as_ref());
        }
        let key: [u8; 32] = h.finalize().into();
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, not_after)) = entries.get(&key) {
                if at.elapsed() < CHAIN_CACHE_TTL && now_i <= *not_after {
                    return Ok(());
                }
            }
        }
        let verified = verify_app_chain(root, chain, app_id, now)?;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CHAIN_CACHE_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < CHAIN_CACHE_TTL);
            if entries.len() >= CHAIN_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), verified.leaf_not_after));
        Ok(())
    }
}

/// The PROXY protocol v2 header (haproxy's proxy-protocol.txt §2.2) for a TCP
/// connection from `src` to `dst`: signature, version 2 / PROXY, TCP over IPv4 or IPv6
/// (an IPv4 address is written IPv4-mapped when the other is IPv6), addresses, ports.
pub fn proxy_v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    const SIGNATURE: [u8; 12] = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
    ];
    let mut h = Vec::with_capacity(52);
    h.extend_from_slice(&SIGNATURE);
    h.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        _ => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped().octets(),
                SocketAddr::V6(v6) => v6.ip().octets(),
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(src));
            h.extend_from_slice(&v6(dst));
        }
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_v2_headers_match_the_spec_layout() {
        let h = proxy_v2_header(
            "192.168.1.1:56324".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        );
        assert_eq!(
            hex::encode(&h),
            concat!(
                "0d0a0d0a000d0a515549540a", // signature
                "21",                       // v2, PROXY
                "11",                       // TCP over IPv4
                "000c",                     // 12 address bytes
                "c0a80101",                 // 192.168.1.1
                "0a000001",                 // 10.0.0.1
                "dc04",                     // 56324
                "01bb"                      // 443
            )
        );
        let h = proxy_v2_header(
            "[2001:db8::1]:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert_eq!(h.len(), 16 + 36);
        assert_eq!((h[13], u16::from_be_bytes([h[14], h[15]])), (0x21, 36));
        assert_eq!(
            &h[32..48],
            &std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets()
        );
        assert_eq!(&h[48..52], &[0, 1, 0, 2]);
    }
}
