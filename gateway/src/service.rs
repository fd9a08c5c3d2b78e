//! [`run`]: start a gateway node on bound listeners and serve until shutdown.
//!
//! ```text
//!  identity (agent GetTlsKey, chain + evidence checked) ─► chain client
//!  ─► self-check at the policy block (gatewayAppId = us, root = ours, isAppAllowed(us))
//!  ─► certificate source (files or ACME) ─► first policy poll
//!  ─► serve: proxy, registration, admin; policy poll and certificate renewal tasks
//!  shutdown ─► stop accepting, end forwarded connections, drain registrations
//! ```

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use cairn_onchain::ChainClient;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::backend::ChainCache;
use crate::certs::CertSource;
use crate::config::GatewayOptions;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::policy::{self, PolicyState, SelfCheck};
use crate::registration::MAX_IN_FLIGHT;
use crate::registry::Registry;

/// The bound listeners of a node (tests bind `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listeners {
    /// The public TLS listener (SNI routing).
    pub proxy: TcpListener,
    /// The registration listener (mutual TLS).
    pub registration: TcpListener,
    /// The admin listener (status, metrics).
    pub admin: TcpListener,
}

/// Everything the node's tasks share.
pub(crate) struct Shared {
    pub options: GatewayOptions,
    pub chain: ChainClient,
    pub identity: Identity,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub policy: PolicyState,
    pub chains: ChainCache,
    pub backend_tls: Arc<rustls::ClientConfig>,
    pub public_tls: Arc<ServerConfig>,
    pub registration_tls: Arc<ServerConfig>,
    pub admissions: Semaphore,
    pub own_router: Option<Router>,
}

/// Install ring as the process-wide rustls provider (reqwest, used by ACME and the
/// PCCS client, needs one); harmless when one is installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn public_tls(source: &CertSource) -> Result<Arc<ServerConfig>> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_no_client_auth()
            .with_cert_resolver(source.store());
    // Terminated connections are forwarded as bytes: HTTP/1.1 is what both hops speak
    // (passthrough keeps the client's own ALPN, h2 included, end to end).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Start a gateway node on `listeners` with `options`; serve until `shutdown` resolves.
///
/// Start-up fails (before anything is served) when the agent gives no usable identity,
/// the chain cannot be read, KmsAuth does not name this CVM's app as the gateway, the
/// KMS root that issued its chain is not the registered one, the chain does not allow
/// the gateway itself, or the certificate source is unusable.
pub async fn run(
    listeners: Listeners,
    options: GatewayOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    install_crypto_provider();
    let identity = Identity::obtain(&options).await?;
    let chain = ChainClient::connect(&options.chain, None).await?;
    let at = chain.policy_block().await?;
    let certs = CertSource::start(&options.certs, &options.agent).await?;
    let own_router = certs.acme().map(cairn_acme::acme_info_router);
    let shared = Arc::new(Shared {
        registry: Registry::new(
            options.proxy.max_connections_per_app,
            options.apps.clone(),
            options.registration.ttl,
        ),
        metrics: Arc::new(Metrics::default()),
        policy: PolicyState::default(),
        chains: ChainCache::default(),
        backend_tls: identity.backend_config()?,
        public_tls: public_tls(&certs)?,
        registration_tls: identity.registration_config()?,
        admissions: Semaphore::new(MAX_IN_FLIGHT),
        own_router,
        options,
        chain,
        identity,
    });
    match policy::self_check(&shared, at).await {
        Ok(()) => {}
        Err(SelfCheck::Unavailable(e)) => return Err(Error::Chain(e)),
        Err(SelfCheck::Denied(reason)) => {
            return Err(Error::NotGatewayApp {
                ours: shared.identity.app_id,
                on_chain: reason,
            })
        }
    }
    policy::poll_once(&shared).await;
    tracing::info!(
        app_id = %hex::encode(shared.identity.app_id),
        base_domain = %shared.options.base_domain,
        block = at.number,
        "gateway serving"
    );

    let (stop_tx, stop) = watch::channel(false);
    let certs = Arc::new(certs);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::proxy::serve(
        listeners.proxy,
        Arc::clone(&shared),
        stop.clone(),
    ));
    tasks.spawn(crate::registration::serve(
        listeners.registration,
        Arc::clone(&shared),
        stop.clone(),
    ));
    tasks.spawn(crate::admin::serve(
        listeners.admin,
        Arc::clone(&shared),
        stop.clone(),
    ));
    tasks.spawn(policy::run(Arc::clone(&shared), stop.clone()));
    {
        let (certs, metrics, stop) = (
            Arc::clone(&certs),
            Arc::clone(&shared.metrics),
            stop.clone(),
        );
        tasks.spawn(async move { certs.run(metrics, stop).await });
    }
    shutdown.await;
    tracing::info!("gateway shutting down");
    stop_tx.send_replace(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}
