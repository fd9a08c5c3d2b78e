//! Replication (DESIGN.md §5): a new node B receives the master secret from a running
//! node A over one mutual RA-TLS connection, through `cairn-kms-client`.
//!
//! B's side ([`onboard`]), in order:
//! 1. refuse if B's store already holds an identity;
//! 2. connect to A presenting B's own RA-TLS certificate (usage `kms:rpc`); the client
//!    checks that A holds its certificate key and that A's evidence verifies (usage
//!    `kms:rpc`) before anything is sent;
//! 3. run release-path steps 1-2 on A's certificate here too (A's OS image must be one B
//!    knows: that gives A's boot info) and `isKmsAllowed(A)` at the pinned block;
//! 4. `POST /v1/onboard`; A checks B the same way (`Node::onboard_peer`), logs a
//!    `kms-onboard` entry, and answers with the master secret;
//! 5. derive the root keys and require them to equal the ones registered in KmsAuth for
//!    that generation, and A's TLS certificate to be issued by that root CA — only then
//!    store the secret;
//! 6. log the onboarding in B's own log: a `kms-onboard-receipt` entry holding A's boot
//!    info (B received the secret and released nothing, so an audit does not ask whether
//!    B was a registered node at that block: B registers only after onboarding).
//!
//! [`onboard_generation`] does the same for a node that already has an identity and
//! needs another key generation (a rotation, docs/rotation.md): it asks A for that
//! generation, requires it to be one the chain serves at the pinned block (the current
//! one, or the previous one during its window) with the root keys registered for it, and
//! adds it to B's store beside the generations B holds.

use std::net::SocketAddr;

use cairn_attestation::{RaTlsCertBuilder, RootCa, Usage};
use cairn_kms_client::KmsClient;
use cairn_onchain::ChainClient;
use cairn_protocol::api::Receipt;
use cairn_tlog::{Log, ReleaseKind};

use crate::error::{Error, Result};
use crate::evidence::{self, CollateralSource};
use crate::kdf::MasterSecret;
use crate::keys::RootKeys;
use crate::node::{Checked, NodeOptions, Policy, LOG_DIR, SECRETS_DIR};
use crate::store::SecretStore;

/// What onboarding produced.
#[derive(Debug, Clone)]
pub struct OnboardReport {
    /// The new node's address (register it in KmsAuth before it anchors).
    pub node_address: [u8; 20],
    /// The key generation received.
    pub key_generation: u64,
    /// The source node's receipt of the onboarding entry.
    pub source_receipt: Receipt,
    /// Index of the onboarding entry in this node's own log.
    pub local_log_index: u64,
}

/// A client of other KMS nodes that trusts what this node trusts: its verifier, its
/// collateral source and its clock.
fn peer_client(opts: &NodeOptions) -> KmsClient {
    let client = match &opts.collateral {
        CollateralSource::Configured => KmsClient::new(opts.verifier.clone()),
        CollateralSource::Pccs(pccs) => KmsClient::with_pccs(opts.verifier.clone(), pccs.clone()),
    };
    let clock = opts.clock.clone();
    client.with_clock(move || clock.now())
}

/// Add key generation `generation` to the (already onboarded or bootstrapped) node
/// described by `opts`, received from the node at `source` (see module docs).
pub async fn onboard_generation(
    opts: &NodeOptions,
    source: SocketAddr,
    generation: u64,
) -> Result<OnboardReport> {
    crate::node::install_crypto_provider();
    let store = SecretStore::open(opts.data_dir.join(SECRETS_DIR))?;
    let held = store.held()?;
    if held.masters.contains_key(&generation) {
        return Err(Error::GenerationHeld { generation });
    }
    let chain = ChainClient::connect(&opts.chain, None).await?;
    let (checked, source_node, resp, conn) = fetch(opts, &chain, source, Some(generation)).await?;
    let at = checked.at();
    if resp.key_generation != generation {
        return Err(Error::RootKeysMismatch { generation });
    }
    let master = MasterSecret::from_bytes(*resp.master_secret);
    let root = RootKeys::derive(&master)?;
    let gens = chain
        .key_generations(at)
        .await?
        .ok_or(Error::NoRootKeysOnChain)?;
    let registered = if u64::from(gens.current.generation) == generation {
        // The source's TLS certificate is issued by the current root CA.
        RootCa::from_der(root.ca().cert_der().to_vec())
            .and_then(|ca| ca.verify_issued(conn.peer().cert_der(), opts.clock.now()))
            .map_err(Error::SourceNotRooted)?;
        gens.current.clone()
    } else {
        match gens.active_previous() {
            Some(p) if u64::from(p.keys.generation) == generation => p.keys.clone(),
            _ => return Err(Error::GenerationNotServed { generation }),
        }
    };
    if registered.k256_pubkey.as_ref() != root.k256_public().as_slice()
        || registered.ca_pubkey.as_ref() != root.ca().spki_der().as_slice()
    {
        return Err(Error::RootKeysMismatch { generation });
    }
    drop(conn);
    store.add_generation(master, generation)?;
    let node_key = held.node_key;
    drop(store);
    let local_log_index =
        log_onboarding(opts, &checked, &source_node, generation, node_key.address()).await?;
    tracing::info!(generation, "key generation onboarded");
    Ok(OnboardReport {
        node_address: node_key.address(),
        key_generation: generation,
        source_receipt: resp.receipt,
        local_log_index,
    })
}

/// Connect to `source` with this node's own certificate, check its evidence and
/// `isKmsAllowed` at the pinned block (the allow kept as a [`Checked`], the only input of
/// this node's onboarding record), and ask it for `generation` (`None`: its current
/// one). Returns the allow, the source's evidence, its answer and the connection.
async fn fetch(
    opts: &NodeOptions,
    chain: &ChainClient,
    source: SocketAddr,
    generation: Option<u64>,
) -> Result<(
    Checked,
    crate::evidence::Attested,
    cairn_protocol::api::OnboardResponse,
    cairn_kms_client::KmsConnection,
)> {
    let own_cert = RaTlsCertBuilder::new(Usage::KmsRpc)
        .common_name("Cairn KMS (onboarding)")
        .event_log(&opts.event_log)
        .issued_at(opts.clock.now())
        .build(opts.tee.as_ref())?;
    let mut conn = peer_client(opts)
        .connect(&format!("https://{source}"), Some(&own_cert))
        .await?;
    let source_node = evidence::attest(
        Some(conn.peer().cert_der()),
        &opts.verifier,
        &opts.collateral,
        &opts.os_images,
        opts.clock.now(),
    )
    .await
    .map_err(Error::SourceEvidence)?;
    let at = chain.policy_block().await?;
    let checked = Checked::allowed(
        Policy::Block(chain, at),
        ReleaseKind::KmsOnboardReceipt,
        source_node.boot.clone(),
    )
    .await?;
    let resp = conn
        .onboard_generation(generation)
        .await
        .map_err(|e| match e {
            cairn_kms_client::Error::Status {
                status,
                code,
                message,
                ..
            } => Error::OnboardRefused {
                status,
                code,
                message,
            },
            e => Error::KmsClient(e),
        })?;
    Ok((checked, source_node, resp, conn))
}

/// The `kms-onboard-receipt` entry in this node's own log: the record of the allow `checked`
/// (the source node's boot info the chain judged) for key `generation` (the one
/// received), sent by the holder of `source_node`.
async fn log_onboarding(
    opts: &NodeOptions,
    checked: &Checked,
    source_node: &crate::evidence::Attested,
    generation: u64,
    node: [u8; 20],
) -> Result<u64> {
    let log = Log::open(opts.data_dir.join(LOG_DIR))?;
    let record = checked.record(
        source_node,
        generation,
        opts.chain.chain_id,
        node,
        opts.clock.now(),
    )?;
    let bytes = record
        .encode()
        .map_err(|e| Error::Log(cairn_tlog::Error::from(e)))?;
    Ok(tokio::task::spawn_blocking(move || log.append(bytes)).await??)
}

/// Onboard the node described by `opts` from the node at `source` (see module docs).
pub async fn onboard(opts: &NodeOptions, source: SocketAddr) -> Result<OnboardReport> {
    crate::node::install_crypto_provider();
    let store = SecretStore::open(opts.data_dir.join(SECRETS_DIR))?;
    match store.identity() {
        Ok(id) => {
            return Err(Error::AlreadyBootstrapped {
                generation: id.generation,
            })
        }
        Err(Error::NotBootstrapped) => {}
        Err(e) => return Err(e),
    }
    let chain = ChainClient::connect(&opts.chain, None).await?;
    let (checked, source_node, resp, conn) = fetch(opts, &chain, source, None).await?;
    let at = checked.at();

    let master = MasterSecret::from_bytes(*resp.master_secret);
    let root = RootKeys::derive(&master)?;
    let registered = chain.root_keys(at).await?.ok_or(Error::NoRootKeysOnChain)?;
    if u64::from(registered.generation) != resp.key_generation
        || registered.k256_pubkey.as_ref() != root.k256_public().as_slice()
        || registered.ca_pubkey.as_ref() != root.ca().spki_der().as_slice()
    {
        return Err(Error::RootKeysMismatch {
            generation: resp.key_generation,
        });
    }
    RootCa::from_der(root.ca().cert_der().to_vec())
        .and_then(|ca| ca.verify_issued(conn.peer().cert_der(), opts.clock.now()))
        .map_err(Error::SourceNotRooted)?;
    drop(conn);
    let identity = store.install(master, resp.key_generation)?;
    drop(store);

    let local_log_index = log_onboarding(
        opts,
        &checked,
        &source_node,
        identity.generation,
        identity.node_key.address(),
    )
    .await?;
    tracing::info!(
        node = %format!("0x{}", hex::encode(identity.node_key.address())),
        generation = identity.generation,
        "onboarded"
    );
    Ok(OnboardReport {
        node_address: identity.node_key.address(),
        key_generation: identity.generation,
        source_receipt: resp.receipt,
        local_log_index,
    })
}
