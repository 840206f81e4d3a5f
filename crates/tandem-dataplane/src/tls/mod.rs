//! TLS termination on HTTPS services, and TLS towards servers.

pub mod self_signed;
pub mod server_config;
pub mod sni;
pub mod ticket_keys;
pub mod upstream;

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// What the handshake settled, for the HTTP engine and the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// The server name the client asked for.
    pub sni: Option<String>,
    /// The ALPN protocol chosen (`h2`, `http/1.1`), if any.
    pub alpn: Option<Vec<u8>>,
    pub version: Option<rustls::ProtocolVersion>,
    pub cipher: Option<rustls::CipherSuite>,
    /// Whether the session was resumed (ticket or session id) rather than fully negotiated.
    pub resumed: bool,
}

impl TlsInfo {
    pub fn is_h2(&self) -> bool {
        self.alpn.as_deref() == Some(b"h2")
    }
}

/// Runs the server handshake on `io`, giving up after `timeout`.
pub async fn accept_tls<IO: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &TlsAcceptor,
    io: IO,
    timeout: Duration,
) -> io::Result<(TlsStream<IO>, TlsInfo)> {
    let stream = tokio::time::timeout(timeout, acceptor.accept(io))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let (_, conn) = stream.get_ref();
    let info = TlsInfo {
        sni: conn.server_name().map(str::to_owned),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
        cipher: conn.negotiated_cipher_suite().map(|s| s.suite()),
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
    };
    Ok((stream, info))
}
