//! A self-signed ECDSA P-256 certificate for an HTTPS service that names none, for trying the
//! box out. It is made at first start and kept under `state_dir/tls/` (written to a temporary
//! file, synced, then renamed, so a power cut leaves either no file or a whole one), and reused
//! on later starts. Each box makes its own: a pair in production names shared certificates.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::io;
use std::path::Path;

/// The chain and key for `service`, from `state_dir` or newly made. `names`: SAN entries (DNS
/// names or IP addresses).
pub fn load_or_generate(
    state_dir: &Path,
    service: &str,
    names: &[String],
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let dir = state_dir.join("tls");
    let cert_path = dir.join(format!("{service}.self-signed.crt"));
    let key_path = dir.join(format!("{service}.self-signed.key"));
    if let (Ok(cert), Ok(key)) = (fs::read(&cert_path), fs::read(&key_path)) {
        let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&cert).collect();
        if let (Ok(chain), Ok(key)) = (chain, PrivateKeyDer::from_pem_slice(&key))
            && !chain.is_empty()
        {
            return Ok((chain, key));
        }
        tracing::warn!(path = %cert_path.display(), "unreadable self-signed certificate; making a new one");
    }
    let invalid =
        |e: rcgen::Error| io::Error::other(format!("cannot make a self-signed certificate: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(invalid)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(invalid)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Tandem self-signed ({service})"),
    );
    let cert = params.self_signed(&key).map_err(invalid)?;
    fs::create_dir_all(&dir)?;
    tandem_config::store::write_atomic_with_mode(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    tandem_config::store::write_atomic_with_mode(&cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(service, path = %cert_path.display(), "generated a self-signed certificate");
    Ok((
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (chain1, _) = load_or_generate(dir.path(), "https", &names).unwrap();
        let (chain2, _) = load_or_generate(dir.path(), "https", &names).unwrap();
        assert_eq!(chain1, chain2);
        let (other, _) = load_or_generate(dir.path(), "other", &names).unwrap();
        assert_ne!(chain1, other);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("tls/https.self-signed.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Only the two files per service, no temporary left behind.
        assert_eq!(fs::read_dir(dir.path().join("tls")).unwrap().count(), 4);
    }
}
