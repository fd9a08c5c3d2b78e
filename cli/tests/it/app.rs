//! `cairn app` against anvil with the deployed contracts: compose hashes equal to dstack's
//! SDKs, the app's policy lifecycle in JSON, signers (key, file, Foundry keystore) that
//! never print a key, and bad input that fails with one line and sends nothing.

use std::path::Path;

use cairn_e2e::{image, Devnet, CONFIRMATIONS};
use cairn_onchain::alloy::primitives::{Address, B256};

use crate::chain::{field_of_each, key_hex, nonce, Cli};

/// An app-compose.json in no particular key order (as a user writes it).
pub(crate) const COMPOSE: &str = r#"{
  "runner": "docker-compose",
  "name": "hello",
  "manifest_version": 2,
  "docker_compose_file": "services:\n  web:\n    image: nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000\n    ports: [\"80:80\"]\n",
  "kms_enabled": true,
  "gateway_enabled": false,
  "public_logs": true,
  "public_sysinfo": true,
  "allowed_envs": ["API_KEY", "MODE"],
  "no_instance_id": false,
  "key_provider_id": "",
  "features": ["kms"]
}
"#;

/// The compose hash of [`COMPOSE`] as dstack's SDKs compute it: `get_compose_hash` of
/// `dstack-sdk` 0.5.4 (Python) and `getComposeHash` of `@phala/dstack-sdk` (node) both
/// give this for `json.load` / `JSON.parse` of the file above.
const DSTACK_SDK_HASH: &str = "0xb50af8295b8aa0d30f0ee405fa353d24844efa0f200ef5e96f5d59ff7db23b01";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn b256(v: &serde_json::Value) -> B256 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_hash_of_the_deterministic_form_equals_dstack_sdks() {
    let net = Devnet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "app-compose.json", COMPOSE);
    let out_file = dir.path().join("det.json").display().to_string();

    let cli = Cli::new(&net, dir.path());
    let r = cli
        .run(
            &[],
            &["--json", "app", "compose-hash", &file, "--write", &out_file],
        )
        .await
        .ok_json();
    let exact = cairn_protocol::compose::compose_hash(COMPOSE.as_bytes());
    assert_eq!(b256(&r["compose_hash"]), B256::from(exact));
    assert_eq!(r["deterministic"], false);
    assert_eq!(r["deterministic_hash"], DSTACK_SDK_HASH);

    // The written file is deterministic: its exact-bytes hash is the SDKs' hash.
    let again = cli
        .run(&[], &["--json", "app", "compose-hash", &out_file])
        .await
        .ok_json();
    assert_eq!(again["compose_hash"], DSTACK_SDK_HASH);
    assert_eq!(again["deterministic"], true);

    // Text mode prints the hash alone on stdout (for `$(cairn app compose-hash f)`).
    let text = cli.run(&[], &["app", "compose-hash", &out_file]).await;
    assert_eq!(text.stdout.trim(), DSTACK_SDK_HASH);

    // Bad compose JSON: exit 2, one line naming the file.
    let bad = write(dir.path(), "bad.json", r#"{"runner": "#);
    cli.run(&[], &["app", "compose-hash", &bad])
        .await
        .fails(2, "bad.json: not JSON");
    let json_err = cli.run(&[], &["--json", "app", "compose-hash", &bad]).await;
    assert_eq!(json_err.json()["error"]["code"], "usage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_deploy_allow_schedule_revoke_devices_and_status_in_json() {
    let net = Devnet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_hex(&net, 0);
    let env = [("CAIRN_PRIVATE_KEY", key.as_str())];
    let file = write(dir.path(), "app-compose.json", COMPOSE);
    let h1 = B256::from(cairn_protocol::compose::compose_hash(COMPOSE.as_bytes()));
    let h2 = B256::repeat_byte(0x22);
    let h3 = B256::repeat_byte(0x33);

    let cli = Cli::new(&net, dir.path());
    let deployed = cli
        .run(&env, &["--json", "app", "deploy", "--compose", &file])
        .await
        .ok_json();
    assert_eq!(deployed["how"], "deployed");
    assert_eq!(b256(&deployed["initial_compose_hash"]), h1);
    let app: Address = deployed["app_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(deployed["owner"], net.owner.to_string());
    let app_s = app.to_string();

    let allowed = cli
        .run(
            &env,
            &["--json", "app", "allow", &h2.to_string(), "--app", &app_s],
        )
        .await
        .ok_json();
    assert_eq!(allowed["action"], "allow");
    assert!(allowed["tx_hash"].as_str().unwrap().starts_with("0x"));
    let sched = cli
        .run(
            &env,
            &[
                "--json",
                "app",
                "schedule",
                &h3.to_string(),
                "--at",
                "+1d",
                "--app",
                &app_s,
            ],
        )
        .await
        .ok_json();
    let activates_at = sched["activates_at"].as_u64().unwrap();
    let device = B256::repeat_byte(0xde);
    cli.run(
        &env,
        &[
            "--json",
            "app",
            "devices",
            "allow",
            &device.to_string(),
            "--app",
            &app_s,
        ],
    )
    .await
    .ok_json();
    net.mine(CONFIRMATIONS).await;

    let status = cli
        .run(&[], &["--json", "app", "status", &app_s])
        .await
        .ok_json();
    assert_eq!(status["registered"], true);
    assert_eq!(status["owner"], net.owner.to_string());
    let hashes = status["compose_hashes"].as_array().unwrap();
    let state_of = |h: B256| {
        hashes
            .iter()
            .find(|e| b256(&e["compose_hash"]) == h)
            .map(|e| {
                (
                    e["state"].as_str().unwrap().to_owned(),
                    e["activates_at"].as_u64().unwrap(),
                )
            })
    };
    assert_eq!(state_of(h1).map(|s| s.0), Some("allowed".into()));
    assert_eq!(state_of(h2).map(|s| s.0), Some("allowed".into()));
    assert_eq!(state_of(h3), Some(("scheduled".into(), activates_at)));
    assert!(activates_at > status["block_timestamp"].as_u64().unwrap());
    assert_eq!(status["devices"][0], device.to_string());
    let check = cli
        .run(
            &[],
            &[
                "--json",
                "app",
                "devices",
                "check",
                &device.to_string(),
                "--app",
                &app_s,
            ],
        )
        .await
        .ok_json();
    assert_eq!(check["listed"], true);

    cli.run(
        &env,
        &["--json", "app", "revoke", &h2.to_string(), "--app", &app_s],
    )
    .await
    .ok_json();
    net.mine(CONFIRMATIONS).await;
    let status = cli
        .run(&[("CAIRN_APP", &app_s)], &["--json", "app", "status"])
        .await
        .ok_json();
    let listed: Vec<B256> = field_of_each(&status["compose_hashes"], "compose_hash")
        .into_iter()
        .map(|h| h.parse().unwrap())
        .collect();
    assert!(listed.contains(&h1) && !listed.contains(&h2), "{listed:?}");

    let img = B256::from(image().os_image_hash().0).to_string();
    let images = cli
        .run(&[], &["--json", "app", "images", "check", &img])
        .await
        .ok_json();
    assert_eq!(images["allowed"], true);
    let other = cli
        .run(
            &[],
            &["--json", "app", "images", "check", &B256::ZERO.to_string()],
        )
        .await
        .ok_json();
    assert_eq!(other["allowed"], false);
}

/// `cast` from the npm-pinned Foundry.
fn cast() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../node_modules/.bin/cast")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signers_from_env_file_and_a_cast_keystore_never_print_the_key() {
    let net = Devnet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_hex(&net, 1);
    let account = net.signer(1).address();

    // A Foundry keystore, made by `cast wallet import`.
    let keystores = dir.path().join("keystores");
    std::fs::create_dir(&keystores).unwrap();
    let made = std::process::Command::new(cast())
        .args([
            "wallet",
            "import",
            "dev",
            "--private-key",
            &key,
            "--unsafe-password",
            "hunter22",
            "--keystore-dir",
        ])
        .arg(&keystores)
        .output()
        .expect("run cast");
    assert!(
        made.status.success(),
        "cast: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let keystore = keystores.join("dev").display().to_string();
    let pw = write(dir.path(), "pw", "hunter22\n");
    let wrong = write(dir.path(), "wrong", "hunter23\n");
    let key_file = write(dir.path(), "key", &format!("0x{key}\n"));

    let cli = Cli::new(&net, dir.path());
    let mut outputs = Vec::new();
    for args in [
        vec![
            "--json",
            "app",
            "deploy",
            "--keystore",
            &keystore,
            "--password-file",
            &pw,
        ],
        vec!["--json", "app", "deploy", "--private-key-file", &key_file],
    ] {
        let r = cli.run(&[], &args).await;
        assert_eq!(r.ok_json()["owner"], account.to_string());
        outputs.push(r);
    }
    let r = cli
        .run(&[("CAIRN_PRIVATE_KEY", &key)], &["--json", "app", "deploy"])
        .await;
    assert_eq!(r.ok_json()["owner"], account.to_string());
    outputs.push(r);

    // Refusals name the file, never a key; nothing is sent.
    let before = nonce(&net, account).await;
    let r = cli
        .run(
            &[],
            &[
                "app",
                "deploy",
                "--keystore",
                &keystore,
                "--password-file",
                &wrong,
            ],
        )
        .await;
    r.fails(2, "wrong password");
    outputs.push(r);
    let r = cli
        .run(&[], &["app", "deploy", "--keystore", &keystore])
        .await;
    r.fails(2, "needs its password: pass --password-file");
    outputs.push(r);
    let almost = format!("{}zz", &key[..62]);
    let r = cli
        .run(&[("CAIRN_PRIVATE_KEY", &almost)], &["app", "deploy"])
        .await;
    r.fails(2, "CAIRN_PRIVATE_KEY: not a 32-byte hex private key");
    outputs.push(r);
    assert_eq!(nonce(&net, account).await, before, "nothing sent");

    for r in &outputs {
        for text in [&r.stdout, &r.stderr] {
            assert!(!text.contains(&key), "the key leaked: {r:#?}");
            assert!(!text.contains(&key[..16]), "part of the key leaked: {r:#?}");
            assert!(!text.contains("hunter2"), "the password leaked: {r:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_with_one_line_naming_the_fix_and_sends_nothing() {
    let net = Devnet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_hex(&net, 0);
    let env = [("CAIRN_PRIVATE_KEY", key.as_str())];
    let app = net.deploy_app(net.owner, None).await;
    let app_s = app.app_id().to_string();
    let h = B256::repeat_byte(0x44).to_string();
    let owner_nonce = nonce(&net, net.owner).await;

    // Unknown app.
    let cli = Cli::new(&net, dir.path());
    let unknown = Address::repeat_byte(0x01).to_string();
    cli.run(&env, &["app", "allow", &h, "--app", &unknown])
        .await
        .fails(2, "unknown app");
    cli.run(&[], &["app", "status", &unknown])
        .await
        .fails(2, "unknown app");
    // Wrong chain id.
    cli.run(
        &env,
        &["app", "allow", &h, "--app", &app_s, "--chain-id", "999"],
    )
    .await
    .fails(2, "chain id mismatch: expected 999");
    // Bad compose JSON.
    let bad = write(dir.path(), "bad.json", "{\"runner\":\"process\"");
    cli.run(&env, &["app", "deploy", "--compose", &bad])
        .await
        .fails(2, "bad.json: not an app compose");
    // Missing signer.
    cli.run(&[], &["app", "allow", &h, "--app", &app_s])
        .await
        .fails(2, "missing signer: set CAIRN_PRIVATE_KEY");
    // Missing chain setting, named with its flag, variable and profile key.
    let r = cli
        .run(&[("CAIRN_KMS_AUTH", "")], &["app", "status", &app_s])
        .await;
    assert_eq!(r.code, 2, "{r:#?}");
    assert!(r.stderr.contains("kms-auth"), "{r:#?}");
    // A malformed hash.
    cli.run(&env, &["app", "allow", "0x1234", "--app", &app_s])
        .await
        .fails(2, "compose hash \"0x1234\": not 0x + 64 hex digits");
    assert_eq!(
        nonce(&net, net.owner).await,
        owner_nonce,
        "nothing sent by the owner"
    );

    // Not the owner: the contract refuses at gas estimation (exit 1), nothing is sent.
    let stranger = net.signer(3).address();
    let before = nonce(&net, stranger).await;
    let key3 = key_hex(&net, 3);
    let r = cli
        .run(
            &[("CAIRN_PRIVATE_KEY", &key3)],
            &["--json", "app", "allow", &h, "--app", &app_s],
        )
        .await;
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(r.json()["error"]["code"], "denied");
    assert!(r.stderr.contains("OwnableUnauthorizedAccount"), "{r:#?}");
    assert_eq!(
        nonce(&net, stranger).await,
        before,
        "nothing sent by the stranger"
    );

    // A profile: the missing key is named with the profile and file.
    let cfg = write(dir.path(), "cairn.toml", "[profile.dev]\nchain_id = 1\n");
    let with_profile = |profile: &'static str| {
        let (cfg, app) = (cfg.as_str(), app_s.as_str());
        ["--config", cfg, "--profile", profile, "app", "status", app]
    };
    let r = cli.run(&[], &with_profile("nope")).await;
    r.fails(2, "no [profile.nope] (profiles: dev)");
    let r = cli.run(&[], &with_profile("dev")).await;
    // CAIRN_CHAIN_ID (set by the harness) wins over the profile's chain_id.
    assert_eq!(r.code, 0, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_existing_registers_an_iappauth_contract_and_refuses_anything_else() {
    let net = Devnet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_hex(&net, 2);
    let env = [("CAIRN_PRIVATE_KEY", key.as_str())];
    // Any contract answering ERC-165 for IAppAuth: here the AppAuth implementation itself
    // (a dstack AppAuth is registered the same way).
    let existing = net.deployment.app_auth_implementation;
    let cli = Cli::new(&net, dir.path());
    let r = cli
        .run(
            &env,
            &[
                "--json",
                "app",
                "deploy",
                "--existing",
                &existing.to_string(),
            ],
        )
        .await
        .ok_json();
    assert_eq!(r["how"], "registered");
    assert_eq!(r["app_id"], existing.to_string());
    let head = net.client.head().await.unwrap();
    let at = net.client.block_at(head.number).await.unwrap();
    assert!(net.client.is_app_registered(existing, at).await.unwrap());

    // An account, not an IAppAuth: the contract's reason, exit 1, nothing sent.
    let sender = net.signer(2).address();
    let before = nonce(&net, sender).await;
    let eoa = net.signer(5).address().to_string();
    let r = cli.run(&env, &["app", "deploy", "--existing", &eoa]).await;
    r.fails(1, "KmsAuthNotAppAuth");
    // Registering twice: refused the same way.
    let r = cli
        .run(
            &env,
            &["app", "deploy", "--existing", &existing.to_string()],
        )
        .await;
    r.fails(1, "KmsAuthAppAlreadyRegistered");
    assert_eq!(nonce(&net, sender).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cairn_toml_profile_supplies_every_setting_and_flags_override_it() {
    let net = Devnet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = write(dir.path(), "deployer.key", &key_hex(&net, 6));
    let toml = format!(
        "[profile.devnet]\nrpc_url = \"{}\"\nchain_id = {}\nkms_auth = \"{}\"\nconfirmations = {CONFIRMATIONS}\nmax_head_age = 3600\nprivate_key_file = \"{key_file}\"\n\n[profile.wrong]\nrpc_url = \"{}\"\nchain_id = 1\nkms_auth = \"{}\"\n",
        net.endpoint(),
        net.chain_id(),
        net.kms_auth(),
        net.endpoint(),
        net.kms_auth(),
    );
    write(dir.path(), "cairn.toml", &toml);
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CAIRN_")) {
            cmd.env_remove(k);
        }
        cmd.current_dir(dir.path()).args(args).output().unwrap()
    };
    // ./cairn.toml, profile devnet: chain, contract and signer all from the file.
    let out = run(&["--json", "--profile", "devnet", "app", "deploy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["owner"], net.signer(6).address().to_string());
    // The wrong profile's chain id is refused on connect; a flag overrides it.
    let check = ["--profile", "wrong", "app", "images", "check"];
    let zero = "0x0000000000000000000000000000000000000000000000000000000000000000";
    let out = run(&[&check[..], &[zero]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chain id mismatch: expected 1"));
    let flags = ["--chain-id", "31337", "--max-head-age", "3600", zero];
    let out = run(&[&check[..], &flags].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without a signer in the profile, the error names the profile and the file.
    let out = run(&["--profile", "wrong", "app", "deploy", "--chain-id", "31337"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing signer") && err.contains("[profile.wrong] of cairn.toml"),
        "{err}"
    );
}
