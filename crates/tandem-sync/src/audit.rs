//! The audit log: who changed what, when, and from where. The admin console (issue 5) and
//! `tandemctl` record entries; the sync link carries them to the peer, so that after a failover
//! the new active box still shows what was done on the old one.
//!
//! Unlike the other tables the audit log is a grow-only set, so it flows **both ways**: each
//! box numbers its own entries (`origin`, `n` = 1, 2, …) and each side sends the other the
//! entries it lacks, by origin. Nothing conflicts, so nothing is lost after a partition.
//!
//! `at_unix_ms` is the recording box's wall-clock time: an audit entry says when something was
//! done. It is data, shown to people; the sync protocol never computes with it (lifetimes cross
//! the link as remaining durations, see `docs/sync.md`).
//!
//! Kept as JSON lines in `<state-dir>/audit/audit.jsonl`, appended and fsynced per batch;
//! compacted to the newest [`AuditLog::KEEP`] entries when it grows past twice that.

use crate::wire::AuditMark;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One audit entry. Its field order is part of the sync wire format (`wire.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The box that recorded it (`node.name`).
    pub origin: String,
    /// Its number among that box's entries, from 1.
    pub n: u64,
    /// When, in milliseconds since the Unix epoch, by the recording box's clock.
    pub at_unix_ms: u64,
    /// Who: a user name, `root (tandemctl)`, an API token's name, `tandemd`.
    pub who: String,
    /// From where: the client's address, `serial console`, `local socket`.
    pub from: String,
    /// What, as a stable word: `config.apply`, `config.rollback`, `server.drain`,
    /// `user.create`, `login`, `login.failed`, …
    pub action: String,
    /// What changed, for people: "apply lb.yaml: pool web gained web4".
    pub detail: String,
    /// The config version the change made, if any (`3.17-ab12cd34`).
    pub config_version: Option<String>,
}

/// What a caller records; the log fills in the origin, the number and nothing else.
#[derive(Clone, Debug, Default)]
pub struct NewAuditEntry {
    pub at_unix_ms: u64,
    pub who: String,
    pub from: String,
    pub action: String,
    pub detail: String,
    pub config_version: Option<String>,
}

/// The audit log. A cheap-clone handle; [`AuditLog::watch`] wakes the sync link.
#[derive(Clone, Debug)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: String,
    path: Option<PathBuf>,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<AuditEntry>,
    marks: BTreeMap<String, u64>,
    file_lines: usize,
}

impl AuditLog {
    /// Entries kept.
    pub const KEEP: usize = 100_000;

    /// Opens (creating if needed) the log under `state_dir` for the box `node`.
    pub fn open(state_dir: &Path, node: &str) -> io::Result<AuditLog> {
        let dir = state_dir.join("audit");
        fs::create_dir_all(&dir)?;
        let path = dir.join("audit.jsonl");
        let mut state = State::default();
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    state.file_lines += 1;
                    // A torn last line (power cut mid-append) is skipped, not fatal.
                    if let Ok(e) = serde_json::from_str::<AuditEntry>(&line) {
                        state.add(e);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let log = AuditLog::with_state(node, Some(path), state);
        log.compact_if_needed()?;
        Ok(log)
    }

    /// A log that lives in memory only (tests, benches).
    pub fn in_memory(node: &str) -> AuditLog {
        AuditLog::with_state(node, None, State::default())
    }

    fn with_state(node: &str, path: Option<PathBuf>, state: State) -> AuditLog {
        AuditLog {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                path,
                state: Mutex::new(state),
                changed: watch::Sender::new(0),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an entry made on this box; returns it with its origin and number.
    pub fn record(&self, new: NewAuditEntry) -> io::Result<AuditEntry> {
        let entry = {
            let mut st = self.lock();
            let n = st.marks.get(&self.inner.node).copied().unwrap_or(0) + 1;
            let entry = AuditEntry {
                origin: self.inner.node.clone(),
                n,
                at_unix_ms: new.at_unix_ms,
                who: new.who,
                from: new.from,
                action: new.action,
                detail: new.detail,
                config_version: new.config_version,
            };
            self.persist(&mut st, std::slice::from_ref(&entry))?;
            st.add(entry.clone());
            entry
        };
        self.compact_if_needed()?;
        self.inner.changed.send_modify(|n| *n += 1);
        Ok(entry)
    }

    /// Adds entries received from the peer; those already held are skipped. Returns how many
    /// were new.
    pub fn append_replicated(&self, entries: &[AuditEntry]) -> io::Result<usize> {
        let added = {
            let mut st = self.lock();
            let fresh: Vec<AuditEntry> = entries
                .iter()
                .filter(|e| e.n > st.marks.get(&e.origin).copied().unwrap_or(0))
                .cloned()
                .collect();
            self.persist(&mut st, &fresh)?;
            for e in &fresh {
                st.add(e.clone());
            }
            fresh.len()
        };
        if added > 0 {
            self.compact_if_needed()?;
            self.inner.changed.send_modify(|n| *n += 1);
        }
        Ok(added)
    }

    /// How far this log has each origin's entries.
    pub fn marks(&self) -> Vec<AuditMark> {
        self.lock()
            .marks
            .iter()
            .map(|(origin, n)| AuditMark {
                origin: origin.clone(),
                n: *n,
            })
            .collect()
    }

    /// `origin`'s entries after number `after`, oldest first.
    pub fn since(&self, origin: &str, after: u64) -> Vec<AuditEntry> {
        self.lock()
            .entries
            .iter()
            .filter(|e| e.origin == origin && e.n > after)
            .cloned()
            .collect()
    }

    /// The newest `limit` entries, newest last.
    pub fn recent(&self, limit: usize) -> Vec<AuditEntry> {
        let st = self.lock();
        st.entries[st.entries.len().saturating_sub(limit)..].to_vec()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes whenever an entry is added (locally or from the peer).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    fn persist(&self, st: &mut State, entries: &[AuditEntry]) -> io::Result<()> {
        let Some(path) = &self.inner.path else {
            return Ok(());
        };
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut buf, e).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(&buf)?;
        f.sync_data()?;
        st.file_lines += entries.len();
        Ok(())
    }

    fn compact_if_needed(&self) -> io::Result<()> {
        let mut st = self.lock();
        if st.entries.len() > 2 * Self::KEEP {
            let drop = st.entries.len() - Self::KEEP;
            st.entries.drain(..drop);
        }
        let Some(path) = &self.inner.path else {
            return Ok(());
        };
        if st.file_lines <= 2 * Self::KEEP {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in &st.entries {
            serde_json::to_writer(&mut buf, e).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        tandem_config::store::write_atomic(path, &buf)?;
        st.file_lines = st.entries.len();
        Ok(())
    }
}

impl State {
    fn add(&mut self, e: AuditEntry) {
        let mark = self.marks.entry(e.origin.clone()).or_insert(0);
        *mark = (*mark).max(e.n);
        self.entries.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(action: &str) -> NewAuditEntry {
        NewAuditEntry {
            at_unix_ms: 1_700_000_000_000,
            who: "admin".into(),
            from: "192.0.2.50".into(),
            action: action.into(),
            detail: "d".into(),
            config_version: Some("1.2-abcd".into()),
        }
    }

    #[test]
    fn entries_are_numbered_per_origin_kept_on_disk_and_merged_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditLog::open(dir.path(), "lb-a").unwrap();
        let e1 = a.record(new("config.apply")).unwrap();
        let e2 = a.record(new("server.drain")).unwrap();
        assert_eq!((e1.n, e2.n), (1, 2));

        let b = AuditLog::in_memory("lb-b");
        b.record(new("login")).unwrap();
        assert_eq!(b.append_replicated(&a.since("lb-a", 0)).unwrap(), 2);
        assert_eq!(b.append_replicated(&a.since("lb-a", 0)).unwrap(), 0);
        assert_eq!(b.len(), 3);
        let marks = b.marks();
        assert_eq!(marks.len(), 2);

        let reopened = AuditLog::open(dir.path(), "lb-a").unwrap();
        assert_eq!(reopened.since("lb-a", 1), vec![e2]);
        // The next local entry continues the numbering.
        assert_eq!(reopened.record(new("x")).unwrap().n, 3);
    }
}
