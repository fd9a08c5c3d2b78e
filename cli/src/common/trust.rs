//! Which attestation root a KMS's RA-TLS evidence is verified against: Intel's (collateral
//! from a PCCS) or, for development only, the TDX simulator's mock root.

use std::sync::Arc;

use anyhow::Context as _;
use cairn_attestation::simulator::{SimPki, SimPkiConfig};
use cairn_attestation::{Collateral, PccsClient, Verifier};
use cairn_kms_client::KmsClient;
use clap::{Args, ValueEnum};

/// Intel's PCS, the default collateral source for `--kms-trust intel`.
pub const DEFAULT_PCCS_URL: &str = "https://api.trustedservices.intel.com";
/// The simulator PKI seed the devnet uses.
pub const DEFAULT_SIM_PKI_SEED: &str =
    "4242424242424242424242424242424242424242424242424242424242424242";

/// Which root the KMS's attestation is verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KmsTrust {
    /// Intel's SGX root CA (collateral from `--pccs-url`).
    Intel,
    /// The TDX simulator's mock root (development only).
    Simulator,
}

/// `--kms-trust`, `--pccs-url`, `--sim-pki-seed`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The root the KMS's attestation is verified against.
    #[arg(
        long,
        env = "CAIRN_KMS_TRUST",
        value_enum,
        default_value = "intel",
        global = true
    )]
    pub kms_trust: KmsTrust,
    /// Collateral source for --kms-trust intel.
    #[arg(long, env = "CAIRN_PCCS_URL", default_value = DEFAULT_PCCS_URL, global = true)]
    pub pccs_url: String,
    /// The simulator PKI seed for --kms-trust simulator (32 bytes hex).
    #[arg(long, env = "CAIRN_SIM_PKI_SEED", default_value = DEFAULT_SIM_PKI_SEED, global = true)]
    pub sim_pki_seed: String,
}

impl TrustArgs {
    /// A KMS client that verifies against the chosen root.
    pub fn kms_client(&self, now: u64) -> anyhow::Result<KmsClient> {
        kms_client(self.kms_trust, &self.pccs_url, &self.sim_pki_seed, now)
    }
}

/// A KMS client verifying against `trust` (see [`TrustArgs`]).
pub fn kms_client(
    trust: KmsTrust,
    pccs_url: &str,
    sim_pki_seed: &str,
    now: u64,
) -> anyhow::Result<KmsClient> {
    Ok(match trust {
        KmsTrust::Intel => {
            let pccs = PccsClient::new(pccs_url)
                .map_err(|e| super::fail(format!("--pccs-url {pccs_url:?}: {e}")))?;
            KmsClient::with_pccs(Verifier::intel(), pccs)
        }
        KmsTrust::Simulator => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(sim_pki_seed.trim_start_matches("0x"), &mut seed)
                .map_err(|_| super::fail("--sim-pki-seed: 32 bytes of hex"))?;
            let pki = SimPki::new(SimPkiConfig::new(seed, now)).context("simulator PKI")?;
            let collateral = Collateral::new(pki.collateral()).context("simulator collateral")?;
            KmsClient::new(Arc::new(
                Verifier::dangerous_with_simulator_root(pki.root_ca_der())
                    .with_collateral(collateral),
            ))
        }
    })
}
