//! `tandemctl support-bundle`: one tar.gz with what support needs to understand a box that
//! has no shell — the log ring, the config versions and settings with every secret removed,
//! the status with its counters, the firmware state, and the network and firewall state.
//!
//! Secrets are removed by structure, not by pattern alone: YAML and JSON documents are parsed
//! and the values of secret keys ([`SECRET_KEYS`]) replaced by `<redacted>`; free text (logs,
//! command output) additionally has PEM private-key blocks and password hashes cut out. The
//! password file and the sync key are never read.

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const REDACTED: &str = "<redacted>";

/// Keys whose values are secret wherever they appear.
pub const SECRET_KEYS: &[&str] = &[
    "key_pem",
    "private_key",
    "password",
    "password_hash",
    "token",
    "token_hash",
    "token_sha256",
    "secret",
    "ticket_keys",
    "api_tokens",
];

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS.contains(&k.as_str()) || k.ends_with("_secret") || k.ends_with("_password")
}

/// Replaces the values of secret keys, at any depth.
pub fn redact_value(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_key(k) && !val.is_null() {
                    *val = Value::String(REDACTED.into());
                } else {
                    redact_value(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::String(s) => {
            let r = redact_text(s);
            if r != *s {
                *s = r;
            }
        }
        _ => {}
    }
}

/// A YAML document with its secrets removed; if it does not parse, its text with private
/// keys and hashes cut out and every line naming a secret key blanked.
pub fn redact_yaml(text: &str) -> String {
    match serde_saphyr::from_str::<Value>(text) {
        Ok(mut v) => {
            redact_value(&mut v);
            serde_saphyr::to_string(&v).unwrap_or_else(|_| redact_lines(text))
        }
        Err(_) => redact_lines(text),
    }
}

pub fn redact_json(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            redact_value(&mut v);
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
        Err(_) => redact_lines(text),
    }
}

fn redact_lines(text: &str) -> String {
    redact_text(text)
        .lines()
        .map(|l| {
            let key = l
                .trim_start()
                .trim_start_matches("- ")
                .split(':')
                .next()
                .unwrap_or("");
            if l.contains(':') && is_secret_key(key.trim().trim_matches('"')) {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}{key}: {REDACTED}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Cuts PEM private-key blocks and argon2/crypt hashes out of free text.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let header_end = rest[start..]
            .find("-----\n")
            .or_else(|| rest[start + 11..].find("-----").map(|i| i + 11));
        let label = header_end
            .map(|e| &rest[start + 11..start + e])
            .unwrap_or("");
        if !label.contains("PRIVATE KEY") {
            let cut = start + 11;
            out.push_str(&rest[..cut]);
            rest = &rest[cut..];
            continue;
        }
        out.push_str(&rest[..start]);
        let end_marker = format!("-----END {label}-----");
        match rest[start..].find(&end_marker) {
            Some(e) => rest = &rest[start + e + end_marker.len()..],
            None => rest = "",
        }
        out.push_str(REDACTED);
    }
    out.push_str(rest);
    // $argon2id$v=19$m=…$salt$hash and other PHC strings.
    let mut cleaned = String::with_capacity(out.len());
    for (i, word) in out.split(' ').enumerate() {
        if i > 0 {
            cleaned.push(' ');
        }
        if word.starts_with("$argon2") || word.starts_with("$scrypt$") || word.starts_with("$6$") {
            cleaned.push_str(REDACTED);
        } else {
            cleaned.push_str(word);
        }
    }
    cleaned
}

/// Where the bundle's contents come from.
pub struct Sources {
    pub config_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The status document (with counters) from tandemd, or why it is missing.
    pub status: Result<Value, String>,
    /// The firmware status, or why it is missing.
    pub firmware: Result<Value, String>,
    /// Commands whose output goes in `system/` (name, argv).
    pub commands: Vec<(String, Vec<String>)>,
}

impl Sources {
    pub fn default_commands() -> Vec<(String, Vec<String>)> {
        let c = |name: &str, argv: &[&str]| {
            (
                name.to_owned(),
                argv.iter().map(|s| (*s).to_owned()).collect(),
            )
        };
        vec![
            c("ip-addr.txt", &["ip", "-s", "addr"]),
            c("ip-route.txt", &["ip", "route"]),
            c("ip-route6.txt", &["ip", "-6", "route"]),
            c("nft-ruleset.txt", &["nft", "list", "ruleset"]),
            c("dmesg.txt", &["dmesg"]),
            c("uptime.txt", &["uptime"]),
            c("meminfo.txt", &["cat", "/proc/meminfo"]),
            c("ps.txt", &["ps"]),
            c("df.txt", &["df"]),
        ]
    }
}

/// Writes the bundle; returns the list of files it holds.
pub fn write(out: impl Write, src: &Sources, now: u64) -> std::io::Result<Vec<String>> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add =
        |name: &str, bytes: Vec<u8>| files.push((format!("tandem-support/{name}"), bytes));

    let mut log = read(&src.log_dir.join("previous.log"));
    log.push_str(&read(&src.log_dir.join("current.log")));
    add("logs/tandem.log", redact_text(&log).into_bytes());

    for name in ["appliance.yaml", "tandem.yaml"] {
        let p = src.config_dir.join(name);
        if p.exists() {
            add(
                &format!("config/{name}"),
                redact_yaml(&read(&p)).into_bytes(),
            );
        }
    }
    let store = src.config_dir.join("config");
    add("config/current", read(&store.join("current")).into_bytes());
    let mut versions: Vec<PathBuf> = std::fs::read_dir(store.join("versions"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    for v in versions {
        let name = v
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = read(&v);
        let redacted = if name.ends_with(".yaml") {
            redact_yaml(&text)
        } else if name.ends_with(".json") {
            redact_json(&text)
        } else {
            continue;
        };
        add(&format!("config/versions/{name}"), redacted.into_bytes());
    }
    // The sync certificate is public (its fingerprint is shown on the console); its key is not read.
    let cert = src.config_dir.join("sync/cert.pem");
    if cert.exists() {
        add("config/sync-cert.pem", read(&cert).into_bytes());
    }

    let json = |r: &Result<Value, String>| match r {
        Ok(v) => {
            let mut v = v.clone();
            redact_value(&mut v);
            serde_json::to_vec_pretty(&v).unwrap_or_default()
        }
        Err(e) => serde_json::to_vec_pretty(&serde_json::json!({ "error": e })).unwrap_or_default(),
    };
    add("status.json", json(&src.status));
    add("firmware.json", json(&src.firmware));

    for (name, argv) in &src.commands {
        let text = match std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
        {
            Ok(o) => format!(
                "$ {}\n{}{}",
                argv.join(" "),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("$ {}\n({e})\n", argv.join(" ")),
        };
        add(&format!("system/{name}"), redact_text(&text).into_bytes());
    }

    let listing: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let readme = format!(
        "Tandem support bundle, made at {} (Unix {now}).\n\
         Secrets (private keys, password and token hashes) are replaced by {REDACTED}.\n\n{}\n",
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(now)
        ),
        listing.join("\n")
    );
    files.insert(0, ("tandem-support/README.txt".into(), readme.into_bytes()));

    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    for (name, bytes) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(now);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, bytes.as_slice())?;
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(files.into_iter().map(|(n, _)| n).collect())
}

/// `tandemctl support-bundle`.
pub fn run(
    socket: &Path,
    config_dir: &Path,
    output: Option<PathBuf>,
    out: &mut dyn Write,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::control::protocol::{Request, Response};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let status = match crate::control::client::call(socket, &Request::Status) {
        Ok(Response::Status(v)) => Ok(*v),
        Ok(other) => Err(format!("tandemd answered {other:?}")),
        Err(e) => Err(e.to_string()),
    };
    let firmware = crate::firmware::Disk::discover()
        .and_then(|d| crate::firmware::status(&d, crate::firmware::BootState::current()))
        .map(|s| serde_json::to_value(s).unwrap_or_default())
        .map_err(|e| format!("{e:#}"));
    let src = Sources {
        config_dir: config_dir.to_owned(),
        log_dir: PathBuf::from(crate::setup::logring::DEFAULT_DIR),
        status,
        firmware,
        commands: Sources::default_commands(),
    };
    let path = output.unwrap_or_else(|| PathBuf::from(format!("/tmp/tandem-support-{now}.tar.gz")));
    let file = std::fs::File::create(&path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    let names = write(std::io::BufWriter::new(file), &src, now)?;
    writeln!(
        out,
        "{}: {} files, secrets removed",
        path.display(),
        names.len()
    )?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----";
    const CERT: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----";

    #[test]
    fn secret_keys_are_redacted_at_any_depth_and_the_rest_is_kept() {
        let yaml = format!(
            "schema: 1\nshared:\n  certificates:\n    - name: web\n      cert_pem: |\n        {}\n      key_pem: |\n        {}\n  users:\n    - name: admin\n      password_hash: $argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\nnode:\n  management:\n    metrics:\n      token_sha256: {}\n",
            CERT.replace('\n', "\n        "),
            KEY.replace('\n', "\n        "),
            "ab".repeat(32)
        );
        let out = redact_yaml(&yaml);
        assert!(!out.contains("MIGHAgEA"), "{out}");
        assert!(!out.contains("$argon2id"), "{out}");
        assert!(!out.contains(&"ab".repeat(32)), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 3, "{out}");
        assert!(
            out.contains("MIIBszCCAVmgAwIBAgIU"),
            "certificates are public: {out}"
        );
        assert!(out.contains("name: admin"));
    }

    #[test]
    fn free_text_loses_private_keys_and_hashes() {
        let text = format!("before\n{KEY}\nafter {CERT} hash $argon2id$v=19$x$y end");
        let out = redact_text(&text);
        assert!(!out.contains("MIGHAgEA"));
        assert!(!out.contains("$argon2id"));
        assert!(out.contains("before") && out.contains("after") && out.contains("end"));
        assert!(out.contains("MIIBszCCAVmgAwIBAgIU"));
        // An unterminated key block is cut to the end.
        assert!(!redact_text("x -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE").contains("MHcCAQEE"));
    }

    #[test]
    fn unparsable_yaml_is_redacted_line_by_line() {
        let out = redact_yaml("a: [unclosed\n  key_pem: secretstuff\n");
        assert!(!out.contains("secretstuff"), "{out}");
    }

    #[test]
    fn the_bundle_holds_logs_versions_status_and_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::create_dir_all(cfg.join("config/versions")).unwrap();
        std::fs::create_dir_all(cfg.join("sync")).unwrap();
        std::fs::write(cfg.join("config/current"), "0000000001-0000000001").unwrap();
        std::fs::write(
            cfg.join("config/versions/0000000001-0000000001.yaml"),
            format!("schema: 1\nshared:\n  certificates:\n    - name: c\n      key_pem: |\n        {}\n", KEY.replace('\n', "\n        ")),
        )
        .unwrap();
        std::fs::write(cfg.join("admin-password.argon2"), "$argon2id$v=19$secret").unwrap();
        std::fs::write(cfg.join("sync/key.pem"), KEY).unwrap();
        std::fs::write(cfg.join("sync/cert.pem"), CERT).unwrap();
        let logs = dir.path().join("log");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("current.log"), "tandemd started\n").unwrap();
        let src = Sources {
            config_dir: cfg,
            log_dir: logs,
            status: Ok(serde_json::json!({"dataplane": {"connections": 3}, "token": "t0ps3cret"})),
            firmware: Err("not an appliance".into()),
            commands: vec![("echo.txt".into(), vec!["echo".into(), "hello".into()])],
        };
        let mut out = Vec::new();
        let names = write(&mut out, &src, 1_700_000_000).unwrap();
        assert!(names.contains(&"tandem-support/logs/tandem.log".to_owned()));
        assert!(
            names.contains(&"tandem-support/config/versions/0000000001-0000000001.yaml".to_owned())
        );
        let mut all = String::new();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(out.as_slice()));
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            all.push_str(&s);
        }
        assert!(all.contains("tandemd started"));
        assert!(all.contains("\"connections\": 3"));
        assert!(all.contains("not an appliance"));
        assert!(all.contains("$ echo hello\nhello"));
        assert!(!all.contains("MIGHAgEA"), "a private key leaked");
        assert!(!all.contains("t0ps3cret"));
        assert!(!all.contains("$argon2id$v=19$secret"));
    }
}
