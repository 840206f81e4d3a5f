//! The update file: a gzip-compressed tar archive holding, in this order, `manifest.json`,
//! `manifest.sig`, `vmlinuz` and `initramfs.img`.
//!
//! The reader checks the signature as soon as the first two entries are in, before it reads
//! any payload, and then reads each payload only up to the size the signed manifest gives,
//! hashing it on the way. Anything else in the archive (links, directories, paths, extra or
//! missing files) refuses the update.

use super::manifest::{
    self, INITRAMFS_FILE, KERNEL_FILE, MANIFEST_FILE, Manifest, ManifestError, PublicKey,
    SIGNATURE_FILE, SigningKey,
};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{self, Read, Write};

/// The largest manifest or signature entry read.
const MAX_SMALL: u64 = 64 * 1024;
/// The largest payload file accepted.
pub const MAX_PAYLOAD: u64 = 256 * 1024 * 1024;

/// A verified update: its manifest and payloads, every checksum checked.
#[derive(Debug)]
pub struct Update {
    pub manifest: Manifest,
    /// The manifest's exact signed bytes and the signature, copied into the slot so the slot
    /// itself can show (and prove) what it holds.
    pub manifest_bytes: Vec<u8>,
    pub signature: Vec<u8>,
    pub kernel: Vec<u8>,
    pub initramfs: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the update file: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("the update file is not laid out as expected: {0}")]
    Layout(String),
    #[error("{name}: the content does not match the signed checksum: the file was altered")]
    Checksum { name: String },
}

/// Reads and verifies an update file.
pub fn read_update(input: impl Read, keys: &[PublicKey]) -> Result<Update, ArchiveError> {
    let mut archive = tar::Archive::new(GzDecoder::new(input));
    let mut entries = archive.entries()?;
    let mut next = |want: &str, limit: u64| -> Result<Vec<u8>, ArchiveError> {
        let entry = entries
            .next()
            .ok_or_else(|| ArchiveError::Layout(format!("`{want}` is missing")))??;
        let name = entry.path()?.to_string_lossy().into_owned();
        if name != want {
            return Err(ArchiveError::Layout(format!(
                "found `{name}` where `{want}` belongs"
            )));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ArchiveError::Layout(format!(
                "`{name}` is not a regular file"
            )));
        }
        let size = entry.header().size()?;
        if size > limit {
            return Err(ArchiveError::Layout(format!(
                "`{name}` is {size} bytes, more than the {limit} allowed"
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        entry.take(limit).read_to_end(&mut buf)?;
        Ok(buf)
    };
    let manifest_bytes = next(MANIFEST_FILE, MAX_SMALL)?;
    let signature = next(SIGNATURE_FILE, MAX_SMALL)?;
    let manifest = manifest::verify(&manifest_bytes, &signature, keys)?;
    let mut payloads = Vec::new();
    for f in &manifest.files {
        let bytes = next(&f.name, f.size.min(MAX_PAYLOAD))?;
        if bytes.len() as u64 != f.size || manifest::sha256_hex(&bytes) != f.sha256 {
            return Err(ArchiveError::Checksum {
                name: f.name.clone(),
            });
        }
        payloads.push(bytes);
    }
    if let Some(extra) = entries.next() {
        let name = extra?.path()?.to_string_lossy().into_owned();
        return Err(ArchiveError::Layout(format!(
            "unexpected extra file `{name}`"
        )));
    }
    let initramfs = payloads.pop().expect("the manifest lists two payloads");
    let kernel = payloads.pop().expect("the manifest lists two payloads");
    Ok(Update {
        manifest,
        manifest_bytes,
        signature,
        kernel,
        initramfs,
    })
}

/// Writes a signed update file.
pub fn write_update(
    out: impl Write,
    version: &str,
    config_schema: u32,
    built_at: u64,
    kernel: &[u8],
    initramfs: &[u8],
    key: &SigningKey,
) -> io::Result<Manifest> {
    let manifest = Manifest::new(
        version,
        config_schema,
        built_at,
        &[(KERNEL_FILE, kernel), (INITRAMFS_FILE, initramfs)],
    );
    let manifest_bytes = manifest.to_bytes();
    let signature = key.sign(&manifest_bytes);
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::best()));
    for (name, bytes) in [
        (MANIFEST_FILE, manifest_bytes.as_slice()),
        (SIGNATURE_FILE, signature.as_slice()),
        (KERNEL_FILE, kernel),
        (INITRAMFS_FILE, initramfs),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(built_at);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes)?;
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(key: &SigningKey) -> Vec<u8> {
        let mut out = Vec::new();
        write_update(
            &mut out,
            "2.0.0",
            1,
            1_700_000_000,
            b"KERNEL",
            b"INITRAMFS",
            key,
        )
        .unwrap();
        out
    }

    /// Rewrites an update's archive entries through `edit` (name, bytes) → entries, keeping
    /// the original signature: what an attacker can do without the key.
    fn reassemble(
        file: &[u8],
        edit: impl Fn(Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)>,
    ) -> Vec<u8> {
        let mut a = tar::Archive::new(GzDecoder::new(file));
        let mut items = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            items.push((name, b));
        }
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, bytes) in edit(items) {
            let mut h = tar::Header::new_ustar();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, name, bytes.as_slice()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_built_update_reads_back_verified() {
        let (_, key) = SigningKey::generate();
        let u = read_update(update(&key).as_slice(), &[key.public()]).unwrap();
        assert_eq!(u.manifest.version, "2.0.0");
        assert_eq!(u.kernel, b"KERNEL");
        assert_eq!(u.initramfs, b"INITRAMFS");
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let (_, key) = SigningKey::generate();
        let file = reassemble(&update(&key), |mut items| {
            items[3].1 = b"EVILFS!!!".to_vec(); // same length, other content
            items
        });
        let e = read_update(file.as_slice(), &[key.public()]).unwrap_err();
        assert!(
            matches!(e, ArchiveError::Checksum { ref name } if name == INITRAMFS_FILE),
            "{e}"
        );
    }

    #[test]
    fn an_update_signed_by_another_key_is_refused() {
        let (_, key) = SigningKey::generate();
        let (_, mine) = SigningKey::generate();
        let e = read_update(update(&key).as_slice(), &[mine.public()]).unwrap_err();
        assert!(
            matches!(e, ArchiveError::Manifest(ManifestError::BadSignature)),
            "{e}"
        );
    }

    #[test]
    fn extra_missing_or_reordered_files_are_refused() {
        let (_, key) = SigningKey::generate();
        let good = update(&key);
        let extra = reassemble(&good, |mut i| {
            i.push(("evil.sh".into(), b"x".to_vec()));
            i
        });
        assert!(matches!(
            read_update(extra.as_slice(), &[key.public()]),
            Err(ArchiveError::Layout(_))
        ));
        let missing = reassemble(&good, |mut i| {
            i.pop();
            i
        });
        assert!(matches!(
            read_update(missing.as_slice(), &[key.public()]),
            Err(ArchiveError::Layout(_))
        ));
        let swapped = reassemble(&good, |mut i| {
            i.swap(0, 1);
            i
        });
        assert!(matches!(
            read_update(swapped.as_slice(), &[key.public()]),
            Err(ArchiveError::Layout(_))
        ));
        assert!(read_update(&b"not a gzip file"[..], &[key.public()]).is_err());
    }
}
