//! The plumbing every command group shares: global flags and `cairn.toml` profiles
//! (`config`), output, colours, progress bars and exit codes (`output`), and transaction
//! signers (`signer`, `keystore`).

mod config;
mod keystore;
mod output;
mod signer;
mod trust;

pub use config::{parse_address, read_bounded, ChainArgs, Global, Resolved};
pub use output::{
    exit_code_of, fail, refuse, unavailable, write_stdout, write_stdout_bytes, write_stdout_report,
    Exit, Findings, Out, Progress,
};
pub(crate) use output::{out, outln};
pub use trust::{kms_client, KmsTrust, TrustArgs, DEFAULT_PCCS_URL, DEFAULT_SIM_PKI_SEED};
