//! The `qemu` backend: each CVM is a TDX guest under QEMU/KVM.
//!
//! The command line comes from the OS image's metadata and the manifest:
//!
//! ```text
//! qemu-system-x86_64 -accel kvm -cpu host -nographic -nodefaults
//!   -machine q35,kernel-irqchip=split,confidential-guest-support=tdx,memory-backend=mem0,hpet=off
//!   -object tdx-guest,id=tdx                          the TD
//!   -object memory-backend-memfd,id=mem0,size=<M>M    guest RAM
//!   -smp <vcpus> -m <M>M
//!   -bios <firmware> -kernel <kernel> -initrd <initrd> -append <cmdline>
//!   -chardev stdio,id=console,signal=off -serial chardev:console   → console.log
//!   -device vhost-vsock-pci,guest-cid=<cid>           guest ↔ host (host API)
//!   -virtfs local,path=<shared>,mount_tag=host-shared,readonly=on,security_model=mapped,id=virtfs0
//!   -netdev user,id=net0[,hostfwd=tcp:127.0.0.1:<host>-:<guest>]… -device virtio-net-pci,netdev=net0
//! ```
//!
//! The firmware, kernel, initrd and command line are what MRTD and RTMR0-2 measure, so
//! they are taken only from the configured image (whose manifest hash KmsAuth allows),
//! never from a request. The host share is read-only to the guest. Refuses to run on a
//! host without TDX ([`check_tdx`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use cairn_protocol::hostapi::HostApiAddr;
use cairn_protocol::sysconfig::SysConfig;
use cairn_protocol::vmm::ImageKind;

use super::{Backend, Launch};
use crate::error::{Error, Result};
use crate::images::Image;

/// The vsock CID of the host.
pub const HOST_CID: u32 = 2;

/// Runs CVMs as TDX guests under QEMU.
#[derive(Debug, Clone)]
pub struct QemuBackend {
    qemu: PathBuf,
    kvm_device: PathBuf,
    tdx_param: PathBuf,
    host_api_port: u32,
}

impl QemuBackend {
    /// A backend running `qemu`; TDX is detected through `kvm_device` (must exist) and
    /// `tdx_param` (must read `Y`).
    pub fn new(qemu: PathBuf, kvm_device: PathBuf, tdx_param: PathBuf, host_api_port: u32) -> Self {
        QemuBackend {
            qemu,
            kvm_device,
            tdx_param,
            host_api_port,
        }
    }
}

/// Whether this host runs TDX guests: `kvm_device` exists and `tdx_param` reads `Y`.
pub fn check_tdx(kvm_device: &Path, tdx_param: &Path) -> Result<()> {
    let unavailable = |reason: String| Error::BackendUnavailable {
        backend: "qemu",
        reason,
    };
    if !kvm_device.exists() {
        return Err(unavailable(format!(
            "{} does not exist: no KVM on this host",
            kvm_device.display()
        )));
    }
    match std::fs::read_to_string(tdx_param) {
        Ok(v) if matches!(v.trim(), "Y" | "y" | "1") => Ok(()),
        Ok(v) => Err(unavailable(format!(
            "TDX is disabled in KVM ({} reads {:?})",
            tdx_param.display(),
            v.trim().chars().take(16).collect::<String>()
        ))),
        Err(e) => Err(unavailable(format!(
            "no TDX on this host: cannot read {} ({e}); KVM is loaded without TDX support",
            tdx_param.display()
        ))),
    }
}

impl Backend for QemuBackend {
    fn kind(&self) -> &'static str {
        "qemu"
    }

    fn check_host(&self) -> Result<()> {
        check_tdx(&self.kvm_device, &self.tdx_param)
    }

    fn check_image(&self, image: &Image) -> Result<()> {
        match (&image.kind, &image.boot) {
            (ImageKind::Tdx, Some(boot)) => {
                for (what, path) in [
                    ("firmware", &boot.firmware),
                    ("kernel", &boot.kernel),
                    ("initrd", &boot.initrd),
                ] {
                    if !path.is_file() {
                        return Err(Error::invalid(
                            "image",
                            format!(
                                "{}: its {what} {} is missing",
                                image.reference,
                                path.display()
                            ),
                        ));
                    }
                }
                Ok(())
            }
            _ => Err(Error::invalid(
                "image",
                format!(
                    "{} is a simulator image; the qemu backend boots real TDX images",
                    image.reference
                ),
            )),
        }
    }

    fn sys_config(&self, launch: Launch<'_>, pccs_url: Option<&str>) -> SysConfig {
        let host_api = HostApiAddr::Vsock {
            cid: HOST_CID,
            port: self.host_api_port,
        };
        // QEMU forwards host ports to the guest's own ports: the app listens on its guest
        // port.
        super::sys_config(launch, pccs_url, host_api, Vec::new())
    }

    fn command(&self, launch: Launch<'_>) -> Result<Vec<OsString>> {
        let boot = launch.image.boot.as_ref().ok_or_else(|| {
            Error::invalid(
                "image",
                format!("{} has no boot files", launch.image.reference),
            )
        })?;
        let cid = launch.manifest.vsock_cid.ok_or_else(|| Error::Corrupt {
            path: launch.dir.manifest(),
            reason: "a qemu CVM without a vsock CID".to_owned(),
        })?;
        let m = launch.manifest;
        let mem = m.memory_mb;
        let mut netdev = "user,id=net0".to_owned();
        for p in &m.ports {
            netdev.push_str(&format!(
                ",hostfwd=tcp:127.0.0.1:{}-:{}",
                p.host_port, p.guest_port
            ));
        }
        let virtfs = {
            let mut s = OsString::from("local,path=");
            s.push(launch.dir.shared());
            s.push(",mount_tag=host-shared,readonly=on,security_model=mapped,id=virtfs0");
            s
        };
        let mut cmd: Vec<OsString> = vec![self.qemu.clone().into()];
        let mut arg = |a: &str, v: OsString| {
            cmd.push(a.into());
            cmd.push(v);
        };
        arg("-accel", "kvm".into());
        arg("-cpu", "host".into());
        arg(
            "-machine",
            "q35,kernel-irqchip=split,confidential-guest-support=tdx,memory-backend=mem0,hpet=off"
                .into(),
        );
        arg("-object", "tdx-guest,id=tdx".into());
        arg(
            "-object",
            format!("memory-backend-memfd,id=mem0,size={mem}M").into(),
        );
        arg("-smp", m.vcpus.to_string().into());
        arg("-m", format!("{mem}M").into());
        arg("-bios", boot.firmware.clone().into());
        arg("-kernel", boot.kernel.clone().into());
        arg("-initrd", boot.initrd.clone().into());
        arg("-append", boot.cmdline.clone().into());
        arg("-chardev", "stdio,id=console,signal=off".into());
        arg("-serial", "chardev:console".into());
        arg("-device", format!("vhost-vsock-pci,guest-cid={cid}").into());
        arg("-virtfs", virtfs);
        arg("-netdev", netdev.into());
        arg("-device", "virtio-net-pci,netdev=net0".into());
        cmd.push("-nographic".into());
        cmd.push("-nodefaults".into());
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::BootFiles;
    use crate::store::{CvmDir, Manifest};
    use cairn_attestation::simulator::OsImage;
    use cairn_protocol::vmm::PortMapping;

    fn image() -> Image {
        let manifest = OsImage::example("cairn-os", "1.0").manifest();
        Image {
            reference: "cairn-os:1.0".into(),
            name: "cairn-os".into(),
            version: "1.0".into(),
            kind: ImageKind::Tdx,
            os_image_hash: manifest.os_image_hash().0,
            manifest,
            boot: Some(BootFiles {
                firmware: "/images/cairn-os-1.0/OVMF.fd".into(),
                kernel: "/images/cairn-os-1.0/bzImage".into(),
                initrd: "/images/cairn-os-1.0/initramfs.cpio.gz".into(),
                cmdline: "console=ttyS0 cairn.image=cairn-os-1.0".into(),
            }),
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            version: 1,
            id: "0123456789abcdef".into(),
            name: "demo".into(),
            app_id: [0x11; 20],
            compose: "{}".into(),
            image: "cairn-os:1.0".into(),
            os_image_hash: [0; 32],
            vcpus: 2,
            memory_mb: 2048,
            ports: vec![
                PortMapping {
                    guest_port: 8080,
                    host_port: 20001,
                },
                PortMapping {
                    guest_port: 443,
                    host_port: 20002,
                },
            ],
            encrypted_env: None,
            kms_urls: vec!["https://kms:8443".into()],
            gateway_urls: vec![],
            created_at: 0,
            vsock_cid: Some(1003),
        }
    }

    fn backend() -> QemuBackend {
        QemuBackend::new(
            "qemu-system-x86_64".into(),
            "/dev/kvm".into(),
            "/sys/module/kvm_intel/parameters/tdx".into(),
            10000,
        )
    }

    /// The golden command line: `testdata/qemu-tdx.args`, one argument per line. Set
    /// `CAIRN_UPDATE_GOLDEN=1` to rewrite it after an intended change (and review the
    /// diff).
    #[test]
    fn the_tdx_command_line_matches_the_golden_file() {
        let dir = CvmDir {
            root: "/var/lib/cairn-vmm/cvms/0123456789abcdef".into(),
        };
        let image = image();
        let manifest = manifest();
        let launch = Launch {
            dir: &dir,
            manifest: &manifest,
            image: &image,
        };
        let args: Vec<String> = backend()
            .command(launch)
            .unwrap()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let got = args.join("\n") + "\n";
        let golden =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backend/testdata/qemu-tdx.args");
        if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap();
        assert_eq!(
            got,
            want,
            "the QEMU command line changed; see {}",
            golden.display()
        );
    }

    #[test]
    fn the_guest_reports_over_vsock_and_listens_on_its_own_ports() {
        let dir = CvmDir { root: "/x".into() };
        let (image, manifest) = (image(), manifest());
        let sc = backend().sys_config(
            Launch {
                dir: &dir,
                manifest: &manifest,
                image: &image,
            },
            None,
        );
        assert_eq!(sc.host_api_url.as_deref(), Some("vsock://2:10000"));
        assert!(sc.port_map.is_empty());
        assert_eq!(sc.kms_urls, manifest.kms_urls);
    }

    #[test]
    fn a_host_without_tdx_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let kvm = dir.path().join("kvm");
        let param = dir.path().join("tdx");
        let e = check_tdx(&kvm, &param).unwrap_err();
        assert!(
            matches!(&e, Error::BackendUnavailable { backend: "qemu", reason } if reason.contains("no KVM")),
            "{e}"
        );
        std::fs::write(&kvm, b"").unwrap();
        let e = check_tdx(&kvm, &param).unwrap_err();
        assert!(
            matches!(&e, Error::BackendUnavailable { reason, .. } if reason.contains("no TDX")),
            "{e}"
        );
        std::fs::write(&param, b"N\n").unwrap();
        let e = check_tdx(&kvm, &param).unwrap_err();
        assert!(
            matches!(&e, Error::BackendUnavailable { reason, .. } if reason.contains("disabled")),
            "{e}"
        );
        std::fs::write(&param, b"Y\n").unwrap();
        check_tdx(&kvm, &param).unwrap();
    }

    #[test]
    fn simulator_images_are_refused() {
        let mut i = image();
        i.kind = ImageKind::Simulator;
        i.boot = None;
        assert!(matches!(
            backend().check_image(&i).unwrap_err(),
            Error::Invalid { .. }
        ));
    }
}
