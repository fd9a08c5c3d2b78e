//! Host port mapping: each CVM port gets a loopback port from the configured range that
//! no other CVM holds (running or not: a stopped CVM keeps its ports) and that nothing
//! else on the host is listening on right now.
//!
//! The bind probe and the app's own bind are not atomic: another process may take the
//! port in between. The VMM checks again at every start and answers `409 conflict.port`.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};

use cairn_protocol::vmm::{PortMapping, PortRequest, MAX_PORTS};

use crate::error::{Conflict, Error, Result};

/// Whether `127.0.0.1:port` can be bound now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Allocate host ports for `requests` from `range` (inclusive), avoiding `taken` (ports
/// of other CVMs) and ports something already listens on.
pub fn allocate(
    requests: &[PortRequest],
    range: [u16; 2],
    taken: &BTreeSet<u16>,
) -> Result<Vec<PortMapping>> {
    if requests.len() > MAX_PORTS {
        return Err(Error::invalid(
            "ports",
            format!("{} ports, more than {MAX_PORTS}", requests.len()),
        ));
    }
    let [lo, hi] = range;
    let mut guest = BTreeSet::new();
    let mut used: BTreeSet<u16> = taken.clone();
    let mut out = Vec::with_capacity(requests.len());
    // Explicit host ports first, so a later automatic pick never steals one.
    for (i, r) in requests.iter().enumerate() {
        if r.guest_port == 0 {
            return Err(Error::invalid(
                format!("ports[{i}].guest_port"),
                "must be > 0",
            ));
        }
        if !guest.insert(r.guest_port) {
            return Err(Error::invalid(
                format!("ports[{i}].guest_port"),
                format!("guest port {} is mapped twice", r.guest_port),
            ));
        }
        if let Some(h) = r.host_port {
            if h < lo || h > hi {
                return Err(Error::invalid(
                    format!("ports[{i}].host_port"),
                    format!("{h} is outside the VMM's port range {lo}-{hi}"),
                ));
            }
            if !used.insert(h) {
                return Err(Error::conflict(
                    Conflict::Port,
                    format!("host port {h} is already mapped to another CVM"),
                ));
            }
            if !is_free(h) {
                return Err(Error::conflict(
                    Conflict::Port,
                    format!("host port {h} is in use on the host"),
                ));
            }
        }
    }
    let mut next = lo;
    for r in requests {
        let host_port = match r.host_port {
            Some(h) => h,
            None => loop {
                if next > hi || next == 0 {
                    return Err(Error::conflict(
                        Conflict::Port,
                        format!("no free host port left in {lo}-{hi}"),
                    ));
                }
                let p = next;
                next = next.checked_add(1).unwrap_or(0);
                if !used.contains(&p) && is_free(p) {
                    used.insert(p);
                    break p;
                }
            },
        };
        out.push(PortMapping {
            guest_port: r.guest_port,
            host_port,
        });
    }
    Ok(out)
}

/// Check that every host port of `ports` can be bound now (before a start).
pub fn check_free(ports: &[PortMapping]) -> Result<()> {
    for p in ports {
        if !is_free(p.host_port) {
            return Err(Error::conflict(
                Conflict::Port,
                format!(
                    "host port {} (for guest port {}) is in use on the host",
                    p.host_port, p.guest_port
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(guest: u16, host: Option<u16>) -> PortRequest {
        PortRequest {
            guest_port: guest,
            host_port: host,
        }
    }

    /// A range of ports nothing on this host listens on (probed).
    fn free_range() -> [u16; 2] {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        [p, p.saturating_add(3)]
    }

    #[test]
    fn picks_free_ports_and_honours_explicit_ones() {
        // Other tests bind ports meanwhile: a range one of them took since
        // `free_range` looked is a fair `Conflict`; try another (a bounded number).
        for _ in 0..20 {
            let [lo, hi] = free_range();
            let got = match allocate(
                &[req(80, None), req(443, Some(hi))],
                [lo, hi],
                &BTreeSet::new(),
            ) {
                Err(Error::Conflict {
                    kind: Conflict::Port,
                    ..
                }) => continue,
                other => other.unwrap(),
            };
            assert_eq!(got[1].host_port, hi);
            assert!(got[0].host_port >= lo && got[0].host_port < hi);
            return;
        }
        panic!("no free range of 4 loopback ports in 20 tries");
    }

    #[test]
    fn a_port_of_another_cvm_or_a_listening_port_is_a_conflict() {
        let [lo, hi] = free_range();
        let taken: BTreeSet<u16> = [lo].into();
        let e = allocate(&[req(80, Some(lo))], [lo, hi], &taken).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Conflict {
                    kind: Conflict::Port,
                    ..
                }
            ),
            "{e}"
        );
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let busy = listener.local_addr().unwrap().port();
        let e = allocate(&[req(80, Some(busy))], [busy, busy], &BTreeSet::new()).unwrap_err();
        assert!(
            matches!(e, Error::Conflict { kind: Conflict::Port, ref message } if message.contains("in use")),
            "{e}"
        );
        let e = check_free(&[PortMapping {
            guest_port: 1,
            host_port: busy,
        }])
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Conflict {
                    kind: Conflict::Port,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_requests_are_invalid_not_conflicts() {
        let [lo, hi] = free_range();
        let e = allocate(&[req(80, None), req(80, None)], [lo, hi], &BTreeSet::new()).unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "ports[1].guest_port"),
            "{e}"
        );
        let e = allocate(&[req(80, Some(1))], [lo, hi], &BTreeSet::new()).unwrap_err();
        assert!(
            matches!(e, Error::Invalid { ref field, .. } if field == "ports[0].host_port"),
            "{e}"
        );
        let e = allocate(&[req(0, None)], [lo, hi], &BTreeSet::new()).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
    }

    #[test]
    fn an_exhausted_range_is_a_conflict() {
        let [lo, _] = free_range();
        let e = allocate(&[req(1, None), req(2, None)], [lo, lo], &BTreeSet::new()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Conflict {
                    kind: Conflict::Port,
                    ..
                }
            ),
            "{e}"
        );
    }
}
