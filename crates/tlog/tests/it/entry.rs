//! The release record codec: round trip, the documented vector, and strict decoding.

use alloy_primitives::{Address, B256};
use cairn_tlog::{
    EntryError, ReleaseKind, ReleaseRecord, MAX_RECORD_LEN, MAX_TCB_STATUS_LEN, RECORD_VERSION,
};
use proptest::prelude::*;

/// The record of the docs/tlog.md vector: every field a distinct pattern.
pub fn sample() -> ReleaseRecord {
    ReleaseRecord {
        kind: ReleaseKind::AppKey,
        app_id: Address::repeat_byte(0xa1),
        compose_hash: B256::repeat_byte(0xc0),
        instance_id: Address::repeat_byte(0x1d),
        device_id: B256::repeat_byte(0xde),
        os_image_hash: B256::repeat_byte(0x05),
        mr_aggregated: B256::repeat_byte(0x3a),
        tcb_status: "UpToDate".into(),
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
    assert_eq!(bytes[32..64], B256::left_padding_from(&[RECORD_VERSION]).0);
    assert_eq!(bytes[64..96], B256::left_padding_from(&[0]).0);
    // 17 head words + offset word + string length + one padded word.
    assert_eq!(bytes.len(), 32 * (1 + 17 + 1 + 1));
}

#[test]
fn every_kind_round_trips() {
    for kind in [
        ReleaseKind::AppKey,
        ReleaseKind::SignCert,
        ReleaseKind::KmsOnboard,
    ] {
        let r = ReleaseRecord { kind, ..sample() };
        assert_eq!(ReleaseRecord::decode(&r.encode().expect("encode")), Ok(r));
    }
}

#[test]
fn unknown_versions_are_rejected() {
    let good = sample().encode().expect("encode");
    for v in [0u8, 2, 255] {
        let mut bad = good.clone();
        bad[63] = v;
        assert_eq!(
            ReleaseRecord::decode(&bad),
            Err(EntryError::UnsupportedVersion { version: v })
        );
    }
    let mut huge = good.clone();
    huge[40] = 1;
    assert_eq!(
        ReleaseRecord::decode(&huge),
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
    let mut dirty = good.clone();
    dirty[64] = 1;
    assert!(matches!(
        ReleaseRecord::decode(&dirty),
        Err(EntryError::Abi(_))
    ));
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
    let mut bad = sample().encode().expect("encode");
    bad[95] = 3;
    assert_eq!(
        ReleaseRecord::decode(&bad),
        Err(EntryError::UnknownKind { kind: 3 })
    );
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
    let long = ReleaseRecord {
        tcb_status: "x".repeat(MAX_TCB_STATUS_LEN + 1),
        ..sample()
    };
    assert_eq!(
        long.encode(),
        Err(EntryError::TcbStatusTooLong {
            len: MAX_TCB_STATUS_LEN + 1,
            max: MAX_TCB_STATUS_LEN
        })
    );
    let max = ReleaseRecord {
        tcb_status: "x".repeat(MAX_TCB_STATUS_LEN),
        ..sample()
    };
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
    fn mutated_records_never_panic_and_decode_only_canonically(pos in 0usize..640, byte in any::<u8>()) {
        let good = sample().encode().expect("encode");
        let mut bad = good.clone();
        let pos = pos % bad.len();
        bad[pos] = byte;
        if let Ok(r) = ReleaseRecord::decode(&bad) {
            prop_assert_eq!(r.encode().expect("encode"), bad);
        }
    }

    #[test]
    fn any_record_round_trips(
        kind in 0u8..3, id in any::<[u8; 20]>(), h in any::<[u8; 32]>(),
        tcb in "[A-Za-z]{0,64}", generation in any::<u32>(), nums in any::<[u64; 3]>(),
    ) {
        let r = ReleaseRecord {
            kind: ReleaseKind::try_from(kind).expect("kind"),
            app_id: Address::from(id),
            compose_hash: B256::from(h),
            tcb_status: tcb,
            key_generation: generation,
            chain_id: nums[0],
            policy_block_number: nums[1],
            timestamp: nums[2],
            ..sample()
        };
        prop_assert_eq!(ReleaseRecord::decode(&r.encode().expect("encode")), Ok(r));
    }
}
