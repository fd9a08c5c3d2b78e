//! [`ChainClient`]: pinned policy reads against one KmsAuth, agreed by an RPC quorum.

use std::future::Future;
use std::time::Duration;

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::eips::{BlockId, BlockNumberOrTag, RpcBlockHash};
use alloy::primitives::{keccak256, Address, Bytes, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;

use crate::bindings::{AppBootInfo, KmsAuth};
use crate::cache::{Cached, Key, Outcome, Query, VerdictCache};
use crate::config::ChainConfig;
use crate::connection::Connection;
use crate::error::{Error, Result, Target};
use crate::quorum::{Endpoint, Endpoints};

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

/// The key generations KmsAuth serves at one block: the current one, and the one before it
/// while a rotation's transition window is set (`KmsAuth.transitionWindow`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGenerations {
    /// The current generation and its root keys.
    pub current: RootKeys,
    /// The generation a rotation replaced, with its window (`None`: no rotation with a
    /// window happened, or `setKmsRootKeys` ended it).
    pub previous: Option<PreviousGeneration>,
}

impl KeyGenerations {
    /// The previous generation, only while its window is open at this block.
    pub fn active_previous(&self) -> Option<&PreviousGeneration> {
        self.previous.as_ref().filter(|p| p.active)
    }
}

/// The generation before the current one and its transition window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousGeneration {
    /// Its root keys (still registered: `rootKeys(generation)`).
    pub keys: RootKeys,
    /// End of its window, block timestamp (exclusive).
    pub valid_until: u64,
    /// Whether the window is open at the block read (`block.timestamp < valid_until`):
    /// judged by the chain, so an auditor re-running the read at the same block gets the
    /// same answer.
    pub active: bool,
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

/// A block's number, hash and timestamp (what an audit compares a release record with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Block timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
}

/// The chain head as the quorum sees it, and the block policy is pinned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Head {
    /// The head block number: the lowest head among the first `quorum` endpoints that
    /// answered (so at least `quorum` endpoints have reached it).
    pub number: u64,
    /// That head block's timestamp (seconds since the Unix epoch), as its endpoint
    /// reported it.
    pub timestamp: u64,
    /// `number − confirmations`, with the hash `quorum` endpoints agree on.
    pub pinned: PolicyBlock,
}

impl Head {
    /// How old the head is at `now` (seconds since the Unix epoch); a head from the
    /// future is 0 old.
    pub fn age(&self, now: u64) -> Duration {
        Duration::from_secs(now.saturating_sub(self.timestamp))
    }

    /// [`Error::StaleHead`] when the head is older than `max_age` at `now`.
    pub fn check_fresh(&self, now: u64, max_age: Duration) -> Result<()> {
        let age = self.age(now);
        if age > max_age {
            return Err(Error::StaleHead {
                number: self.number,
                age,
                max: max_age,
            });
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch by the system clock (0 before 1970, which fails every
/// validity window: fail closed). The one system clock of the services (`cairn-kms`
/// re-exports it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A client of one KMS cluster's KmsAuth over one or more RPC endpoints: pinned policy
/// reads agreed by a quorum of endpoints, KmsAuth administration, app handles, event
/// history.
///
/// Cheap to clone? No: it owns the read cache; share it behind an `Arc`.
#[derive(Debug)]
pub struct ChainClient {
    pub(crate) endpoints: Endpoints,
    kms_auth: Address,
    chain_id: u64,
    confirmations: u64,
    max_head_age: Duration,
    cache: VerdictCache,
}

impl ChainClient {
    /// Connects with `config`: validates it ([`ChainConfig::validate`]: TLS off
    /// loopback, quorum), connects every endpoint (each must answer with the configured
    /// chain id) and checks that KmsAuth has code. A `signer` is given to every endpoint
    /// (transactions go to the first healthy one).
    pub async fn connect(config: &ChainConfig, signer: Option<PrivateKeySigner>) -> Result<Self> {
        config.validate()?;
        let transport = config.transport();
        let conns = futures_util::future::try_join_all(config.rpc_urls.iter().map(|url| {
            Connection::connect_with(url.clone(), config.chain_id, &transport, signer.clone())
        }))
        .await?;
        Self::with_connections(
            conns,
            config.quorum,
            config.kms_auth,
            config.confirmations,
            config.verdict_cache_entries,
        )
        .await
        .map(|c| c.with_max_head_age(config.max_head_age))
    }

    /// Builds a client over an existing connection (quorum 1); checks that `kms_auth`
    /// has code.
    pub async fn with_connection(
        conn: Connection,
        kms_auth: Address,
        confirmations: u64,
        verdict_cache_entries: usize,
    ) -> Result<Self> {
        Self::with_connections(
            vec![conn],
            1,
            kms_auth,
            confirmations,
            verdict_cache_entries,
        )
        .await
    }

    /// Builds a client over existing connections (all to the same chain id) whose reads
    /// need `quorum` agreeing endpoints; checks that `kms_auth` has code.
    pub async fn with_connections(
        conns: Vec<Connection>,
        quorum: usize,
        kms_auth: Address,
        confirmations: u64,
        verdict_cache_entries: usize,
    ) -> Result<Self> {
        let chain_id = match conns.first() {
            Some(c) => c.chain_id(),
            None => return Err(Error::misconfigured("no RPC endpoints")),
        };
        if let Some(other) = conns.iter().find(|c| c.chain_id() != chain_id) {
            return Err(Error::ChainIdMismatch {
                expected: chain_id,
                actual: other.chain_id(),
            });
        }
        let endpoints = Endpoints::new(
            conns
                .into_iter()
                .map(|c| Endpoint::new(c, kms_auth))
                .collect(),
            quorum,
        )?;
        let has_code = endpoints
            .agree(
                || format!("eth_getCode({kms_auth})"),
                |ep| async move {
                    let code = ep
                        .conn
                        .rpc("eth_getCode", ep.conn.provider().get_code_at(kms_auth))
                        .await?;
                    Ok(!code.is_empty())
                },
            )
            .await?;
        if !has_code {
            return Err(Error::misconfigured(format!(
                "no contract code at KmsAuth address {kms_auth}"
            )));
        }
        Ok(Self {
            endpoints,
            kms_auth,
            chain_id,
            confirmations,
            max_head_age: crate::config::DEFAULT_MAX_HEAD_AGE,
            cache: VerdictCache::new(verdict_cache_entries),
        })
    }

    setters! {
        /// Sets the bound on the head's age that [`ChainClient::policy_block`] enforces.
        fn with_max_head_age(max_head_age: Duration);
    }

    /// The connection transactions and history queries use now (the first healthy
    /// endpoint).
    pub fn connection(&self) -> &Connection {
        &self.endpoints.primary().conn
    }

    /// Every endpoint's connection, in configured order.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.endpoints.all().iter().map(|e| &e.conn)
    }

    /// How many endpoints must agree on each read.
    pub fn quorum(&self) -> usize {
        self.endpoints.quorum()
    }

    /// How many reads so far ended in [`Error::ChainDisagreement`].
    pub fn disagreements(&self) -> u64 {
        self.endpoints.disagreements()
    }

    /// The checked chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The KmsAuth proxy address.
    pub fn kms_auth(&self) -> Address {
        self.kms_auth
    }

    /// How many reads the cache holds now.
    pub fn cached_verdicts(&self) -> usize {
        self.cache.len()
    }

    /// The configured number of confirmations.
    pub fn confirmations(&self) -> u64 {
        self.confirmations
    }

    /// The configured bound on the head's age.
    pub fn max_head_age(&self) -> Duration {
        self.max_head_age
    }

    /// The KmsAuth handle transactions are built on (the primary endpoint's).
    pub(crate) fn tx_kms(&self) -> &KmsAuth::KmsAuthInstance<DynProvider> {
        &self.endpoints.primary().kms
    }

    /// The block policy reads use now: `head − confirmations` (saturating at genesis),
    /// with the hash `quorum` endpoints agree on; [`Error::StaleHead`] when the head is
    /// older than the configured bound by the system clock.
    pub async fn policy_block(&self) -> Result<PolicyBlock> {
        let head = self.head().await?;
        head.check_fresh(unix_now(), self.max_head_age)?;
        Ok(head.pinned)
    }

    /// The head and the pinned block, without the freshness check (see [`Head`]).
    ///
    /// Every endpoint is asked for its latest header; the lowest head number among the
    /// first `quorum` answers is the head, so that many endpoints have reached it. Then
    /// the header at `head − confirmations` is asked of every endpoint and its hash must
    /// be the same from `quorum` of them ([`Error::ChainDisagreement`] otherwise).
    pub async fn head(&self) -> Result<Head> {
        let heads = self
            .endpoints
            .first_answers(
                || "the latest block".to_owned(),
                |ep| async move {
                    let header = ep
                        .conn
                        .rpc(
                            "eth_getBlockByNumber",
                            ep.conn
                                .provider()
                                .get_header_by_number(BlockNumberOrTag::Latest),
                        )
                        .await?
                        .ok_or_else(|| Error::Rpc {
                            op: "eth_getBlockByNumber",
                            code: 0,
                            message: "no latest block".into(),
                        })?;
                    Ok((header.number, header.timestamp))
                },
            )
            .await?;
        let Some(&(_, (number, timestamp))) = heads.iter().min_by_key(|(_, (n, _))| *n) else {
            return Err(Error::misconfigured("no RPC endpoints"));
        };
        let pinned = self
            .block_at(number.saturating_sub(self.confirmations))
            .await?;
        Ok(Head {
            number,
            timestamp,
            pinned,
        })
    }

    /// The timestamp (unix seconds) of the policy block `at` (chain time, which is what
    /// an AppAuth activation time is compared with), as `quorum` endpoints agree.
    pub async fn block_timestamp(&self, at: PolicyBlock) -> Result<u64> {
        self.endpoints
            .agree(
                || format!("the timestamp of block {}", at.number),
                |ep| async move {
                    ep.conn
                        .rpc(
                            "eth_getBlockByHash",
                            ep.conn.provider().get_header_by_hash(at.hash),
                        )
                        .await?
                        .map(|h| h.timestamp)
                        .ok_or_else(|| Error::Rpc {
                            op: "eth_getBlockByHash",
                            code: 0,
                            message: format!("block {} ({}) not found", at.number, at.hash),
                        })
                },
            )
            .await
    }

    /// The block at `number` with the hash `quorum` endpoints agree on (an endpoint that
    /// does not have it yet fails its vote).
    pub async fn block_at(&self, number: u64) -> Result<PolicyBlock> {
        self.endpoints
            .agree(
                || format!("the hash of block {number}"),
                |ep| async move {
                    header_at(&ep.conn, number)
                        .await?
                        .ok_or_else(|| Error::Rpc {
                            op: "eth_getBlockByNumber",
                            code: 0,
                            message: format!("block {number} not found"),
                        })
                },
            )
            .await
    }

    /// The block at `number` as `quorum` endpoints agree it is, or `None` when they
    /// agree it does not exist (auditing a recorded block).
    pub async fn find_block(&self, number: u64) -> Result<Option<PolicyBlock>> {
        let header = self.block_header(number).await?;
        Ok(header.map(|h| PolicyBlock {
            number: h.number,
            hash: h.hash,
        }))
    }

    /// The header of block `number` (hash and timestamp) as `quorum` endpoints agree it
    /// is, or `None` when they agree it does not exist.
    pub async fn block_header(&self, number: u64) -> Result<Option<BlockHeader>> {
        self.endpoints
            .agree(
                || format!("the header of block {number}"),
                |ep| block_header_of(&ep.conn, number),
            )
            .await
    }

    /// `KmsAuth.isAppAllowed(boot)` at `at`.
    ///
    /// `Ok(Verdict::Allowed)` only when `quorum` endpoints returned `true`; `(false,
    /// reason)` is [`Error::Denied`] with the exact reason; every RPC failure or
    /// disagreement is an error (fail closed).
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

    /// A cached read: the answer at `at` if cached, else `read` (agreed by the quorum),
    /// cached on success. Errors are never cached.
    async fn cached<T, F, Fut>(
        &self,
        query: Query,
        input: B256,
        at: PolicyBlock,
        read: F,
    ) -> Result<T>
    where
        T: Cached + Clone,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let key = Key {
            query,
            input,
            block: at.hash,
        };
        if let Some(hit) = self.cache.get(&key) {
            return T::from_outcome(hit).map_err(|other| cache_mixup(&other));
        }
        let value = read().await?;
        self.cache.insert(key, value.clone().into_outcome());
        Ok(value)
    }

    /// Whether the answer to `read` at `at` is in the cache (no RPC).
    pub(crate) fn is_cached(&self, read: &Read, at: PolicyBlock) -> bool {
        let (query, input) = read.key();
        self.cache
            .get(&Key {
                query,
                input,
                block: at.hash,
            })
            .is_some()
    }

    async fn verdict(&self, query: Query, boot: &BootInfo, at: PolicyBlock) -> Result<Verdict> {
        let outcome: Option<String> = self
            .cached(query, keccak256(boot.abi_encode()), at, || async {
                let (op, what) = match query {
                    Query::App => ("KmsAuth.isAppAllowed", "isAppAllowed"),
                    _ => ("KmsAuth.isKmsAllowed", "isKmsAllowed"),
                };
                let addr = self.kms_auth;
                let answer = self
                    .endpoints
                    .agree(
                        || format!("{what}(app {}) at block {}", boot.appId, at.number),
                        |ep| async move {
                            let (allowed, reason) = if query == Query::App {
                                let call = ep.kms.isAppAllowed(boot.clone()).block(at.block_id());
                                let r =
                                    ep.conn.view(op, Target::KmsAuth, addr, call.call()).await?;
                                (r.isAllowed, r.reason)
                            } else {
                                let call = ep.kms.isKmsAllowed(boot.clone()).block(at.block_id());
                                let r =
                                    ep.conn.view(op, Target::KmsAuth, addr, call.call()).await?;
                                (r.isAllowed, r.reason)
                            };
                            Ok(if allowed { None } else { Some(bounded(reason)) })
                        },
                    )
                    .await?;
                Ok(answer)
            })
            .await?;
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

    /// A view call of KmsAuth at `at`, agreed by the quorum. `make` builds the call on
    /// one endpoint's KmsAuth handle.
    async fn agreed_view<'a, D, F>(
        &'a self,
        op: &'static str,
        at: PolicyBlock,
        make: F,
    ) -> Result<D::CallOutput>
    where
        D: CallDecoder,
        D::CallOutput: PartialEq + std::fmt::Debug,
        F: Fn(&'a KmsAuth::KmsAuthInstance<DynProvider>) -> CallBuilder<&'a DynProvider, D>,
    {
        let addr = self.kms_auth;
        let make = &make;
        self.endpoints
            .agree(
                || format!("{op} at block {}", at.number),
                |ep| async move {
                    let builder = make(&ep.kms).block(at.block_id());
                    ep.conn
                        .view(op, Target::KmsAuth, addr, builder.call())
                        .await
                },
            )
            .await
    }

    /// The current KMS root keys at `at`, or `None` when no generation is set yet
    /// (`keyGeneration` and `rootKeys` read together, agreed by the quorum, cached per
    /// block).
    pub async fn root_keys(&self, at: PolicyBlock) -> Result<Option<RootKeys>> {
        let addr = self.kms_auth;
        let what = || format!("the KMS root keys at block {}", at.number);
        self.cached_agreed(Query::RootKeys, at, what, |ep| async move {
            match key_generation_on(ep, addr, at).await? {
                0 => Ok(None),
                generation => root_keys_on(ep, addr, generation, at).await.map(Some),
            }
        })
        .await
    }

    /// `ask` of every endpoint, agreed by the quorum, cached per block under `query`.
    async fn cached_agreed<'a, T, F, Fut>(
        &'a self,
        query: Query,
        at: PolicyBlock,
        what: impl Fn() -> String,
        ask: F,
    ) -> Result<T>
    where
        T: Cached + Clone + PartialEq + std::fmt::Debug,
        F: Fn(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.cached(query, B256::ZERO, at, || self.endpoints.agree(what, ask))
            .await
    }

    /// The key generations served at `at` (current, and previous with its transition
    /// window), or `None` when no generation is set: `keyGeneration`, `rootKeys`,
    /// `transitionWindow` read together, agreed by the quorum, cached per block.
    pub async fn key_generations(&self, at: PolicyBlock) -> Result<Option<KeyGenerations>> {
        let addr = self.kms_auth;
        let what = || format!("the KMS key generations at block {}", at.number);
        self.cached_agreed(Query::KeyGenerations, at, what, |ep| async move {
            let current = key_generation_on(ep, addr, at).await?;
            if current == 0 {
                return Ok(None);
            }
            let keys = |generation| root_keys_on(ep, addr, generation, at);
            let call = ep.kms.transitionWindow().block(at.block_id());
            let window = ep
                .conn
                .view(
                    "KmsAuth.transitionWindow",
                    Target::KmsAuth,
                    addr,
                    call.call(),
                )
                .await?;
            let previous = match window.previousGeneration {
                0 => None,
                p => Some(PreviousGeneration {
                    keys: keys(p).await?,
                    valid_until: window.validUntil,
                    active: window.active,
                }),
            };
            Ok(Some(KeyGenerations {
                current: keys(current).await?,
                previous,
            }))
        })
        .await
    }

    /// The current key generation at `at` (0 = none set).
    pub async fn key_generation(&self, at: PolicyBlock) -> Result<u32> {
        self.agreed_view("KmsAuth.keyGeneration", at, |kms| kms.keyGeneration())
            .await
    }

    /// The root keys of a given (possibly older) `generation` at `at`, or `None` when that
    /// generation was never set (e.g. for auditing releases made under it).
    pub async fn root_keys_of_generation(
        &self,
        generation: u32,
        at: PolicyBlock,
    ) -> Result<Option<RootKeys>> {
        let keys = self
            .agreed_view("KmsAuth.rootKeys", at, |kms| kms.rootKeys(generation))
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

    /// The gateway app id at `at`, or `None` when unset (cached per block).
    pub async fn gateway_app_id(&self, at: PolicyBlock) -> Result<Option<Address>> {
        self.cached(Query::GatewayAppId, B256::ZERO, at, || async {
            let id = self
                .agreed_view("KmsAuth.gatewayAppId", at, |kms| kms.gatewayAppId())
                .await?;
            Ok((!id.is_zero()).then_some(id))
        })
        .await
    }

    /// Whether `node` is a registered KMS node at `at` (cached per block).
    pub async fn is_kms_node(&self, node: Address, at: PolicyBlock) -> Result<bool> {
        let input = B256::left_padding_from(node.as_slice());
        self.cached(Query::KmsNode, input, at, || {
            self.agreed_view("KmsAuth.isKmsNode", at, |kms| kms.isKmsNode(node))
        })
        .await
    }

    /// The registered KMS node addresses at `at`.
    pub async fn kms_nodes(&self, at: PolicyBlock) -> Result<Vec<Address>> {
        self.agreed_view("KmsAuth.kmsNodes", at, |kms| kms.kmsNodes())
            .await
    }

    /// Whether `app_id` is registered at `at`.
    pub async fn is_app_registered(&self, app_id: Address, at: PolicyBlock) -> Result<bool> {
        self.agreed_view("KmsAuth.isAppRegistered", at, |kms| {
            kms.isAppRegistered(app_id)
        })
        .await
    }

    /// Whether the OS image hash is allowed at `at`.
    pub async fn is_os_image_allowed(&self, os_image_hash: B256, at: PolicyBlock) -> Result<bool> {
        self.agreed_view("KmsAuth.allowedOsImages", at, |kms| {
            kms.allowedOsImages(os_image_hash)
        })
        .await
    }

    /// `node`'s latest anchored checkpoint at `at`, or `None` if it never anchored.
    pub async fn latest_anchor(&self, node: Address, at: PolicyBlock) -> Result<Option<Anchor>> {
        let r = self
            .agreed_view("KmsAuth.latestAnchor", at, |kms| kms.latestAnchor(node))
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

    /// Runs `read` at `at` (through the cache), for [`PolicyHead`](crate::PolicyHead)'s
    /// refresh. Denials are answers, not failures: only errors are returned as errors.
    pub(crate) async fn refresh(&self, read: &Read, at: PolicyBlock) -> Result<()> {
        let r = match read {
            Read::AppAllowed(boot) => self.is_app_allowed(boot, at).await.map(drop),
            Read::KmsAllowed(boot) => self.is_kms_allowed(boot, at).await.map(drop),
            Read::RootKeys => self.root_keys(at).await.map(drop),
            Read::KeyGenerations => self.key_generations(at).await.map(drop),
            Read::IsKmsNode(node) => self.is_kms_node(*node, at).await.map(drop),
            Read::GatewayAppId => self.gateway_app_id(at).await.map(drop),
        };
        match r {
            Err(Error::Denied { .. }) => Ok(()),
            other => other,
        }
    }
}

/// One endpoint's header at `number` (`None`: it has no such block).
async fn header_at(conn: &Connection, number: u64) -> Result<Option<PolicyBlock>> {
    let header = block_header_of(conn, number).await?;
    Ok(header.map(|h| PolicyBlock {
        number: h.number,
        hash: h.hash,
    }))
}

/// One endpoint's header of block `number` (`None`: it has no such block); a header of
/// another number is an error.
async fn block_header_of(conn: &Connection, number: u64) -> Result<Option<BlockHeader>> {
    let header = conn
        .rpc(
            "eth_getBlockByNumber",
            conn.provider()
                .get_header_by_number(BlockNumberOrTag::Number(number)),
        )
        .await?;
    match header {
        None => Ok(None),
        Some(h) if h.number == number => Ok(Some(BlockHeader {
            number,
            hash: h.hash,
            timestamp: h.timestamp,
        })),
        Some(h) => Err(Error::Rpc {
            op: "eth_getBlockByNumber",
            code: 0,
            message: format!("asked for block {number}, got {}", h.number),
        }),
    }
}

/// A read a [`PolicyHead`](crate::PolicyHead) keeps answered at every new pinned block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Read {
    AppAllowed(BootInfo),
    KmsAllowed(BootInfo),
    RootKeys,
    KeyGenerations,
    IsKmsNode(Address),
    GatewayAppId,
}

impl Read {
    /// The cache key of this read (without the block).
    pub(crate) fn key(&self) -> (Query, B256) {
        match self {
            Read::AppAllowed(boot) => (Query::App, keccak256(boot.abi_encode())),
            Read::KmsAllowed(boot) => (Query::Kms, keccak256(boot.abi_encode())),
            Read::RootKeys => (Query::RootKeys, B256::ZERO),
            Read::KeyGenerations => (Query::KeyGenerations, B256::ZERO),
            Read::IsKmsNode(node) => (Query::KmsNode, B256::left_padding_from(node.as_slice())),
            Read::GatewayAppId => (Query::GatewayAppId, B256::ZERO),
        }
    }
}

/// `KmsAuth.keyGeneration` at `at` on one endpoint (0 = none set).
async fn key_generation_on(ep: &Endpoint, addr: Address, at: PolicyBlock) -> Result<u32> {
    let call = ep.kms.keyGeneration().block(at.block_id());
    ep.conn
        .view("KmsAuth.keyGeneration", Target::KmsAuth, addr, call.call())
        .await
}

/// `KmsAuth.rootKeys(generation)` at `at` on one endpoint.
async fn root_keys_on(
    ep: &Endpoint,
    addr: Address,
    generation: u32,
    at: PolicyBlock,
) -> Result<RootKeys> {
    let call = ep.kms.rootKeys(generation).block(at.block_id());
    let keys = ep
        .conn
        .view("KmsAuth.rootKeys", Target::KmsAuth, addr, call.call())
        .await?;
    Ok(RootKeys {
        generation,
        k256_pubkey: keys.k256Pubkey,
        ca_pubkey: keys.caPubkey,
    })
}

/// A cached answer of the wrong kind for its query: impossible by construction (the
/// query is part of the key); reported as an error rather than trusted.
#[cold]
fn cache_mixup(outcome: &Outcome) -> Error {
    Error::Contract {
        op: "read cache",
        message: format!("cached answer of the wrong kind: {outcome:?}"),
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
