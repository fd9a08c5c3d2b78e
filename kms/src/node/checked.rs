//! [`Checked`]: a boot info together with the block at which the chain allowed it.
//!
//! Only [`Checked::allowed`] makes one, and only after `KmsAuth.isAppAllowed` (or
//! `isKmsAllowed` for onboarding and its receipt) allowed that very `BootInfo` value; a release record
//! is built only from a `Checked` ([`Checked::record`]), so the log records exactly
//! what the chain judged, at the block it judged it (docs/tlog.md §4.1). The bounds a
//! record puts on the strings (TCB status, advisory ids) are checked before the chain
//! is asked, so an allowed release can always be logged.

use cairn_onchain::alloy::primitives::{Address, B256};
use cairn_onchain::{recorded_boot_info, BootInfo, ChainClient, HeadView, PolicyBlock};
use cairn_tlog::{EntryError, RecordVersion, ReleaseKind, ReleaseRecord};

use crate::error::{Error, Result};
use crate::evidence::Attested;
use crate::reject::{ApiError, Check};

/// A boot info the chain allowed for a release of `kind` at `at`.
#[derive(Debug)]
pub(crate) struct Checked {
    kind: ReleaseKind,
    boot: BootInfo,
    at: PolicyBlock,
}

/// Where step 3 asks the chain.
pub(crate) enum Policy<'a, 'v> {
    /// The node's policy head (the release path), at the view's block.
    View(&'a HeadView<'v>),
    /// A client at a given block (onboarding, before the node has a head).
    Block(&'a ChainClient, PolicyBlock),
}

/// Why [`Checked::allowed`] made no `Checked`.
#[derive(Debug)]
pub(crate) enum CheckError {
    /// The boot info exceeds what a release record holds; the chain was not asked.
    Unloggable(EntryError),
    /// The chain denied, or could not be read.
    Chain(cairn_onchain::Error),
}

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Unloggable(e) => ApiError::denied(
                Check::Quote,
                format!("the quote's TCB report cannot be logged: {e}"),
            ),
            CheckError::Chain(e) => e.into(),
        }
    }
}

impl From<CheckError> for Error {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Unloggable(e) => Error::Log(e.into()),
            CheckError::Chain(e) => Error::Chain(e),
        }
    }
}

impl Checked {
    /// Step 3: asks `policy` about `boot` for a release of `kind`; an allow gives the
    /// `Checked` holding that same value and the block it was judged at.
    pub(crate) async fn allowed(
        policy: Policy<'_, '_>,
        kind: ReleaseKind,
        boot: BootInfo,
    ) -> std::result::Result<Self, CheckError> {
        recorded_boot_info(&boot)
            .validate()
            .map_err(CheckError::Unloggable)?;
        let onboard = kind.is_kms_policy();
        let at = match policy {
            Policy::View(view) => {
                if onboard {
                    view.is_kms_allowed(&boot).await
                } else {
                    view.is_app_allowed(&boot).await
                }
                .map_err(CheckError::Chain)?;
                view.block()
            }
            Policy::Block(chain, at) => {
                if onboard {
                    chain.is_kms_allowed(&boot, at).await
                } else {
                    chain.is_app_allowed(&boot, at).await
                }
                .map_err(CheckError::Chain)?;
                at
            }
        };
        Ok(Checked { kind, boot, at })
    }

    /// The block the chain allowed at.
    pub(crate) fn at(&self) -> PolicyBlock {
        self.at
    }

    /// The version-2 log record of this release to the holder of `evidence` (whose
    /// quote and certificate key hashes it records), by `node` of key `generation` on
    /// `chain_id`, at `timestamp` (seconds since the Unix epoch, the node's clock).
    pub(crate) fn record(
        &self,
        evidence: &Attested,
        generation: u64,
        chain_id: u64,
        node: [u8; 20],
        timestamp: u64,
    ) -> Result<ReleaseRecord> {
        let key_generation =
            u32::try_from(generation).map_err(|_| Error::KeyGenerationTooLarge { generation })?;
        Ok(ReleaseRecord {
            version: RecordVersion::V2,
            kind: self.kind,
            boot: recorded_boot_info(&self.boot),
            key_generation,
            chain_id,
            policy_block_number: self.at.number,
            policy_block_hash: self.at.hash,
            quote_hash: B256::from(evidence.quote_hash),
            client_key_hash: B256::from(evidence.client_key_hash),
            kms_node: Address::from(node),
            timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use cairn_onchain::alloy::signers::local::PrivateKeySigner;
    use cairn_onchain::testing::spawn_anvil;
    use cairn_onchain::Connection;
    use cairn_tlog::{MAX_ADVISORY_IDS, MAX_ADVISORY_ID_LEN};

    use super::*;

    fn boot(advisory_ids: Vec<String>) -> BootInfo {
        BootInfo {
            appId: Address::repeat_byte(1),
            composeHash: B256::repeat_byte(2),
            instanceId: Address::ZERO,
            deviceId: B256::repeat_byte(3),
            mrAggregated: B256::repeat_byte(4),
            mrSystem: B256::repeat_byte(5),
            osImageHash: B256::repeat_byte(6),
            tcbStatus: "UpToDate".into(),
            advisoryIds: advisory_ids,
        }
    }

    /// A boot info no record could hold is refused before the chain is asked: with the
    /// chain gone, a loggable one fails on the chain, an unloggable one on its bounds.
    #[tokio::test]
    async fn an_unloggable_boot_info_is_denied_before_the_chain_is_asked() {
        let mut anvil = spawn_anvil(Path::new(env!("CARGO_MANIFEST_DIR")));
        let signer = PrivateKeySigner::from(anvil.keys()[0].clone());
        let conn = Connection::connect(
            anvil.endpoint_url(),
            anvil.chain_id(),
            Duration::from_secs(5),
            Some(signer),
        )
        .await
        .unwrap();
        let owner = conn.sender().unwrap();
        let deployment = conn.deploy_system(owner).await.unwrap();
        let chain = ChainClient::with_connection(conn, deployment.kms_auth, 0, 0)
            .await
            .unwrap();
        let at = chain.policy_block().await.unwrap();
        let _ = anvil.child_mut().kill();
        let _ = anvil.child_mut().wait();

        // (case, advisory ids, kind, the error it must get)
        type Expect = fn(&CheckError) -> bool;
        let cases: [(&str, Vec<String>, ReleaseKind, Expect); 3] = [
            (
                "too many advisory ids",
                vec!["INTEL-SA-00001".into(); MAX_ADVISORY_IDS + 1],
                ReleaseKind::AppKey,
                |e| {
                    matches!(
                        e,
                        CheckError::Unloggable(EntryError::TooManyAdvisoryIds { .. })
                    )
                },
            ),
            (
                "an advisory id too long",
                vec!["x".repeat(MAX_ADVISORY_ID_LEN + 1)],
                ReleaseKind::KmsOnboard,
                |e| {
                    matches!(
                        e,
                        CheckError::Unloggable(EntryError::AdvisoryIdTooLong { .. })
                    )
                },
            ),
            (
                "the most advisory ids a record holds",
                vec!["INTEL-SA-00001".into(); MAX_ADVISORY_IDS],
                ReleaseKind::AppKey,
                |e| matches!(e, CheckError::Chain(_)),
            ),
        ];
        for (case, ids, kind, expected) in cases {
            let err = Checked::allowed(Policy::Block(&chain, at), kind, boot(ids))
                .await
                .unwrap_err();
            assert!(expected(&err), "{case}: {err:?}");
            if matches!(err, CheckError::Unloggable(_)) {
                // An unloggable boot info is a quote denial to the client.
                assert!(
                    matches!(
                        ApiError::from(err),
                        ApiError::Denied {
                            check: Check::Quote,
                            ..
                        }
                    ),
                    "{case}"
                );
            }
        }
    }
}
