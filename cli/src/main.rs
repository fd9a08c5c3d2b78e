//! `cairn`: Cairn's command line. One module per command group: `app` (compose hashes
//! and an app's on-chain policy), `dao` (upgrades by Governor vote), `kms` (a KMS node's
//! state), `vm` (the VMM), `gateway` (a gateway node's admin endpoint), `devnet` (a local Cairn), `audit` (the
//! auditing light client); `common` holds
//! the shared plumbing (profiles, signers, output, exit codes).
//!
//! Human output by default, `--json` for scripts: one JSON object on stdout, errors too
//! (`{"error":{"code","message"}}`). One exit-code convention for every command: 0 done or
//! clean, 1 the answer is no (denied, refused, findings), 2 could not do it (usage,
//! configuration, unreachable, timeout; the message says whether retrying may help)
//! (docs/cli.md).

mod app;
mod attest;
mod audit;
mod common;
mod dao;
mod devnet;
mod gateway;
mod kms;
mod vm;

use clap::{CommandFactory as _, Parser, Subcommand};

use common::{exit_code_of, Exit, Global, Out};

#[derive(Parser)]
#[command(
    version,
    about = "Cairn: confidential VMs whose keys the chain governs",
    after_help = "Examples:
  cairn app compose-hash app-compose.json
  cairn app deploy --compose app-compose.json --profile devnet
  cairn dao propose --app 0x… allow 0x<compose hash>
  cairn vm list
  cairn completions bash > /etc/bash_completion.d/cairn

Exit codes: 0 ok, 1 denied or findings, 2 usage, configuration, unreachable
or timeout (could not do it: the message says whether retrying may help); the
same for every command. Settings: flags, then CAIRN_* variables, then
the --profile of ./cairn.toml (docs/cli.md)."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    group: Group,
}

#[derive(Subcommand)]
enum Group {
    /// An app's compose hash and on-chain policy: deploy, allow, revoke, schedule, status.
    App(Box<app::AppArgs>),
    /// Upgrade a DAO-owned app by vote: propose, vote, queue, execute, status.
    Dao(Box<dao::DaoArgs>),
    /// Verify TDX evidence (quote + event log) offline and print the identities.
    Attest(Box<attest::AttestArgs>),
    /// A KMS node's state: key generation, log size, last anchor, registration.
    Kms(Box<kms::KmsArgs>),
    /// Run CVMs on a VMM: list, deploy, upgrade, stop, start, rm, logs, status.
    Vm(Box<vm::VmArgs>),
    /// Look at a gateway node: admitted instances and the chain's verdicts.
    Gateway(gateway::GatewayArgs),
    /// A local Cairn in the background: up, status, down.
    Devnet(Box<devnet::DevnetArgs>),
    /// Audit every KMS node's key-release log against the chain (exit 0 clean, 1
    /// findings, 2 could not audit).
    Audit(Box<audit::AuditArgs>),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let out = Out::new(json);
    // `vm` and `gateway` print their own JSON errors (their exit codes are everyone's).
    let mut reported = false;
    let result = match cli.group {
        Group::Devnet(mut args) => {
            args.json = json;
            return match devnet::run(*args).await {
                Ok(code) => std::process::ExitCode::from(code),
                // "Already runs" is a refusal (1); a devnet that did not come up, a
                // missing script or tree could not be done (2).
                Err(e) => report(&e, exit_code_of(&e)),
            };
        }
        Group::Audit(mut args) => {
            args.json = json;
            return match audit::run(*args).await {
                Ok(code) => std::process::ExitCode::from(code),
                Err(e) => {
                    let hint = match exit_code_of(&e) {
                        Exit::Unavailable => Exit::Unavailable.hint(),
                        _ => Exit::Usage.hint(),
                    };
                    eprintln!(
                        "error: could not audit: {e:#} ({})",
                        hint.unwrap_or_default()
                    );
                    std::process::ExitCode::from(
                        cairn_onchain::AuditOutcome::CouldNotAudit.exit_code(),
                    )
                }
            };
        }
        Group::App(args) => app::run(&cli.global, *args, out).await,
        Group::Dao(args) => dao::run(&cli.global, *args, out).await,
        Group::Attest(args) => attest::run(&cli.global, *args, out).await,
        Group::Kms(args) => kms::run(&cli.global, *args, out).await,
        Group::Vm(mut args) => {
            reported = true;
            args.json = json;
            vm::run(*args).await
        }
        Group::Gateway(mut args) => {
            reported = true;
            args.json = json;
            gateway::run(args).await
        }
        Group::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut script);
            common::write_stdout_bytes(&script);
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::from(Exit::Ok.code()),
        Err(e) => {
            let code = exit_code_of(&e);
            // A command that printed its answer and then reports findings has said it all.
            if json && !reported && !e.is::<common::Findings>() {
                let body = serde_json::json!({"error": {"code": code.name(), "message": format!("{e:#}")}});
                common::write_stdout_report(&body.to_string());
            }
            report(&e, code)
        }
    }
}

/// Prints `e` on one stderr line, saying whether retrying may help; its exit code.
fn report(e: &anyhow::Error, code: Exit) -> std::process::ExitCode {
    match code.hint() {
        Some(hint) => eprintln!("error: {e:#} ({hint})"),
        None => eprintln!("error: {e:#}"),
    }
    std::process::ExitCode::from(code.code())
}
