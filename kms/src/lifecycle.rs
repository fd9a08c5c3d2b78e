//! The binary's commands: `bootstrap`, `describe`, `serve` (`onboard` is [`crate::onboard()`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::evidence::{self, Attested};
use crate::keys::RootKeys;
use crate::node::{own_cert, Node, NodeOptions, SECRETS_DIR};
use crate::store::SecretStore;

/// The first key generation.
pub const FIRST_GENERATION: u64 = 1;

/// What `bootstrap` prints: everything needed to register the node on chain.
#[derive(Debug, Serialize)]
pub struct PublicIdentity {
    /// Key generation.
    pub key_generation: u64,
    /// Root k256 public key, compressed, `0x` hex (`setKmsRootKeys`).
    pub root_k256_public_key: String,
    /// Root CA SubjectPublicKeyInfo DER, `0x` hex (`setKmsRootKeys`).
    pub root_ca_spki: String,
    /// Root CA certificate, PEM.
    pub root_ca_cert: String,
    /// Node address (`addKmsNode`; fund it for anchoring).
    pub node_address: String,
    /// This CVM's aggregated MR (`addKmsAggregatedMr`).
    pub mr_aggregated: String,
    /// This CVM's device id (`addKmsDevice`).
    pub device_id: String,
    /// The OS image hash its measurements match (`addOsImageHash`).
    pub os_image_hash: String,
    /// TCB status of its quote.
    pub tcb_status: String,
    /// Its quote (hex) over `SHA-512("ratls-cert:" ‖ SPKI)` of its server certificate.
    pub quote: String,
    /// Its event log (JSON).
    pub event_log: serde_json::Value,
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// Create the root secret (generation 1) and node key, then describe the node.
pub async fn bootstrap(config: &Config) -> Result<PublicIdentity> {
    let opts = config.node_options()?;
    let store = SecretStore::open(opts.data_dir.join(SECRETS_DIR))?;
    let identity = store.bootstrap(FIRST_GENERATION)?;
    let root = RootKeys::derive(&identity.master)?;
    let cert = own_cert(opts.tee.as_ref(), &opts.event_log, &root, opts.clock.now())?;
    let ev = cairn_attestation::parse_ra_tls_extensions(&cert.cert_der)?;
    let own = self_attest(&opts, &cert.cert_der).await?;
    Ok(PublicIdentity {
        key_generation: identity.generation,
        root_k256_public_key: hex0x(&root.k256_public()),
        root_ca_spki: hex0x(&root.ca().spki_der()),
        root_ca_cert: root.ca().cert_pem().to_owned(),
        node_address: hex0x(&identity.node_key.address()),
        mr_aggregated: hex0x(own.boot.mrAggregated.as_slice()),
        device_id: hex0x(own.boot.deviceId.as_slice()),
        os_image_hash: hex0x(&own.os_image_hash),
        tcb_status: own.boot.tcbStatus.clone(),
        quote: hex0x(&ev.quote),
        event_log: serde_json::from_slice(&ev.event_log)?,
    })
}

/// This node's own evidence as a peer would see it: a fresh self-signed `kms:rpc`
/// RA-TLS certificate from its TEE, verified by release-path steps 1-2. Its boot info is
/// what `KmsAuth.isKmsAllowed` must allow (MR, device, OS image).
pub async fn own_evidence(opts: &NodeOptions) -> Result<Attested> {
    let cert = cairn_attestation::RaTlsCertBuilder::new(cairn_attestation::Usage::KmsRpc)
        .event_log(&opts.event_log)
        .issued_at(opts.clock.now())
        .build(opts.tee.as_ref())?;
    self_attest(opts, &cert.cert_der).await
}

/// `cert_der`, this node's own RA-TLS certificate, verified as a peer would verify it
/// (release-path steps 1-2) with the node's verifier, collateral, images and clock.
async fn self_attest(opts: &NodeOptions, cert_der: &[u8]) -> Result<Attested> {
    evidence::attest(
        Some(cert_der),
        &opts.verifier,
        &opts.collateral,
        &opts.os_images,
        opts.clock.now(),
    )
    .await
    .map_err(Error::SelfAttestation)
}

/// What `describe` prints: the evidence to register for a (new) node, no identity needed.
#[derive(Debug, Serialize)]
pub struct NodeEvidence {
    /// Aggregated MR (`addKmsAggregatedMr`).
    pub mr_aggregated: String,
    /// Device id (`addKmsDevice`).
    pub device_id: String,
    /// OS image hash its measurements match (`addOsImageHash`).
    pub os_image_hash: String,
    /// TCB status of its quote.
    pub tcb_status: String,
}

/// This node's evidence as registration data (`cairn-kms describe`).
pub async fn describe(config: &Config) -> Result<NodeEvidence> {
    let own = own_evidence(&config.node_options()?).await?;
    Ok(NodeEvidence {
        mr_aggregated: hex0x(own.boot.mrAggregated.as_slice()),
        device_id: hex0x(own.boot.deviceId.as_slice()),
        os_image_hash: hex0x(&own.os_image_hash),
        tcb_status: own.boot.tcbStatus.clone(),
    })
}

/// A command of the binary (parsed by clap in `main.rs`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Create the root secret and node key; print the public identity as JSON.
    Bootstrap,
    /// Print this node's evidence to register on chain (no identity needed).
    Describe,
    /// Serve the KMS API until SIGINT/SIGTERM.
    Serve,
    /// Receive the root secret from a running node at SOURCE (host:port).
    Onboard {
        /// The running node's address: `host:port` with a hostname, an IPv4 address or a
        /// bracketed IPv6 address (resolved within [`RESOLVE_TIMEOUT`]).
        source: String,
        /// Receive this key generation and add it beside the ones held (a rotation: the
        /// new generation once governance made it current on chain). Without it, a new
        /// node receives the current generation.
        #[arg(long)]
        generation: Option<u64>,
    },
    /// Generate the master secret of the next key generation and store it as pending;
    /// print its public keys for governance to register (`rotateKmsRootKeys`). The node
    /// serves it once the chain makes it current (docs/rotation.md).
    Rotate,
}

/// What `rotate` prints: the pending generation's public keys.
#[derive(Debug, Serialize)]
pub struct RotateOutput {
    /// The new (pending) key generation.
    pub key_generation: u64,
    /// Its root k256 public key, compressed, `0x` hex (`rotateKmsRootKeys`).
    pub root_k256_public_key: String,
    /// Its root CA SubjectPublicKeyInfo DER, `0x` hex (`rotateKmsRootKeys`).
    pub root_ca_spki: String,
    /// Its root CA certificate, PEM.
    pub root_ca_cert: String,
    /// Every generation the store holds now.
    pub held_generations: Vec<u64>,
}

/// Generate and store the next key generation (newest held + 1) as pending
/// (`cairn-kms rotate`); the store's bound on held generations
/// ([`crate::store::MAX_HELD_GENERATIONS`]) refuses a third while one is still retiring.
pub fn rotate(config: &Config) -> Result<RotateOutput> {
    let opts = config.node_options()?;
    let store = SecretStore::open(opts.data_dir.join(SECRETS_DIR))?;
    let newest = store.held()?.newest().0;
    let generation = newest
        .checked_add(1)
        .filter(|g| u32::try_from(*g).is_ok())
        .ok_or(Error::KeyGenerationTooLarge { generation: newest })?;
    let master = crate::kdf::MasterSecret::random();
    let root = RootKeys::derive(&master)?;
    store.add_generation(master, generation)?;
    Ok(RotateOutput {
        key_generation: generation,
        root_k256_public_key: hex0x(&root.k256_public()),
        root_ca_spki: hex0x(&root.ca().spki_der()),
        root_ca_cert: root.ca().cert_pem().to_owned(),
        held_generations: store.held()?.masters.keys().copied().collect(),
    })
}

/// What `onboard` prints.
#[derive(Debug, Serialize)]
pub struct OnboardOutput {
    /// The new node's address (`addKmsNode`, fund it).
    pub node_address: String,
    /// Key generation received.
    pub key_generation: u64,
    /// Index of the onboarding entry in the source node's log.
    pub source_log_index: u64,
    /// Index of the onboarding entry in this node's log.
    pub local_log_index: u64,
}

/// How long `onboard` waits for its source's name to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolve `host:port` (hostname or IP literal) to its first address, within
/// [`RESOLVE_TIMEOUT`]. The system resolver decides the order; onboarding never retries
/// another address, so a refusal is never hidden by a second try.
pub async fn resolve(source: &str) -> Result<SocketAddr> {
    let err = |e: std::io::Error| Error::Resolve {
        address: source.to_owned(),
        source: e,
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(source))
        .await
        .map_err(|_| {
            err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {RESOLVE_TIMEOUT:?}"),
            ))
        })?
        .map_err(err)?
        .next();
    found.ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name has no address",
        ))
    })
}

fn pretty(v: &impl Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

/// Run `cmd`; returns what to print (JSON), if anything.
pub async fn execute(config: &Config, cmd: Command) -> Result<Option<String>> {
    Ok(match cmd {
        Command::Bootstrap => Some(pretty(&bootstrap(config).await?)?),
        Command::Describe => Some(pretty(&describe(config).await?)?),
        Command::Serve => {
            serve(config).await?;
            None
        }
        Command::Rotate => Some(pretty(&rotate(config)?)?),
        Command::Onboard { source, generation } => {
            let source = resolve(&source).await?;
            let opts = config.node_options()?;
            let r = match generation {
                Some(g) => crate::onboard_generation(&opts, source, g).await?,
                None => crate::onboard(&opts, source).await?,
            };
            Some(pretty(&OnboardOutput {
                node_address: hex0x(&r.node_address),
                key_generation: r.key_generation,
                source_log_index: r.source_receipt.log_index,
                local_log_index: r.local_log_index,
            })?)
        }
    })
}

/// Open the node and serve until SIGINT or SIGTERM.
pub async fn serve(config: &Config) -> Result<()> {
    let node: Arc<Node> = Node::open(config.node_options()?).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Config {
            key: "listen".into(),
            reason: format!("cannot bind {}: {e}", config.listen),
        })?;
    crate::run_with(listener, node, config.server_limits(), shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    #[test]
    fn onboard_takes_a_hostname_source() {
        let cli = Cli::try_parse_from(["cairn-kms", "onboard", "kms-a.internal:8443"]).unwrap();
        match cli.cmd {
            Command::Onboard { source, generation } => {
                assert_eq!((source.as_str(), generation), ("kms-a.internal:8443", None))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn sources_resolve_from_names_and_literals() {
        // `localhost` comes from the hosts file: no network needed.
        let a = resolve("localhost:8443").await.unwrap();
        assert!(a.ip().is_loopback() && a.port() == 8443, "{a}");
        assert_eq!(
            resolve("127.0.0.1:9").await.unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:9").await.unwrap(),
            "[::1]:9".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn a_source_without_a_port_is_a_resolve_error_naming_it() {
        for bad in ["kms-a.internal", "127.0.0.1", "localhost:notaport"] {
            match resolve(bad).await {
                Err(Error::Resolve { address, source }) => {
                    assert_eq!(address, bad);
                    assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
