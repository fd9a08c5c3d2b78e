//! Simulated OS images; their measurement manifests are [`OsImageManifest`]s.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::eventlog::extend;
use crate::ids::{Measurement48, OsImageHash};
use crate::os_image::OsImageManifest;

/// A simulated OS image: what a real image's firmware, kernel, initrd and command line
/// would measure into MRTD and RTMR0-2.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsImage {
    /// Image name, e.g. `cairn-os`.
    pub name: String,
    /// Image version, e.g. `0.1.0`.
    pub version: String,
    /// SHA-384 of the firmware (TDVF) image.
    pub firmware_digest: Measurement48,
    /// SHA-384 of the kernel.
    pub kernel_digest: Measurement48,
    /// SHA-384 of the initrd.
    pub initrd_digest: Measurement48,
    /// Kernel command line.
    pub cmdline: String,
}

fn sha384(parts: &[&[u8]]) -> [u8; 48] {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl OsImage {
    /// A deterministic image description whose component digests derive from its name
    /// and version (for development and tests).
    pub fn example(name: &str, version: &str) -> Self {
        let d = |part: &str| {
            Measurement48(sha384(&[
                b"cairn-sim/os/",
                part.as_bytes(),
                b"/",
                name.as_bytes(),
                b"/",
                version.as_bytes(),
            ]))
        };
        OsImage {
            name: name.to_owned(),
            version: version.to_owned(),
            firmware_digest: d("firmware"),
            kernel_digest: d("kernel"),
            initrd_digest: d("initrd"),
            cmdline: format!("console=ttyS0 cairn.image={name}-{version}"),
        }
    }

    /// The measurement manifest: MRTD and RTMR0-2 this image produces.
    ///
    /// MRTD = SHA-384("cairn-sim/mrtd" ‖ firmware); RTMR0 = extend(0, SHA-384(name ‖ 0 ‖
    /// version)); RTMR1 = extend(0, kernel); RTMR2 = extend(extend(0, SHA-384(cmdline)), initrd).
    pub fn manifest(&self) -> OsImageManifest {
        let zero = [0u8; 48];
        let mrtd = sha384(&[b"cairn-sim/mrtd", &self.firmware_digest.0]);
        let rtmr0 = extend(
            &zero,
            &sha384(&[self.name.as_bytes(), &[0], self.version.as_bytes()]),
        );
        let rtmr1 = extend(&zero, &self.kernel_digest.0);
        let rtmr2 = extend(
            &extend(&zero, &sha384(&[self.cmdline.as_bytes()])),
            &self.initrd_digest.0,
        );
        OsImageManifest {
            name: self.name.clone(),
            version: self.version.clone(),
            mrtd: Measurement48(mrtd),
            rtmr0: Measurement48(rtmr0),
            rtmr1: Measurement48(rtmr1),
            rtmr2: Measurement48(rtmr2),
        }
    }

    /// The MRTD/RTMR0-2 this image produces (same as [`Self::manifest`]).
    pub fn measurements(&self) -> OsImageManifest {
        self.manifest()
    }

    /// SHA-256 of the manifest's canonical bytes.
    pub fn os_image_hash(&self) -> OsImageHash {
        self.manifest().os_image_hash()
    }
}
