//! The box's own sync identity: an ECDSA P-256 key and a self-signed certificate made at
//! first boot under `/config/sync/`. The sync link (issue 4) pins each box's certificate in
//! the peer's config by its SHA-256 fingerprint, which both consoles show so the operator can
//! compare them.

use std::path::{Path, PathBuf};
use tandem_config::store::write_atomic;

pub struct Identity {
    pub dir: PathBuf,
    /// Hex SHA-256 of the certificate's DER encoding.
    pub fingerprint: String,
}

impl Identity {
    pub fn key_file(dir: &Path) -> PathBuf {
        dir.join("key.pem")
    }
    pub fn cert_file(dir: &Path) -> PathBuf {
        dir.join("cert.pem")
    }
    pub fn der_file(dir: &Path) -> PathBuf {
        dir.join("cert.der")
    }

    /// Loads the identity in `dir`, or makes one if there is none.
    pub fn ensure(dir: &Path) -> anyhow::Result<Identity> {
        if let Some(id) = Identity::load(dir)? {
            return Ok(id);
        }
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Tandem sync identity");
        let cert = params.self_signed(&key)?;
        // Key first: a certificate on disk always has its key.
        write_atomic(&Identity::key_file(dir), key.serialize_pem().as_bytes())?;
        std::fs::set_permissions(
            Identity::key_file(dir),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        write_atomic(&Identity::cert_file(dir), cert.pem().as_bytes())?;
        write_atomic(&Identity::der_file(dir), cert.der())?;
        Ok(Identity {
            dir: dir.to_owned(),
            fingerprint: fingerprint(cert.der()),
        })
    }

    pub fn load(dir: &Path) -> anyhow::Result<Option<Identity>> {
        match std::fs::read(Identity::der_file(dir)) {
            Ok(der) if Identity::key_file(dir).exists() => Ok(Some(Identity {
                dir: dir.to_owned(),
                fingerprint: fingerprint(&der),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let sync = dir.path().join("sync");
        let a = Identity::ensure(&sync).unwrap();
        assert_eq!(a.fingerprint.len(), 64);
        let b = Identity::ensure(&sync).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        let key = std::fs::read_to_string(Identity::key_file(&sync)).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(Identity::key_file(&sync))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
}
