//! TLS from the box to the servers (re-encryption and TLS health checks): the client config a
//! pool's `tls` settings describe.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use tandem_config::{SharedConfig, UpstreamTls};

/// The client config for a pool's `tls` settings: the CA named in the config (or the Mozilla
/// roots), or no verification when `verify` is off. ALPN `http/1.1`.
pub fn client_config(
    tls: &UpstreamTls,
    shared: &SharedConfig,
) -> Result<Arc<ClientConfig>, String> {
    let provider = super::server_config::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let mut config = if !tls.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca {
            Some(name) => {
                let ca = shared
                    .certificate(name)
                    .ok_or_else(|| format!("no certificate named `{name}`"))?;
                for cert in ca.chain() {
                    roots
                        .add(cert)
                        .map_err(|e| format!("certificate `{name}` is not a usable CA ({e})"))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// For checks of servers whose pool has no `tls` settings: the handshake is checked, the
/// certificate is not.
pub fn unverified_client_config() -> Arc<ClientConfig> {
    client_config(
        &UpstreamTls {
            verify: false,
            ca: None,
            sni: None,
        },
        &SharedConfig::default(),
    )
    .expect("a client config without verification always builds")
}

/// The name sent by SNI and verified: the configured one, else the server's IP address.
pub fn server_name(tls: &UpstreamTls, server: SocketAddr) -> ServerName<'static> {
    tls.sni
        .as_deref()
        .and_then(|n| ServerName::try_from(n.to_owned()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(server.ip().into()))
}

/// Accepts any certificate but still checks the handshake signatures (so the peer holds the
/// key of the certificate it sent).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::Certificate;

    fn ca() -> Certificate {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Certificate {
            name: "internal-ca".into(),
            cert_pem: Some(cert.pem()),
            key_pem: None,
            cert_file: None,
            key_file: None,
        }
    }

    #[test]
    fn builds_from_config_ca_roots_or_no_verification() {
        let shared = SharedConfig {
            certificates: vec![ca()],
            ..Default::default()
        };
        let tls = |verify, ca: Option<&str>, sni: Option<&str>| UpstreamTls {
            verify,
            ca: ca.map(str::to_owned),
            sni: sni.map(str::to_owned),
        };
        let c = client_config(&tls(true, Some("internal-ca"), None), &shared).unwrap();
        assert_eq!(c.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(
            client_config(&tls(true, None, None), &shared).is_ok(),
            "Mozilla roots"
        );
        assert!(client_config(&tls(false, None, None), &shared).is_ok());
        let err = client_config(&tls(true, Some("missing"), None), &shared).unwrap_err();
        assert!(err.contains("missing"), "{err}");

        let server: SocketAddr = "10.0.1.11:8443".parse().unwrap();
        assert_eq!(
            server_name(&tls(true, None, Some("app.internal")), server),
            ServerName::try_from("app.internal").unwrap()
        );
        assert_eq!(
            server_name(&tls(true, None, None), server),
            ServerName::IpAddress(server.ip().into())
        );
    }
}
