//! What the protocol core reads and writes on this box: the config store's versions and
//! branches, the writer epoch, and the audit log. [`DiskStore`] is tandem-config's store plus
//! the audit log; [`MemoryStore`] serves the core's unit tests and the bench.
//!
//! The core only *stores* replicated versions (`put_replicated`, `keep_branch`); making one
//! current is tandemd's `RunningConfig`'s job (it applies it to the dataplane first), told by
//! the core's `RunVersion` action.

use crate::audit::{AuditEntry, AuditLog};
use crate::wire::{AuditMark, WireVersionId, WireVersionMeta};
use std::collections::BTreeMap;
use tandem_config::store::{KeptBranch, Store, VersionId, VersionMeta, hash_hex};

/// The box's persistent state as the core needs it. Errors are text: the core logs them and
/// carries on (a failed store write is retried at the next connect).
pub trait LocalStore: Send {
    /// The version that runs.
    fn running(&self) -> Option<VersionId>;
    /// Every stored version of the history (not kept branches).
    fn versions(&self) -> Vec<VersionMeta>;
    /// The canonical text of a stored version.
    fn text(&self, id: &VersionId) -> Option<String>;
    fn put_replicated(&mut self, meta: &VersionMeta, text: &str) -> Result<(), String>;
    fn keep_branch(
        &mut self,
        versions: &[(VersionMeta, String)],
        superseded_by: &VersionId,
        winner: &str,
    ) -> Result<KeptBranch, String>;
    fn max_epoch(&self) -> u64;
    fn begin_epoch(&mut self, epoch: u64) -> Result<(), String>;
    fn audit_marks(&self) -> Vec<AuditMark>;
    fn audit_since(&self, origin: &str, after: u64) -> Vec<AuditEntry>;
    /// Returns how many entries were new.
    fn audit_append(&mut self, entries: &[AuditEntry]) -> Result<usize, String>;
    /// Changes when the audit log gains an entry (the link then sends it on).
    fn audit_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// tandem-config's versioned store and the audit log, on disk.
pub struct DiskStore {
    pub store: Store,
    pub audit: AuditLog,
}

impl LocalStore for DiskStore {
    fn running(&self) -> Option<VersionId> {
        match self.store.current() {
            Ok(v) => v.map(|v| v.meta.id),
            Err(e) => {
                tracing::warn!(error = %e, "sync: the config store's current version cannot be read");
                None
            }
        }
    }

    fn versions(&self) -> Vec<VersionMeta> {
        self.store.list().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "sync: the config store cannot be listed");
            Vec::new()
        })
    }

    fn text(&self, id: &VersionId) -> Option<String> {
        self.store
            .get(id.epoch, id.n)
            .ok()
            .filter(|v| v.meta.id == *id)
            .map(|v| v.text)
    }

    fn put_replicated(&mut self, meta: &VersionMeta, text: &str) -> Result<(), String> {
        self.store
            .put_replicated(meta, text)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn keep_branch(
        &mut self,
        versions: &[(VersionMeta, String)],
        superseded_by: &VersionId,
        winner: &str,
    ) -> Result<KeptBranch, String> {
        self.store
            .keep_branch(versions, superseded_by, winner)
            .map_err(|e| e.to_string())
    }

    fn max_epoch(&self) -> u64 {
        self.store.max_epoch().unwrap_or(0)
    }

    fn begin_epoch(&mut self, epoch: u64) -> Result<(), String> {
        self.store.begin_epoch(epoch).map_err(|e| e.to_string())
    }

    fn audit_marks(&self) -> Vec<AuditMark> {
        self.audit.marks()
    }

    fn audit_since(&self, origin: &str, after: u64) -> Vec<AuditEntry> {
        self.audit.since(origin, after)
    }

    fn audit_append(&mut self, entries: &[AuditEntry]) -> Result<usize, String> {
        self.audit
            .append_replicated(entries)
            .map_err(|e| e.to_string())
    }

    fn audit_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.audit.watch())
    }
}

/// The same in memory: versions by id, a current one, kept branches, the audit log.
#[derive(Debug)]
pub struct MemoryStore {
    pub versions: BTreeMap<(u64, u64), (VersionMeta, String)>,
    pub current: Option<VersionId>,
    pub branches: Vec<KeptBranch>,
    pub branch_texts: Vec<(VersionMeta, String)>,
    pub epoch: u64,
    pub audit: AuditLog,
}

impl MemoryStore {
    pub fn new(node: &str) -> Self {
        MemoryStore {
            versions: BTreeMap::new(),
            current: None,
            branches: Vec::new(),
            branch_texts: Vec::new(),
            epoch: 0,
            audit: AuditLog::in_memory(node),
        }
    }

    /// Commits `text` on top of the current version (as `Store::commit` numbers it) and
    /// makes it current. The text is any string: only its hash matters here.
    pub fn commit(&mut self, text: &str, node: &str) -> VersionMeta {
        let parent = self.current.clone();
        let (epoch, n) = parent
            .as_ref()
            .map(|p| (p.epoch.max(self.epoch), p.n + 1))
            .unwrap_or((self.epoch.max(1), 1));
        let meta = VersionMeta {
            id: VersionId {
                epoch,
                n,
                hash: hash_hex(text),
            },
            parent,
            committed_at: 0,
            author: "test".into(),
            reason: "commit".into(),
            node: node.into(),
        };
        self.versions
            .insert((epoch, n), (meta.clone(), text.to_owned()));
        self.current = Some(meta.id.clone());
        meta
    }

    /// Makes a stored version current (tandemd's part after a `RunVersion`).
    pub fn set_current(&mut self, id: &VersionId) -> bool {
        let stored = self
            .versions
            .get(&(id.epoch, id.n))
            .is_some_and(|(m, _)| m.id == *id);
        if stored {
            self.current = Some(id.clone());
        }
        stored
    }

    pub fn current_text(&self) -> Option<&str> {
        let id = self.current.as_ref()?;
        self.versions
            .get(&(id.epoch, id.n))
            .map(|(_, t)| t.as_str())
    }
}

impl LocalStore for MemoryStore {
    fn running(&self) -> Option<VersionId> {
        self.current.clone()
    }

    fn versions(&self) -> Vec<VersionMeta> {
        self.versions.values().map(|(m, _)| m.clone()).collect()
    }

    fn text(&self, id: &VersionId) -> Option<String> {
        self.versions
            .get(&(id.epoch, id.n))
            .filter(|(m, _)| m.id == *id)
            .map(|(_, t)| t.clone())
    }

    fn put_replicated(&mut self, meta: &VersionMeta, text: &str) -> Result<(), String> {
        if hash_hex(text) != meta.id.hash {
            return Err(format!(
                "version {}: content does not match its hash",
                meta.id
            ));
        }
        self.versions
            .insert((meta.id.epoch, meta.id.n), (meta.clone(), text.to_owned()));
        Ok(())
    }

    fn keep_branch(
        &mut self,
        versions: &[(VersionMeta, String)],
        superseded_by: &VersionId,
        winner: &str,
    ) -> Result<KeptBranch, String> {
        let first = &versions.first().ok_or("an empty branch")?.0;
        if let Some((m, _)) = versions.iter().find(|(m, t)| hash_hex(t) != m.id.hash) {
            return Err(format!("version {}: content does not match its hash", m.id));
        }
        let name = format!("{}-{}-{}", first.id.epoch, first.id.n, &first.id.hash[..8]);
        if let Some(b) = self.branches.iter().find(|b| b.name == name) {
            return Ok(b.clone());
        }
        for (meta, text) in versions {
            self.branch_texts.push((meta.clone(), text.clone()));
            let key = (meta.id.epoch, meta.id.n);
            if self.current.as_ref() != Some(&meta.id)
                && self
                    .versions
                    .get(&key)
                    .is_some_and(|(m, _)| m.id == meta.id)
            {
                self.versions.remove(&key);
            }
        }
        let kept = KeptBranch {
            name,
            versions: versions.iter().map(|(m, _)| m.clone()).collect(),
            superseded_by: superseded_by.clone(),
            winner: winner.into(),
            kept_at: 0,
        };
        self.branches.push(kept.clone());
        Ok(kept)
    }

    fn max_epoch(&self) -> u64 {
        self.versions
            .values()
            .map(|(m, _)| m.id.epoch)
            .chain(self.branch_texts.iter().map(|(m, _)| m.id.epoch))
            .fold(self.epoch, u64::max)
    }

    fn begin_epoch(&mut self, epoch: u64) -> Result<(), String> {
        self.epoch = self.epoch.max(epoch);
        Ok(())
    }

    fn audit_marks(&self) -> Vec<AuditMark> {
        self.audit.marks()
    }

    fn audit_since(&self, origin: &str, after: u64) -> Vec<AuditEntry> {
        self.audit.since(origin, after)
    }

    fn audit_append(&mut self, entries: &[AuditEntry]) -> Result<usize, String> {
        self.audit
            .append_replicated(entries)
            .map_err(|e| e.to_string())
    }

    fn audit_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.audit.watch())
    }
}

impl From<&VersionId> for WireVersionId {
    fn from(id: &VersionId) -> Self {
        WireVersionId {
            epoch: id.epoch,
            n: id.n,
            hash: id.hash.clone(),
        }
    }
}

impl From<&WireVersionId> for VersionId {
    fn from(id: &WireVersionId) -> Self {
        VersionId {
            epoch: id.epoch,
            n: id.n,
            hash: id.hash.clone(),
        }
    }
}

impl From<&VersionMeta> for WireVersionMeta {
    fn from(m: &VersionMeta) -> Self {
        WireVersionMeta {
            id: (&m.id).into(),
            parent: m.parent.as_ref().map(Into::into),
            committed_at: m.committed_at,
            author: m.author.clone(),
            reason: m.reason.clone(),
            node: m.node.clone(),
        }
    }
}

impl From<&WireVersionMeta> for VersionMeta {
    fn from(m: &WireVersionMeta) -> Self {
        VersionMeta {
            id: (&m.id).into(),
            parent: m.parent.as_ref().map(Into::into),
            committed_at: m.committed_at,
            author: m.author.clone(),
            reason: m.reason.clone(),
            node: m.node.clone(),
        }
    }
}
