//! TLS termination checked with a real rustls client: SNI, versions, ALPN, session resumption
//! across key rotation and across boxes (exported and imported ticket keys), generated
//! certificates.

mod common;

use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tandem_dataplane::{Dataplane, DataplaneOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Accepts any certificate (the tests look at what was presented instead).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

struct Seen {
    resumed: bool,
    leaf_names: Vec<String>,
    leaf: Vec<u8>,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
    response: String,
}

/// One HTTPS exchange: handshake, a request, the whole response (a 502: the backend is a
/// TCP echo server, not an HTTP server).
async fn get(cfg: &Arc<ClientConfig>, addr: SocketAddr, sni: &str) -> std::io::Result<Seen> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = TlsConnector::from(cfg.clone()).connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates().unwrap()[0].clone();
    let leaf_names = webpki::EndEntityCert::try_from(&leaf)
        .unwrap()
        .valid_dns_names()
        .map(str::to_owned)
        .collect();
    let mut seen = Seen {
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        leaf_names,
        leaf: leaf.to_vec(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
        response: String::new(),
    };
    if seen.alpn.as_deref() != Some(b"h2") {
        tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
    } else {
        // No HTTP/2 preface: our close ends the connection at once.
        tls.shutdown().await?;
    }
    // Reading to the end also takes in the TLS 1.3 session tickets sent after the handshake.
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    seen.response = String::from_utf8_lossy(&buf).into_owned();
    Ok(seen)
}

fn cert_yaml(name: &str, sans: &[&str]) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let block = |pem: String| {
        pem.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    format!(
        "  - name: {name}\n    cert_pem: |\n{}    key_pem: |\n{}",
        block(cert.pem()),
        block(key.serialize_pem())
    )
}

fn https_config(port: u16, backend: SocketAddr, tls: &str, certs: &str) -> String {
    format!(
        "services:\n  - name: https\n    listen: \"127.0.0.1:{port}\"\n    protocol: https\n    pool: p\n    tls: {tls}\npools:\n  - {{ name: p, servers: [{{ id: a, address: \"{backend}\" }}] }}\ncertificates:\n{certs}"
    )
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let backend = Backend::tcp("a").await;
    let port = free_port();
    let certs = [
        cert_yaml("main", &["www.example.org"]),
        cert_yaml("wild", &["*.shop.example"]),
        cert_yaml("api", &["api.example.net", "api2.example.net"]),
    ]
    .concat();
    let _r = start(&https_config(
        port,
        backend.addr,
        "{ certificates: [main, wild, api] }",
        &certs,
    ))
    .await;
    let c = client(&[&rustls::version::TLS13], &[]);
    for (sni, expect) in [
        ("www.example.org", "www.example.org"),
        ("cart.shop.example", "*.shop.example"),
        ("API2.example.net", "api.example.net"),
        ("unknown.example", "www.example.org"),
        ("a.b.shop.example", "www.example.org"),
    ] {
        let seen = get(&c, addr(port), sni).await.unwrap();
        assert_eq!(seen.leaf_names[0], expect, "for SNI {sni}");
    }
    // An IP address sends no SNI: the default certificate.
    let seen = get(&c, addr(port), "127.0.0.1").await.unwrap();
    assert_eq!(seen.leaf_names, ["www.example.org"]);
    assert!(
        seen.response.starts_with("HTTP/1.1 502 "),
        "{}",
        seen.response
    );
}

/// A ClientHello without the supported_versions extension, as TLS 1.0–1.2 clients send it,
/// offering ECDHE with AES-GCM (which the service supports) and the usual extensions.
fn legacy_client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x06, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut ext = Vec::new();
    let name = b"www.example.org";
    let mut sni = vec![0, (name.len() + 3) as u8, 0, 0, name.len() as u8];
    sni.extend_from_slice(name);
    for (kind, data) in [
        (0x0000u16, sni),
        (0x000a, vec![0, 4, 0x00, 0x1d, 0x00, 0x17]), // supported_groups
        (0x000b, vec![1, 0]),                         // ec_point_formats
        (0x000d, vec![0, 4, 0x04, 0x03, 0x08, 0x04]), // signature_algorithms
    ] {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(&data);
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

async fn first_record(port: u16, hello: &[u8]) -> [u8; 7] {
    let mut s = TcpStream::connect(addr(port)).await.unwrap();
    s.write_all(hello).await.unwrap();
    let mut reply = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_versions_are_refused() {
    let backend = Backend::tcp("a").await;
    let port = free_port();
    let certs = cert_yaml("main", &["www.example.org"]);
    let _r = start(&https_config(
        port,
        backend.addr,
        "{ certificates: [main] }",
        &certs,
    ))
    .await;
    // The same hello claiming TLS 1.2 gets a ServerHello: the version alone decides.
    let reply = first_record(port, &legacy_client_hello([3, 3])).await;
    assert_eq!(
        (reply[0], reply[5]),
        (0x16, 0x02),
        "a ServerHello for TLS 1.2"
    );
    for version in [[3, 1], [3, 2]] {
        let reply = first_record(port, &legacy_client_hello(version)).await;
        assert_eq!(reply[0], 0x15, "an alert record, for TLS {version:?}");
        assert_eq!(
            reply[5..7],
            [2, 70],
            "fatal protocol_version, for TLS {version:?}"
        );
    }
    // TLS 1.2 and 1.3 are fine.
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let seen = get(&client(&[v], &[]), addr(port), "www.example.org")
            .await
            .unwrap();
        assert_eq!(seen.version, Some(v.version));
    }

    // `min_version: "1.3"` refuses TLS 1.2.
    let port13 = free_port();
    let _r13 = start(&https_config(
        port13,
        backend.addr,
        "{ certificates: [main], min_version: \"1.3\" }",
        &certs,
    ))
    .await;
    assert!(
        get(
            &client(&[&rustls::version::TLS12], &[]),
            addr(port13),
            "www.example.org"
        )
        .await
        .is_err()
    );
    assert!(
        get(
            &client(&[&rustls::version::TLS13], &[]),
            addr(port13),
            "www.example.org"
        )
        .await
        .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_offers_h2_only_when_enabled() {
    let backend = Backend::tcp("a").await;
    let certs = cert_yaml("main", &["www.example.org"]);
    let (on, off) = (free_port(), free_port());
    let _a = start(&https_config(
        on,
        backend.addr,
        "{ certificates: [main] }",
        &certs,
    ))
    .await;
    let _b = start(&https_config(
        off,
        backend.addr,
        "{ certificates: [main], http2: false }",
        &certs,
    ))
    .await;
    let c = client(&[&rustls::version::TLS13], &[b"h2", b"http/1.1"]);
    assert_eq!(
        get(&c, addr(on), "www.example.org")
            .await
            .unwrap()
            .alpn
            .as_deref(),
        Some(&b"h2"[..])
    );
    assert_eq!(
        get(&c, addr(off), "www.example.org")
            .await
            .unwrap()
            .alpn
            .as_deref(),
        Some(&b"http/1.1"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_also_after_a_key_rotation() {
    let backend = Backend::tcp("a").await;
    let port = free_port();
    let certs = cert_yaml("main", &["www.example.org"]);
    let r = start(&https_config(
        port,
        backend.addr,
        "{ certificates: [main] }",
        &certs,
    ))
    .await;
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let c = client(&[v], &[]);
        assert!(
            !get(&c, addr(port), "www.example.org")
                .await
                .unwrap()
                .resumed
        );
        assert!(
            get(&c, addr(port), "www.example.org")
                .await
                .unwrap()
                .resumed,
            "{v:?} resumes"
        );
        let before = r.dp.tickets().current_id();
        r.dp.tickets().rotate(tokio::time::Instant::now());
        assert_ne!(r.dp.tickets().current_id(), before);
        assert!(
            get(&c, addr(port), "www.example.org")
                .await
                .unwrap()
                .resumed,
            "{v:?} resumes after a rotation"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_from_one_box_resumes_on_the_peer_after_key_import() {
    let backend = Backend::tcp("a").await;
    let certs = cert_yaml("main", &["www.example.org"]);
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let active = start(&https_config(
        p1,
        backend.addr,
        "{ certificates: [main] }",
        &certs,
    ))
    .await;
    let passive = start(&https_config(
        p2,
        backend.addr,
        "{ certificates: [main] }",
        &certs,
    ))
    .await;
    let stranger = start(&https_config(
        p3,
        backend.addr,
        "{ certificates: [main] }",
        &certs,
    ))
    .await;
    passive.dp.tickets().import(&active.dp.tickets().export());

    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        // A box without the keys cannot resume the session (the test can fail).
        let c = client(&[v], &[]);
        assert!(!get(&c, addr(p1), "www.example.org").await.unwrap().resumed);
        assert!(
            !get(&c, addr(p3), "www.example.org").await.unwrap().resumed,
            "{v:?}: unknown key"
        );

        let c = client(&[v], &[]);
        assert!(!get(&c, addr(p1), "www.example.org").await.unwrap().resumed);
        assert!(
            get(&c, addr(p2), "www.example.org").await.unwrap().resumed,
            "{v:?}: the peer resumes"
        );
    }
    drop(stranger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_certificate_is_kept_across_restarts() {
    let backend = Backend::tcp("a").await;
    let port = free_port();
    let yaml = format!(
        "services:\n  - {{ name: https, listen: \"127.0.0.1:{port}\", protocol: https, pool: p }}\npools:\n  - {{ name: p, servers: [{{ id: a, address: \"{}\" }}] }}\n",
        backend.addr
    );
    let dir = tempfile::tempdir().unwrap();
    let c = client(&[&rustls::version::TLS13], &[]);
    let dp = Dataplane::start(shared(&yaml), DataplaneOptions::new(dir.path(), "box-a"))
        .await
        .unwrap();
    let first = get(&c, addr(port), "localhost").await.unwrap();
    assert!(first.leaf_names.contains(&"localhost".to_owned()));
    assert!(first.leaf_names.contains(&"box-a".to_owned()));
    dp.shutdown(Duration::from_millis(100)).await;
    drop(dp);

    let dp = Dataplane::start(shared(&yaml), DataplaneOptions::new(dir.path(), "box-a"))
        .await
        .unwrap();
    let second = get(&c, addr(port), "localhost").await.unwrap();
    assert_eq!(
        first.leaf, second.leaf,
        "the same certificate after a restart"
    );
    dp.shutdown(Duration::from_millis(100)).await;
}
