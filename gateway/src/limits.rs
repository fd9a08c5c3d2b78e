//! What keeps one client from starving the others: connection limits (in all, per
//! source, per app), and a deadline on every phase of a connection (ClientHello,
//! handshake, connect, idle, lifetime). A connection slot is held only while its client
//! makes progress; one source holds at most its share of slots; a slow ClientHello is cut
//! at the hello timeout and never grows past the hello bound.

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
