//! `cairn-gateway`: serve a gateway node (docs/gateway.md).
use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Cairn gateway: TLS ingress that admits only what the chain allows"
)]
struct Cli {
    /// Config file (TOML; CAIRN_GATEWAY_* environment variables override it).
    #[arg(long, short, env = "CAIRN_GATEWAY_CONFIG")]
    config: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let cli = Cli::parse();
    let config = cairn_gateway::Config::load(&cli.config).context("loading config")?;
    let options = config.options().context("config")?;
    let bind = |a| async move {
        tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"))
    };
    let listeners = cairn_gateway::Listeners {
        proxy: bind(config.listen).await?,
        registration: bind(config.registration_listen).await?,
        admin: bind(config.admin_listen).await?,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    cairn_gateway::run(listeners, options, shutdown).await?;
    Ok(())
}
