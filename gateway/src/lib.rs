//! cairn-gateway — TLS ingress for Cairn CVMs that routes by SNI, admits only instances
//! the chain allows, and drops revoked ones within one policy poll (DESIGN.md §8,
//! docs/gateway.md).
//!
//! ```text
//!  CVM (cairn-guest) ──mutual TLS, KMS-issued chain + RA-TLS evidence──► registration
//!     admission: chain to the KMS root on chain, evidence, OS image, measured compose,
//!                KmsAuth.isAppAllowed @ head − N  ──► registry (address, ports, policy)
//!  client ──TLS, SNI <id>[-port][s].<base>──► proxy
//!     passthrough (s): bytes untouched to an instance (raced connects)
//!     terminate:       gateway certificate (file or ACME) ─► TLS to the app, its chain
//!                      checked for the routed app id ─► bytes
//!  policy poll: each new policy block, isAppAllowed again for every instance (and the
//!               gateway itself); denied ─► removed, its open connections closed
//! ```
//!
//! The gateway is itself a Cairn app: its TLS identity comes from the KMS through its own
//! guest agent (`GetTlsKey`), and KmsAuth's `gatewayAppId` must name it. Gateway nodes
//! share no state: every CVM registers with every node.
//!
//! What it trusts: the chain (through its RPC endpoint, chain id checked) for policy and
//! the KMS root; its quote verifier's trust root and collateral; its own guest agent.
//! What it does **not** do: keep state across restarts (CVMs register again), decide
//! policy (the contracts do), inspect HTTP (terminated traffic is forwarded as bytes), or
//! trust what a registering CVM says beyond its verified evidence (its address is the
//! connection's source; its ports only steer traffic to its own address).
//!
//! # Layout
//! Private modules; the `pub use` block below is the whole API.
//! - `config` — [`Config`] (TOML + `CAIRN_GATEWAY_*`), [`GatewayOptions`].
//! - `service` — [`run`], [`Listeners`]: start-up checks and the node's tasks.
//! - `identity` — the gateway's KMS-issued identity from its guest agent.
//! - `admission` — a registration's checks, in order.
//! - `registration` — the registration listener (mutual TLS, `POST /v1/register`).
//! - `registry` — admitted instances; removal closes their connections.
//! - `policy` — the policy poll: revocation and the self-check; fail closed when stale.
//! - `proxy` — the public listener: ClientHello, SNI, terminate or pass through.
//! - `hello` — reading a ClientHello within bounds; TLS alerts.
//! - `sni` — [`sni::parse`]: `<id>[-port][s].<base>`.
//! - `backend` — choosing, racing and connecting to instances; the TLS hop's chain check;
//!   PROXY v2 headers.
//! - `forward` — copying bytes under idle/total timeouts, revocation and shutdown.
//! - `certs` — [`CertSource`]: certificate files reloaded on change, or ACME.
//! - `admin` — status, metrics, health.
//! - `limits` — [`ProxyLimits`], [`RegistrationLimits`].
//! - `metrics` — [`Metrics`].
//! - `reject` — [`Check`], [`ApiError`].
//! - `error` — [`Error`].

mod admin;
mod admission;
mod backend;
mod certs;
mod config;
mod error;
mod forward;
mod hello;
mod identity;
mod limits;
mod metrics;
mod policy;
mod proxy;
mod registration;
mod registry;
mod reject;
mod service;
pub mod sni;

// The public interface is:
pub use crate::{
    // Wire-level helpers (PROXY header, TLS alerts).
    backend::proxy_v2_header,
    // Certificates.
    certs::{load_pem_pair, CertSource, FileSource},
    // Configuration.
    config::{
        parse_agent, AdminSection, AppOptions, AppSection, AttestationSection, CertConfig,
        ChainSection, Config, GatewayOptions, IdentitySection, ProxySection, RegistrationSection,
        TlsSection, Trust, DEFAULT_ADMIN_LISTEN, DEFAULT_AGENT, DEFAULT_LISTEN,
        DEFAULT_MAX_POLICY_AGE, DEFAULT_POLL_INTERVAL, DEFAULT_REGISTRATION_LISTEN, ENV_PREFIX,
    },
    // Errors, refusals, metrics.
    error::{Error, Result},
    forward::Ended,
    hello::{alert, alerts},
    identity::GATEWAY_SUBJECT,
    limits::{
        ProxyLimits, RegistrationLimits, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HELLO_TIMEOUT,
        DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_APP,
        DEFAULT_MAX_CONNECTIONS_PER_SOURCE, DEFAULT_MAX_HELLO_LEN, DEFAULT_RACE,
        DEFAULT_REGISTRATION_TTL, DEFAULT_REREGISTER_AFTER, DEFAULT_TOTAL_TIMEOUT,
    },
    metrics::{Gauges, Metrics},
    reject::{ApiError, Check, Dependency},
    // Running a node.
    service::{install_crypto_provider, run, Listeners},
};
