//! `cairn app env encrypt` against a real KMS and anvil: the ciphertext (Cairn's format
//! and dstack's legacy one) is what a booting guest decrypts; values never appear in the
//! output; bad input is exit 2.

use cairn_e2e::*;

use crate::chain::Cli;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_encrypt_for_the_kms_key_the_chain_vouches_for_and_the_guest_decrypts_it() {
    let net = Devnet::new().await;
    let kms = net.start_kms().await;
    let app = net.deploy_app(net.owner, None).await;
    let dir = tempfile::tempdir().unwrap();
    let url = kms.url();
    let app_s = app.app_id().to_string();
    let env = [
        ("CAIRN_KMS_URL", url.as_str()),
        ("CAIRN_KMS_TRUST", "simulator"),
        ("CAIRN_APP", app_s.as_str()),
    ];
    let dotenv = dir.path().join(".env");
    std::fs::write(&dotenv, "# secrets\nexport API_KEY=\"s3cret-value\"\n").unwrap();

    let cli = Cli::new(&net, dir.path());
    for (seed, legacy) in [(0x41u8, false), (0x42, true)] {
        let blob = dir.path().join(format!("env-{legacy}.bin"));
        let blob_s = blob.display().to_string();
        let dotenv_s = dotenv.display().to_string();
        let mut args = vec![
            "--json",
            "app",
            "env",
            "encrypt",
            "--env-file",
            &dotenv_s,
            "-o",
            &blob_s,
        ];
        if legacy {
            args.push("--legacy");
        }
        let r = cli.run(&env, &args).await;
        let j = r.ok_json();
        assert!(
            !r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"),
            "{r:#?}"
        );
        assert_eq!(j["names"], serde_json::json!(["API_KEY"]));
        assert_eq!(j["format"], if legacy { "dstack-legacy" } else { "cairn" });
        let bytes = std::fs::read(&blob).unwrap();
        assert_eq!(bytes.starts_with(b"CAIRNENV1"), !legacy);

        let cvm = Cvm::new(&kms.url(), app.app_id(), seed, &format!("env-{legacy}"));
        app.add_compose_hash(cvm.compose_hash()).await.unwrap();
        net.mine(CONFIRMATIONS).await;
        cvm.set_encrypted_env(&bytes);
        let _running = cvm.boot().await.unwrap();
        assert_eq!(
            wait_for_file(&cvm.app_out()).await.as_deref(),
            Some(&b"started:s3cret-value"[..])
        );
    }

    // `app status` with the KMS shows the two releases, newest first.
    net.mine(CONFIRMATIONS).await;
    let st = cli.run(&env, &["--json", "app", "status"]).await.ok_json();
    let releases = st["releases"]["entries"].as_array().unwrap();
    assert_eq!(releases.len(), 2, "{st}");
    assert_eq!(st["releases"]["log_size"], 2);
    assert_eq!(releases[0]["index"], 1);
    assert_eq!(releases[1]["index"], 0);
    assert_eq!(releases[0]["kind"], "AppKey");
    let status_with = async |releases: &str| {
        let args = ["--json", "app", "status", "--releases", releases];
        cli.run(&env, &args).await.ok_json()
    };
    let limited = status_with("1").await;
    assert_eq!(limited["releases"]["entries"].as_array().unwrap().len(), 1);
    let none = status_with("0").await;
    assert!(none.get("releases").is_none());

    // Bad input: exit 2, the value never echoed.
    let out = dir.path().join("x.bin").display().to_string();
    let r = cli
        .run(&env, &["app", "env", "encrypt", "NOEQUALS", "-o", &out])
        .await;
    r.fails(2, "\"NOEQUALS\" is not NAME=VALUE");
    let r = cli.run(&env, &["app", "env", "encrypt", "-o", &out]).await;
    r.fails(2, "no variables");
    kms.stop().await;
}
