//! Reading a connection's ClientHello without terminating it: rustls' `Acceptor` (through
//! tokio-rustls' `LazyConfigAcceptor`) parses it, and a [`Recorder`] keeps the raw bytes
//! read so that passthrough can replay them to the app untouched.
//!
//! Bounds: the whole read runs under a deadline (the hello timeout) and the recorder
//! refuses more than `max_len` bytes, so a client that trickles or inflates its hello
//! holds a connection slot for at most the timeout and a buffer of at most `max_len`.
//! A malformed hello is answered by rustls' own alert; the caller answers the other
//! refusals with [`alert`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::server::Accepted;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;

/// TLS alert descriptions the gateway sends (RFC 8446 §6).
pub mod alerts {
    /// `handshake_failure` (40): an oversized ClientHello.
    pub const HANDSHAKE_FAILURE: u8 = 40;
    /// `access_denied` (49): the app's port policy refuses the port, or its connection
    /// limit is reached.
    pub const ACCESS_DENIED: u8 = 49;
    /// `internal_error` (80): no backend answered (passthrough), or the gateway cannot
    /// vouch for its policy right now.
    pub const INTERNAL_ERROR: u8 = 80;
    /// `unrecognized_name` (112): no SNI, or a name this gateway does not route.
    pub const UNRECOGNIZED_NAME: u8 = 112;
}

/// A fatal TLS alert record (plaintext, as before any handshake): content type 21,
/// legacy version 3.3, length 2, level fatal, `description`.
pub fn alert(description: u8) -> [u8; 7] {
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

/// After an alert, how long what the client still sends is read and dropped before the
/// socket closes (closing with unread data would reset the connection, and the client
/// could lose the alert).
pub const LINGER: Duration = Duration::from_millis(200);
/// At most this much of it.
const MAX_LINGER_BYTES: usize = 64 * 1024;

/// Send a fatal alert and close (after [`LINGER`]); errors are irrelevant (the peer may
/// be gone).
pub(crate) async fn send_alert<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, description: u8) {
    if stream.write_all(&alert(description)).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    drain(stream, &mut [0u8; 4096], MAX_LINGER_BYTES, LINGER).await;
}

/// Read and drop what the peer still sends, up to `max` bytes or for `within`, whichever
/// ends first (or until EOF or an error), through `buf`, so that closing does not reset
/// a connection whose peer has not read the last thing written to it yet.
pub(crate) async fn drain<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    max: usize,
    within: Duration,
) {
    let mut drained = 0;
    let _ = tokio::time::timeout(within, async {
        while drained < max {
            match stream.read(buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Why no ClientHello came.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// It did not arrive within the hello timeout.
    #[error("no ClientHello within {0:?}")]
    Timeout(Duration),
    /// More than the allowed bytes arrived before a complete ClientHello.
    #[error("ClientHello larger than {0} bytes")]
    TooLarge(usize),
    /// It is not a TLS ClientHello (rustls' reason; rustls sent its alert).
    #[error("malformed ClientHello: {0}")]
    Malformed(String),
    /// The client closed first.
    #[error("connection closed before a ClientHello")]
    Closed,
    /// Reading failed.
    #[error("reading the ClientHello: {0}")]
    Io(#[source] io::Error),
}

impl HelloError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            HelloError::Timeout(_) => "hello_timeout",
            HelloError::TooLarge(_) => "hello_too_large",
            HelloError::Malformed(_) => "hello_malformed",
            HelloError::Closed | HelloError::Io(_) => "hello_closed",
        }
    }
}

/// The refusal the recorder raises past its bound (carried inside an `io::Error`).
#[derive(Debug)]
struct OverBound(usize);

impl std::fmt::Display for OverBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientHello larger than {} bytes", self.0)
    }
}

impl std::error::Error for OverBound {}

/// A stream that keeps a copy of everything read from it, up to `max` bytes (more is an
/// error). Writes pass through (rustls writes its alert through it).
#[derive(Debug)]
pub(crate) struct Recorder<S> {
    inner: S,
    seen: Vec<u8>,
    max: usize,
}

impl<S> Recorder<S> {
    fn new(inner: S, max: usize) -> Self {
        Recorder {
            inner,
            seen: Vec::with_capacity(max.min(2048)),
            max,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                // The read is bounded by rustls' own buffer; past the bound, refuse.
                if this.seen.len() + new.len() > this.max {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        OverBound(this.max),
                    )));
                }
                this.seen.extend_from_slice(new);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A ClientHello read off a connection.
pub(crate) struct Hello {
    /// rustls' parsed hello, ready to continue the handshake.
    pub accepted: Accepted,
    /// The connection (nothing read from it is lost: what rustls consumed is in
    /// `accepted`, and a copy in `raw`).
    pub stream: TcpStream,
    /// Every byte read so far, for passthrough.
    pub raw: Vec<u8>,
}

impl Hello {
    /// The SNI, if the client sent one.
    pub fn server_name(&self) -> Option<String> {
        self.accepted
            .client_hello()
            .server_name()
            .map(str::to_owned)
    }
}

/// Read a ClientHello from `stream` within `timeout`, at most `max_len` bytes. On error
/// the stream is handed back (when still open) so the caller can answer with an alert.
pub(crate) async fn read_hello(
    stream: TcpStream,
    max_len: usize,
    timeout: Duration,
) -> Result<Hello, (HelloError, Option<TcpStream>)> {
    let acceptor = LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        Recorder::new(stream, max_len),
    );
    tokio::pin!(acceptor);
    let result = tokio::time::timeout(timeout, acceptor.as_mut()).await;
    let err = match result {
        Ok(Ok(start)) => {
            let Recorder { inner, seen, .. } = start.io;
            return Ok(Hello {
                accepted: start.accepted,
                stream: inner,
                raw: seen,
            });
        }
        Err(_) => HelloError::Timeout(timeout),
        Ok(Err(e)) => classify(e),
    };
    let stream = acceptor.take_io().map(|r| r.inner);
    Err((err, stream))
}

fn classify(e: io::Error) -> HelloError {
    if let Some(over) = e.get_ref().and_then(|i| i.downcast_ref::<OverBound>()) {
        return HelloError::TooLarge(over.0);
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return HelloError::Closed;
    }
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return HelloError::Malformed(tls.to_string());
    }
    HelloError::Io(e)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls_pki_types::ServerName;
    use tokio::net::TcpListener;

    use super::*;

    /// A rustls client sending a real ClientHello for `name` to `addr` (the handshake
    /// never completes: the test only reads the hello).
    fn client_hello_to(
        addr: std::net::SocketAddr,
        name: &'static str,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                cairn_attestation::PossessionServerVerifier::new(),
            ))
            .with_no_client_auth();
            let tcp = TcpStream::connect(addr).await.unwrap();
            let _ = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from(name).unwrap(), tcp)
                .await;
        })
    }

    async fn pair() -> (TcpListener, std::net::SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    #[tokio::test]
    async fn a_real_hello_gives_its_sni_and_raw_bytes_that_replay_to_the_same_hello() {
        let (l, addr) = pair().await;
        let client = client_hello_to(addr, "app.example.com");
        let (s, _) = l.accept().await.unwrap();
        let hello = read_hello(s, 16 * 1024, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(hello.server_name().as_deref(), Some("app.example.com"));
        assert_eq!(hello.raw[0], 0x16, "a handshake record");
        // the recorded bytes are the whole hello: a fresh acceptor reads the same SNI
        let mut replay = rustls::server::Acceptor::default();
        replay.read_tls(&mut hello.raw.as_slice()).unwrap();
        let accepted = replay.accept().map_err(|(e, _)| e).unwrap().unwrap();
        assert_eq!(
            accepted.client_hello().server_name(),
            Some("app.example.com")
        );
        client.abort();
    }

    #[tokio::test]
    async fn garbage_a_closed_peer_and_an_oversized_hello_are_told_apart() {
        let (l, addr) = pair().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let (e, _) = read_hello(s, 16 * 1024, Duration::from_secs(10))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, HelloError::Malformed(_)), "{e}");

        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        drop(c);
        let (e, _) = read_hello(s, 16 * 1024, Duration::from_secs(10))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, HelloError::Closed), "{e}");

        // a handshake record announcing a 64 KiB hello, fed past a 1 KiB bound
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let mut record = vec![0x16, 0x03, 0x01, 0x10, 0x00, 0x01, 0x00, 0xff, 0xff];
        record.resize(5 + 0x1000, 0x41);
        c.write_all(&record).await.unwrap();
        let (e, stream) = read_hello(s, 1024, Duration::from_secs(10))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, HelloError::TooLarge(1024)), "{e}");
        assert!(stream.is_some(), "handed back for the alert");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_hello_times_out() {
        let (l, addr) = pair().await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        c.write_all(&[0x16, 0x03]).await.unwrap();
        let (e, _) = read_hello(s, 16 * 1024, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, HelloError::Timeout(_)), "{e}");
    }

    #[test]
    fn alerts_are_fatal_plaintext_records() {
        assert_eq!(
            alert(alerts::UNRECOGNIZED_NAME),
            [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112]
        );
    }
}
