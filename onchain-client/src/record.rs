//! The release record's boot info ↔ the chain's: [`recorded_boot_info`] turns the
//! `BootInfo` a KMS passed to `KmsAuth` into what its log records, and
//! [`boot_info_of`] turns a record back into the `BootInfo` an auditor passes to the
//! same call. For version-2 records the round trip is the identity (a test compares
//! the ABI bytes), so the audit's `eth_call` is the KMS's.

use alloy::primitives::B256;
use cairn_tlog::{AppBootInfo, ReleaseRecord};

use crate::client::BootInfo;

/// The log's copy of `boot`, field for field.
pub fn recorded_boot_info(boot: &BootInfo) -> AppBootInfo {
    AppBootInfo {
        app_id: boot.appId,
        compose_hash: boot.composeHash,
        instance_id: boot.instanceId,
        device_id: boot.deviceId,
        mr_aggregated: boot.mrAggregated,
        mr_system: boot.mrSystem,
        os_image_hash: boot.osImageHash,
        tcb_status: boot.tcbStatus.clone(),
        advisory_ids: boot.advisoryIds.clone(),
    }
}

/// The boot info a release record holds, for `isAppAllowed` / `isKmsAllowed`. Exact for
/// version-2 records; a version-1 record has no `mrSystem` nor advisory ids, so they
/// are zero and empty ([`ReleaseRecord::is_exact`] is false).
pub fn boot_info_of(record: &ReleaseRecord) -> BootInfo {
    let b = &record.boot;
    BootInfo {
        appId: b.app_id,
        composeHash: b.compose_hash,
        instanceId: b.instance_id,
        deviceId: b.device_id,
        mrAggregated: b.mr_aggregated,
        mrSystem: if record.is_exact() {
            b.mr_system
        } else {
            B256::ZERO
        },
        osImageHash: b.os_image_hash,
        tcbStatus: b.tcb_status.clone(),
        advisoryIds: b.advisory_ids.clone(),
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Address;
    use alloy::sol_types::SolValue;
    use cairn_tlog::{RecordVersion, ReleaseKind};

    use super::*;

    fn boot() -> BootInfo {
        BootInfo {
            appId: Address::repeat_byte(0xa1),
            composeHash: B256::repeat_byte(0xc0),
            instanceId: Address::repeat_byte(0x1d),
            deviceId: B256::repeat_byte(0xde),
            mrAggregated: B256::repeat_byte(0x3a),
            mrSystem: B256::repeat_byte(0x5e),
            osImageHash: B256::repeat_byte(0x05),
            tcbStatus: "SWHardeningNeeded".into(),
            advisoryIds: vec!["INTEL-SA-00615".into(), "INTEL-SA-00837".into()],
        }
    }

    #[test]
    fn the_recorded_boot_info_has_the_contract_bindings_abi_encoding() {
        let b = boot();
        assert_eq!(recorded_boot_info(&b).abi_encode(), b.abi_encode());
    }

    #[test]
    fn a_v2_record_gives_back_the_boot_info_it_recorded() {
        let b = boot();
        let record = ReleaseRecord {
            version: RecordVersion::V2,
            kind: ReleaseKind::AppKey,
            boot: recorded_boot_info(&b),
            key_generation: 1,
            chain_id: 1,
            policy_block_number: 1,
            policy_block_hash: B256::ZERO,
            quote_hash: B256::ZERO,
            client_key_hash: B256::ZERO,
            kms_node: Address::ZERO,
            timestamp: 0,
        };
        let decoded = ReleaseRecord::decode(&record.encode().expect("encode")).expect("decode");
        assert_eq!(boot_info_of(&decoded), b);
        assert!(decoded.is_exact());
    }
}
