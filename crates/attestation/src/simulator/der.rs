//! The DER values of the PCK certificate's SGX extension (MOCK-PKI.md §8), built on the
//! crate's one TLV writer ([`crate::der`]).

use crate::der::tlv;

pub(super) fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

pub(super) fn octets(b: &[u8]) -> Vec<u8> {
    crate::der::der_octet_string(b)
}

/// A non-negative INTEGER in minimal two's-complement form.
pub(super) fn uint(v: u64) -> Vec<u8> {
    tlv(0x02, &uint_content(v))
}

pub(super) fn enumerated(v: u64) -> Vec<u8> {
    tlv(0x0a, &uint_content(v))
}

pub(super) fn boolean(v: bool) -> Vec<u8> {
    tlv(0x01, &[if v { 0xff } else { 0x00 }])
}

fn uint_content(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut c = bytes[skip..].to_vec();
    if c[0] & 0x80 != 0 {
        c.insert(0, 0);
    }
    c
}

pub(super) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    if arcs.len() >= 2 {
        push_base128(&mut body, arcs[0] * 40 + arcs[1]);
        for a in &arcs[2..] {
            push_base128(&mut body, *a);
        }
    }
    tlv(0x06, &body)
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = vec![(v & 0x7f) as u8];
    v >>= 7;
    while v > 0 {
        tmp.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    tmp.reverse();
    out.extend_from_slice(&tmp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_values() {
        assert_eq!(
            oid(&[1, 2, 840, 113741, 1, 13, 1]),
            hex::decode("06092a864886f84d010d01").unwrap()
        );
        assert_eq!(uint(200), vec![0x02, 0x02, 0x00, 0xc8]);
        assert_eq!(uint(0), vec![0x02, 0x01, 0x00]);
        assert_eq!(octets(&[0u8; 200])[..3], [0x04, 0x81, 200]);
    }
}
