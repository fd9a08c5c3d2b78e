//! `cairn-kms`: bootstrap, describe, serve or onboard a KMS node (docs/operator.md).
use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Cairn KMS node")]
struct Cli {
    /// Config file (TOML; CAIRN_KMS_* environment variables override it).
    #[arg(long, short, env = "CAIRN_KMS_CONFIG")]
    config: std::path::PathBuf,
    #[command(subcommand)]
    cmd: cairn_kms::Command,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    // Logs go to stderr: stdout carries the commands' JSON output (bootstrap, describe,
    // onboard), which scripts parse.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = cairn_kms::Config::load(&cli.config).context("loading config")?;
    if let Some(out) = cairn_kms::execute(&config, cli.cmd).await? {
        println!("{out}");
    }
    Ok(())
}
