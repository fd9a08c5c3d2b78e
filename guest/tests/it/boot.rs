//! The boot flow: keys, measurements, env, app start — and every refusal.

use std::os::unix::fs::PermissionsExt;

use cairn_attestation::eventlog::RuntimeEvent;
use cairn_attestation::ids::{AppId, InstanceId, KeyProvider};
use cairn_attestation::testing::ServedPccs;
use cairn_attestation::{CertRole, ChainError, RaTlsError, Usage};
use cairn_guest::{boot, Error};
use cairn_kms_client::{Error as KmsError, Stage};
use cairn_protocol::env::{self, EnvVars};
use x25519_dalek::StaticSecret;

use crate::hostile::Hostile;
use crate::world::*;

fn env_vars() -> EnvVars {
    env_of(&[
        ("API_KEY", "s3cr3t-api-key"),
        ("DROPPED", "not-allowed-value"),
    ])
}

fn encrypted_env(s: &Share) -> Vec<u8> {
    s.encrypt_env(&env_vars())
}

/// The boot of `s` on a fresh TD of host 1 with the cluster's KMS client.
async fn boot_share(s: &Share) -> cairn_guest::Result<cairn_guest::Booted> {
    boot_host1(&s.config()).await
}

/// The one failure of a boot that asked one KMS.
fn only_kms_failure(err: &Error) -> &KmsError {
    match err {
        Error::AllKmsFailed(v) if v.len() == 1 => &v[0].1,
        other => panic!("expected one KMS failure, got {other}"),
    }
}

#[tokio::test]
async fn boot_gets_keys_measures_the_boot_and_starts_the_app_with_allowed_env() {
    let w = World::start().await;
    let s = w.share("");
    s.write(".encrypted-env", &encrypted_env(&s));
    let tee = guest_tee(1);
    let mut booted = boot(as_tee(&tee), kms_client(), &s.config()).await.unwrap();
    let status = booted.app.take().unwrap().wait().await.unwrap();
    assert!(status.success());

    // the app saw the allowed env var, its plain env, not the dropped one, and the keys dir
    let out = std::fs::read_to_string(s.out()).unwrap();
    assert_eq!(
        out,
        format!("s3cr3t-api-key|dev||{}", s.keys_dir().display())
    );

    // keys: a 0700 dir of 0600 files, holding exactly what the KMS derives
    let keys = s.app_keys();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.keys_dir()), 0o700);
    for f in ["app.key", "disk.key", "root-ca.pem", "receipt.json"] {
        assert_eq!(mode(&s.keys_dir().join(f)), 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read(s.keys_dir().join("app.key")).unwrap(),
        keys.k256_secret().to_vec()
    );
    assert_eq!(
        std::fs::read(s.keys_dir().join("disk.key")).unwrap(),
        keys.disk_key().expose().to_vec()
    );
    assert_eq!(booted.state.secrets.receipt.log_index, 0);
    assert_eq!(w.releases(), 1);

    // measurements: the FORMATS.md order, replaying to the TD's RTMR3
    let root = root_keys();
    let kp = KeyProvider::kms(&root.ca().spki_der());
    let log = booted.state.event_log().events().to_vec();
    let want = vec![
        RuntimeEvent::new("system-preparing", vec![]),
        RuntimeEvent::new("app-id", s.app_id().0.to_vec()),
        RuntimeEvent::new("compose-hash", s.compose_hash().0.to_vec()),
        RuntimeEvent::new("instance-id", s.instance_id().as_bytes().to_vec()),
        RuntimeEvent::new(
            "encrypted-env-hash",
            cairn_attestation::eventlog::encrypted_env_hash_payload(Some(
                &std::fs::read(s.share_dir().join(".encrypted-env")).unwrap(),
            )),
        ),
        RuntimeEvent::new("boot-mr-done", vec![]),
        RuntimeEvent::new("os-image-hash", guest_os().os_image_hash().0.to_vec()),
        RuntimeEvent::new("key-provider", kp.to_payload()),
        RuntimeEvent::new("system-ready", vec![]),
    ];
    assert_eq!(log, want);
    assert_eq!(tee.rtmr3(), booted.state.event_log().rtmr3());
}

#[tokio::test]
async fn dstack_legacy_env_format_is_accepted() {
    let w = World::start().await;
    let s = w.share("");
    let blob = env::encrypt_legacy_with(
        StaticSecret::from([9u8; 32]),
        [1; 12],
        &s.app_keys().env_public(),
        &env_vars(),
    )
    .unwrap();
    s.write(".encrypted-env", &blob);
    let mut booted = boot_share(&s).await.unwrap();
    booted.app.take().unwrap().wait().await.unwrap();
    assert!(std::fs::read_to_string(s.out())
        .unwrap()
        .starts_with("s3cr3t-api-key|dev||"));
}

#[tokio::test]
async fn a_matching_key_provider_pin_boots() {
    let w = World::start().await;
    let spki = hex::encode(root_keys().ca().spki_der());
    let s = w.share(&format!(
        r#","key_provider":"kms","key_provider_id":"{spki}""#
    ));
    w.allow(&s).await;
    let booted = boot_share(&s).await.unwrap();
    assert_eq!(booted.state.secrets.key_provider.id, spki);
}

#[tokio::test]
async fn a_kms_with_another_root_ca_than_the_pin_is_refused_and_nothing_starts() {
    // The compose pins another cluster's root CA; the KMS asked is this cluster's.
    let w = World::start().await;
    let pinned = hex::encode(root_keys_of([0x77; 32]).ca().spki_der());
    let s = w.share(&format!(r#","key_provider_id":"{pinned}""#));
    w.allow(&s).await;
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(&err, Error::KeyProviderMismatch { pinned: p, got } if *p == pinned && *got == hex::encode(root_keys().ca().spki_der())),
        "{err}"
    );
    assert!(is_empty_or_missing(&s.keys_dir()));
    assert!(!s.out().exists());
}

/// A fake KMS in some TDX VM: valid `kms:rpc` quote, self-signed TLS certificate, echoing
/// the genuine (public) root CA certificate. It must not pass as that KMS.
async fn fake_kms_is_refused(extra: &str) {
    let w = World::with_kms(Hostile::SelfSignedTls).await;
    let s = w.share(extra);
    if !extra.is_empty() {
        w.allow(&s).await;
    }
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(
            only_kms_failure(&err),
            KmsError::NotRooted {
                source: ChainError::IssuerName {
                    role: CertRole::KmsServer,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    // The rooting is checked on the answer (the root CA comes with it): what the fake
    // relayed is refused and nothing reaches the disk.
    assert!(is_empty_or_missing(&s.keys_dir()));
    assert!(!s.out().exists());
}

#[tokio::test]
async fn a_fake_kms_echoing_the_genuine_root_ca_is_refused_with_the_pin_set() {
    let spki = hex::encode(root_keys().ca().spki_der());
    fake_kms_is_refused(&format!(
        r#","key_provider":"kms","key_provider_id":"{spki}""#
    ))
    .await;
}

#[tokio::test]
async fn a_fake_kms_echoing_the_genuine_root_ca_is_refused_without_a_pin() {
    fake_kms_is_refused("").await;
}

#[tokio::test]
async fn a_fake_kms_first_in_the_list_is_skipped_for_the_genuine_one() {
    let w = World::start().await;
    let fake = w.add_kms(0x0C, Hostile::SelfSignedTls).await;
    let s = share(&[&fake.url(), &w.url()], w.app_id, "");
    let booted = boot_share(&s).await.unwrap();
    assert_eq!(booted.state.secrets.kms_url, w.url());
    assert_eq!(
        booted.state.secrets.key_provider.id,
        hex::encode(root_keys().ca().spki_der())
    );
}

/// A KMS whose RA-TLS certificate (from `hostile`) the guest cannot accept is refused at
/// the handshake with an error `is_expected` accepts: no request, no key, no app.
async fn assert_kms_cert_refused(hostile: Hostile, is_expected: fn(&RaTlsError) -> bool) {
    let w = World::with_kms(hostile).await;
    let s = w.share("");
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        only_kms_failure(&err)
            .ratls_error()
            .is_some_and(is_expected),
        "{err}"
    );
    assert_eq!(w.releases(), 0);
    assert!(is_empty_or_missing(&s.keys_dir()));
    assert!(!s.out().exists());
}

#[tokio::test]
async fn a_kms_presenting_a_non_attested_cert_is_refused_before_any_request() {
    assert_kms_cert_refused(Hostile::PlainCert, |e| {
        matches!(e, RaTlsError::MissingExtension("quote"))
    })
    .await;
}

#[tokio::test]
async fn a_kms_cert_without_kms_rpc_usage_is_refused() {
    assert_kms_cert_refused(Hostile::WrongUsage, |e| {
        matches!(
            e,
            RaTlsError::WrongUsage {
                required: Usage::KmsRpc,
                presented: Some(Usage::AppCustom)
            }
        )
    })
    .await;
}

#[tokio::test]
async fn the_next_kms_is_tried_when_the_first_is_down() {
    let down = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down_url = format!("https://127.0.0.1:{}", down.local_addr().unwrap().port());
    drop(down);
    let w = World::start().await;
    let s = share(&[&down_url, &w.url()], w.app_id, "");
    let booted = boot_share(&s).await.unwrap();
    assert_eq!(booted.state.secrets.kms_url, w.url());
}

#[tokio::test]
async fn a_kms_denial_fails_the_boot_with_the_kms_reason() {
    // A compose the app's AppAuth never allowed: the KMS refuses with the contract's reason.
    let w = World::start().await;
    let s = w.share(r#","public_logs":true"#);
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(only_kms_failure(&err), KmsError::Status { status: 403, code, message, .. } if code == "denied.compose_hash" && message == "Compose hash not allowed"),
        "{err}"
    );
    assert!(err.to_string().contains("Compose hash not allowed"));
    assert_eq!(w.releases(), 0);
    assert!(is_empty_or_missing(&s.keys_dir()));
    assert!(!s.out().exists());
}

#[tokio::test]
async fn a_tampered_encrypted_env_stops_the_boot_before_keys_reach_the_disk() {
    let w = World::start().await;
    let s = w.share("");
    let mut blob = encrypted_env(&s);
    let last = blob.len() - 1;
    blob[last] ^= 1;
    s.write(".encrypted-env", &blob);
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(err, Error::Env(cairn_protocol::Error::EnvDecrypt)),
        "{err}"
    );
    assert!(is_empty_or_missing(&s.keys_dir()));
    assert!(!s.out().exists());
}

/// A fresh share, prepared by `prepare` (with its boot config), is refused with an error
/// `is_expected` accepts before anything is measured, a KMS is asked or a key is written.
async fn assert_refused_before_anything_is_measured(
    prepare: fn(&Share, &mut cairn_guest::BootConfig),
    is_expected: fn(&Error) -> bool,
) {
    let w = World::start().await;
    let s = w.share("");
    let mut cfg = s.config();
    prepare(&s, &mut cfg);
    let tee = guest_tee(1);
    match boot(as_tee(&tee), kms_client(), &cfg).await {
        Ok(_) => panic!("the boot succeeded"),
        Err(e) => assert!(is_expected(&e), "{e}"),
    }
    assert_eq!(tee.rtmr3().0, [0u8; 48], "nothing may be measured");
    assert_eq!(w.releases(), 0, "no KMS may be asked");
    assert!(is_empty_or_missing(&s.keys_dir()), "no key on disk");
}

/// The shares refused before anything is measured, one test each: `name: how the share
/// (and its boot config) is prepared => the error the boot must fail with,`.
macro_rules! refused_before_anything_is_measured {
    ($($name:ident: $prepare:expr => $expected:pat $(if $guard:expr)?,)+) => {$(
        #[tokio::test]
        async fn $name() {
            assert_refused_before_anything_is_measured($prepare, |e| {
                matches!(e, $expected $(if $guard)?)
            })
            .await;
        }
    )+};
}

refused_before_anything_is_measured! {
    a_malformed_compose_fails_before_anything_is_measured: |s, _| s.write(
        "app-compose.json",
        br#"{"manifest_version":2,"name":"demo","runner":"podman","kms_enabled":true}"#,
    ) => Error::Compose(cairn_protocol::compose::ComposeError::UnknownRunner(r)) if r == "podman",

    an_oversized_encrypted_env_is_refused: |s, _| {
        let oversized = vec![0u8; cairn_protocol::env::MAX_ENCRYPTED_ENV_LEN + 1];
        s.write(".encrypted-env", &oversized);
    } => Error::ShareFileTooLarge { file, .. } if file == ".encrypted-env",

    a_symlinked_sys_config_is_refused: |s, _| {
        let real = s.dir.path().join("real-sys-config.json");
        std::fs::rename(s.share_dir().join("sys-config.json"), &real).unwrap();
        std::os::unix::fs::symlink(&real, s.share_dir().join("sys-config.json")).unwrap();
    } => Error::ShareFile { file, reason } if file == "sys-config.json" && reason.contains("symlink"),

    // A docker CLI that does not exist stands for "no engine here", deterministically
    // (whether or not this machine has Docker).
    docker_compose_without_a_docker_engine_is_a_clear_error: |s, cfg| {
        s.write(
            "app-compose.json",
            br#"{"manifest_version":2,"name":"demo","runner":"docker-compose","docker_compose_file":"services: {}\n","kms_enabled":true}"#,
        );
        cfg.docker = s.dir.path().join("no-such-docker");
    } => Error::DockerUnavailable(m) if m.contains("No such file"),
}

/// Captures everything logged during a boot, at every level.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log capture. A global subscriber (not a thread-local one): tracing
/// caches per-callsite interest, and tests running in parallel on threads without a
/// subscriber would otherwise make callsites skip this test's thread-local subscriber.
fn global_capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let c2 = capture.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || c2.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            capture
        })
        .clone()
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let capture = global_capture();

    let w = World::start().await;
    let s = w.share("");
    s.write(".encrypted-env", &encrypted_env(&s));
    let mut booted = boot_share(&s).await.unwrap();
    booted.app.take().unwrap().wait().await.unwrap();
    // and a failing boot (tampered env)
    let s2 = w.share("");
    let mut blob = encrypted_env(&s2);
    blob[40] ^= 1;
    s2.write(".encrypted-env", &blob);
    let err = boot_share(&s2).await.unwrap_err();
    assert!(
        matches!(err, Error::Env(cairn_protocol::Error::EnvDecrypt)),
        "{err}"
    );
    // and an agent call that returns a derived secret
    let resp = {
        use tower::ServiceExt;
        cairn_guest::agent::router(booted.state.clone())
            .oneshot(
                axum::http::Request::post("/GetKey")
                    .body(axum::body::Body::from(r#"{"path":"p","purpose":"x"}"#))
                    .unwrap(),
            )
            .await
            .unwrap()
    };
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let derived: cairn_protocol::agent::GetKeyResponse = serde_json::from_slice(&body).unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("/GetKey"), "the agent request is traced");
    assert!(!logs.contains(&derived.key), "derived key in logs");
    assert!(logs.contains("keys written"), "logs: {logs:?}");
    let keys = s.app_keys();
    for secret in [
        hex::encode(*keys.k256_secret()),
        hex::encode(keys.disk_key().expose()),
        hex::encode(keys.env_secret().to_bytes()),
        "s3cr3t-api-key".to_owned(),
        "not-allowed-value".to_owned(),
    ] {
        assert!(!logs.contains(&secret), "secret {secret} in logs");
    }
    assert!(!format!("{:?}", booted.state).contains(&hex::encode(*keys.k256_secret())));
}

#[tokio::test]
async fn no_instance_id_measures_an_empty_instance_id() {
    let w = World::start().await;
    let s = w.share(r#","no_instance_id":true"#);
    w.allow(&s).await;
    let booted = boot_share(&s).await.unwrap();
    let log = booted.state.event_log().events().to_vec();
    assert_eq!(log[3], RuntimeEvent::new("instance-id", vec![]));
    // the disk key is the one for an empty instance id
    let keys = app_keys(&s.app_id(), &InstanceId::None);
    assert_eq!(
        std::fs::read(s.keys_dir().join("disk.key")).unwrap(),
        keys.disk_key().expose().to_vec()
    );
}

#[tokio::test]
async fn a_missing_instance_seed_is_generated_and_written_back_once() {
    let w = World::start().await;
    let s = w.share("");
    let info_path = s.share_dir().join(".instance-info");
    std::fs::remove_file(&info_path).unwrap();
    // Without .instance-info the app id is compose_hash[0..20], an app the chain does not
    // know: the KMS refuses with the contract's reason, but the seed was generated and
    // written back (with that app id) before anything was measured.
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(only_kms_failure(&err), KmsError::Status { status: 403, code, message, .. } if code == "denied.app_not_registered" && message == "App not registered"),
        "{err}"
    );
    let info = cairn_protocol::sysconfig::InstanceInfo::parse(&std::fs::read(&info_path).unwrap())
        .unwrap();
    let seed = info.seed().unwrap();
    assert_eq!(seed.len(), 32);
    assert_eq!(
        info.app_id().unwrap(),
        Some(AppId::from_compose_hash(&s.compose_hash()).0)
    );
    // The host assigns the registered app, keeping the seed: every boot now reads that
    // seed (nothing is written again), hence the same instance id.
    s.write(
        ".instance-info",
        &serde_json::to_vec(&serde_json::json!({
            "instance_id_seed": hex::encode(&seed),
            "app_id": hex::encode(w.app_id.0),
        }))
        .unwrap(),
    );
    let written = std::fs::read(&info_path).unwrap();
    let first = boot_share(&s).await.unwrap();
    let again = boot_share(&s).await.unwrap();
    assert_eq!(
        first.state.instance_id,
        InstanceId::derive(&seed, &w.app_id)
    );
    assert_eq!(again.state.instance_id, first.state.instance_id);
    assert_ne!(first.state.instance_id, s.instance_id());
    assert_eq!(std::fs::read(&info_path).unwrap(), written);
}

#[tokio::test]
async fn the_app_id_comes_from_instance_info_when_set() {
    // Every share names the app's AppAuth address in .instance-info, never the
    // compose-derived id.
    let w = World::start().await;
    let s = w.share("");
    assert_ne!(w.app_id, AppId::from_compose_hash(&s.compose_hash()));
    let booted = boot_share(&s).await.unwrap();
    assert_eq!(booted.state.app_id, w.app_id);
    assert_eq!(
        booted.state.event_log().events()[1].payload,
        w.app_id.0.to_vec()
    );
}

#[tokio::test]
async fn a_silent_kms_times_out_and_the_next_one_is_asked() {
    // accepts TCP, never speaks TLS
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("https://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let w = World::start().await;
    let s = share(&[&silent_url, &w.url()], w.app_id, "");
    let client = cairn_kms_client::KmsClient::new(verifier()).with_timeouts(
        cairn_kms_client::Timeouts::uniform(std::time::Duration::from_millis(500)),
    );
    let booted = boot(as_tee(&guest_tee(1)), client.clone(), &s.config())
        .await
        .unwrap();
    assert_eq!(booted.state.secrets.kms_url, w.url());

    let s = share(&[&silent_url], w.app_id, "");
    let err = boot(as_tee(&guest_tee(1)), client, &s.config())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::AllKmsFailed(v) if matches!(v[0].1, KmsError::Timeout { stage: Stage::Handshake, .. })),
        "{err}"
    );
    hold.abort();
}

#[tokio::test]
async fn an_http_kms_url_is_refused_without_connecting() {
    let s = share(&["http://127.0.0.1:9"], AppId([1; 20]), "");
    let err = boot_share(&s).await.unwrap_err();
    assert!(
        matches!(&err, Error::AllKmsFailed(v) if matches!(&v[0].1, KmsError::BadUrl { reason, .. } if reason.contains("RA-TLS"))),
        "{err}"
    );
}

/// The real TDX backend on an empty fake kernel tree (nothing to measure or quote with).
fn tdx_without_kernel() -> (
    tempfile::TempDir,
    std::sync::Arc<dyn cairn_attestation::Tee>,
) {
    let fake = tempfile::tempdir().unwrap();
    let tdx =
        cairn_attestation::TdxTee::with_roots(fake.path().join("tsm"), fake.path().join("sys"));
    (fake, std::sync::Arc::new(tdx))
}

#[tokio::test]
async fn boot_without_a_kms_pin_is_refused_on_a_non_simulator_tee() {
    let w = World::start().await;
    let s = w.share("");
    let (fake, tdx) = tdx_without_kernel();
    let err = boot(tdx, kms_client(), &s.config()).await.unwrap_err();
    assert!(matches!(err, Error::KmsPinRequired), "{err}");
    // Refused before anything was measured or asked.
    assert_eq!(w.releases(), 0);
    assert!(std::fs::read_dir(fake.path()).unwrap().next().is_none());
    assert!(is_empty_or_missing(&s.keys_dir()));
    assert!(!s.out().exists());
}

#[tokio::test]
async fn tee_tdx_without_the_kernel_interfaces_fails_clearly_before_any_kms_request() {
    let w = World::start().await;
    let pinned = hex::encode(root_keys().ca().spki_der());
    let s = w.share(&format!(r#","key_provider_id":"{pinned}""#));
    w.allow(&s).await;
    let (_fake, tdx) = tdx_without_kernel();
    let err = boot(tdx, kms_client(), &s.config()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Attestation(cairn_attestation::Error::Tee(
                cairn_attestation::TeeError::Unsupported(m)
            )) if m.contains("tdx_guest")
        ),
        "{err}"
    );
    assert_eq!(w.releases(), 0);
    assert!(is_empty_or_missing(&s.keys_dir()));
}

/// A KMS client fetching the collateral of the KMS's quote from the PCCS at `url`.
fn pccs_client(url: &str) -> cairn_kms_client::KmsClient {
    cairn_kms_client::KmsClient::with_pccs(
        cairn_attestation::Verifier::dangerous_with_simulator_root(pki().root_ca_der()),
        cairn_attestation::PccsClient::new(url).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_for_the_kms_quote_can_come_from_a_pccs() {
    let pccs = cairn_attestation::simulator::SimPccs::new(pki());
    let served = ServedPccs::start(pccs.clone()).await;
    let pccs_url = served.url().to_owned();

    let w = World::start().await;
    let s = w.share("");
    let client = pccs_client(&pccs_url);
    let booted = boot(as_tee(&guest_tee(1)), client, &s.config())
        .await
        .unwrap();
    assert_eq!(booted.state.secrets.kms_url, w.url());
    assert!(pccs.requests() > 0, "collateral was fetched");

    // with PCCS collateral a plain certificate is refused just the same
    let plain = w.add_kms(0x0C, Hostile::PlainCert).await;
    let s = share(&[&plain.url()], w.app_id, "");
    let client = pccs_client(&pccs_url);
    let err = boot(as_tee(&guest_tee(1)), client, &s.config())
        .await
        .unwrap_err();
    assert!(
        matches!(
            only_kms_failure(&err).ratls_error(),
            Some(RaTlsError::MissingExtension("quote"))
        ),
        "{err}"
    );
    assert_eq!(plain.node.log().size(), 0);
    served.stop().await.unwrap();
}

/// The host can encrypt other values of the allowed names to the app's public env key
/// and swap `.encrypted-env`: the guest measures the blob's hash before any key
/// release, so the swapped boot quotes another RTMR3 (and mr_aggregated) than the
/// honest one, while the honest event log still replays to its quote.
#[tokio::test]
async fn a_replaced_encrypted_env_changes_the_attested_identity() {
    use cairn_attestation::consts::EVENT_ENCRYPTED_ENV_HASH;
    use sha2::Digest;
    let w = World::start().await;
    // One share (so one app id, compose and instance), booted three times.
    let s = w.share("");
    let honest = encrypted_env(&s);
    let swapped = s.encrypt_env(&env_of(&[("API_KEY", "the-hosts-value")]));
    let mut runs = Vec::new();
    for (n, blob) in [Some(&honest), Some(&swapped), None]
        .into_iter()
        .enumerate()
    {
        let path = s.share_dir().join(".encrypted-env");
        match blob {
            Some(blob) => s.write(".encrypted-env", blob),
            None => std::fs::remove_file(&path).unwrap(),
        }
        let tee = guest_tee(1);
        let mut cfg = s.config();
        cfg.start_app = false;
        cfg.keys_dir = s.dir.path().join(format!("keys-{n}"));
        cfg.work_dir = s.dir.path().join(format!("work-{n}"));
        let b = boot(as_tee(&tee), kms_client(), &cfg).await.unwrap();
        let (quote, log) = b.state.quote_with_log(&[0; 64]).unwrap();
        // the honest verifier replays each log to its quote
        let vq = verifier()
            .verify(&quote, &log, &[0; 64], unix_now())
            .unwrap();
        runs.push((b, vq));
    }
    let [(a, va), (b, vb), (_c, vc)] = <[_; 3]>::try_from(runs).ok().unwrap();
    // same app, compose and instance: only the env differs
    assert_eq!(va.app_id(), vb.app_id());
    assert_eq!(va.instance_id(), vb.instance_id());
    assert_ne!(va.rtmrs()[3], vb.rtmrs()[3]);
    assert_ne!(va.mr_aggregated(), vb.mr_aggregated());
    assert_ne!(
        va.rtmrs()[3],
        vc.rtmrs()[3],
        "deleting the env is visible too"
    );
    // the measured payload is SHA-256 of the exact blob, before boot-mr-done
    let events = a.state.event_log().events().to_vec();
    assert_eq!(events[4].name, EVENT_ENCRYPTED_ENV_HASH);
    assert_eq!(events[4].payload, sha2::Sha256::digest(&honest).to_vec());
    assert_eq!(events[5].name, "boot-mr-done");
    let events = b.state.event_log().events().to_vec();
    assert_eq!(events[4].payload, sha2::Sha256::digest(&swapped).to_vec());
}
