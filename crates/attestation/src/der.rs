//! The crate's one DER writer (X.690 §8.1, definite minimal lengths) and the one reader
//! of the OCTET STRINGs that wrap every RA-TLS extension value (FORMATS.md "RA-TLS
//! certificates").
//!
//! Writers: [`tlv`] (any primitive or constructed value, used by the simulator's SGX
//! extension) and [`der_octet_string`] (the value of every Cairn X.509 extension, used by
//! [`crate::ra_tls_extensions`] and the simulator). Reader: [`octet_string_content`], which
//! accepts only the DER form the writer produces.

use crate::ratls::RaTlsError;

/// Tag of a DER OCTET STRING.
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;

/// One DER TLV: `tag`, the definite minimal length of `content`, then `content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 10);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8); // < 0x80: short form
    } else {
        let be = (len as u64).to_be_bytes(); // usize is at most 64 bits
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (be.len() - skip) as u8); // 1..=8 length octets
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// DER OCTET STRING wrapping `bytes` (tag 0x04, definite minimal length): the value of
/// every RA-TLS X.509 extension.
///
/// ```
/// assert_eq!(cairn_attestation::der_octet_string(b"kms:rpc"), b"\x04\x07kms:rpc");
/// ```
pub fn der_octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(TAG_OCTET_STRING, bytes)
}

/// The content of a DER OCTET STRING that spans all of `der`: definite, minimal length
/// (at most 4 length octets), no trailing bytes. `name` names the extension in the error.
pub(crate) fn octet_string_content<'a>(
    der: &'a [u8],
    name: &'static str,
) -> Result<&'a [u8], RaTlsError> {
    let bad = |reason| RaTlsError::MalformedExtension { name, reason };
    let (&tag, rest) = der.split_first().ok_or(bad("empty"))?;
    if tag != TAG_OCTET_STRING {
        return Err(bad("not an OCTET STRING"));
    }
    let (&first, rest) = rest.split_first().ok_or(bad("missing length"))?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(bad("indefinite or oversized length"));
        }
        if rest.len() < n {
            return Err(bad("truncated length"));
        }
        let (len_bytes, body) = rest.split_at(n);
        if len_bytes[0] == 0 {
            return Err(bad("non-minimal length"));
        }
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return Err(bad("non-minimal length"));
        }
        (len, body)
    };
    if body.len() != len {
        return Err(bad(if body.len() < len {
            "truncated content"
        } else {
            "trailing bytes"
        }));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_string_round_trips_at_length_boundaries() {
        for len in [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000] {
            let content = vec![0xA5; len];
            let der = der_octet_string(&content);
            assert_eq!(
                octet_string_content(&der, "t").unwrap(),
                content.as_slice(),
                "len {len}"
            );
        }
        assert_eq!(der_octet_string(&[1, 2]), [0x04, 2, 1, 2]);
        assert_eq!(&der_octet_string(&[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        let long = der_octet_string(&[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
        assert_eq!(tlv(0x04, &[0u8; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn octet_string_rejects_non_der_encodings() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "empty"),
            (&[0x0c, 0x01, 0x41], "not an OCTET STRING"),
            (&[0x04], "missing length"),
            (&[0x04, 0x80, 0x00, 0x00], "indefinite or oversized length"),
            (
                &[0x04, 0x85, 1, 1, 1, 1, 1],
                "indefinite or oversized length",
            ),
            (&[0x04, 0x82, 0x01], "truncated length"),
            (&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5], "non-minimal length"),
            (&[0x04, 0x82, 0x00, 0x80], "non-minimal length"),
            (&[0x04, 0x03, 1, 2], "truncated content"),
            (&[0x04, 0x01, 1, 2], "trailing bytes"),
        ];
        for (der, want) in cases {
            let err = octet_string_content(der, "t").unwrap_err();
            assert!(
                matches!(err, RaTlsError::MalformedExtension { name: "t", reason } if reason == *want),
                "{der:?}: {err:?}"
            );
        }
    }
}
