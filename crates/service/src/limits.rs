//! Per-source connection counting: what keeps one client (or one NAT address) from
//! taking every connection slot of a listener. A source is an IPv4 address (also when
//! written as an IPv4-mapped IPv6 address) or an IPv6 /64 (one host usually owns a whole
//! /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The source a connection from `ip` is counted against: the IPv4 address, or the IPv6 /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
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

/// Open connections per source, each source bounded by the same maximum.
#[derive(Debug)]
pub struct Sources {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its source until dropped.
#[derive(Debug)]
pub struct SourceSlot {
    sources: Arc<Sources>,
    key: IpAddr,
}

impl Sources {
    /// Count at most `max` open connections per source.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Count a connection from `ip`, unless its source is at the limit. The map holds
    /// only sources with an open connection, so it is bounded by the connection limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
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
