//! The `process` backend: each CVM is `cairn-guest boot` on the TDX simulator.
//!
//! The guest gets its own host share (`shared/`), keys and work directories and agent
//! socket inside the CVM directory. Its app shares the host's loopback, so each app port
//! is served on the host port the VMM mapped to it: `sys-config.json` carries the
//! `port_map`, and the guest exports `CAIRN_PORT_<guest_port>=<host_port>` to the app.

use std::ffi::OsString;
use std::path::PathBuf;

use cairn_protocol::hostapi::HostApiAddr;
use cairn_protocol::sysconfig::{AppPort, SysConfig};
use cairn_protocol::vmm::ImageKind;

use super::{Backend, Launch};
use crate::error::{Error, Result};
use crate::images::Image;

/// Runs CVMs as `cairn-guest` processes on the simulator.
#[derive(Debug, Clone)]
pub struct ProcessBackend {
    guest_bin: PathBuf,
    guest_args: Vec<String>,
}

impl ProcessBackend {
    /// A backend running `guest_bin boot … <guest_args>`.
    pub fn new(guest_bin: PathBuf, guest_args: Vec<String>) -> Self {
        ProcessBackend {
            guest_bin,
            guest_args,
        }
    }
}

impl Backend for ProcessBackend {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn check_host(&self) -> Result<()> {
        Ok(())
    }

    fn check_image(&self, image: &Image) -> Result<()> {
        match image.kind {
            ImageKind::Simulator => Ok(()),
            ImageKind::Tdx => Err(Error::invalid(
                "image",
                format!(
                    "{} is a real TDX image; the process backend runs simulator images",
                    image.reference
                ),
            )),
        }
    }

    fn sys_config(&self, launch: Launch<'_>, pccs_url: Option<&str>) -> SysConfig {
        let ports = launch.manifest.ports.iter().map(|p| AppPort {
            guest_port: p.guest_port,
            host_port: p.host_port,
        });
        let host_api = HostApiAddr::Unix(launch.dir.host_api());
        super::sys_config(launch, pccs_url, host_api, ports.collect())
    }

    fn command(&self, launch: Launch<'_>) -> Result<Vec<OsString>> {
        let dir = launch.dir;
        let mut cmd: Vec<OsString> = vec![
            self.guest_bin.clone().into(),
            "boot".into(),
            "--share".into(),
            dir.shared().into(),
            "--keys".into(),
            dir.keys().into(),
            "--work".into(),
            dir.work().into(),
            "--agent-socket".into(),
            dir.agent_socket().into(),
            "--tee".into(),
            "simulator".into(),
            "--sim-os".into(),
            launch.image.reference.clone().into(),
        ];
        cmd.extend(self.guest_args.iter().map(OsString::from));
        Ok(cmd)
    }
}
