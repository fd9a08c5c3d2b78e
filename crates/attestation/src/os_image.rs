//! OS image measurement manifests (DESIGN.md §2 `os_image_hash`, docs/attestation.md).
//!
//! A manifest names what an OS image measures into MRTD and RTMR0-2. Its canonical bytes
//! (compact JSON, fields in declaration order) hash to the image's `os_image_hash`, the
//! value the contracts allow. A verifier that knows an image's manifest can tell from a
//! quote's MRTD/RTMR0-2 which image a TD booted ([`OsImageManifest::matches`]); the KMS
//! does so for every caller and for itself, and a guest does so for its KMS.
//!
//! Manifests come from the operator's configuration (the KMS's `attestation.os_images`),
//! from a KMS's `/v1/meta` (its own image, checked against its verified quote before use),
//! or from the simulator ([`crate::simulator::OsImage::manifest`]).

use serde::{Deserialize, Serialize};

use crate::error::{check_len, Error, Result};
use crate::ids::{Measurement48, OsImageHash, TdMeasurements};
use crate::verify::VerifiedQuote;

/// Largest OS image manifest accepted by [`OsImageManifest::parse`].
pub const MAX_MANIFEST_LEN: usize = 16 * 1024;

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
        // Strings and fixed-size hex fields: serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// SHA-256 of [`Self::to_bytes`].
    pub fn os_image_hash(&self) -> OsImageHash {
        OsImageHash::of_manifest(&self.to_bytes())
    }

    /// Whether a TD with `measurements` booted this image: MRTD and RTMR0-2 all equal.
    pub fn matches(&self, measurements: &TdMeasurements) -> bool {
        self.mrtd == measurements.mrtd
            && self.rtmr0 == measurements.rtmr0
            && self.rtmr1 == measurements.rtmr1
            && self.rtmr2 == measurements.rtmr2
    }

    /// Parse a manifest (bounded by [`MAX_MANIFEST_LEN`]). The bytes must be canonical, so
    /// that the hash of the bytes given equals [`Self::os_image_hash`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        check_len("OS image manifest", bytes.len(), MAX_MANIFEST_LEN)?;
        let m: OsImageManifest =
            serde_json::from_slice(bytes).map_err(|source| Error::MalformedManifest { source })?;
        if m.to_bytes() != bytes {
            return Err(Error::ManifestNotCanonical);
        }
        Ok(m)
    }
}

/// Why a verified quote does not show a known OS image.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OsImageMismatch {
    /// No manifest has the quote's MRTD and RTMR0-2.
    #[error("MRTD/RTMR0-2 match no known OS image (mrtd {mrtd})")]
    Unknown {
        /// The quote's MRTD, hex.
        mrtd: String,
    },
    /// The quote's measured `os-image-hash` event names another image than the one its
    /// measurements show.
    #[error("measured os-image-hash {measured} differs from the image the measurements show ({expected})")]
    HashDiffers {
        /// The measured hash, hex.
        measured: String,
        /// The hash of the image the measurements show, hex.
        expected: String,
    },
}

/// The `os_image_hash` of the image among `images` whose manifest matches `quote`'s MRTD
/// and RTMR0-2 ([`OsImageManifest::matches`]); a measured `os-image-hash` must name the
/// same image. The one check of a TD's OS image, for the KMS and the gateway alike.
pub fn booted_os_image(
    quote: &VerifiedQuote,
    images: &[OsImageManifest],
) -> std::result::Result<[u8; 32], OsImageMismatch> {
    let m = quote.measurements();
    let Some(image) = images.iter().find(|img| img.matches(m)) else {
        return Err(OsImageMismatch::Unknown {
            mrtd: m.mrtd.to_hex(),
        });
    };
    let hash = image.os_image_hash().0;
    match quote.os_image_hash() {
        Some(measured) if measured.0 != hash => Err(OsImageMismatch::HashDiffers {
            measured: hex::encode(measured.0),
            expected: hex::encode(hash),
        }),
        _ => Ok(hash),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::OsImage;

    #[test]
    fn malformed_oversized_and_non_canonical_manifests_are_refused() {
        let m = OsImage::example("cairn-os", "1.0").manifest();
        let err = OsImageManifest::parse(b"{").unwrap_err();
        assert!(matches!(err, Error::MalformedManifest { .. }), "{err:?}");
        let pretty = serde_json::to_vec_pretty(&m).unwrap();
        let err = OsImageManifest::parse(&pretty).unwrap_err();
        assert!(matches!(err, Error::ManifestNotCanonical), "{err:?}");
        let err = OsImageManifest::parse(&vec![b' '; MAX_MANIFEST_LEN + 1]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    what: "OS image manifest",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn matches_compares_mrtd_and_rtmr0_to_2_only() {
        let m = OsImage::example("cairn-os", "1.0").manifest();
        let mut td = TdMeasurements {
            mrtd: m.mrtd,
            rtmr0: m.rtmr0,
            rtmr1: m.rtmr1,
            rtmr2: m.rtmr2,
            rtmr3: Measurement48([9; 48]),
        };
        assert!(m.matches(&td));
        td.rtmr2 = Measurement48([0; 48]);
        assert!(!m.matches(&td));
    }
}
