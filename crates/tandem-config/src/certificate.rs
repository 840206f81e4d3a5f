//! Certificates and keys for the VIPs. They are part of the shared config, so both boxes serve
//! the same certificate; files named in the YAML are read when the config is loaded and stored
//! inline in the committed version.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Unique name, used by `services[].tls.certificates` and `pools[].tls.ca`.
    pub name: String,
    /// The certificate chain in PEM, leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_pem: Option<String>,
    /// The private key in PEM (PKCS#8, PKCS#1 or SEC1). Left out for a CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<String>,
    /// Read the chain from this file instead (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Read the key from this file instead (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

// Keys must never end up in logs.
impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("name", &self.name)
            .field("has_key", &self.key_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// The parsed chain. Only valid after validation, which inlines files and checks the PEM.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.cert_pem
            .as_deref()
            .map(|pem| parse_chain(pem).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The parsed private key, if any.
    pub fn key(&self) -> Option<PrivateKeyDer<'static>> {
        self.key_pem.as_deref().and_then(|pem| parse_key(pem).ok())
    }
}

pub(crate) fn parse_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate PEM cannot be read ({e})"))?;
    if chain.is_empty() {
        return Err("no `-----BEGIN CERTIFICATE-----` block found".to_owned());
    }
    Ok(chain)
}

pub(crate) fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("the private key PEM cannot be read ({e})"))
}
