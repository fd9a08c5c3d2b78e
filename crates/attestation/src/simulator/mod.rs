//! An in-process TDX: a mock Intel PKI, TDX v4 quotes and matching collateral that the
//! real verifier (dcap-qvl) accepts — **only** with the simulator's root configured
//! ([`crate::Verifier::dangerous_with_simulator_root`]).
//!
//! - [`SimPki`]: root CA → PCK platform CA → PCK leaf (per host), and a TCB signing cert
//!   directly under the root; root and PCK CRLs; signed TCB Info and QE Identity. Keys
//!   are derived from a seed (HKDF-SHA256), validity windows are anchored at a given `now`.
//! - [`SimTdx`]: one simulated TD on one host. MRTD/RTMR0-2 come from an [`OsImage`];
//!   RTMR3 is extended for real through [`crate::Tee`]; the PPID (hence the device id)
//!   comes from the host seed.
//! - [`SimPccs`]: serves the collateral over HTTP with Intel PCS v4 paths.

mod der;
mod os;
mod pccs;
mod pki;
mod quote;

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Re-exported from the crate root ([`crate::OsImageManifest`]), where the product type lives.
pub use crate::os_image::{OsImageManifest, MAX_MANIFEST_LEN};
pub use os::OsImage;
pub use pccs::SimPccs;
pub use pki::{
    SimPki, SimPkiConfig, SimTcbStatus, SIM_CPUSVN, SIM_FMSPC, SIM_PCESVN, SIM_QE_ISVSVN,
    SIM_TEE_TCB_SVN,
};

use crate::error::Result;
use crate::eventlog;
use crate::ids::{DeviceId, Measurement48};
use crate::tee::{Tee, TeeError};
use pki::DerivedKey;
use quote::{build_quote, QuotingEnclave, TdReportFields, TD_ATTR_DEBUG, TD_ATTR_SEPT_VE_DISABLE};

/// One simulated host and TD.
#[derive(Clone, Debug)]
pub struct SimHostConfig {
    /// Per-host seed: PCK key, attestation key and PPID derive from it.
    pub host_seed: [u8; 32],
    /// Run the TD in debug mode (TDATTRIBUTES.TUD.DEBUG): the verifier must reject it.
    pub debug: bool,
    /// The OS image the TD boots; gives MRTD and RTMR0-2.
    pub os_image: OsImage,
    /// FMSPC of the host's platform, carried in its PCK certificate. The PKI's collateral
    /// (and [`SimPccs`]) covers only [`SIM_FMSPC`]: a host on another platform models a
    /// platform the PCCS does not know.
    pub fmspc: [u8; 6],
}

impl SimHostConfig {
    /// A non-debug TD booting `os_image` on the host with `host_seed`, on the simulated
    /// platform ([`SIM_FMSPC`]).
    pub fn new(host_seed: [u8; 32], os_image: OsImage) -> Self {
        SimHostConfig {
            host_seed,
            debug: false,
            os_image,
            fmspc: SIM_FMSPC,
        }
    }
}

/// A simulated TDX guest: implements [`Tee`] with a real RTMR3 and signed quotes.
pub struct SimTdx {
    pki: Arc<SimPki>,
    config: SimHostConfig,
    ppid: [u8; 16],
    qe_id: [u8; 16],
    pck_key: Arc<DerivedKey>,
    attestation_key: Arc<DerivedKey>,
    pck_chain_pem: String,
    rtmr3: Mutex<[u8; 48]>,
}

impl std::fmt::Debug for SimTdx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTdx")
            .field("config", &self.config)
            .field("ppid", &hex::encode(self.ppid))
            .finish_non_exhaustive()
    }
}

fn label16(seed: &[u8; 32], label: &[u8]) -> [u8; 16] {
    let d = Sha256::new()
        .chain_update(b"cairn-sim/")
        .chain_update(label)
        .chain_update(seed)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

impl SimTdx {
    /// Boot a simulated TD on a host of `pki`. RTMR3 starts at zero.
    pub fn new(pki: Arc<SimPki>, config: SimHostConfig) -> Result<Self> {
        let ppid = label16(&config.host_seed, b"ppid");
        let qe_id = label16(&config.host_seed, b"qe-id");
        let pck_key = DerivedKey::derive(&config.host_seed, "pck-leaf")?;
        let attestation_key = DerivedKey::derive(&config.host_seed, "attestation-key")?;
        // Positive 4-byte serial unique per host.
        let serial = u32::from_be_bytes([0x02, ppid[0], ppid[1], ppid[2]]);
        let leaf = pki.issue_pck_leaf(&pck_key, &ppid, serial, &config.fmspc)?;
        let pck_chain_pem = format!("{leaf}{}", pki.pck_chain_tail_pem());
        Ok(SimTdx {
            pki,
            config,
            ppid,
            qe_id,
            pck_key: Arc::new(pck_key),
            attestation_key: Arc::new(attestation_key),
            pck_chain_pem,
            rtmr3: Mutex::new([0u8; 48]),
        })
    }

    /// The same host (keys, PPID) moved to the platform `fmspc`: a new PCK leaf signed by
    /// the PKI's PCK CA, RTMR3 back at zero. Cheaper than [`Self::new`] (no key
    /// derivation), for simulating many platforms.
    pub fn on_platform(&self, fmspc: [u8; 6]) -> Result<Self> {
        let serial = u32::from_be_bytes([0x02, self.ppid[0], self.ppid[1], self.ppid[2]]);
        let leaf = self
            .pki
            .issue_pck_leaf(&self.pck_key, &self.ppid, serial, &fmspc)?;
        let mut config = self.config.clone();
        config.fmspc = fmspc;
        Ok(SimTdx {
            pki: Arc::clone(&self.pki),
            config,
            ppid: self.ppid,
            qe_id: self.qe_id,
            pck_key: Arc::clone(&self.pck_key),
            attestation_key: Arc::clone(&self.attestation_key),
            pck_chain_pem: format!("{leaf}{}", self.pki.pck_chain_tail_pem()),
            rtmr3: Mutex::new([0u8; 48]),
        })
    }

    /// The PKI this host belongs to.
    pub fn pki(&self) -> &Arc<SimPki> {
        &self.pki
    }

    /// The host's PPID, as carried in its PCK certificate.
    pub fn ppid(&self) -> &[u8; 16] {
        &self.ppid
    }

    /// SHA-256 of the PPID.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_ppid(&self.ppid)
    }

    /// The OS image this TD booted.
    pub fn os_image(&self) -> &OsImage {
        &self.config.os_image
    }

    /// The current RTMR3.
    pub fn rtmr3(&self) -> Measurement48 {
        Measurement48(*self.rtmr3.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Tee for SimTdx {
    fn extend_rtmr3(&self, digest: &[u8; 48]) -> std::result::Result<(), TeeError> {
        let mut r = self.rtmr3.lock().unwrap_or_else(|p| p.into_inner());
        *r = eventlog::extend(&r, digest);
        Ok(())
    }

    fn quote(&self, report_data: &[u8; 64]) -> std::result::Result<Vec<u8>, TeeError> {
        let m = self.config.os_image.measurements();
        let mut td_attributes = TD_ATTR_SEPT_VE_DISABLE;
        if self.config.debug {
            td_attributes |= TD_ATTR_DEBUG;
        }
        let td = TdReportFields {
            td_attributes,
            mr_signer_seam: self.pki.config().mr_signer_seam,
            mrtd: m.mrtd.0,
            rtmr: [m.rtmr0.0, m.rtmr1.0, m.rtmr2.0, self.rtmr3().0],
            report_data: *report_data,
        };
        let qe = QuotingEnclave {
            qe_id: self.qe_id,
            pck_key: &self.pck_key,
            attestation_key: &self.attestation_key,
            pck_chain_pem: &self.pck_chain_pem,
        };
        Ok(build_quote(&qe, &td))
    }

    fn is_simulated(&self) -> bool {
        true
    }
}
