//! Config errors as an operator reads them: `file:line:column: what is wrong — how to fix it`,
//! each also carrying its path in the document (`shared.services[2].pool`) so the console and
//! the API can show it next to the field without a file.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// One problem found in a config document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// Where in the document, e.g. `shared.services[2].pool`; empty for the whole document.
    pub path: String,
    /// 1-based line and column in the source text; 0 when not known (e.g. a config built by
    /// the console rather than read from text).
    pub line: u64,
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// Every problem found in one document, with the file it came from (if any).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct Diagnostics {
    pub file: Option<PathBuf>,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The lines `tandemctl check` prints, one per problem.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        let file = self
            .file
            .as_deref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "<config>".to_owned());
        self.items.iter().map(move |d| {
            let at = if d.path.is_empty() {
                String::new()
            } else {
                format!("`{}`: ", d.path)
            };
            format!(
                "{file}:{}:{}: {at}{} — {}",
                d.line, d.column, d.message, d.hint
            )
        })
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&line)?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read the config file: {source} — check the path and its permissions", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl LoadError {
    /// The diagnostics, if the file was read but refused.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            LoadError::Invalid(d) => Some(d),
            LoadError::Read { .. } => None,
        }
    }
}
