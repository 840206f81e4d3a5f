//! The manifest of a firmware update and its ed25519 signature.
//!
//! The manifest lists every payload file with its size and SHA-256, so one signature over the
//! manifest's exact bytes covers the whole update. The signature is checked before anything
//! else in the update is read or trusted. Keys: the builder keeps the private key (PKCS#8);
//! the image carries the public key (32 bytes, hex) in `/etc/tandem/firmware-signing.pub`.

use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The format of the manifest itself.
pub const FORMAT: u32 = 1;
pub const PRODUCT: &str = "tandem";

pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "manifest.sig";
pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRAMFS_FILE: &str = "initramfs.img";
/// The payload files every update carries, in archive order.
pub const PAYLOAD_FILES: [&str; 2] = [KERNEL_FILE, INITRAMFS_FILE];

/// Where the image keeps the public key updates are checked against.
pub const DEFAULT_PUBLIC_KEY: &str = "/etc/tandem/firmware-signing.pub";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub product: String,
    /// The firmware version, shown by `tandemctl firmware status` and the console.
    pub version: String,
    /// The config schema this firmware writes; it reads this one and the one before.
    pub config_schema: u32,
    /// Seconds since the Unix epoch, when the update was built.
    pub built_at: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// Hex SHA-256 of the file's content.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "the update's signature is not valid for any trusted key: the file was altered or was not signed by this product's builder"
    )]
    BadSignature,
    #[error("the signature file is not 64 bytes of hex")]
    SignatureFormat,
    #[error("the manifest is malformed: {0}")]
    Malformed(String),
    #[error("public key {0}: {1}")]
    Key(String, String),
}

impl Manifest {
    pub fn new(
        version: &str,
        config_schema: u32,
        built_at: u64,
        payloads: &[(&str, &[u8])],
    ) -> Manifest {
        Manifest {
            format: FORMAT,
            product: PRODUCT.to_owned(),
            version: version.to_owned(),
            config_schema,
            built_at,
            files: payloads
                .iter()
                .map(|(name, bytes)| FileEntry {
                    name: (*name).to_owned(),
                    size: bytes.len() as u64,
                    sha256: sha256_hex(bytes),
                })
                .collect(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// Parses manifest bytes that were already verified, and checks their shape.
    fn parse_verified(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if m.format != FORMAT {
            return Err(ManifestError::Malformed(format!(
                "manifest format {} is not {FORMAT}: this firmware cannot install it",
                m.format
            )));
        }
        if m.product != PRODUCT {
            return Err(ManifestError::Malformed(format!(
                "the update is for `{}`, not `{PRODUCT}`",
                m.product
            )));
        }
        let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
        if names != PAYLOAD_FILES {
            return Err(ManifestError::Malformed(format!(
                "the files are {names:?}, expected {PAYLOAD_FILES:?}"
            )));
        }
        for f in &m.files {
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ManifestError::Malformed(format!(
                    "{}: sha256 is not 64 hex digits",
                    f.name
                )));
            }
        }
        Ok(m)
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// A trusted public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn from_hex(text: &str) -> Result<PublicKey, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "an ed25519 public key is 32 bytes (64 hex digits)".to_owned())?;
        Ok(PublicKey(arr))
    }

    pub fn load(path: &Path) -> Result<PublicKey, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ManifestError::Key(path.display().to_string(), e.to_string()))?;
        PublicKey::from_hex(&text).map_err(|e| ManifestError::Key(path.display().to_string(), e))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The builder's signing key.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// A new key, as PKCS#8 bytes to keep (and the key itself).
    pub fn generate() -> (Vec<u8>, SigningKey) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("the system RNG works");
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a fresh key parses");
        (pkcs8.as_ref().to_vec(), SigningKey(key))
    }

    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, String> {
        Ed25519KeyPair::from_pkcs8(bytes)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes))
            .map(SigningKey)
            .map_err(|e| format!("not an ed25519 PKCS#8 key: {e}"))
    }

    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(k)
    }

    /// The signature file's content: 64 bytes as hex, one line.
    pub fn sign(&self, manifest_bytes: &[u8]) -> Vec<u8> {
        let mut s = hex::encode(self.0.sign(manifest_bytes).as_ref()).into_bytes();
        s.push(b'\n');
        s
    }
}

/// Checks `signature` (the signature file's content) over `manifest_bytes` with each trusted
/// key; only then parses the manifest.
pub fn verify(
    manifest_bytes: &[u8],
    signature: &[u8],
    keys: &[PublicKey],
) -> Result<Manifest, ManifestError> {
    let text = std::str::from_utf8(signature).map_err(|_| ManifestError::SignatureFormat)?;
    let sig = hex::decode(text.trim()).map_err(|_| ManifestError::SignatureFormat)?;
    if sig.len() != 64 {
        return Err(ManifestError::SignatureFormat);
    }
    let trusted = keys.iter().any(|k| {
        UnparsedPublicKey::new(&signature::ED25519, &k.0)
            .verify(manifest_bytes, &sig)
            .is_ok()
    });
    if !trusted {
        return Err(ManifestError::BadSignature);
    }
    Manifest::parse_verified(manifest_bytes)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> (Vec<u8>, Vec<u8>, SigningKey) {
        let (_, key) = SigningKey::generate();
        let m = Manifest::new(
            "1.2.3",
            1,
            0,
            &[(KERNEL_FILE, b"k"), (INITRAMFS_FILE, b"i")],
        );
        let bytes = m.to_bytes();
        let sig = key.sign(&bytes);
        (bytes, sig, key)
    }

    #[test]
    fn a_signed_manifest_verifies_and_parses() {
        let (bytes, sig, key) = signed();
        let m = verify(&bytes, &sig, &[key.public()]).unwrap();
        assert_eq!(m.version, "1.2.3");
        assert_eq!(m.file(KERNEL_FILE).unwrap().sha256, sha256_hex(b"k"));
    }

    #[test]
    fn a_tampered_manifest_or_signature_or_another_key_is_refused() {
        let (bytes, sig, key) = signed();
        let mut tampered = bytes.clone();
        let at = tampered.iter().position(|&b| b == b'3').unwrap();
        tampered[at] = b'4';
        assert!(matches!(
            verify(&tampered, &sig, &[key.public()]),
            Err(ManifestError::BadSignature)
        ));
        let mut bad_sig = sig.clone();
        bad_sig[0] = if bad_sig[0] == b'a' { b'b' } else { b'a' };
        assert!(matches!(
            verify(&bytes, &bad_sig, &[key.public()]),
            Err(ManifestError::BadSignature)
        ));
        let (_, other) = SigningKey::generate();
        assert!(matches!(
            verify(&bytes, &sig, &[other.public()]),
            Err(ManifestError::BadSignature)
        ));
        assert!(matches!(
            verify(&bytes, b"zz", &[key.public()]),
            Err(ManifestError::SignatureFormat)
        ));
        // Any one trusted key is enough (key rotation).
        verify(&bytes, &sig, &[other.public(), key.public()]).unwrap();
    }

    #[test]
    fn a_signed_manifest_with_the_wrong_shape_is_still_refused() {
        let (_, key) = SigningKey::generate();
        let mut m = Manifest::new("1", 1, 0, &[(KERNEL_FILE, b"k")]);
        let bytes = m.to_bytes();
        assert!(matches!(
            verify(&bytes, &key.sign(&bytes), &[key.public()]),
            Err(ManifestError::Malformed(_))
        ));
        m = Manifest::new("1", 1, 0, &[(KERNEL_FILE, b"k"), (INITRAMFS_FILE, b"i")]);
        m.product = "other".into();
        let bytes = m.to_bytes();
        assert!(matches!(
            verify(&bytes, &key.sign(&bytes), &[key.public()]),
            Err(ManifestError::Malformed(_))
        ));
    }

    #[test]
    fn keys_round_trip_through_their_files() {
        let (pkcs8, key) = SigningKey::generate();
        let again = SigningKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(
            PublicKey::from_hex(&key.public().to_hex()).unwrap(),
            key.public()
        );
        assert!(PublicKey::from_hex("abcd").is_err());
    }
}
