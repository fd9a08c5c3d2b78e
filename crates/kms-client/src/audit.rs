//! [`KmsConnection`] as the auditing light client's [`LogSource`]: the KMS's public
//! `/v1/log/*` endpoints (no client certificate needed).
//!
//! What the log source returns is never trusted by the audit: checkpoints must be signed
//! by a node registered on chain and every entry is proved against them. The connection
//! only makes sure the answers come from a KMS whose evidence verified.

use cairn_onchain::{LogSource, SourceError};
use cairn_protocol::api::{
    CheckpointResponse, ConsistencyProofResponse, InclusionProofResponse, LogEntriesResponse,
    PATH_LOG_CHECKPOINT, PATH_LOG_CONSISTENCY, PATH_LOG_ENTRIES, PATH_LOG_INCLUSION,
};
use cairn_protocol::with_causes;
use serde::de::DeserializeOwned;

use crate::connection::KmsConnection;

impl KmsConnection {
    /// `GET path` for the audit: a failure becomes the audit's [`SourceError`], naming the
    /// path and the client error with its causes (the audit's error type carries text).
    async fn log_get<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, SourceError> {
        self.get(path)
            .await
            .map_err(|e| SourceError(format!("{path}: {}", with_causes(&e))))
    }
}

impl LogSource for KmsConnection {
    async fn checkpoint(&mut self) -> Result<String, SourceError> {
        let r: CheckpointResponse = self.log_get(PATH_LOG_CHECKPOINT).await?;
        Ok(r.checkpoint)
    }

    async fn entries(&mut self, start: u64, end: u64) -> Result<LogEntriesResponse, SourceError> {
        self.log_get(&format!("{PATH_LOG_ENTRIES}?start={start}&end={end}"))
            .await
    }

    async fn inclusion_proof(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<InclusionProofResponse, SourceError> {
        self.log_get(&format!("{PATH_LOG_INCLUSION}?index={index}&size={size}"))
            .await
    }

    async fn consistency_proof(
        &mut self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProofResponse, SourceError> {
        self.log_get(&format!(
            "{PATH_LOG_CONSISTENCY}?first={first}&second={second}"
        ))
        .await
    }
}
