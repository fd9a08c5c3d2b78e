//! Release-path steps 3-4: every chain read goes through the node's [`PolicyHead`]
//! (`cairn_onchain`), whose view pins one block per decision and answers reads used before
//! from its cache (refreshed in the background at each new block): the chain's key
//! generation, this node's registration, the gateway app id, `isKmsAllowed`; the node's
//! own evidence is re-verified once its collateral window has passed. Nothing here caches
//! an error.
//!
//! [`PolicyHead`]: cairn_onchain::PolicyHead

use std::sync::{Arc, PoisonError};

use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::HeadView;

use super::keyring::Keyring;
use super::{Node, MAX_POLICY_BLOCK_LEAD};
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
            Some(self.server_cert().cert_der.as_ref()),
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

    /// This node's address is a registered KMS node (`KmsAuth.isKmsNode`) at the view's
    /// block (read through the policy head: cached per block, kept answered at each new
    /// block): a node removed with `removeKmsNode`, or onboarded and never added, releases
    /// nothing (`503 self_check.not_registered`).
    async fn check_registered(&self, view: &HeadView<'_>) -> Result<(), ApiError> {
        let registered = view.is_kms_node(Address::from(self.address())).await?;
        if !registered {
            return Err(ApiError::Unavailable {
                dependency: Dependency::Registration,
                reason: format!(
                    "this KMS node (0x{}) is not a registered KMS node in KmsAuth at block {} (isKmsNode is false)",
                    hex::encode(self.address()),
                    view.block().number
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
        let view = self.policy_view()?;
        self.self_check(&view).await.map(drop)
    }

    /// The policy head's current view: the pinned block every read of one decision uses.
    /// A failed, contradicted or stale head is an error (503), never an older block.
    pub(super) fn policy_view(&self) -> Result<HeadView<'_>, ApiError> {
        Ok(self.head.view()?)
    }

    /// The policy head's view once its pinned block is at least `min` (a request's
    /// `min_policy_block`): at once when it already is (or `min` is `None`); otherwise
    /// the release waits for the head's next advances, up to the node's `head_wait`,
    /// then judges at the head's own block as always. The head advancing is what ends
    /// the wait (no polling of the chain here). 503 `unavailable.policy_head_behind`,
    /// naming both blocks, when the head has not reached `min` by then, at once when
    /// `min` is more than [`MAX_POLICY_BLOCK_LEAD`] past the chain head this node last
    /// read (no endpoint can have seen it allowed) or when
    /// [`MAX_HEAD_WAITERS`](super::MAX_HEAD_WAITERS) requests
    /// wait already. A client-chosen `min` can only delay its own request: it selects no
    /// block, it is never a verdict.
    pub(super) async fn policy_view_at_least(
        &self,
        min: Option<u64>,
    ) -> Result<HeadView<'_>, ApiError> {
        let Some(min) = min else {
            return self.policy_view();
        };
        // Subscribed before the first look, so an advance in between is not missed.
        let mut advances = self.head.advances();
        let view = self.policy_view()?;
        if view.block().number >= min {
            return Ok(view);
        }
        let behind = |pinned: u64, why: &str| {
            self.metrics.head_wait_behind();
            ApiError::Unavailable {
                dependency: Dependency::PolicyHeadBehind,
                reason: format!(
                    "this KMS's policy block is {pinned}, below the requested min_policy_block {min} ({why}); retry"
                ),
            }
        };
        let too_far = |head: u64| min > head.saturating_add(MAX_POLICY_BLOCK_LEAD);
        if too_far(view.head().number) {
            return Err(behind(
                view.block().number,
                "more than the allowed lead past the chain head",
            ));
        }
        let Ok(_waiter) = self.head_waiters.try_acquire() else {
            return Err(behind(
                view.block().number,
                "too many requests wait for the head",
            ));
        };
        let _waiting = self.metrics.head_wait_started();
        let deadline = tokio::time::Instant::now() + self.head_wait;
        loop {
            let waited = tokio::time::timeout_at(deadline, advances.changed()).await;
            let view = self.policy_view()?;
            let pinned = view.block().number;
            if pinned >= min {
                self.metrics.head_wait_reached();
                return Ok(view);
            }
            match waited {
                Ok(Ok(())) if !too_far(view.head().number) => continue,
                Ok(Ok(())) => {
                    return Err(behind(
                        pinned,
                        "more than the allowed lead past the chain head",
                    ))
                }
                Ok(Err(_)) => return Err(behind(pinned, "the policy head stopped")),
                Err(_) => {
                    return Err(behind(
                        pinned,
                        &format!("waited {} ms", self.head_wait.as_millis()),
                    ))
                }
            }
        }
    }

    /// Step 4: this node itself is allowed at the view's block: its own evidence still
    /// verifies (re-verified when its collateral window has passed), the chain's current
    /// key generation is one this node holds (the keyring, synced with the chain and the
    /// store: `keyring`), its address is registered (`isKmsNode`), and `isKmsAllowed` on
    /// its own boot info. Returns the keyring the release uses.
    pub(super) async fn self_check(&self, view: &HeadView<'_>) -> Result<Arc<Keyring>, ApiError> {
        let ring = self.keyring_at(view).await?;
        let own = self.current_own_evidence().await?;
        self.check_registered(view).await?;
        match view.is_kms_allowed(&own.boot).await {
            Ok(cairn_onchain::Verdict::Allowed) => Ok(ring),
            Err(cairn_onchain::Error::Denied { check, reason }) => Err(ApiError::Unavailable {
                dependency: Dependency::SelfCheck,
                reason: format!("this KMS node is not allowed on chain ({check}): {reason}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The gateway app id registered in KmsAuth at the view's block (zero when none).
    pub(super) async fn gateway_app_id(&self, view: &HeadView<'_>) -> Result<[u8; 20], ApiError> {
        Ok(view
            .gateway_app_id()
            .await?
            .map(Address::into_array)
            .unwrap_or([0; 20]))
    }
}
