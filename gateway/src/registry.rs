//! The admitted instances: what the proxy routes to. Gateways keep no state across
//! restarts (DESIGN.md §1): everything here came from a registration that passed
//! admission, and leaves when the chain stops allowing it, when it stops registering, or
//! when the node stops.
//!
//! Every instance carries a `closed` signal: removing it (revocation, expiry) flips the
//! signal and every connection forwarding to it ends (`proxy` watches it), so a revoked
//! instance loses its open connections in the same step that stops new ones.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use cairn_onchain::{BootInfo, PolicyBlock};
use cairn_protocol::compose::PortPolicy;
use cairn_protocol::gateway::{AppStatus, BlockRef, DenialStatus, InstanceStatus};
use cairn_protocol::sysconfig::AppPort;
use tokio::sync::{watch, Semaphore};

use crate::config::AppOptions;

/// How many refused registrations and revocations the status keeps.
pub const MAX_DENIALS_KEPT: usize = 64;
/// After a failed connect, an instance is tried after the healthy ones for this long.
pub const UNHEALTHY_FOR: Duration = Duration::from_secs(10);

/// Milliseconds since the first call: tokio's monotonic clock (which tests can pause),
/// in a form the atomics can hold.
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<tokio::time::Instant> = OnceLock::new();
    let start = *START.get_or_init(tokio::time::Instant::now);
    u64::try_from(
        tokio::time::Instant::now()
            .saturating_duration_since(start)
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// What admission established about a registering instance.
#[derive(Clone, Debug)]
pub(crate) struct Admitted {
    /// The app (verified evidence and chain agree on it).
    pub app_id: [u8; 20],
    /// The instance id (20 bytes, or empty with `no_instance_id`).
    pub instance_id: Vec<u8>,
    /// The registry key: the instance id, or the first 20 bytes of SHA-256 of the leaf
    /// key when the app measures no instance id.
    pub key: [u8; 20],
    /// Where its ports are.
    pub reach: Reach,
    /// What the chain judged.
    pub boot: BootInfo,
    /// The block that allowed it.
    pub allowed_at: PolicyBlock,
}

/// Where an instance's ports are reachable, and which it exposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reach {
    /// The address the gateway dials.
    pub address: IpAddr,
    /// App port → host port.
    pub port_map: Vec<AppPort>,
    /// The measured compose's port policy.
    pub policy: PortPolicy,
}

impl Reach {
    /// Where app port `port` is reached, and whether it wants a PROXY header; `None`
    /// when the port policy refuses it.
    pub fn target(&self, port: u16) -> Option<(SocketAddr, bool)> {
        if !self.policy.allows(port) {
            return None;
        }
        let host_port = self
            .port_map
            .iter()
            .find(|p| p.guest_port == port)
            .map_or(port, |p| p.host_port);
        Some((
            SocketAddr::new(self.address, host_port),
            self.policy.proxy_protocol(port),
        ))
    }
}

/// Recent connect results of an instance.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    last_failure_ms: AtomicU64,
}

impl Health {
    pub fn ok(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.last_failure_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Healthy: no failure since the last success, or the last one is old.
    pub fn healthy(&self) -> bool {
        self.failures.load(Ordering::Relaxed) == 0
            || now_ms().saturating_sub(self.last_failure_ms.load(Ordering::Relaxed))
                > u64::try_from(UNHEALTHY_FOR.as_millis()).unwrap_or(u64::MAX)
    }
}

/// What changes on every registration and policy check.
#[derive(Clone, Debug)]
struct Standing {
    boot: BootInfo,
    allowed_at: PolicyBlock,
    registered: Instant,
}

/// One admitted instance.
#[derive(Debug)]
pub(crate) struct Instance {
    pub key: [u8; 20],
    pub app_id: [u8; 20],
    pub instance_id: Vec<u8>,
    reach: Mutex<Arc<Reach>>,
    standing: Mutex<Standing>,
    pub health: Health,
    open: AtomicU64,
    closed: watch::Sender<bool>,
}

/// One connection counted against an instance until dropped.
pub(crate) struct OpenConn(Arc<Instance>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Instance {
    fn new(a: Admitted) -> Self {
        Instance {
            key: a.key,
            app_id: a.app_id,
            instance_id: a.instance_id,
            reach: Mutex::new(Arc::new(a.reach)),
            standing: Mutex::new(Standing {
                boot: a.boot,
                allowed_at: a.allowed_at,
                registered: Instant::now(),
            }),
            health: Health::default(),
            open: AtomicU64::new(0),
            closed: watch::Sender::new(false),
        }
    }

    /// Where it is reached.
    pub fn reach(&self) -> Arc<Reach> {
        self.reach
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The boot info the chain judges.
    pub fn boot(&self) -> BootInfo {
        self.standing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .boot
            .clone()
    }

    /// The chain allowed it (again) at `at`.
    pub fn allowed_at(&self, at: PolicyBlock) {
        self.standing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allowed_at = at;
    }

    fn registered(&self) -> Instant {
        self.standing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .registered
    }

    /// Whether it was removed (every connection to it must end).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// A receiver that sees the removal.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Connections open to it.
    pub fn open_connections(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Count a connection to it until the guard drops.
    pub fn open(self: &Arc<Self>) -> OpenConn {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConn(Arc::clone(self))
    }

    fn status(&self, ttl: Duration) -> InstanceStatus {
        let reach = self.reach();
        let st = self
            .standing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let age = st.registered.elapsed();
        InstanceStatus {
            instance_id: self.instance_id.clone(),
            address: reach.address.to_string(),
            port_map: reach.port_map.clone(),
            compose_hash: st.boot.composeHash.0,
            os_image_hash: st.boot.osImageHash.0,
            device_id: st.boot.deviceId.0,
            tcb_status: st.boot.tcbStatus.chars().take(64).collect(),
            allowed_at: block_ref(st.allowed_at),
            registered_secs_ago: age.as_secs(),
            expires_in_secs: ttl.saturating_sub(age).as_secs(),
            healthy: self.health.healthy(),
            open_connections: self.open_connections(),
        }
    }
}

/// A policy block on the wire.
pub(crate) fn block_ref(b: PolicyBlock) -> BlockRef {
    BlockRef {
        number: b.number,
        hash: b.hash.0,
    }
}

/// Where a route leads: the app's instances (or the one instance named) and the app's
/// connection permits.
pub(crate) struct Candidates {
    pub app_id: [u8; 20],
    pub instances: Vec<Arc<Instance>>,
    pub permits: Arc<Semaphore>,
    pub options: AppOptions,
}

struct App {
    instances: Vec<Arc<Instance>>,
    permits: Arc<Semaphore>,
}

#[derive(Default)]
struct Inner {
    apps: HashMap<[u8; 20], App>,
    instances: HashMap<[u8; 20], Arc<Instance>>,
}

/// A refused registration or a removed instance, for the status page.
#[derive(Clone, Debug)]
pub(crate) struct Denial {
    pub app_id: Option<[u8; 20]>,
    pub instance_id: Vec<u8>,
    pub code: String,
    pub reason: String,
    pub block: Option<PolicyBlock>,
    pub at: Instant,
}

/// The admitted instances of one node.
pub(crate) struct Registry {
    inner: RwLock<Inner>,
    per_app: usize,
    apps: HashMap<[u8; 20], AppOptions>,
    ttl: Duration,
    denials: Mutex<VecDeque<Denial>>,
}

impl Registry {
    pub fn new(per_app: usize, apps: HashMap<[u8; 20], AppOptions>, ttl: Duration) -> Self {
        Registry {
            inner: RwLock::new(Inner::default()),
            per_app,
            apps,
            ttl,
            denials: Mutex::new(VecDeque::new()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The options of `app_id` (defaults when not configured).
    pub fn options(&self, app_id: &[u8; 20]) -> AppOptions {
        self.apps.get(app_id).copied().unwrap_or_default()
    }

    /// Admit (or refresh) an instance. A re-registration keeps the instance's open
    /// connections and health, and takes the new reach and boot info.
    pub fn upsert(&self, a: Admitted) -> Arc<Instance> {
        let mut inner = self.write();
        if let Some(existing) = inner.instances.get(&a.key).cloned() {
            if existing.app_id == a.app_id && !existing.is_closed() {
                *existing
                    .reach
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(a.reach);
                *existing
                    .standing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Standing {
                    boot: a.boot,
                    allowed_at: a.allowed_at,
                    registered: Instant::now(),
                };
                return existing;
            }
            remove_locked(&mut inner, &a.key);
        }
        let instance = Arc::new(Instance::new(a));
        let limit = self
            .options(&instance.app_id)
            .max_connections
            .unwrap_or(self.per_app);
        inner
            .apps
            .entry(instance.app_id)
            .or_insert_with(|| App {
                instances: Vec::new(),
                permits: Arc::new(Semaphore::new(limit)),
            })
            .instances
            .push(Arc::clone(&instance));
        inner.instances.insert(instance.key, Arc::clone(&instance));
        instance
    }

    /// The instances `id` routes to: an app id (all its instances) or an instance id.
    pub fn lookup(&self, id: &[u8; 20]) -> Option<Candidates> {
        let inner = self.read();
        if let Some(app) = inner.apps.get(id) {
            return Some(Candidates {
                app_id: *id,
                instances: app.instances.clone(),
                permits: Arc::clone(&app.permits),
                options: self.options(id),
            });
        }
        let instance = inner.instances.get(id)?;
        let app = inner.apps.get(&instance.app_id)?;
        Some(Candidates {
            app_id: instance.app_id,
            instances: vec![Arc::clone(instance)],
            permits: Arc::clone(&app.permits),
            options: self.options(&instance.app_id),
        })
    }

    /// Remove an instance: no new connections, and every open one ends.
    pub fn remove(&self, key: &[u8; 20]) -> Option<Arc<Instance>> {
        let mut inner = self.write();
        remove_locked(&mut inner, key)
    }

    /// Every admitted instance.
    pub fn all(&self) -> Vec<Arc<Instance>> {
        self.read().instances.values().cloned().collect()
    }

    /// How many are admitted.
    pub fn len(&self) -> usize {
        self.read().instances.len()
    }

    /// Remove the instances that have not registered within the TTL; returns them.
    pub fn expire(&self) -> Vec<Arc<Instance>> {
        let stale: Vec<[u8; 20]> = self
            .read()
            .instances
            .values()
            .filter(|i| i.registered().elapsed() > self.ttl)
            .map(|i| i.key)
            .collect();
        let mut inner = self.write();
        stale
            .iter()
            .filter_map(|k| remove_locked(&mut inner, k))
            .collect()
    }

    /// Keep a refused registration or a removal for the status page.
    pub fn record_denial(&self, d: Denial) {
        let mut q = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
        q.push_front(d);
        q.truncate(MAX_DENIALS_KEPT);
    }

    /// The status of every app (sorted by app id) and the recent denials.
    pub fn status(&self) -> (Vec<AppStatus>, Vec<DenialStatus>) {
        let mut apps: Vec<AppStatus> = self
            .read()
            .apps
            .iter()
            .map(|(id, app)| {
                let mut instances: Vec<InstanceStatus> =
                    app.instances.iter().map(|i| i.status(self.ttl)).collect();
                instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
                AppStatus {
                    app_id: *id,
                    open_connections: instances.iter().map(|i| i.open_connections).sum(),
                    instances,
                }
            })
            .collect();
        apps.sort_by_key(|a| a.app_id);
        let denials = self
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|d| DenialStatus {
                app_id: d.app_id.map(|a| a.to_vec()).unwrap_or_default(),
                instance_id: d.instance_id.clone(),
                code: d.code.clone(),
                reason: d.reason.clone(),
                block: d.block.map(block_ref),
                secs_ago: d.at.elapsed().as_secs(),
            })
            .collect();
        (apps, denials)
    }
}

fn remove_locked(inner: &mut Inner, key: &[u8; 20]) -> Option<Arc<Instance>> {
    let instance = inner.instances.remove(key)?;
    if let Some(app) = inner.apps.get_mut(&instance.app_id) {
        app.instances.retain(|i| i.key != *key);
        if app.instances.is_empty() {
            inner.apps.remove(&instance.app_id);
        }
    }
    instance.closed.send_replace(true);
    Some(instance)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use cairn_onchain::alloy::primitives::B256;

    use super::*;

    fn admitted(app: u8, key: u8) -> Admitted {
        Admitted {
            app_id: [app; 20],
            instance_id: vec![key; 20],
            key: [key; 20],
            reach: Reach {
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port_map: vec![AppPort {
                    guest_port: 443,
                    host_port: 20443,
                }],
                policy: PortPolicy::default(),
            },
            boot: BootInfo {
                appId: [app; 20].into(),
                composeHash: B256::ZERO,
                instanceId: [key; 20].into(),
                deviceId: B256::ZERO,
                mrAggregated: B256::ZERO,
                mrSystem: B256::ZERO,
                osImageHash: B256::ZERO,
                tcbStatus: "UpToDate".into(),
                advisoryIds: vec![],
            },
            allowed_at: PolicyBlock {
                number: 7,
                hash: B256::repeat_byte(7),
            },
        }
    }

    #[test]
    fn apps_and_instances_are_both_routable_and_removal_closes() {
        let r = Registry::new(10, HashMap::new(), Duration::from_secs(60));
        let a = r.upsert(admitted(1, 0xa1));
        let _b = r.upsert(admitted(1, 0xa2));
        assert_eq!(r.lookup(&[1; 20]).unwrap().instances.len(), 2);
        let one = r.lookup(&[0xa1; 20]).unwrap();
        assert_eq!((one.app_id, one.instances.len()), ([1; 20], 1));
        assert!(r.lookup(&[2; 20]).is_none());
        let closed = a.closed();
        assert!(!*closed.borrow());
        r.remove(&[0xa1; 20]).unwrap();
        assert!(*closed.borrow(), "removal signals every connection");
        assert!(r.lookup(&[0xa1; 20]).is_none());
        assert_eq!(r.lookup(&[1; 20]).unwrap().instances.len(), 1);
        r.remove(&[0xa2; 20]).unwrap();
        assert!(r.lookup(&[1; 20]).is_none(), "no instance, no app");
    }

    #[test]
    fn a_reregistration_updates_in_place_and_keeps_connections() {
        let r = Registry::new(10, HashMap::new(), Duration::from_secs(60));
        let a = r.upsert(admitted(1, 0xa1));
        let conn = a.open();
        let mut moved = admitted(1, 0xa1);
        moved.reach.address = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let b = r.upsert(moved);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(b.reach().address, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(b.open_connections(), 1);
        drop(conn);
        assert_eq!(b.open_connections(), 0);
    }

    #[test]
    fn the_port_policy_and_map_decide_the_target() {
        let mut reach = admitted(1, 1).reach;
        assert_eq!(
            reach.target(443),
            Some(("127.0.0.1:20443".parse().unwrap(), false))
        );
        assert_eq!(
            reach.target(8080),
            Some(("127.0.0.1:8080".parse().unwrap(), false))
        );
        reach.policy = PortPolicy {
            ports: vec![cairn_protocol::compose::PortAttrs {
                port: 443,
                pp: true,
            }],
            restrict_mode: true,
        };
        assert_eq!(
            reach.target(443),
            Some(("127.0.0.1:20443".parse().unwrap(), true))
        );
        assert_eq!(reach.target(8080), None);
    }

    #[test]
    fn unregistered_instances_expire() {
        let r = Registry::new(10, HashMap::new(), Duration::ZERO);
        let a = r.upsert(admitted(1, 0xa1));
        // a TTL of zero: expired as soon as any time has passed (the clock is monotonic)
        let deadline = Instant::now() + Duration::from_secs(5);
        let gone = loop {
            let gone = r.expire();
            if !gone.is_empty() || Instant::now() > deadline {
                break gone;
            }
        };
        assert_eq!(gone.len(), 1);
        assert!(a.is_closed());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn denials_are_bounded_newest_first() {
        let r = Registry::new(10, HashMap::new(), Duration::from_secs(60));
        for i in 0..(MAX_DENIALS_KEPT + 5) {
            r.record_denial(Denial {
                app_id: None,
                instance_id: vec![],
                code: format!("c{i}"),
                reason: String::new(),
                block: None,
                at: Instant::now(),
            });
        }
        let (_, d) = r.status();
        assert_eq!(d.len(), MAX_DENIALS_KEPT);
        assert_eq!(d[0].code, format!("c{}", MAX_DENIALS_KEPT + 4));
    }
}
