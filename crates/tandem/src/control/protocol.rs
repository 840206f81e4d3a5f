//! The messages of the local control socket between `tandemctl` and `tandemd`: one JSON
//! object per line each way.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tandem_config::Diagnostics;
use tandem_config::store::{KeptBranch, VersionId, VersionMeta};

/// The largest request line accepted (a config with many inline certificates fits easily).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The box's status: role, config version, services and servers with their counters.
    Status,
    /// Validate `text` and commit its shared part as a new version, then run it.
    Apply {
        text: String,
        /// Where the text came from, for diagnostics and relative certificate files.
        file: Option<PathBuf>,
        /// Who asks (the Unix user running tandemctl).
        author: String,
    },
    /// Re-read the daemon's own config file, as SIGHUP does.
    Reload,
    /// The committed versions, oldest first.
    Versions,
    /// A graceful handover to the peer (make before break); refused unless this box is active.
    Failover,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Box<serde_json::Value>),
    Applied {
        version: VersionId,
        /// False when the content equalled the running version.
        changed: bool,
        notes: Vec<String>,
    },
    /// The request was understood but refused; nothing changed.
    Refused {
        message: String,
        diagnostics: Option<Diagnostics>,
    },
    Versions {
        versions: Vec<VersionMeta>,
        /// Branches kept after a partition (the losing side's versions, for review). Absent
        /// from an older daemon's answer.
        #[serde(default)]
        branches: Vec<KeptBranch>,
    },
    /// A command ran; what happened, for the operator.
    Done {
        message: String,
    },
    Error {
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message must survive the JSON line format (serde cannot write some enum shapes,
    /// and that only shows at run time).
    #[test]
    fn every_message_round_trips_through_json() {
        let id = VersionId {
            epoch: 1,
            n: 2,
            hash: "ab".repeat(32),
        };
        let responses = [
            Response::Status(Box::new(serde_json::json!({"node": "a"}))),
            Response::Applied {
                version: id.clone(),
                changed: true,
                notes: vec!["x".into()],
            },
            Response::Refused {
                message: "no".into(),
                diagnostics: Some(Diagnostics {
                    file: None,
                    items: vec![],
                }),
            },
            Response::Versions {
                versions: vec![VersionMeta {
                    id,
                    parent: None,
                    committed_at: 1,
                    author: "a".into(),
                    reason: "r".into(),
                    node: "n".into(),
                }],
                branches: vec![],
            },
            Response::Done {
                message: "handed over".into(),
            },
            Response::Error {
                message: "e".into(),
            },
        ];
        for r in responses {
            let text = serde_json::to_string(&r).unwrap();
            let back: Response = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
        let requests = [
            Request::Status,
            Request::Reload,
            Request::Versions,
            Request::Failover,
            Request::Apply {
                text: "schema: 1".into(),
                file: Some("/a.yaml".into()),
                author: "root".into(),
            },
        ];
        for r in requests {
            let text = serde_json::to_string(&r).unwrap();
            let back: Request = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }
}
