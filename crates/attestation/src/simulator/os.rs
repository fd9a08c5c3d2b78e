//! Simulated OS images and their measurement manifests.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::error::{Error, Result};
use crate::eventlog::extend;
use crate::ids::{Measurement48, OsImageHash};

/// Largest OS image manifest accepted by [`OsImageManifest::parse`].
pub const MAX_MANIFEST_LEN: usize = 16 * 1024;

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

/// An OS image's measurement manifest: what the image measures into MRTD and RTMR0-2.
/// `os_image_hash` = SHA-256 of its canonical (compact, field-ordered) JSON.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsImageManifest {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Expected MRTD.
    pub mrtd: Measurement48,
    /// Expected RTMR0.
    pub rtmr0: Measurement48,
    /// Expected RTMR1.
    pub rtmr1: Measurement48,
    /// Expected RTMR2.
    pub rtmr2: Measurement48,
}

impl OsImageManifest {
    /// Canonical bytes: compact JSON with fields in declaration order.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// SHA-256 of [`Self::to_bytes`].
    pub fn os_image_hash(&self) -> OsImageHash {
        OsImageHash::of_manifest(&self.to_bytes())
    }

    /// Parse a manifest (bounded by [`MAX_MANIFEST_LEN`]). The bytes must be canonical, so
    /// that the hash of the bytes given equals [`Self::os_image_hash`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(Error::TooLarge {
                what: "OS image manifest",
                len: bytes.len(),
                max: MAX_MANIFEST_LEN,
            });
        }
        let m: OsImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::Simulator(format!("OS image manifest: {e}")))?;
        if m.to_bytes() != bytes {
            return Err(Error::Simulator(
                "OS image manifest is not canonical".into(),
            ));
        }
        Ok(m)
    }
}
