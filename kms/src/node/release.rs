//! The release path: authorize (steps 1-4) → derive (5) → record and log (6) → respond
//! (7), for `app-key`, `sign-cert` and `onboard`. [`Node::release_app_key`]'s inner
//! function is the model: one line per step, every denial a named check. Each handler
//! runs in a `release` span whose `app_id` field is recorded once the caller's evidence
//! verified.

use std::sync::Arc;
use std::time::Instant;

use cairn_attestation::Usage;
use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::{HeadView, PolicyBlock};
use cairn_protocol::api::{
    AppKeyResponse, OnboardResponse, Receipt, SignCertRequest, SignCertResponse,
};
use cairn_tlog::{ReleaseKind, ReleaseRecord};
use tracing::instrument;
use zeroize::Zeroizing;

use super::{issue, Node};
use crate::anchor::Slot;
use crate::error::{Error, Result};
use crate::evidence::{self, Attested};
use crate::keys::AppKeys;
use crate::metrics::Stage;
use crate::reject::{ApiError, Check};

impl Node {
    /// Steps 1-4 for `kind`: the caller's evidence (recorded as the span's `app_id`),
    /// the chain policy at the pinned block (the policy head's view, which later reads of
    /// the same release use), this node's self-check, and a slot under the bound on
    /// unanchored log entries (held until the entry is appended).
    async fn authorize(
        &self,
        kind: ReleaseKind,
        peer_cert: Option<&[u8]>,
    ) -> Result<(Attested, HeadView<'_>, Slot<'_>), ApiError> {
        let t = Instant::now();
        let attested = evidence::attest(
            peer_cert,
            &self.verifier,
            &self.collateral,
            &self.os_images,
            self.clock.now(),
        )
        .await?;
        tracing::Span::current().record("app_id", tracing::field::display(&attested.boot.appId));
        if kind == ReleaseKind::KmsOnboard && attested.usage != Some(Usage::KmsRpc) {
            return Err(ApiError::denied(
                Check::ClientCert,
                "onboarding requires a certificate with usage kms:rpc",
            ));
        }
        self.metrics.observe(Stage::Verify, t.elapsed());

        let t = Instant::now();
        let view = self.policy_view()?;
        match kind {
            ReleaseKind::KmsOnboard => view.is_kms_allowed(&attested.boot).await?,
            ReleaseKind::AppKey | ReleaseKind::SignCert => {
                view.is_app_allowed(&attested.boot).await?
            }
        };
        self.self_check(&view).await?;
        self.metrics.observe(Stage::Chain, t.elapsed());
        let slot = self.anchor.admit(&self.log)?;
        Ok((attested, view, slot))
    }

    fn record(
        &self,
        kind: ReleaseKind,
        a: &Attested,
        at: PolicyBlock,
    ) -> Result<ReleaseRecord, ApiError> {
        Ok(release_record(
            kind,
            a,
            at,
            self.identity.generation,
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
        let t = Instant::now();
        let bytes = record.encode().map_err(|e| Error::Log(e.into()))?;
        let node = Arc::clone(self);
        let (log_index, checkpoint) = tokio::task::spawn_blocking(move || {
            let index = node.log.append(bytes)?;
            let cp = node.log.checkpoint(&node.signer)?;
            Ok::<_, cairn_tlog::Error>((index, cp.to_string()))
        })
        .await
        .map_err(Error::Task)?
        .map_err(Error::Log)?;
        drop(slot);
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
        )?;
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
    #[instrument(name = "release", skip_all, fields(kind = "app_key", app_id))]
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
        let (a, view, slot) = self.authorize(ReleaseKind::AppKey, peer_cert).await?;
        let at = view.block();
        let gateway_app_id = self.gateway_app_id(&view).await?;
        let keys = self.derive(&a)?;
        let record = self.record(ReleaseKind::AppKey, &a, at)?;
        let receipt = self.log_release(record, at, slot).await?;
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
        let (a, view, slot) = self.authorize(ReleaseKind::SignCert, peer_cert).await?;
        let at = view.block();
        let csr = issue::bound_csr(&req.csr, &a)?;
        let window = issue::requested_window(self.clock.now(), req)?;
        let keys = self.derive(&a)?;
        let leaf = issue::app_leaf(&csr, &a, &keys, window)?;
        let record = self.record(ReleaseKind::SignCert, &a, at)?;
        self.log_release(record, at, slot).await?;
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
    #[instrument(name = "release", skip_all, fields(kind = "onboard", app_id))]
    pub async fn onboard_peer(
        self: &Arc<Self>,
        peer_cert: Option<&[u8]>,
    ) -> Result<OnboardResponse, ApiError> {
        let t = Instant::now();
        let r = async {
            let (a, view, slot) = self.authorize(ReleaseKind::KmsOnboard, peer_cert).await?;
            let at = view.block();
            let record = self.record(ReleaseKind::KmsOnboard, &a, at)?;
            let receipt = self.log_release(record, at, slot).await?;
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

/// The log record of a release of `kind` to `a`, allowed at `at`, made at `timestamp`
/// (seconds since the Unix epoch, the node's clock).
pub(crate) fn release_record(
    kind: ReleaseKind,
    a: &Attested,
    at: PolicyBlock,
    generation: u64,
    chain_id: u64,
    node: [u8; 20],
    timestamp: u64,
) -> Result<ReleaseRecord> {
    let key_generation =
        u32::try_from(generation).map_err(|_| Error::KeyGenerationTooLarge { generation })?;
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
        timestamp,
    })
}
