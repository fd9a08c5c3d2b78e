//! Revocation: every `poll_interval` the gateway reads the policy block (head −
//! confirmations); when it is a new block, it asks the chain again about itself and about
//! every admitted instance. An instance the chain no longer allows is removed, which
//! closes its open connections at once (`registry`), so a revocation stops traffic within
//! one poll of becoming visible at the policy block.
//!
//! Fail closed: a check that cannot be completed (RPC down, timeout, a reorged block)
//! leaves the node's policy *stale*; past `max_policy_age` without a complete check the
//! proxy routes nothing new, and registrations answer 503. If the gateway itself is
//! denied (its compose revoked, KmsAuth names another gateway app, the KMS root changed),
//! it drops every instance and refuses registrations until the chain allows it again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cairn_onchain::alloy::primitives::Address;
use cairn_onchain::{Error as ChainError, PolicyBlock};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::registry::{now_ms, Denial, Instance};
use crate::service::Shared;

/// How many instances are checked at once.
pub const MAX_CONCURRENT_CHECKS: usize = 32;

/// Where the node's policy stands.
#[derive(Debug, Default)]
pub(crate) struct PolicyState {
    /// The block of the last complete check.
    last: Mutex<Option<PolicyBlock>>,
    /// `now_ms() + 1` of the last complete check (0: never).
    fresh_ms: AtomicU64,
    /// Why the gateway itself is not allowed, if it is not.
    self_denied: Mutex<Option<String>>,
}

impl PolicyState {
    /// Whether a complete check happened within `max_age`.
    pub fn fresh(&self, max_age: Duration) -> bool {
        let at = self.fresh_ms.load(Ordering::Relaxed);
        at != 0
            && now_ms().saturating_sub(at - 1)
                <= u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX)
    }

    /// Milliseconds since the last complete check.
    pub fn age_ms(&self) -> Option<u64> {
        match self.fresh_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(now_ms().saturating_sub(at - 1)),
        }
    }

    /// The block of the last complete check.
    pub fn last(&self) -> Option<PolicyBlock> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the gateway itself is not allowed now.
    pub fn self_denied(&self) -> Option<String> {
        self.self_denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_self_denied(&self, reason: Option<String>) {
        *self
            .self_denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason;
    }

    fn complete(&self, at: PolicyBlock) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
        self.fresh_ms.store(now_ms() + 1, Ordering::Relaxed);
    }
}

/// Poll until `stop` flips.
pub(crate) async fn run(g: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(g.options.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => poll_once(&g).await,
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One poll: expire silent instances, then, at a new policy block, check the gateway
/// and every instance.
pub(crate) async fn poll_once(g: &Arc<Shared>) {
    for gone in g.registry.expire() {
        g.metrics.revoked("expired");
        g.registry.record_denial(Denial {
            app_id: Some(gone.app_id),
            instance_id: gone.instance_id.clone(),
            code: "expired".to_owned(),
            reason: "the instance did not register again within the registration TTL".to_owned(),
            block: None,
            at: Instant::now(),
        });
        tracing::info!(app_id = %hex::encode(gone.app_id), instance = %hex::encode(&gone.instance_id), "registration expired");
    }
    let at = match g.chain.policy_block().await {
        Ok(at) => at,
        Err(e) => {
            g.metrics.policy_check("failed");
            tracing::warn!(error = %e, "policy block unavailable; routing continues until max_policy_age");
            return;
        }
    };
    if g.policy.last() == Some(at) {
        // Same block: every verdict still holds.
        g.policy.complete(at);
        g.metrics.policy_check("ok");
        return;
    }
    match self_check(g, at).await {
        Ok(()) => g.policy.set_self_denied(None),
        Err(SelfCheck::Unavailable(e)) => {
            g.metrics.policy_check("failed");
            tracing::warn!(error = %e, block = at.number, "self-check unavailable");
            return;
        }
        Err(SelfCheck::Denied(reason)) => {
            tracing::error!(%reason, block = at.number, "the gateway itself is not allowed: dropping every instance");
            g.policy.set_self_denied(Some(reason.clone()));
            for i in g.registry.all() {
                if g.registry.remove(&i.key).is_some() {
                    g.metrics.revoked("self_check");
                    record_revocation(g, &i, "revoked.self_check", &reason, at);
                }
            }
            g.policy.complete(at);
            g.metrics.policy_check("ok");
            return;
        }
    }
    let mut complete = true;
    let instances = g.registry.all();
    for chunk in instances.chunks(MAX_CONCURRENT_CHECKS) {
        let mut set = JoinSet::new();
        for i in chunk {
            let (g, i) = (Arc::clone(g), Arc::clone(i));
            set.spawn(async move {
                let verdict = g.chain.is_app_allowed(&i.boot(), at).await;
                (i, verdict)
            });
        }
        while let Some(joined) = set.join_next().await {
            let Ok((i, verdict)) = joined else {
                complete = false;
                continue;
            };
            match verdict {
                Ok(_) => i.allowed_at(at),
                Err(ChainError::Denied { check, reason }) => {
                    if g.registry.remove(&i.key).is_some() {
                        g.metrics.revoked(check.code());
                        let code = check.code().replacen("denied.", "revoked.", 1);
                        record_revocation(g, &i, &code, &reason, at);
                        tracing::warn!(app_id = %hex::encode(i.app_id), instance = %hex::encode(&i.instance_id), %check, %reason, block = at.number, "revoked: connections closed");
                    }
                }
                Err(e) => {
                    complete = false;
                    tracing::warn!(error = %e, app_id = %hex::encode(i.app_id), "policy check unavailable");
                }
            }
        }
    }
    if complete {
        g.policy.complete(at);
        g.metrics.policy_check("ok");
    } else {
        g.metrics.policy_check("failed");
    }
}

fn record_revocation(g: &Shared, i: &Instance, code: &str, reason: &str, at: PolicyBlock) {
    g.registry.record_denial(Denial {
        app_id: Some(i.app_id),
        instance_id: i.instance_id.clone(),
        code: code.to_owned(),
        reason: reason.to_owned(),
        block: Some(at),
        at: Instant::now(),
    });
}

/// Why the self-check did not pass.
pub(crate) enum SelfCheck {
    /// The chain could not be read: nothing changes (staleness decides).
    Unavailable(ChainError),
    /// The chain says this gateway must not serve.
    Denied(String),
}

/// The gateway itself at `at`: KmsAuth names its app id as the gateway, the KMS root
/// that issued its chain is the registered one, and `isAppAllowed` allows its own boot
/// info.
pub(crate) async fn self_check(g: &Shared, at: PolicyBlock) -> Result<(), SelfCheck> {
    let unavailable = SelfCheck::Unavailable;
    let ours = Address::from(g.identity.app_id);
    match g.chain.gateway_app_id(at).await.map_err(unavailable)? {
        Some(id) if id == ours => {}
        other => {
            return Err(SelfCheck::Denied(format!(
                "KmsAuth's gatewayAppId is {}, this gateway is {ours}",
                other.map_or_else(|| "unset".to_owned(), |a| a.to_string())
            )))
        }
    }
    match g.chain.root_keys(at).await.map_err(unavailable)? {
        Some(keys) if keys.ca_pubkey.as_ref() == g.identity.root.spki() => {}
        _ => {
            return Err(SelfCheck::Denied(
                "the KMS root CA that issued this gateway's certificate is not the one registered on chain".to_owned(),
            ))
        }
    }
    match g.chain.is_app_allowed(&g.identity.boot, at).await {
        Ok(_) => Ok(()),
        Err(ChainError::Denied { check, reason }) => Err(SelfCheck::Denied(format!(
            "isAppAllowed(this gateway): {check}: {reason}"
        ))),
        Err(e) => Err(SelfCheck::Unavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    use cairn_onchain::alloy::primitives::B256;

    use super::*;

    #[test]
    fn freshness_needs_a_complete_check_within_the_bound() {
        let p = PolicyState::default();
        assert!(!p.fresh(Duration::from_secs(3600)), "never checked: stale");
        assert_eq!(p.age_ms(), None);
        p.complete(PolicyBlock {
            number: 5,
            hash: B256::repeat_byte(5),
        });
        assert!(p.fresh(Duration::from_secs(3600)));
        assert_eq!(p.last().map(|b| b.number), Some(5));
        assert!(p.age_ms().is_some());
        p.set_self_denied(Some("revoked".into()));
        assert_eq!(p.self_denied().as_deref(), Some("revoked"));
    }
}
