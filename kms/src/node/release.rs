//! The release path: authorize (steps 1-4) → derive (5) → record and log (6) → respond
//! (7), for `app-key`, `sign-cert` and `onboard`. [`Node::release_app_key`]'s inner
//! function is the model: one line per step, every denial a named check. Each handler
//! runs in a `release` span whose `app_id` field is recorded once the caller's evidence
//! verified.

use std::sync::Arc;
use std::time::Instant;

use cairn_attestation::Usage;
use cairn_onchain::{HeadView, PolicyBlock};
use cairn_protocol::api::{
    AppKeyRequest, AppKeyResponse, OnboardRequest, OnboardResponse, PreviousAppKeys,
    PreviousGeneration, Receipt, SignCertRequest, SignCertResponse,
};
use cairn_tlog::{ReleaseKind, ReleaseRecord};
use tracing::instrument;
use zeroize::Zeroizing;

use super::checked::{Checked, Policy};
use super::keyring::{Generation, Keyring};
use super::{issue, Node};
use crate::anchor::Slot;
use crate::error::{Error, Result};
use crate::evidence::{self, Attested};
use crate::keys::AppKeys;
use crate::metrics::Stage;
use crate::reject::{ApiError, Check, Dependency};

/// What steps 1-4 established for one release.
struct Authorized<'a> {
    /// The caller's verified evidence.
    evidence: Attested,
    /// The policy head's view the release reads the chain through.
    view: HeadView<'a>,
    /// The boot info the chain allowed at `view`'s block: the only input of the record.
    checked: Checked,
    /// A slot under the bound on unanchored log entries, held until the entry is in.
    slot: Slot<'a>,
    /// The key generations this node serves at `view`'s block (the self-check synced
    /// them with the chain); a record names the generation actually released.
    ring: Arc<Keyring>,
}

impl Node {
    /// Steps 1-4 for `kind`: the caller's evidence (recorded as the span's `app_id`),
    /// the chain policy at the pinned block (the policy head's view, which later reads of
    /// the same release use — once it reaches `min_policy_block` when one is asked for,
    /// waiting boundedly for that; the allow is a [`Checked`] holding the boot info the
    /// chain judged, the only input of the release record), this node's self-check (which
    /// gives the keyring served at that block), the log's writability, and a slot under
    /// the bound on unanchored log entries (held until the entry is appended).
    async fn authorize(
        &self,
        kind: ReleaseKind,
        peer_cert: Option<&[u8]>,
        min_policy_block: Option<u64>,
    ) -> Result<Authorized<'_>, ApiError> {
        let t = Instant::now();
        let evidence = evidence::attest(
            peer_cert,
            &self.verifier,
            &self.collateral,
            &self.os_images,
            self.clock.now(),
        )
        .await?;
        tracing::Span::current().record("app_id", tracing::field::display(&evidence.boot.appId));
        if kind == ReleaseKind::KmsOnboard && evidence.usage != Some(Usage::KmsRpc) {
            return Err(ApiError::denied(
                Check::ClientCert,
                "onboarding requires a certificate with usage kms:rpc",
            ));
        }
        self.metrics.observe(Stage::Verify, t.elapsed());

        let t = Instant::now();
        let view = self.policy_view_at_least(min_policy_block).await?;
        let checked = Checked::allowed(Policy::View(&view), kind, evidence.boot.clone()).await?;
        let ring = self.self_check(&view).await?;
        self.metrics.observe(Stage::Chain, t.elapsed());
        self.log_writable()?;
        let slot = self.anchor.admit(&self.log)?;
        Ok(Authorized {
            evidence,
            view,
            checked,
            slot,
            ring,
        })
    }

    /// The log record of the release `checked` allowed to the holder of `a`, of key
    /// `generation` (the generation released).
    fn record(
        &self,
        a: &Attested,
        checked: &Checked,
        generation: u64,
    ) -> Result<ReleaseRecord, ApiError> {
        Ok(checked.record(
            a,
            generation,
            self.chain_id,
            self.address(),
            self.clock.now(),
        )?)
    }

    /// Step 6: append durably and sign a checkpoint covering the entry; the anchoring
    /// `slot` is freed once the entry is in the log.
    async fn log_release(
        self: &Arc<Self>,
        record: ReleaseRecord,
        at: PolicyBlock,
        slot: Slot<'_>,
    ) -> Result<Receipt, ApiError> {
        let mut receipts = self.log_releases(vec![record], at, slot).await?;
        receipts
            .pop()
            .ok_or_else(|| ApiError::Internal(Box::new(Error::LogAppendLost)))
    }

    /// Step 6 for several entries of one release (the current and the previous key
    /// generation during a rotation's window): each appended durably, in order, then one
    /// signed checkpoint covering all; one receipt per entry.
    async fn log_releases(
        self: &Arc<Self>,
        records: Vec<ReleaseRecord>,
        at: PolicyBlock,
        slot: Slot<'_>,
    ) -> Result<Vec<Receipt>, ApiError> {
        let t = Instant::now();
        let entries = records
            .iter()
            .map(|r| r.encode().map_err(|e| Error::Log(e.into())))
            .collect::<Result<Vec<_>>>()?;
        let node = Arc::clone(self);
        let (indexes, checkpoint) = tokio::task::spawn_blocking(move || {
            let mut indexes = Vec::with_capacity(entries.len());
            for bytes in entries {
                indexes.push(node.log.append(bytes)?);
            }
            let cp = node.log.checkpoint(&node.signer)?;
            Ok::<_, cairn_tlog::Error>((indexes, cp.to_string()))
        })
        .await
        .map_err(Error::Task)?
        .map_err(|e| match e {
            // Nothing was acknowledged: no keys leave without their durable entry.
            e @ (cairn_tlog::Error::Storage(_) | cairn_tlog::Error::Poisoned) => {
                tracing::error!(error = %e, "the release could not be made durable; the log is reopened in the background");
                ApiError::Unavailable {
                    dependency: Dependency::Log,
                    reason: format!(
                        "the transparency log could not make the release durable ({}); nothing was released",
                        log_failure(&e)
                    ),
                }
            }
            e => Error::Log(e).into(),
        })?;
        drop(slot);
        self.metrics.observe(Stage::Log, t.elapsed());
        Ok(indexes
            .into_iter()
            .map(|log_index| Receipt {
                log_index,
                checkpoint: checkpoint.clone(),
                policy_block_number: at.number,
                policy_block_hash: at.hash.0,
            })
            .collect())
    }

    fn derive(&self, g: &Generation, a: &Attested) -> Result<AppKeys, ApiError> {
        let t = Instant::now();
        let keys = AppKeys::derive(&g.master, &g.root, a.quote.app_id(), a.quote.instance_id())?;
        self.metrics.observe(Stage::Derive, t.elapsed());
        Ok(keys)
    }

    /// Runs one release of `kind` to its end, then counts its outcome (metric and log
    /// line) and observes its total time: the wrapper every release endpoint shares.
    async fn counted<T>(
        &self,
        kind: &'static str,
        release: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let t = Instant::now();
        let r = release.await;
        self.count(kind, &r);
        self.metrics.observe(Stage::Total, t.elapsed());
        r
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
    #[instrument(name = "release", skip_all, fields(kind = "app_key", app_id))]
    pub async fn release_app_key(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
        req: &AppKeyRequest,
    ) -> Result<AppKeyResponse, ApiError> {
        self.counted("app_key", self.release_app_key_inner(peer_cert, req))
            .await
    }

    async fn release_app_key_inner(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
        req: &AppKeyRequest,
    ) -> Result<AppKeyResponse, ApiError> {
        let Authorized {
            evidence: a,
            view,
            checked,
            slot,
            ring,
        } = self
            .authorize(ReleaseKind::AppKey, peer_cert, req.min_policy_block)
            .await?;
        let at = checked.at();
        let previous = previous_generation(&ring, req.previous_generation)?;
        let gateway_app_id = self.gateway_app_id(&view).await?;
        let keys = self.derive(&ring.current, &a)?;
        let mut records = vec![self.record(&a, &checked, ring.current.number)?];
        let previous_keys = match previous {
            Some((g, valid_until)) => {
                records.push(self.record(&a, &checked, g.number)?);
                Some((g, valid_until, self.derive(g, &a)?))
            }
            None => None,
        };
        let mut receipts = self.log_releases(records, at, slot).await?.into_iter();
        let receipt = receipts
            .next()
            .ok_or_else(|| ApiError::Internal(Box::new(Error::LogAppendLost)))?;
        let previous = match previous_keys {
            Some((g, valid_until, k)) => Some(PreviousAppKeys {
                key_generation: g.number,
                valid_until,
                app_key: k.k256_secret(),
                kms_signature: *k.kms_signature(),
                disk_key: Zeroizing::new(*k.disk_key().expose()),
                env_secret: Zeroizing::new(k.env_secret().to_bytes()),
                root_ca_cert: g.root.ca().cert_pem().to_owned(),
                receipt: receipts
                    .next()
                    .ok_or_else(|| ApiError::Internal(Box::new(Error::LogAppendLost)))?,
            }),
            None => None,
        };
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
            root_ca_cert: ring.current.root.ca().cert_pem().to_owned(),
            os_image_hash: a.os_image_hash,
            key_generation: ring.current.number,
            receipt,
            previous,
        })
    }

    /// `POST /v1/sign-cert`: sign the caller's CSR with its app CA.
    ///
    /// Binding: the CSR's public key must equal the key of the caller's RA-TLS client
    /// certificate (the attested key), so a certificate is only ever issued for a key
    /// that a verified quote binds. The leaf gets the CSR's subject and SANs (at most
    /// [`MAX_CSR_ALT_NAMES`](super::MAX_CSR_ALT_NAMES)), usage `app:custom`, the app id
    /// extension, serverAuth and clientAuth, and the requested validity judged by the
    /// node's clock (default: from a few minutes ago for
    /// [`LEAF_VALIDITY`](super::LEAF_VALIDITY); a notAfter later than that, or not after
    /// notBefore, is denied); every other CSR attribute is ignored.
    #[instrument(name = "release", skip_all, fields(kind = "sign_cert", app_id))]
    pub async fn sign_cert(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
        req: &SignCertRequest,
    ) -> Result<SignCertResponse, ApiError> {
        self.counted("sign_cert", self.sign_cert_inner(peer_cert, req))
            .await
    }

    async fn sign_cert_inner(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
        req: &SignCertRequest,
    ) -> Result<SignCertResponse, ApiError> {
        let Authorized {
            evidence: a,
            checked,
            slot,
            ring,
            ..
        } = self
            .authorize(ReleaseKind::SignCert, peer_cert, None)
            .await?;
        let at = checked.at();
        let csr = issue::bound_csr(&req.csr, &a)?;
        let window = issue::requested_window(self.clock.now(), req)?;
        let keys = self.derive(&ring.current, &a)?;
        let leaf = issue::app_leaf(&csr, &a, &keys, window)?;
        let record = self.record(&a, &checked, ring.current.number)?;
        self.log_release(record, at, slot).await?;
        Ok(SignCertResponse {
            certificate_chain: vec![
                leaf.pem(),
                keys.ca().cert_pem().to_owned(),
                ring.current.root.ca().cert_pem().to_owned(),
            ],
        })
    }

    /// `POST /v1/onboard`: send a master secret to a KMS node whose evidence verifies and
    /// which `isKmsAllowed` at the pinned block; logged as `kms-onboard` with the
    /// generation sent. `req.key_generation` picks the generation (default: the current
    /// one); only the generations the chain serves at that block and this node holds are
    /// sent (404 otherwise: a pending generation is not sent before the vote).
    #[instrument(name = "release", skip_all, fields(kind = "onboard", app_id))]
    pub async fn onboard_peer(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
        req: &OnboardRequest,
    ) -> Result<OnboardResponse, ApiError> {
        self.counted("onboard", async {
            let Authorized {
                evidence: a,
                checked,
                slot,
                ring,
                ..
            } = self.authorize(ReleaseKind::KmsOnboard, peer_cert, None).await?;
            let at = checked.at();
            let g = match req.key_generation {
                None => &ring.current,
                Some(n) if n == ring.current.number => &ring.current,
                Some(n) => match &ring.previous {
                    Some(p) if p.number == n => p,
                    _ => {
                        return Err(ApiError::NotFound(format!(
                            "this node serves no key generation {n} at block {} (current {})",
                            at.number, ring.current.number
                        )))
                    }
                },
            };
            let record = self.record(&a, &checked, g.number)?;
            let receipt = self.log_release(record, at, slot).await?;
            tracing::info!(device = %a.boot.deviceId, generation = g.number, "onboarded a KMS node");
            Ok(OnboardResponse {
                master_secret: Zeroizing::new(*g.master.expose()),
                key_generation: g.number,
                receipt,
            })
        })
        .await
    }
}

/// The previous generation a request asks for, with its window end: `None` when not
/// asked, or asked `if_served` and not served (or served by other nodes); 403
/// `denied.key_generation` when `required` and the chain serves none; 503
/// `unavailable.key_generation` when `required`, served, and this node does not hold it.
fn previous_generation(
    ring: &Keyring,
    wanted: Option<PreviousGeneration>,
) -> Result<Option<(&Generation, u64)>, ApiError> {
    let held = match (&ring.previous, ring.served_previous) {
        (Some(g), Some((_, until))) => Some((g.as_ref(), until)),
        _ => None,
    };
    match (wanted, held, ring.served_previous) {
        (None, _, _) | (Some(PreviousGeneration::IfServed), None, _) => Ok(None),
        (Some(_), Some(h), _) => Ok(Some(h)),
        (Some(PreviousGeneration::Required), None, None) => Err(ApiError::denied(
            Check::KeyGeneration,
            format!(
                "no previous key generation is served beside generation {}: none was rotated out with a transition window, or its window ended and it is retired",
                ring.current.number
            ),
        )),
        (Some(PreviousGeneration::Required), None, Some((g, _))) => {
            Err(ApiError::Unavailable {
                dependency: crate::reject::Dependency::KeyGeneration,
                reason: format!(
                    "the previous key generation {g} is served, but not by this node: ask another"
                ),
            })
        }
    }
}

/// Why the log could not take an entry, in words for the caller (sled nests the OS
/// error in debug text).
fn log_failure(e: &cairn_tlog::Error) -> String {
    match e {
        cairn_tlog::Error::Storage(sled::Error::Io(io))
            if io.kind() == std::io::ErrorKind::StorageFull =>
        {
            "no space left on the log's disk".into()
        }
        cairn_tlog::Error::Storage(sled::Error::Io(io)) => format!("I/O error: {}", io.kind()),
        cairn_tlog::Error::Poisoned => {
            "an earlier write failed and the log is being reopened".into()
        }
        e => e.to_string(),
    }
}
