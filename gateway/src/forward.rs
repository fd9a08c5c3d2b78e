//! Forwarding bytes between a client and an instance until one side closes, the
//! connection idles or outlives its limit, the instance is revoked, or the node stops.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::registry::now_ms;

/// Buffer of each direction.
pub const COPY_BUFFER: usize = 16 * 1024;

/// Any byte stream the proxy forwards between.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How a forwarded connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// A side closed (or failed).
    Closed,
    /// The instance was revoked or expired.
    Revoked,
    /// No byte in either direction for the idle timeout.
    IdleTimeout,
    /// The connection reached its total lifetime.
    TotalTimeout,
    /// The node is shutting down.
    Shutdown,
}

impl Ended {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Revoked => "revoked",
            Ended::IdleTimeout => "idle_timeout",
            Ended::TotalTimeout => "total_timeout",
            Ended::Shutdown => "shutdown",
        }
    }
}

/// A stream that stamps the time of its last successful read or write.
struct Tracked<'a, T> {
    inner: &'a mut T,
    last: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut *self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Resolves once the watched flag is true (or its sender is gone: treated the same, the
/// instance or node no longer exists).
async fn flagged(mut rx: watch::Receiver<bool>) {
    stopped(&mut rx).await;
}

/// Resolves once `rx` is true or its sender is gone (holds no borrow of the value, so
/// the future is `Send`).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

/// Resolves once nothing moved for `idle`.
async fn idle(last: &AtomicU64, idle: Duration) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    loop {
        let since = now_ms().saturating_sub(last.load(Ordering::Relaxed));
        if since >= idle_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(idle_ms - since)).await;
    }
}

/// Limits of one forwarded connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub idle: Duration,
    pub total: Duration,
}

/// Copy both ways between `a` and `b` (half-closes propagate) until it ends; see
/// [`Ended`].
pub(crate) async fn forward<A: Io, B: Io>(
    a: &mut A,
    b: &mut B,
    bounds: Bounds,
    revoked: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) -> Ended {
    let last = AtomicU64::new(now_ms());
    let mut ta = Tracked {
        inner: a,
        last: &last,
    };
    let mut tb = Tracked {
        inner: b,
        last: &last,
    };
    let last = &last;
    tokio::select! {
        _ = tokio::io::copy_bidirectional_with_sizes(&mut ta, &mut tb, COPY_BUFFER, COPY_BUFFER) => Ended::Closed,
        _ = flagged(revoked) => Ended::Revoked,
        _ = flagged(shutdown) => Ended::Shutdown,
        _ = idle(last, bounds.idle) => Ended::IdleTimeout,
        _ = tokio::time::sleep(bounds.total) => Ended::TotalTimeout,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            idle: Duration::from_secs(60),
            total: Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_a_close_ends_it() {
        let (mut client, mut near) = tokio::io::duplex(64);
        let (mut far, mut app) = tokio::io::duplex(64);
        let (_rev_tx, revoked) = watch::channel(false);
        let (_stop_tx, stop) = watch::channel(false);
        let task =
            tokio::spawn(
                async move { forward(&mut near, &mut far, bounds(), revoked, stop).await },
            );
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        app.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        app.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        drop(client);
        drop(app);
        assert_eq!(task.await.unwrap(), Ended::Closed);
    }

    #[tokio::test]
    async fn a_revocation_ends_an_open_connection_at_once() {
        let (_client, mut near) = tokio::io::duplex(64);
        let (mut far, _app) = tokio::io::duplex(64);
        let (rev_tx, revoked) = watch::channel(false);
        let (_stop_tx, stop) = watch::channel(false);
        let task =
            tokio::spawn(
                async move { forward(&mut near, &mut far, bounds(), revoked, stop).await },
            );
        rev_tx.send_replace(true);
        assert_eq!(task.await.unwrap(), Ended::Revoked);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_ends_and_traffic_keeps_it_alive() {
        let (mut client, mut near) = tokio::io::duplex(64);
        let (mut far, mut app) = tokio::io::duplex(64);
        let (_rev_tx, revoked) = watch::channel(false);
        let (_stop_tx, stop) = watch::channel(false);
        let b = Bounds {
            idle: Duration::from_secs(10),
            total: Duration::from_secs(3600),
        };
        let task =
            tokio::spawn(async move { forward(&mut near, &mut far, b, revoked, stop).await });
        // traffic every 6 s (under the idle timeout) for 30 s
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            app.read_exact(&mut one).await.unwrap();
        }
        assert!(!task.is_finished());
        assert_eq!(task.await.unwrap(), Ended::IdleTimeout);
    }
}
