//! The OS images a VMM knows: their measurements (what KmsAuth allows by hash) and, for
//! real images, the files QEMU boots.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cairn_attestation::simulator::{OsImage, OsImageManifest, MAX_MANIFEST_LEN};
use cairn_protocol::vmm::ImageKind;

use crate::config::{ImageKindConfig, ImageSection};
use crate::error::{Error, Result};

/// What QEMU needs to boot a real image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFiles {
    /// TDVF firmware (`-bios`).
    pub firmware: PathBuf,
    /// Kernel (`-kernel`).
    pub kernel: PathBuf,
    /// Initrd (`-initrd`).
    pub initrd: PathBuf,
    /// Kernel command line (`-append`).
    pub cmdline: String,
}

/// One OS image.
#[derive(Clone, Debug)]
pub struct Image {
    /// `NAME:VERSION`.
    pub reference: String,
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Simulator or real.
    pub kind: ImageKind,
    /// Its measurement manifest.
    pub manifest: OsImageManifest,
    /// SHA-256 of the manifest's canonical bytes.
    pub os_image_hash: [u8; 32],
    /// Boot files (real images only).
    pub boot: Option<BootFiles>,
}

/// The configured images by reference.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    images: BTreeMap<String, Image>,
}

impl Catalog {
    /// Build the catalogue from `[[image]]` sections (manifest files read, bounded).
    pub fn from_config(sections: &[ImageSection]) -> Result<Catalog> {
        let mut images = BTreeMap::new();
        for (i, s) in sections.iter().enumerate() {
            let key = |k: &str| format!("image[{i}].{k}");
            if s.name.is_empty() || s.name.contains(':') || s.version.is_empty() {
                return Err(Error::config(
                    key("name"),
                    "name and version must be non-empty and the name has no ':'",
                ));
            }
            let reference = format!("{}:{}", s.name, s.version);
            let (kind, manifest, boot) = match s.kind {
                ImageKindConfig::Simulator => (
                    ImageKind::Simulator,
                    OsImage::example(&s.name, &s.version).manifest(),
                    None,
                ),
                ImageKindConfig::Tdx => {
                    let need = |v: &Option<PathBuf>, k: &str| {
                        v.clone()
                            .ok_or_else(|| Error::config(key(k), "required with kind = \"tdx\""))
                    };
                    let path = need(&s.manifest, "manifest")?;
                    let bytes =
                        read_manifest(&path).map_err(|e| Error::config(key("manifest"), e))?;
                    let manifest = OsImageManifest::parse(&bytes)
                        .map_err(|e| Error::config(key("manifest"), e.to_string()))?;
                    if manifest.name != s.name || manifest.version != s.version {
                        return Err(Error::config(
                            key("manifest"),
                            format!(
                                "the manifest describes {}:{}, not {reference}",
                                manifest.name, manifest.version
                            ),
                        ));
                    }
                    let boot = BootFiles {
                        firmware: need(&s.firmware, "firmware")?,
                        kernel: need(&s.kernel, "kernel")?,
                        initrd: need(&s.initrd, "initrd")?,
                        cmdline: s
                            .cmdline
                            .clone()
                            .ok_or_else(|| Error::config(key("cmdline"), "required"))?,
                    };
                    (ImageKind::Tdx, manifest, Some(boot))
                }
            };
            let os_image_hash = manifest.os_image_hash().0;
            let image = Image {
                reference: reference.clone(),
                name: s.name.clone(),
                version: s.version.clone(),
                kind,
                manifest,
                os_image_hash,
                boot,
            };
            if images.insert(reference.clone(), image).is_some() {
                return Err(Error::config(key("name"), format!("{reference} twice")));
            }
        }
        Ok(Catalog { images })
    }

    /// The image `reference` (`NAME:VERSION`), or [`Error::UnknownImage`].
    pub fn get(&self, reference: &str) -> Result<&Image> {
        self.images
            .get(reference)
            .ok_or_else(|| Error::UnknownImage {
                image: reference.chars().take(128).collect(),
                known: self.images.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Every image, by reference.
    pub fn iter(&self) -> impl Iterator<Item = &Image> {
        self.images.values()
    }
}

fn read_manifest(path: &std::path::Path) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_MANIFEST_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() > MAX_MANIFEST_LEN {
        return Err(format!(
            "{} exceeds {MAX_MANIFEST_LEN} bytes",
            path.display()
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(name: &str, version: &str) -> ImageSection {
        ImageSection {
            name: name.into(),
            version: version.into(),
            kind: ImageKindConfig::Simulator,
            manifest: None,
            firmware: None,
            kernel: None,
            initrd: None,
            cmdline: None,
        }
    }

    #[test]
    fn simulator_images_hash_like_the_simulator() {
        let c = Catalog::from_config(&[sim("cairn-os", "1.0")]).unwrap();
        let i = c.get("cairn-os:1.0").unwrap();
        assert_eq!(
            i.os_image_hash,
            OsImage::example("cairn-os", "1.0").os_image_hash().0
        );
        let e = c.get("cairn-os:9").unwrap_err();
        assert!(
            matches!(&e, Error::UnknownImage { known, .. } if known == "cairn-os:1.0"),
            "{e}"
        );
    }

    #[test]
    fn duplicates_and_incomplete_tdx_images_are_config_errors() {
        let e = Catalog::from_config(&[sim("a", "1"), sim("a", "1")]).unwrap_err();
        assert!(
            matches!(e, Error::Config { ref key, .. } if key == "image[1].name"),
            "{e}"
        );
        let mut tdx = sim("a", "1");
        tdx.kind = ImageKindConfig::Tdx;
        let e = Catalog::from_config(&[tdx]).unwrap_err();
        assert!(
            matches!(e, Error::Config { ref key, .. } if key == "image[0].manifest"),
            "{e}"
        );
    }

    #[test]
    fn a_tdx_manifest_must_describe_the_configured_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, OsImage::example("other", "2").manifest().to_bytes()).unwrap();
        let mut tdx = sim("a", "1");
        tdx.kind = ImageKindConfig::Tdx;
        tdx.manifest = Some(path);
        let e = Catalog::from_config(&[tdx]).unwrap_err();
        assert!(e.to_string().contains("other:2"), "{e}");
    }
}
