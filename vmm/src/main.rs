//! `cairn-vmm`: serve the VMM API (docs/vmm.md).
use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Cairn VMM: runs CVMs after asking the chain")]
struct Cli {
    /// Config file (TOML; CAIRN_VMM_* environment variables override it).
    #[arg(long, short, env = "CAIRN_VMM_CONFIG")]
    config: std::path::PathBuf,
    /// Serve on this unix socket (overrides api.unix_socket).
    #[arg(long)]
    unix_socket: Option<std::path::PathBuf>,
    /// Serve on this TCP address (overrides api.tcp).
    #[arg(long)]
    tcp: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let cli = Cli::parse();
    let mut config = cairn_vmm::Config::load(&cli.config).context("loading config")?;
    config.api.unix_socket = cli.unix_socket.or(config.api.unix_socket);
    config.api.tcp = cli.tcp.or(config.api.tcp);
    let listeners = cairn_vmm::Listeners::bind(&config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
    };
    cairn_vmm::run(listeners, config, shutdown).await?;
    Ok(())
}
