//! What runs and how it changes. Every change of the shared config — `tandemctl apply`,
//! SIGHUP, the console — goes through [`RunningConfig::apply`]: refuse it on the passive box,
//! validate, swap into the dataplane, commit to the store, tell the sync link, then hand a
//! changed VRRP part to the heartbeat. A refused change leaves everything as it was.
//!
//! The one other way the running config changes is a version replicated from the active box
//! ([`RunningConfig::run_replicated`]): already stored by the sync link, it is swapped into the
//! dataplane and made current, never committed again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_config::store::{CommitInfo, Store, Version, VersionId, VersionMeta, hash_hex};
use tandem_config::{Config, Diagnostics, NodeConfig, SharedConfig};
use tandem_dataplane::Dataplane;
use tandem_sync::SyncHandle;

use super::ha::Pair;

/// Why a change was refused. The running config is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the config is invalid")]
    Invalid(Diagnostics),
    #[error("the dataplane cannot run it: {0}")]
    Dataplane(String),
    #[error("the config store failed: {0}")]
    Store(String),
    /// This box is the pair's passive box: only the active one writes the shared config. The
    /// message names the active box, so the operator knows where to go.
    #[error("{0}")]
    Passive(String),
}

pub struct Applied {
    pub version: VersionId,
    pub changed: bool,
    pub notes: Vec<String>,
}

pub struct RunningConfig {
    store: Store,
    node: NodeConfig,
    config_file: PathBuf,
    current: Version,
    dataplane: Dataplane,
    pair: Arc<Pair>,
    /// The pair's sync link, when `node.sync` names a peer: it says whether this box may write
    /// and carries each commit to the passive box.
    sync: Option<Arc<SyncHandle>>,
}

/// Where the shared config to start with comes from (see [`initial_shared`]).
pub struct Startup {
    pub version: Version,
    /// Set when the config file was imported as a new version.
    pub imported: bool,
}

/// Picks the shared config to start with: the store's current version, unless the config
/// file's shared part changed since it was last imported (or nothing was ever committed), in
/// which case the file is committed first. So edits made in the console survive a restart,
/// and an operator who edits the file and restarts gets the file.
pub fn initial_shared(store: &Store, file: &Path, config: &Config) -> anyhow::Result<Startup> {
    let text = config.shared.to_canonical_yaml();
    let hash = hash_hex(&text);
    let last = store.last_import(file)?;
    let current = match store.current() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the config store's current version cannot be read; starting from the config file");
            None
        }
    };
    if let Some(version) = current
        && last.as_deref() == Some(hash.as_str())
    {
        return Ok(Startup {
            version,
            imported: false,
        });
    }
    let version = store.commit(
        &config.shared,
        CommitInfo {
            author: "startup".into(),
            reason: format!("imported {}", file.display()),
            node: config.node.name.clone(),
        },
    )?;
    store.record_import(file, &hash)?;
    Ok(Startup {
        version,
        imported: true,
    })
}

impl RunningConfig {
    pub fn new(
        store: Store,
        node: NodeConfig,
        config_file: PathBuf,
        current: Version,
        dataplane: Dataplane,
        pair: Arc<Pair>,
    ) -> Self {
        RunningConfig {
            store,
            node,
            config_file,
            current,
            dataplane,
            pair,
            sync: None,
        }
    }

    /// Runs with the pair's sync link: edits are refused while this box is passive, commits
    /// are published to the peer.
    pub fn with_sync(mut self, sync: Option<Arc<SyncHandle>>) -> Self {
        self.sync = sync;
        self
    }

    pub fn current(&self) -> &Version {
        &self.current
    }

    pub fn node(&self) -> &NodeConfig {
        &self.node
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// Refused on the passive box of a pair (every edit path comes here, so none can bypass
    /// it). The sync link's view decides, not the heartbeat's role alone: it also knows the
    /// active box's name and management address for the message.
    pub fn check_writer(&self) -> Result<(), Refusal> {
        match &self.sync {
            Some(sync) => sync
                .pair()
                .borrow()
                .check_edit()
                .map_err(|e| Refusal::Passive(e.message)),
            None => Ok(()),
        }
    }

    /// Validates nothing itself: `shared` comes from a parser that did. Swaps it into the
    /// dataplane, then commits it; if the commit fails the dataplane goes back to the old
    /// config.
    pub async fn apply(
        &mut self,
        shared: SharedConfig,
        info: CommitInfo,
    ) -> Result<Applied, Refusal> {
        self.check_writer()?;
        let text = shared.to_canonical_yaml();
        if hash_hex(&text) == self.current.meta.id.hash {
            return Ok(Applied {
                version: self.current.meta.id.clone(),
                changed: false,
                notes: Vec::new(),
            });
        }
        let shared = Arc::new(shared);
        let report = self
            .dataplane
            .apply(shared.clone())
            .await
            .map_err(|e| Refusal::Dataplane(e.to_string()))?;
        match self.store.commit(&shared, info) {
            Ok(version) => {
                tracing::info!(version = %version.meta.id, author = %version.meta.author, reason = %version.meta.reason, "config version committed and running");
                self.current = version;
                if let Some(sync) = &self.sync {
                    sync.publish_version(&self.current.meta);
                }
                let mut notes = describe(&report);
                notes.extend(
                    self.pair
                        .apply_shared(&self.node, &self.current.shared, &self.dataplane)
                        .await,
                );
                Ok(Applied {
                    version: self.current.meta.id.clone(),
                    changed: true,
                    notes,
                })
            }
            Err(e) => {
                self.restore_dataplane("a failed commit").await;
                Err(Refusal::Store(e.to_string()))
            }
        }
    }

    /// Runs a version the sync link received from the active box and stored: swaps it into
    /// the dataplane and makes it current. Nothing is committed: the version keeps the
    /// identity the active box gave it, so both boxes name the same history. If the dataplane
    /// refuses it, the old config keeps running and the store's current version is unchanged
    /// (the status then shows the two boxes on different versions).
    pub async fn run_replicated(&mut self, meta: &VersionMeta) -> Result<Applied, Refusal> {
        let version = self
            .store
            .get(meta.id.epoch, meta.id.n)
            .map_err(|e| Refusal::Store(e.to_string()))?;
        if version.meta.id != meta.id {
            // Another version with the same (epoch, n): the link stores before it asks, so
            // this is a store out of step with the link; never run the wrong content.
            return Err(Refusal::Store(format!(
                "version {} was asked for but the store holds {}",
                meta.id, version.meta.id
            )));
        }
        let mut notes = Vec::new();
        // The same content under another identity (say both boxes imported the same file)
        // needs no dataplane swap, only the identity.
        let same_content = version.meta.id.hash == self.current.meta.id.hash;
        if !same_content {
            let report = self
                .dataplane
                .apply(Arc::new(version.shared.clone()))
                .await
                .map_err(|e| Refusal::Dataplane(e.to_string()))?;
            notes = describe(&report);
        }
        if let Err(e) = self.store.set_current(&version.meta.id) {
            if !same_content {
                self.restore_dataplane("a failed store update").await;
            }
            return Err(Refusal::Store(e.to_string()));
        }
        self.current = version;
        notes.extend(
            self.pair
                .apply_shared(&self.node, &self.current.shared, &self.dataplane)
                .await,
        );
        Ok(Applied {
            version: self.current.meta.id.clone(),
            changed: !same_content,
            notes,
        })
    }

    /// Puts the current version back into the dataplane when a store write failed after the
    /// dataplane had taken a new one (`after` names the failure, for the log), so that what
    /// runs is what the store says is current.
    async fn restore_dataplane(&self, after: &str) {
        let current = Arc::new(self.current.shared.clone());
        if let Err(e) = self.dataplane.apply(current).await {
            tracing::error!(error = %e, "could not return the dataplane to the current config after {after}");
        }
    }

    /// Re-reads the config file (SIGHUP, `tandemctl reload`): a changed shared part is
    /// applied; node settings need a restart and are reported.
    pub async fn reload_file(&mut self) -> Result<Applied, Refusal> {
        let config = tandem_config::load_file(&self.config_file).map_err(|e| match e {
            tandem_config::LoadError::Invalid(d) => Refusal::Invalid(d),
            other => Refusal::Invalid(Diagnostics {
                file: Some(self.config_file.clone()),
                items: vec![tandem_config::Diagnostic {
                    path: String::new(),
                    line: 0,
                    column: 0,
                    message: other.to_string(),
                    hint: "check the file".into(),
                }],
            }),
        })?;
        let hash = hash_hex(&config.shared.to_canonical_yaml());
        let node_changed = config.node != self.node;
        let info = CommitInfo {
            author: "reload".into(),
            reason: format!("reloaded {}", self.config_file.display()),
            node: self.node.name.clone(),
        };
        let mut applied = self.apply(config.shared, info).await?;
        self.store
            .record_import(&self.config_file, &hash)
            .map_err(|e| Refusal::Store(e.to_string()))?;
        if node_changed {
            applied.notes.push(
                "the node part of the file changed; node settings take effect when tandemd restarts".into(),
            );
        }
        Ok(applied)
    }
}

/// What an apply changed, as lines for the operator.
fn describe(report: &tandem_dataplane::ApplyReport) -> Vec<String> {
    let listener = |l: &tandem_dataplane::ListenerInfo| {
        format!("{} {} ({})", l.protocol.as_str(), l.address, l.service)
    };
    let mut notes: Vec<String> = report
        .added
        .iter()
        .map(|l| format!("now listening on {}", listener(l)))
        .collect();
    notes.extend(report.removed.iter().map(|l| {
        format!(
            "stopped listening on {}; its connections finish",
            listener(l)
        )
    }));
    notes.extend(
        report.health_reset.iter().map(|(pool, id)| {
            format!("server {pool}/{id} changed address; its health starts over")
        }),
    );
    notes
}
