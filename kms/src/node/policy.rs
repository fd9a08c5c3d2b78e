//! Release-path steps 3-4 and their per-block caches: the pinned policy block (reused for
//! `head_ttl`), the chain's key generation, this node's registration and the gateway app
//! id (cached per block hash), and the node's own evidence (re-verified once its
//! collateral window has passed). Nothing here caches an error.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::PolicyBlock;

use super::Node;
use crate::evidence::{self, Attested};
use crate::reject::{ApiError, Dependency};

impl Node {
    /// The node's own evidence, re-verified first if its verification is no longer valid
    /// at the node's clock (collateral window passed). Concurrent callers share one
    /// re-verification; the result is swapped in atomically.
    async fn current_own_evidence(&self) -> Result<Arc<Attested>, ApiError> {
        let valid = |a: &Attested, now: u64| now < a.quote.valid_until();
        let own = self.own_evidence();
        if valid(&own, self.clock.now()) {
            return Ok(own);
        }
        let _single = self.own_refresh.lock().await;
        let own = self.own_evidence();
        let now = self.clock.now();
        if valid(&own, now) {
            return Ok(own);
        }
        let fresh = evidence::attest(
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

    /// This node's address is a registered KMS node (`KmsAuth.isKmsNode`) at `at` (cached
    /// per block): a node removed with `removeKmsNode`, or onboarded and never added,
    /// releases nothing (`503 self_check.not_registered`).
    async fn check_registered(&self, at: PolicyBlock) -> Result<(), ApiError> {
        let cached = *self
            .registered_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let registered = match cached {
            Some((hash, r)) if hash == at.hash => r,
            _ => {
                let r = self
                    .chain
                    .is_kms_node(Address::from(self.address()), at)
                    .await?;
                *self
                    .registered_seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((at.hash, r));
                r
            }
        };
        if !registered {
            return Err(ApiError::Unavailable {
                dependency: Dependency::Registration,
                reason: format!(
                    "this KMS node (0x{}) is not a registered KMS node in KmsAuth at block {} (isKmsNode is false)",
                    hex::encode(self.address()),
                    at.number
                ),
            });
        }
        Ok(())
    }

    /// Step 4 alone, at the current pinned block: this node's own evidence still
    /// verifies, the chain's key generation is this node's, the node is registered, and
    /// `isKmsAllowed` allows it.
    /// The release path runs it after the peer's checks; readiness probes may run it alone.
    pub async fn self_check_now(&self) -> Result<(), ApiError> {
        let at = self.policy_block().await?;
        self.self_check(at).await
    }

    /// The pinned policy block (`head − confirmations`), reused for at most `head_ttl`;
    /// concurrent lookups are coalesced into one.
    pub(super) async fn policy_block(&self) -> Result<PolicyBlock, ApiError> {
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
    /// generation is this node's, its address is registered (`isKmsNode`), and
    /// `isKmsAllowed` on its own boot info.
    pub(super) async fn self_check(&self, at: PolicyBlock) -> Result<(), ApiError> {
        let own = self.current_own_evidence().await?;
        self.check_generation(at).await?;
        self.check_registered(at).await?;
        match self.chain.is_kms_allowed(&own.boot, at).await {
            Ok(cairn_onchain::Verdict::Allowed) => Ok(()),
            Err(cairn_onchain::Error::Denied { check, reason }) => Err(ApiError::Unavailable {
                dependency: Dependency::SelfCheck,
                reason: format!("this KMS node is not allowed on chain ({check}): {reason}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The gateway app id registered in KmsAuth at `at` (cached per block; zero when none).
    pub(super) async fn gateway_app_id(&self, at: PolicyBlock) -> Result<[u8; 20], ApiError> {
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
}
