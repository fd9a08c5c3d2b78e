//! Integration tests of cairn-kms: KDF known answers (docs/kdf.md), derived certificates,
//! and the node end to end (anvil + contracts + simulator evidence + RA-TLS).

mod anchoring;
mod certs;
mod chain_head;
mod clock;
mod config;
mod denials;
mod faults;
mod known_answer;
mod min_block;
mod onboard;
mod registration;
mod release;
mod robustness;
mod rotation;
mod self_check;
mod shutdown;
mod sign_cert;
mod slow_clients;
mod spans;
mod world;

use cairn_attestation::ids::{AppId, InstanceId, InstanceIdBytes};
use cairn_kms::MasterSecret;

/// The master secret of docs/kdf.md: bytes 0x01..=0x20.
pub fn master() -> MasterSecret {
    let mut m = [0u8; 32];
    for (i, b) in m.iter_mut().enumerate() {
        *b = u8::try_from(i + 1).unwrap();
    }
    MasterSecret::from_bytes(m)
}

/// The app id of docs/kdf.md.
pub const APP_ID: AppId = AppId([0x11; 20]);

/// The instance id of docs/kdf.md.
pub fn instance() -> InstanceId {
    InstanceId::Id(InstanceIdBytes([0x22; 20]))
}
