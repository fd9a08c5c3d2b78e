//! What keeps a slow or greedy client from stalling the server: connection limits (in
//! all and per source), the request body read in full — under an idle and a total
//! deadline — *before* the request competes for a release permit, and a deadline on
//! writes that make no progress.
//!
//! Every phase of a connection is bounded: the TLS handshake
//! ([`ServerLimits::handshake_timeout`]), request headers and idle keep-alive
//! ([`HEADER_TIMEOUT`](super::HEADER_TIMEOUT), hyper's header read timer runs whenever the
//! connection waits for a request), the body ([`ServerLimits::body_idle_timeout`],
//! [`ServerLimits::body_timeout`]), the handler ([`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT))
//! and the response ([`ServerLimits::write_stall_timeout`]). So a connection slot is held only as long
//! as its client makes progress, and one source holds at most
//! [`ServerLimits::max_connections_per_source`] of them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::MAX_BODY;
use crate::metrics::Metrics;
use crate::reject::ApiError;

/// Default [`ServerLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`ServerLimits::max_connections_per_source`]: a host running many CVMs behind
/// one NAT address needs one connection per booting guest; raise it for larger hosts.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 128;
/// Default [`ServerLimits::handshake_timeout`]. The client's side of an RA-TLS handshake
/// verifies the server's quote with collateral it already holds (a rustls verifier cannot
/// fetch), so milliseconds of work.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`ServerLimits::body_idle_timeout`].
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`ServerLimits::body_timeout`]: 64 KiB in 10 s is 6.5 KB/s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerLimits::write_stall_timeout`].
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection and request-body limits of the server (config section `[server]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most open connections; further ones are closed at accept. Each costs a task, TLS
    /// state and up to one buffered body ([`MAX_BODY`]).
    pub max_connections: usize,
    /// Most open connections from one source (an IPv4 address, or an IPv6 /64); further
    /// ones from it are closed at accept.
    pub max_connections_per_source: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for the next piece of a request body; a stalled body is answered
    /// 408 `bad_request.timeout`.
    pub body_idle_timeout: Duration,
    /// Time allowed for a whole request body (408 `bad_request.timeout` beyond it).
    pub body_timeout: Duration,
    /// A write (response, TLS record) that makes no progress for this long ends the
    /// connection: a client that stops reading cannot hold its slot forever.
    pub write_stall_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
        }
    }
}

/// Read a request's whole body (at most [`MAX_BODY`]) under `limits`' idle and total
/// deadlines, so the request holds no release permit while its client is slow. A body
/// that stalls or is too slow is 408 `bad_request.timeout`, an oversized one 413
/// `bad_request.too_large` (decided from `Content-Length` before reading, when given).
pub(crate) async fn read_body(
    req: hyper::Request<Incoming>,
    limits: &ServerLimits,
    metrics: &Metrics,
) -> Result<axum::extract::Request, ApiError> {
    let (parts, mut body) = req.into_parts();
    if body.is_end_stream() {
        return Ok(axum::extract::Request::from_parts(parts, Body::empty()));
    }
    let too_large = || ApiError::BadRequest {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the request body exceeds {MAX_BODY} bytes"),
    };
    let announced = body.size_hint().lower();
    let _reading = metrics.body_reading();
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    if announced > MAX_BODY as u64 {
        if announced <= MAX_DRAIN as u64 {
            drain(&mut body, 0, deadline, limits.body_idle_timeout).await;
        }
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(usize::try_from(announced).unwrap_or(MAX_BODY));
    loop {
        let until = deadline.min(tokio::time::Instant::now() + limits.body_idle_timeout);
        let frame = match tokio::time::timeout_at(until, body.frame()).await {
            Err(_) => {
                metrics.body_timed_out();
                return Err(ApiError::BadRequest {
                    status: StatusCode::REQUEST_TIMEOUT,
                    message: format!(
                        "the request body did not arrive in time ({} of {announced} bytes; at most {} ms between reads, {} ms in all)",
                        buf.len(),
                        limits.body_idle_timeout.as_millis(),
                        limits.body_timeout.as_millis()
                    ),
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError::bad_request(format!(
                    "reading the request body failed: {e}"
                )))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY {
                drain(
                    &mut body,
                    buf.len() + data.len(),
                    deadline,
                    limits.body_idle_timeout,
                )
                .await;
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(axum::extract::Request::from_parts(parts, Body::from(buf)))
}

/// Most bytes of a refused (oversized) body read and discarded before the 413 is sent.
pub(crate) const MAX_DRAIN: usize = 4 * MAX_BODY;

/// Read and discard what is left of a refused body (`seen` bytes already read), up to
/// [`MAX_DRAIN`] in all and under the body deadlines, so that a client still writing a
/// moderately oversized body reads the 413 instead of a broken pipe (the connection is
/// closed after the answer either way). Stops silently at any limit or error.
async fn drain(
    body: &mut Incoming,
    mut seen: usize,
    deadline: tokio::time::Instant,
    idle: Duration,
) {
    while seen <= MAX_DRAIN {
        let until = deadline.min(tokio::time::Instant::now() + idle);
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    seen = seen.saturating_add(data.len());
                }
            }
            _ => return,
        }
    }
}

/// An I/O stream whose writes (and flushes, shutdowns) fail with `TimedOut` once they
/// have made no progress for `timeout`. Reads pass through (their deadlines are the
/// handshake, header and body timeouts).
#[derive(Debug)]
pub(crate) struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    fn check<R>(&mut self, r: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    self.stalled = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer read nothing within the write stall timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_makes_no_progress_times_out() {
        // A 1-byte pipe whose reader never reads.
        let (near, _far) = tokio::io::duplex(1);
        let mut w = WriteDeadline::new(near, Duration::from_secs(10));
        w.write_all(b"x").await.unwrap();
        let err = w.write_all(b"y").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_progressing_reader_keeps_the_write_alive() {
        use tokio::io::AsyncReadExt as _;
        let (near, mut far) = tokio::io::duplex(1);
        let mut w = WriteDeadline::new(near, Duration::from_secs(10));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while far.read(&mut b).await.unwrap() == 1 {
                got.push(b[0]);
                tokio::time::sleep(Duration::from_secs(6)).await;
            }
            got
        });
        w.write_all(b"abcd").await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), b"abcd");
    }
}
