//! Certificate selection by SNI: the client's server name is matched against the DNS names in
//! each certificate's subjectAltName (exact, or a `*.domain` wildcard covering exactly one
//! label, RFC 6125 §6.4.3); the first certificate of the service is the default for clients
//! that send no name or an unknown one. Among certificates naming the same host, the first
//! listed wins; an exact name beats a wildcard.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
    exact: HashMap<String, usize>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<String, usize>,
}

impl SniResolver {
    /// `certs` in the service's order; the first is the default.
    pub fn new(certs: Vec<Arc<CertifiedKey>>) -> Result<Self, String> {
        if certs.is_empty() {
            return Err("no certificate".into());
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, ck) in certs.iter().enumerate() {
            for name in dns_names(ck)? {
                let name = normalize(&name);
                match name.strip_prefix("*.") {
                    Some(domain) => wildcard.entry(domain.to_owned()).or_insert(i),
                    None => exact.entry(name).or_insert(i),
                };
            }
        }
        Ok(SniResolver {
            certs,
            exact,
            wildcard,
        })
    }

    /// The index of the certificate for `server_name`.
    pub fn select(&self, server_name: Option<&str>) -> usize {
        let Some(name) = server_name.map(normalize) else {
            return 0;
        };
        if let Some(i) = self.exact.get(&name) {
            return *i;
        }
        match name.split_once('.') {
            Some((label, domain)) if !label.is_empty() => {
                self.wildcard.get(domain).copied().unwrap_or(0)
            }
            _ => 0,
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certs[self.select(hello.server_name())].clone())
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The SAN DNS names (wildcards included) of the leaf certificate.
pub fn dns_names(ck: &CertifiedKey) -> Result<Vec<String>, String> {
    let leaf = ck
        .end_entity_cert()
        .map_err(|e| format!("no leaf certificate ({e})"))?;
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("the certificate cannot be read ({e})"))?;
    Ok(cert.valid_dns_names().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn certified(names: &[&str]) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = rustls::crypto::ring::default_provider();
        Arc::new(CertifiedKey::from_der(vec![cert.der().clone()], der, &provider).unwrap())
    }

    #[test]
    fn exact_wildcard_and_default() {
        let r = SniResolver::new(vec![
            certified(&["default.example"]),
            certified(&["www.example.org", "example.org"]),
            certified(&["*.example.org"]),
            certified(&["*.shop.example.org", "api.example.org"]),
        ])
        .unwrap();
        assert_eq!(r.select(None), 0);
        assert_eq!(r.select(Some("unknown.test")), 0);
        assert_eq!(r.select(Some("default.example")), 0);
        assert_eq!(r.select(Some("www.example.org")), 1);
        assert_eq!(r.select(Some("WWW.Example.ORG.")), 1);
        assert_eq!(r.select(Some("example.org")), 1);
        // An exact name beats a wildcard listed earlier.
        assert_eq!(r.select(Some("api.example.org")), 3);
        assert_eq!(r.select(Some("mail.example.org")), 2);
        // A wildcard covers one label only.
        assert_eq!(r.select(Some("a.b.example.org")), 0);
        assert_eq!(r.select(Some("cart.shop.example.org")), 3);
        assert_eq!(r.select(Some(".example.org")), 0);
    }

    #[test]
    fn reads_san_dns_names() {
        let names = dns_names(&certified(&["a.example", "*.b.example", "192.0.2.1"])).unwrap();
        assert_eq!(names, ["a.example", "*.b.example"]);
    }
}
