//! The log ring: the last lines of tandemd's output and the appliance's own events, kept in
//! RAM (`/run/tandem/log/`) in two files of bounded size, `current.log` and `previous.log`.
//! When `current.log` passes its bound it becomes `previous.log`, so the ring holds between
//! one and two bounds' worth of the newest lines. The console's log view, the support bundle
//! and (later) the admin UI read it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const DEFAULT_DIR: &str = "/run/tandem/log";
pub const DEFAULT_BOUND: u64 = 512 * 1024;

#[derive(Clone, Debug)]
pub struct LogRing {
    dir: PathBuf,
    bound: u64,
}

impl LogRing {
    pub fn new(dir: &Path) -> LogRing {
        LogRing {
            dir: dir.to_owned(),
            bound: DEFAULT_BOUND,
        }
    }

    pub fn with_bound(mut self, bound: u64) -> LogRing {
        self.bound = bound.max(1024);
        self
    }

    fn current(&self) -> PathBuf {
        self.dir.join("current.log")
    }

    fn previous(&self) -> PathBuf {
        self.dir.join("previous.log")
    }

    /// The writer the supervisor keeps open: it rotates the ring.
    pub fn writer(&self) -> io::Result<RingWriter> {
        fs::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.current())?;
        let size = file.metadata()?.len();
        Ok(RingWriter {
            ring: self.clone(),
            file,
            size,
        })
    }

    /// Appends one event line from any process (`source: message`, with the time). Lines are
    /// short and written with one `write` on an `O_APPEND` file, so writers do not interleave.
    pub fn note(&self, source: &str, message: &str) {
        let line = format!("{} {source}: {message}\n", now());
        let _ = fs::create_dir_all(&self.dir);
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.current())
        {
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// All lines, oldest first.
    pub fn read_all(&self) -> String {
        let mut s = fs::read_to_string(self.previous()).unwrap_or_default();
        s.push_str(&fs::read_to_string(self.current()).unwrap_or_default());
        s
    }

    /// The newest `n` lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let all = self.read_all();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }
}

pub struct RingWriter {
    ring: LogRing,
    file: File,
    size: u64,
}

impl RingWriter {
    pub fn line(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = line.trim_end_matches('\n').as_bytes().to_vec();
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.size += bytes.len() as u64;
        if self.size >= self.ring.bound {
            fs::rename(self.ring.current(), self.ring.previous())?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.ring.current())?;
            self.size = 0;
        }
        Ok(())
    }

    pub fn note(&mut self, source: &str, message: &str) -> io::Result<()> {
        self.line(&format!("{} {source}: {message}", now()))
    }
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_within_two_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LogRing::new(dir.path()).with_bound(1024);
        let mut w = ring.writer().unwrap();
        for i in 0..1000 {
            w.line(&format!("line {i:04} ............................"))
                .unwrap();
        }
        let all = ring.read_all();
        assert!(all.len() <= 2 * 1024 + 64, "{}", all.len());
        assert!(all.ends_with("line 0999 ............................\n"));
        assert!(!all.contains("line 0000"));
        assert_eq!(ring.tail(2).len(), 2);
        assert!(ring.tail(1)[0].starts_with("line 0999"));
        ring.note("console", "factory reset requested");
        assert!(ring.tail(1)[0].ends_with("console: factory reset requested"));
    }
}
