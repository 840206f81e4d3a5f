//! tandemd: loads the config, starts the dataplane, the pair's heartbeat, the sync link and
//! the management listener, serves the control socket, and reacts to signals (SIGHUP reloads,
//! SIGTERM/SIGINT hand the VIPs over to the peer, close the sync link, then stop the dataplane
//! gracefully).

mod admin_backend;
pub mod args;
mod control_handler;
pub mod ha;
mod running_config;
mod status;
mod sync;

use anyhow::Context;
use args::Args;
use running_config::RunningConfig;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tandem_config::store::Store;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Mutex;

/// Everything the control socket and the management plane act on.
pub struct Daemon {
    pub running: Mutex<RunningConfig>,
    pub dataplane: tandem_dataplane::Dataplane,
    /// The heartbeat and the pair's role (a standalone box has no heartbeat).
    pub pair: Arc<ha::Pair>,
    /// The link to the peer's tandemd (`node.sync`); none on a box without a peer.
    pub sync: Option<Arc<tandem_sync::SyncHandle>>,
    pub started: Instant,
}

impl Daemon {
    /// The pair's role as it changes, for the parts that follow it (sync, the console):
    /// Active while this box holds the VIPs; always Active on a standalone box.
    pub fn role(&self) -> tokio::sync::watch::Receiver<tandem_ha::Role> {
        self.pair.role()
    }
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

    // After the dataplane: its listeners are bound (IP_FREEBIND) before this box may take a VIP.
    let pair = Arc::new(ha::Pair::start(&config.node, &startup.version.shared, &dataplane).await?);
    if pair.is_pair() {
        tracing::info!(role = pair.role_name(), "heartbeat running");
    }

    // After the heartbeat: the link follows its role from the first moment, so a box that
    // starts passive never writes to the peer.
    let audit = tandem_sync::AuditLog::open(&args.state_dir, &config.node.name)
        .context("the audit log cannot be opened")?;
    let sync = sync::start(
        &config.node,
        &args.state_dir,
        &dataplane,
        &pair,
        audit.clone(),
    )
    .await?;

    let daemon = Arc::new(Daemon {
        running: Mutex::new(
            RunningConfig::new(
                store,
                config.node.clone(),
                args.config.clone(),
                startup.version,
                dataplane.clone(),
                pair.clone(),
            )
            .with_sync(sync.clone()),
        ),
        dataplane: dataplane.clone(),
        pair: pair.clone(),
        sync: sync.clone(),
        started: Instant::now(),
    });
    if let Some(sync) = &sync {
        tokio::spawn(sync::follow(daemon.clone(), sync.clone(), audit.clone()));
    }

    // The console (docs/console.md): users come from the shared config; the first-boot
    // wizard's admin password is taken over first, so it logs in from the start.
    if let Some(what) = admin_backend::import_admin_password(&daemon, &args.state_dir, &audit).await
    {
        tracing::info!("{what}");
    }
    let alerts = tandem_admin::alerts::AlertSender::start(
        (*daemon.running.lock().await.current().shared.alerts).clone(),
    );
    tokio::spawn(admin_backend::watch(
        daemon.clone(),
        args.state_dir.clone(),
        audit.clone(),
        alerts.clone(),
        sync.clone(),
    ));
    let management = tandem_admin::Management::start_console(
        &config.node.management,
        &args.state_dir,
        status::metrics_source(daemon.clone()),
        Arc::new(admin_backend::AdminBackend::new(
            daemon.clone(),
            audit,
            sync.clone(),
        )),
        Some(alerts),
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
    // The VIPs first, make before break: the dataplane keeps serving them until the peer has
    // announced itself, so a graceful stop loses nothing.
    pair.shutdown().await;
    // Then the link, with a goodbye frame: the peer, now active, stops waiting for us at once
    // instead of after its dead-peer timeout. Before the dataplane, whose state it reads.
    if let Some(sync) = &sync {
        sync.shutdown().await;
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

/// Milliseconds since the Unix epoch (0 for a clock before it), as audit entries and the
/// status JSON give times.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
