//! [`MemoryLog`]: a KMS log held in memory, served as a [`LogSource`], that can lie.

use cairn_protocol::api::{
    ConsistencyProofResponse, Hash32, InclusionProofResponse, LogEntriesResponse, LogEntry,
};
use cairn_tlog::{Hash, MemoryTree};

use crate::audit::{LogSource, SourceError};

/// How a [`MemoryLog`] lies to the auditor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLie {
    /// It serves the log as it is.
    #[default]
    Honest,
    /// It flips a bit of the first hash of every non-empty proof.
    FlipProofs,
    /// It flips the last byte of the first entry of every non-empty answer (an entry
    /// other than the one logged).
    TamperEntries,
}

/// A KMS log held in memory: its entries and their tree. It has no signed checkpoint
/// (the caller signs one over [`MemoryLog::tree`] when a test needs it); `lie` says what
/// it serves instead of the truth.
#[derive(Clone, Debug, Default)]
pub struct MemoryLog {
    tree: MemoryTree,
    entries: Vec<Vec<u8>>,
    /// How it lies (from the next answer on).
    pub lie: LogLie,
}

impl MemoryLog {
    /// A log of `entries`, in order, that serves them as they are.
    pub fn new(entries: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut log = MemoryLog::default();
        for e in entries {
            log.push(e);
        }
        log
    }

    /// Appends `entry`; its index.
    pub fn push(&mut self, entry: Vec<u8>) -> u64 {
        self.entries.push(entry);
        self.tree
            .push(self.entries.last().map_or(&[][..], Vec::as_slice))
    }

    /// The log's tree (its size, roots and proofs).
    pub fn tree(&self) -> &MemoryTree {
        &self.tree
    }

    fn proof(&self, proof: cairn_tlog::Result<Vec<Hash>>) -> Result<Vec<Hash32>, SourceError> {
        let mut hashes: Vec<Hash32> = proof
            .map_err(|e| SourceError(e.to_string()))?
            .into_iter()
            .map(|h| Hash32(h.0))
            .collect();
        if let (LogLie::FlipProofs, Some(h)) = (self.lie, hashes.first_mut()) {
            h.0[0] ^= 1;
        }
        Ok(hashes)
    }
}

impl LogSource for MemoryLog {
    async fn checkpoint(&mut self) -> Result<String, SourceError> {
        Err(SourceError("a memory log has no checkpoint".into()))
    }

    async fn entries(&mut self, start: u64, end: u64) -> Result<LogEntriesResponse, SourceError> {
        let served = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.entries.get(s..e))
            .ok_or_else(|| SourceError(format!("no entries {start}..{end}")))?;
        let mut entries: Vec<LogEntry> = served.iter().cloned().map(LogEntry).collect();
        if self.lie == LogLie::TamperEntries {
            if let Some(last) = entries.first_mut().and_then(|e| e.0.last_mut()) {
                *last ^= 1;
            }
        }
        Ok(LogEntriesResponse { start, entries })
    }

    async fn inclusion_proof(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<InclusionProofResponse, SourceError> {
        let hashes = self.proof(self.tree.inclusion_proof(index, size))?;
        Ok(InclusionProofResponse {
            index,
            size,
            hashes,
        })
    }

    async fn consistency_proof(
        &mut self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProofResponse, SourceError> {
        let hashes = self.proof(self.tree.consistency_proof(first, second))?;
        Ok(ConsistencyProofResponse {
            first,
            second,
            hashes,
        })
    }
}
