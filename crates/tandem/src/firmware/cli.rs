//! `tandemctl firmware …`: status, verify, apply, confirm and cancel on the box; build and
//! keygen on the builder's machine.

use super::archive;
use super::manifest::{PublicKey, SigningKey};
use super::{ApplyOptions, BootState, Disk};
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Which slot runs, which is confirmed, what each slot holds.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Check an update file's signature and checksums without installing it.
    Verify {
        file: PathBuf,
        /// A trusted public key file (hex); default: the image's own.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
    },
    /// Verify an update, write it to the slot that is not running, boot it once.
    Apply {
        file: PathBuf,
        /// Arm the update but do not reboot now.
        #[arg(long)]
        no_reboot: bool,
        /// How long tandemd must stay healthy before the new firmware confirms itself.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        confirm_after: Duration,
        /// How long the new firmware may take to confirm itself before it reboots into the
        /// old one.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        trial_timeout: Duration,
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// The config whose schema the new firmware must read.
        #[arg(long, default_value = "/config/tandem.yaml")]
        config: PathBuf,
    },
    /// Confirm the running firmware now (it otherwise confirms itself once healthy).
    Confirm,
    /// Disarm an applied update that has not been booted yet.
    Cancel,
    /// Build and sign an update file (on the builder's machine).
    Build {
        #[arg(long)]
        version: String,
        #[arg(long)]
        kernel: PathBuf,
        #[arg(long)]
        initramfs: PathBuf,
        /// The private signing key (PKCS#8), kept by the builder.
        #[arg(long, env = "TANDEM_SIGNING_KEY")]
        key: PathBuf,
        #[arg(long, short)]
        output: PathBuf,
        /// Also write the signed manifest files here (for the image's slot A).
        #[arg(long)]
        slot_dir: Option<PathBuf>,
        /// Build time (Unix seconds), for reproducible files.
        #[arg(long, env = "SOURCE_DATE_EPOCH")]
        built_at: Option<u64>,
    },
    /// Print the public key (hex) of a private signing key.
    Pubkey {
        #[arg(long, env = "TANDEM_SIGNING_KEY")]
        key: PathBuf,
    },
    /// Make a signing key pair: `signing.pk8` (private) and `signing.pub` (public, hex).
    Keygen {
        #[arg(long)]
        out_dir: PathBuf,
    },
}

pub fn run(cmd: Command, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Status { json } => {
            let disk = Disk::discover()?;
            let s = super::status(&disk, BootState::current())?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                writeln!(
                    out,
                    "running     {}",
                    s.running_version.as_deref().unwrap_or("?")
                )?;
                let slot =
                    |x: Option<super::slot::Slot>| x.map(|s| s.to_string()).unwrap_or("-".into());
                writeln!(
                    out,
                    "booted      slot {}{}",
                    slot(s.booted),
                    if s.on_trial() {
                        " (on trial: not confirmed yet)"
                    } else {
                        ""
                    }
                )?;
                writeln!(out, "confirmed   slot {}", slot(s.confirmed))?;
                writeln!(out, "next boot   slot {}", slot(s.try_slot.or(s.confirmed)))?;
                for i in &s.slots {
                    writeln!(
                        out,
                        "slot {}      {} ({})",
                        i.slot,
                        i.version.as_deref().unwrap_or("empty"),
                        i.device.display()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { file, keys } => {
            let keys = super::load_keys(&keys)?;
            let f = std::fs::File::open(&file)?;
            let u = archive::read_update(std::io::BufReader::new(f), &keys)?;
            writeln!(
                out,
                "{}: good update, version {} (config schema {}), signed by a trusted key",
                file.display(),
                u.manifest.version,
                u.manifest.config_schema
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply {
            file,
            no_reboot,
            confirm_after,
            trial_timeout,
            keys,
            config,
        } => {
            let keys = super::load_keys(&keys)?;
            let disk = Disk::discover()?;
            let applied = super::apply(
                &disk,
                BootState::current(),
                &file,
                &keys,
                &ApplyOptions {
                    confirm_after,
                    trial_timeout,
                    config_file: config,
                },
            )?;
            writeln!(
                out,
                "firmware {} written to slot {} and verified; it boots once on the next reboot and confirms itself after {}s of health",
                applied.version,
                applied.slot,
                confirm_after.as_secs()
            )?;
            if no_reboot {
                writeln!(
                    out,
                    "not rebooting (--no-reboot): reboot when ready, or `tandemctl firmware cancel`"
                )?;
            } else {
                writeln!(out, "rebooting")?;
                out.flush()?;
                let status = std::process::Command::new("reboot").status();
                if !status.is_ok_and(|s| s.success()) {
                    writeln!(
                        err,
                        "reboot failed: reboot the box to start the new firmware"
                    )?;
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Confirm => {
            let slot = super::confirm(&Disk::discover()?, BootState::current())?;
            writeln!(out, "slot {slot} confirmed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel => {
            super::cancel(&Disk::discover()?)?;
            writeln!(
                out,
                "no update armed; the next boot uses the confirmed slot"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Build {
            version,
            kernel,
            initramfs,
            key,
            output,
            slot_dir,
            built_at,
        } => {
            let pkcs8 =
                std::fs::read(&key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            let key = SigningKey::from_pkcs8(&pkcs8).map_err(anyhow::Error::msg)?;
            let kernel = std::fs::read(&kernel)?;
            let initramfs = std::fs::read(&initramfs)?;
            let built_at = built_at.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
            let file = std::fs::File::create(&output)?;
            let manifest = archive::write_update(
                std::io::BufWriter::new(file),
                &version,
                tandem_config::SCHEMA_VERSION,
                built_at,
                &kernel,
                &initramfs,
                &key,
            )?;
            if let Some(dir) = slot_dir {
                std::fs::create_dir_all(&dir)?;
                let bytes = manifest.to_bytes();
                std::fs::write(dir.join(super::manifest::MANIFEST_FILE), &bytes)?;
                std::fs::write(dir.join(super::manifest::SIGNATURE_FILE), key.sign(&bytes))?;
            }
            writeln!(out, "{}: firmware {version}, signed", output.display())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pubkey { key } => {
            let pkcs8 =
                std::fs::read(&key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            let key = SigningKey::from_pkcs8(&pkcs8).map_err(anyhow::Error::msg)?;
            writeln!(out, "{}", key.public().to_hex())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out_dir } => {
            std::fs::create_dir_all(&out_dir)?;
            let private = out_dir.join("signing.pk8");
            if private.exists() {
                anyhow::bail!(
                    "{} exists: refusing to replace a signing key",
                    private.display()
                );
            }
            let (pkcs8, key) = SigningKey::generate();
            std::fs::write(&private, pkcs8)?;
            std::fs::set_permissions(
                &private,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )?;
            let public: PublicKey = key.public();
            std::fs::write(
                out_dir.join("signing.pub"),
                format!("{}\n", public.to_hex()),
            )?;
            writeln!(
                out,
                "{}: new signing key; public key {}",
                private.display(),
                public.to_hex()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
