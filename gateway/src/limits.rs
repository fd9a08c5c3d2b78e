//! What keeps one client from starving the others: connection limits (in all, per
//! source, per app), and a deadline on every phase of a connection (ClientHello,
//! handshake, connect, idle, lifetime). A connection slot is held only while its client
//! makes progress; one source holds at most its share of slots; a slow ClientHello is cut
//! at the hello timeout and never grows past the hello bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Default [`ProxyLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 16384;
/// Default [`ProxyLimits::max_connections_per_source`].
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 512;
/// Default [`ProxyLimits::max_connections_per_app`].
pub const DEFAULT_MAX_CONNECTIONS_PER_APP: usize = 4096;
/// Default [`ProxyLimits::hello_timeout`].
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`ProxyLimits::max_hello_len`]: a ClientHello with post-quantum key shares
/// and many extensions is under 4 KiB; 16 KiB leaves room without inviting abuse.
pub const DEFAULT_MAX_HELLO_LEN: usize = 16 * 1024;
/// Default [`ProxyLimits::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ProxyLimits::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default [`ProxyLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default [`ProxyLimits::total_timeout`].
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Default [`ProxyLimits::race`].
pub const DEFAULT_RACE: usize = 2;

/// Limits of the public listener (config section `[proxy]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyLimits {
    /// Most open connections; further ones are closed at accept.
    pub max_connections: usize,
    /// Most open connections from one source (an IPv4 address, or an IPv6 /64).
    pub max_connections_per_source: usize,
    /// Most open connections to one app (per-app overrides in `[apps.*]`); further ones
    /// get the `access_denied` alert.
    pub max_connections_per_app: usize,
    /// Time allowed for the whole ClientHello.
    pub hello_timeout: Duration,
    /// Largest ClientHello (bytes read before it is complete).
    pub max_hello_len: usize,
    /// Time allowed for the rest of a terminated TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for each connect (TCP, and TLS to the app) to an instance.
    pub connect_timeout: Duration,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// The longest a connection lives.
    pub total_timeout: Duration,
    /// How many of an app's best instances are connected to at once; the first to
    /// answer wins.
    pub race: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            max_connections_per_app: DEFAULT_MAX_CONNECTIONS_PER_APP,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
            max_hello_len: DEFAULT_MAX_HELLO_LEN,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            race: DEFAULT_RACE,
        }
    }
}

/// Default [`RegistrationLimits::ttl`].
pub const DEFAULT_REGISTRATION_TTL: Duration = Duration::from_secs(90);
/// Default [`RegistrationLimits::reregister_after`].
pub const DEFAULT_REREGISTER_AFTER: Duration = Duration::from_secs(30);

/// Limits of the registration listener (config section `[registration]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrationLimits {
    /// An instance that has not registered again for this long is forgotten (its
    /// connections closed): a stopped CVM leaves no route behind.
    pub ttl: Duration,
    /// What the gateway tells CVMs: register again after this long.
    pub reregister_after: Duration,
    /// Most open registration connections.
    pub max_connections: usize,
    /// Most open registration connections per source.
    pub max_connections_per_source: usize,
    /// Time allowed for the TLS handshake of a registration.
    pub handshake_timeout: Duration,
}

impl Default for RegistrationLimits {
    fn default() -> Self {
        RegistrationLimits {
            ttl: DEFAULT_REGISTRATION_TTL,
            reregister_after: DEFAULT_REREGISTER_AFTER,
            max_connections: 1024,
            max_connections_per_source: 64,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// The source a connection is counted against: the IPv4 address (also when written as
/// an IPv4-mapped IPv6 address), or the IPv6 /64 (one host usually owns a whole /64).
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// Open connections per source, bounded.
#[derive(Debug)]
pub(crate) struct Sources {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its source until dropped.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    sources: Arc<Sources>,
    key: IpAddr,
}

impl Sources {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Count a connection from `ip`, unless its source is at the limit. The map holds
    /// only sources with an open connection, so it is bounded by the connection limit.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let key = source_of(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: Arc::clone(self),
            key,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self
            .sources
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_slash_64s() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(source_of(v4), v4);
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        assert_eq!(source_of(mapped), v4);
        let a: Ipv6Addr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a.into()), source_of(b.into()));
        assert_ne!(source_of(a.into()), source_of(c.into()));
    }

    #[test]
    fn a_source_at_its_limit_is_refused_until_a_connection_closes() {
        let sources = Sources::new(2);
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let a = sources.admit(ip).unwrap();
        let _b = sources.admit(ip).unwrap();
        assert!(sources.admit(ip).is_none());
        let _c = sources.admit(other).unwrap();
        drop(a);
        let _d = sources.admit(ip).unwrap();
        assert!(sources.admit(ip).is_none());
    }

    #[test]
    fn the_source_map_forgets_sources_without_connections() {
        let sources = Sources::new(1);
        for i in 0..100u8 {
            drop(
                sources
                    .admit(IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)))
                    .unwrap(),
            );
        }
        assert!(sources
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty());
    }
}
