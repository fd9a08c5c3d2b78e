//! Backends: what runs a CVM. One trait, two implementations:
//!
//! - [`ProcessBackend`] (default): the CVM is a `cairn-guest boot` process on the TDX
//!   simulator, in its own directory with its own host share. Development and tests;
//!   it has none of a VM's isolation (see docs/vmm.md, Security).
//! - [`QemuBackend`]: the CVM is a TDX guest under QEMU/KVM, booted from the OS image's
//!   firmware, kernel, initrd and command line; refuses to run on a host without TDX.
//!
//! A backend only says *what* to run (the command line) and *what the guest is told*
//! (`sys-config.json`). Running it is common to both (`supervisor`): the command is
//! started through `setsid` in the CVM directory with stdout and stderr appended to
//! `console.log`, watched, and stopped by signalling its whole session.

mod process;
mod qemu;

use std::ffi::OsString;

use cairn_protocol::hostapi::HostApiAddr;
use cairn_protocol::sysconfig::{AppPort, SysConfig};

pub use process::ProcessBackend;
pub use qemu::{check_tdx, QemuBackend};

use crate::error::Result;
use crate::images::Image;
use crate::store::{CvmDir, Manifest};

/// What a backend needs to launch one CVM.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The CVM's directory.
    pub dir: &'a CvmDir,
    /// Its manifest.
    pub manifest: &'a Manifest,
    /// Its OS image.
    pub image: &'a Image,
}

/// A way of running CVMs.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `process` or `qemu`.
    fn kind(&self) -> &'static str;

    /// Whether this host can run this backend at all (qemu: KVM with TDX).
    fn check_host(&self) -> Result<()>;

    /// Whether this backend runs `image` (process: simulator images; qemu: real ones).
    fn check_image(&self, image: &Image) -> Result<()>;

    /// The CVM's `sys-config.json` (KMS and gateway URLs from the manifest, the host
    /// API address, the port map the app must know about).
    fn sys_config(&self, launch: Launch<'_>, pccs_url: Option<&str>) -> SysConfig;

    /// The command line (program first) that runs the CVM.
    fn command(&self, launch: Launch<'_>) -> Result<Vec<OsString>>;
}

/// The `sys-config.json` both backends write: the CVM's manifest URLs, `pccs_url`, the
/// backend's host API address and port map; `chain` is filled in by the VMM.
fn sys_config(
    launch: Launch<'_>,
    pccs_url: Option<&str>,
    host_api: HostApiAddr,
    port_map: Vec<AppPort>,
) -> SysConfig {
    SysConfig {
        kms_urls: launch.manifest.kms_urls.clone(),
        gateway_urls: launch.manifest.gateway_urls.clone(),
        pccs_url: pccs_url.map(str::to_owned),
        docker_registry: None,
        host_api_url: Some(host_api.to_url()),
        port_map,
        vm_config: vm_config(launch),
        // Filled in by the VMM from its own `[chain]` (`Vmm::launch`).
        chain: None,
    }
}

/// `vm_config` as the guest agent returns it (dstack's field names).
fn vm_config(launch: Launch<'_>) -> String {
    serde_json::json!({
        "cpu_count": launch.manifest.vcpus,
        "memory_size": u64::from(launch.manifest.memory_mb) * 1024 * 1024,
        "os_image_hash": hex::encode(launch.image.os_image_hash),
        "image": launch.image.reference,
    })
    .to_string()
}
