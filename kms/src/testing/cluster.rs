//! The test cluster's constants, its PKI and verifier, and a simulated guest.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimPki, SimPkiConfig, SimTdx};
use cairn_attestation::{Collateral, EventLog, RaTlsCert, RaTlsCertBuilder, Tee, Usage, Verifier};
use cairn_kms_client::{KmsClient, Timeouts};
use cairn_protocol::sig;

use crate::clock::unix_now;
use crate::kdf::MasterSecret;
use crate::keys::RootKeys;

/// The test cluster's master secret (its root keys derive from it).
pub const MASTER: [u8; 32] = [0x5a; 32];
/// The simulator PKI seed shared by every KMS and guest of the tests.
pub const PKI_SEED: [u8; 32] = [0x42; 32];
/// Policy is read this many blocks behind the head.
pub const CONFIRMATIONS: u64 = 2;
/// How often a test node's policy head advances on its own.
pub const HEAD_POLL: Duration = Duration::from_millis(50);
/// Head age bound of test nodes: a year. anvil mines only when asked, and tests move a
/// node's clock by days to cross collateral windows; head freshness has tests of its own.
pub const MAX_HEAD_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
/// RPC call timeout of test nodes (a test of a stalled chain waits this long).
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a test waits for something it polls for, and the timeouts of
/// [`kms_client`], before it fails: generous, because a loaded 2-core CI machine boots
/// several guests (each a real process doing a KMS round trip) at once; a passing test
/// never waits for it.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The OS image every KMS and guest boots unless a test says otherwise (allowed on the
/// chain of a [`TestNet`](super::TestNet)).
pub fn image() -> OsImage {
    OsImage::example("cairn-os", "1.0")
}

/// An image test nodes recognise (its manifest is configured) but the chain does not
/// allow.
pub fn unlisted_image() -> OsImage {
    OsImage::example("cairn-os", "0.9-unlisted")
}

/// The simulated Intel PKI of [`PKI_SEED`], anchored at the wall clock once per process
/// (rustls and the verifier check certificates at the current time).
pub fn pki() -> Arc<SimPki> {
    static PKI: OnceLock<Arc<SimPki>> = OnceLock::new();
    PKI.get_or_init(|| {
        Arc::new(SimPki::new(SimPkiConfig::new(PKI_SEED, unix_now())).expect("simulator PKI"))
    })
    .clone()
}

/// The real verifier trusting `pki`'s root, with `pki`'s collateral.
pub fn verifier_for(pki: &SimPki) -> Verifier {
    Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .with_collateral(Collateral::new(pki.collateral()).expect("simulator collateral"))
}

/// [`verifier_for`] the cluster's [`pki`].
pub fn verifier() -> Verifier {
    verifier_for(&pki())
}

/// A KMS client verifying with [`verifier`], every timeout [`DEADLINE`].
pub fn kms_client() -> KmsClient {
    KmsClient::new(verifier()).with_timeouts(Timeouts::uniform(DEADLINE))
}

/// The root keys of [`MASTER`].
pub fn root_keys() -> RootKeys {
    RootKeys::derive(&MasterSecret::from_bytes(MASTER)).expect("root keys")
}

/// A secp256k1 key as the agent's `GetKey` answers it through dstack's SDKs (a JSON object
/// with a hex `key` and a hex `signature_chain` `[app signature, KMS signature]`), checked:
/// the chain for `purpose` verifies to `root` under `app_id`. Returns the key.
pub fn checked_get_key(
    answer: &serde_json::Value,
    app_id: &[u8; 20],
    purpose: &str,
    root: &k256::ecdsa::VerifyingKey,
) -> k256::ecdsa::SigningKey {
    let hex_field = |v: &serde_json::Value| {
        hex::decode(v.as_str().expect("a hex string")).expect("hex in a GetKey answer")
    };
    let key = k256::ecdsa::SigningKey::from_slice(&hex_field(&answer["key"])).expect("a key");
    let chain: Vec<[u8; 65]> = answer["signature_chain"]
        .as_array()
        .expect("a signature chain")
        .iter()
        .map(|h| hex_field(h).try_into().expect("65-byte signatures"))
        .collect();
    assert_eq!(chain.len(), 2, "[app signature, KMS signature]: {answer}");
    sig::verify_signature_chain(
        app_id,
        purpose,
        &sig::compressed(key.verifying_key()),
        &chain[0],
        &chain[1],
        root,
    )
    .expect("the signature chain verifies to the root");
    key
}

/// A simulated guest CVM that calls the KMS itself: its TD, its event log up to
/// `boot-mr-done`, its app id.
#[derive(Debug)]
pub struct Guest {
    /// The TD (host seed, image).
    pub tdx: Arc<SimTdx>,
    /// The boot measurements.
    pub log: EventLog,
    /// The app id it measured.
    pub app_id: AppId,
}

impl Guest {
    /// Boot a TD of `pki` on host `host_seed` with `image`, and measure `app_id`,
    /// `compose` and the instance id of seed `[host_seed; 8]`.
    pub fn boot(
        pki: Arc<SimPki>,
        host_seed: u8,
        image: OsImage,
        app_id: AppId,
        compose: &[u8],
    ) -> Guest {
        let tdx = Arc::new(
            SimTdx::new(pki, SimHostConfig::new([host_seed; 32], image)).expect("guest TD"),
        );
        let compose_hash = ComposeHash::of_compose(compose);
        let instance_id = InstanceId::derive(&[host_seed; 8], &app_id);
        let mut log = EventLog::new();
        log.measure_boot(tdx.as_ref(), &app_id, &compose_hash, &instance_id)
            .expect("measure boot");
        Guest { tdx, log, app_id }
    }

    /// A fresh RA-TLS client certificate (usage `app:custom`).
    pub fn cert(&self) -> RaTlsCert {
        self.cert_from(self.tdx.as_ref())
    }

    /// A fresh RA-TLS client certificate whose quote comes from `tee` (another TD's
    /// quote over this guest's claims, for tests of a mismatch).
    pub fn cert_from(&self, tee: &dyn Tee) -> RaTlsCert {
        RaTlsCertBuilder::new(Usage::AppCustom)
            .common_name("guest")
            .event_log(&self.log.to_json())
            .app_id(self.app_id.0)
            .build(tee)
            .expect("guest RA-TLS certificate")
    }

    /// A client certificate made when the guest's clock read `now` (valid from
    /// `now` − 5 min for a year), to simulate a guest whose clock is off.
    pub fn cert_at(&self, now: u64) -> RaTlsCert {
        RaTlsCertBuilder::new(Usage::AppCustom)
            .common_name("guest")
            .event_log(&self.log.to_json())
            .app_id(self.app_id.0)
            .issued_at(now)
            .build(self.tdx.as_ref())
            .expect("guest RA-TLS certificate")
    }
}
