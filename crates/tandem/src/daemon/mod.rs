//! tandemd: loads the config, starts the dataplane and the management listener, serves the
//! control socket, and reacts to signals (SIGHUP reloads, SIGTERM/SIGINT stop gracefully).

pub mod args;
mod control_handler;
mod running_config;
mod status;

use anyhow::Context;
use args::Args;
use running_config::RunningConfig;
use std::sync::Arc;
use std::time::Instant;
use tandem_config::store::Store;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;

/// Everything the control socket and the management plane act on.
pub struct Daemon {
    pub running: Mutex<RunningConfig>,
    pub dataplane: tandem_dataplane::Dataplane,
    pub started: Instant,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = match tandem_config::load_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            // The operator reads these lines on the console: one per problem.
            eprintln!("{e}");
            anyhow::bail!(
                "refusing to start: {} is not a valid config",
                args.config.display()
            );
        }
    };
    std::fs::create_dir_all(&args.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            args.state_dir.display()
        )
    })?;
    let store = Store::open(&args.state_dir)?;
    let startup = running_config::initial_shared(&store, &args.config, &config)?;
    tracing::info!(
        node = %config.node.name,
        version = %startup.version.meta.id,
        imported = startup.imported,
        "starting"
    );

    let dataplane = tandem_dataplane::Dataplane::start(
        Arc::new(startup.version.shared.clone()),
        tandem_dataplane::DataplaneOptions::new(&args.state_dir, &config.node.name),
    )
    .await
    .context("the dataplane cannot start")?;

    let daemon = Arc::new(Daemon {
        running: Mutex::new(RunningConfig::new(
            store,
            config.node.clone(),
            args.config.clone(),
            startup.version,
            dataplane.clone(),
        )),
        dataplane: dataplane.clone(),
        started: Instant::now(),
    });

    let management = tandem_admin::Management::start(
        &config.node.management,
        &args.state_dir,
        status::metrics_source(daemon.clone()),
    )
    .await
    .context("the management listener cannot start")?;
    tracing::info!(address = %management.local_addr(), "management listener (HTTPS) ready");

    let listener = crate::control::server::bind(&args.control_socket).with_context(|| {
        format!(
            "cannot bind the control socket {}",
            args.control_socket.display()
        )
    })?;
    let handler_daemon = daemon.clone();
    tokio::spawn(crate::control::server::serve(
        listener,
        args.control_socket.clone(),
        move |req| control_handler::handle(handler_daemon.clone(), req),
    ));
    tracing::info!(socket = %args.control_socket.display(), "control socket ready");

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let mut running = daemon.running.lock().await;
                match running.reload_file().await {
                    Ok(a) => tracing::info!(version = %a.version, changed = a.changed, notes = ?a.notes, "SIGHUP: config reloaded"),
                    Err(e) => tracing::error!(error = %e, details = %refusal_details(&e), "SIGHUP: config refused; the running config is unchanged"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(grace = ?args.shutdown_grace, "stopping: listeners closed, connections in flight may finish");
    let _ = std::fs::remove_file(&args.control_socket);
    dataplane.shutdown(args.shutdown_grace).await;
    tracing::info!("stopped");
    Ok(())
}

fn refusal_details(e: &running_config::Refusal) -> String {
    match e {
        running_config::Refusal::Invalid(d) => d.to_string(),
        other => other.to_string(),
    }
}
