//! Signed checkpoints: format, signing, verification and hostile input.

use alloy_primitives::{keccak256, Address};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use cairn_tlog::{
    address_of, key_id, Checkpoint, CheckpointError, CheckpointSigner, CheckpointVerifier, Hash,
    Log, NoteSignature, SignedCheckpoint, MAX_CHECKPOINT_LEN,
};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use proptest::prelude::*;

pub const ORIGIN: &str = "cairn.example/kms-node-1";

/// The fixed test key of docs/tlog.md: scalar 0x11 repeated 32 times.
pub fn test_key() -> SigningKey {
    SigningKey::from_slice(&[0x11; 32]).expect("valid scalar")
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::new(ORIGIN, test_key()).expect("signer")
}

fn sample() -> Checkpoint {
    let root = Hash(keccak256(b"cairn test root").0);
    Checkpoint::new(ORIGIN, 42, root).expect("checkpoint")
}

/// The docs/tlog.md test vector: `sample()` signed by `test_key()`.
const VECTOR: &str = "cairn.example/kms-node-1\n42\np9+VPuTit8HQJt30zRDKuJvrNmLPf9nqXZBdpp6KbWU=\n\n\u{2014} cairn.example/kms-node-1 fr9Pd9lo/GgMHYEhCnTZFmTFtYP6CaG9Zg0gxDyGSuBmTSL1cjVMsESR8pToVSpErdy+VnI5n8DXP1s9hQJtmlgKKfAb\n";
const VECTOR_ADDRESS: &str = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A";
const VECTOR_KEY_ID: &str = "7ebf4f77";
const VECTOR_DIGEST: &str = "0x8fa0ac2fe00cc4bf52e1855b98d05a52f43efa889f424df0515f73813efbe6b1";

#[test]
fn signed_checkpoint_matches_the_documented_vector() {
    let signed = signer().sign(sample()).expect("sign");
    assert_eq!(signed.to_string(), VECTOR);
    assert_eq!(signer().address().to_checksum(None), VECTOR_ADDRESS);
    assert_eq!(hex::encode(signer().verifier().key_id()), VECTOR_KEY_ID);
    assert_eq!(sample().digest().to_string(), VECTOR_DIGEST);
    let verifier = CheckpointVerifier::new(ORIGIN, VECTOR_ADDRESS.parse().expect("address"))
        .expect("verifier");
    assert_eq!(verifier.open(VECTOR.as_bytes()), Ok(sample()));
}

#[test]
fn checkpoint_round_trips_and_verifies() {
    let s = signer();
    let text = s.sign(sample()).expect("sign").to_string();
    let opened = s
        .verifier()
        .open(text.as_bytes())
        .expect("valid checkpoint");
    assert_eq!(opened, sample());
    assert_eq!(opened.size(), 42);
    assert_eq!(opened.origin(), ORIGIN);
}

#[test]
fn body_is_origin_size_base64_root() {
    let c = sample();
    let expected = format!("{ORIGIN}\n42\n{}\n", BASE64.encode(c.root().0));
    assert_eq!(c.body(), expected);
    assert_eq!(c.digest(), keccak256(expected.as_bytes()));
}

/// What a contract does: `ecrecover(keccak256(body), v, r, s)`.
#[test]
fn signature_is_ecrecoverable_over_keccak_of_body() {
    let signed = signer().sign(sample()).expect("sign");
    let sig = &signed.signatures()[0];
    assert_eq!(sig.key_name, ORIGIN);
    assert_eq!(sig.signature.len(), 65);
    let v = sig.signature[64];
    assert!(v == 27 || v == 28);
    let rs = Signature::from_slice(&sig.signature[..64]).expect("r, s");
    let recid = RecoveryId::new(v == 28, false);
    let key = VerifyingKey::recover_from_prehash(sample().digest().as_slice(), &rs, recid)
        .expect("recovers");
    assert_eq!(address_of(&key), signer().address());
    assert_eq!(sig.key_id, key_id(ORIGIN, &signer().address()));
}

#[test]
fn log_checkpoint_commits_to_the_log_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path()).expect("open");
    log.append_batch(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
        .expect("append");
    let text = log.checkpoint(&signer()).expect("checkpoint").to_string();
    let c = signer().verifier().open(text.as_bytes()).expect("verifies");
    assert_eq!((c.size(), c.root()), log.head());
}

#[test]
fn checkpoint_from_another_signer_is_rejected() {
    let other = CheckpointSigner::new(ORIGIN, SigningKey::from_slice(&[0x22; 32]).expect("k"))
        .expect("signer");
    let text = other.sign(sample()).expect("sign").to_string();
    // Same name, other key: the key ID differs, so no signature matches.
    assert_eq!(
        signer().verifier().open(text.as_bytes()),
        Err(CheckpointError::NoMatchingSignature)
    );
    // An attacker who copies our key ID into their line is caught by ecrecover.
    let mut signed = SignedCheckpoint::parse(text.as_bytes()).expect("parse");
    let mut forged = signed.signatures()[0].clone();
    forged.key_id = signer().verifier().key_id();
    signed = SignedCheckpoint::parse(
        format!(
            "{}\n{}",
            sample().body(),
            line(&forged.key_name, forged.key_id, &forged.signature)
        )
        .as_bytes(),
    )
    .expect("parse");
    assert_eq!(
        signed.verify(&signer().verifier()),
        Err(CheckpointError::SignerMismatch {
            expected: signer().address(),
            recovered: other.address(),
        })
    );
}

fn line(name: &str, id: [u8; 4], sig: &[u8]) -> String {
    let mut blob = id.to_vec();
    blob.extend_from_slice(sig);
    format!("\u{2014} {name} {}\n", BASE64.encode(blob))
}

fn signed_text(body: &str) -> String {
    // Sign the body as-is, so only the parser's checks can reject it.
    let digest = keccak256(body.as_bytes());
    let (sig, recid) = test_key()
        .sign_prehash_recoverable(digest.as_slice())
        .expect("sign");
    let mut bytes = sig.to_bytes().to_vec();
    bytes.push(27 + u8::from(recid.is_y_odd()));
    format!(
        "{body}\n{}",
        line(ORIGIN, key_id(ORIGIN, &signer().address()), &bytes)
    )
}

#[test]
fn tampered_size_or_root_fails_signature_check() {
    let text = signer().sign(sample()).expect("sign").to_string();
    let tampered = text.replacen("\n42\n", "\n43\n", 1);
    let err = signer()
        .verifier()
        .open(tampered.as_bytes())
        .expect_err("tampered");
    assert!(
        matches!(
            err,
            CheckpointError::SignerMismatch { .. } | CheckpointError::InvalidSignature
        ),
        "{err:?}"
    );
}

#[test]
fn non_canonical_sizes_are_rejected() {
    let root = BASE64.encode(sample().root().0);
    for size in [
        "042",
        "+42",
        "-1",
        " 42",
        "42 ",
        "0x2a",
        "",
        "18446744073709551616",
        "4 2",
    ] {
        let text = signed_text(&format!("{ORIGIN}\n{size}\n{root}\n"));
        assert_eq!(
            SignedCheckpoint::parse(text.as_bytes()),
            Err(CheckpointError::InvalidSize),
            "size {size:?}"
        );
    }
    let max = signed_text(&format!("{ORIGIN}\n18446744073709551615\n{root}\n"));
    let c = signer()
        .verifier()
        .open(max.as_bytes())
        .expect("u64::MAX is canonical");
    assert_eq!(c.size(), u64::MAX);
}

#[test]
fn non_canonical_roots_are_rejected() {
    let good = BASE64.encode(sample().root().0);
    let unpadded = good.trim_end_matches('=').to_owned();
    let url_safe = base64::engine::general_purpose::URL_SAFE.encode([0xfb; 32]);
    // Flip the unused low bits of the last base64 digit.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut dirty = good.clone().into_bytes();
    let digit = ALPHABET
        .iter()
        .position(|c| *c == dirty[42])
        .expect("base64 digit");
    dirty[42] = ALPHABET[digit ^ 1];
    let dirty = String::from_utf8(dirty).expect("ascii");
    let short = BASE64.encode([1u8; 31]);
    for root in [unpadded, url_safe, dirty, short, format!("{good}=")] {
        let text = signed_text(&format!("{ORIGIN}\n42\n{root}\n"));
        assert_eq!(
            SignedCheckpoint::parse(text.as_bytes()),
            Err(CheckpointError::InvalidRoot),
            "root {root:?}"
        );
    }
}

#[test]
fn malformed_notes_are_rejected_with_precise_errors() {
    let good = signer().sign(sample()).expect("sign").to_string();
    let parse = |t: &str| SignedCheckpoint::parse(t.as_bytes());
    // Trailing garbage after the last signature line.
    assert_eq!(
        parse(&format!("{good}junk")),
        Err(CheckpointError::SignatureCount { count: 0, max: 16 })
    );
    assert!(matches!(
        parse(&format!("{good}junk\n")),
        Err(CheckpointError::InvalidSignatureLine { line: 1 })
    ));
    // No signatures, no blank line.
    assert_eq!(
        parse(&sample().body()),
        Err(CheckpointError::MissingSignatureBlock)
    );
    assert_eq!(
        parse(&format!("{}\n", sample().body())),
        Err(CheckpointError::SignatureCount { count: 0, max: 16 })
    );
    // Extension lines are not part of Cairn's profile.
    let ext = format!("{}extension\n", sample().body());
    assert_eq!(
        parse(&signed_text(&ext)),
        Err(CheckpointError::BodyLines { lines: 4 })
    );
    // Control characters and invalid UTF-8.
    assert_eq!(
        parse(&good.replacen('\n', "\r\n", 1)),
        Err(CheckpointError::NotText)
    );
    assert_eq!(
        SignedCheckpoint::parse(b"\xff\xfe\n1\nroot\n\n"),
        Err(CheckpointError::NotText)
    );
    // Spaces or '+' in the origin.
    let root = BASE64.encode(sample().root().0);
    for origin in ["has space", "a+b", ""] {
        assert_eq!(
            parse(&signed_text(&format!("{origin}\n1\n{root}\n"))),
            Err(CheckpointError::InvalidName),
            "origin {origin:?}"
        );
    }
    // A signature line with an ASCII dash, or bad base64.
    assert!(matches!(
        parse(&good.replacen('\u{2014}', "-", 1)),
        Err(CheckpointError::InvalidSignatureLine { line: 0 })
    ));
    let sig_start = good.rfind(' ').expect("space") + 1;
    let mut bad_b64 = good.clone();
    bad_b64.insert(sig_start, '!');
    assert!(matches!(
        parse(&bad_b64),
        Err(CheckpointError::InvalidSignatureLine { line: 0 })
    ));
    // Duplicate signature lines.
    let sig_line = &good[good.find('\u{2014}').expect("sig")..];
    assert_eq!(
        parse(&format!("{good}{sig_line}")),
        Err(CheckpointError::DuplicateSignature)
    );
    // Too long.
    let long = format!("{good}{}", "x".repeat(MAX_CHECKPOINT_LEN));
    assert!(matches!(
        parse(&long),
        Err(CheckpointError::TooLong {
            max: MAX_CHECKPOINT_LEN,
            ..
        })
    ));
}

#[test]
fn too_many_signatures_are_rejected() {
    let mut text = sample().body();
    text.push('\n');
    for i in 0..17u8 {
        text.push_str(&line(&format!("witness{i}"), [i; 4], &[1; 64]));
    }
    assert_eq!(
        SignedCheckpoint::parse(text.as_bytes()),
        Err(CheckpointError::SignatureCount { count: 17, max: 16 })
    );
}

#[test]
fn unknown_cosignatures_are_ignored() {
    let mut signed = signer().sign(sample()).expect("sign");
    signed
        .push_signature(NoteSignature {
            key_name: "witness.example".into(),
            key_id: [9; 4],
            signature: vec![7; 64],
        })
        .expect("cosignature");
    let text = signed.to_string();
    assert_eq!(signer().verifier().open(text.as_bytes()), Ok(sample()));
}

fn with_signature_bytes(edit: impl Fn(&mut Vec<u8>)) -> String {
    let signed = signer().sign(sample()).expect("sign");
    let mut sig = signed.signatures()[0].signature.clone();
    edit(&mut sig);
    format!(
        "{}\n{}",
        sample().body(),
        line(ORIGIN, signer().verifier().key_id(), &sig)
    )
}

#[test]
fn malleable_and_malformed_signatures_are_rejected() {
    let verifier = signer().verifier();
    // High-s twin of a valid signature: (r, n - s, v ^ 1) also ecrecovers,
    // so it must be rejected like OpenZeppelin's ECDSA does.
    let high_s = with_signature_bytes(|sig| {
        let s = Signature::from_slice(&sig[..64]).expect("sig");
        let (r, s_low) = s.split_scalars();
        let flipped = Signature::from_scalars(r, -*s_low).expect("sig");
        sig[..64].copy_from_slice(&flipped.to_bytes());
        sig[64] = if sig[64] == 27 { 28 } else { 27 };
    });
    assert_eq!(
        verifier.open(high_s.as_bytes()),
        Err(CheckpointError::HighS)
    );
    for v in [0u8, 1, 29, 255] {
        let text = with_signature_bytes(|sig| sig[64] = v);
        assert_eq!(
            verifier.open(text.as_bytes()),
            Err(CheckpointError::InvalidRecoveryByte { v })
        );
    }
    let short = with_signature_bytes(|sig| {
        sig.pop();
    });
    assert_eq!(
        verifier.open(short.as_bytes()),
        Err(CheckpointError::SignatureLength { len: 64 })
    );
    let zero_r = with_signature_bytes(|sig| sig[..32].fill(0));
    assert_eq!(
        verifier.open(zero_r.as_bytes()),
        Err(CheckpointError::InvalidSignature)
    );
}

#[test]
fn origin_must_match_the_verifier() {
    let other_origin = "cairn.example/kms-node-2";
    let s = CheckpointSigner::new(other_origin, test_key()).expect("signer");
    let c = Checkpoint::new(other_origin, 1, Hash::EMPTY_ROOT).expect("checkpoint");
    let text = s.sign(c).expect("sign").to_string();
    assert_eq!(
        signer().verifier().open(text.as_bytes()),
        Err(CheckpointError::OriginMismatch)
    );
    assert_eq!(
        signer().sign(Checkpoint::new(other_origin, 1, Hash::EMPTY_ROOT).expect("c")),
        Err(CheckpointError::OriginMismatch)
    );
    assert_eq!(
        CheckpointVerifier::new("bad origin", Address::ZERO),
        Err(CheckpointError::InvalidName)
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_checkpoint_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignedCheckpoint::parse(&bytes);
        let _ = signer().verifier().open(&bytes);
    }

    #[test]
    fn mutated_checkpoints_never_panic_and_never_verify_with_another_size(
        pos in 0usize..400, byte in any::<u8>(),
    ) {
        let text = signer().sign(sample()).expect("sign").to_string().into_bytes();
        let mut bad = text.clone();
        let pos = pos % bad.len();
        bad[pos] = byte;
        if let Ok(c) = signer().verifier().open(&bad) {
            // Only a no-op mutation may still verify.
            prop_assert_eq!(c, sample());
        }
    }
}
