//! `tandemctl`, the operator's command line. Local commands (`check`) need no daemon; the
//! others talk to tandemd over its root-only control socket.

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
    }
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
        Response::Versions { versions } => {
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
            Ok(ExitCode::SUCCESS)
        }
        Response::Status(status) => {
            writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
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
