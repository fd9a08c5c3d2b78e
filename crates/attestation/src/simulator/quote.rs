//! TDX v4 quote construction (MOCK-PKI.md §2, §3, §5).

use sha2::{Digest, Sha256};

use super::pki::{DerivedKey, SIM_QE_ISVSVN, SIM_QE_MRSIGNER, SIM_TEE_TCB_SVN};

/// TDATTRIBUTES bit 28: SEPT_VE_DISABLE, required by dcap-qvl.
pub(crate) const TD_ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
/// TDATTRIBUTES bit 0: TUD.DEBUG.
pub(crate) const TD_ATTR_DEBUG: u64 = 1;

/// The TD report fields the simulator controls.
pub(crate) struct TdReportFields {
    pub(crate) td_attributes: u64,
    pub(crate) mr_signer_seam: [u8; 48],
    pub(crate) mrtd: [u8; 48],
    pub(crate) rtmr: [[u8; 48]; 4],
    pub(crate) report_data: [u8; 64],
}

/// Keys and certificates of one simulated host's quoting enclave.
pub(crate) struct QuotingEnclave<'a> {
    pub(crate) qe_id: [u8; 16],
    pub(crate) pck_key: &'a DerivedKey,
    pub(crate) attestation_key: &'a DerivedKey,
    /// PCK chain PEM, leaf first.
    pub(crate) pck_chain_pem: &'a str,
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Build a signed TDX v4 quote.
pub(crate) fn build_quote(qe: &QuotingEnclave<'_>, td: &TdReportFields) -> Vec<u8> {
    let mut q = Vec::with_capacity(1300 + qe.pck_chain_pem.len());
    // Header (48 bytes).
    u16le(&mut q, 4); // version
    u16le(&mut q, 2); // attestation key type: ECDSA-256 P-256
    u32le(&mut q, 0x81); // TEE type: TDX
    u16le(&mut q, 0); // reserved (qe_svn)
    u16le(&mut q, 0); // reserved (pce_svn)
    q.extend_from_slice(&dcap_qvl::INTEL_QE_VENDOR_ID);
    q.extend_from_slice(&qe.qe_id); // user_data[0..16] = QE ID
    q.extend_from_slice(&[0u8; 4]);
    // TD report 1.0 (584 bytes).
    q.extend_from_slice(&SIM_TEE_TCB_SVN);
    q.extend_from_slice(&[0x11u8; 48]); // MRSEAM
    q.extend_from_slice(&td.mr_signer_seam);
    q.extend_from_slice(&[0u8; 8]); // SEAMATTRIBUTES
    q.extend_from_slice(&td.td_attributes.to_le_bytes());
    q.extend_from_slice(&0x0000_0000_0006_1ae7u64.to_le_bytes()); // XFAM
    q.extend_from_slice(&td.mrtd);
    q.extend_from_slice(&[0u8; 48 * 3]); // MRCONFIGID, MROWNER, MROWNERCONFIG
    for r in &td.rtmr {
        q.extend_from_slice(r);
    }
    q.extend_from_slice(&td.report_data);
    debug_assert_eq!(q.len(), 632);

    let quote_sig = qe.attestation_key.sign_raw(&q);
    let att_pub = qe.attestation_key.public_raw();
    let qe_auth: Vec<u8> = (0u8..32).collect();

    // QE report (384 bytes), report_data binds the attestation key and the auth data.
    let mut rep = Vec::with_capacity(384);
    rep.extend_from_slice(&[0u8; 16]); // CPUSVN (not checked)
    rep.extend_from_slice(&[0u8; 4]); // MISCSELECT
    rep.extend_from_slice(&[0u8; 28]);
    let mut attributes = [0u8; 16];
    attributes[0] = 0x11;
    rep.extend_from_slice(&attributes);
    rep.extend_from_slice(&[0x33u8; 32]); // MRENCLAVE (not checked)
    rep.extend_from_slice(&[0u8; 32]);
    rep.extend_from_slice(&SIM_QE_MRSIGNER);
    rep.extend_from_slice(&[0u8; 96]);
    u16le(&mut rep, 2); // ISVPRODID
    u16le(&mut rep, SIM_QE_ISVSVN);
    rep.extend_from_slice(&[0u8; 60]);
    let binding: [u8; 32] = Sha256::new()
        .chain_update(att_pub)
        .chain_update(&qe_auth)
        .finalize()
        .into();
    rep.extend_from_slice(&binding);
    rep.extend_from_slice(&[0u8; 32]);
    debug_assert_eq!(rep.len(), 384);
    let rep_sig = qe.pck_key.sign_raw(&rep);

    // Inner certification data: type 5, PCK chain PEM leaf first.
    let chain = qe.pck_chain_pem.as_bytes();
    let mut outer = Vec::with_capacity(384 + 64 + 34 + 6 + chain.len());
    outer.extend_from_slice(&rep);
    outer.extend_from_slice(&rep_sig);
    u16le(&mut outer, 32);
    outer.extend_from_slice(&qe_auth);
    u16le(&mut outer, 5);
    u32le(&mut outer, chain.len() as u32);
    outer.extend_from_slice(chain);

    let mut sig_data = Vec::with_capacity(64 + 64 + 6 + outer.len());
    sig_data.extend_from_slice(&quote_sig);
    sig_data.extend_from_slice(&att_pub);
    u16le(&mut sig_data, 6);
    u32le(&mut sig_data, outer.len() as u32);
    sig_data.extend_from_slice(&outer);

    u32le(&mut q, sig_data.len() as u32);
    q.extend_from_slice(&sig_data);
    q
}
