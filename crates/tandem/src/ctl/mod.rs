//! `tandemctl`, the operator's command line. Local commands (`check`) need no daemon; the
//! others talk to tandemd over its root-only control socket.

mod remote;
mod status_table;

use crate::control::client;
use crate::control::protocol::{Request, Response};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "tandemctl", version, about = "Operate a Tandem load balancer")]
pub struct Cli {
    /// The control socket of tandemd.
    #[arg(long, env = "TANDEM_SOCKET", default_value = crate::control::DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    /// Talk to a box's REST API instead of the local socket, e.g. `https://192.0.2.10:9443`
    /// (status, server, failover, versions).
    #[arg(long, env = "TANDEM_API", global = true)]
    api: Option<String>,
    /// The API token (`Authorization: Bearer`), from the console's Users page.
    #[arg(long, env = "TANDEM_API_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The SHA-256 fingerprint of the management certificate, to pin it.
    #[arg(long, env = "TANDEM_API_FINGERPRINT", global = true)]
    api_fingerprint: Option<String>,
    /// Do not check the management certificate at all.
    #[arg(long, global = true)]
    insecure: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate config files without applying them; print every problem as
    /// `file:line:column: what is wrong — how to fix it`.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate a config file and commit its shared part as a new running version.
    Apply { file: PathBuf },
    /// Show the box: role, config version, services and servers with counters.
    Status {
        /// Print the raw JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// List the committed config versions.
    Versions,
    /// Re-read tandemd's own config file, as SIGHUP does.
    Reload,
    /// Hand the VIPs over to the peer, make before break (run it on the active box); this box
    /// then stays passive until the peer fails or hands them back.
    Failover,
    /// Enable, drain or disable a server (a config commit), e.g. `server drain web/web1`.
    Server {
        #[arg(value_parser = ["enable", "drain", "disable"])]
        action: String,
        /// POOL/SERVER-ID
        server: String,
    },
    /// Read a password on standard input and print its argon2id hash (for `shared.users`).
    HashPassword,
    /// Firmware updates: status, verify, apply, confirm; build and sign (see docs/image.md).
    #[command(subcommand)]
    Firmware(crate::firmware::cli::Command),
    /// Write one archive of logs, config versions (secrets removed), status and counters.
    SupportBundle {
        /// The archive to write; default /tmp/tandem-support-<time>.tar.gz.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The config partition.
        #[arg(long, default_value = "/config")]
        config_dir: PathBuf,
    },
}

/// Runs the command line, writing to `out` and `err`; returns the process exit code.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match execute(cli, out, err) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "tandemctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if let Some(url) = &cli.api {
        return remote_command(&cli, url, out, err);
    }
    match cli.command {
        Command::Check { files } => Ok(check(&files, out, err)?),
        Command::Apply { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                anyhow::anyhow!("{}: cannot read the config file: {e}", file.display())
            })?;
            let file = std::path::absolute(&file).unwrap_or(file);
            let request = Request::Apply {
                text,
                file: Some(file),
                author: current_user(),
            };
            answer(client::call(&cli.socket, &request)?, out, err)
        }
        Command::Status { json } => match client::call(&cli.socket, &Request::Status)? {
            Response::Status(status) if json => {
                writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
                Ok(ExitCode::SUCCESS)
            }
            Response::Status(status) => {
                status_table::print(&status, out)?;
                Ok(ExitCode::SUCCESS)
            }
            other => answer(other, out, err),
        },
        Command::Versions => answer(client::call(&cli.socket, &Request::Versions)?, out, err),
        Command::Reload => answer(client::call(&cli.socket, &Request::Reload)?, out, err),
        Command::Failover => match client::call(&cli.socket, &Request::Failover)? {
            // Not `answer`: a refused handover changes no config.
            Response::Refused { message, .. } => {
                writeln!(err, "refused: {message}")?;
                Ok(ExitCode::FAILURE)
            }
            other => answer(other, out, err),
        },
        Command::Server { .. } => anyhow::bail!(
            "`server` goes through the REST API: give --api https://HOST:PORT and --token (or use the console)"
        ),
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            if let Err(e) = tandem_admin::secret::check_password_policy(password) {
                anyhow::bail!("{e}");
            }
            writeln!(out, "{}", tandem_admin::secret::hash_password(password))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Firmware(cmd) => crate::firmware::cli::run(cmd, out, err),
        Command::SupportBundle { output, config_dir } => {
            crate::support_bundle::run(&cli.socket, &config_dir, output, out)
        }
    }
}

fn remote_command(
    cli: &Cli,
    url: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let token = cli
        .token
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--api needs --token (or TANDEM_API_TOKEN)"))?;
    let api = remote::Api::new(url, token, cli.api_fingerprint.as_deref(), cli.insecure)?;
    let ok = match &cli.command {
        Command::Status { json } => {
            let (status, body) = api.call("GET", "/api/v1/status", None)?;
            if status == 200 && !json {
                let v: serde_json::Value = serde_json::from_str(&body)?;
                writeln!(
                    out,
                    "{} is {}, config {}, {}",
                    v["node"].as_str().unwrap_or("?"),
                    v["role"].as_str().unwrap_or("?"),
                    v["config"]["id"]["epoch"]
                        .as_u64()
                        .map(|e| format!("{e}.{}", v["config"]["id"]["n"]))
                        .unwrap_or_default(),
                    if v["healthy"].as_bool() == Some(true) {
                        "healthy"
                    } else {
                        "degraded"
                    }
                )?;
                for r in v["routers"].as_array().into_iter().flatten() {
                    writeln!(
                        out,
                        "  router {}: {} (VIPs held by {})",
                        r["name"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or(""),
                        r["holder"].as_str().unwrap_or("")
                    )?;
                }
                let (s2, stats) = api.call("GET", "/api/v1/stats", None)?;
                if s2 == 200 {
                    let st: serde_json::Value = serde_json::from_str(&stats)?;
                    for s in st["servers"].as_array().into_iter().flatten() {
                        writeln!(
                            out,
                            "  server {}/{} {} admin={} health={} active={}",
                            s["pool"].as_str().unwrap_or(""),
                            s["id"].as_str().unwrap_or(""),
                            s["address"].as_str().unwrap_or(""),
                            s["admin"].as_str().unwrap_or(""),
                            s["health"].as_str().unwrap_or("?"),
                            s["traffic"]["active"]
                        )?;
                    }
                }
                true
            } else {
                remote::print_answer(status, &body, out, err)?
            }
        }
        Command::Server { action, server } => {
            let (pool, id) = server
                .split_once('/')
                .ok_or_else(|| anyhow::anyhow!("write the server as POOL/ID, e.g. web/web1"))?;
            let state = match action.as_str() {
                "enable" => "enabled",
                "disable" => "disabled",
                _ => "drain",
            };
            let (status, body) = api.call(
                "PUT",
                &format!("/api/v1/pools/{pool}/servers/{id}/state"),
                Some(&serde_json::json!({ "state": state })),
            )?;
            remote::print_answer(status, &body, out, err)?
        }
        Command::Failover => {
            let (status, body) = api.call("POST", "/api/v1/ha/failover", None)?;
            remote::print_answer(status, &body, out, err)?
        }
        Command::Versions => {
            let (status, body) = api.call("GET", "/api/v1/versions", None)?;
            remote::print_answer(status, &body, out, err)?
        }
        _ => anyhow::bail!("this command works on the box only (without --api)"),
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check(files: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for file in files {
        match std::fs::read_to_string(file) {
            Err(e) => {
                ok = false;
                writeln!(err, "{}: cannot read the config file: {e}", file.display())?;
            }
            Ok(text) => match tandem_config::parse_document(&text, Some(file)) {
                Ok(_) => writeln!(out, "{}: ok", file.display())?,
                Err(diagnostics) => {
                    ok = false;
                    for line in diagnostics.lines() {
                        writeln!(err, "{line}")?;
                    }
                }
            },
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn answer(
    response: Response,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match response {
        Response::Applied {
            version,
            changed,
            notes,
        } => {
            if changed {
                writeln!(out, "committed version {version}; it is running")?;
            } else {
                writeln!(out, "no change: version {version} already has this content")?;
            }
            for note in notes {
                writeln!(out, "note: {note}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Response::Refused {
            message,
            diagnostics,
        } => {
            writeln!(err, "refused: {message}")?;
            for line in diagnostics.iter().flat_map(|d| d.lines()) {
                writeln!(err, "{line}")?;
            }
            writeln!(err, "the running config is unchanged")?;
            Ok(ExitCode::FAILURE)
        }
        Response::Versions { versions, branches } => {
            writeln!(
                out,
                "{:<24} {:<20} {:<12} REASON",
                "VERSION", "COMMITTED (UTC)", "AUTHOR"
            )?;
            for v in versions {
                let when = humantime_utc(v.committed_at);
                writeln!(
                    out,
                    "{:<24} {:<20} {:<12} {}",
                    v.id.to_string(),
                    when,
                    v.author,
                    v.reason
                )?;
            }
            // After a partition: what the losing side committed, kept for the operator.
            for b in branches {
                writeln!(
                    out,
                    "\nkept branch {} (superseded by {} of {}, kept {}):",
                    b.name,
                    b.superseded_by,
                    b.winner,
                    humantime_utc(b.kept_at)
                )?;
                for v in b.versions {
                    writeln!(
                        out,
                        "  {:<22} {:<20} {:<12} {}",
                        v.id.to_string(),
                        humantime_utc(v.committed_at),
                        v.author,
                        v.reason
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Response::Status(status) => {
            writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Response::Done { message } => {
            writeln!(out, "{message}")?;
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message } => {
            writeln!(err, "error: {message}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn humantime_utc(unix_seconds: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    let mut s = humantime::format_rfc3339_seconds(t).to_string();
    s.truncate(19);
    s.replace('T', " ")
}

fn current_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}
