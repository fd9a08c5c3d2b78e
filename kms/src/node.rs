//! [`Node`]: one KMS node's state and its release path (DESIGN.md §5), independent of
//! HTTP. The handlers in `server` only translate.
//!
//! Release path, in order; the first failure answers and nothing after it runs:
//! 1-2. [`evidence::attest`]: RA-TLS certificate, quote, report data, event log, OS image;
//! 3. `KmsAuth.isAppAllowed(bootInfo)` (or `isKmsAllowed` for onboarding) at the pinned
//!    block `head − confirmations` (verdicts cached per (boot info, block) by the client);
//! 4. self-check: `isKmsAllowed` on this node's own evidence at the same block (cached);
//! 5. derive keys;
//! 6. append the release record to the log, durably (fsync, group commit);
//! 7. answer with the keys and the receipt (log index, signed checkpoint, policy block).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_attestation::ids::AppId;
use cairn_attestation::ratls_consts::{
    OID_APP_ID, OID_EVENT_LOG, OID_QUOTE, OID_SPECIAL_USAGE, USAGE_APP_CUSTOM,
};
use cairn_attestation::simulator::OsImageManifest;
use cairn_attestation::{RaTlsCert, RaTlsCertBuilder, Tee, Usage, Verifier};
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::alloy::signers::local::PrivateKeySigner;
use cairn_onchain::{ChainClient, ChainConfig, PolicyBlock};
use cairn_protocol::api::{
    AppKeyResponse, EnvPubkeyResponse, MetaResponse, OnboardResponse, Receipt, SignCertRequest,
    SignCertResponse,
};
use cairn_tlog::{CheckpointSigner, Log, ReleaseKind, ReleaseRecord};
use rcgen::PublicKeyData as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::evidence::{self, Attested, CollateralSource};
use crate::keys::{der_octet_string, AppKeys, RootKeys};
use crate::metrics::{Metrics, Stage};
use crate::reject::{ApiError, Check, Dependency};
use crate::store::{Identity, SecretStore};

/// Sub-directory of the data directory holding the secret store.
pub const SECRETS_DIR: &str = "secrets";
/// Sub-directory of the data directory holding the transparency log.
pub const LOG_DIR: &str = "log";
/// Default anchoring interval.
pub const DEFAULT_ANCHOR_INTERVAL: Duration = Duration::from_secs(60);
/// Default reuse window of the pinned policy block. A request served with a block looked
/// up at most this long ago is judged exactly as if it had arrived that much earlier;
/// revocations take effect after `confirmations` blocks plus at most this window. Errors
/// are never reused.
pub const DEFAULT_HEAD_TTL: Duration = Duration::from_millis(250);
/// Validity of a leaf certificate issued by `sign-cert`.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The validity of a sign-cert leaf issued at `now`: the requested bounds (guest agent
/// `GetTlsKey` `not_before`/`not_after`), by default from five minutes ago to
/// [`LEAF_VALIDITY`] from now. A notAfter beyond that, or not after the notBefore, is
/// denied (`denied.csr`).
fn leaf_validity(
    now: time::OffsetDateTime,
    req: &SignCertRequest,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), ApiError> {
    let at = |what: &str, secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| ApiError::denied(Check::Csr, format!("{what} {secs} is out of range")))
    };
    let latest = now + time::Duration::seconds(LEAF_VALIDITY.as_secs().min(i64::MAX as u64) as i64);
    let not_before = match req.not_before {
        Some(secs) => at("not_before", secs)?,
        None => now - time::Duration::minutes(5),
    };
    let not_after = match req.not_after {
        Some(secs) => at("not_after", secs)?,
        None => latest,
    };
    if not_after > latest {
        return Err(ApiError::denied(
            Check::Csr,
            format!(
                "not_after {} is later than this KMS issues leaves for ({} s from now)",
                not_after.unix_timestamp(),
                LEAF_VALIDITY.as_secs()
            ),
        ));
    }
    if not_after <= not_before {
        return Err(ApiError::denied(
            Check::Csr,
            format!(
                "not_after {} is not later than not_before {}",
                not_after.unix_timestamp(),
                not_before.unix_timestamp()
            ),
        ));
    }
    Ok((not_before, not_after))
}
/// Most subject alternative names a CSR may ask for.
pub const MAX_CSR_ALT_NAMES: usize = 32;

/// Everything a node is built from (the binary fills it from `Config`; tests directly).
pub struct NodeOptions {
    /// Data directory: `secrets/` (0700) and `log/`.
    pub data_dir: PathBuf,
    /// Chain RPC, chain id, KmsAuth, confirmations, timeout.
    pub chain: ChainConfig,
    /// Quote verifier (trust root; collateral when [`CollateralSource::Configured`]).
    pub verifier: Verifier,
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
    /// How long a looked-up policy block is reused ([`DEFAULT_HEAD_TTL`]; zero: look it
    /// up for every request).
    pub head_ttl: Duration,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("data_dir", &self.data_dir)
            .field("chain", &self.chain)
            .field("verifier", &self.verifier)
            .field("os_images", &self.os_images.len())
            .field("log_origin", &self.log_origin)
            .field("anchor_interval", &self.anchor_interval)
            .finish_non_exhaustive()
    }
}

/// The node's clock: seconds since the Unix epoch. Certificate and collateral validity
/// windows (its own evidence's included) are judged against it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A running KMS node's state. Share as `Arc<Node>`.
pub struct Node {
    identity: Identity,
    root: RootKeys,
    log: Log,
    signer: CheckpointSigner,
    chain: ChainClient,
    verifier: Verifier,
    collateral: CollateralSource,
    os_images: Vec<OsImageManifest>,
    server_cert: RaTlsCert,
    own: Mutex<Arc<Attested>>,
    own_refresh: tokio::sync::Mutex<()>,
    clock: Clock,
    generation_seen: Mutex<Option<(B256, u64)>>,
    chain_id: u64,
    anchor_interval: Duration,
    gateway: Mutex<Option<(B256, [u8; 20])>>,
    head_ttl: Duration,
    head: Mutex<Option<(PolicyBlock, Instant)>>,
    head_lookup: tokio::sync::Mutex<()>,
    metrics: Metrics,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("identity", &self.identity)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// An alloy signer for the node key (anchoring transactions).
pub(crate) fn node_signer(identity: &Identity) -> PrivateKeySigner {
    PrivateKeySigner::from_signing_key(identity.node_key.signing_key().clone())
}

/// The node's own RA-TLS certificate (usage `kms:rpc`), issued by the root CA.
pub(crate) fn own_cert(tee: &dyn Tee, event_log: &[u8], issuer: &RootKeys) -> Result<RaTlsCert> {
    Ok(RaTlsCertBuilder::new(Usage::KmsRpc)
        .common_name("Cairn KMS")
        .event_log(event_log)
        .build_signed_by(tee, &issuer.ca().issuer())?)
}

impl Node {
    /// Open a bootstrapped (or onboarded) node: load its identity, open its log, connect
    /// to the chain (chain id checked), build its RA-TLS server certificate and verify its
    /// own evidence. Refuses to open unless the chain's current key generation is the
    /// node's and the root keys registered for it equal the node's, and unless the local
    /// log extends the checkpoint this node last anchored on chain.
    pub async fn open(opts: NodeOptions) -> Result<Arc<Node>> {
        Self::open_with_clock(opts, Arc::new(evidence::unix_now)).await
    }

    /// [`Node::open`] with `clock` instead of the system clock (tests drive validity
    /// windows with it).
    pub async fn open_with_clock(opts: NodeOptions, clock: Clock) -> Result<Arc<Node>> {
        install_crypto_provider();
        let store = SecretStore::open(opts.data_dir.join(SECRETS_DIR))?;
        let identity = store.identity()?;
        drop(store);
        let root = RootKeys::derive(&identity.master)?;
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
        let chain = ChainClient::connect(&opts.chain, Some(node_signer(&identity))).await?;
        let server_cert = own_cert(opts.tee.as_ref(), &opts.event_log, &root)?;
        let own = evidence::attest_at(
            Some(server_cert.cert_der.as_ref()),
            &opts.verifier,
            &opts.collateral,
            &opts.os_images,
            clock(),
        )
        .await
        .map_err(|e| Error::SelfAttestation(e.to_string()))?;

        let at = chain.policy_block().await?;
        let keys = chain
            .root_keys(at)
            .await?
            .ok_or(Error::NoRootKeysRegistered {
                node: identity.generation,
            })?;
        if u64::from(keys.generation) != identity.generation {
            return Err(Error::KeyGenerationMismatch {
                chain: u64::from(keys.generation),
                node: identity.generation,
            });
        }
        if keys.k256_pubkey.as_ref() != root.k256_public().as_slice()
            || keys.ca_pubkey.as_ref() != root.ca().spki_der().as_slice()
        {
            return Err(Error::RootKeysMismatch {
                generation: identity.generation,
            });
        }
        crate::anchor::check_log_extends_anchor(&chain, &log, identity.node_key.address(), at)
            .await?;
        tracing::info!(
            node = %format!("0x{}", hex::encode(identity.node_key.address())),
            generation = identity.generation,
            log_size = log.size(),
            %origin,
            "KMS node opened"
        );
        Ok(Arc::new(Node {
            chain_id: opts.chain.chain_id,
            identity,
            root,
            log,
            signer,
            chain,
            verifier: opts.verifier,
            collateral: opts.collateral,
            os_images: opts.os_images,
            server_cert,
            own: Mutex::new(Arc::new(own)),
            own_refresh: tokio::sync::Mutex::new(()),
            clock,
            generation_seen: Mutex::new(None),
            anchor_interval: opts.anchor_interval,
            gateway: Mutex::new(None),
            head_ttl: opts.head_ttl,
            head: Mutex::new(None),
            head_lookup: tokio::sync::Mutex::new(()),
            metrics: Metrics::default(),
        }))
    }

    /// The RA-TLS server certificate (usage `kms:rpc`, issued by the root CA).
    pub fn server_cert(&self) -> &RaTlsCert {
        &self.server_cert
    }

    /// The root keys.
    pub fn root_keys(&self) -> &RootKeys {
        &self.root
    }

    /// The node's address (node key).
    pub fn address(&self) -> [u8; 20] {
        self.identity.node_key.address()
    }

    /// The node's own verified evidence (the latest verification of its server
    /// certificate).
    pub fn own_evidence(&self) -> Arc<Attested> {
        Arc::clone(&self.own.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The node's own evidence, re-verified first if its verification is no longer valid
    /// at the node's clock (collateral window passed). Concurrent callers share one
    /// re-verification; the result is swapped in atomically.
    async fn current_own_evidence(&self) -> Result<Arc<Attested>, ApiError> {
        let valid = |a: &Attested, now: u64| now < a.quote.valid_until();
        let own = self.own_evidence();
        if valid(&own, (self.clock)()) {
            return Ok(own);
        }
        let _single = self.own_refresh.lock().await;
        let own = self.own_evidence();
        let now = (self.clock)();
        if valid(&own, now) {
            return Ok(own);
        }
        let fresh = evidence::attest_at(
            Some(self.server_cert.cert_der.as_ref()),
            &self.verifier,
            &self.collateral,
            &self.os_images,
            now,
        )
        .await
        .map_err(|e| ApiError::Unavailable {
            dependency: Dependency::SelfCheck,
            reason: format!("this KMS node's own evidence no longer verifies: {e}"),
        })?;
        if !valid(&fresh, now) {
            return Err(ApiError::Unavailable {
                dependency: Dependency::SelfCheck,
                reason:
                    "this KMS node's own evidence verified with collateral that is already expired"
                        .into(),
            });
        }
        let fresh = Arc::new(fresh);
        *self.own.lock().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
        tracing::info!(
            valid_until = fresh.quote.valid_until(),
            "own evidence re-verified"
        );
        Ok(fresh)
    }

    /// The chain's current key generation at `at` (cached per block) is this node's.
    async fn check_generation(&self, at: PolicyBlock) -> Result<(), ApiError> {
        let cached = *self
            .generation_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let chain_generation = match cached {
            Some((hash, g)) if hash == at.hash => g,
            _ => {
                let g = self
                    .chain
                    .root_keys(at)
                    .await?
                    .map(|k| u64::from(k.generation))
                    .unwrap_or(0);
                *self
                    .generation_seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((at.hash, g));
                g
            }
        };
        if chain_generation != self.identity.generation {
            return Err(ApiError::Unavailable {
                dependency: Dependency::KeyGeneration,
                reason: format!(
                    "the chain's current key generation is {chain_generation}, this node holds generation {}",
                    self.identity.generation
                ),
            });
        }
        Ok(())
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

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The anchoring interval.
    pub fn anchor_interval(&self) -> Duration {
        self.anchor_interval
    }

    /// `GET /v1/meta`.
    pub fn meta(&self) -> MetaResponse {
        MetaResponse {
            chain_id: self.chain_id,
            kms_auth: self.chain.kms_auth().into_array(),
            root_k256_public_key: self.root.k256_public(),
            root_ca_cert: self.root.ca().cert_pem().to_owned(),
            node_address: self.address(),
            key_generation: self.identity.generation,
        }
    }

    /// `GET /v1/env-pubkey/{app_id}`: the app's env X25519 public key, signed with a
    /// timestamp by the root k256 key.
    pub fn env_pubkey(&self, app_id: &AppId) -> Result<EnvPubkeyResponse, ApiError> {
        let public_key =
            crate::keys::env_public_key(&self.identity.master, app_id).map_err(internal)?;
        let timestamp = evidence::unix_now();
        let signature = self
            .root
            .sign_env_pubkey(app_id, timestamp, &public_key)
            .map_err(internal)?;
        Ok(EnvPubkeyResponse {
            public_key,
            timestamp,
            signature,
        })
    }

    /// Steps 1-4 for `kind`; counts the outcome when it fails.
    async fn authorize(
        &self,
        kind: ReleaseKind,
        peer_cert: Option<&[u8]>,
    ) -> Result<(Attested, PolicyBlock), ApiError> {
        let t = Instant::now();
        let attested = evidence::attest_at(
            peer_cert,
            &self.verifier,
            &self.collateral,
            &self.os_images,
            (self.clock)(),
        )
        .await?;
        if kind == ReleaseKind::KmsOnboard && attested.usage != Some(Usage::KmsRpc) {
            return Err(ApiError::denied(
                Check::ClientCert,
                "onboarding requires a certificate with usage kms:rpc",
            ));
        }
        self.metrics.observe(Stage::Verify, t.elapsed());

        let t = Instant::now();
        let at = self.policy_block().await?;
        match kind {
            ReleaseKind::KmsOnboard => self.chain.is_kms_allowed(&attested.boot, at).await?,
            ReleaseKind::AppKey | ReleaseKind::SignCert => {
                self.chain.is_app_allowed(&attested.boot, at).await?
            }
        };
        self.self_check(at).await?;
        self.metrics.observe(Stage::Chain, t.elapsed());
        Ok((attested, at))
    }

    /// Step 4 alone, at the current pinned block: this node's own evidence still
    /// verifies, the chain's key generation is this node's, and `isKmsAllowed` allows it.
    /// The release path runs it after the peer's checks; readiness probes may run it alone.
    pub async fn self_check_now(&self) -> Result<(), ApiError> {
        let at = self.policy_block().await?;
        self.self_check(at).await
    }

    /// The pinned policy block (`head − confirmations`), reused for at most `head_ttl`;
    /// concurrent lookups are coalesced into one.
    async fn policy_block(&self) -> Result<PolicyBlock, ApiError> {
        if self.head_ttl.is_zero() {
            return Ok(self.chain.policy_block().await?);
        }
        let fresh = |h: &Option<(PolicyBlock, Instant)>| {
            h.filter(|(_, at)| at.elapsed() < self.head_ttl)
                .map(|(b, _)| b)
        };
        if let Some(b) = fresh(&self.head.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(b);
        }
        let _single = self.head_lookup.lock().await;
        if let Some(b) = fresh(&self.head.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(b);
        }
        let b = self.chain.policy_block().await?;
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) = Some((b, Instant::now()));
        Ok(b)
    }

    /// Step 4: this node itself is allowed at `at`: its own evidence still verifies
    /// (re-verified when its collateral window has passed), the chain's current key
    /// generation is this node's, and `isKmsAllowed` on its own boot info.
    async fn self_check(&self, at: PolicyBlock) -> Result<(), ApiError> {
        let own = self.current_own_evidence().await?;
        self.check_generation(at).await?;
        match self.chain.is_kms_allowed(&own.boot, at).await {
            Ok(cairn_onchain::Verdict::Allowed) => Ok(()),
            Err(cairn_onchain::Error::Denied { check, reason }) => Err(ApiError::Unavailable {
                dependency: Dependency::SelfCheck,
                reason: format!("this KMS node is not allowed on chain ({check}): {reason}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn gateway_app_id(&self, at: PolicyBlock) -> Result<[u8; 20], ApiError> {
        if let Some((hash, id)) = *self.gateway.lock().unwrap_or_else(PoisonError::into_inner) {
            if hash == at.hash {
                return Ok(id);
            }
        }
        let id = self
            .chain
            .gateway_app_id(at)
            .await?
            .map(Address::into_array)
            .unwrap_or([0; 20]);
        *self.gateway.lock().unwrap_or_else(PoisonError::into_inner) = Some((at.hash, id));
        Ok(id)
    }

    fn record(
        &self,
        kind: ReleaseKind,
        a: &Attested,
        at: PolicyBlock,
    ) -> Result<ReleaseRecord, ApiError> {
        release_record(
            kind,
            a,
            at,
            self.identity.generation,
            self.chain_id,
            self.address(),
        )
        .map_err(internal)
    }

    /// Step 6: append durably and sign a checkpoint covering the entry.
    async fn log_release(
        self: &Arc<Self>,
        record: ReleaseRecord,
        at: PolicyBlock,
    ) -> Result<Receipt, ApiError> {
        let t = Instant::now();
        let bytes = record.encode().map_err(internal)?;
        let node = Arc::clone(self);
        let (log_index, checkpoint) = tokio::task::spawn_blocking(move || {
            let index = node.log.append(bytes)?;
            let cp = node.log.checkpoint(&node.signer)?;
            Ok::<_, cairn_tlog::Error>((index, cp.to_string()))
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        self.metrics.observe(Stage::Log, t.elapsed());
        Ok(Receipt {
            log_index,
            checkpoint,
            policy_block_number: at.number,
            policy_block_hash: at.hash.0,
        })
    }

    fn derive(&self, a: &Attested) -> Result<AppKeys, ApiError> {
        let t = Instant::now();
        let keys = AppKeys::derive(
            &self.identity.master,
            &self.root,
            a.quote.app_id(),
            a.quote.instance_id(),
        )
        .map_err(internal)?;
        self.metrics.observe(Stage::Derive, t.elapsed());
        Ok(keys)
    }

    fn count<T>(&self, kind: &'static str, r: &Result<T, ApiError>) {
        let (outcome, check) = match r {
            Ok(_) => ("released", "none"),
            Err(e @ ApiError::Denied { .. }) => ("denied", e.code()),
            Err(e @ ApiError::Unavailable { .. }) => ("unavailable", e.code()),
            Err(e) => ("error", e.code()),
        };
        self.metrics.count(kind, outcome, check);
        match r {
            Ok(_) => tracing::debug!(kind, "released"),
            Err(ApiError::Denied { reason, .. }) => {
                tracing::info!(kind, check, %reason, "release denied")
            }
            Err(e) => tracing::warn!(kind, check, error = %e, "release failed"),
        }
    }

    /// `POST /v1/app-key`: the whole release path for the caller's certificate.
    pub async fn release_app_key(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
    ) -> Result<AppKeyResponse, ApiError> {
        let t = Instant::now();
        let r = self.release_app_key_inner(peer_cert).await;
        self.count("app_key", &r);
        self.metrics.observe(Stage::Total, t.elapsed());
        r
    }

    async fn release_app_key_inner(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
    ) -> Result<AppKeyResponse, ApiError> {
        let (a, at) = self.authorize(ReleaseKind::AppKey, peer_cert).await?;
        let gateway_app_id = self.gateway_app_id(at).await?;
        let keys = self.derive(&a)?;
        let record = self.record(ReleaseKind::AppKey, &a, at)?;
        let receipt = self.log_release(record, at).await?;
        tracing::info!(
            app_id = %a.boot.appId,
            instance_id = %a.boot.instanceId,
            log_index = receipt.log_index,
            block = at.number,
            "app keys released"
        );
        Ok(AppKeyResponse {
            app_key: keys.k256_secret(),
            kms_signature: *keys.kms_signature(),
            disk_key: Zeroizing::new(*keys.disk_key().expose()),
            env_secret: Zeroizing::new(keys.env_secret().to_bytes()),
            gateway_app_id,
            root_ca_cert: self.root.ca().cert_pem().to_owned(),
            os_image_hash: a.os_image_hash,
            key_generation: self.identity.generation,
            receipt,
        })
    }

    /// `POST /v1/sign-cert`: sign the caller's CSR with its app CA.
    ///
    /// Binding: the CSR's public key must equal the key of the caller's RA-TLS client
    /// certificate (the attested key), so a certificate is only ever issued for a key
    /// that a verified quote binds. The leaf gets the CSR's subject and SANs (at most
    /// [`MAX_CSR_ALT_NAMES`]), usage `app:custom`, the app id extension, serverAuth and
    /// clientAuth, and the requested validity (default: from a few minutes ago for
    /// [`LEAF_VALIDITY`]; a notAfter later than [`LEAF_VALIDITY`] from now, or not after
    /// notBefore, is denied); every other CSR attribute is ignored.
    pub async fn sign_cert(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
        req: &SignCertRequest,
    ) -> Result<SignCertResponse, ApiError> {
        let t = Instant::now();
        let r = self.sign_cert_inner(peer_cert, req).await;
        self.count("sign_cert", &r);
        self.metrics.observe(Stage::Total, t.elapsed());
        r
    }

    async fn sign_cert_inner(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
        req: &SignCertRequest,
    ) -> Result<SignCertResponse, ApiError> {
        let (a, at) = self.authorize(ReleaseKind::SignCert, peer_cert).await?;
        let der = rustls_pki_types::CertificateSigningRequestDer::from(req.csr.as_slice());
        let csr = rcgen::CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| ApiError::denied(Check::Csr, format!("CSR rejected: {e}")))?;
        // The whole SubjectPublicKeyInfo (algorithm and parameters, not only the key
        // bits) must be the attested certificate's.
        if csr.public_key.subject_public_key_info() != a.spki_der {
            return Err(ApiError::denied(
                Check::Csr,
                "the CSR key is not the key of the attested client certificate",
            ));
        }
        if csr.params.subject_alt_names.len() > MAX_CSR_ALT_NAMES {
            return Err(ApiError::denied(
                Check::Csr,
                format!("CSR asks for more than {MAX_CSR_ALT_NAMES} alt names"),
            ));
        }
        let keys = self.derive(&a)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = csr.params.distinguished_name.clone();
        params.subject_alt_names = csr.params.subject_alt_names.clone();
        let (not_before, not_after) = leaf_validity(time::OffsetDateTime::now_utc(), req)?;
        params.not_before = not_before;
        params.not_after = not_after;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let serial: [u8; 16] = rand_serial();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        // The caller's RA-TLS evidence binds this same key (checked above), so the leaf
        // is itself a valid RA-TLS certificate, issued by the app CA.
        params.custom_extensions = vec![
            rcgen::CustomExtension::from_oid_content(OID_QUOTE, der_octet_string(&a.raw_quote)),
            rcgen::CustomExtension::from_oid_content(OID_EVENT_LOG, der_octet_string(&a.event_log)),
        ];
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                OID_APP_ID,
                der_octet_string(&a.quote.app_id().0),
            ));
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                OID_SPECIAL_USAGE,
                der_octet_string(USAGE_APP_CUSTOM.as_bytes()),
            ));
        let leaf = params
            .signed_by(&csr.public_key, &keys.ca().issuer())
            .map_err(internal)?;
        let record = self.record(ReleaseKind::SignCert, &a, at)?;
        self.log_release(record, at).await?;
        Ok(SignCertResponse {
            certificate_chain: vec![
                leaf.pem(),
                keys.ca().cert_pem().to_owned(),
                self.root.ca().cert_pem().to_owned(),
            ],
        })
    }

    /// `POST /v1/onboard`: send the master secret to a new KMS node whose evidence
    /// verifies and which `isKmsAllowed` at the pinned block; logged as `kms-onboard`.
    pub async fn onboard_peer(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
    ) -> Result<OnboardResponse, ApiError> {
        let t = Instant::now();
        let r = async {
            let (a, at) = self.authorize(ReleaseKind::KmsOnboard, peer_cert).await?;
            let record = self.record(ReleaseKind::KmsOnboard, &a, at)?;
            let receipt = self.log_release(record, at).await?;
            tracing::info!(device = %a.boot.deviceId, "onboarded a KMS node");
            Ok(OnboardResponse {
                master_secret: Zeroizing::new(*self.identity.master.expose()),
                key_generation: self.identity.generation,
                receipt,
            })
        }
        .await;
        self.count("onboard", &r);
        self.metrics.observe(Stage::Total, t.elapsed());
        r
    }
}

/// Install ring as the process's rustls provider if none is (the chain client's HTTP
/// stack builds its TLS config from the process default).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The log record of a release of `kind` to `a`, allowed at `at`.
pub(crate) fn release_record(
    kind: ReleaseKind,
    a: &Attested,
    at: PolicyBlock,
    generation: u64,
    chain_id: u64,
    node: [u8; 20],
) -> Result<ReleaseRecord> {
    let key_generation = u32::try_from(generation).map_err(|_| Error::Config {
        key: "key generation".into(),
        reason: format!("{generation} exceeds u32"),
    })?;
    Ok(ReleaseRecord {
        kind,
        app_id: a.boot.appId,
        compose_hash: a.boot.composeHash,
        instance_id: a.boot.instanceId,
        device_id: a.boot.deviceId,
        os_image_hash: a.boot.osImageHash,
        mr_aggregated: a.boot.mrAggregated,
        tcb_status: a.boot.tcbStatus.clone(),
        key_generation,
        chain_id,
        policy_block_number: at.number,
        policy_block_hash: at.hash,
        quote_hash: B256::from(a.quote_hash),
        client_key_hash: B256::from(a.client_key_hash),
        kms_node: Address::from(node),
        timestamp: evidence::unix_now(),
    })
}

fn rand_serial() -> [u8; 16] {
    use rand_core::RngCore as _;
    let mut s = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut s);
    s[0] &= 0x7f; // positive INTEGER
    s[0] |= 0x01; // and minimal (no leading zero octet)
    s
}
