//! The release record: what one log entry says about one key release,
//! ABI-encoded so a contract can `abi.decode` it (DESIGN.md §6).

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolValue;

use crate::error::EntryError;

/// The record version this code writes and the only one it reads.
pub const RECORD_VERSION: u8 = 1;
/// Largest encoded record [`ReleaseRecord::decode`] accepts, in bytes.
pub const MAX_RECORD_LEN: usize = 1024;
/// Longest TCB status string, in bytes.
pub const MAX_TCB_STATUS_LEN: usize = 64;

mod abi {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        /// ABI layout of a version-1 release record; `abi.encode(record)`.
        struct ReleaseRecordV1 {
            uint8 version;
            uint8 kind;
            address appId;
            bytes32 composeHash;
            address instanceId;
            bytes32 deviceId;
            bytes32 osImageHash;
            bytes32 mrAggregated;
            string tcbStatus;
            uint32 keyGeneration;
            uint64 chainId;
            uint64 policyBlockNumber;
            bytes32 policyBlockHash;
            bytes32 quoteHash;
            bytes32 clientKeyHash;
            address kmsNode;
            uint64 timestamp;
        }
    }
}

/// What kind of release a record logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReleaseKind {
    /// Application keys (`POST /v1/app-key`).
    AppKey = 0,
    /// A certificate signed by the app CA (`sign-cert`).
    SignCert = 1,
    /// Root secrets sent to a new KMS node (`onboard`).
    KmsOnboard = 2,
}

impl TryFrom<u8> for ReleaseKind {
    type Error = EntryError;

    fn try_from(kind: u8) -> Result<Self, EntryError> {
        match kind {
            0 => Ok(ReleaseKind::AppKey),
            1 => Ok(ReleaseKind::SignCert),
            2 => Ok(ReleaseKind::KmsOnboard),
            _ => Err(EntryError::UnknownKind { kind }),
        }
    }
}

/// One key release, as logged (version 1). Field order is the ABI order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// What was released.
    pub kind: ReleaseKind,
    /// The app (its AppAuth address).
    pub app_id: Address,
    /// SHA-256 of `app-compose.json`.
    pub compose_hash: B256,
    /// The CVM instance (zero when the app has none).
    pub instance_id: Address,
    /// SHA-256 of the PPID of the machine.
    pub device_id: B256,
    /// SHA-256 of the OS image measurement manifest.
    pub os_image_hash: B256,
    /// SHA-256(MRTD ‖ RTMR0..3).
    pub mr_aggregated: B256,
    /// The TCB status of the quote (e.g. `UpToDate`); ≤ 64 bytes.
    pub tcb_status: String,
    /// The KMS key generation used.
    pub key_generation: u32,
    /// Chain id of the policy chain.
    pub chain_id: u64,
    /// Block at which the policy was read.
    pub policy_block_number: u64,
    /// Hash of that block.
    pub policy_block_hash: B256,
    /// SHA-256 of the quote.
    pub quote_hash: B256,
    /// SHA-256 of the client certificate's public key (SPKI DER).
    pub client_key_hash: B256,
    /// Address of the KMS node that released.
    pub kms_node: Address,
    /// Unix time of the release, seconds.
    pub timestamp: u64,
}

impl ReleaseRecord {
    /// `abi.encode(ReleaseRecordV1{version: 1, ...})`.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        if self.tcb_status.len() > MAX_TCB_STATUS_LEN {
            return Err(EntryError::TcbStatusTooLong {
                len: self.tcb_status.len(),
                max: MAX_TCB_STATUS_LEN,
            });
        }
        Ok(abi::ReleaseRecordV1 {
            version: RECORD_VERSION,
            kind: self.kind as u8,
            appId: self.app_id,
            composeHash: self.compose_hash,
            instanceId: self.instance_id,
            deviceId: self.device_id,
            osImageHash: self.os_image_hash,
            mrAggregated: self.mr_aggregated,
            tcbStatus: self.tcb_status.clone(),
            keyGeneration: self.key_generation,
            chainId: self.chain_id,
            policyBlockNumber: self.policy_block_number,
            policyBlockHash: self.policy_block_hash,
            quoteHash: self.quote_hash,
            clientKeyHash: self.client_key_hash,
            kmsNode: self.kms_node,
            timestamp: self.timestamp,
        }
        .abi_encode())
    }

    /// Decodes a record, accepting only the canonical version-1 encoding.
    ///
    /// In order: size cap, version word (the second 32-byte word, after the
    /// tuple offset), strict ABI decode, byte-for-byte re-encoding (rejects
    /// trailing bytes and any non-canonical form), kind, TCB status length.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(EntryError::TooLong {
                len: bytes.len(),
                max: MAX_RECORD_LEN,
            });
        }
        let word = bytes.get(32..64).ok_or(EntryError::Truncated)?;
        let version = if word[..31].iter().all(|b| *b == 0) {
            word[31]
        } else {
            u8::MAX
        };
        if version != RECORD_VERSION {
            return Err(EntryError::UnsupportedVersion { version });
        }
        let r = abi::ReleaseRecordV1::abi_decode_validate(bytes)?;
        if r.abi_encode() != bytes {
            return Err(EntryError::NonCanonical);
        }
        let kind = ReleaseKind::try_from(r.kind)?;
        if r.tcbStatus.len() > MAX_TCB_STATUS_LEN {
            return Err(EntryError::TcbStatusTooLong {
                len: r.tcbStatus.len(),
                max: MAX_TCB_STATUS_LEN,
            });
        }
        Ok(ReleaseRecord {
            kind,
            app_id: r.appId,
            compose_hash: r.composeHash,
            instance_id: r.instanceId,
            device_id: r.deviceId,
            os_image_hash: r.osImageHash,
            mr_aggregated: r.mrAggregated,
            tcb_status: r.tcbStatus,
            key_generation: r.keyGeneration,
            chain_id: r.chainId,
            policy_block_number: r.policyBlockNumber,
            policy_block_hash: r.policyBlockHash,
            quote_hash: r.quoteHash,
            client_key_hash: r.clientKeyHash,
            kms_node: r.kmsNode,
            timestamp: r.timestamp,
        })
    }
}
