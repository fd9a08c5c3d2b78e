//! Known-answer vectors of docs/kdf.md. The `okm` values agree with the independent
//! hashlib/hmac implementation in `kms/tests/reference/kdf_reference.py`, which also
//! derives the same public keys with the `cryptography` package.

use cairn_kms::{derive_bytes, label};
use cairn_kms::{AppKeys, MasterSecret, RootKeys};
use cairn_protocol::sig;
use sha2::{Digest, Sha256};

use super::{instance, master, APP_ID};

const APP: &[u8] = &[0x11; 20];
const INST: &[u8] = &[0x22; 20];

fn okm(l: &str, parts: &[&[u8]]) -> String {
    hex::encode(derive_bytes(&master(), l, parts).unwrap().expose())
}

/// The master secret of the vectors, its root keys and the keys of `APP_ID`'s instance.
fn derived() -> (MasterSecret, RootKeys, AppKeys) {
    let master = master();
    let root = RootKeys::derive(&master).unwrap();
    let app = AppKeys::derive(&master, &root, &APP_ID, &instance()).unwrap();
    (master, root, app)
}

#[test]
fn okm_of_every_label_matches_the_reference() {
    let cases: [(&str, &[&[u8]], &str); 8] = [
        (
            label::ROOT_K256,
            &[],
            "d0340b2be0ada18980281b0d2eb97157ad4a9757f050a736c73a9fb8943ddf35",
        ),
        (
            label::ROOT_CA,
            &[],
            "3647f78dfc1e4c99800504f0016ce67eae32195cc6e25eaca0d2fc2c424e118c",
        ),
        (
            label::APP_K256,
            &[APP],
            "596ab5365a65fec9c2fc56281bdae49e65e766bb16ccb7b92edeb4aa34961860",
        ),
        (
            label::APP_CA,
            &[APP],
            "41dcedb8fc5294ab9ec7e893af5a3de47cc165ff3642a780eacf7027d60d6ccf",
        ),
        (
            label::DISK,
            &[APP, INST],
            "d764062634f0c3dcb91f252e65decd27ba4fd8b138db0a6cce965700fa53cede",
        ),
        (
            label::DISK,
            &[APP, &[]],
            "b9640c370fd7e0e56909636b7ad00b6f641a64e7462254f66f148a8ea59dc29d",
        ),
        (
            label::ENV_X25519,
            &[APP],
            "6e20c257eddb8eb5d0a54147c5c3dba6e840683d719b0aaaad0b7f1cb50b1718",
        ),
        // the first resample of app-k256: one more part, u32be(1)
        (
            label::APP_K256,
            &[APP, &[0, 0, 0, 1]],
            "d4bc7593ba32f90b0c39893e920c88533596c5e7fb146e984f6e8436f382e3c0",
        ),
    ];
    for (l, parts, want) in cases {
        assert_eq!(okm(l, parts), want, "label {l}");
    }
}

#[test]
fn public_values_match_the_vectors() {
    let (master, root, app) = derived();
    let root_ca_key = root.ca().signer().verifying_key().to_encoded_point(true);
    let app_ca_key = app.ca().signer().verifying_key().to_encoded_point(true);
    let cases: [(&str, &[u8], &str); 10] = [
        (
            "root k256 public key",
            &root.k256_public()[..],
            "02fd9aebade894fed3f329ffcc69d360376ce4867400588db1d27104f602baae0f",
        ),
        (
            "root CA public key",
            root_ca_key.as_bytes(),
            "0250a776cf5ffebe037afa54ab647585c27edfcb551cfdebd1f41a0f8f15f2640a",
        ),
        (
            "root CA SPKI",
            &root.ca().spki_der(),
            "3059301306072a8648ce3d020106082a8648ce3d0301070342000450a776cf5ffebe037afa54ab647585c27edfcb551cfdebd1f41a0f8f15f2640a71aa96e4feab39326d5155f758cf3b850f84d780d548492382ce7cb19db72cc4",
        ),
        (
            "root CA certificate digest",
            &Sha256::digest(root.ca().cert_der())[..],
            "ee51bbc40ef03ee509502c19e096ebb5655f97b45c627f7095952967b2ae3c71",
        ),
        (
            "app k256 public key",
            &app.k256_public()[..],
            "02e90732f8f2570b8962620e631a502b9aa26257972c69fbd7ce7358c89f544522",
        ),
        (
            "KMS signature",
            &app.kms_signature()[..],
            "d257833cadd77fb0626fea372667a210824d7ef4fad08f9e57a90295780780030ff6ed9c7a775056b2080152cf3ed0c075d42e4e1d8c92e075a1bf7ec7be125800",
        ),
        (
            "app CA public key",
            app_ca_key.as_bytes(),
            "024c22d855249af9eb8c75fa0dbb9a5a0178dc09d7ec2f0c50531a65fa5b84515f",
        ),
        (
            "app CA certificate digest",
            &Sha256::digest(app.ca().cert_der())[..],
            "ce976c5853328e531492cc87b6a25075b47c7e208d2a20c74237890781b768e2",
        ),
        (
            "disk key",
            &app.disk_key().expose()[..],
            "d764062634f0c3dcb91f252e65decd27ba4fd8b138db0a6cce965700fa53cede",
        ),
        (
            "env public key",
            &app.env_public()[..],
            "37126ff04edba37ae5b6bff8287432c225bb344ce3c6827ae758e52154cc0b1c",
        ),
    ];
    for (name, got, want) in cases {
        assert_eq!(hex::encode(got), want, "{name}");
    }
    assert_eq!(
        cairn_kms::env_public_key(&master, &APP_ID).unwrap(),
        app.env_public()
    );
}

#[test]
fn kms_signature_recovers_to_the_root_key() {
    let (_, root, app) = derived();
    let signer =
        sig::recover_kms_app_key_signer(APP_ID.as_bytes(), &app.k256_public(), app.kms_signature())
            .unwrap();
    assert_eq!(sig::compressed(&signer), root.k256_public());
    // the signature does not vouch for the key under another app id
    assert_eq!(
        sig::verify_kms_app_key_signature(
            &[0x12; 20],
            &app.k256_public(),
            app.kms_signature(),
            root.k256().verifying_key()
        ),
        Err(cairn_protocol::Error::WrongSigner)
    );
}

#[test]
fn derivation_is_deterministic_and_separates_inputs() {
    let master = master();
    let root = RootKeys::derive(&master).unwrap();
    let again = RootKeys::derive(&master).unwrap();
    assert_eq!(root.ca().cert_der(), again.ca().cert_der());
    assert_eq!(root.k256_public(), again.k256_public());

    let a = AppKeys::derive(&master, &root, &APP_ID, &instance()).unwrap();
    let a2 = AppKeys::derive(&master, &root, &APP_ID, &instance()).unwrap();
    assert_eq!(a.k256_secret(), a2.k256_secret());
    assert_eq!(a.ca().cert_der(), a2.ca().cert_der());
    assert_eq!(a.disk_key(), a2.disk_key());

    // another instance of the same app: same app key, other disk key
    let other_inst =
        cairn_attestation::ids::InstanceId::Id(cairn_attestation::ids::InstanceIdBytes([0x23; 20]));
    let b = AppKeys::derive(&master, &root, &APP_ID, &other_inst).unwrap();
    assert_eq!(a.k256_public(), b.k256_public());
    assert_ne!(a.disk_key(), b.disk_key());
    let none = AppKeys::derive(
        &master,
        &root,
        &APP_ID,
        &cairn_attestation::ids::InstanceId::None,
    )
    .unwrap();
    assert_eq!(
        hex::encode(none.disk_key().expose()),
        "b9640c370fd7e0e56909636b7ad00b6f641a64e7462254f66f148a8ea59dc29d"
    );

    // another app: everything differs
    let c = AppKeys::derive(
        &master,
        &root,
        &cairn_attestation::ids::AppId([0x12; 20]),
        &instance(),
    )
    .unwrap();
    assert_ne!(a.k256_public(), c.k256_public());
    assert_ne!(a.env_public(), c.env_public());
    assert_ne!(a.ca().spki_der(), c.ca().spki_der());

    // another master: another root
    let other = cairn_kms::MasterSecret::from_bytes([0x42; 32]);
    assert_ne!(
        RootKeys::derive(&other).unwrap().k256_public(),
        root.k256_public()
    );
}

#[test]
fn debug_output_never_contains_secrets() {
    let (master, root, app) = derived();
    let text = format!("{master:?} {root:?} {app:?}");
    for secret in [
        okm(label::ROOT_K256, &[]),
        okm(label::ROOT_CA, &[]),
        okm(label::APP_K256, &[APP]),
        okm(label::APP_CA, &[APP]),
        okm(label::DISK, &[APP, INST]),
        okm(label::ENV_X25519, &[APP]),
        hex::encode(master.expose()),
    ] {
        assert!(!text.contains(&secret), "{text}");
    }
    assert!(text.contains("<redacted>"));
}

#[test]
fn env_pubkey_signature_matches_the_vector_and_verifies() {
    let (_, root, app) = derived();
    let signature = root
        .sign_env_pubkey(&APP_ID, 1_700_000_000, &app.env_public())
        .unwrap();
    assert_eq!(
        hex::encode(signature),
        "37d0f0efac3d426005c20c45fae5067e9d23a5bfefc3a92c16ee3a9a27b6fc7558b5fed5bb726ce1518713ed21e96feb867c1be6017d3d09973653a56ec08cf100"
    );
    sig::verify_env_pubkey_signature(
        APP_ID.as_bytes(),
        1_700_000_000,
        &app.env_public(),
        &signature,
        root.k256().verifying_key(),
    )
    .unwrap();
    // a replayed signature with a newer timestamp does not verify
    assert_eq!(
        sig::verify_env_pubkey_signature(
            APP_ID.as_bytes(),
            1_700_000_001,
            &app.env_public(),
            &signature,
            root.k256().verifying_key(),
        ),
        Err(cairn_protocol::Error::WrongSigner)
    );
}

#[test]
fn get_key_signature_chain_matches_the_vector_and_verifies_to_the_root() {
    let (_, root, app) = derived();
    let derived = sig::derive_signed_key(
        &app.k256_secret(),
        b"/wallet/0",
        "ethereum",
        *app.kms_signature(),
    )
    .unwrap();
    let derived_pub = sig::compressed(derived.key.verifying_key());
    // the derived public key agrees with kdf_reference.py ("getkey pub")
    assert_eq!(
        hex::encode(derived_pub),
        "028191e9bfb918873b835a8e7c982f96820c6ea0b74200d9b34c373a8e607353e0"
    );
    assert_eq!(
        hex::encode(derived.app_signature),
        "e1344d740787467b1748ffc7f523db6a25e2fc4c1845b8fef112099bcc95616161dfd2ed57e75b8458963a2b78410d398b42876b8f3e25598844f6bb420aa67600"
    );
    let app_pub = sig::verify_signature_chain(
        APP_ID.as_bytes(),
        "ethereum",
        &derived_pub,
        &derived.app_signature,
        &derived.kms_signature,
        root.k256().verifying_key(),
    )
    .unwrap();
    assert_eq!(sig::compressed(&app_pub), app.k256_public());
}
