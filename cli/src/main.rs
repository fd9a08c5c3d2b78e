//! `cairn`: Cairn's command line. One module per command group; today `vm` (the VMM),
//! `gateway` (a gateway node's admin endpoint), `devnet` (a local Cairn) and `audit` (the auditing light client).
//!
//! Human output by default, `--json` for scripts (errors too: `{"error":{…}}` on stdout
//! and a non-zero exit).

mod audit;
mod devnet;
mod gateway;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Cairn: confidential VMs whose keys the chain governs"
)]
struct Cli {
    #[command(subcommand)]
    group: Group,
}

#[derive(Subcommand)]
enum Group {
    /// Run CVMs on a VMM: list, deploy, upgrade, stop, start, rm, logs, status.
    Vm(Box<vm::VmArgs>),
    /// Look at a gateway node: admitted instances and the chain's verdicts.
    Gateway(gateway::GatewayArgs),
    /// A local Cairn in the background: up, status, down.
    Devnet(Box<devnet::DevnetArgs>),
    /// Audit every KMS node's key-release log against the chain (exit 0 clean, 1
    /// findings, 2 could not audit).
    Audit(Box<audit::AuditArgs>),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.group {
        Group::Devnet(args) => {
            return match devnet::run(*args).await {
                Ok(code) => std::process::ExitCode::from(code),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Group::Audit(args) => {
            return match audit::run(*args).await {
                Ok(code) => std::process::ExitCode::from(code),
                Err(e) => {
                    eprintln!("error: could not audit: {e:#}");
                    std::process::ExitCode::from(audit::EXIT_COULD_NOT_AUDIT)
                }
            };
        }
        Group::Vm(args) => vm::run(*args).await,
        Group::Gateway(args) => gateway::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
