//! `cairn-guest boot` (DESIGN.md §7): from the host share to a running app.
//!
//! ```text
//! read share (caps, no symlinks) ─► validate compose ─► KMS trust: the pin
//!   (key_provider_id, required outside the simulator), KmsAuth when sys-config names it
//!   ─► app_id, instance_id
//!   ─► measure system-preparing, app-id, compose-hash, instance-id,
//!      encrypted-env-hash (SHA-256 of .encrypted-env), boot-mr-done
//!   ─► RA-TLS client cert (usage app:custom, event log so far)
//!   ─► for each kms_url: connect over mutual RA-TLS (KMS: kms:rpc, evidence verified),
//!      isKmsAllowed(KMS boot info) at a pinned block (with a chain), POST /v1/app-key
//!      (root CA issued the KMS's TLS certificate)
//!   ─► root CA SPKI == key_provider_id (when pinned); app key matches its KMS signature
//!   ─► measure os-image-hash, key-provider, system-ready
//!   ─► decrypt .encrypted-env, keep only allowed_envs
//!   ─► write keys (0700 dir, 0600 files) ─► start the app
//! ```
//!
//! Any failure stops the boot before the app starts; keys reach the disk only after the
//! env decrypted. Errors name the failing step; no secret is ever logged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_attestation::ids::{AppId, ComposeHash, InstanceId, KeyProvider, OsImageHash};
use cairn_attestation::{EventLog, RaTlsCertBuilder, Tee, Usage};
use cairn_protocol::api::AppKeyResponse;
use cairn_protocol::env::{self, EnvVar};
use cairn_protocol::hostapi::{
    EVENT_APP_STARTED, EVENT_BOOT_ERROR, EVENT_BOOT_PROGRESS, EVENT_BOOT_RECEIPT,
};
use cairn_protocol::sig;
use cairn_protocol::sysconfig::InstanceInfo;
use rand_core::{OsRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use cairn_attestation::RootCa;
use cairn_kms_client::KmsClient;

use crate::error::{Error, Result};
use crate::host_api::Reporter;
use crate::keydir;
use crate::kms_trust::KmsTrust;
use crate::runner::{self, AppEnv};
use crate::share::{self, HostShare};
use crate::state::{AppSecrets, GuestState};

/// What `boot` needs besides the TEE and the KMS client.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// The host share directory.
    pub share_dir: PathBuf,
    /// Where the keys are written (created `0700`).
    pub keys_dir: PathBuf,
    /// A private directory for runner files.
    pub work_dir: PathBuf,
    /// The agent socket the app is told about, if the agent is served.
    pub agent_socket: Option<PathBuf>,
    /// The device id, when the platform tells it (the simulator does).
    pub device_id: Option<[u8; 32]>,
    /// Start the app (false: stop after writing the keys).
    pub start_app: bool,
    /// The docker CLI for the `docker-compose` runner ([`runner::DEFAULT_DOCKER`]).
    pub docker: PathBuf,
}

/// A finished boot.
#[derive(Debug)]
pub struct Booted {
    /// Everything the guest agent serves.
    pub state: Arc<GuestState>,
    /// The started app (`process` runner: the child; `docker-compose`: the project).
    pub app: Option<runner::App>,
    /// How long boot took up to (and including) spawning the app.
    pub elapsed: Duration,
    /// Reports to the host (`sys-config.json` `host_api_url`); for the app's exit.
    pub reporter: Reporter,
}

/// How long a failed boot waits for its error report to reach the host.
pub const ERROR_REPORT_FLUSH: Duration = Duration::from_secs(2);

/// Run the boot flow. See the module docs. Each step is also reported to the host
/// (best effort, display only: [`Reporter`]); a failure is reported as `boot.error`.
pub async fn boot(tee: Arc<dyn Tee>, kms: KmsClient, config: &BootConfig) -> Result<Booted> {
    let started = Instant::now();
    let share = HostShare::read(&config.share_dir)?;
    let reporter = Reporter::from_url(share.sys_config.host_api_url.as_deref());
    match boot_share(tee, kms, config, share, &reporter, started).await {
        Ok(booted) => Ok(booted),
        Err(e) => {
            reporter.report(EVENT_BOOT_ERROR, e.to_string());
            reporter.flush(ERROR_REPORT_FLUSH).await;
            Err(e)
        }
    }
}

async fn boot_share(
    tee: Arc<dyn Tee>,
    kms: KmsClient,
    config: &BootConfig,
    share: HostShare,
    reporter: &Reporter,
    started: Instant,
) -> Result<Booted> {
    reporter.report(EVENT_BOOT_PROGRESS, "host share read");
    if !share.compose.kms_enabled {
        return Err(Error::KmsDisabled);
    }
    if share.sys_config.kms_urls.is_empty() {
        return Err(Error::NoKmsUrls);
    }
    let runner = share.compose.runner()?;
    if let cairn_protocol::compose::Runner::DockerCompose(_) = runner {
        if config.start_app {
            // Before anything is measured or released: a boot that cannot start its app
            // must not leave keys behind.
            runner::docker_available(&config.docker)
                .await
                .map_err(Error::DockerUnavailable)?;
        }
    }
    // Which KMS to trust is settled before anything is measured (no pin outside the
    // simulator, an unreachable chain: no boot).
    let trust = KmsTrust::for_boot(&share, tee.as_ref()).await?;
    let compose_hash = ComposeHash(share.compose_hash);
    let app_id = match share
        .instance_info
        .as_ref()
        .map(InstanceInfo::app_id)
        .transpose()?
    {
        Some(Some(id)) => AppId(id),
        _ => AppId::from_compose_hash(&compose_hash),
    };
    let instance_id = if share.compose.no_instance_id {
        InstanceId::None
    } else {
        InstanceId::derive(&instance_seed(&share, &app_id)?, &app_id)
    };
    tracing::info!(app_id = %app_id, compose_hash = %compose_hash, name = %share.compose.name, "measuring boot");

    let mut log = EventLog::new();
    // The encrypted env's hash is measured before any key release (docs/security.md
    // "Encrypted env"): a host that swaps the blob changes RTMR3 and mr_aggregated.
    log.measure_boot_with_encrypted_env(
        tee.as_ref(),
        &app_id,
        &compose_hash,
        &instance_id,
        share.encrypted_env.as_deref(),
    )?;
    for e in log.events() {
        reporter.report(EVENT_BOOT_PROGRESS, format!("measured {}", e.name));
    }

    let client_cert = RaTlsCertBuilder::new(Usage::AppCustom)
        .common_name(share.compose.name.clone())
        .event_log(&log.to_json())
        .app_id(app_id.0)
        .build(tee.as_ref())?;
    let (kms_url, release) = trust
        .request_keys(&kms, &share.sys_config.kms_urls, &client_cert)
        .await?;
    reporter.report(
        EVENT_BOOT_RECEIPT,
        format!(
            "kms={kms_url} log_index={} policy_block={}",
            release.keys.receipt.log_index, release.keys.receipt.policy_block_number
        ),
    );
    let (secrets, env_secret) = check_release(
        &app_id,
        trust.pin.as_deref(),
        kms_url,
        release.keys,
        &release.root,
    )?;

    let measured_before = log.events().len();
    log.measure_system_ready(
        tee.as_ref(),
        &OsImageHash(secrets.os_image_hash),
        &secrets.key_provider,
    )?;
    for e in log.events().iter().skip(measured_before) {
        reporter.report(EVENT_BOOT_PROGRESS, format!("measured {}", e.name));
    }

    let env_vars = match &share.encrypted_env {
        None => Vec::new(),
        Some(blob) => decrypt_env(&env_secret, &app_id, blob, &share.compose.allowed_envs)?,
    };
    if let cairn_protocol::compose::Runner::DockerCompose(_) = runner {
        // An env the runner would refuse must not leave keys behind.
        runner::check_env(&env_vars)?;
    }

    keydir::write_keys(&config.keys_dir, &secrets)?;
    tracing::info!(keys_dir = %config.keys_dir.display(), log_index = secrets.receipt.log_index, "keys written");
    reporter.report(
        EVENT_BOOT_PROGRESS,
        format!("keys written, {} env vars decrypted", env_vars.len()),
    );
    // The host's port map (process backend: the app listens on the host port), then
    // the decrypted env, which wins on a name clash.
    let mut app_vars: Vec<EnvVar> = share
        .sys_config
        .port_map
        .iter()
        .map(|p| EnvVar {
            key: p.env_name(),
            value: p.host_port.to_string(),
        })
        .collect();
    app_vars.extend(env_vars);

    let app = if config.start_app {
        let app_env = AppEnv {
            keys_dir: config.keys_dir.clone(),
            agent_socket: config.agent_socket.clone(),
            work_dir: config.work_dir.clone(),
            docker: config.docker.clone(),
            project: runner::project_name(
                &share.compose.name,
                &app_id.0,
                instance_id.as_bytes(),
                &config.work_dir,
            ),
        };
        let app = runner::start(runner, &app_vars, &app_env).await?;
        tracing::info!(pid = app.pid(), project = app.compose().map(|c| c.project()), runner = %share.compose.runner, "app started");
        reporter.report(EVENT_APP_STARTED, share.compose.runner.clone());
        Some(app)
    } else {
        None
    };
    let elapsed = started.elapsed();
    let state = GuestState::new(
        tee,
        share,
        app_id,
        instance_id,
        config.device_id,
        kms,
        secrets,
        log,
    );
    Ok(Booted {
        state: Arc::new(state),
        app,
        elapsed,
        reporter: reporter.clone(),
    })
}

/// The instance-id seed from `.instance-info`, or a fresh random one written back to the
/// share (best effort: a read-only share only loses the seed across reboots).
fn instance_seed(share: &HostShare, app_id: &AppId) -> Result<Vec<u8>> {
    if let Some(info) = &share.instance_info {
        let seed = info.seed()?;
        if !seed.is_empty() {
            return Ok(seed);
        }
    }
    let mut seed = vec![0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let info = InstanceInfo {
        instance_id_seed: hex::encode(&seed),
        app_id: hex::encode(app_id.0),
        instance_id: String::new(),
    };
    // `create_new` (O_CREAT|O_EXCL) never follows a symlink the host may have planted
    // since the share was read, and never overwrites anything.
    let written = serde_json::to_vec(&info)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(share.dir.join(share::INSTANCE_INFO))
                .and_then(|mut f| f.write_all(&bytes))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not write the new instance seed back to the share");
    }
    Ok(seed)
}

/// Check a KMS response against what the guest knows, and turn it into [`AppSecrets`].
/// `root` is the root CA that issued the KMS's TLS certificate (checked by
/// [`KmsClient::app_key`]); it is what the pin is compared with and what is measured.
fn check_release(
    app_id: &AppId,
    pinned: Option<&[u8]>,
    kms_url: String,
    resp: AppKeyResponse,
    root: &RootCa,
) -> Result<(AppSecrets, Zeroizing<[u8; 32]>)> {
    let spki = root.spki();
    if let Some(pinned) = pinned {
        if pinned != spki {
            return Err(Error::KeyProviderMismatch {
                pinned: hex::encode(pinned),
                got: hex::encode(spki),
            });
        }
    }
    // The KMS signature must be over *this* app key for *this* app id. What it proves is
    // limited: the root secp256k1 key is not in the root CA certificate nor in any other
    // root-signed source the guest has, so the recovered signer is not compared here; it
    // is what the dstack signature chain carries, and verifiers of that chain compare it
    // with the root key registered on chain. It does catch a corrupted or mismatched
    // response.
    let app_key = k256::ecdsa::SigningKey::from_bytes((&*resp.app_key).into())
        .map_err(|_| Error::BadKmsResponse("app key is not a secp256k1 scalar".to_owned()))?;
    sig::recover_kms_app_key_signer(
        &app_id.0,
        &sig::compressed(app_key.verifying_key()),
        &resp.kms_signature,
    )
    .map_err(|e| Error::BadKmsResponse(format!("KMS signature over the app key: {e}")))?;
    let previous = match &resp.previous {
        Some(p) => {
            let key = k256::ecdsa::SigningKey::from_bytes((&*p.app_key).into()).map_err(|_| {
                Error::BadKmsResponse("previous app key is not a secp256k1 scalar".to_owned())
            })?;
            sig::recover_kms_app_key_signer(
                &app_id.0,
                &sig::compressed(key.verifying_key()),
                &p.kms_signature,
            )
            .map_err(|e| {
                Error::BadKmsResponse(format!("KMS signature over the previous app key: {e}"))
            })?;
            if p.key_generation >= resp.key_generation {
                return Err(Error::BadKmsResponse(format!(
                    "previous key generation {} is not below the current {}",
                    p.key_generation, resp.key_generation
                )));
            }
            Some(crate::state::PreviousSecrets {
                key_generation: p.key_generation,
                valid_until: p.valid_until,
                app_key: p.app_key.clone(),
                kms_signature: p.kms_signature,
            })
        }
        None => None,
    };
    let secrets = AppSecrets {
        previous,
        app_key: resp.app_key.clone(),
        kms_signature: resp.kms_signature,
        disk_key: resp.disk_key.clone(),
        root_ca_cert: resp.root_ca_cert.clone(),
        key_provider: KeyProvider::kms(spki),
        os_image_hash: resp.os_image_hash,
        gateway_app_id: resp.gateway_app_id,
        key_generation: resp.key_generation,
        receipt: resp.receipt.clone(),
        kms_url,
    };
    Ok((secrets, resp.env_secret))
}

fn decrypt_env(
    secret: &Zeroizing<[u8; 32]>,
    app_id: &AppId,
    blob: &[u8],
    allowed: &[String],
) -> Result<Vec<EnvVar>> {
    let (vars, format) = env::decrypt(&StaticSecret::from(**secret), &app_id.0, blob)?;
    let (kept, dropped) = vars.filter_allowed(allowed);
    tracing::info!(?format, kept = kept.len(), ?dropped, "env decrypted");
    Ok(kept)
}
