//! [`Vmm`]: the CVMs of one host, their lifecycle and what the chain says about them.
//!
//! Every lifecycle operation reads like the spec, one step a line:
//!
//! ```text
//! create   validate → pick ports → pre-flight (chain, pinned block)
//!          → write the CVM directory atomically → [start]
//! start    state allows it → pre-flight → ports free → sys-config → spawn → booting
//! stop     SIGTERM → grace → SIGKILL the session → stopped
//! upgrade  validate → pre-flight of the new compose → allowed: stop, rewrite, start
//!          → not yet (absent / scheduled) and wait_for_approval: 202, poll the chain
//! ```
//!
//! A refused pre-flight costs nothing: no directory, no process, no port. The pre-flight
//! and the manifest are the VMM's; the guest's reports are display only.

mod cvm;
mod lifecycle;
mod upgrade;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use cairn_onchain::unix_now;
use cairn_protocol::compose::{AppCompose, MAX_APP_COMPOSE_LEN};
use cairn_protocol::vmm::{
    is_valid_cvm_name, AppCvm, AppList, AppStatus, CheckStatus, CreateCvmRequest, CvmInfo, CvmList,
    CvmState, ImageInfo, ImageList, PreflightCheck, PreflightReport,
};
use rand_core::{OsRng, RngCore};
use tokio::task::AbortHandle;

pub(crate) use cvm::{Cvm, CvmRef};
pub use upgrade::UpgradeOutcome;

use crate::backend::{Backend, ProcessBackend, QemuBackend};
use crate::config::{BackendKind, Config};
use crate::error::{Conflict, Error, Result};
use crate::images::{Catalog, Image};
use crate::metrics::Metrics;
use crate::preflight::{self, Chain};
use crate::store::{self, CvmDir, Manifest, Persisted, CVMS_DIR, NEW_PREFIX};
use crate::{hostapi, logs, supervisor};

/// Longest unix socket path (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The VMM: the CVMs of one state directory.
pub struct Vmm {
    config: Config,
    catalog: Catalog,
    backend: Arc<dyn Backend>,
    chain: Chain,
    metrics: Metrics,
    cvms: RwLock<BTreeMap<String, CvmRef>>,
    /// Serializes creations (name uniqueness, port allocation, the CVM limit).
    create: tokio::sync::Mutex<()>,
    /// VMM-wide background tasks (log rotation).
    tasks: Mutex<Vec<AbortHandle>>,
    /// The state directory lock, held while the VMM runs.
    lock: Mutex<Option<std::fs::File>>,
}

impl std::fmt::Debug for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmm")
            .field("state_dir", &self.config.state_dir)
            .field("backend", &self.backend.kind())
            .finish_non_exhaustive()
    }
}

fn new_id() -> String {
    let mut b = [0u8; 8];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Vmm {
    /// Open the state directory (exclusively), check the backend and images, and take
    /// over the CVMs a previous VMM left: a guest still running (same pid, start time
    /// and boot) is re-adopted, one that is gone is reported `failed` and what it left
    /// of its session is killed; nothing is started twice. Pending upgrades resume.
    pub async fn open(mut config: Config) -> Result<Arc<Vmm>> {
        // Guests run in their CVM's directory: a relative program path (one with a '/')
        // must not be resolved there. Bare names are looked up in PATH.
        for p in [
            &mut config.backend.setsid,
            &mut config.backend.process.guest_bin,
            &mut config.backend.qemu.qemu,
        ] {
            if p.is_relative() && p.components().count() > 1 {
                let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?;
                *p = cwd.join(&*p);
            }
        }
        if config.state_dir.is_relative() {
            let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?;
            config.state_dir = cwd.join(&config.state_dir);
        }
        let catalog = Catalog::from_config(&config.images)?;
        let backend: Arc<dyn Backend> = match config.backend.kind {
            BackendKind::Process => Arc::new(ProcessBackend::new(
                config.backend.process.guest_bin.clone(),
                config.backend.process.guest_args.clone(),
            )),
            BackendKind::Qemu => {
                let q = &config.backend.qemu;
                Arc::new(QemuBackend::new(
                    q.qemu.clone(),
                    q.kvm_device.clone(),
                    q.tdx_param.clone(),
                    q.host_api_port,
                ))
            }
        };
        backend.check_host()?;
        // Unix socket paths are limited (108 bytes with the NUL): every CVM has two.
        let longest = CvmDir::new(&config.state_dir, &"0".repeat(16)).host_api();
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::config(
                "state_dir",
                format!(
                    "too long: the CVMs' sockets ({}) would exceed {MAX_SOCKET_PATH} bytes",
                    longest.display()
                ),
            ));
        }
        let cvms_dir = config.state_dir.join(CVMS_DIR);
        std::fs::create_dir_all(&cvms_dir).map_err(|e| Error::io("create", &cvms_dir, e))?;
        let lock_path = config.state_dir.join("vmm.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked(config.state_dir.clone()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &lock_path, e)),
        }
        let chain = Chain::new(config.chain_config(), config.device_id()?);
        let vmm = Arc::new(Vmm {
            config,
            catalog,
            backend,
            chain,
            metrics: Metrics::default(),
            cvms: RwLock::new(BTreeMap::new()),
            create: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            lock: Mutex::new(Some(lock)),
        });
        vmm.load(&cvms_dir)?;
        let rotation = tokio::spawn(rotate_logs(Arc::downgrade(&vmm)));
        vmm.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(rotation.abort_handle());
        Ok(vmm)
    }

    fn load(self: &Arc<Self>, cvms_dir: &std::path::Path) -> Result<()> {
        let entries = std::fs::read_dir(cvms_dir).map_err(|e| Error::io("list", cvms_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", cvms_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(NEW_PREFIX) || name.starts_with(".removed-") {
                // A creation or removal interrupted by a crash.
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "cannot clean up");
                }
                continue;
            }
            let dir = CvmDir::new(&self.config.state_dir, &name);
            let loaded = store::read_json::<Manifest>(&dir.manifest())
                .and_then(|m| store::read_json::<Persisted>(&dir.state()).map(|s| (m, s)));
            let (manifest, state) = match loaded {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(cvm = %name, error = %e, "skipping a CVM whose files are unreadable");
                    continue;
                }
            };
            if manifest.id != name {
                tracing::error!(cvm = %name, "skipping a CVM whose manifest names another id");
                continue;
            }
            let cvm = Arc::new(Cvm::new(dir, manifest, state));
            self.adopt(&cvm)?;
            hostapi::serve(&cvm, self)?;
            self.cvms
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(cvm.id.clone(), Arc::clone(&cvm));
            upgrade::resume(self, &cvm);
        }
        Ok(())
    }

    /// Stop background work and release the state directory. CVMs keep running: a
    /// later VMM re-adopts them.
    pub async fn shutdown(&self) {
        cvm::abort_all(&self.tasks);
        let cvms: Vec<CvmRef> = self.all();
        for c in cvms {
            c.abort_tasks();
        }
        self.lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The backend's kind (`process`, `qemu`).
    pub fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }

    fn all(&self) -> Vec<CvmRef> {
        self.cvms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The CVM with id or name `key`.
    pub(crate) fn find(&self, key: &str) -> Result<CvmRef> {
        let cvms = self.cvms.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cvms.get(key) {
            return Ok(Arc::clone(c));
        }
        cvms.values()
            .find(|c| c.read(|d| d.manifest.name == key))
            .cloned()
            .ok_or_else(|| Error::NotFound(key.chars().take(64).collect()))
    }

    /// Every CVM, by name.
    pub fn list(&self) -> CvmList {
        let mut cvms: Vec<_> = self.all().iter().map(|c| c.summary()).collect();
        cvms.sort_by(|a, b| a.name.cmp(&b.name));
        CvmList { cvms }
    }

    /// One CVM (by id or name).
    pub fn get(&self, key: &str) -> Result<CvmInfo> {
        Ok(self.find(key)?.info(self.backend.kind()))
    }

    /// CVM counts by state (for metrics).
    pub fn state_counts(&self) -> BTreeMap<CvmState, usize> {
        let mut out = BTreeMap::new();
        for c in self.all() {
            *out.entry(c.read(|d| d.state.state)).or_default() += 1;
        }
        out
    }

    /// The console log files of a CVM: (current, rotated).
    pub(crate) fn log_paths(&self, key: &str) -> Result<(PathBuf, PathBuf, CvmRef)> {
        let c = self.find(key)?;
        Ok((c.dir.console(), c.dir.console_old(), c))
    }

    /// The pre-flight of (`app_id`, `compose_hash`, `os_image_hash`), counted.
    pub(crate) async fn preflight(
        &self,
        app_id: [u8; 20],
        compose_hash: [u8; 32],
        os_image_hash: [u8; 32],
    ) -> Result<PreflightReport> {
        match self
            .chain
            .preflight(app_id, compose_hash, os_image_hash)
            .await
        {
            Ok(r) => {
                match preflight::refusal(&r) {
                    Ok(()) => self.metrics.preflight("allowed", "none"),
                    Err(e) => self.metrics.preflight("denied", e.code()),
                }
                Ok(r)
            }
            Err(e) => {
                self.metrics.preflight("error", e.code());
                Err(e)
            }
        }
    }

    /// Pre-flight `(app, compose, image)`; `Err(Denied)` when the chain refuses.
    async fn require_allowed(
        &self,
        app_id: [u8; 20],
        compose_hash: [u8; 32],
        os_image_hash: [u8; 32],
    ) -> Result<PreflightReport> {
        let report = self.preflight(app_id, compose_hash, os_image_hash).await?;
        preflight::refusal(&report)?;
        Ok(report)
    }

    /// The pre-flight of an app's compose hash and image at the current policy block
    /// (`GET /v1/apps/{app_id}`).
    pub async fn app_preflight(
        &self,
        app_id: [u8; 20],
        compose_hash: [u8; 32],
        image: &str,
    ) -> Result<PreflightReport> {
        let image = self.catalog.get(image)?;
        self.preflight(app_id, compose_hash, image.os_image_hash)
            .await
    }

    /// The apps of the managed CVMs with each CVM's pre-flight (`GET /v1/apps`).
    pub async fn apps(&self) -> Result<AppList> {
        /// (id, name, state, compose hash, OS image hash) of one CVM.
        type Row = (String, String, CvmState, [u8; 32], [u8; 32]);
        let mut by_app: BTreeMap<[u8; 20], Vec<Row>> = BTreeMap::new();
        for c in self.all() {
            let (app, name, state, compose, image) = c.read(|d| {
                (
                    d.manifest.app_id,
                    d.manifest.name.clone(),
                    d.state.state,
                    d.manifest.compose_hash(),
                    d.manifest.os_image_hash,
                )
            });
            by_app
                .entry(app)
                .or_default()
                .push((c.id.clone(), name, state, compose, image));
        }
        let mut apps = Vec::with_capacity(by_app.len());
        for (app_id, cvms) in by_app {
            let mut out = Vec::with_capacity(cvms.len());
            for (id, name, state, compose, image) in cvms {
                let preflight = self.preflight(app_id, compose, image).await?;
                out.push(AppCvm {
                    id,
                    name,
                    state,
                    preflight,
                });
            }
            let registered = out.first().is_some_and(|c| {
                c.preflight.checks.iter().any(|k| {
                    k.check == PreflightCheck::AppRegistered && k.status == CheckStatus::Pass
                })
            });
            apps.push(AppStatus {
                app_id,
                registered,
                cvms: out,
            });
        }
        Ok(AppList { apps })
    }

    /// The configured images with whether KmsAuth allows them now (`GET /v1/images`).
    /// A chain failure leaves `allowed` unset and says why.
    pub async fn images(&self) -> ImageList {
        let images: Vec<&Image> = self.catalog.iter().collect();
        let hashes: Vec<[u8; 32]> = images.iter().map(|i| i.os_image_hash).collect();
        let (block, allowed, chain_error) = match self.chain.os_images_allowed(&hashes).await {
            Ok((block, allowed)) => (Some(block), allowed.into_iter().map(Some).collect(), None),
            Err(e) => (None, vec![None; images.len()], Some(e.to_string())),
        };
        ImageList {
            images: images
                .iter()
                .zip(allowed)
                .map(|(i, allowed)| ImageInfo {
                    image: i.reference.clone(),
                    kind: i.kind,
                    os_image_hash: i.os_image_hash,
                    mrtd: i.manifest.mrtd.0,
                    rtmr0: i.manifest.rtmr0.0,
                    rtmr1: i.manifest.rtmr1.0,
                    rtmr2: i.manifest.rtmr2.0,
                    allowed,
                })
                .collect(),
            block_number: block,
            chain_error,
        }
    }

    /// Deploy a CVM (`POST /v1/cvms`). Nothing is written, started or reserved unless the
    /// request is valid and the chain pre-flight allows it.
    pub async fn create(self: &Arc<Self>, req: CreateCvmRequest) -> Result<CvmInfo> {
        let started = Instant::now();
        let result = self.create_inner(req).await;
        match &result {
            Ok(info) => {
                self.metrics.operation("create", "ok");
                if info.state.is_active() {
                    self.metrics.deploy(started.elapsed());
                }
            }
            Err(e) => self.metrics.operation("create", e.code()),
        }
        result
    }

    async fn create_inner(self: &Arc<Self>, req: CreateCvmRequest) -> Result<CvmInfo> {
        // 1. Validate: everything a request controls, before anything else.
        if !is_valid_cvm_name(&req.name) {
            return Err(Error::invalid(
                "name",
                "1-63 bytes of [a-z0-9-], not starting or ending with '-'",
            ));
        }
        let compose_hash = self.validate_compose(&req.compose)?;
        let image = self.catalog.get(&req.image)?.clone();
        self.backend.check_image(&image)?;
        self.validate_resources(req.vcpus, req.memory_mb)?;
        let kms_urls = req
            .kms_urls
            .unwrap_or_else(|| self.config.cvm.kms_urls.clone());
        let gateway_urls = req
            .gateway_urls
            .unwrap_or_else(|| self.config.cvm.gateway_urls.clone());
        cairn_protocol::sysconfig::check_urls(&kms_urls, "kms_urls")
            .map_err(|e| Error::invalid("kms_urls", e.to_string()))?;
        cairn_protocol::sysconfig::check_urls(&gateway_urls, "gateway_urls")
            .map_err(|e| Error::invalid("gateway_urls", e.to_string()))?;
        if kms_urls.is_empty() {
            return Err(Error::invalid(
                "kms_urls",
                "no KMS URL (none in the request, none configured)",
            ));
        }
        let mut app_id = [0u8; 20];
        app_id.copy_from_slice(&compose_hash[..20]);
        let app_id = req.app_id.unwrap_or(app_id);

        let _create = self.create.lock().await;
        // 2. Limits and uniqueness.
        let existing = self.all();
        if existing.len() >= self.config.cvm.max_cvms {
            return Err(Error::conflict(
                Conflict::Limit,
                format!("this VMM runs at most {} CVMs", self.config.cvm.max_cvms),
            ));
        }
        if existing
            .iter()
            .any(|c| c.read(|d| d.manifest.name == req.name))
        {
            return Err(Error::conflict(
                Conflict::Name,
                format!("a CVM named {:?} exists", req.name),
            ));
        }
        // 3. Ports (other CVMs' ports stay theirs, running or not; nothing is reserved
        //    until the CVM exists).
        let taken: BTreeSet<u16> = existing
            .iter()
            .flat_map(|c| {
                c.read(|d| {
                    d.manifest
                        .ports
                        .iter()
                        .map(|p| p.host_port)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ports = crate::ports::allocate(&req.ports, self.config.cvm.port_range, &taken)?;
        // 4. The chain: would the KMS release keys to this? Refusal costs nothing.
        let allowed = self
            .require_allowed(app_id, compose_hash, image.os_image_hash)
            .await?;
        let vsock_cid = match self.backend.kind() {
            "qemu" => {
                let used: BTreeSet<u32> = existing
                    .iter()
                    .filter_map(|c| c.read(|d| d.manifest.vsock_cid))
                    .collect();
                (self.config.backend.qemu.cid_start..).find(|c| !used.contains(c))
            }
            _ => None,
        };
        // 5. The CVM directory, assembled aside and renamed into place.
        let id = new_id();
        let manifest = Manifest {
            version: store::FORMAT_VERSION,
            id: id.clone(),
            name: req.name,
            app_id,
            compose: req.compose,
            image: image.reference.clone(),
            os_image_hash: image.os_image_hash,
            vcpus: req.vcpus,
            memory_mb: req.memory_mb,
            ports,
            encrypted_env: req.encrypted_env,
            kms_urls,
            gateway_urls,
            created_at: unix_now(),
            vsock_cid,
        };
        let dir = self.write_new_cvm(&manifest)?;
        let cvm = Arc::new(Cvm::new(dir, manifest, Persisted::created(unix_now())));
        if let Err(e) = hostapi::serve(&cvm, self) {
            // Not created after all: leave nothing behind.
            cvm.abort_tasks();
            if let Err(rm) = std::fs::remove_dir_all(&cvm.dir.root) {
                tracing::warn!(dir = %cvm.dir.root.display(), error = %rm, "cannot clean up");
            }
            return Err(e);
        }
        self.cvms
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), Arc::clone(&cvm));
        drop(_create);
        tracing::info!(cvm = %id, app_id = %hex::encode(app_id), "CVM created");
        // 6. Start (the pre-flight above is a few milliseconds old; ports were just probed).
        if req.start {
            let _op = cvm.op.lock().await;
            self.launch(&cvm, allowed.block_number)?;
        }
        Ok(cvm.info(self.backend.kind()))
    }

    fn validate_compose(&self, compose: &str) -> Result<[u8; 32]> {
        if compose.len() > MAX_APP_COMPOSE_LEN {
            return Err(Error::ComposeTooLarge {
                len: compose.len(),
                max: MAX_APP_COMPOSE_LEN,
            });
        }
        AppCompose::parse(compose.as_bytes())
            .map_err(|e| Error::invalid("compose", e.to_string()))?;
        Ok(cairn_protocol::compose::compose_hash(compose.as_bytes()))
    }

    fn validate_resources(&self, vcpus: u32, memory_mb: u32) -> Result<()> {
        let c = &self.config.cvm;
        if vcpus == 0 || vcpus > c.max_vcpus {
            return Err(Error::invalid(
                "vcpus",
                format!("must be 1..={} on this VMM", c.max_vcpus),
            ));
        }
        if memory_mb < 64 || memory_mb > c.max_memory_mb {
            return Err(Error::invalid(
                "memory_mb",
                format!("must be 64..={} on this VMM", c.max_memory_mb),
            ));
        }
        Ok(())
    }

    fn write_new_cvm(&self, manifest: &Manifest) -> Result<CvmDir> {
        let cvms = self.config.state_dir.join(CVMS_DIR);
        let tmp = CvmDir {
            root: cvms.join(format!("{NEW_PREFIX}{}", manifest.id)),
        };
        let mk =
            |p: &std::path::Path| std::fs::create_dir_all(p).map_err(|e| Error::io("create", p, e));
        mk(&tmp.root)?;
        mk(&tmp.shared())?;
        write_share(&tmp, manifest)?;
        store::write_json(
            &tmp.shared().join(".instance-info"),
            &serde_json::json!({ "app_id": hex::encode(manifest.app_id) }),
        )?;
        store::write_json(&tmp.manifest(), manifest)?;
        store::write_json(&tmp.state(), &Persisted::created(unix_now()))?;
        let dir = CvmDir {
            root: cvms.join(&manifest.id),
        };
        std::fs::rename(&tmp.root, &dir.root).map_err(|e| Error::io("rename", &dir.root, e))?;
        store::sync_dir(&cvms)?;
        Ok(dir)
    }

    fn image_of(&self, manifest: &Manifest) -> Result<Image> {
        let image = self.catalog.get(&manifest.image)?.clone();
        if image.os_image_hash != manifest.os_image_hash {
            return Err(Error::invalid(
                "image",
                format!(
                    "the configured {} now hashes to 0x{}, not the deployed 0x{}; upgrade the CVM to it",
                    image.reference,
                    hex::encode(image.os_image_hash),
                    hex::encode(manifest.os_image_hash)
                ),
            ));
        }
        Ok(image)
    }
}

/// Write the share files that come from the manifest: the exact compose and the
/// encrypted env (removed when there is none).
fn write_share(dir: &CvmDir, manifest: &Manifest) -> Result<()> {
    let shared = dir.shared();
    store::write_atomic(
        &shared.join("app-compose.json"),
        manifest.compose.as_bytes(),
    )?;
    let env = shared.join(".encrypted-env");
    match &manifest.encrypted_env {
        Some(blob) => store::write_atomic(&env, blob),
        None => match std::fs::remove_file(&env) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &env, e)),
        },
    }
}

/// Rotate every CVM's console log past the configured size, every `logs.check_ms`.
async fn rotate_logs(vmm: std::sync::Weak<Vmm>) {
    loop {
        let Some(v) = vmm.upgrade() else { return };
        let every = Duration::from_millis(v.config.logs.check_ms);
        let max = v.config.logs.max_bytes;
        for c in v.all() {
            if let Err(e) = logs::rotate_if_needed(&c.dir.console(), &c.dir.console_old(), max) {
                tracing::warn!(cvm = %c.id, error = %e, "log rotation failed");
            }
        }
        drop(v);
        tokio::time::sleep(every).await;
    }
}

/// Used by `supervisor`-level cleanup helpers: the CVM directories under `state_dir`.
pub(crate) fn cvm_dirs(state_dir: &std::path::Path) -> Vec<CvmDir> {
    let Ok(entries) = std::fs::read_dir(state_dir.join(CVMS_DIR)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| CvmDir { root: e.path() })
        .collect()
}

/// Kill every guest process recorded under `state_dir` and what is left of its session,
/// without a running VMM (emergency cleanup, e.g. by tests that must not leave
/// processes behind). Returns how many guests were signalled.
pub fn kill_all_guests(state_dir: &std::path::Path) -> usize {
    let mut n = 0;
    for dir in cvm_dirs(state_dir) {
        let Ok(state) = store::read_json::<Persisted>(&dir.state()) else {
            continue;
        };
        if let Some(p) = state.process {
            if crate::procfs::is_alive(&p) {
                crate::procfs::signal(p.pid, crate::procfs::Signal::KILL);
                n += 1;
            }
            supervisor::sweep(p.pid, Some(&dir.root));
        }
    }
    n
}
