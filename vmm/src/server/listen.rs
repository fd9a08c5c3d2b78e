//! The accept loop shared by the API and the per-CVM host-API sockets: TCP and/or unix
//! listeners, a cap on open connections, a header timeout, each connection served by
//! hyper HTTP/1.1 with a [`Transport`] extension on every request, graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// Time allowed to read a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests (log followers are cut after it).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How a request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Over TCP from this address.
    Tcp(SocketAddr),
    /// Over a unix socket (access controlled by its file mode).
    Unix,
}

enum Conn {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(tcp: Option<&TcpListener>, unix: Option<&UnixListener>) -> std::io::Result<Conn> {
    let tcp_accept = async {
        match tcp {
            Some(l) => l.accept().await.map(|(s, a)| Conn::Tcp(s, a)),
            None => std::future::pending().await,
        }
    };
    let unix_accept = async {
        match unix {
            Some(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        c = tcp_accept => c,
        c = unix_accept => c,
    }
}

/// Serve `app` on the listeners until `shutdown` completes, then drain.
pub async fn serve(
    tcp: Option<TcpListener>,
    unix: Option<UnixListener>,
    app: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            c = accept(tcp.as_ref(), unix.as_ref()) => match c {
                Ok(c) => c,
                Err(e) => {
                    cairn_service::accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!("connection limit reached; closing a new connection");
            continue;
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        match conn {
            Conn::Tcp(s, remote) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let _permit = permit;
                    serve_io(s, Transport::Tcp(remote), app, watcher).await;
                });
            }
            Conn::Unix(s) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    serve_io(s, Transport::Unix, app, watcher).await;
                });
            }
        }
    }
    drop(tcp);
    drop(unix);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing remaining connections");
    }
}

async fn serve_io<S>(
    io: S,
    transport: Transport,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(transport);
            app.clone().oneshot(req)
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
