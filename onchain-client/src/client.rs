//! [`ChainClient`]: pinned policy reads against one KmsAuth.

use alloy::eips::{BlockId, BlockNumberOrTag, RpcBlockHash};
use alloy::primitives::{keccak256, Address, Bytes, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;

use crate::bindings::{AppBootInfo, KmsAuth};
use crate::cache::{Key, Query, VerdictCache};
use crate::config::ChainConfig;
use crate::connection::Connection;
use crate::error::{Error, Result, Target};

/// The Rust mirror of `IAppAuth.AppBootInfo` (generated from the contract ABI).
pub type BootInfo = AppBootInfo;

/// Longest reason string kept from a contract; longer ones are cut at a char boundary.
/// The contracts bound their own reasons far below this; the cap bounds logs and caches
/// against a misbehaving RPC node.
pub const MAX_REASON_LEN: usize = 1024;

/// The block policy is read at: `head − confirmations`, identified by number and hash.
///
/// Reads use the hash (EIP-1898, `requireCanonical`), so a reorg that replaces the block
/// makes the read fail (retryable) instead of silently answering for another block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyBlock {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
}

impl PolicyBlock {
    /// The block id reads use: by hash, canonical required.
    pub fn block_id(&self) -> BlockId {
        BlockId::Hash(RpcBlockHash {
            block_hash: self.hash,
            require_canonical: Some(true),
        })
    }
}

/// A policy answer that allows. Denials are [`Error::Denied`].
///
/// Deliberately exhaustive: a caller's `match` must never route a new kind of answer
/// into a wildcard arm that releases keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The contracts allow the boot info at the policy block.
    Allowed,
}

/// The KMS root public keys registered on chain for one key generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootKeys {
    /// Key generation (≥ 1).
    pub generation: u32,
    /// Root k256 public key, 33-byte compressed SEC1.
    pub k256_pubkey: Bytes,
    /// Root CA public key, DER SubjectPublicKeyInfo.
    pub ca_pubkey: Bytes,
}

/// A node's latest anchored log checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Anchored tree size.
    pub tree_size: u64,
    /// Anchored root hash.
    pub root_hash: B256,
    /// Block in which it was anchored.
    pub block_number: u64,
}

/// A client of one KMS cluster's KmsAuth: pinned policy reads, KmsAuth administration,
/// app handles, event history.
///
/// Cheap to clone? No: it owns the verdict cache; share it behind an `Arc`.
#[derive(Debug)]
pub struct ChainClient {
    pub(crate) conn: Connection,
    pub(crate) kms: KmsAuth::KmsAuthInstance<DynProvider>,
    confirmations: u64,
    cache: VerdictCache,
}

impl ChainClient {
    /// Connects with `config`: checks the chain id and that KmsAuth has code.
    pub async fn connect(config: &ChainConfig, signer: Option<PrivateKeySigner>) -> Result<Self> {
        let conn = Connection::connect(
            config.rpc_url.clone(),
            config.chain_id,
            config.call_timeout,
            signer,
        )
        .await?;
        Self::with_connection(
            conn,
            config.kms_auth,
            config.confirmations,
            config.verdict_cache_entries,
        )
        .await
    }

    /// Builds a client over an existing connection; checks that `kms_auth` has code.
    pub async fn with_connection(
        conn: Connection,
        kms_auth: Address,
        confirmations: u64,
        verdict_cache_entries: usize,
    ) -> Result<Self> {
        let code = conn
            .rpc("eth_getCode", conn.provider().get_code_at(kms_auth))
            .await?;
        if code.is_empty() {
            return Err(Error::misconfigured(format!(
                "no contract code at KmsAuth address {kms_auth}"
            )));
        }
        let kms = KmsAuth::new(kms_auth, conn.provider().clone());
        Ok(Self {
            conn,
            kms,
            confirmations,
            cache: VerdictCache::new(verdict_cache_entries),
        })
    }

    /// The underlying connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The KmsAuth proxy address.
    pub fn kms_auth(&self) -> Address {
        *self.kms.address()
    }

    /// How many verdicts the cache holds now.
    pub fn cached_verdicts(&self) -> usize {
        self.cache.len()
    }

    /// The configured number of confirmations.
    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }

    /// The block policy reads use now: `head − confirmations` (saturating at genesis),
    /// with its hash.
    pub async fn policy_block(&self) -> Result<PolicyBlock> {
        let p = self.conn.provider();
        let head = self
            .conn
            .rpc("eth_blockNumber", p.get_block_number())
            .await?;
        let number = head.saturating_sub(self.confirmations);
        let header = self
            .conn
            .rpc(
                "eth_getBlockByNumber",
                p.get_header_by_number(BlockNumberOrTag::Number(number)),
            )
            .await?
            .ok_or_else(|| Error::Rpc {
                op: "eth_getBlockByNumber",
                code: 0,
                message: format!("block {number} not found"),
            })?;
        if header.number != number {
            return Err(Error::Rpc {
                op: "eth_getBlockByNumber",
                code: 0,
                message: format!("asked for block {number}, got {}", header.number),
            });
        }
        Ok(PolicyBlock {
            number,
            hash: header.hash,
        })
    }

    /// The timestamp (unix seconds) of the policy block `at` (chain time, which is what
    /// an AppAuth activation time is compared with).
    pub async fn block_timestamp(&self, at: PolicyBlock) -> Result<u64> {
        let header = self
            .conn
            .rpc(
                "eth_getBlockByHash",
                self.conn.provider().get_header_by_hash(at.hash),
            )
            .await?
            .ok_or_else(|| Error::Rpc {
                op: "eth_getBlockByHash",
                code: 0,
                message: format!("block {} ({}) not found", at.number, at.hash),
            })?;
        Ok(header.timestamp)
    }

    /// `KmsAuth.isAppAllowed(boot)` at `at`.
    ///
    /// `Ok(Verdict::Allowed)` only when the contract returned `true`; `(false, reason)` is
    /// [`Error::Denied`] with the exact reason; every RPC failure is an error (fail closed).
    #[tracing::instrument(level = "debug", skip_all, fields(app_id = %boot.appId, block = at.number))]
    pub async fn is_app_allowed(&self, boot: &BootInfo, at: PolicyBlock) -> Result<Verdict> {
        self.verdict(Query::App, boot, at).await
    }

    /// `KmsAuth.isKmsAllowed(boot)` at `at` (for KMS nodes themselves); same contract as
    /// [`ChainClient::is_app_allowed`].
    #[tracing::instrument(level = "debug", skip_all, fields(app_id = %boot.appId, block = at.number))]
    pub async fn is_kms_allowed(&self, boot: &BootInfo, at: PolicyBlock) -> Result<Verdict> {
        self.verdict(Query::Kms, boot, at).await
    }

    async fn verdict(&self, query: Query, boot: &BootInfo, at: PolicyBlock) -> Result<Verdict> {
        let key = Key {
            query,
            input: keccak256(boot.abi_encode()),
            block: at.hash,
        };
        let outcome = match self.cache.get(&key) {
            Some(outcome) => outcome,
            None => {
                let addr = self.kms_auth();
                let ret = match query {
                    Query::App => {
                        let call = self.kms.isAppAllowed(boot.clone()).block(at.block_id());
                        let r = self
                            .conn
                            .view("KmsAuth.isAppAllowed", Target::KmsAuth, addr, call.call())
                            .await?;
                        (r.isAllowed, r.reason)
                    }
                    Query::Kms => {
                        let call = self.kms.isKmsAllowed(boot.clone()).block(at.block_id());
                        let r = self
                            .conn
                            .view("KmsAuth.isKmsAllowed", Target::KmsAuth, addr, call.call())
                            .await?;
                        (r.isAllowed, r.reason)
                    }
                };
                let outcome = match ret {
                    (true, _) => None,
                    (false, reason) => Some(bounded(reason)),
                };
                self.cache.insert(key, outcome.clone());
                outcome
            }
        };
        match outcome {
            None => {
                tracing::debug!(?query, block = at.number, "policy allows");
                Ok(Verdict::Allowed)
            }
            Some(reason) => {
                tracing::debug!(?query, block = at.number, %reason, "policy denies");
                Err(Error::denied(reason))
            }
        }
    }

    /// The current KMS root keys at `at`, or `None` when no generation is set yet.
    pub async fn root_keys(&self, at: PolicyBlock) -> Result<Option<RootKeys>> {
        let addr = self.kms_auth();
        let generation = self
            .conn
            .view(
                "KmsAuth.keyGeneration",
                Target::KmsAuth,
                addr,
                self.kms.keyGeneration().block(at.block_id()).call(),
            )
            .await?;
        if generation == 0 {
            return Ok(None);
        }
        let keys = self
            .conn
            .view(
                "KmsAuth.rootKeys",
                Target::KmsAuth,
                addr,
                self.kms.rootKeys(generation).block(at.block_id()).call(),
            )
            .await?;
        Ok(Some(RootKeys {
            generation,
            k256_pubkey: keys.k256Pubkey,
            ca_pubkey: keys.caPubkey,
        }))
    }

    /// The current key generation at `at` (0 = none set).
    pub async fn key_generation(&self, at: PolicyBlock) -> Result<u32> {
        let call = self.kms.keyGeneration().block(at.block_id());
        self.conn
            .view(
                "KmsAuth.keyGeneration",
                Target::KmsAuth,
                self.kms_auth(),
                call.call(),
            )
            .await
    }

    /// The root keys of a given (possibly older) `generation` at `at`, or `None` when that
    /// generation was never set (e.g. for auditing releases made under it).
    pub async fn root_keys_of_generation(
        &self,
        generation: u32,
        at: PolicyBlock,
    ) -> Result<Option<RootKeys>> {
        let call = self.kms.rootKeys(generation).block(at.block_id());
        let keys = self
            .conn
            .view(
                "KmsAuth.rootKeys",
                Target::KmsAuth,
                self.kms_auth(),
                call.call(),
            )
            .await?;
        if keys.k256Pubkey.is_empty() {
            return Ok(None);
        }
        Ok(Some(RootKeys {
            generation,
            k256_pubkey: keys.k256Pubkey,
            ca_pubkey: keys.caPubkey,
        }))
    }

    /// The gateway app id at `at`, or `None` when unset.
    pub async fn gateway_app_id(&self, at: PolicyBlock) -> Result<Option<Address>> {
        let call = self.kms.gatewayAppId().block(at.block_id());
        let id = self
            .conn
            .view(
                "KmsAuth.gatewayAppId",
                Target::KmsAuth,
                self.kms_auth(),
                call.call(),
            )
            .await?;
        Ok((!id.is_zero()).then_some(id))
    }

    /// Whether `node` is a registered KMS node at `at`.
    pub async fn is_kms_node(&self, node: Address, at: PolicyBlock) -> Result<bool> {
        let call = self.kms.isKmsNode(node).block(at.block_id());
        self.conn
            .view(
                "KmsAuth.isKmsNode",
                Target::KmsAuth,
                self.kms_auth(),
                call.call(),
            )
            .await
    }

    /// The registered KMS node addresses at `at`.
    pub async fn kms_nodes(&self, at: PolicyBlock) -> Result<Vec<Address>> {
        let call = self.kms.kmsNodes().block(at.block_id());
        self.conn
            .view(
                "KmsAuth.kmsNodes",
                Target::KmsAuth,
                self.kms_auth(),
                call.call(),
            )
            .await
    }

    /// Whether `app_id` is registered at `at`.
    pub async fn is_app_registered(&self, app_id: Address, at: PolicyBlock) -> Result<bool> {
        let call = self.kms.isAppRegistered(app_id).block(at.block_id());
        self.conn
            .view(
                "KmsAuth.isAppRegistered",
                Target::KmsAuth,
                self.kms_auth(),
                call.call(),
            )
            .await
    }

    /// Whether the OS image hash is allowed at `at`.
    pub async fn is_os_image_allowed(&self, os_image_hash: B256, at: PolicyBlock) -> Result<bool> {
        let call = self.kms.allowedOsImages(os_image_hash).block(at.block_id());
        self.conn
            .view(
                "KmsAuth.allowedOsImages",
                Target::KmsAuth,
                self.kms_auth(),
                call.call(),
            )
            .await
    }

    /// `node`'s latest anchored checkpoint at `at`, or `None` if it never anchored.
    pub async fn latest_anchor(&self, node: Address, at: PolicyBlock) -> Result<Option<Anchor>> {
        let call = self.kms.latestAnchor(node).block(at.block_id());
        let r = self
            .conn
            .view(
                "KmsAuth.latestAnchor",
                Target::KmsAuth,
                self.kms_auth(),
                call.call(),
            )
            .await?;
        if r.blockNumber == 0 {
            return Ok(None);
        }
        Ok(Some(Anchor {
            tree_size: r.treeSize,
            root_hash: r.rootHash,
            block_number: r.blockNumber,
        }))
    }
}

fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_REASON_LEN);
        let cut = bounded(long);
        assert!(cut.len() <= MAX_REASON_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded("Device not allowed".into()), "Device not allowed");
    }
}
