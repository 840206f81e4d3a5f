//! The pair as tandemd's `RunningConfig` needs it to refuse a config edit on the passive box:
//! this box's role and what it knows of the peer (learned from the peer's hello, kept after a
//! disconnect). Published by the sync link as a `watch`.

use crate::engine::Role;
use serde::Serialize;

/// What this box knows of the pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PairView {
    /// This box's name.
    pub node: String,
    pub role: Role,
    /// The peer as last heard of.
    pub peer: Option<PeerView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerView {
    pub node: String,
    /// Its management listener (`address:port`).
    pub management: String,
    pub role: Role,
    pub connected: bool,
}

/// A config edit refused because this box is passive. The message names the active box.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EditRefused {
    pub message: String,
    /// The active box's management address, when known (for a redirect in the console).
    pub active_management: Option<String>,
}

impl PairView {
    /// A box without a peer: always its own writer.
    pub fn standalone(node: &str) -> PairView {
        PairView {
            node: node.to_owned(),
            role: Role::Active,
            peer: None,
        }
    }

    /// Whether this box may commit a config edit: only the active box writes the shared
    /// config (design.md, "Config, roles and identity").
    pub fn check_edit(&self) -> Result<(), EditRefused> {
        if self.role == Role::Active {
            return Ok(());
        }
        let (message, active_management) = match &self.peer {
            Some(p) if p.role == Role::Active => (
                format!(
                    "{} is the passive box: the config is edited on the active box {} (https://{}){}",
                    self.node,
                    p.node,
                    p.management,
                    if p.connected {
                        ""
                    } else {
                        " (not connected now; last known)"
                    }
                ),
                Some(p.management.clone()),
            ),
            Some(p) => (
                format!(
                    "{} is the passive box: the config is edited on the active box; the peer {} (https://{}) was last seen {}",
                    self.node,
                    p.node,
                    p.management,
                    p.role.as_str()
                ),
                Some(p.management.clone()),
            ),
            None => (
                format!(
                    "{} is the passive box: the config is edited on the active box (not known yet: the sync link has not connected)",
                    self.node
                ),
                None,
            ),
        };
        Err(EditRefused {
            message,
            active_management,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_on_the_passive_is_refused_naming_the_active_box() {
        let mut view = PairView {
            node: "lb-b".into(),
            role: Role::Passive,
            peer: Some(PeerView {
                node: "lb-a".into(),
                management: "192.0.2.10:443".into(),
                role: Role::Active,
                connected: true,
            }),
        };
        let e = view.check_edit().unwrap_err();
        assert_eq!(
            e.message,
            "lb-b is the passive box: the config is edited on the active box lb-a (https://192.0.2.10:443)"
        );
        assert_eq!(e.active_management.as_deref(), Some("192.0.2.10:443"));
        view.role = Role::Active;
        assert!(view.check_edit().is_ok());
        assert!(PairView::standalone("x").check_edit().is_ok());
        view.role = Role::Passive;
        view.peer = None;
        assert!(
            view.check_edit()
                .unwrap_err()
                .message
                .contains("not known yet")
        );
    }
}
