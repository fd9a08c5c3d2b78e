//! [`Node`]: one KMS node's state and its release path (DESIGN.md §5), independent of
//! HTTP. The handlers in `server` only translate.
//!
//! Release path, in order; the first failure answers and nothing after it runs:
//! 1-2. [`evidence::attest`]: RA-TLS certificate, quote, report data, event log, OS image;
//! 3. `KmsAuth.isAppAllowed(bootInfo)` (or `isKmsAllowed` for onboarding) at the pinned
//!    block `head − confirmations`, as the node's [`PolicyHead`] publishes it (advanced in
//!    the background, agreed by the RPC quorum, fresh); verdicts cached per (boot info,
//!    block) and kept answered at each new block, so a repeated release makes no RPC;
//! 4. self-check at the same block (through the same head): this node's own evidence,
//!    the chain's key generation, its registration (`isKmsNode`), `isKmsAllowed` on its
//!    own evidence; then the bound on unanchored log entries (`anchor`);
//! 5. derive keys;
//! 6. append the release record to the log, durably (fsync, group commit);
//! 7. answer with the keys and the receipt (log index, signed checkpoint, policy block).
//!
//! # Layout
//! - this file: [`NodeOptions`], the [`Node`] struct, [`Node::open`] (startup checks),
//!   accessors and the public endpoints (`meta`, `env-pubkey`);
//! - `release`: the release path (`release_app_key_inner` is its readable model),
//!   `sign-cert` and `onboard`, metrics;
//! - `checked`: step 3's allow as a value (`Checked`), the only input of a log record,
//!   so the log records exactly the boot info the chain judged;
//! - `policy`: steps 3-4 (key generation, gateway app id and `isKmsAllowed` read through
//!   the policy head; the node's own evidence);
//! - `keyring`: the key generations served (current, and the previous one during a
//!   rotation's transition window), synced with the chain, retired ones erased;
//! - `issue`: certificates the node issues (its own RA-TLS server certificate, `sign-cert`
//!   leaves).

mod checked;
mod issue;
mod keyring;
mod policy;
mod release;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_attestation::ids::AppId;
use cairn_attestation::{OsImageManifest, RaTlsCert, Tee, Verifier};
use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::alloy::signers::local::PrivateKeySigner;
use cairn_onchain::{ChainClient, ChainConfig, HeadOptions, PolicyHead};
use cairn_protocol::api::{EnvPubkeyResponse, MetaResponse};
use cairn_tlog::{CheckpointSigner, Log};

use crate::anchor::{AnchorLimits, AnchorState};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::evidence::{self, Attested, CollateralSource};
use crate::keys::RootKeys;
use crate::metrics::Metrics;
use crate::reject::ApiError;
use crate::store::{Identity, NodeKey, SecretStore};

pub(crate) use checked::{Checked, Policy};
pub(crate) use issue::own_cert;
pub use issue::{LEAF_VALIDITY, MAX_CSR_ALT_NAMES};
#[cfg(feature = "test-utils")]
pub(crate) use keyring::certified_key;
use keyring::Keyring;
pub(crate) use keyring::{run as sync_task, CurrentCert};

/// Sub-directory of the data directory holding the secret store.
pub const SECRETS_DIR: &str = "secrets";
/// Sub-directory of the data directory holding the transparency log.
pub const LOG_DIR: &str = "log";
/// Default anchoring interval.
pub const DEFAULT_ANCHOR_INTERVAL: Duration = Duration::from_secs(60);
/// Default [`NodeOptions::head_wait`] (`chain.head_wait_ms`): a few poll intervals.
pub const DEFAULT_HEAD_WAIT: Duration = Duration::from_secs(10);
/// Largest [`NodeOptions::head_wait`]: well under the server's request timeout, so a
/// waiting release still answers 503 itself.
pub const MAX_HEAD_WAIT: Duration = Duration::from_secs(20);
/// Most `app-key` requests waiting at once for the policy head to reach their
/// `min_policy_block`; more are answered 503 `unavailable.policy_head_behind` at once, so
/// waiters hold at most a quarter of the release permits
/// ([`MAX_IN_FLIGHT`](crate::server::MAX_IN_FLIGHT)).
pub const MAX_HEAD_WAITERS: usize = 64;
/// How far past the chain head this node last read a `min_policy_block` may be and still
/// be waited for (RPC endpoints of a VMM and a KMS may differ by a few blocks); beyond
/// it no honest pre-flight can have seen the block, and the answer is 503 at once.
pub const MAX_POLICY_BLOCK_LEAD: u64 = 16;
/// How often a log that could not make an entry durable (a full disk) is reopened until
/// it takes entries again.
pub const LOG_RECOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Everything a node is built from (the binary fills it from `Config`; tests directly).
pub struct NodeOptions {
    /// Data directory: `secrets/` (0700) and `log/`.
    pub data_dir: PathBuf,
    /// Chain RPC endpoints and quorum, chain id, KmsAuth, confirmations, timeout, head
    /// age bound and poll interval.
    pub chain: ChainConfig,
    /// Quote verifier (trust root; collateral when [`CollateralSource::Configured`]).
    pub verifier: Arc<Verifier>,
    /// Where collateral comes from.
    pub collateral: CollateralSource,
    /// OS image manifests this node recognises (MRTD/RTMR0-2 → os_image_hash).
    pub os_images: Vec<OsImageManifest>,
    /// This node's own TEE (quotes for its server certificate and self-check).
    pub tee: Arc<dyn Tee>,
    /// This node's own event log (JSON), as measured at its boot.
    pub event_log: Vec<u8>,
    /// Log origin line; default `cairn-kms/0x<node address>`.
    pub log_origin: Option<String>,
    /// How often the anchoring task looks for log growth.
    pub anchor_interval: Duration,
    /// How far releases may run ahead of the log's on-chain anchor
    /// ([`AnchorLimits::default`]; `max_age` must exceed `anchor_interval`).
    pub anchor_limits: AnchorLimits,
    /// The wall clock ([`Clock::system`] outside tests): validity windows, release-record
    /// timestamps, leaf validity, the env-pubkey timestamp, the chain head's age.
    pub clock: Clock,
    /// Longest an `app-key` release waits for the policy head to reach the request's
    /// `min_policy_block` ([`DEFAULT_HEAD_WAIT`]; at most [`MAX_HEAD_WAIT`]).
    pub head_wait: Duration,
}

cairn_protocol::redacted_debug!(NodeOptions {
    data_dir,
    chain,
    verifier,
    os_images: len,
    log_origin,
    anchor_interval,
    anchor_limits,
    clock,
    head_wait,
    ..
});

/// A running KMS node's state. Share as `Arc<Node>`.
pub struct Node {
    node_key: NodeKey,
    /// The key generations served now (swapped whole when the chain's change).
    keyring: Mutex<Arc<Keyring>>,
    /// One re-sync of the keyring with the store at a time.
    keyring_sync: tokio::sync::Mutex<()>,
    data_dir: PathBuf,
    tee: Arc<dyn Tee>,
    event_log: Vec<u8>,
    log: Log,
    signer: CheckpointSigner,
    chain: Arc<ChainClient>,
    head: PolicyHead,
    verifier: Arc<Verifier>,
    collateral: CollateralSource,
    os_images: Vec<OsImageManifest>,
    /// The canonical manifest of the image this node's own evidence matched (`meta`).
    own_image_manifest: String,
    own: Mutex<Arc<Attested>>,
    own_refresh: tokio::sync::Mutex<()>,
    clock: Clock,
    anchor: AnchorState,
    chain_id: u64,
    anchor_interval: Duration,
    metrics: Metrics,
    /// See [`NodeOptions::head_wait`].
    head_wait: Duration,
    /// Permits of the requests waiting for the head ([`MAX_HEAD_WAITERS`]).
    head_waiters: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_key", &self.node_key)
            .field("generation", &self.keyring().current.number)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

/// An alloy signer for the node key (anchoring transactions).
pub(crate) fn node_signer(identity: &Identity) -> PrivateKeySigner {
    PrivateKeySigner::from_signing_key(identity.node_key.signing_key().clone())
}

/// [`Error::NoRootKeysRegistered`] when the chain has no generation at all.
fn no_keys(node: u64) -> Error {
    Error::NoRootKeysRegistered { node }
}

impl Node {
    /// Open a bootstrapped (or onboarded) node: load its identity, open its log, connect
    /// to the chain (chain id checked), build its RA-TLS server certificate and verify its
    /// own evidence. Refuses to open unless the chain's current key generation is the
    /// node's and the root keys registered for it equal the node's, and unless the local
    /// log extends the checkpoint this node last anchored on chain. Every validity window
    /// and timestamp, and the chain head's age, is judged by `opts.clock`. Starts the
    /// policy head (it stops when the node is dropped). A node whose address is not
    /// registered in KmsAuth opens (the operator may add it later) with a warning; it
    /// releases nothing until it is registered.
    pub async fn open(opts: NodeOptions) -> Result<Arc<Node>> {
        install_crypto_provider();
        opts.anchor_limits.check(opts.anchor_interval)?;
        if opts.head_wait > MAX_HEAD_WAIT {
            return Err(Error::Config {
                key: "chain.head_wait_ms".into(),
                reason: format!("must be at most {} ms", MAX_HEAD_WAIT.as_millis()),
            });
        }
        let clock = opts.clock;
        let store = SecretStore::open(opts.data_dir.join(SECRETS_DIR))?;
        let held = store.held()?;
        let identity = store.identity()?;
        drop(store);
        let log = Log::open(opts.data_dir.join(LOG_DIR))?;
        let origin = opts
            .log_origin
            .clone()
            .unwrap_or_else(|| format!("cairn-kms/0x{}", hex::encode(identity.node_key.address())));
        let signer = CheckpointSigner::new(&origin, identity.node_key.signing_key().clone())
            .map_err(|e| Error::Config {
                key: "log.origin".into(),
                reason: e.to_string(),
            })?;
        let chain =
            Arc::new(ChainClient::connect(&opts.chain, Some(node_signer(&identity))).await?);
        let head_clock: cairn_onchain::Clock = {
            let clock = clock.clone();
            Arc::new(move || clock.now())
        };
        let head = PolicyHead::start(
            Arc::clone(&chain),
            HeadOptions::new(&opts.chain).with_clock(head_clock),
        )
        .await?;
        let view = head.view()?;
        let at = view.block();
        let gens = view
            .key_generations()
            .await?
            .ok_or_else(|| no_keys(identity.generation))?;
        let (ring, retired) = keyring::plan(&held, &gens, None, |root| {
            own_cert(opts.tee.as_ref(), &opts.event_log, root, clock.now())
        })?;
        drop(held);
        if !retired.is_empty() {
            keyring::erase(&opts.data_dir.join(SECRETS_DIR), &retired)?;
        }
        let server_cert = Arc::clone(&ring.server_cert);
        let own = evidence::attest(
            Some(server_cert.cert_der.as_ref()),
            &opts.verifier,
            &opts.collateral,
            &opts.os_images,
            clock.now(),
        )
        .await
        .map_err(Error::SelfAttestation)?;
        // `attest` matched one of these manifests, so one hashes to the image found.
        let own_image_manifest = opts
            .os_images
            .iter()
            .find(|m| m.os_image_hash().0 == own.os_image_hash)
            .map(|m| String::from_utf8_lossy(&m.to_bytes()).into_owned())
            .unwrap_or_default();

        let anchored =
            crate::anchor::check_log_extends_anchor(&chain, &log, identity.node_key.address(), at)
                .await?;
        let address = Address::from(identity.node_key.address());
        if !view.is_kms_node(address).await? {
            tracing::warn!(
                node = %address,
                "this node is not a registered KMS node in KmsAuth (addKmsNode); it answers 503 self_check.not_registered until it is"
            );
        }
        tracing::info!(
            node = %format!("0x{}", hex::encode(identity.node_key.address())),
            generation = ring.current.number,
            previous = ?ring.served_previous,
            log_size = log.size(),
            %origin,
            "KMS node opened"
        );
        Ok(Arc::new(Node {
            chain_id: opts.chain.chain_id,
            node_key: identity.node_key,
            keyring: Mutex::new(Arc::new(ring)),
            keyring_sync: tokio::sync::Mutex::new(()),
            data_dir: opts.data_dir,
            tee: opts.tee,
            event_log: opts.event_log,
            log,
            signer,
            chain,
            head,
            verifier: opts.verifier,
            collateral: opts.collateral,
            os_images: opts.os_images,
            own_image_manifest,
            own: Mutex::new(Arc::new(own)),
            own_refresh: tokio::sync::Mutex::new(()),
            clock,
            anchor: AnchorState::new(opts.anchor_limits, anchored, Instant::now()),
            anchor_interval: opts.anchor_interval,
            metrics: Metrics::default(),
            head_wait: opts.head_wait,
            head_waiters: tokio::sync::Semaphore::new(MAX_HEAD_WAITERS),
        }))
    }

    /// The RA-TLS server certificate (usage `kms:rpc`, issued by the current root CA).
    pub fn server_cert(&self) -> Arc<RaTlsCert> {
        Arc::clone(&self.keyring().server_cert)
    }

    /// The root keys of the current key generation.
    pub fn root_keys(&self) -> Arc<RootKeys> {
        Arc::clone(&self.keyring().current.root)
    }

    /// The current key generation served.
    pub fn key_generation(&self) -> u64 {
        self.keyring().current.number
    }

    /// The previous key generation served beside the current one (a rotation's
    /// transition window) and the end of its window, when this node holds it.
    pub fn previous_generation(&self) -> Option<(u64, u64)> {
        let ring = self.keyring();
        ring.previous.as_ref().and(ring.served_previous)
    }

    /// The node's address (node key).
    pub fn address(&self) -> [u8; 20] {
        self.node_key.address()
    }

    /// The node's own verified evidence (the latest verification of its server
    /// certificate).
    pub fn own_evidence(&self) -> Arc<Attested> {
        Arc::clone(&self.own.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The node's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The transparency log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The checkpoint signer (node key).
    pub fn checkpoint_signer(&self) -> &CheckpointSigner {
        &self.signer
    }

    /// The chain client.
    pub fn chain(&self) -> &ChainClient {
        &self.chain
    }

    /// The policy head: the pinned block, advanced in the background.
    pub fn policy_head(&self) -> &PolicyHead {
        &self.head
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The anchoring interval.
    pub fn anchor_interval(&self) -> Duration {
        self.anchor_interval
    }

    /// The anchoring state (the bound on unanchored releases, readiness, gauges).
    pub(crate) fn anchor_state(&self) -> &AnchorState {
        &self.anchor
    }

    /// Readiness (`GET /healthz`), from local state only (no chain call): not ready while
    /// the log cannot take entries (`503 unavailable.log`), or while releases would be
    /// refused for the anchoring bound or the last anchoring round failed
    /// (`503 unavailable.anchor`); the message says why.
    pub fn readiness(&self) -> Result<(), ApiError> {
        self.log_writable()?;
        self.anchor.health(&self.log)
    }

    /// `503 unavailable.log` while a failed write (a full disk, an I/O error) keeps the
    /// log from taking entries; the background recovery ([`Node::recover_log`]) clears it.
    pub(crate) fn log_writable(&self) -> Result<(), ApiError> {
        if self.log.is_poisoned() {
            return Err(ApiError::Unavailable {
                dependency: crate::reject::Dependency::Log,
                reason: "the transparency log cannot take entries: a write failed (disk \
                         full or I/O error) and the log is being reopened; nothing is released \
                         until it takes entries again"
                    .into(),
            });
        }
        Ok(())
    }

    /// After a failed write, reopen the log in place (`cairn_tlog::Log::recover`) so that
    /// releases resume by themselves once the disk takes writes again. Blocking (sled);
    /// the anchoring task calls it every [`LOG_RECOVERY_INTERVAL`] while the log is
    /// poisoned. Returns whether the log takes entries now.
    pub fn recover_log(&self) -> bool {
        match self.log.recover() {
            Ok(false) => true,
            Ok(true) => {
                self.metrics.log_recovered();
                tracing::warn!(
                    size = self.log.size(),
                    "transparency log reopened after a failed write; releases resume"
                );
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "the transparency log cannot be reopened yet");
                false
            }
        }
    }

    /// The Prometheus exposition (`GET /metrics`), anchoring gauges and the policy head
    /// sampled now.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(&self.anchor.gauges(&self.log), !self.log.is_poisoned())
            + &crate::metrics::render_chain(&self.head.status(), self.clock.now())
    }

    /// `GET /v1/meta`.
    pub fn meta(&self) -> MetaResponse {
        let current = Arc::clone(&self.keyring().current);
        MetaResponse {
            chain_id: self.chain_id,
            kms_auth: self.chain.kms_auth().into_array(),
            root_k256_public_key: current.root.k256_public(),
            root_ca_cert: current.root.ca().cert_pem().to_owned(),
            node_address: self.address(),
            key_generation: current.number,
            os_image_manifest: self.own_image_manifest.clone(),
        }
    }

    /// `GET /v1/env-pubkey/{app_id}`: the app's env X25519 public key, signed with a
    /// timestamp (the node's clock) by the root k256 key.
    pub fn env_pubkey(&self, app_id: &AppId) -> Result<EnvPubkeyResponse, ApiError> {
        let current = Arc::clone(&self.keyring().current);
        let public_key = crate::keys::env_public_key(&current.master, app_id)?;
        let timestamp = self.clock.now();
        let signature = current
            .root
            .sign_env_pubkey(app_id, timestamp, &public_key)?;
        Ok(EnvPubkeyResponse {
            public_key,
            timestamp,
            signature,
        })
    }
}

/// Install ring as the process's rustls provider if none is (the chain client's HTTP
/// stack builds its TLS config from the process default).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
