//! The boot slots and the boot partition, written as FAT file systems without mounting them.
//!
//! A slot is formatted afresh for every update (so nothing of the old firmware is left in
//! it), then the kernel, the initramfs and the signed manifest are written, the device is
//! flushed, and every file is read back and hashed against the manifest. GRUB reads the
//! slot with its `fat` module.

use super::archive::Update;
use super::grubenv::{BLOCK_SIZE, GrubEnv, GrubEnvError};
use super::manifest::{
    self, INITRAMFS_FILE, KERNEL_FILE, MANIFEST_FILE, Manifest, PAYLOAD_FILES, SIGNATURE_FILE,
};
use fatfs::{FileSystem, FormatVolumeOptions, FsOptions};
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// The cluster size of a slot's FAT.
pub const SLOT_CLUSTER: u32 = 32 * 1024;

/// Where GRUB's environment block lives on the boot partition.
pub const GRUBENV_PATH: &str = "grub/grubenv";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" | "a" => Some(Slot::A),
            "B" | "b" => Some(Slot::B),
            _ => None,
        }
    }

    /// The FAT volume label, as `image/build.sh` gives it.
    pub fn label(self) -> [u8; 11] {
        match self {
            Slot::A => *b"TANDEM_A   ",
            Slot::B => *b"TANDEM_B   ",
        }
    }

    /// The partition number on the disk (1 is the boot partition, 4 the config).
    pub fn partition(self) -> u32 {
        match self {
            Slot::A => 2,
            Slot::B => 3,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// Formats `dev` (a slot partition) and writes the update into it, then reads it back.
pub fn write_slot<D: Read + Write + Seek>(
    mut dev: D,
    slot: Slot,
    update: &Update,
) -> io::Result<()> {
    dev.seek(SeekFrom::Start(0))?;
    // 32 KiB clusters, as image/build.sh makes slot A: GRUB reads big files in fewer pieces.
    let options = FormatVolumeOptions::new()
        .volume_label(slot.label())
        .bytes_per_cluster(SLOT_CLUSTER);
    fatfs::format_volume(&mut dev, options)?;
    dev.seek(SeekFrom::Start(0))?;
    {
        let fs = FileSystem::new(&mut dev, FsOptions::new())?;
        let root = fs.root_dir();
        for (name, bytes) in [
            (MANIFEST_FILE, update.manifest_bytes.as_slice()),
            (SIGNATURE_FILE, update.signature.as_slice()),
            (KERNEL_FILE, update.kernel.as_slice()),
            (INITRAMFS_FILE, update.initramfs.as_slice()),
        ] {
            let mut f = root.create_file(name)?;
            f.truncate()?;
            f.write_all(bytes)?;
            f.flush()?;
        }
        drop(root);
        fs.unmount()?;
    }
    dev.flush()?;
    verify_slot(&mut dev, &update.manifest)
}

/// Reads the manifest a slot holds (unverified: for display), if any.
pub fn read_slot_manifest<D: Read + Write + Seek>(mut dev: D) -> io::Result<Option<Manifest>> {
    dev.seek(SeekFrom::Start(0))?;
    let fs = FileSystem::new(&mut dev, FsOptions::new())?;
    let mut text = Vec::new();
    match fs.root_dir().open_file(MANIFEST_FILE) {
        Ok(mut f) => f.read_to_end(&mut text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(serde_json::from_slice(&text).ok())
}

/// Hashes every payload file in the slot against `manifest`.
pub fn verify_slot<D: Read + Write + Seek>(mut dev: D, manifest: &Manifest) -> io::Result<()> {
    dev.seek(SeekFrom::Start(0))?;
    let fs = FileSystem::new(&mut dev, FsOptions::new())?;
    let root = fs.root_dir();
    for name in PAYLOAD_FILES {
        let entry = manifest
            .file(name)
            .ok_or_else(|| io::Error::other(format!("the manifest has no {name}")))?;
        let mut bytes = Vec::new();
        root.open_file(name)?.read_to_end(&mut bytes)?;
        if manifest::sha256_hex(&bytes) != entry.sha256 {
            return Err(io::Error::other(format!(
                "{name} reads back different from what was written: the disk may be failing"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum BootPartitionError {
    #[error("boot partition: {0}")]
    Io(#[from] io::Error),
    #[error("boot partition {GRUBENV_PATH}: {0}")]
    GrubEnv(#[from] GrubEnvError),
}

/// Reads GRUB's environment block from the boot partition.
pub fn read_grubenv<D: Read + Write + Seek>(mut dev: D) -> Result<GrubEnv, BootPartitionError> {
    dev.seek(SeekFrom::Start(0))?;
    let fs = FileSystem::new(&mut dev, FsOptions::new())?;
    let mut block = Vec::new();
    fs.root_dir()
        .open_file(GRUBENV_PATH)?
        .read_to_end(&mut block)?;
    Ok(GrubEnv::parse(&block)?)
}

/// Rewrites GRUB's environment block in place: same file, same size, same clusters, as
/// GRUB's own `save_env` expects.
pub fn write_grubenv<D: Read + Write + Seek>(
    mut dev: D,
    env: &GrubEnv,
) -> Result<(), BootPartitionError> {
    let block = env.to_block()?;
    debug_assert_eq!(block.len(), BLOCK_SIZE);
    dev.seek(SeekFrom::Start(0))?;
    {
        let fs = FileSystem::new(&mut dev, FsOptions::new())?;
        let mut f = fs.root_dir().open_file(GRUBENV_PATH)?;
        let mut old = Vec::new();
        f.read_to_end(&mut old)?;
        if old.len() != BLOCK_SIZE {
            return Err(GrubEnvError::Size(old.len()).into());
        }
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&block)?;
        f.flush()?;
        drop(f);
        fs.unmount()?;
    }
    dev.flush()?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::firmware::archive::{read_update, write_update};
    use crate::firmware::manifest::SigningKey;
    use std::io::Cursor;

    pub fn sample_update(version: &str) -> Update {
        let (_, key) = SigningKey::generate();
        let mut file = Vec::new();
        let mut kernel = vec![0x4b; 300_000];
        kernel.extend_from_slice(version.as_bytes());
        let initramfs: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        write_update(&mut file, version, 1, 0, &kernel, &initramfs, &key).unwrap();
        read_update(file.as_slice(), &[key.public()]).unwrap()
    }

    /// A boot partition as `image/build.sh` makes it: FAT with `grub/grubenv`.
    pub fn boot_partition(env: &GrubEnv) -> Cursor<Vec<u8>> {
        let mut dev = Cursor::new(vec![0u8; 8 * 1024 * 1024]);
        fatfs::format_volume(&mut dev, FormatVolumeOptions::new()).unwrap();
        {
            let fs = FileSystem::new(&mut dev, FsOptions::new()).unwrap();
            fs.root_dir().create_dir("grub").unwrap();
            let mut f = fs.root_dir().create_file(GRUBENV_PATH).unwrap();
            f.write_all(&env.to_block().unwrap()).unwrap();
        }
        dev
    }

    #[test]
    fn a_written_slot_holds_the_update_and_verifies() {
        let update = sample_update("3.1.0");
        let mut dev = Cursor::new(vec![0u8; 16 * 1024 * 1024]);
        write_slot(&mut dev, Slot::B, &update).unwrap();
        let m = read_slot_manifest(&mut dev).unwrap().unwrap();
        assert_eq!(m.version, "3.1.0");
        // The volume label GRUB and the build script know.
        dev.set_position(0);
        let fs = FileSystem::new(&mut dev, FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "TANDEM_B");
        drop(fs);
        // A second update overwrites the first entirely.
        let newer = sample_update("3.2.0");
        write_slot(&mut dev, Slot::B, &newer).unwrap();
        assert_eq!(
            read_slot_manifest(&mut dev).unwrap().unwrap().version,
            "3.2.0"
        );
        assert!(
            verify_slot(&mut dev, &update.manifest).is_err(),
            "old checksums no longer match"
        );
    }

    #[test]
    fn an_empty_slot_has_no_manifest() {
        let mut dev = Cursor::new(vec![0u8; 4 * 1024 * 1024]);
        fatfs::format_volume(&mut dev, FormatVolumeOptions::new()).unwrap();
        assert!(read_slot_manifest(&mut dev).unwrap().is_none());
    }

    #[test]
    fn grubenv_is_rewritten_in_place() {
        let mut env = GrubEnv::new();
        env.set("confirmed", "A").unwrap();
        let mut dev = boot_partition(&env);
        let before = dev.get_ref().clone();
        env.set("try", "B").unwrap();
        write_grubenv(&mut dev, &env).unwrap();
        assert_eq!(read_grubenv(&mut dev).unwrap().get("try"), Some("B"));
        // Only the block's own bytes (and at most the directory entry) changed.
        let after = dev.get_ref();
        let changed: Vec<usize> = (0..after.len())
            .filter(|&i| after[i] != before[i])
            .collect();
        let span = changed.last().unwrap() - changed.first().unwrap();
        let block_at = after
            .windows(24)
            .position(|w| w == b"# GRUB Environment Block")
            .unwrap();
        assert!(
            changed
                .iter()
                .all(|&i| (block_at..block_at + BLOCK_SIZE).contains(&i) || i < block_at),
            "{span}"
        );
    }
}
