//! The rustls server configuration of an HTTPS service.
//!
//! - ring is the only crypto provider;
//! - TLS 1.3 and 1.2 (or 1.3 only, per `tls.min_version`): SSL 3.0, TLS 1.0 and 1.1 are refused;
//! - cipher suites: TLS 1.3's AES-GCM and ChaCha20-Poly1305 suites; for TLS 1.2 only ECDHE
//!   with AES-GCM or ChaCha20-Poly1305 (no CBC, no RSA key exchange, no static DH);
//! - the certificate chosen by SNI ([`super::sni`]), or a self-signed one when none is named;
//! - ALPN `h2`, `http/1.1` when `tls.http2` is on, else `http/1.1` only;
//! - resumption: stateless tickets from the shared [`TicketKeyRing`] (TLS 1.2 tickets and
//!   TLS 1.3 PSKs alike; one TLS 1.3 ticket per full handshake), plus a small per-box session
//!   cache for TLS 1.2 clients that do not do tickets.

use super::sni::SniResolver;
use super::ticket_keys::TicketKeyRing;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use tandem_config::{Service, SharedConfig, TlsVersion};

/// The cipher suites allowed.
pub const SUITES: [CipherSuite; 9] = [
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The ring provider restricted to [`SUITES`].
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.retain(|s| SUITES.contains(&s.suite()));
    Arc::new(p)
}

/// Builds the server config of `service` (an HTTPS service).
pub fn build(
    service: &Service,
    shared: &SharedConfig,
    state_dir: &Path,
    node_name: &str,
    tickets: &TicketKeyRing,
) -> Result<Arc<ServerConfig>, String> {
    let tls = service.tls.clone().unwrap_or_default();
    let provider = provider();
    let mut certs = Vec::new();
    for name in &tls.certificates {
        let c = shared
            .certificate(name)
            .ok_or_else(|| format!("no certificate named `{name}`"))?;
        let key = c
            .key()
            .ok_or_else(|| format!("certificate `{name}` has no usable private key"))?;
        certs.push(
            certified(c.chain(), key, &provider)
                .map_err(|e| format!("certificate `{name}`: {e}"))?,
        );
    }
    if certs.is_empty() {
        let mut names = vec!["localhost".to_owned(), node_name.to_owned()];
        if !service.listen.ip().is_unspecified() {
            names.push(service.listen.ip().to_string());
        }
        names.dedup();
        let (chain, key) = super::self_signed::load_or_generate(state_dir, &service.name, &names)
            .map_err(|e| {
            format!("self-signed certificate under {}: {e}", state_dir.display())
        })?;
        certs.push(certified(chain, key, &provider)?);
    }
    let resolver = SniResolver::new(certs)?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.ticketer = tickets.ticketer(&service.name);
    config.send_tls13_tickets = 1;
    config.session_storage = ServerSessionMemoryCache::new(4096);
    config.alpn_protocols = if tls.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config.ignore_client_order = false;
    Ok(Arc::new(config))
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| format!("the key does not fit the certificate ({e})"))
}
