//! This box's sync identity: a key and a self-signed certificate, made at first start and kept
//! in the state directory (or named by `node.sync.cert_file`/`key_file`), and its SHA-256
//! fingerprint, which the peer pins and `tandemctl status` and the serial console show.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(cert: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Fingerprint(out)
    }

    /// Parses `sha256:` and 64 hex digits (see `tandem_config::parse_fingerprint`).
    pub fn parse(text: &str) -> Option<Fingerprint> {
        tandem_config::parse_fingerprint(text).map(Fingerprint)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&tandem_config::format_fingerprint(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A certificate and its key.
#[derive(Debug)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub fingerprint: Fingerprint,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl Identity {
    /// Where the generated identity lives under the state directory.
    pub fn default_paths(state_dir: &Path) -> (PathBuf, PathBuf) {
        let dir = state_dir.join("sync");
        (dir.join("sync.crt"), dir.join("sync.key"))
    }

    /// The identity kept under `state_dir/sync/`, made (and written atomically, key mode
    /// 0600) if there is none.
    pub fn load_or_generate(state_dir: &Path, node: &str) -> io::Result<Identity> {
        let (cert_path, key_path) = Self::default_paths(state_dir);
        if cert_path.exists() || key_path.exists() {
            return Self::from_files(&cert_path, &key_path);
        }
        let (id, cert_pem, key_pem) = Self::generate_pem(node)?;
        fs::create_dir_all(cert_path.parent().expect("a directory"))?;
        tandem_config::store::write_atomic_with_mode(&key_path, key_pem.as_bytes(), 0o600)?;
        tandem_config::store::write_atomic_with_mode(&cert_path, cert_pem.as_bytes(), 0o644)?;
        tracing::info!(path = %cert_path.display(), fingerprint = %id.fingerprint, "sync: generated this box's certificate");
        Ok(id)
    }

    /// An identity from PEM files (a certificate, its key).
    pub fn from_files(cert_path: &Path, key_path: &Path) -> io::Result<Identity> {
        let bad = |path: &Path, what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        };
        let cert_pem = fs::read(cert_path)?;
        let key_pem = fs::read(key_path)?;
        let cert = CertificateDer::pem_slice_iter(&cert_pem)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| bad(cert_path, "no PEM certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| bad(key_path, "no PEM private key"))?;
        let fingerprint = Fingerprint::of(&cert);
        Ok(Identity {
            cert,
            key,
            fingerprint,
        })
    }

    /// A fresh ECDSA P-256 key and a self-signed certificate naming `node`, in memory.
    pub fn generate(node: &str) -> io::Result<Identity> {
        Self::generate_pem(node).map(|(id, _, _)| id)
    }

    /// The same, with the certificate's and the key's PEM text.
    pub fn generate_pem(node: &str) -> io::Result<(Identity, String, String)> {
        let invalid =
            |e: rcgen::Error| io::Error::other(format!("cannot make the sync certificate: {e}"));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(invalid)?;
        let name = if node.is_empty() { "tandem" } else { node };
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(invalid)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("Tandem sync {name}"));
        // Pinned, not chained: the validity period is long and not what makes it trusted.
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let cert = params.self_signed(&key).map_err(invalid)?;
        let der = cert.der().clone();
        let id = Identity {
            fingerprint: Fingerprint::of(&der),
            cert: der,
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        };
        Ok((id, cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_made_once_and_reloaded_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_generate(dir.path(), "lb-a").unwrap();
        let again = Identity::load_or_generate(dir.path(), "lb-a").unwrap();
        assert_eq!(a.fingerprint, again.fingerprint);
        assert_eq!(a.cert, again.cert);
        let (_, key_path) = Identity::default_paths(dir.path());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = a.fingerprint.to_string();
        assert!(text.starts_with("sha256:") && text.len() == 71, "{text}");
        assert_eq!(Fingerprint::parse(&text), Some(a.fingerprint));
        assert_ne!(
            Identity::generate("lb-a").unwrap().fingerprint,
            a.fingerprint
        );
    }
}
