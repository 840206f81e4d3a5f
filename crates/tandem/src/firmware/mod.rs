//! Firmware updates with A/B boot slots and automatic fallback (see `docs/image.md`).
//!
//! The disk has four partitions: 1 the boot partition (GRUB, `grub.cfg`, `grubenv`), 2 and 3
//! the boot slots A and B (each a FAT file system with a kernel, an initramfs and the signed
//! manifest), 4 the config partition mounted at `/config`, which an update never touches.
//!
//! An update is verified ([`archive`]), written to the slot that is not running ([`slot`]),
//! and armed as GRUB's one-shot `try` slot ([`grubenv`]). GRUB clears `try` before booting
//! it, so a panic (`panic=5`), a hang (the hardware watchdog) or a reboot before the new
//! system confirms itself returns to the confirmed slot. The new system confirms itself once
//! tandemd has stayed healthy for `confirm_after` (the supervisor does it, `setup::supervisor`),
//! and reboots into the old slot if that does not happen within `trial_timeout`.

pub mod archive;
pub mod cli;
pub mod grubenv;
pub mod manifest;
pub mod slot;

use anyhow::{Context, bail};
use grubenv::GrubEnv;
use manifest::PublicKey;
use serde::Serialize;
use slot::Slot;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long tandemd must stay healthy before a tried firmware confirms itself.
pub const DEFAULT_CONFIRM_AFTER: Duration = Duration::from_secs(60);
/// How long a tried firmware may take to confirm itself before it reboots into the old one.
pub const DEFAULT_TRIAL_TIMEOUT: Duration = Duration::from_secs(300);
/// The running firmware's version, written by `image/build.sh`.
pub const RELEASE_FILE: &str = "/etc/tandem/release";

/// The partitions of the appliance's disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disk {
    pub boot: PathBuf,
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
    pub config: PathBuf,
}

impl Disk {
    /// The disk `/config` is mounted from, as `/dev/<disk><n>`.
    pub fn discover() -> anyhow::Result<Disk> {
        let mounts = std::fs::read_to_string("/proc/mounts").context("cannot read /proc/mounts")?;
        let device = mounts
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?, f.next()?))
            })
            .find(|(_, at)| *at == "/config")
            .map(|(dev, _)| dev.to_owned())
            .context("/config is not mounted: this is not a running Tandem appliance")?;
        let name = Path::new(&device)
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("/config is mounted from {device}, not a disk partition"))?
            .to_owned();
        let link = std::fs::read_link(format!("/sys/class/block/{name}"))
            .with_context(|| format!("{device} is not a block device"))?;
        let disk = link
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .with_context(|| format!("cannot find the disk of {device}"))?
            .to_owned();
        Ok(Disk::of(&disk))
    }

    /// The partitions of `disk` (`vda`, `sda`, `nvme0n1`, `mmcblk0`).
    pub fn of(disk: &str) -> Disk {
        Disk {
            boot: partition_path(disk, 1),
            slot_a: partition_path(disk, 2),
            slot_b: partition_path(disk, 3),
            config: partition_path(disk, 4),
        }
    }

    pub fn slot(&self, slot: Slot) -> &Path {
        match slot {
            Slot::A => &self.slot_a,
            Slot::B => &self.slot_b,
        }
    }
}

/// `/dev/vda` + 2 → `/dev/vda2`; `/dev/nvme0n1` + 2 → `/dev/nvme0n1p2`.
pub fn partition_path(disk: &str, n: u32) -> PathBuf {
    let sep = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    PathBuf::from(format!("/dev/{disk}{sep}{n}"))
}

/// What GRUB told the kernel: which slot booted, and whether it is on trial.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BootState {
    pub slot: Option<Slot>,
    pub trial: bool,
}

impl BootState {
    pub fn from_cmdline(cmdline: &str) -> BootState {
        let mut s = BootState::default();
        for word in cmdline.split_whitespace() {
            if let Some(v) = word.strip_prefix("tandem.slot=") {
                s.slot = Slot::parse(v);
            } else if word == "tandem.trial=1" {
                s.trial = true;
            }
        }
        s
    }

    pub fn current() -> BootState {
        BootState::from_cmdline(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SlotInfo {
    pub slot: Slot,
    pub device: PathBuf,
    /// The version the slot holds, from its manifest; none for an empty slot.
    pub version: Option<String>,
    pub built_at: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub running_version: Option<String>,
    pub booted: Option<Slot>,
    /// Booted as GRUB's one-shot `try` slot and not yet confirmed.
    pub trial: bool,
    pub confirmed: Option<Slot>,
    pub try_slot: Option<Slot>,
    pub confirm_after_seconds: Option<u64>,
    pub trial_timeout_seconds: Option<u64>,
    pub slots: Vec<SlotInfo>,
}

impl Status {
    /// Still on trial: booted as `try` and the grubenv does not name this slot confirmed.
    pub fn on_trial(&self) -> bool {
        self.trial && self.booted.is_some() && self.booted != self.confirmed
    }
}

pub fn status(disk: &Disk, boot: BootState) -> anyhow::Result<Status> {
    let env = read_env(disk)?;
    let mut slots = Vec::new();
    for slot in [Slot::A, Slot::B] {
        let device = disk.slot(slot).to_path_buf();
        let manifest = std::fs::File::open(&device)
            .ok()
            .and_then(|f| slot::read_slot_manifest(f).ok().flatten());
        slots.push(SlotInfo {
            slot,
            device,
            version: manifest.as_ref().map(|m| m.version.clone()),
            built_at: manifest.map(|m| m.built_at),
        });
    }
    let seconds = |name: &str| env.get(name).and_then(|v| v.parse().ok());
    Ok(Status {
        running_version: std::fs::read_to_string(RELEASE_FILE)
            .ok()
            .map(|s| s.trim().to_owned()),
        booted: boot.slot,
        trial: boot.trial,
        confirmed: Some(confirmed_slot(&env)),
        try_slot: env.get("try").and_then(Slot::parse),
        confirm_after_seconds: seconds("confirm_after"),
        trial_timeout_seconds: seconds("trial_timeout"),
        slots,
    })
}

/// GRUB's rule (`image/grub.cfg`): anything but `B` means A.
fn confirmed_slot(env: &GrubEnv) -> Slot {
    if env.get("confirmed") == Some("B") {
        Slot::B
    } else {
        Slot::A
    }
}

fn read_env(disk: &Disk) -> anyhow::Result<GrubEnv> {
    let dev = std::fs::File::open(&disk.boot)
        .with_context(|| format!("cannot open the boot partition {}", disk.boot.display()))?;
    Ok(slot::read_grubenv(dev)?)
}

fn write_env(disk: &Disk, env: &GrubEnv) -> anyhow::Result<()> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&disk.boot)
        .with_context(|| format!("cannot open the boot partition {}", disk.boot.display()))?;
    slot::write_grubenv(&dev, env)?;
    dev.sync_all()?;
    Ok(())
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub confirm_after: Duration,
    pub trial_timeout: Duration,
    /// The config file whose schema the new firmware must be able to read.
    pub config_file: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Applied {
    pub slot: Slot,
    pub version: String,
    pub from_version: Option<String>,
}

/// Verifies `file`, writes it to the slot that is not running and arms it as GRUB's one-shot
/// `try` slot. Rebooting is the caller's choice.
pub fn apply(
    disk: &Disk,
    boot: BootState,
    file: &Path,
    keys: &[PublicKey],
    options: &ApplyOptions,
) -> anyhow::Result<Applied> {
    let booted = boot.slot.context(
        "the kernel command line names no slot (tandem.slot=): not booted by Tandem's GRUB",
    )?;
    let before = status(disk, boot)?;
    if before.on_trial() {
        bail!(
            "this firmware (slot {booted}) is itself on trial and not confirmed yet; writing slot {} would remove the way back. Wait until it confirms itself (tandemctl firmware status), or confirm it with `tandemctl firmware confirm`",
            booted.other()
        );
    }
    let input = std::fs::File::open(file)
        .with_context(|| format!("cannot open the update file {}", file.display()))?;
    let update = archive::read_update(std::io::BufReader::new(input), keys)
        .with_context(|| format!("{} refused", file.display()))?;
    check_schema(&options.config_file, update.manifest.config_schema)?;

    let target = booted.other();
    let device = disk.slot(target);
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .with_context(|| format!("cannot open slot {target} ({})", device.display()))?;
    slot::write_slot(&dev, target, &update)
        .with_context(|| format!("writing slot {target} ({}) failed", device.display()))?;
    dev.sync_all()?;

    let mut env = read_env(disk)?;
    if env.get("confirmed").is_none() {
        env.set("confirmed", &booted.to_string())?;
    }
    env.set("try", &target.to_string())?;
    env.set(
        "confirm_after",
        &options.confirm_after.as_secs().to_string(),
    )?;
    env.set(
        "trial_timeout",
        &options.trial_timeout.as_secs().to_string(),
    )?;
    write_env(disk, &env)?;
    Ok(Applied {
        slot: target,
        version: update.manifest.version,
        from_version: before.running_version,
    })
}

/// Marks the booted slot as the one to boot from now on.
pub fn confirm(disk: &Disk, boot: BootState) -> anyhow::Result<Slot> {
    let booted = boot
        .slot
        .context("the kernel command line names no slot (tandem.slot=)")?;
    let mut env = read_env(disk)?;
    env.set("confirmed", &booted.to_string())?;
    env.set("try", "")?;
    env.remove("confirm_after");
    env.remove("trial_timeout");
    write_env(disk, &env)?;
    Ok(booted)
}

/// Cancels an armed update that has not been booted yet.
pub fn cancel(disk: &Disk) -> anyhow::Result<()> {
    let mut env = read_env(disk)?;
    env.set("try", "")?;
    write_env(disk, &env)
}

/// The new firmware reads its own schema and the one before (N and N-1): refuse an update
/// that could not read this box's config.
fn check_schema(config_file: &Path, firmware_schema: u32) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct SchemaOnly {
        schema: u32,
    }
    let text = match std::fs::read_to_string(config_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", config_file.display())),
    };
    let schema = serde_saphyr::from_str::<SchemaOnly>(&text)
        .map(|s| s.schema)
        .with_context(|| format!("{} has no readable `schema`", config_file.display()))?;
    schema_compatible(schema, firmware_schema).map_err(anyhow::Error::msg)
}

pub fn schema_compatible(config_schema: u32, firmware_schema: u32) -> Result<(), String> {
    if config_schema > firmware_schema {
        return Err(format!(
            "this box's config has schema {config_schema}, newer than the update's {firmware_schema}: the update is older than the config it would have to read"
        ));
    }
    if config_schema + 1 < firmware_schema {
        return Err(format!(
            "this box's config has schema {config_schema}; the update reads only {} and {firmware_schema}: install the firmware in between first",
            firmware_schema - 1
        ));
    }
    Ok(())
}

/// The trusted keys: the image's own, or the files given.
pub fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    let default = [PathBuf::from(manifest::DEFAULT_PUBLIC_KEY)];
    let paths = if paths.is_empty() {
        &default[..]
    } else {
        paths
    };
    paths
        .iter()
        .map(|p| PublicKey::load(p).map_err(anyhow::Error::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_named_as_the_kernel_names_them() {
        assert_eq!(partition_path("vda", 2), PathBuf::from("/dev/vda2"));
        assert_eq!(
            partition_path("nvme0n1", 4),
            PathBuf::from("/dev/nvme0n1p4")
        );
        assert_eq!(
            partition_path("mmcblk0", 1),
            PathBuf::from("/dev/mmcblk0p1")
        );
        let d = Disk::of("sda");
        assert_eq!(d.slot(Slot::B), Path::new("/dev/sda3"));
        assert_eq!(d.config, PathBuf::from("/dev/sda4"));
    }

    #[test]
    fn the_boot_state_comes_from_grubs_command_line() {
        let s = BootState::from_cmdline("console=ttyS0 panic=5 tandem.slot=B tandem.trial=1 quiet");
        assert_eq!((s.slot, s.trial), (Some(Slot::B), true));
        let s = BootState::from_cmdline("tandem.slot=A tandem.trial=0");
        assert_eq!((s.slot, s.trial), (Some(Slot::A), false));
        assert_eq!(BootState::from_cmdline("root=/dev/sda1").slot, None);
    }

    #[test]
    fn an_update_must_read_the_config_schema_n_or_n_minus_1() {
        assert!(schema_compatible(1, 1).is_ok());
        assert!(schema_compatible(1, 2).is_ok());
        assert!(schema_compatible(1, 3).unwrap_err().contains("in between"));
        assert!(schema_compatible(2, 1).unwrap_err().contains("newer"));
    }
}
