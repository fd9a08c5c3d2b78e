//! `cairn`: Cairn's command line. One module per command group; today `vm` (the VMM) and
//! `gateway` (a gateway node's admin endpoint).
//!
//! Human output by default, `--json` for scripts (errors too: `{"error":{…}}` on stdout
//! and a non-zero exit).

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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.group {
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
