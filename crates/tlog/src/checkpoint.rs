//! Checkpoints: the C2SP tlog-checkpoint body inside a C2SP signed note,
//! signed with secp256k1 recoverable ECDSA over `keccak256(body)` so a
//! contract can check it with `ecrecover`. The exact format is in
//! `docs/tlog.md`.

use core::fmt;

use alloy_primitives::{keccak256, Address, B256};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::CheckpointError;
use crate::hash::Hash;

/// Largest signed checkpoint the parser accepts, in bytes.
pub const MAX_CHECKPOINT_LEN: usize = 16 * 1024;
/// Most signature lines a checkpoint may carry.
pub const MAX_SIGNATURES: usize = 16;
/// Longest origin / key name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Signature type byte of Cairn checkpoint keys in the C2SP key ID: `0xff`
/// ("defined elsewhere"), followed by [`SIGNATURE_TYPE_ID`].
pub const SIGNATURE_TYPE: u8 = 0xff;
/// Identifier hashed after [`SIGNATURE_TYPE`] into the key ID.
pub const SIGNATURE_TYPE_ID: &[u8] = b"cairn-secp256k1-keccak256-ecrecover";

const SIG_PREFIX: &str = "\u{2014} ";
const SIG_LEN: usize = 65;

/// An unsigned checkpoint: the log's origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
}

/// Origins and key names: 1..=256 bytes of printable ASCII, no space, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'+')
}

impl Checkpoint {
    /// A checkpoint for `origin` (1..=256 printable ASCII bytes, no space or `+`).
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if !valid_name(origin) {
            return Err(CheckpointError::InvalidName);
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// The note body: `<origin>\n<size>\n<base64 root>\n`. These exact bytes
    /// are what the signatures cover.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.0)
        )
    }

    /// `keccak256(body)`: the digest a signer signs and `ecrecover` takes.
    pub fn digest(&self) -> B256 {
        keccak256(self.body().as_bytes())
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        // `body` ends with '\n' (split point), so the last split piece is empty.
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() != 4 || lines.last().is_some_and(|l| !l.is_empty()) {
            return Err(CheckpointError::BodyLines {
                lines: lines.len().saturating_sub(1),
            });
        }
        let origin = lines[0];
        if !valid_name(origin) {
            return Err(CheckpointError::InvalidName);
        }
        let size = parse_decimal(lines[1]).ok_or(CheckpointError::InvalidSize)?;
        let root = parse_root(lines[2]).ok_or(CheckpointError::InvalidRoot)?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// Canonical decimal: `0`, or a non-zero digit then digits; fits `u64`.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Canonical standard base64 (with padding) of exactly 32 bytes.
fn parse_root(s: &str) -> Option<Hash> {
    if s.len() != 44 {
        return None;
    }
    let bytes = BASE64.decode(s).ok()?;
    let hash = Hash::from_slice(&bytes)?;
    (BASE64.encode(hash.0) == s).then_some(hash)
}

/// One signature line of a signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub key_name: String,
    /// The 4-byte key ID (see [`key_id`]).
    pub key_id: [u8; 4],
    /// The signature bytes after the key ID; 65 bytes `r ‖ s ‖ v` for
    /// Cairn keys, anything for keys of other types.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    fn line(&self) -> String {
        let mut blob = Vec::with_capacity(4 + self.signature.len());
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.key_name, BASE64.encode(blob))
    }

    fn parse(line: &str, n: usize) -> Result<Self, CheckpointError> {
        let bad = CheckpointError::InvalidSignatureLine { line: n };
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(bad.clone())?;
        let (name, b64) = rest.split_once(' ').ok_or(bad.clone())?;
        if !valid_name(name) || b64.is_empty() {
            return Err(bad);
        }
        let blob = BASE64.decode(b64).map_err(|_| bad.clone())?;
        if blob.len() < 5 || BASE64.encode(&blob) != b64 {
            return Err(bad);
        }
        let (id, sig) = blob.split_at(4);
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(id);
        Ok(NoteSignature {
            key_name: name.to_owned(),
            key_id,
            signature: sig.to_vec(),
        })
    }
}

/// A checkpoint with its signature lines: the C2SP signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    signatures: Vec<NoteSignature>,
}

impl SignedCheckpoint {
    /// The checkpoint. Not yet trustworthy unless obtained from
    /// [`CheckpointVerifier::open`] or checked with [`SignedCheckpoint::verify`].
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signature lines, in note order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Parses a signed checkpoint without verifying any signature.
    ///
    /// Rejects: more than [`MAX_CHECKPOINT_LEN`] bytes, non-UTF-8 or control
    /// characters, a body other than exactly origin/size/root, non-canonical
    /// size or root, malformed or duplicate signature lines, zero or more
    /// than [`MAX_SIGNATURES`] signatures, anything after the last line.
    pub fn parse(text: &[u8]) -> Result<Self, CheckpointError> {
        if text.len() > MAX_CHECKPOINT_LEN {
            return Err(CheckpointError::TooLong {
                len: text.len(),
                max: MAX_CHECKPOINT_LEN,
            });
        }
        let text = core::str::from_utf8(text).map_err(|_| CheckpointError::NotText)?;
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(CheckpointError::NotText);
        }
        let split = text
            .rfind("\n\n")
            .ok_or(CheckpointError::MissingSignatureBlock)?;
        let (body, sigs) = (&text[..=split], &text[split + 2..]);
        let checkpoint = Checkpoint::parse_body(body)?;
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(CheckpointError::SignatureCount {
                count: 0,
                max: MAX_SIGNATURES,
            });
        };
        let lines: Vec<&str> = sigs.split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(CheckpointError::SignatureCount {
                count: lines.len(),
                max: MAX_SIGNATURES,
            });
        }
        let mut signatures: Vec<NoteSignature> = Vec::with_capacity(lines.len());
        for (n, line) in lines.iter().enumerate() {
            let sig = NoteSignature::parse(line, n)?;
            if signatures
                .iter()
                .any(|s| s.key_name == sig.key_name && s.key_id == sig.key_id)
            {
                return Err(CheckpointError::DuplicateSignature);
            }
            signatures.push(sig);
        }
        Ok(SignedCheckpoint {
            checkpoint,
            signatures,
        })
    }

    /// Checks the signature of `verifier`'s key and the origin. Signatures
    /// of other keys are ignored, as C2SP signed-note requires.
    pub fn verify(&self, verifier: &CheckpointVerifier) -> Result<(), CheckpointError> {
        if self.checkpoint.origin != verifier.origin {
            return Err(CheckpointError::OriginMismatch);
        }
        let sig = self
            .signatures
            .iter()
            .find(|s| s.key_name == verifier.origin && s.key_id == verifier.key_id)
            .ok_or(CheckpointError::NoMatchingSignature)?;
        let recovered = recover(&self.checkpoint.digest(), &sig.signature)?;
        if recovered != verifier.address {
            return Err(CheckpointError::SignerMismatch {
                expected: verifier.address,
                recovered,
            });
        }
        Ok(())
    }

    /// Adds a signature line (e.g. a witness cosignature).
    pub fn push_signature(&mut self, sig: NoteSignature) -> Result<(), CheckpointError> {
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(CheckpointError::SignatureCount {
                count: self.signatures.len() + 1,
                max: MAX_SIGNATURES,
            });
        }
        if !valid_name(&sig.key_name) || sig.signature.is_empty() {
            return Err(CheckpointError::InvalidName);
        }
        if self
            .signatures
            .iter()
            .any(|s| s.key_name == sig.key_name && s.key_id == sig.key_id)
        {
            return Err(CheckpointError::DuplicateSignature);
        }
        self.signatures.push(sig);
        Ok(())
    }
}

impl fmt::Display for SignedCheckpoint {
    /// The signed note text: body, blank line, signature lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.checkpoint.body())?;
        f.write_str("\n")?;
        for sig in &self.signatures {
            f.write_str(&sig.line())?;
        }
        Ok(())
    }
}

/// Recovers the signer address of a 65-byte `r ‖ s ‖ v` signature over
/// `digest`, with `v` ∈ {27, 28} and `s` in the lower half of the order
/// (the same rules as OpenZeppelin's `ECDSA.recover`).
fn recover(digest: &B256, sig: &[u8]) -> Result<Address, CheckpointError> {
    if sig.len() != SIG_LEN {
        return Err(CheckpointError::SignatureLength { len: sig.len() });
    }
    let v = sig[64];
    let recid = match v {
        27 => RecoveryId::new(false, false),
        28 => RecoveryId::new(true, false),
        _ => return Err(CheckpointError::InvalidRecoveryByte { v }),
    };
    let signature =
        Signature::from_slice(&sig[..64]).map_err(|_| CheckpointError::InvalidSignature)?;
    if signature.normalize_s().is_some() {
        return Err(CheckpointError::HighS);
    }
    let key = VerifyingKey::recover_from_prehash(digest.as_slice(), &signature, recid)
        .map_err(|_| CheckpointError::InvalidSignature)?;
    Ok(address_of(&key))
}

/// The Ethereum address of a secp256k1 public key.
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // Uncompressed SEC1: 0x04 ‖ x ‖ y; the address hashes x ‖ y.
    let hash = keccak256(&point.as_bytes()[1..]);
    Address::from_slice(&hash[12..])
}

/// The C2SP signed-note key ID of a Cairn checkpoint key:
/// `SHA-256(name ‖ 0x0a ‖ 0xff ‖ "cairn-secp256k1-keccak256-ecrecover" ‖ address)[..4]`.
pub fn key_id(name: &str, address: &Address) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', SIGNATURE_TYPE]);
    h.update(SIGNATURE_TYPE_ID);
    h.update(address.as_slice());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs checkpoints of one log with a secp256k1 key (a KMS node key).
/// The key name is the log's origin.
pub struct CheckpointSigner {
    origin: String,
    key: SigningKey,
    address: Address,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("origin", &self.origin)
            .field("address", &self.address)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl CheckpointSigner {
    /// A signer for the log `origin` (also the key name).
    pub fn new(origin: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        if !valid_name(origin) {
            return Err(CheckpointError::InvalidName);
        }
        let address = address_of(key.verifying_key());
        Ok(CheckpointSigner {
            origin: origin.to_owned(),
            key,
            address,
        })
    }

    /// The log origin and key name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The signer's Ethereum address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The verifier matching this signer.
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            origin: self.origin.clone(),
            address: self.address,
            key_id: key_id(&self.origin, &self.address),
        }
    }

    /// Signs `checkpoint` (whose origin must be this signer's).
    pub fn sign(&self, checkpoint: Checkpoint) -> Result<SignedCheckpoint, CheckpointError> {
        if checkpoint.origin != self.origin {
            return Err(CheckpointError::OriginMismatch);
        }
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(checkpoint.digest().as_slice())
            .map_err(|_| CheckpointError::Signing)?;
        let mut bytes = Vec::with_capacity(SIG_LEN);
        bytes.extend_from_slice(&sig.to_bytes());
        bytes.push(27 + u8::from(recid.is_y_odd()));
        let signature = NoteSignature {
            key_name: self.origin.clone(),
            key_id: key_id(&self.origin, &self.address),
            signature: bytes,
        };
        Ok(SignedCheckpoint {
            checkpoint,
            signatures: vec![signature],
        })
    }
}

/// Verifies checkpoints of one log: its origin and its signer's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointVerifier {
    origin: String,
    address: Address,
    key_id: [u8; 4],
}

impl CheckpointVerifier {
    /// A verifier for the log `origin` signed by `address`.
    pub fn new(origin: &str, address: Address) -> Result<Self, CheckpointError> {
        if !valid_name(origin) {
            return Err(CheckpointError::InvalidName);
        }
        Ok(CheckpointVerifier {
            origin: origin.to_owned(),
            address,
            key_id: key_id(origin, &address),
        })
    }

    /// The expected signer.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The key ID signatures of this key carry.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// Parses and verifies a signed checkpoint; returns it only if valid.
    pub fn open(&self, text: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let signed = SignedCheckpoint::parse(text)?;
        signed.verify(self)?;
        Ok(signed.checkpoint)
    }
}
