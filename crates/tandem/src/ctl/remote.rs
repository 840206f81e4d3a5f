//! `tandemctl --api https://HOST:PORT --token TOKEN …`: the same commands over the REST API
//! of a box's management listener (`docs/console.md`), for automation away from the box. The
//! listener's certificate is self-signed unless replaced, so it is pinned by its SHA-256
//! (`--api-fingerprint`, shown on the console's Users page) or, knowingly, not checked
//! (`--insecure`).

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

pub struct Api {
    host: String,
    port: u16,
    token: String,
    pin: Option<[u8; 32]>,
}

impl Api {
    pub fn new(
        url: &str,
        token: &str,
        fingerprint: Option<&str>,
        insecure: bool,
    ) -> anyhow::Result<Api> {
        let rest = url
            .strip_prefix("https://")
            .context("--api takes an https:// URL, e.g. https://192.0.2.10:9443")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_matches(['[', ']']).to_owned(),
                p.parse().context("the port in --api")?,
            ),
            _ => (authority.trim_matches(['[', ']']).to_owned(), 443),
        };
        let pin = match fingerprint {
            Some(f) => Some(
                tandem_config::parse_fingerprint(f)
                    .context("--api-fingerprint takes sha256: and 64 hex digits")?,
            ),
            None if insecure => None,
            None => bail!(
                "give --api-fingerprint sha256:… (the console's Users page shows it) to pin the management certificate, or --insecure to skip the check"
            ),
        };
        Ok(Api {
            host,
            port,
            token: token.to_owned(),
            pin,
        })
    }

    /// One request; returns the status and the body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(u16, String)> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pin: self.pin,
                provider,
            }))
            .with_no_client_auth();
        let name = ServerName::try_from(self.host.clone())
            .unwrap_or_else(|_| ServerName::try_from("tandem").expect("a valid name"));
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port))
            .with_context(|| format!("cannot connect to {}:{}", self.host, self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            self.token,
            body.len()
        );
        tls.write_all(head.as_bytes())?;
        tls.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        match tls.read_to_end(&mut raw) {
            Ok(_) => {}
            // A peer that closes without close_notify after a complete answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e).context("reading the answer"),
        }
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP answer")?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("transfer-encoding:")
                && l.to_ascii_lowercase().contains("chunked")
        });
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[derive(Debug)]
struct Pinned {
    pin: Option<[u8; 32]>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) if <[u8; 32]>::from(Sha256::digest(end_entity.as_ref())) == pin => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(
                "the management certificate does not match --api-fingerprint".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Prints an API answer: the message or version of a success, the error (and each problem
/// with its path) of a refusal. Returns whether it succeeded.
pub fn print_answer(
    status: u16,
    body: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<bool> {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned()));
    if (200..300).contains(&status) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            writeln!(out, "{m}")?;
        } else if let Some(ver) = v.get("version").and_then(|m| m.as_str()) {
            writeln!(out, "committed version {ver}; it is running")?;
        } else {
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        return Ok(true);
    }
    let msg = v.get("error").and_then(|e| e.as_str()).unwrap_or(body);
    writeln!(err, "refused ({status}): {msg}")?;
    for d in v
        .get("diagnostics")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
    {
        writeln!(
            err,
            "`{}`: {} — {}",
            d["path"].as_str().unwrap_or(""),
            d["message"].as_str().unwrap_or(""),
            d["hint"].as_str().unwrap_or("")
        )?;
    }
    Ok(false)
}
