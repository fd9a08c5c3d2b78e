//! Where the audit reads KMS logs: [`LogSource`] (one node's log) and [`LogSources`]
//! (the log of each node of a cluster). Nothing a source returns is trusted; every
//! answer is bounded by the wire types and checked against the chain.

use std::collections::HashMap;
use std::future::Future;

use alloy::primitives::Address;
use cairn_protocol::api::{
    ConsistencyProofResponse, Hash32, InclusionProofResponse, LogEntriesResponse, MAX_PROOF_HASHES,
};
use cairn_tlog::Hash;

/// A source failed to answer (transport, status or body). Carries a description only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log source: {0}")]
pub struct SourceError(pub String);

/// Where the auditor reads a node's log: the KMS's public `/v1/log/*` endpoints, or
/// anything serving the same wire types. Nothing it returns is trusted.
pub trait LogSource {
    /// The node's current signed checkpoint (C2SP signed note text).
    fn checkpoint(&mut self) -> impl Future<Output = Result<String, SourceError>> + Send;
    /// Entries `start..end` (a source may return fewer, never more).
    fn entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<LogEntriesResponse, SourceError>> + Send;
    /// Inclusion proof of leaf `index` in the tree of size `size`.
    fn inclusion_proof(
        &mut self,
        index: u64,
        size: u64,
    ) -> impl Future<Output = Result<InclusionProofResponse, SourceError>> + Send;
    /// Consistency proof from size `first` to size `second`.
    fn consistency_proof(
        &mut self,
        first: u64,
        second: u64,
    ) -> impl Future<Output = Result<ConsistencyProofResponse, SourceError>> + Send;
}

/// The log of each KMS node of a cluster, by node address (its log signer). KmsAuth
/// names the nodes but not where they serve; the caller connects to each (e.g. with
/// `cairn-kms-client`, whose `KmsConnection` is a [`LogSource`]) and says which address
/// each one is.
pub trait LogSources {
    /// The per-node source.
    type Source: LogSource + Send;
    /// The source of `node`'s log, if the caller has one (a node without one is a
    /// `NoSource` finding: its releases could not be audited).
    fn source(&mut self, node: Address) -> Option<&mut Self::Source>;
}

impl<S: LogSource + Send> LogSources for HashMap<Address, S> {
    type Source = S;
    fn source(&mut self, node: Address) -> Option<&mut S> {
        self.get_mut(&node)
    }
}

/// One node's source, for auditing that node alone.
pub(crate) struct Single<'a, S> {
    pub(crate) node: Address,
    pub(crate) source: &'a mut S,
}

impl<S: LogSource + Send> LogSources for Single<'_, S> {
    type Source = S;
    fn source(&mut self, node: Address) -> Option<&mut S> {
        (node == self.node).then_some(&mut *self.source)
    }
}

/// A served proof's hashes, refused before use when longer than any honest proof.
pub(crate) fn hashes(v: &[Hash32]) -> Result<Vec<Hash>, String> {
    if v.len() > MAX_PROOF_HASHES {
        return Err(format!("proof has {} hashes", v.len()));
    }
    Ok(v.iter().map(|h| Hash(h.0)).collect())
}
