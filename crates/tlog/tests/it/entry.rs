//! The release record codec: round trip, the documented vectors (version 2 and the kept
//! version 1), and strict, size-bounded decoding.

use alloy_primitives::{Address, B256};
use cairn_tlog::{
    AppBootInfo, EntryError, RecordVersion, ReleaseKind, ReleaseRecord, MAX_ADVISORY_IDS,
    MAX_ADVISORY_ID_LEN, MAX_RECORD_LEN, MAX_RECORD_V1_LEN, MAX_TCB_STATUS_LEN, RECORD_VERSION,
    RECORD_VERSION_V1,
};
use proptest::prelude::*;

/// The boot info of the docs/tlog.md vectors: every field a distinct pattern.
fn sample_boot() -> AppBootInfo {
    AppBootInfo {
        app_id: Address::repeat_byte(0xa1),
        compose_hash: B256::repeat_byte(0xc0),
        instance_id: Address::repeat_byte(0x1d),
        device_id: B256::repeat_byte(0xde),
        mr_aggregated: B256::repeat_byte(0x3a),
        mr_system: B256::ZERO,
        os_image_hash: B256::repeat_byte(0x05),
        tcb_status: "UpToDate".into(),
        advisory_ids: Vec::new(),
    }
}

/// The record of the docs/tlog.md version-1 vector.
pub fn sample() -> ReleaseRecord {
    ReleaseRecord {
        version: RecordVersion::V1,
        kind: ReleaseKind::AppKey,
        boot: sample_boot(),
        key_generation: 1,
        chain_id: 31337,
        policy_block_number: 1234,
        policy_block_hash: B256::repeat_byte(0xb1),
        quote_hash: B256::repeat_byte(0x9e),
        client_key_hash: B256::repeat_byte(0xcc),
        kms_node: Address::repeat_byte(0x4b),
        timestamp: 1_767_225_600,
    }
}

/// `abi.encode(ReleaseRecordV1)` of `sample()`, one 32-byte word per line.
const VECTOR_HEX: &str = concat!(
    "0000000000000000000000000000000000000000000000000000000000000020",
    "0000000000000000000000000000000000000000000000000000000000000001",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "000000000000000000000000a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
    "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0",
    "0000000000000000000000001d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d",
    "dededededededededededededededededededededededededededededededede",
    "0505050505050505050505050505050505050505050505050505050505050505",
    "3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a",
    "0000000000000000000000000000000000000000000000000000000000000220",
    "0000000000000000000000000000000000000000000000000000000000000001",
    "0000000000000000000000000000000000000000000000000000000000007a69",
    "00000000000000000000000000000000000000000000000000000000000004d2",
    "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1",
    "9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e",
    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
    "0000000000000000000000004b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b",
    "000000000000000000000000000000000000000000000000000000006955b900",
    "0000000000000000000000000000000000000000000000000000000000000008",
    "5570546f44617465000000000000000000000000000000000000000000000000",
);

/// The encoded [`sample`] with byte `at` set to `value`, decoded.
fn decode_patched(at: usize, value: u8) -> Result<ReleaseRecord, EntryError> {
    let mut bytes = sample().encode().expect("encode");
    bytes[at] = value;
    ReleaseRecord::decode(&bytes)
}

#[test]
fn record_encoding_matches_the_documented_vector() {
    let bytes = sample().encode().expect("encode");
    assert_eq!(hex::encode(&bytes), VECTOR_HEX);
    assert_eq!(ReleaseRecord::decode(&bytes), Ok(sample()));
}

#[test]
fn record_layout_is_abi_encode_of_a_tuple_with_version_first() {
    let bytes = sample().encode().expect("encode");
    // Word 0: offset of the dynamic tuple; word 1: version; word 2: kind.
    assert_eq!(bytes[..32], B256::left_padding_from(&[0x20]).0);
    assert_eq!(
        bytes[32..64],
        B256::left_padding_from(&[RECORD_VERSION_V1]).0
    );
    assert_eq!(bytes[64..96], B256::left_padding_from(&[0]).0);
    // 17 head words + offset word + string length + one padded word.
    assert_eq!(bytes.len(), 32 * (1 + 17 + 1 + 1));
}

/// The record of the docs/tlog.md version-2 vector: the version-1 fields plus
/// `mrSystem` and two advisory ids.
pub fn sample_v2() -> ReleaseRecord {
    ReleaseRecord {
        version: RecordVersion::V2,
        boot: AppBootInfo {
            mr_system: B256::repeat_byte(0x5e),
            tcb_status: "SWHardeningNeeded".into(),
            advisory_ids: vec!["INTEL-SA-00615".into(), "INTEL-SA-00837".into()],
            ..sample_boot()
        },
        ..sample()
    }
}

/// `abi.encode(ReleaseRecordV2)` of `sample_v2()`, one 32-byte word per line.
const VECTOR_V2_HEX: &str = concat!(
    // tuple offset, version, kind, offset of boot (word 14 from the tuple start)
    "0000000000000000000000000000000000000000000000000000000000000020",
    "0000000000000000000000000000000000000000000000000000000000000002",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000160",
    // keyGeneration, chainId, policyBlockNumber, policyBlockHash, quoteHash,
    // clientKeyHash, kmsNode, timestamp
    "0000000000000000000000000000000000000000000000000000000000000001",
    "0000000000000000000000000000000000000000000000000000000000007a69",
    "00000000000000000000000000000000000000000000000000000000000004d2",
    "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1",
    "9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e",
    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
    "0000000000000000000000004b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b",
    "000000000000000000000000000000000000000000000000000000006955b900",
    // boot: appId, composeHash, instanceId, deviceId, mrAggregated, mrSystem,
    // osImageHash, offset of tcbStatus, offset of advisoryIds
    "000000000000000000000000a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
    "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0",
    "0000000000000000000000001d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d",
    "dededededededededededededededededededededededededededededededede",
    "3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a",
    "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e",
    "0505050505050505050505050505050505050505050505050505050505050505",
    "0000000000000000000000000000000000000000000000000000000000000120",
    "0000000000000000000000000000000000000000000000000000000000000160",
    // tcbStatus "SWHardeningNeeded"
    "0000000000000000000000000000000000000000000000000000000000000011",
    "535748617264656e696e674e6565646564000000000000000000000000000000",
    // advisoryIds: 2 ids, their offsets, then each string
    "0000000000000000000000000000000000000000000000000000000000000002",
    "0000000000000000000000000000000000000000000000000000000000000040",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "000000000000000000000000000000000000000000000000000000000000000e",
    "494e54454c2d53412d3030363135000000000000000000000000000000000000",
    "000000000000000000000000000000000000000000000000000000000000000e",
    "494e54454c2d53412d3030383337000000000000000000000000000000000000",
);

#[test]
fn v2_record_encoding_matches_the_documented_vector() {
    let bytes = sample_v2().encode().expect("encode");
    assert_eq!(hex::encode(&bytes), VECTOR_V2_HEX);
    assert_eq!(bytes.len(), 32 * 30);
    assert_eq!(bytes[32..64], B256::left_padding_from(&[RECORD_VERSION]).0);
    let decoded = ReleaseRecord::decode(&bytes).expect("decode");
    assert_eq!(decoded, sample_v2());
    assert!(decoded.is_exact());
}

#[test]
fn a_v1_record_decodes_with_no_mr_system_or_advisories_and_re_encodes_to_the_same_bytes() {
    let bytes = hex::decode(VECTOR_HEX).expect("hex");
    let r = ReleaseRecord::decode(&bytes).expect("decode");
    assert_eq!(r.version, RecordVersion::V1);
    assert!(!r.is_exact());
    assert_eq!(r.boot.mr_system, B256::ZERO);
    assert!(r.boot.advisory_ids.is_empty());
    assert_eq!(r.encode().expect("encode"), bytes);
    // The same release written today is version 2, and differs.
    let v2 = ReleaseRecord {
        version: RecordVersion::V2,
        ..r
    };
    let v2_bytes = v2.encode().expect("encode");
    assert_ne!(v2_bytes, bytes);
    assert_eq!(ReleaseRecord::decode(&v2_bytes), Ok(v2));
}

#[test]
fn a_v1_record_cannot_carry_v2_fields() {
    let with_mr = ReleaseRecord {
        version: RecordVersion::V1,
        ..sample_v2()
    };
    assert_eq!(
        with_mr.encode(),
        Err(EntryError::NotInVersion1 { field: "mrSystem" })
    );
    let mut with_ids = with_mr.clone();
    with_ids.boot.mr_system = B256::ZERO;
    assert_eq!(
        with_ids.encode(),
        Err(EntryError::NotInVersion1 {
            field: "advisoryIds"
        })
    );
}

#[test]
fn v2_advisory_ids_are_bounded_in_count_and_length() {
    let mut r = sample_v2();
    r.boot.advisory_ids = vec!["x".repeat(MAX_ADVISORY_ID_LEN); MAX_ADVISORY_IDS];
    r.boot.tcb_status = "y".repeat(MAX_TCB_STATUS_LEN);
    let max = r.encode().expect("the largest record encodes");
    assert_eq!(
        max.len(),
        MAX_RECORD_LEN,
        "MAX_RECORD_LEN is the largest record"
    );
    assert_eq!(ReleaseRecord::decode(&max), Ok(r.clone()));

    let mut too_many = r.clone();
    too_many.boot.advisory_ids.push("z".into());
    assert_eq!(
        too_many.encode(),
        Err(EntryError::TooManyAdvisoryIds {
            count: MAX_ADVISORY_IDS + 1,
            max: MAX_ADVISORY_IDS
        })
    );
    let mut too_long = sample_v2();
    too_long.boot.advisory_ids[1] = "x".repeat(MAX_ADVISORY_ID_LEN + 1);
    assert_eq!(
        too_long.encode(),
        Err(EntryError::AdvisoryIdTooLong {
            len: MAX_ADVISORY_ID_LEN + 1,
            max: MAX_ADVISORY_ID_LEN
        })
    );
}

/// ABI-encodes `r` without the record's own bounds (as a hostile log could).
fn unchecked_v2(ids: Vec<String>) -> Vec<u8> {
    use alloy_sol_types::SolValue;
    alloy_sol_types::sol! {
        struct Boot { address a; bytes32 b; address c; bytes32 d; bytes32 e; bytes32 f; bytes32 g; string h; string[] i; }
        struct Rec { uint8 v; uint8 k; Boot boot; uint32 g; uint64 c; uint64 n; bytes32 bh; bytes32 q; bytes32 ck; address node; uint64 t; }
    }
    Rec {
        v: 2,
        k: 0,
        boot: Boot {
            a: Address::ZERO,
            b: B256::ZERO,
            c: Address::ZERO,
            d: B256::ZERO,
            e: B256::ZERO,
            f: B256::ZERO,
            g: B256::ZERO,
            h: "UpToDate".into(),
            i: ids,
        },
        g: 1,
        c: 1,
        n: 1,
        bh: B256::ZERO,
        q: B256::ZERO,
        ck: B256::ZERO,
        node: Address::ZERO,
        t: 1,
    }
    .abi_encode()
}

#[test]
fn decoding_enforces_the_advisory_bounds_on_hostile_bytes() {
    let bytes = unchecked_v2(vec!["a".into(); MAX_ADVISORY_IDS + 1]);
    assert_eq!(
        ReleaseRecord::decode(&bytes),
        Err(EntryError::TooManyAdvisoryIds {
            count: MAX_ADVISORY_IDS + 1,
            max: MAX_ADVISORY_IDS
        })
    );
    let bytes = unchecked_v2(vec!["a".repeat(MAX_ADVISORY_ID_LEN + 1)]);
    assert_eq!(
        ReleaseRecord::decode(&bytes),
        Err(EntryError::AdvisoryIdTooLong {
            len: MAX_ADVISORY_ID_LEN + 1,
            max: MAX_ADVISORY_ID_LEN
        })
    );
    // A claimed array length far beyond the bytes is an ABI error, not an allocation.
    let mut bytes = unchecked_v2(vec!["a".into()]);
    let len_word = bytes.len() - 32 * 4; // [len][offset][str len][str]
    bytes[len_word..len_word + 32].copy_from_slice(&B256::left_padding_from(&[0xff; 8]).0);
    assert!(matches!(
        ReleaseRecord::decode(&bytes),
        Err(EntryError::Abi(_))
    ));
    // Within the overall cap, a version-1 record still has its own.
    let mut v1 = hex::decode(VECTOR_HEX).expect("hex");
    v1.resize(MAX_RECORD_V1_LEN + 32, 0);
    assert_eq!(
        ReleaseRecord::decode(&v1),
        Err(EntryError::TooLong {
            len: MAX_RECORD_V1_LEN + 32,
            max: MAX_RECORD_V1_LEN
        })
    );
}

#[test]
fn every_kind_round_trips() {
    for kind in [
        ReleaseKind::AppKey,
        ReleaseKind::SignCert,
        ReleaseKind::KmsOnboard,
        ReleaseKind::KmsOnboardReceipt,
    ] {
        for r in [
            ReleaseRecord { kind, ..sample() },
            ReleaseRecord {
                kind,
                ..sample_v2()
            },
        ] {
            assert_eq!(ReleaseRecord::decode(&r.encode().expect("encode")), Ok(r));
        }
    }
}

#[test]
fn unknown_versions_are_rejected() {
    for v in [0u8, 3, 255] {
        assert_eq!(
            decode_patched(63, v),
            Err(EntryError::UnsupportedVersion { version: v })
        );
    }
    assert_eq!(
        decode_patched(40, 1),
        Err(EntryError::UnsupportedVersion { version: 255 })
    );
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bad = sample().encode().expect("encode");
    bad.push(0);
    assert_eq!(ReleaseRecord::decode(&bad), Err(EntryError::NonCanonical));
    let mut word = sample().encode().expect("encode");
    word.extend_from_slice(&[0; 32]);
    assert_eq!(ReleaseRecord::decode(&word), Err(EntryError::NonCanonical));
}

#[test]
fn dirty_padding_and_truncation_are_rejected() {
    let good = sample().encode().expect("encode");
    // A non-zero byte in the high part of the `kind` word (uint8).
    assert!(matches!(decode_patched(64, 1), Err(EntryError::Abi(_))));
    // Garbage in the padding after the string bytes.
    let mut pad = good.clone();
    let last = pad.len() - 1;
    pad[last] = 0x55;
    assert!(matches!(
        ReleaseRecord::decode(&pad),
        Err(EntryError::Abi(_) | EntryError::NonCanonical)
    ));
    assert!(matches!(
        ReleaseRecord::decode(&good[..good.len() - 32]),
        Err(EntryError::Abi(_))
    ));
    assert_eq!(
        ReleaseRecord::decode(&good[..40]),
        Err(EntryError::Truncated)
    );
    assert_eq!(ReleaseRecord::decode(&[]), Err(EntryError::Truncated));
}

#[test]
fn unknown_kinds_are_rejected() {
    for kind in [4u8, 5, 255] {
        assert_eq!(
            decode_patched(95, kind),
            Err(EntryError::UnknownKind { kind })
        );
    }
}

/// Kind 3 (`kms-onboard-receipt`) is the documented vector with word 2 set to 3, and
/// nothing else changes: the kind is one byte of the record.
#[test]
fn a_kms_onboard_receipt_is_the_vector_with_kind_3() {
    let receipt = ReleaseRecord {
        kind: ReleaseKind::KmsOnboardReceipt,
        ..sample_v2()
    };
    let bytes = receipt.encode().expect("encode");
    let mut expected = hex::decode(VECTOR_V2_HEX).expect("hex");
    expected[95] = 3;
    assert_eq!(bytes, expected);
    assert_eq!(ReleaseRecord::decode(&bytes), Ok(receipt));
    assert_eq!(
        decode_patched(95, 3).map(|r| r.kind),
        Ok(ReleaseKind::KmsOnboardReceipt)
    );
}

#[test]
fn kind_names_and_policy_questions_are_the_documented_ones() {
    // (kind, name, judged by isKmsAllowed, the logging node released something)
    let cases = [
        (ReleaseKind::AppKey, "app-key", false, true),
        (ReleaseKind::SignCert, "sign-cert", false, true),
        (ReleaseKind::KmsOnboard, "kms-onboard", true, true),
        (
            ReleaseKind::KmsOnboardReceipt,
            "kms-onboard-receipt",
            true,
            false,
        ),
    ];
    for (n, (kind, name, kms, release)) in cases.into_iter().enumerate() {
        assert_eq!(ReleaseKind::try_from(n as u8), Ok(kind));
        assert_eq!(kind as u8 as usize, n);
        assert_eq!(kind.name(), name);
        assert_eq!(kind.is_kms_policy(), kms, "{name}");
        assert_eq!(kind.is_release(), release, "{name}");
    }
}

#[test]
fn oversized_records_and_tcb_status_are_rejected() {
    assert_eq!(
        ReleaseRecord::decode(&vec![0; MAX_RECORD_LEN + 1]),
        Err(EntryError::TooLong {
            len: MAX_RECORD_LEN + 1,
            max: MAX_RECORD_LEN
        })
    );
    let mut long = sample();
    long.boot.tcb_status = "x".repeat(MAX_TCB_STATUS_LEN + 1);
    assert_eq!(
        long.encode(),
        Err(EntryError::TcbStatusTooLong {
            len: MAX_TCB_STATUS_LEN + 1,
            max: MAX_TCB_STATUS_LEN
        })
    );
    let mut max = sample();
    max.boot.tcb_status = "x".repeat(MAX_TCB_STATUS_LEN);
    assert_eq!(
        ReleaseRecord::decode(&max.encode().expect("encode")),
        Ok(max)
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_record_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let _ = ReleaseRecord::decode(&bytes);
    }

    #[test]
    fn mutated_records_never_panic_and_decode_only_canonically(pos in 0usize..960, byte in any::<u8>(), v2 in any::<bool>()) {
        let good = if v2 { sample_v2() } else { sample() }.encode().expect("encode");
        let mut bad = good.clone();
        let pos = pos % bad.len();
        bad[pos] = byte;
        if let Ok(r) = ReleaseRecord::decode(&bad) {
            prop_assert_eq!(r.encode().expect("encode"), bad);
        }
    }

    #[test]
    fn any_record_round_trips(
        kind in 0u8..4, id in any::<[u8; 20]>(), h in any::<[u8; 32]>(),
        tcb in "[A-Za-z]{0,64}", generation in any::<u32>(), nums in any::<[u64; 3]>(),
        ids in proptest::collection::vec("[A-Z0-9-]{0,64}", 0..8), v2 in any::<bool>(),
    ) {
        let (version, mr_system, advisory_ids) = if v2 {
            (RecordVersion::V2, B256::from(h), ids)
        } else {
            (RecordVersion::V1, B256::ZERO, Vec::new())
        };
        let r = ReleaseRecord {
            version,
            kind: ReleaseKind::try_from(kind).expect("kind"),
            boot: AppBootInfo {
                app_id: Address::from(id),
                compose_hash: B256::from(h),
                tcb_status: tcb,
                mr_system,
                advisory_ids,
                ..sample_boot()
            },
            key_generation: generation,
            chain_id: nums[0],
            policy_block_number: nums[1],
            timestamp: nums[2],
            ..sample()
        };
        prop_assert_eq!(ReleaseRecord::decode(&r.encode().expect("encode")), Ok(r));
    }
}
