//! Which key generations the node serves (docs/rotation.md): the chain decides
//! (`KmsAuth.keyGeneration`, `transitionWindow`, read at the pinned block through the
//! policy head), the secret store holds the masters, and the [`Keyring`] is the node's
//! in-memory copy of the generations it serves now.
//!
//! On every release the chain's answer (cached per block) is compared with the keyring;
//! when they differ — a rotation executed, a window moved or ended — the node re-reads
//! its store ([`Node::sync_generations`]), switches its TLS certificate to the new
//! current root CA, and **erases** from the store every generation below the current one
//! that the chain no longer serves. A background task does the same every anchoring
//! interval, so an idle node erases a retired master too.
//!
//! Fail closed: a current generation this node does not hold, or whose root keys differ
//! from the chain's, answers 503 `unavailable.key_generation` (guests fail over); a
//! previous generation the chain serves but this node does not hold is served by other
//! nodes (`previous_generation: "required"` answers 503 here).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use cairn_attestation::RaTlsCert;
use cairn_onchain::{HeadView, KeyGenerations};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::{own_cert, Node, SECRETS_DIR};
use crate::error::{Error, Result};
use crate::kdf::MasterSecret;
use crate::keys::RootKeys;
use crate::reject::{ApiError, Dependency};
use crate::store::{Held, SecretStore};

/// One key generation the node serves.
pub(crate) struct Generation {
    /// Its number.
    pub(crate) number: u64,
    /// Its master secret.
    pub(crate) master: MasterSecret,
    /// Its root keys.
    pub(crate) root: Arc<RootKeys>,
}

/// What the node serves now.
pub(crate) struct Keyring {
    /// The chain's current generation.
    pub(crate) current: Arc<Generation>,
    /// The node's RA-TLS server certificate, issued by the current root CA.
    pub(crate) server_cert: Arc<RaTlsCert>,
    /// The same, as rustls serves it.
    pub(crate) certified: Arc<CertifiedKey>,
    /// The previous generation the chain serves (number, window end), if any.
    pub(crate) served_previous: Option<(u64, u64)>,
    /// Its master, when this node holds it.
    pub(crate) previous: Option<Arc<Generation>>,
}

impl Keyring {
    /// Whether this keyring is what the chain's `gens` say to serve.
    fn matches(&self, gens: &KeyGenerations) -> bool {
        let served = gens
            .active_previous()
            .map(|p| (u64::from(p.keys.generation), p.valid_until));
        self.current.number == u64::from(gens.current.generation) && self.served_previous == served
    }
}

/// The keyring the chain's `gens` call for, from the generations `held`, reusing `old`'s
/// certificate when the current generation did not change; and the held generations to
/// erase (below the current one and not served). Errors name why the node cannot serve.
pub(crate) fn plan(
    held: &Held,
    gens: &KeyGenerations,
    old: Option<&Keyring>,
    cert: impl FnOnce(&RootKeys) -> Result<RaTlsCert>,
) -> Result<(Keyring, Vec<u64>)> {
    let current = u64::from(gens.current.generation);
    let held_numbers = || held.masters.keys().copied().collect::<Vec<_>>();
    let master = held
        .masters
        .get(&current)
        .ok_or_else(|| Error::KeyGenerationMismatch {
            chain: current,
            node: held.newest().0,
        })?;
    let generation = |number: u64, master: &MasterSecret, keys: &cairn_onchain::RootKeys| {
        let root = RootKeys::derive(master)?;
        if keys.k256_pubkey.as_ref() != root.k256_public().as_slice()
            || keys.ca_pubkey.as_ref() != root.ca().spki_der().as_slice()
        {
            return Err(Error::RootKeysMismatch { generation: number });
        }
        Ok(Arc::new(Generation {
            number,
            master: master.clone(),
            root: Arc::new(root),
        }))
    };
    let (current, server_cert, certified) = match old {
        Some(old) if old.current.number == current => (
            Arc::clone(&old.current),
            Arc::clone(&old.server_cert),
            Arc::clone(&old.certified),
        ),
        _ => {
            let g = generation(current, master, &gens.current)?;
            let cert = cert(&g.root)?;
            let certified = certified_key(&cert)?;
            (g, Arc::new(cert), certified)
        }
    };
    let served = gens.active_previous();
    let previous = match served {
        Some(p) => match held.masters.get(&u64::from(p.keys.generation)) {
            Some(m) => Some(generation(u64::from(p.keys.generation), m, &p.keys)?),
            None => {
                tracing::warn!(
                    previous = p.keys.generation,
                    held = ?held_numbers(),
                    "the chain serves a previous key generation this node does not hold; other nodes serve it"
                );
                None
            }
        },
        None => None,
    };
    let served_previous = served.map(|p| (u64::from(p.keys.generation), p.valid_until));
    let erase = held
        .masters
        .keys()
        .copied()
        .filter(|g| *g < current.number && Some(*g) != served_previous.map(|p| p.0))
        .collect();
    Ok((
        Keyring {
            current,
            server_cert,
            certified,
            served_previous,
            previous,
        },
        erase,
    ))
}

/// rustls's form of an RA-TLS certificate and its key.
pub(crate) fn certified_key(cert: &RaTlsCert) -> Result<Arc<CertifiedKey>> {
    let key = rustls::crypto::ring::sign::any_supported_type(&cert.private_key_der())
        .map_err(Error::Tls)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.cert_der.clone()],
        key,
    )))
}

/// Erase `generations` from the store in `dir` (durably; see `store`). Blocking.
pub(crate) fn erase(dir: &std::path::Path, generations: &[u64]) -> Result<()> {
    let mut store = SecretStore::open(dir)?;
    for g in generations {
        store = store.erase_generation(*g)?;
        tracing::info!(generation = g, "retired key generation erased");
    }
    Ok(())
}

impl Node {
    /// The keyring served now.
    pub(crate) fn keyring(&self) -> Arc<Keyring> {
        Arc::clone(&self.keyring.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The keyring for the view's block: the chain's key generations compared with the
    /// keyring, re-synced from the store when they differ (release-path step 4).
    pub(crate) async fn keyring_at(&self, view: &HeadView<'_>) -> Result<Arc<Keyring>, ApiError> {
        let gens = view
            .key_generations()
            .await?
            .ok_or_else(|| ApiError::Unavailable {
                dependency: Dependency::KeyGeneration,
                reason: "no key generation is registered in KmsAuth".into(),
            })?;
        let ring = self.keyring();
        if ring.matches(&gens) {
            return Ok(ring);
        }
        self.resync(&gens).await.map_err(|e| ApiError::Unavailable {
            dependency: Dependency::KeyGeneration,
            reason: format!(
                "the chain's current key generation is {}: {e}",
                gens.current.generation
            ),
        })
    }

    /// Bring the keyring and the store in line with the chain at the policy head's
    /// current block: switch to a new current generation, serve or stop serving the
    /// previous one, erase retired masters. Run by a background task every anchoring
    /// interval; tests call it to avoid waiting.
    pub async fn sync_generations(&self) -> Result<(), ApiError> {
        let view = self.policy_view()?;
        self.keyring_at(&view).await.map(drop)
    }

    async fn resync(&self, gens: &KeyGenerations) -> Result<Arc<Keyring>> {
        let _single = self.keyring_sync.lock().await;
        let old = self.keyring();
        if old.matches(gens) {
            return Ok(old);
        }
        let dir = self.data_dir.join(SECRETS_DIR);
        let held = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || SecretStore::open(dir)?.held())
                .await
                .map_err(Error::Task)??
        };
        let (ring, retired) = plan(&held, gens, Some(&old), |root| {
            own_cert(self.tee.as_ref(), &self.event_log, root, self.clock.now())
        })?;
        let ring = Arc::new(ring);
        *self.keyring.lock().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&ring);
        drop(held);
        if ring.current.number != old.current.number {
            tracing::info!(
                from = old.current.number,
                to = ring.current.number,
                "now serving a new current key generation"
            );
        }
        if !retired.is_empty() {
            tokio::task::spawn_blocking(move || erase(&dir, &retired))
                .await
                .map_err(Error::Task)??;
        }
        Ok(ring)
    }
}

/// The background task: [`Node::sync_generations`] every `interval` until `stop`.
pub(crate) async fn run(node: Arc<Node>, interval: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = node.sync_generations().await {
            tracing::debug!(error = %e, "key-generation sync");
        }
    }
}

/// rustls asks the node for its current certificate on every handshake.
#[derive(Debug)]
pub(crate) struct CurrentCert(pub(crate) Arc<Node>);

impl rustls::server::ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.keyring().certified))
    }
}
