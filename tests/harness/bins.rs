//! The binaries under test, built once per test process so a test never runs a stale daemon.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn built() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "tandem",
                "-p",
                "tandem-lab",
                "--bins",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cannot run cargo to build the binaries under test");
        assert!(status.success(), "building the binaries under test failed");
        target_dir().join("debug")
    })
}

pub fn tandemd() -> PathBuf {
    built().join("tandemd")
}

pub fn tandemctl() -> PathBuf {
    built().join("tandemctl")
}

pub fn lab_backend() -> PathBuf {
    built().join("lab-backend")
}
