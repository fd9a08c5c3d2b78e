//! Identity newtypes and their derivations (DESIGN.md §2, bit-exact with dstack).
//!
//! | type | definition |
//! |---|---|
//! | [`ComposeHash`] | SHA-256 of the exact bytes of `app-compose.json` |
//! | [`AppId`] | the AppAuth contract address; without one, `compose_hash[0..20]` |
//! | [`InstanceId`] | SHA-256(instance_id_seed ‖ app_id)[0..20]; empty with `no_instance_id` |
//! | [`DeviceId`] | SHA-256(PPID from the verified PCK certificate) |
//! | [`OsImageHash`] | SHA-256 of the OS image's measurement manifest |
//! | [`KeyProvider`] | JSON `{"name":"kms","id":"<hex of KMS root CA SPKI>"}` |
//! | [`MrSystem`] | SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ SHA-256(key_provider)) |
//! | [`MrAggregated`] | SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3) |

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

macro_rules! bytes_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Build from a slice of exactly [`Self::LEN`] bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }

            /// Lowercase hex without `0x`.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parse hex, with or without a `0x` prefix.
            pub fn from_hex(s: &str) -> Option<Self> {
                let s = s.strip_prefix("0x").unwrap_or(s);
                if s.len() != 2 * $len {
                    return None;
                }
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(b: [u8; $len]) -> Self {
                Self(b)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::from_hex(&s).ok_or_else(|| {
                    serde::de::Error::custom(concat!("expected ", stringify!($len), " hex bytes"))
                })
            }
        }
    };
}

bytes_newtype!(
    /// An app id: the app's AppAuth contract address (20 bytes).
    AppId, 20
);
bytes_newtype!(
    /// SHA-256 of the exact bytes of `app-compose.json`.
    ComposeHash, 32
);
bytes_newtype!(
    /// A 20-byte instance id.
    InstanceIdBytes, 20
);
bytes_newtype!(
    /// SHA-256 of the PPID in the verified PCK certificate.
    DeviceId, 32
);
bytes_newtype!(
    /// SHA-256 of an OS image's measurement manifest.
    OsImageHash, 32
);
bytes_newtype!(
    /// A 48-byte TDX measurement register value (MRTD, RTMR0..3) or SHA-384 digest.
    Measurement48, 48
);
bytes_newtype!(
    /// SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ SHA-256(key_provider)).
    MrSystem, 32
);
bytes_newtype!(
    /// SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3).
    MrAggregated, 32
);
bytes_newtype!(
    /// 64 bytes of TDX report data.
    ReportData, 64
);

/// An instance id: 20 bytes, or empty when the compose sets `no_instance_id`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum InstanceId {
    /// No instance id (`no_instance_id`); measured as an empty payload.
    None,
    /// A 20-byte instance id.
    Id(InstanceIdBytes),
}

impl InstanceId {
    /// Derive SHA-256(instance_id_seed ‖ app_id)[0..20].
    pub fn derive(instance_id_seed: &[u8], app_id: &AppId) -> Self {
        let d = Sha256::new()
            .chain_update(instance_id_seed)
            .chain_update(app_id.0)
            .finalize();
        let mut id = [0u8; 20];
        id.copy_from_slice(&d[..20]);
        InstanceId::Id(InstanceIdBytes(id))
    }

    /// The bytes as measured: 20 bytes, or empty.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            InstanceId::None => &[],
            InstanceId::Id(b) => &b.0,
        }
    }

    /// Parse a measured payload (20 bytes, or empty).
    pub fn from_payload(payload: &[u8]) -> Option<Self> {
        if payload.is_empty() {
            Some(InstanceId::None)
        } else {
            InstanceIdBytes::from_slice(payload).map(InstanceId::Id)
        }
    }

    /// The 20-byte form used on chain (`address instanceId`): zero when absent.
    pub fn to_address_bytes(&self) -> [u8; 20] {
        match self {
            InstanceId::None => [0u8; 20],
            InstanceId::Id(b) => b.0,
        }
    }
}

impl ComposeHash {
    /// SHA-256 of the exact bytes of `app-compose.json`.
    pub fn of_compose(app_compose_json: &[u8]) -> Self {
        ComposeHash(Sha256::digest(app_compose_json).into())
    }
}

impl AppId {
    /// The app id of an app without an AppAuth contract: `compose_hash[0..20]`.
    pub fn from_compose_hash(h: &ComposeHash) -> Self {
        let mut id = [0u8; 20];
        id.copy_from_slice(&h.0[..20]);
        AppId(id)
    }
}

impl DeviceId {
    /// SHA-256 of the PPID.
    pub fn from_ppid(ppid: &[u8]) -> Self {
        DeviceId(Sha256::digest(ppid).into())
    }
}

impl OsImageHash {
    /// SHA-256 of an OS image's measurement manifest bytes.
    pub fn of_manifest(manifest: &[u8]) -> Self {
        OsImageHash(Sha256::digest(manifest).into())
    }
}

/// The key provider a CVM got its keys from, as measured in the `key-provider` event.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyProvider {
    /// Provider kind, `"kms"` for a Cairn KMS.
    pub name: String,
    /// Hex of the KMS root CA SubjectPublicKeyInfo DER.
    pub id: String,
}

impl KeyProvider {
    /// A KMS key provider identified by its root CA SPKI DER.
    pub fn kms(root_ca_spki_der: &[u8]) -> Self {
        KeyProvider {
            name: "kms".to_owned(),
            id: hex::encode(root_ca_spki_der),
        }
    }

    /// Compact JSON with keys in the order `name`, `id` (the measured payload).
    pub fn to_payload(&self) -> Vec<u8> {
        // serde_json writes struct fields in declaration order, compactly.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The four TD measurement registers every identity is built from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TdMeasurements {
    /// MRTD: the initial TD contents (firmware).
    pub mrtd: Measurement48,
    /// RTMR0: firmware configuration.
    pub rtmr0: Measurement48,
    /// RTMR1: kernel.
    pub rtmr1: Measurement48,
    /// RTMR2: kernel command line and initrd.
    pub rtmr2: Measurement48,
    /// RTMR3: runtime events.
    pub rtmr3: Measurement48,
}

impl TdMeasurements {
    /// SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ SHA-256(key_provider payload)).
    pub fn mr_system(&self, key_provider_payload: &[u8]) -> MrSystem {
        let kp: [u8; 32] = Sha256::digest(key_provider_payload).into();
        MrSystem(self.digest_with(&kp))
    }

    /// SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ RTMR3).
    pub fn mr_aggregated(&self) -> MrAggregated {
        MrAggregated(self.digest_with(&self.rtmr3.0))
    }

    /// SHA-256(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ `last`): what both aggregates hash.
    fn digest_with(&self, last: &[u8]) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.mrtd.0)
            .chain_update(self.rtmr0.0)
            .chain_update(self.rtmr1.0)
            .chain_update(self.rtmr2.0)
            .chain_update(last)
            .finalize()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_id_without_contract_is_compose_hash_prefix() {
        let h = ComposeHash::of_compose(b"{}");
        let a = AppId::from_compose_hash(&h);
        assert_eq!(a.0[..], h.0[..20]);
        assert_eq!(
            h.to_hex(),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn instance_id_is_sha256_of_seed_and_app_id_truncated() {
        let app = AppId([7u8; 20]);
        let id = InstanceId::derive(b"seed", &app);
        let mut pre = b"seed".to_vec();
        pre.extend_from_slice(&[7u8; 20]);
        let d = Sha256::digest(&pre);
        assert_eq!(id.as_bytes(), &d[..20]);
        assert_eq!(InstanceId::from_payload(&[]), Some(InstanceId::None));
        assert_eq!(InstanceId::from_payload(&[1u8; 19]), None);
    }

    #[test]
    fn key_provider_payload_is_compact_with_name_first() {
        let kp = KeyProvider::kms(&[0xab, 0xcd]);
        assert_eq!(kp.to_payload(), br#"{"name":"kms","id":"abcd"}"#.to_vec());
    }

    #[test]
    fn hex_round_trip_and_prefix() {
        let a = AppId([0x11; 20]);
        assert_eq!(AppId::from_hex(&format!("0x{a}")), Some(a));
        assert_eq!(AppId::from_hex("11"), None);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<AppId>(&json).unwrap(), a);
    }
}
