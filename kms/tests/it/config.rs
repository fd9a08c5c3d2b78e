//! The binary's path: a TOML config (with env overrides) builds a node that serves.

use std::sync::Arc;

use cairn_attestation::Collateral;
use cairn_kms::Config;
use cairn_kms::{execute, Command};

use crate::release::app_key;
use crate::world::{pki, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_built_from_a_config_file_bootstraps_and_releases() {
    let w = World::without_root_keys().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let collateral = dir.path().join("collateral.json");
    std::fs::write(
        &collateral,
        Collateral::new(pki().collateral()).unwrap().to_json(),
    )
    .unwrap();
    let text = format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{data}"
[chain]
rpc_url = "{rpc}"
chain_id = 1
kms_auth = "{kms_auth}"
confirmations = {conf}
poll_interval_ms = 50
max_head_age_secs = 3600
[attestation]
trust = "simulator"
simulator_seed = "0x{seed}"
collateral_file = "{collateral}"
[tee]
kind = "simulator"
simulator_host_seed = "0x{host}"
[log]
anchor_interval_secs = 3600
max_anchor_age_secs = 7200
"#,
        data = dir.path().join("data").display(),
        rpc = w.endpoint(),
        kms_auth = w.kms_auth(),
        conf = crate::world::CONFIRMATIONS,
        seed = "42".repeat(32),
        collateral = collateral.display(),
        host = "a7".repeat(32),
    );
    // The environment fixes the chain id the file got wrong.
    let env = [(
        "CAIRN_KMS_CHAIN_CHAIN_ID".to_owned(),
        w.chain_id().to_string(),
    )];
    let config = Config::parse(&text, env).unwrap();

    // The bootstrap output is what the operator registers.
    let out = execute(&config, Command::Bootstrap).await.unwrap().unwrap();
    let id: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut opts = config.node_options().unwrap();
    opts.os_images.push(crate::world::image().manifest());
    let node_address: [u8; 20] = hex::decode(
        id["node_address"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
    )
    .unwrap()
    .try_into()
    .unwrap();
    let bytes = |k: &str| {
        cairn_onchain::alloy::primitives::Bytes::from(
            hex::decode(id[k].as_str().unwrap().trim_start_matches("0x")).unwrap(),
        )
    };
    w.client
        .set_kms_root_keys(1, bytes("root_k256_public_key"), bytes("root_ca_spki"))
        .await
        .unwrap();
    w.register_kms(&opts, Some(node_address)).await;
    let again = execute(&config, Command::Bootstrap).await.unwrap_err();
    assert!(
        matches!(
            again,
            cairn_kms::Error::AlreadyBootstrapped { generation: 1 }
        ),
        "{again}"
    );

    let kms = w.serve(opts, dir).await;
    assert_eq!(kms.node.address(), node_address);
    let guest = w.guest(0x51);
    let r = app_key(&mut kms.client(Some(&guest.cert())).await)
        .await
        .unwrap();
    assert_eq!(r.key_generation, 1);
    kms.stop().await;
}
