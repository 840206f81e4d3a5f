//! The versioned store of the shared config: the truth about what runs. Each committed version
//! has an identity `(epoch, n, hash)` and who/when/why; the YAML file an operator edits is an
//! input to it, not the store itself.
//!
//! Layout under `<state-dir>/config/`:
//! - `versions/<epoch>-<n>.yaml`: the canonical shared document of a version;
//! - `versions/<epoch>-<n>.json`: its [`VersionMeta`];
//! - `current`: the id of the version that runs;
//! - `last-import.json`: the hash last imported from each config file, so that a restart does
//!   not re-import an unchanged file over edits made in the console;
//! - `epoch`: the epoch this box commits in since it last became the pair's writer (absent on
//!   a box that never did: commits then stay in the current version's epoch);
//! - `branches/<name>/`: versions superseded after a partition ([`KeptBranch`]): each
//!   version's `.yaml` and `.json`, and `branch.json` describing the branch.
//!
//! Every file is written atomically (temp file, fsync, rename, fsync of the directory), so a
//! power cut leaves either the old or the new version, never half of one.

use crate::{SharedConfig, SharedDocument, parse_shared_document};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many versions are kept for history and rollback.
pub const DEFAULT_KEEP: usize = 100;

/// The identity of a committed version. Versions are ordered by `(epoch, n)`; the epoch grows
/// when the pair's writer changes, `n` with every commit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionId {
    pub epoch: u64,
    pub n: u64,
    /// Hex SHA-256 of the canonical shared document.
    pub hash: String,
}

impl VersionId {
    fn file_stem(&self) -> String {
        format!("{:010}-{:010}", self.epoch, self.n)
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}-{}",
            self.epoch,
            self.n,
            &self.hash[..self.hash.len().min(8)]
        )
    }
}

/// Who committed a version, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub id: VersionId,
    /// The version this one was made from (None for the first).
    pub parent: Option<VersionId>,
    /// Seconds since the Unix epoch, by the committing box's clock.
    pub committed_at: u64,
    /// A user name, `tandemctl`, `startup`, or the peer's name for replicated versions.
    pub author: String,
    /// Free text: "apply lb.yaml", "drain web/web1", "rollback to 1.4".
    pub reason: String,
    /// The box that committed it.
    pub node: String,
}

/// A version with its content.
#[derive(Clone, Debug)]
pub struct Version {
    pub meta: VersionMeta,
    pub shared: SharedConfig,
    /// The canonical text, exactly as hashed.
    pub text: String,
}

/// Who commits and why; the store fills in the identity and time.
#[derive(Clone, Debug)]
pub struct CommitInfo {
    pub author: String,
    pub reason: String,
    pub node: String,
}

/// Versions committed while the pair was split, superseded when the active box's history won.
/// They are kept (not lost) outside the history and flagged, so the console can show them and
/// an operator can re-apply what is still wanted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptBranch {
    /// Its directory under `branches/`: the first version's `<epoch>-<n>` and hash prefix.
    pub name: String,
    /// Oldest first.
    pub versions: Vec<VersionMeta>,
    /// The head of the history that won when the branch was kept.
    pub superseded_by: VersionId,
    /// The box whose history won.
    pub winner: String,
    /// Seconds since the Unix epoch, by this box's clock.
    pub kept_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("config store {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("config store {}: version is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("no version {0} in the config store")]
    NotFound(String),
}

pub struct Store {
    dir: PathBuf,
    keep: usize,
}

impl Store {
    /// Opens (creating if needed) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let dir = state_dir.join("config");
        let versions = dir.join("versions");
        fs::create_dir_all(&versions).map_err(|source| StoreError::Io {
            path: versions.clone(),
            source,
        })?;
        Ok(Store {
            dir,
            keep: DEFAULT_KEEP,
        })
    }

    pub fn with_keep(mut self, keep: usize) -> Store {
        self.keep = keep.max(1);
        self
    }

    /// The version that runs, if any was ever committed.
    pub fn current(&self) -> Result<Option<Version>, StoreError> {
        let path = self.dir.join("current");
        let stem = match fs::read_to_string(&path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        self.read(&stem).map(Some)
    }

    /// Commits `shared` as the next version on top of the current one and makes it current.
    /// Committing content identical to the current version is a no-op returning it.
    pub fn commit(&self, shared: &SharedConfig, info: CommitInfo) -> Result<Version, StoreError> {
        let current = self.current()?;
        let text = shared.to_canonical_yaml();
        let hash = hash_hex(&text);
        if let Some(cur) = &current
            && cur.meta.id.hash == hash
        {
            return Ok(cur.clone());
        }
        // `n` counts commits along the history; the epoch is the one this box began when it
        // last became the writer, if that is newer than the current version's.
        let writer = self.writer_epoch()?;
        let (epoch, n) = current
            .as_ref()
            .map(|c| (c.meta.id.epoch.max(writer), c.meta.id.n + 1))
            .unwrap_or((writer.max(1), 1));
        let meta = VersionMeta {
            id: VersionId { epoch, n, hash },
            parent: current.map(|c| c.meta.id),
            committed_at: unix_now(),
            author: info.author,
            reason: info.reason,
            node: info.node,
        };
        self.put(&meta, &text)?;
        self.set_current(&meta.id)?;
        Ok(Version {
            meta,
            shared: shared.clone(),
            text,
        })
    }

    /// Stores a version made elsewhere (replicated from the peer) exactly as it came, after
    /// checking that its text matches its hash and parses. Does not change `current`.
    pub fn put_replicated(&self, meta: &VersionMeta, text: &str) -> Result<Version, StoreError> {
        let path = self
            .versions_dir()
            .join(format!("{}.yaml", meta.id.file_stem()));
        let version = decode_version(meta.clone(), text, &path)?;
        self.put(meta, text)?;
        Ok(version)
    }

    /// Makes a stored version the current one. The version it replaces, if it was kept on a
    /// branch ([`Store::keep_branch`]), leaves the history now (its copy on the branch stays).
    pub fn set_current(&self, id: &VersionId) -> Result<(), StoreError> {
        let stem = id.file_stem();
        let meta_path = self.versions_dir().join(format!("{stem}.json"));
        if !meta_path.exists() || read_meta(&meta_path)?.id.hash != id.hash {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let previous = fs::read_to_string(self.dir.join("current")).unwrap_or_default();
        self.write(&self.dir.join("current"), stem.as_bytes())?;
        let previous = previous.trim();
        if !previous.is_empty() && previous != stem {
            let path = self.versions_dir().join(format!("{previous}.json"));
            if let Ok(meta) = read_meta(&path)
                && self.is_kept(&meta.id)?
            {
                self.remove_version(previous)?;
            }
        }
        // A passive box stores versions without committing: keep its history bounded too.
        self.prune()
    }

    /// All stored versions, oldest first.
    pub fn list(&self) -> Result<Vec<VersionMeta>, StoreError> {
        let dir = self.versions_dir();
        let entries = fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut metas = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                metas.push(read_meta(&path)?);
            }
        }
        metas.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(metas)
    }

    /// A stored version by `(epoch, n)`.
    pub fn get(&self, epoch: u64, n: u64) -> Result<Version, StoreError> {
        self.read(&format!("{epoch:010}-{n:010}"))
    }

    /// The hash last imported from the config file at `path`, if any.
    pub fn last_import(&self, path: &Path) -> Result<Option<String>, StoreError> {
        Ok(self.imports()?.remove(&path.display().to_string()))
    }

    /// Records that the config file at `path` with shared content `hash` was imported.
    pub fn record_import(&self, path: &Path, hash: &str) -> Result<(), StoreError> {
        let mut imports = self.imports()?;
        imports.insert(path.display().to_string(), hash.to_owned());
        let json = serde_json::to_vec_pretty(&imports).expect("a map of strings serializes");
        self.write(&self.dir.join("last-import.json"), &json)
    }

    fn imports(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let path = self.dir.join("last-import.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// The epoch begun by [`Store::begin_epoch`] (0 if this box never began one).
    pub fn writer_epoch(&self) -> Result<u64, StoreError> {
        let path = self.dir.join("epoch");
        match fs::read_to_string(&path) {
            Ok(s) => s.trim().parse().map_err(|_| StoreError::Corrupt {
                path,
                reason: format!("`{}` is not an epoch number", s.trim()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Commits from now on are made in `epoch` (the pair's sync link calls this when the box
    /// becomes the writer, with an epoch above every one it has seen). Never lowers it.
    pub fn begin_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        if epoch > self.writer_epoch()? {
            self.write(&self.dir.join("epoch"), epoch.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// The highest epoch this store has seen: of its versions, its kept branches and its own
    /// writer epoch.
    pub fn max_epoch(&self) -> Result<u64, StoreError> {
        let mut max = self.writer_epoch()?;
        for meta in self.list()? {
            max = max.max(meta.id.epoch);
        }
        for branch in self.branches()? {
            for meta in &branch.versions {
                max = max.max(meta.id.epoch);
            }
        }
        Ok(max)
    }

    /// Keeps `versions` (a branch that lost to the active box's history after a partition,
    /// oldest first) under `branches/`, flagged, and takes them out of the history: each
    /// leaves `versions/` now, except the current one, which leaves when another version
    /// becomes current. Keeping the same branch again returns the branch already kept.
    pub fn keep_branch(
        &self,
        versions: &[(VersionMeta, String)],
        superseded_by: &VersionId,
        winner: &str,
    ) -> Result<KeptBranch, StoreError> {
        let Some((first, _)) = versions.first() else {
            return Err(StoreError::NotFound("a branch without versions".to_owned()));
        };
        for (meta, text) in versions {
            let stem = meta.id.file_stem();
            let path = self.dir.join("branches").join(format!("{stem}.yaml"));
            decode_version(meta.clone(), text, &path)?;
        }
        let name = format!(
            "{}-{}",
            first.id.file_stem(),
            &first.id.hash[..first.id.hash.len().min(8)]
        );
        let dir = self.dir.join("branches").join(&name);
        let marker = dir.join("branch.json");
        if let Ok(bytes) = fs::read(&marker)
            && let Ok(kept) = serde_json::from_slice::<KeptBranch>(&bytes)
        {
            return Ok(kept);
        }
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        for (meta, text) in versions {
            let stem = meta.id.file_stem();
            self.write(&dir.join(format!("{stem}.yaml")), text.as_bytes())?;
            let json = serde_json::to_vec_pretty(meta).expect("version meta serializes");
            self.write(&dir.join(format!("{stem}.json")), &json)?;
        }
        let kept = KeptBranch {
            name,
            versions: versions.iter().map(|(m, _)| m.clone()).collect(),
            superseded_by: superseded_by.clone(),
            winner: winner.to_owned(),
            kept_at: unix_now(),
        };
        // The marker last: a branch is listed only once all its versions are on disk.
        let json = serde_json::to_vec_pretty(&kept).expect("a kept branch serializes");
        self.write(&marker, &json)?;
        let current = fs::read_to_string(self.dir.join("current")).unwrap_or_default();
        for (meta, _) in versions {
            let stem = meta.id.file_stem();
            let path = self.versions_dir().join(format!("{stem}.json"));
            if stem != current.trim()
                && let Ok(stored) = read_meta(&path)
                && stored.id == meta.id
            {
                self.remove_version(&stem)?;
            }
        }
        Ok(kept)
    }

    /// The kept branches, oldest first.
    pub fn branches(&self) -> Result<Vec<KeptBranch>, StoreError> {
        let dir = self.dir.join("branches");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path: dir, source }),
        };
        let mut branches = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path().join("branch.json");
            match fs::read(&path) {
                Ok(bytes) => {
                    branches.push(serde_json::from_slice::<KeptBranch>(&bytes).map_err(|e| {
                        StoreError::Corrupt {
                            path: path.clone(),
                            reason: e.to_string(),
                        }
                    })?)
                }
                // Not complete yet (or not a branch): not listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        branches.sort_by(|a, b| (a.kept_at, &a.name).cmp(&(b.kept_at, &b.name)));
        Ok(branches)
    }

    /// A version of a kept branch, by the branch's name and the version's `(epoch, n)`.
    pub fn branch_version(&self, branch: &str, epoch: u64, n: u64) -> Result<Version, StoreError> {
        let dir = self.dir.join("branches").join(branch);
        let stem = format!("{epoch:010}-{n:010}");
        let meta_path = dir.join(format!("{stem}.json"));
        if branch.contains('/') || !meta_path.exists() {
            return Err(StoreError::NotFound(format!("{branch}/{epoch}.{n}")));
        }
        let meta = read_meta(&meta_path)?;
        let path = dir.join(format!("{stem}.yaml"));
        let text = fs::read_to_string(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        decode_version(meta, &text, &path)
    }

    fn is_kept(&self, id: &VersionId) -> Result<bool, StoreError> {
        Ok(self
            .branches()?
            .iter()
            .any(|b| b.versions.iter().any(|m| m.id == *id)))
    }

    fn remove_version(&self, stem: &str) -> Result<(), StoreError> {
        for ext in ["json", "yaml"] {
            let path = self.versions_dir().join(format!("{stem}.{ext}"));
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StoreError::Io { path, source: e });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn versions_dir(&self) -> PathBuf {
        self.dir.join("versions")
    }

    fn put(&self, meta: &VersionMeta, text: &str) -> Result<(), StoreError> {
        let stem = meta.id.file_stem();
        let dir = self.versions_dir();
        // Content first, then its meta: a version is listed only once both are on disk.
        self.write(&dir.join(format!("{stem}.yaml")), text.as_bytes())?;
        let json = serde_json::to_vec_pretty(meta).expect("version meta serializes");
        self.write(&dir.join(format!("{stem}.json")), &json)
    }

    fn read(&self, stem: &str) -> Result<Version, StoreError> {
        let dir = self.versions_dir();
        let meta_path = dir.join(format!("{stem}.json"));
        if !meta_path.exists() {
            return Err(StoreError::NotFound(stem.to_owned()));
        }
        let meta = read_meta(&meta_path)?;
        let path = dir.join(format!("{stem}.yaml"));
        let text = fs::read_to_string(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        decode_version(meta, &text, &path)
    }

    fn prune(&self) -> Result<(), StoreError> {
        let metas = self.list()?;
        let current = fs::read_to_string(self.dir.join("current")).unwrap_or_default();
        let excess = metas.len().saturating_sub(self.keep);
        for meta in metas.iter().take(excess) {
            let stem = meta.id.file_stem();
            if stem == current.trim() {
                continue;
            }
            self.remove_version(&stem)?;
        }
        Ok(())
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(path, bytes).map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

fn read_meta(path: &Path) -> Result<VersionMeta, StoreError> {
    let bytes = fs::read(path).map_err(|source| StoreError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn decode_version(meta: VersionMeta, text: &str, path: &Path) -> Result<Version, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if hash_hex(text) != meta.id.hash {
        return Err(corrupt("content does not match its hash".to_owned()));
    }
    let SharedDocument { shared, .. } =
        parse_shared_document(text).map_err(|d| corrupt(d.to_string()))?;
    Ok(Version {
        meta,
        shared,
        text: text.to_owned(),
    })
}

/// Hex SHA-256, the hash of a version's canonical text.
pub fn hash_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the old or the new
/// content: write a temp file beside it, fsync it, rename it over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with_mode(path, bytes, 0o666)
}

/// [`write_atomic`] for a file created with `mode` (less the umask), e.g. 0o600 for a key.
pub fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Pool};

    fn info(reason: &str) -> CommitInfo {
        CommitInfo {
            author: "test".into(),
            reason: reason.into(),
            node: "lb-a".into(),
        }
    }

    fn shared_with_pool(name: &str) -> SharedConfig {
        SharedConfig {
            pools: vec![Pool {
                name: name.into(),
                algorithm: Algorithm::RoundRobin,
                servers: vec![],
                health_check: None,
                tls: None,
                connect_timeout: crate::Duration::from_secs(3),
                response_timeout: crate::Duration::from_secs(60),
            }],
            ..SharedConfig::default()
        }
    }

    #[test]
    fn commits_number_versions_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.current().unwrap().is_none());
        let v1 = store.commit(&shared_with_pool("a"), info("first")).unwrap();
        let v2 = store
            .commit(&shared_with_pool("b"), info("second"))
            .unwrap();
        assert_eq!((v1.meta.id.epoch, v1.meta.id.n), (1, 1));
        assert_eq!((v2.meta.id.epoch, v2.meta.id.n), (1, 2));
        assert_eq!(v2.meta.parent.as_ref(), Some(&v1.meta.id));

        let reopened = Store::open(dir.path()).unwrap();
        let cur = reopened.current().unwrap().unwrap();
        assert_eq!(cur.meta.id, v2.meta.id);
        assert_eq!(cur.shared.pools[0].name, "b");
        assert_eq!(reopened.list().unwrap().len(), 2);
        assert_eq!(reopened.get(1, 1).unwrap().shared.pools[0].name, "a");
    }

    #[test]
    fn committing_identical_content_makes_no_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.commit(&shared_with_pool("a"), info("x")).unwrap();
        let again = store.commit(&shared_with_pool("a"), info("y")).unwrap();
        assert_eq!(again.meta.id.n, 1);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn a_tampered_version_is_reported_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let v = store.commit(&shared_with_pool("a"), info("x")).unwrap();
        let file = dir
            .path()
            .join("config/versions")
            .join(format!("{}.yaml", v.meta.id.file_stem()));
        fs::write(&file, v.text.replace("name: a", "name: z")).unwrap();
        assert!(matches!(store.current(), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn old_versions_are_pruned_but_current_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().with_keep(3);
        for i in 0..6 {
            store
                .commit(&shared_with_pool(&format!("p{i}")), info("x"))
                .unwrap();
        }
        let ns: Vec<u64> = store.list().unwrap().iter().map(|m| m.id.n).collect();
        assert_eq!(ns, vec![4, 5, 6]);
        // Rolling back to an old version and committing more never prunes the current one.
        store
            .set_current(&store.get(1, 4).unwrap().meta.id)
            .unwrap();
        assert_eq!(store.current().unwrap().unwrap().meta.id.n, 4);
    }

    #[test]
    fn imports_are_remembered_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let file = Path::new("/etc/tandem/lb.yaml");
        assert_eq!(store.last_import(file).unwrap(), None);
        store.record_import(file, "abc").unwrap();
        assert_eq!(store.last_import(file).unwrap().as_deref(), Some("abc"));
    }

    #[test]
    fn a_begun_epoch_numbers_the_next_commits_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.commit(&shared_with_pool("a"), info("x")).unwrap();
        assert_eq!(store.max_epoch().unwrap(), 1);
        store.begin_epoch(4).unwrap();
        store.begin_epoch(2).unwrap();
        assert_eq!(store.writer_epoch().unwrap(), 4);
        let v = store.commit(&shared_with_pool("b"), info("y")).unwrap();
        assert_eq!((v.meta.id.epoch, v.meta.id.n), (4, 2), "n keeps counting");
        assert_eq!(store.max_epoch().unwrap(), 4);

        let fresh = tempfile::tempdir().unwrap();
        let store = Store::open(fresh.path()).unwrap();
        store.begin_epoch(3).unwrap();
        let v = store.commit(&shared_with_pool("a"), info("x")).unwrap();
        assert_eq!((v.meta.id.epoch, v.meta.id.n), (3, 1));
    }

    /// After a partition, a box whose versions lost keeps them on a branch, takes the winner's
    /// versions (even where their `(epoch, n)` collide with its own) and runs the winner.
    #[test]
    fn a_losing_branch_is_kept_flagged_and_leaves_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let winner_dir = tempfile::tempdir().unwrap();
        let loser = Store::open(dir.path()).unwrap();
        let winner = Store::open(winner_dir.path()).unwrap();
        let base = winner.commit(&shared_with_pool("base"), info("x")).unwrap();
        loser.put_replicated(&base.meta, &base.text).unwrap();
        loser.set_current(&base.meta.id).unwrap();
        // Split: both commit two versions in the same epoch (the worst case: same stems).
        let w1 = winner.commit(&shared_with_pool("w1"), info("x")).unwrap();
        let w2 = winner.commit(&shared_with_pool("w2"), info("x")).unwrap();
        let l1 = loser.commit(&shared_with_pool("l1"), info("x")).unwrap();
        let l2 = loser.commit(&shared_with_pool("l2"), info("x")).unwrap();
        assert_eq!(l1.meta.id.n, w1.meta.id.n);

        let branch = vec![
            (l1.meta.clone(), l1.text.clone()),
            (l2.meta.clone(), l2.text.clone()),
        ];
        let kept = loser.keep_branch(&branch, &w2.meta.id, "lb-a").unwrap();
        assert_eq!(kept.versions.len(), 2);
        assert_eq!(kept.winner, "lb-a");
        // Idempotent: keeping it again changes nothing.
        assert_eq!(
            loser.keep_branch(&branch, &w2.meta.id, "lb-a").unwrap(),
            kept
        );
        // l1 left the history; l2 still runs until the winner does.
        let ids: Vec<_> = loser.list().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![base.meta.id.clone(), l2.meta.id.clone()]);

        for v in [&w1, &w2] {
            loser.put_replicated(&v.meta, &v.text).unwrap();
        }
        loser.set_current(&w2.meta.id).unwrap();
        assert_eq!(loser.current().unwrap().unwrap().meta.id, w2.meta.id);
        let ids: Vec<_> = loser.list().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            vec![base.meta.id.clone(), w1.meta.id.clone(), w2.meta.id.clone()]
        );

        // The branch is listed, complete, and its content readable.
        let branches = loser.branches().unwrap();
        assert_eq!(branches, vec![kept.clone()]);
        let back = loser
            .branch_version(&kept.name, l2.meta.id.epoch, l2.meta.id.n)
            .unwrap();
        assert_eq!(back.shared.pools[0].name, "l2");
        assert_eq!(loser.max_epoch().unwrap(), 1);
        // A reopened store still sees it.
        assert_eq!(
            Store::open(dir.path()).unwrap().branches().unwrap().len(),
            1
        );
    }

    #[test]
    fn set_current_refuses_an_id_whose_content_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let v = store.commit(&shared_with_pool("a"), info("x")).unwrap();
        let mut other = v.meta.id.clone();
        other.hash = "00".repeat(32);
        assert!(matches!(
            store.set_current(&other),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.keep_branch(&[(v.meta.clone(), "tampered".into())], &v.meta.id, "x"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
