//! `cairn-echo-app`: the app the gateway scenarios and benchmark run inside a CVM (the
//! `process` runner). It serves HTTP/1.1 on `--listen`, over TLS with a certificate its
//! own guest agent issues through the KMS (`GetTlsKey`, RA-TLS evidence, the app id in
//! the chain) — what a Cairn app does so that a gateway can verify it — or in plain text
//! with `--plain`. Every answer is `echo <instance id> <path>\n`.
//!
//! ```text
//! cairn-echo-app --listen 127.0.0.1:PORT [--plain] [--agent SOCKET] [--lifetime SECS]
//! ```
//!
//! The agent socket defaults to `$CAIRN_AGENT_SOCKET` (set by the runner); the app polls
//! it until it answers (the agent starts after the app). It exits after `--lifetime`
//! seconds (default 900) so a scenario that fails half-way leaves nothing running.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cairn_acme::{AgentClient, AgentEndpoint};
use cairn_protocol::agent::GetTlsKeyRequest;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

struct Args {
    listen: String,
    plain: bool,
    agent: Option<String>,
    lifetime: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        listen: String::new(),
        plain: false,
        agent: std::env::var("CAIRN_AGENT_SOCKET").ok(),
        lifetime: 900,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => a.listen = it.next().context("--listen needs an address")?,
            "--plain" => a.plain = true,
            "--agent" => a.agent = Some(it.next().context("--agent needs a path")?),
            "--lifetime" => {
                a.lifetime = it
                    .next()
                    .context("--lifetime needs seconds")?
                    .parse()
                    .context("--lifetime")?
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if a.listen.is_empty() {
        bail!("--listen is required");
    }
    Ok(a)
}

/// Poll the agent until `f` succeeds, up to a minute.
async fn with_agent<T, F, Fut>(agent: &AgentClient, f: F) -> anyhow::Result<T>
where
    F: Fn(AgentClient) -> Fut,
    Fut: std::future::Future<Output = cairn_acme::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match f(agent.clone()).await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e).context("guest agent"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let lifetime = Duration::from_secs(args.lifetime);
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let agent = args
        .agent
        .as_deref()
        .map(|p| AgentClient::new(AgentEndpoint::Unix(p.into())));
    let instance = match &agent {
        Some(agent) => {
            with_agent(agent, |a| async move { a.info().await })
                .await?
                .instance_id
        }
        None => "-".to_owned(),
    };
    let tls = if args.plain {
        None
    } else {
        let agent = agent
            .as_ref()
            .context("TLS needs the guest agent (--agent)")?;
        let request = GetTlsKeyRequest {
            subject: "echo".to_owned(),
            alt_names: vec![],
            usage_ra_tls: true,
            usage_server_auth: true,
            usage_client_auth: false,
            not_before: None,
            not_after: None,
            with_app_info: Some(true),
        };
        let resp = with_agent(agent, |a| {
            let request = request.clone();
            async move { a.get_tls_key(&request).await }
        })
        .await?;
        let chain = resp
            .certificate_chain
            .iter()
            .map(|p| CertificateDer::from_pem_slice(p.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .context("certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(resp.key.as_bytes()).context("key")?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    };
    let instance: Arc<str> = instance.into();
    let serve = async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (tls, instance) = (tls.clone(), Arc::clone(&instance));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let body = format!("echo {} {}\n", instance, req.uri().path());
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(s) => http.serve_connection(TokioIo::new(s), service).await,
                        Err(_) => return,
                    },
                    None => http.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    };
    tokio::select! {
        () = serve => {}
        () = tokio::time::sleep(lifetime) => {}
    }
    Ok(())
}
