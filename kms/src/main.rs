//! `cairn-kms`: bootstrap, serve or onboard a KMS node (see docs/operator.md).
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Cairn KMS node")]
struct Cli {
    /// Config file (TOML; CAIRN_KMS_* environment variables override it).
    #[arg(long, short, env = "CAIRN_KMS_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the root secret and node key; print the public identity as JSON.
    Bootstrap,
    /// Serve the KMS API until SIGINT/SIGTERM.
    Serve,
    /// Receive the root secret from a running node at SOURCE (host:port).
    Onboard { source: std::net::SocketAddr },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let config = cairn_kms::Config::load(&cli.config).context("loading config")?;
    match cli.cmd {
        Cmd::Bootstrap => println!(
            "{}",
            serde_json::to_string_pretty(&cairn_kms::lifecycle::bootstrap(&config).await?)?
        ),
        Cmd::Serve => cairn_kms::lifecycle::serve(&config).await?,
        Cmd::Onboard { source } => println!(
            "{:?}",
            cairn_kms::onboard(&config.node_options()?, source).await?
        ),
    }
    Ok(())
}
