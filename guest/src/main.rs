//! `cairn-guest`: the in-CVM boot flow and guest agent. See `docs/guest.md`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = <cairn_guest::cli::Cli as clap::Parser>::parse();
    let result = match cli.cmd {
        cairn_guest::cli::Cmd::Boot(args) => cairn_guest::cli::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-guest: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
