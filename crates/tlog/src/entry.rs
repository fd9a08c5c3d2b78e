//! The release record: what one log entry says about one key release,
//! ABI-encoded so a contract can `abi.decode` it (DESIGN.md §6, docs/tlog.md §4).
//!
//! Version 2 (written) records the whole `IAppAuth.AppBootInfo` the KMS judged, so an
//! auditor re-runs exactly the `eth_call` the KMS made; version 1 (read only) lacks
//! `mrSystem` and the advisory ids.

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolValue;

use crate::error::EntryError;

/// The record version this code writes.
pub const RECORD_VERSION: u8 = 2;
/// The first record version, still read (docs/tlog.md §4.2).
pub const RECORD_VERSION_V1: u8 = 1;
/// Longest TCB status string, in bytes.
pub const MAX_TCB_STATUS_LEN: usize = 64;
/// Most advisory ids one record carries.
pub const MAX_ADVISORY_IDS: usize = 64;
/// Longest advisory id, in bytes (Intel's are like `INTEL-SA-00837`).
pub const MAX_ADVISORY_ID_LEN: usize = 64;
/// Largest encoded version-1 record, in bytes (its only dynamic field is the TCB status).
pub const MAX_RECORD_V1_LEN: usize = 1024;
/// Largest encoded record [`ReleaseRecord::decode`] accepts, in bytes: a version-2
/// record with a [`MAX_TCB_STATUS_LEN`] status and [`MAX_ADVISORY_IDS`] ids of
/// [`MAX_ADVISORY_ID_LEN`] bytes each (8992 bytes).
pub const MAX_RECORD_LEN: usize = 32
    * (1 // tuple offset
        + 11 // record head
        + 9 // boot info head
        + 1 + MAX_TCB_STATUS_LEN.div_ceil(32) // tcbStatus
        + 1 // advisoryIds length
        + MAX_ADVISORY_IDS * (1 + 1 + MAX_ADVISORY_ID_LEN.div_ceil(32))); // offset, length, bytes

mod abi {
    #![allow(missing_docs)]
    alloy_sol_types::sol! {
        /// `IAppAuth.AppBootInfo`, field for field.
        struct AppBootInfo {
            address appId;
            bytes32 composeHash;
            address instanceId;
            bytes32 deviceId;
            bytes32 mrAggregated;
            bytes32 mrSystem;
            bytes32 osImageHash;
            string tcbStatus;
            string[] advisoryIds;
        }

        /// The fields after the boot info, the same in both versions. Every field is
        /// static, so the tuple is encoded in place: `abi.encode` of a record is the same
        /// as with these fields written out flat.
        struct ReleaseTail {
            uint32 keyGeneration;
            uint64 chainId;
            uint64 policyBlockNumber;
            bytes32 policyBlockHash;
            bytes32 quoteHash;
            bytes32 clientKeyHash;
            address kmsNode;
            uint64 timestamp;
        }

        /// ABI layout of a version-2 release record; `abi.encode(record)`.
        struct ReleaseRecordV2 {
            uint8 version;
            uint8 kind;
            AppBootInfo boot;
            ReleaseTail tail;
        }

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
            ReleaseTail tail;
        }
    }
}

/// Strict ABI decoding that also rejects any bytes `abi.encode` of the result would not
/// give back (trailing bytes, dirty padding, non-canonical offsets).
fn decode_canonical<T: SolValue + From<<T::SolType as alloy_sol_types::SolType>::RustType>>(
    bytes: &[u8],
) -> Result<T, EntryError> {
    let r = T::abi_decode_validate(bytes)?;
    if r.abi_encode() != bytes {
        return Err(EntryError::NonCanonical);
    }
    Ok(r)
}

/// What kind of release a record logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReleaseKind {
    /// Application keys (`POST /v1/app-key`).
    AppKey = 0,
    /// A certificate signed by the app CA (`sign-cert`).
    SignCert = 1,
    /// Root secrets sent to a new KMS node (`onboard`), logged by the sending node.
    KmsOnboard = 2,
    /// The receiving node's own record that it received a key generation from a node
    /// whose boot info the record holds, judged an allowed KMS (`isKmsAllowed`) at the
    /// policy block; the logging node released nothing.
    KmsOnboardReceipt = 3,
}

impl ReleaseKind {
    /// The kind's name in docs/tlog.md (`app-key`, `sign-cert`, `kms-onboard`,
    /// `kms-onboard-receipt`).
    pub const fn name(self) -> &'static str {
        match self {
            ReleaseKind::AppKey => "app-key",
            ReleaseKind::SignCert => "sign-cert",
            ReleaseKind::KmsOnboard => "kms-onboard",
            ReleaseKind::KmsOnboardReceipt => "kms-onboard-receipt",
        }
    }

    /// Whether the record's boot info is a KMS node's, judged by `KmsAuth.isKmsAllowed`
    /// (otherwise an app's, judged by `isAppAllowed`).
    pub const fn is_kms_policy(self) -> bool {
        match self {
            ReleaseKind::KmsOnboard | ReleaseKind::KmsOnboardReceipt => true,
            ReleaseKind::AppKey | ReleaseKind::SignCert => false,
        }
    }

    /// Whether the logging node released something (a key, a certificate or the root
    /// secret); a [`ReleaseKind::KmsOnboardReceipt`] records what the node received.
    pub const fn is_release(self) -> bool {
        match self {
            ReleaseKind::AppKey | ReleaseKind::SignCert | ReleaseKind::KmsOnboard => true,
            ReleaseKind::KmsOnboardReceipt => false,
        }
    }
}

impl TryFrom<u8> for ReleaseKind {
    type Error = EntryError;

    fn try_from(kind: u8) -> Result<Self, EntryError> {
        match kind {
            0 => Ok(ReleaseKind::AppKey),
            1 => Ok(ReleaseKind::SignCert),
            2 => Ok(ReleaseKind::KmsOnboard),
            3 => Ok(ReleaseKind::KmsOnboardReceipt),
            _ => Err(EntryError::UnknownKind { kind }),
        }
    }
}

/// Which layout a record was decoded from, and is encoded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordVersion {
    /// Version 1: no `mrSystem`, no advisory ids (read only by the KMS; an audit of it
    /// is approximate).
    V1 = 1,
    /// Version 2: the whole `AppBootInfo` the policy judged.
    V2 = 2,
}

/// `IAppAuth.AppBootInfo` as a release record keeps it: exactly what the KMS passed to
/// `KmsAuth.isAppAllowed` (or `isKmsAllowed` for onboarding). Field order is the ABI
/// order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AppBootInfo {
    /// The app (its AppAuth address).
    pub app_id: Address,
    /// SHA-256 of `app-compose.json`.
    pub compose_hash: B256,
    /// The CVM instance (zero when the app has none).
    pub instance_id: Address,
    /// SHA-256 of the PPID of the machine.
    pub device_id: B256,
    /// SHA-256(MRTD ‖ RTMR0..3).
    pub mr_aggregated: B256,
    /// SHA-256(MRTD ‖ RTMR0..2 ‖ SHA-256(key provider)); zero in version-1 records.
    pub mr_system: B256,
    /// SHA-256 of the OS image measurement manifest.
    pub os_image_hash: B256,
    /// The TCB status of the quote (e.g. `UpToDate`); at most [`MAX_TCB_STATUS_LEN`]
    /// bytes.
    pub tcb_status: String,
    /// Intel advisory ids of the quote's TCB level; at most [`MAX_ADVISORY_IDS`] of at
    /// most [`MAX_ADVISORY_ID_LEN`] bytes; empty in version-1 records.
    pub advisory_ids: Vec<String>,
}

impl AppBootInfo {
    /// `abi.encode(bootInfo)`: the bytes of the `AppBootInfo` tuple, equal to the ABI
    /// encoding of the same value in any binding of `IAppAuth` (a test checks
    /// `cairn-onchain`'s).
    pub fn abi_encode(&self) -> Vec<u8> {
        self.to_abi().abi_encode()
    }

    /// The bounds a record puts on the strings: the TCB status, the number and length
    /// of advisory ids. [`ReleaseRecord::encode`] and [`ReleaseRecord::decode`] check
    /// them; a KMS checks them before asking the chain, so an allowed release can
    /// always be logged.
    pub fn validate(&self) -> Result<(), EntryError> {
        if self.tcb_status.len() > MAX_TCB_STATUS_LEN {
            return Err(EntryError::TcbStatusTooLong {
                len: self.tcb_status.len(),
                max: MAX_TCB_STATUS_LEN,
            });
        }
        if self.advisory_ids.len() > MAX_ADVISORY_IDS {
            return Err(EntryError::TooManyAdvisoryIds {
                count: self.advisory_ids.len(),
                max: MAX_ADVISORY_IDS,
            });
        }
        if let Some(long) = self
            .advisory_ids
            .iter()
            .find(|a| a.len() > MAX_ADVISORY_ID_LEN)
        {
            return Err(EntryError::AdvisoryIdTooLong {
                len: long.len(),
                max: MAX_ADVISORY_ID_LEN,
            });
        }
        Ok(())
    }

    fn to_abi(&self) -> abi::AppBootInfo {
        abi::AppBootInfo {
            appId: self.app_id,
            composeHash: self.compose_hash,
            instanceId: self.instance_id,
            deviceId: self.device_id,
            mrAggregated: self.mr_aggregated,
            mrSystem: self.mr_system,
            osImageHash: self.os_image_hash,
            tcbStatus: self.tcb_status.clone(),
            advisoryIds: self.advisory_ids.clone(),
        }
    }

    fn from_abi(b: abi::AppBootInfo) -> Self {
        AppBootInfo {
            app_id: b.appId,
            compose_hash: b.composeHash,
            instance_id: b.instanceId,
            device_id: b.deviceId,
            mr_aggregated: b.mrAggregated,
            mr_system: b.mrSystem,
            os_image_hash: b.osImageHash,
            tcb_status: b.tcbStatus,
            advisory_ids: b.advisoryIds,
        }
    }
}

/// One key release, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// The layout: [`RecordVersion::V2`] for everything written now; decoding a
    /// version-1 entry gives [`RecordVersion::V1`] (and encoding it gives the same
    /// version-1 bytes back).
    pub version: RecordVersion,
    /// What was released.
    pub kind: ReleaseKind,
    /// The boot info the policy judged.
    pub boot: AppBootInfo,
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
    /// `abi.encode(ReleaseRecordV2{version: 2, ...})`, or the version-1 layout for a
    /// [`RecordVersion::V1`] record (which must then have a zero `mr_system` and no
    /// advisory ids: [`EntryError::NotInVersion1`]).
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        self.boot.validate()?;
        Ok(match self.version {
            RecordVersion::V2 => abi::ReleaseRecordV2 {
                version: RECORD_VERSION,
                kind: self.kind as u8,
                boot: self.boot.to_abi(),
                tail: self.abi_tail(),
            }
            .abi_encode(),
            RecordVersion::V1 => self.encode_v1()?,
        })
    }

    fn encode_v1(&self) -> Result<Vec<u8>, EntryError> {
        if self.boot.mr_system != B256::ZERO {
            return Err(EntryError::NotInVersion1 { field: "mrSystem" });
        }
        if !self.boot.advisory_ids.is_empty() {
            return Err(EntryError::NotInVersion1 {
                field: "advisoryIds",
            });
        }
        let b = &self.boot;
        Ok(abi::ReleaseRecordV1 {
            version: RECORD_VERSION_V1,
            kind: self.kind as u8,
            appId: b.app_id,
            composeHash: b.compose_hash,
            instanceId: b.instance_id,
            deviceId: b.device_id,
            osImageHash: b.os_image_hash,
            mrAggregated: b.mr_aggregated,
            tcbStatus: b.tcb_status.clone(),
            tail: self.abi_tail(),
        }
        .abi_encode())
    }

    /// Decodes a record of either version, accepting only the canonical encoding.
    ///
    /// In order: size cap ([`MAX_RECORD_LEN`]), version word (the second 32-byte word,
    /// after the tuple offset), the version's own size cap ([`MAX_RECORD_V1_LEN`] for
    /// version 1), strict ABI decode, byte-for-byte re-encoding (rejects trailing bytes
    /// and any non-canonical form), kind, string bounds.
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
        let record = match version {
            RECORD_VERSION => Self::decode_v2(bytes)?,
            RECORD_VERSION_V1 => Self::decode_v1(bytes)?,
            _ => return Err(EntryError::UnsupportedVersion { version }),
        };
        record.boot.validate()?;
        Ok(record)
    }

    fn decode_v2(bytes: &[u8]) -> Result<Self, EntryError> {
        let r: abi::ReleaseRecordV2 = decode_canonical(bytes)?;
        Self::from_abi(
            RecordVersion::V2,
            r.kind,
            AppBootInfo::from_abi(r.boot),
            r.tail,
        )
    }

    fn decode_v1(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_RECORD_V1_LEN {
            return Err(EntryError::TooLong {
                len: bytes.len(),
                max: MAX_RECORD_V1_LEN,
            });
        }
        let r: abi::ReleaseRecordV1 = decode_canonical(bytes)?;
        Self::from_abi(
            RecordVersion::V1,
            r.kind,
            AppBootInfo {
                app_id: r.appId,
                compose_hash: r.composeHash,
                instance_id: r.instanceId,
                device_id: r.deviceId,
                mr_aggregated: r.mrAggregated,
                mr_system: B256::ZERO,
                os_image_hash: r.osImageHash,
                tcb_status: r.tcbStatus,
                advisory_ids: Vec::new(),
            },
            r.tail,
        )
    }

    fn abi_tail(&self) -> abi::ReleaseTail {
        abi::ReleaseTail {
            keyGeneration: self.key_generation,
            chainId: self.chain_id,
            policyBlockNumber: self.policy_block_number,
            policyBlockHash: self.policy_block_hash,
            quoteHash: self.quote_hash,
            clientKeyHash: self.client_key_hash,
            kmsNode: self.kms_node,
            timestamp: self.timestamp,
        }
    }

    fn from_abi(
        version: RecordVersion,
        kind: u8,
        boot: AppBootInfo,
        t: abi::ReleaseTail,
    ) -> Result<Self, EntryError> {
        Ok(ReleaseRecord {
            version,
            kind: ReleaseKind::try_from(kind)?,
            boot,
            key_generation: t.keyGeneration,
            chain_id: t.chainId,
            policy_block_number: t.policyBlockNumber,
            policy_block_hash: t.policyBlockHash,
            quote_hash: t.quoteHash,
            client_key_hash: t.clientKeyHash,
            kms_node: t.kmsNode,
            timestamp: t.timestamp,
        })
    }

    /// Whether the record holds every field the policy reads (version 2), so an audit
    /// re-evaluates exactly what the KMS evaluated.
    pub fn is_exact(&self) -> bool {
        self.version == RecordVersion::V2
    }
}
