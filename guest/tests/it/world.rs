//! The test world: the test cluster of `cairn_kms::testing` — anvil with the Cairn
//! system deployed, the simulated Intel PKI, and the real KMS (`cairn_kms::Node` served by
//! the KMS's own accept loop on a free port) — with the guests' app deployed on chain
//! and its compose allowed, and host shares in temp dirs.
//!
//! Every guest test that talks to a KMS talks to this real one. The negative tests'
//! hostile KMSes (`hostile.rs`) are the same real node with exactly one thing changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId};
use cairn_attestation::simulator::{OsImage, SimHostConfig, SimTdx};
use cairn_attestation::Tee;
use cairn_guest::BootConfig;
use cairn_kms::testing::{RunningKms, TestNet};
use cairn_kms::{AppKeys, MasterSecret, RootKeys, SecretStore, SECRETS_DIR};
use cairn_onchain::AppAuthClient;
use cairn_protocol::env::{EnvVar, EnvVars};

pub use cairn_kms::testing::{
    checked_get_key, kms_client, pki, root_keys, verifier, CONFIRMATIONS, MASTER,
};
pub use cairn_kms::unix_now;

use crate::hostile::{self, Hostile, SignCertGate};

/// The master secret of key generation 2 in [`World::rotate`].
pub const NEXT_MASTER: [u8; 32] = [0x77; 32];
/// The transition window of the rotation tests: an hour.
pub const ROTATION_WINDOW_SECS: u64 = 3600;

/// The simulated host of the world's KMS.
pub const KMS_HOST: u8 = 0x0B;

/// The OS image every guest (and KMS) boots; allowed on chain.
pub fn guest_os() -> OsImage {
    cairn_kms::testing::image()
}

/// A fresh simulated guest TD on host `host_seed`.
pub fn guest_tee(host_seed: u8) -> Arc<SimTdx> {
    Arc::new(SimTdx::new(pki(), SimHostConfig::new([host_seed; 32], guest_os())).unwrap())
}

pub fn as_tee(t: &Arc<SimTdx>) -> Arc<dyn Tee> {
    t.clone()
}

/// The root keys a cluster with master secret `master` derives.
pub fn root_keys_of(master: [u8; 32]) -> RootKeys {
    RootKeys::derive(&MasterSecret::from_bytes(master)).unwrap()
}

/// The app keys the cluster's KMS derives for a guest (computed here from [`MASTER`], so
/// a test compares what the KMS released with the KDF, not with itself).
pub fn app_keys(app_id: &AppId, instance_id: &InstanceId) -> AppKeys {
    AppKeys::derive(
        &MasterSecret::from_bytes(MASTER),
        &root_keys(),
        app_id,
        instance_id,
    )
    .unwrap()
}

/// The test cluster, the guests' app and the KMS the guests ask.
pub struct World {
    pub net: TestNet,
    /// The guests' app (any device); [`default_compose`] allowed.
    pub app: AppAuthClient,
    pub app_id: AppId,
    /// The KMS: honest, or one [`Hostile`] variant of it.
    pub kms: RunningKms,
    /// Holds the KMS's sign-cert answers ([`Hostile::StallSignCert`] only).
    pub gate: Option<SignCertGate>,
}

impl World {
    /// The cluster with an honest KMS.
    pub async fn start() -> World {
        Self::with_kms(Hostile::None).await
    }

    /// The cluster whose one KMS is the real node changed as `hostile` says.
    pub async fn with_kms(hostile: Hostile) -> World {
        let net = TestNet::new(Path::new(env!("CARGO_MANIFEST_DIR"))).await;
        let compose = default_compose("");
        let app = net.deploy_app(net.owner, Some(compose.as_bytes())).await;
        let app_id = AppId(app.app_id().into_array());
        let (kms, gate) = hostile::start(&net, KMS_HOST, app_id, hostile).await;
        World {
            net,
            app,
            app_id,
            kms,
            gate,
        }
    }

    /// Another KMS node of the cluster, on host `host_seed`, changed as `hostile` says.
    pub async fn add_kms(&self, host_seed: u8, hostile: Hostile) -> RunningKms {
        hostile::start(&self.net, host_seed, self.app_id, hostile)
            .await
            .0
    }

    /// The KMS's URL.
    pub fn url(&self) -> String {
        self.kms.url()
    }

    /// A share of the world's app pointed at the world's KMS; `extra` is appended to
    /// the compose (call [`World::allow`] unless it is empty).
    pub fn share(&self, extra: &str) -> Share {
        share(&[&self.url()], self.app_id, extra)
    }

    /// Allow the compose of `s` on chain (and let the KMS's policy head see it).
    pub async fn allow(&self, s: &Share) {
        self.net
            .allow_compose(&self.app, s.compose.as_bytes())
            .await;
    }

    /// How many releases (app keys, certificates) the KMS has logged: nothing leaves a
    /// KMS without its log entry, so 0 means it released nothing.
    pub fn releases(&self) -> u64 {
        self.kms.node.log().size()
    }

    /// Rotate the cluster's root keys on chain, generation 1 ([`MASTER`]) → 2
    /// ([`NEXT_MASTER`]), with a window of `window_secs` (the owner calls
    /// `rotateRootKeys`, as governance's vote would), after giving the KMS the next
    /// generation as pending; the KMS then serves generation 2 and, on request,
    /// generation 1 until the window's end. The new root keys and the window's end.
    pub async fn rotate(&self, window_secs: u64) -> (RootKeys, u64) {
        SecretStore::open(self.kms.dir.path().join(SECRETS_DIR))
            .unwrap()
            .add_generation(MasterSecret::from_bytes(NEXT_MASTER), 2)
            .unwrap();
        self.kms.node.sync_generations().await.unwrap();
        let new_root = root_keys_of(NEXT_MASTER);
        let until = self.net.head_timestamp().await + window_secs;
        self.net
            .rotate_root_keys(2, &new_root.k256_public(), &new_root.ca().spki_der(), until)
            .await;
        self.net.mine(CONFIRMATIONS).await;
        self.kms.node.sync_generations().await.unwrap();
        assert_eq!(self.kms.node.key_generation(), 2);
        (new_root, until)
    }

    /// Move the chain past a rotation window of `window_secs` opened by
    /// [`World::rotate`]: the KMS erases generation 1 and serves generation 2 alone.
    pub async fn close_rotation_window(&self, window_secs: u64) {
        self.net.increase_time(window_secs).await;
        self.net.mine(CONFIRMATIONS).await;
        self.kms.node.sync_generations().await.unwrap();
        assert_eq!(self.kms.node.previous_generation(), None);
    }

    /// sys-config's `chain` section for the world's chain (`chain_id` as given).
    pub fn chain_section(&self, chain_id: u64) -> serde_json::Value {
        serde_json::json!({
            "rpc_url": self.net.endpoint(),
            "chain_id": chain_id,
            "kms_auth": format!("{:#x}", self.net.kms_auth()),
            "confirmations": CONFIRMATIONS,
        })
    }
}

/// A host share in a temp dir with a `process` compose.
pub struct Share {
    pub dir: tempfile::TempDir,
    pub compose: String,
    /// The app id `.instance-info` names.
    pub app_id: AppId,
}

impl Share {
    pub fn share_dir(&self) -> PathBuf {
        self.dir.path().join("share")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }
    /// What the app of [`default_compose`] writes.
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("app-out")
    }
    pub fn config(&self) -> BootConfig {
        BootConfig {
            share_dir: self.share_dir(),
            keys_dir: self.keys_dir(),
            work_dir: self.dir.path().join("work"),
            agent_socket: Some(self.dir.path().join("agent.sock")),
            device_id: None,
            start_app: true,
            docker: "docker".into(),
        }
    }
    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.share_dir().join(name), bytes).unwrap();
    }
    /// Replace the compose (the test allows it on chain if the KMS is to release).
    pub fn set_compose(&mut self, compose: String) {
        self.write("app-compose.json", compose.as_bytes());
        self.compose = compose;
    }
    /// Add a `chain` section to sys-config.json: the guest checks its KMS on that chain.
    pub fn set_chain(&self, chain: serde_json::Value) {
        let path = self.share_dir().join("sys-config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["chain"] = chain;
        self.write("sys-config.json", &serde_json::to_vec(&config).unwrap());
    }
    pub fn compose_hash(&self) -> ComposeHash {
        ComposeHash::of_compose(self.compose.as_bytes())
    }
    pub fn app_id(&self) -> AppId {
        self.app_id
    }
    pub fn instance_id(&self) -> InstanceId {
        InstanceId::derive(INSTANCE_SEED, &self.app_id)
    }
    /// The app keys the KMS releases to this share's instance.
    pub fn app_keys(&self) -> AppKeys {
        app_keys(&self.app_id, &self.instance_id())
    }
    /// An `.encrypted-env` of `vars` for this share's app (Cairn's format, as a deployer
    /// encrypts it).
    pub fn encrypt_env(&self, vars: &EnvVars) -> Vec<u8> {
        let public = self.app_keys().env_public();
        cairn_protocol::env::encrypt(&public, &self.app_id.0, vars).expect("encrypt the env")
    }
}

/// Env variables of `(key, value)` pairs, in order.
pub fn env_of(pairs: &[(&str, &str)]) -> EnvVars {
    let vars = pairs.iter().map(|(key, value)| EnvVar {
        key: (*key).into(),
        value: (*value).into(),
    });
    EnvVars::new(vars.collect()).expect("valid env variables")
}

/// The instance id seed of every share.
pub const INSTANCE_SEED: &[u8] = b"seed-1";

/// The compose of every share, `extra` appended: a `process` app writing
/// `API_KEY|MODE|DROPPED|CAIRN_KEYS_DIR` to `app-out` beside the keys dir, so the compose
/// (and its hash on chain) does not depend on the share's temp dir.
pub fn default_compose(extra: &str) -> String {
    let script = r#"printf '%s|%s|%s|%s' "$API_KEY" "$MODE" "$DROPPED" "$CAIRN_KEYS_DIR" > "$CAIRN_KEYS_DIR/../app-out""#;
    format!(
        r#"{{"manifest_version":2,"name":"demo","runner":"process","process":{{"command":["/bin/sh","-c",{}],"env":{{"MODE":"dev"}}}},"kms_enabled":true,"allowed_envs":["API_KEY"]{extra}}}"#,
        serde_json::to_string(script).unwrap()
    )
}

/// A share of app `app_id` pointed at `kms_urls`, running [`default_compose`]`(extra)`.
pub fn share(kms_urls: &[&str], app_id: AppId, extra: &str) -> Share {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("share")).unwrap();
    let s = Share {
        dir,
        compose: default_compose(extra),
        app_id,
    };
    s.write("app-compose.json", s.compose.as_bytes());
    s.write(
        "sys-config.json",
        &serde_json::to_vec(
            &serde_json::json!({"kms_urls": kms_urls, "vm_config": "{\"cpus\":1}"}),
        )
        .unwrap(),
    );
    s.write(
        ".instance-info",
        &serde_json::to_vec(&serde_json::json!({
            "instance_id_seed": hex::encode(INSTANCE_SEED),
            "app_id": hex::encode(app_id.0),
        }))
        .unwrap(),
    );
    s
}

pub fn is_empty_or_missing(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

/// Verifies a quote given in hex, with its event log, for `report_data` now (the test
/// verifier of the simulated PKI).
pub fn verify_hex_quote(
    quote_hex: &str,
    event_log: &str,
    report_data: &[u8; 64],
) -> cairn_attestation::VerifiedQuote {
    verifier()
        .verify(
            &hex::decode(quote_hex).unwrap(),
            event_log.as_bytes(),
            report_data,
            unix_now(),
        )
        .unwrap()
}

/// The boot of `cfg` on a fresh TD of host 1 with the cluster's KMS client.
pub async fn boot_host1(cfg: &BootConfig) -> cairn_guest::Result<cairn_guest::Booted> {
    cairn_guest::boot(as_tee(&guest_tee(1)), kms_client(), cfg).await
}
