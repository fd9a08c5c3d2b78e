//! Keys derived from a master secret (DESIGN.md §5, docs/kdf.md).
//!
//! - [`RootKeys`]: the root secp256k1 key (registered on chain; signs app keys and env
//!   public keys) and the root CA (P-256, self-signed certificate).
//! - [`AppKeys`]: for one `(app_id, instance_id)`: the app secp256k1 key with the KMS
//!   signature over it (FORMATS.md), the app CA (P-256, certificate issued by the root CA
//!   with usage `app:ca`), the disk key and the env X25519 secret.
//!
//! Everything here is a pure function of the master secret and the identities: the
//! certificates too, because their validity window and serial number are fixed by
//! construction and ECDSA signatures are deterministic (RFC 6979).

use std::fmt;

use cairn_attestation::ids::{AppId, InstanceId};
use cairn_attestation::{ra_tls_extensions, ExtensionValues, Usage};
use cairn_protocol::sig::{self, RecoverableSignature, COMPRESSED_PUBKEY_LEN};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePrivateKey as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SerialNumber, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kdf::{self, label, DerivedSecret, MasterSecret};

/// Common name of the root CA certificate.
pub const ROOT_CA_COMMON_NAME: &str = "Cairn KMS Root CA";
/// Common-name prefix of an app CA certificate (followed by `0x` + app id hex).
pub const APP_CA_COMMON_NAME_PREFIX: &str = "Cairn App CA ";
/// Organization of every KMS-issued CA certificate.
pub const CA_ORGANIZATION: &str = "Cairn";
/// `notBefore` of every derived CA certificate: 2025-01-01T00:00:00Z.
pub const CA_NOT_BEFORE_YMD: (i32, u8, u8) = (2025, 1, 1);
/// `notAfter` of every derived CA certificate: 2125-01-01T00:00:00Z. Key rotation is a
/// new key generation, not a certificate renewal.
pub const CA_NOT_AFTER_YMD: (i32, u8, u8) = (2125, 1, 1);

/// A P-256 key usable as an rcgen signer, with deterministic (RFC 6979) ECDSA-SHA256.
#[derive(Clone)]
pub struct P256Signer {
    key: p256::ecdsa::SigningKey,
    public_sec1: Vec<u8>,
}

impl P256Signer {
    /// Wrap a P-256 signing key.
    pub fn new(key: p256::ecdsa::SigningKey) -> Self {
        let public_sec1 = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        P256Signer { key, public_sec1 }
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> &p256::ecdsa::VerifyingKey {
        self.key.verifying_key()
    }

    /// The private key as PKCS#8 DER (for a TLS server key).
    pub fn pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let doc = self.key.to_pkcs8_der().map_err(Error::KeyEncoding)?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }
}

impl fmt::Debug for P256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P256Signer")
            .field("key", &"<redacted>")
            .field("public", &hex::encode(&self.public_sec1))
            .finish()
    }
}

impl PublicKeyData for P256Signer {
    fn der_bytes(&self) -> &[u8] {
        &self.public_sec1
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for P256Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

/// Serial number of a derived CA certificate: SHA-256(SPKI DER)[0..16], top bit cleared
/// (positive) and bit 6 of the first byte set (always 16 bytes long).
fn serial_for(spki_der: &[u8]) -> SerialNumber {
    let digest = Sha256::digest(spki_der);
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&digest[..16]);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&serial)
}

fn ca_params(common_name: &str, spki_der: &[u8], path_len: Option<u8>) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.serial_number = Some(serial_for(spki_der));
    let (y, m, d) = CA_NOT_BEFORE_YMD;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = CA_NOT_AFTER_YMD;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn cert_err(e: rcgen::Error) -> Error {
    Error::Certificate(e)
}

/// A CA: its key, certificate and the parameters an [`Issuer`] needs.
#[derive(Clone)]
pub struct CaKeys {
    signer: P256Signer,
    params: CertificateParams,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl CaKeys {
    /// The CA key.
    pub fn signer(&self) -> &P256Signer {
        &self.signer
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// DER SubjectPublicKeyInfo of the CA key (its hex is the `key_provider` id).
    pub fn spki_der(&self) -> Vec<u8> {
        self.signer.subject_public_key_info()
    }

    /// An rcgen issuer that signs certificates with this CA.
    pub fn issuer(&self) -> Issuer<'static, P256Signer> {
        Issuer::new(self.params.clone(), self.signer.clone())
    }
}

cairn_protocol::redacted_debug!(CaKeys { signer, .. });

/// The root keys of one key generation.
#[derive(Clone)]
pub struct RootKeys {
    k256: k256::ecdsa::SigningKey,
    ca: CaKeys,
}

cairn_protocol::redacted_debug!(RootKeys {
    k256: redacted,
    k256_public(): bare_hex,
    ca
});

impl RootKeys {
    /// Derive the root keys (labels `root-k256` and `root-ca`) and the root CA certificate.
    pub fn derive(master: &MasterSecret) -> Result<Self> {
        let k256 = kdf::derive_k256(master, label::ROOT_K256, &[])?;
        let signer = P256Signer::new(kdf::derive_p256(master, label::ROOT_CA, &[])?);
        let params = ca_params(ROOT_CA_COMMON_NAME, &signer.subject_public_key_info(), None);
        let cert = params.self_signed(&signer).map_err(cert_err)?;
        Ok(RootKeys {
            k256,
            ca: CaKeys {
                signer,
                params,
                cert_der: cert.der().to_vec(),
                cert_pem: cert.pem(),
            },
        })
    }

    /// The root secp256k1 key.
    pub fn k256(&self) -> &k256::ecdsa::SigningKey {
        &self.k256
    }

    /// The root secp256k1 public key, compressed (as registered on chain).
    pub fn k256_public(&self) -> [u8; COMPRESSED_PUBKEY_LEN] {
        sig::compressed(self.k256.verifying_key())
    }

    /// The root CA.
    pub fn ca(&self) -> &CaKeys {
        &self.ca
    }

    /// The KMS signature over an app key (FORMATS.md): recoverable, by the root k256 key,
    /// over `keccak256("dstack-kms-issued:" ‖ app_id ‖ compressed app pubkey)`.
    pub fn sign_app_key(
        &self,
        app_id: &AppId,
        app_pubkey: &[u8; COMPRESSED_PUBKEY_LEN],
    ) -> Result<RecoverableSignature> {
        let msg = sig::kms_app_key_message(app_id.as_bytes(), app_pubkey);
        Ok(sig::sign_recoverable(&self.k256, &msg)?)
    }

    /// The signature over an app's env public key at `timestamp` (docs/protocol.md).
    pub fn sign_env_pubkey(
        &self,
        app_id: &AppId,
        timestamp: u64,
        public_key: &[u8; 32],
    ) -> Result<RecoverableSignature> {
        let msg = sig::env_pubkey_message(app_id.as_bytes(), timestamp, public_key);
        Ok(sig::sign_recoverable(&self.k256, &msg)?)
    }
}

/// The keys of one app instance.
#[derive(Clone)]
pub struct AppKeys {
    k256: k256::ecdsa::SigningKey,
    kms_signature: RecoverableSignature,
    ca: CaKeys,
    disk_key: DerivedSecret,
    env_secret: StaticSecret,
}

cairn_protocol::redacted_debug!(AppKeys {
    k256: redacted,
    k256_public(): bare_hex,
    ca,
    disk_key,
    env_secret: redacted,
    ..
});

impl AppKeys {
    /// Derive the keys of `(app_id, instance_id)`: `app-k256(app_id)` with the KMS
    /// signature, `app-ca(app_id)` with a certificate from the root CA,
    /// `disk(app_id, instance_id)` (an empty instance id is an empty part) and
    /// `env-x25519(app_id)`.
    pub fn derive(
        master: &MasterSecret,
        root: &RootKeys,
        app_id: &AppId,
        instance_id: &InstanceId,
    ) -> Result<Self> {
        let app: &[u8] = app_id.as_bytes();
        let k256 = kdf::derive_k256(master, label::APP_K256, &[app])?;
        let kms_signature = root.sign_app_key(app_id, &sig::compressed(k256.verifying_key()))?;

        let signer = P256Signer::new(kdf::derive_p256(master, label::APP_CA, &[app])?);
        let common_name = format!("{APP_CA_COMMON_NAME_PREFIX}0x{}", app_id.to_hex());
        let mut params = ca_params(&common_name, &signer.subject_public_key_info(), Some(0));
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = ra_tls_extensions(ExtensionValues {
            app_id: Some(app_id.as_bytes()),
            usage: Some(Usage::AppCa),
            ..ExtensionValues::default()
        });
        let cert = params
            .signed_by(&signer, &root.ca.issuer())
            .map_err(cert_err)?;

        let disk_key = kdf::derive_bytes(master, label::DISK, &[app, instance_id.as_bytes()])?;
        let env = kdf::derive_bytes(master, label::ENV_X25519, &[app])?;
        let env_secret = StaticSecret::from(*env.expose());
        Ok(AppKeys {
            k256,
            kms_signature,
            ca: CaKeys {
                signer,
                params,
                cert_der: cert.der().to_vec(),
                cert_pem: cert.pem(),
            },
            disk_key,
            env_secret,
        })
    }

    /// The app secp256k1 key.
    pub fn k256(&self) -> &k256::ecdsa::SigningKey {
        &self.k256
    }

    /// The app secp256k1 public key, compressed.
    pub fn k256_public(&self) -> [u8; COMPRESSED_PUBKEY_LEN] {
        sig::compressed(self.k256.verifying_key())
    }

    /// The app key's secret bytes (for the app-key response).
    pub fn k256_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.k256.to_bytes().into())
    }

    /// The KMS root signature over the app key.
    pub fn kms_signature(&self) -> &RecoverableSignature {
        &self.kms_signature
    }

    /// The app CA (certificate issued by the root CA, usage `app:ca`).
    pub fn ca(&self) -> &CaKeys {
        &self.ca
    }

    /// The disk encryption key.
    pub fn disk_key(&self) -> &DerivedSecret {
        &self.disk_key
    }

    /// The env X25519 secret.
    pub fn env_secret(&self) -> &StaticSecret {
        &self.env_secret
    }

    /// The env X25519 public key (what `env-pubkey` serves).
    pub fn env_public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.env_secret).to_bytes()
    }
}

/// The env X25519 public key of `app_id` alone (no app CA or signature work).
pub fn env_public_key(master: &MasterSecret, app_id: &AppId) -> Result<[u8; 32]> {
    let env = kdf::derive_bytes(master, label::ENV_X25519, &[app_id.as_bytes()])?;
    Ok(x25519_dalek::PublicKey::from(&StaticSecret::from(*env.expose())).to_bytes())
}
