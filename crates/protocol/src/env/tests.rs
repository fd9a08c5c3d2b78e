use super::*;

const APP: [u8; 20] = [0x44; 20];

fn recipient() -> StaticSecret {
    StaticSecret::from([0x11; 32])
}

fn vars() -> EnvVars {
    EnvVars::new(vec![
        EnvVar {
            key: "API_KEY".into(),
            value: "s3cret".into(),
        },
        EnvVar {
            key: "_DEBUG".into(),
            value: "1".into(),
        },
    ])
    .unwrap()
}

fn recipient_pk() -> [u8; 32] {
    PublicKey::from(&recipient()).to_bytes()
}

/// The ephemeral secret and nonce of both vectors.
const EPHEMERAL: [u8; 32] = [0x22; 32];
const NONCE: [u8; 12] = [0x33; 12];

/// [`vars`] in the legacy format with the vectors' ephemeral secret and nonce.
fn legacy_blob() -> Vec<u8> {
    encrypt_legacy_with(
        StaticSecret::from(EPHEMERAL),
        NONCE,
        &recipient_pk(),
        &vars(),
    )
    .unwrap()
}

/// `blob` decrypts for `app_id` to [`vars`], read as `format`.
fn assert_decrypts_to_vars(app_id: &[u8; 20], blob: &[u8], format: EnvFormat) {
    let (got, read_as) = decrypt(&recipient(), app_id, blob).unwrap();
    assert_eq!(got, vars());
    assert_eq!(read_as, format);
}

/// The vector of docs/protocol.md ("Env encryption test vector").
const VECTOR_HEX: &str = include_str!("vector.hex");
/// The legacy-format vector of docs/protocol.md, produced by
/// `crates/protocol/tests/reference/env_vector.py` (Python `cryptography`).
const LEGACY_VECTOR_HEX: &str = include_str!("legacy_vector.hex");

#[test]
fn legacy_format_matches_the_reference_vector() {
    let blob = hex::decode(LEGACY_VECTOR_HEX.trim()).unwrap();
    assert_decrypts_to_vars(&APP, &blob, EnvFormat::DstackLegacy);
    assert_eq!(legacy_blob(), blob);
}

#[test]
fn cairn_reference_vector_decrypts_only_for_its_app_id() {
    let blob = hex::decode(VECTOR_HEX.trim()).unwrap();
    assert_eq!(
        decrypt(&recipient(), &APP, &blob).unwrap().1,
        EnvFormat::Cairn
    );
    assert_eq!(
        decrypt(&recipient(), &[0u8; 20], &blob),
        Err(Error::EnvDecrypt)
    );
}

#[test]
fn cairn_format_round_trips() {
    let blob = encrypt(&recipient_pk(), &APP, &vars()).unwrap();
    assert!(blob.starts_with(MAGIC));
    assert_decrypts_to_vars(&APP, &blob, EnvFormat::Cairn);
}

#[test]
fn cairn_format_matches_known_vector() {
    let blob = encrypt_with(
        StaticSecret::from(EPHEMERAL),
        NONCE,
        &recipient_pk(),
        &APP,
        &vars(),
    )
    .unwrap();
    assert_eq!(hex::encode(&blob), VECTOR_HEX.trim());
    assert_decrypts_to_vars(&APP, &blob, EnvFormat::Cairn);
}

#[test]
fn cairn_format_rejects_wrong_app_id() {
    let blob = encrypt(&recipient_pk(), &APP, &vars()).unwrap();
    assert_eq!(
        decrypt(&recipient(), &[0x45; 20], &blob),
        Err(Error::EnvDecrypt)
    );
}

#[test]
fn cairn_format_rejects_wrong_recipient() {
    let blob = encrypt(&recipient_pk(), &APP, &vars()).unwrap();
    assert_eq!(
        decrypt(&StaticSecret::from([0x12; 32]), &APP, &blob),
        Err(Error::EnvDecrypt)
    );
}

#[test]
fn every_flipped_bit_after_the_magic_is_detected() {
    let blob = encrypt(&recipient_pk(), &APP, &vars()).unwrap();
    for i in MAGIC.len()..blob.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = blob.clone();
            t[i] ^= bit;
            let err = decrypt(&recipient(), &APP, &t).unwrap_err();
            // a flipped ephemeral key may land on a low-order point; all else is EnvDecrypt
            assert!(
                matches!(err, Error::EnvDecrypt | Error::EnvLowOrderKey),
                "byte {i}: {err:?}"
            );
        }
    }
}

#[test]
fn damaged_magic_is_not_silently_decrypted_as_legacy() {
    let mut blob = encrypt(&recipient_pk(), &APP, &vars()).unwrap();
    blob[0] ^= 1;
    // without the magic the blob is parsed as legacy; its "ephemeral key" is garbage
    let err = decrypt(&recipient(), &APP, &blob).unwrap_err();
    assert!(matches!(err, Error::EnvDecrypt | Error::EnvLowOrderKey));
}

#[test]
fn truncated_and_oversized_blobs_are_rejected() {
    let blob = encrypt(&recipient_pk(), &APP, &vars()).unwrap();
    assert_eq!(
        decrypt(&recipient(), &APP, &blob[..MAGIC.len() + 32 + 12 + 15]),
        Err(Error::EnvTruncated)
    );
    assert_eq!(
        decrypt(&recipient(), &APP, &[0u8; 10]),
        Err(Error::EnvTruncated)
    );
    let big = vec![0u8; MAX_ENCRYPTED_ENV_LEN + 1];
    assert_eq!(
        decrypt(&recipient(), &APP, &big),
        Err(Error::EnvTooLarge {
            len: MAX_ENCRYPTED_ENV_LEN + 1,
            max: MAX_ENCRYPTED_ENV_LEN
        })
    );
}

#[test]
fn low_order_ephemeral_key_is_rejected() {
    // the all-zero public key is a low-order point: the shared secret is all zeros
    let mut blob = MAGIC.to_vec();
    blob.extend_from_slice(&[0u8; 32 + 12 + 16]);
    assert_eq!(
        decrypt(&recipient(), &APP, &blob),
        Err(Error::EnvLowOrderKey)
    );
    assert_eq!(
        decrypt(&recipient(), &APP, &[0u8; 32 + 12 + 16]),
        Err(Error::EnvLowOrderKey)
    );
}

#[test]
fn legacy_format_round_trips_and_ignores_app_id() {
    let blob = legacy_blob();
    assert_eq!(blob.len(), 32 + 12 + vars().to_json().unwrap().len() + 16);
    assert_decrypts_to_vars(&[0x99; 20], &blob, EnvFormat::DstackLegacy);
    let mut t = blob.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert_eq!(decrypt(&recipient(), &APP, &t), Err(Error::EnvDecrypt));
}

#[test]
fn names_are_checked_against_the_pattern() {
    for ok in ["A", "_", "a_1", "PATH", "_x9"] {
        assert!(is_valid_env_name(ok), "{ok}");
    }
    for bad in ["", "1A", "A-B", "A B", "É", "A=B", "a.b"] {
        assert!(!is_valid_env_name(bad), "{bad}");
        let v = EnvVars::new(vec![EnvVar {
            key: bad.into(),
            value: String::new(),
        }]);
        assert_eq!(v, Err(Error::EnvInvalidName(bad.into())));
    }
    assert!(!is_valid_env_name(&"A".repeat(MAX_ENV_NAME_LEN + 1)));
    assert!(is_valid_env_name(&"A".repeat(MAX_ENV_NAME_LEN)));
}

#[test]
fn duplicates_and_too_many_vars_are_rejected() {
    let dup = EnvVars::new(vec![
        EnvVar {
            key: "A".into(),
            value: "1".into(),
        },
        EnvVar {
            key: "A".into(),
            value: "2".into(),
        },
    ]);
    assert_eq!(dup, Err(Error::EnvDuplicateName("A".into())));
    let many: Vec<EnvVar> = (0..=MAX_ENV_VARS)
        .map(|i| EnvVar {
            key: format!("V{i}"),
            value: String::new(),
        })
        .collect();
    assert_eq!(
        EnvVars::new(many),
        Err(Error::EnvTooManyVars {
            count: MAX_ENV_VARS + 1,
            max: MAX_ENV_VARS
        })
    );
}

#[test]
fn plaintext_json_is_strict() {
    assert!(matches!(
        EnvVars::from_json(br#"{"env":[{"key":"A","value":"1","x":2}]}"#),
        Err(Error::EnvJson(_))
    ));
    assert!(matches!(
        EnvVars::from_json(br#"{"env":"nope"}"#),
        Err(Error::EnvJson(_))
    ));
    assert_eq!(
        EnvVars::from_json(br#"{"env":[{"key":"1A","value":"1"}]}"#),
        Err(Error::EnvInvalidName("1A".into()))
    );
    let ok = EnvVars::from_json(br#"{"env":[{"key":"A","value":"1"}]}"#).unwrap();
    assert_eq!(ok.env.len(), 1);
}

#[test]
fn only_allowed_envs_pass_the_filter() {
    let (kept, dropped) = vars().filter_allowed(&["API_KEY", "OTHER"]);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].key, "API_KEY");
    assert_eq!(dropped, vec!["_DEBUG".to_owned()]);
    let (kept, dropped) = vars().filter_allowed::<&str>(&[]);
    assert!(kept.is_empty());
    assert_eq!(dropped.len(), 2);
}

#[test]
fn debug_never_prints_values() {
    let s = format!("{:?}", vars());
    assert!(!s.contains("s3cret"), "{s}");
    assert!(s.contains("<redacted>"));
}

proptest::proptest! {
    #[test]
    fn random_blobs_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decrypt(&recipient(), &APP, &bytes);
        let mut m = MAGIC.to_vec();
        m.extend_from_slice(&bytes);
        let _ = decrypt(&recipient(), &APP, &m);
    }
}

mod for_app {
    use super::*;
    use crate::sig::{env_pubkey_message, sign_recoverable};

    const NOW: u64 = 1_700_000_000;

    fn root() -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_bytes((&[0x07; 32]).into()).unwrap()
    }

    fn root_sec1(key: &k256::ecdsa::SigningKey) -> Vec<u8> {
        key.verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .to_vec()
    }

    /// The KMS's answer for `APP`: the recipient key signed by `root()` at `timestamp`.
    fn signed(timestamp: u64) -> EnvPubkeyResponse {
        let public_key = recipient_pk();
        let signature =
            sign_recoverable(&root(), &env_pubkey_message(&APP, timestamp, &public_key)).unwrap();
        EnvPubkeyResponse {
            public_key,
            timestamp,
            signature,
        }
    }

    #[test]
    fn a_key_signed_by_the_onchain_root_is_encrypted_to_in_either_format() {
        let blob = encrypt_env_for_app(
            &signed(NOW - 10),
            &root_sec1(&root()),
            &APP,
            &vars(),
            EnvEncryption::new(NOW),
        )
        .unwrap();
        assert!(blob.starts_with(MAGIC));
        assert_eq!(
            decrypt(&recipient(), &APP, &blob).unwrap(),
            (vars(), EnvFormat::Cairn)
        );

        let legacy = encrypt_env_for_app(
            &signed(NOW),
            &root_sec1(&root()),
            &APP,
            &vars(),
            EnvEncryption::new(NOW).with_format(EnvFormat::DstackLegacy),
        )
        .unwrap();
        assert!(!legacy.starts_with(MAGIC));
        assert_eq!(
            decrypt(&recipient(), &APP, &legacy).unwrap(),
            (vars(), EnvFormat::DstackLegacy)
        );
    }

    #[test]
    fn a_key_not_signed_by_the_onchain_root_for_this_app_is_refused() {
        let other_root = k256::ecdsa::SigningKey::from_bytes((&[0x08; 32]).into()).unwrap();
        let how = EnvEncryption::new(NOW);
        // Another root on chain (e.g. a host's own KMS answered).
        let err = encrypt_env_for_app(&signed(NOW), &root_sec1(&other_root), &APP, &vars(), how)
            .unwrap_err();
        assert_eq!(err, Error::WrongSigner);
        // The signature binds the app id: another app's key is refused.
        let err = encrypt_env_for_app(&signed(NOW), &root_sec1(&root()), &[0x45; 20], &vars(), how)
            .unwrap_err();
        assert_eq!(err, Error::WrongSigner);
        // A swapped public key under the genuine signature.
        let mut swapped = signed(NOW);
        swapped.public_key = [0x99; 32];
        let err =
            encrypt_env_for_app(&swapped, &root_sec1(&root()), &APP, &vars(), how).unwrap_err();
        assert_eq!(err, Error::WrongSigner);
        // Not a key at all.
        let err = encrypt_env_for_app(&signed(NOW), &[0x02; 10], &APP, &vars(), how).unwrap_err();
        assert_eq!(err, Error::InvalidPublicKey);
    }

    #[test]
    fn a_stale_or_future_signature_is_refused() {
        let root = root_sec1(&root());
        let how = EnvEncryption::new(NOW).with_max_age(60);
        let err = encrypt_env_for_app(&signed(NOW - 61), &root, &APP, &vars(), how).unwrap_err();
        assert!(
            matches!(err, Error::StaleTimestamp { max_age: 60, .. }),
            "{err:?}"
        );
        let ahead = NOW + crate::api::MAX_ENV_PUBKEY_CLOCK_SKEW_SECS + 1;
        let err = encrypt_env_for_app(&signed(ahead), &root, &APP, &vars(), how).unwrap_err();
        assert!(matches!(err, Error::FutureTimestamp { .. }), "{err:?}");
        encrypt_env_for_app(&signed(NOW - 60), &root, &APP, &vars(), how).unwrap();
    }
}
