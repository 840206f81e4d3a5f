//! The certificates page: what each VIP certificate says (subject, names, expiry) and new
//! keys with their CSR. A CSR's key waits in `<state-dir>/admin/pending-keys/NAME.pem` (mode
//! 0600, this box only) until the signed certificate is uploaded under the same name; then the
//! pair goes into the shared config together.

use serde::Serialize;
use std::path::{Path, PathBuf};
use x509_parser::prelude::*;

/// Certificates expiring within this are flagged.
pub const WARN_DAYS: i64 = 30;

#[derive(Clone, Debug, Serialize)]
pub struct CertView {
    pub name: String,
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_after: String,
    pub not_after_unix: i64,
    pub days_left: i64,
    /// `ok`, `expiring` (within 30 days) or `expired`.
    pub status: String,
    pub has_key: bool,
    pub chain_len: usize,
    pub problem: Option<String>,
}

/// Reads the leaf of a PEM chain.
pub fn describe(name: &str, cert_pem: Option<&str>, has_key: bool, now_unix: i64) -> CertView {
    let mut v = CertView {
        name: name.to_owned(),
        subject: String::new(),
        issuer: String::new(),
        names: Vec::new(),
        not_after: String::new(),
        not_after_unix: 0,
        days_left: 0,
        status: "unknown".into(),
        has_key,
        chain_len: 0,
        problem: None,
    };
    let Some(pem) = cert_pem else {
        v.problem = Some("no certificate".into());
        return v;
    };
    let blocks: Vec<_> = Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .collect();
    v.chain_len = blocks.len();
    let Some(first) = blocks.first() else {
        v.problem = Some("no certificate block".into());
        return v;
    };
    match first.parse_x509() {
        Ok(x) => {
            v.subject = x.subject().to_string();
            v.issuer = x.issuer().to_string();
            if let Ok(Some(san)) = x.subject_alternative_name() {
                for n in &san.value.general_names {
                    match n {
                        GeneralName::DNSName(d) => v.names.push((*d).to_owned()),
                        GeneralName::IPAddress(b) => v.names.push(ip_text(b)),
                        _ => {}
                    }
                }
            }
            let t = x.validity().not_after;
            v.not_after_unix = t.timestamp();
            v.not_after = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.timestamp().max(0) as u64),
            )
            .to_string();
            v.days_left = (v.not_after_unix - now_unix).div_euclid(86_400);
            v.status = if v.not_after_unix <= now_unix {
                "expired"
            } else if v.not_after_unix - now_unix < WARN_DAYS * 86_400 {
                "expiring"
            } else {
                "ok"
            }
            .into();
        }
        Err(e) => v.problem = Some(format!("cannot read the certificate: {e}")),
    }
    v
}

fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let a: [u8; 16] = b.try_into().unwrap_or([0; 16]);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => hex::encode(b),
    }
}

fn pending_dir(dir: &Path) -> PathBuf {
    dir.join("pending-keys")
}

fn is_safe_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new ECDSA P-256 key and a CSR for `names` (the first is the common name). The key is
/// kept under the state directory until the certificate comes back.
pub fn generate_csr(dir: &Path, name: &str, names: &[String]) -> Result<String, String> {
    if !is_safe_name(name) {
        return Err(format!(
            "`{name}` is not a valid certificate name: use letters, digits, `-` and `_`"
        ));
    }
    if names.is_empty() {
        return Err("give at least one DNS name".into());
    }
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0].clone());
    let csr = params
        .serialize_request(&key)
        .map_err(|e| e.to_string())?
        .pem()
        .map_err(|e| e.to_string())?;
    let pdir = pending_dir(dir);
    std::fs::create_dir_all(&pdir).map_err(|e| e.to_string())?;
    let path = pdir.join(format!("{name}.pem"));
    write_private(&path, key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
    Ok(csr)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn pending_key(dir: &Path, name: &str) -> Option<String> {
    if !is_safe_name(name) {
        return None;
    }
    std::fs::read_to_string(pending_dir(dir).join(format!("{name}.pem"))).ok()
}

pub fn remove_pending(dir: &Path, name: &str) {
    if is_safe_name(name) {
        let _ = std::fs::remove_file(pending_dir(dir).join(format!("{name}.pem")));
    }
}

/// The names of CSRs waiting for their certificate.
pub fn pending(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pending_dir(dir))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pem"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_valid_for(days: i64) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["www.example.org".into()]).unwrap();
        let now = std::time::SystemTime::now();
        p.not_before = (now - std::time::Duration::from_secs(86_400)).into();
        p.not_after = if days >= 0 {
            now + std::time::Duration::from_secs(days as u64 * 86_400 + 3600)
        } else {
            now - std::time::Duration::from_secs(3600)
        }
        .into();
        p.self_signed(&key).unwrap().pem()
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn expiry_is_flagged_thirty_days_ahead() {
        let v = describe("www", Some(&cert_valid_for(90)), true, now());
        assert_eq!(v.status, "ok");
        assert_eq!(v.names, ["www.example.org"]);
        assert!((89..=90).contains(&v.days_left), "{}", v.days_left);
        assert_eq!(
            describe("www", Some(&cert_valid_for(10)), true, now()).status,
            "expiring"
        );
        assert_eq!(
            describe("www", Some(&cert_valid_for(-1)), true, now()).status,
            "expired"
        );
        assert!(describe("x", Some("junk"), false, now()).problem.is_some());
    }

    #[test]
    fn a_csr_keeps_its_key_until_the_certificate_comes() {
        let dir = tempfile::tempdir().unwrap();
        let csr = generate_csr(dir.path(), "www", &["www.example.org".into()]).unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        assert_eq!(pending(dir.path()), ["www"]);
        assert!(
            pending_key(dir.path(), "www")
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert!(generate_csr(dir.path(), "../x", &["a".into()]).is_err());
        remove_pending(dir.path(), "www");
        assert!(pending(dir.path()).is_empty());
    }
}
