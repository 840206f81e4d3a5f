//! TLS for the sync link: TLS 1.3 only, rustls with the ring provider only, and on both sides
//! a verifier that accepts exactly one certificate — the peer's, pinned by its SHA-256
//! fingerprint in `node.sync.peer_fingerprint`. No CA, no name, no validity period is
//! consulted (the certificate is self-signed and trusted because it is the pinned one, as an
//! SSH host key is), but the handshake signature is still verified with the provider's
//! algorithms, so only the holder of the pinned certificate's key gets through.

use crate::identity::{Fingerprint, Identity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The ALPN name of the sync link: nothing else is spoken on it.
pub const ALPN: &[u8] = b"tandem-sync";

/// The server name the dialing side asks for (never checked: the certificate is pinned).
pub const SERVER_NAME: &str = "tandem-sync-peer";

/// The certificate a refused peer presented.
#[derive(Debug, thiserror::Error)]
#[error("certificate {got} is not the pinned peer certificate {want}")]
pub struct PinMismatch {
    pub got: Fingerprint,
    pub want: Fingerprint,
}

/// Finds a [`PinMismatch`] in a handshake error.
pub fn pin_mismatch(e: &std::io::Error) -> Option<&PinMismatch> {
    let tls = e.get_ref()?.downcast_ref::<Error>()?;
    match tls {
        Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<PinMismatch>()
        }
        _ => None,
    }
}

#[derive(Debug)]
struct Pin {
    want: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
    refused: Arc<AtomicU64>,
}

impl Pin {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), Error> {
        let got = Fingerprint::of(end_entity);
        // Both values are public (a certificate hash); no need for constant time.
        if got == self.want {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch {
                got,
                want: self.want,
            })),
        )))
    }
}

/// The dialing side's check of the listening peer.
#[derive(Debug)]
pub struct PinnedServerVerifier(Pin);

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.0
            .check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // TLS 1.2 is never negotiated on this link.
        Err(Error::General("the sync link speaks TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms.supported_schemes()
    }
}

/// The listening side's check of the dialing peer: a client certificate is required.
#[derive(Debug)]
pub struct PinnedClientVerifier(Pin);

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.0
            .check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("the sync link speaks TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms.supported_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pin(peer: Fingerprint, refused: &Arc<AtomicU64>) -> Pin {
    Pin {
        want: peer,
        algorithms: provider().signature_verification_algorithms,
        refused: refused.clone(),
    }
}

/// The listening side's TLS config: this box's certificate, the peer's pinned.
pub fn server_config(
    identity: &Identity,
    peer: Fingerprint,
    refused: &Arc<AtomicU64>,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PinnedClientVerifier(pin(peer, refused))))
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // One long-lived connection: nothing to resume.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The dialing side's TLS config.
pub fn client_config(
    identity: &Identity,
    peer: Fingerprint,
    refused: &Arc<AtomicU64>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier(pin(peer, refused))))
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}
