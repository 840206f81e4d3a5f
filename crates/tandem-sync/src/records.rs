//! The dataplane's changes as wire records and back.
//!
//! Writing borrows the names from the change (no copy); reading interns them, so a
//! 1,000,000-entry snapshot over a handful of services and servers allocates a handful of
//! names, not three million.

use crate::wire::{Record, WireAdmin, WireHealth, WireTicketKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tandem_config::AdminState;
use tandem_dataplane::Health;
use tandem_dataplane::StateChange;
use tandem_dataplane::persistence::{PersistenceEntry, PersistenceKey};
use tandem_dataplane::tls::ticket_keys::{ExportedTicketKey, TicketKeysExport};

/// The replicated tables, as status and metrics name them.
pub const TABLES: [&str; 4] = [
    "persistence",
    "server_health",
    "server_admin",
    "ticket_keys",
];

/// The table a record belongs to (an index into [`TABLES`]).
pub fn table_of(record: &Record<'_>) -> usize {
    match record {
        Record::PersistenceInsert { .. }
        | Record::PersistenceRefresh { .. }
        | Record::PersistenceExpire { .. } => 0,
        Record::ServerHealth { .. } => 1,
        Record::ServerAdmin { .. } => 2,
        Record::TicketKeys { .. } => 3,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The record for a change. Lifetimes leave as remaining milliseconds, never as clock
/// readings.
pub fn to_record(change: &StateChange) -> Record<'_> {
    match change {
        StateChange::PersistenceInsert(e) => Record::PersistenceInsert {
            service: &e.key.service,
            client: e.key.client,
            pool: &e.pool,
            server: &e.server,
            remaining_ms: ms(e.remaining),
        },
        StateChange::PersistenceRefresh(e) => Record::PersistenceRefresh {
            service: &e.key.service,
            client: e.key.client,
            pool: &e.pool,
            server: &e.server,
            remaining_ms: ms(e.remaining),
        },
        StateChange::PersistenceExpire(k) => Record::PersistenceExpire {
            service: &k.service,
            client: k.client,
        },
        StateChange::ServerHealth {
            pool,
            server,
            health,
        } => Record::ServerHealth {
            pool,
            server,
            health: match health {
                Health::Unchecked => WireHealth::Unchecked,
                Health::Up => WireHealth::Up,
                Health::Down => WireHealth::Down,
            },
        },
        StateChange::ServerAdmin {
            pool,
            server,
            state,
        } => Record::ServerAdmin {
            pool,
            server,
            state: match state {
                AdminState::Enabled => WireAdmin::Enabled,
                AdminState::Drain => WireAdmin::Drain,
                AdminState::Disabled => WireAdmin::Disabled,
            },
        },
        StateChange::TicketKeys(export) => Record::TicketKeys {
            keys: export
                .keys
                .iter()
                .map(|k| WireTicketKey {
                    id: k.id,
                    secret: k.secret,
                    current_for_ms: ms(k.current_for),
                    accepted_for_ms: ms(k.accepted_for),
                })
                .collect(),
            rotation_ms: ms(export.rotation),
            lifetime_ms: ms(export.lifetime),
        },
    }
}

/// Interned names for received records. Bounded: cleared when it grows past `LIMIT` (names
/// come from the shared config, so it never does in practice).
#[derive(Debug, Default)]
pub struct Names {
    map: HashMap<Box<str>, Arc<str>>,
}

impl Names {
    const LIMIT: usize = 65_536;

    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(a) = self.map.get(name) {
            return a.clone();
        }
        if self.map.len() >= Self::LIMIT {
            self.map.clear();
        }
        let a: Arc<str> = Arc::from(name);
        self.map.insert(name.into(), a.clone());
        a
    }
}

/// The change a received record stands for.
pub fn to_change(record: &Record<'_>, names: &mut Names) -> StateChange {
    let entry = |names: &mut Names, service: &str, client, pool: &str, server: &str, rem| {
        PersistenceEntry {
            key: PersistenceKey {
                service: names.get(service),
                client,
            },
            pool: names.get(pool),
            server: names.get(server),
            remaining: Duration::from_millis(rem),
        }
    };
    match record {
        Record::PersistenceInsert {
            service,
            client,
            pool,
            server,
            remaining_ms,
        } => StateChange::PersistenceInsert(entry(
            names,
            service,
            *client,
            pool,
            server,
            *remaining_ms,
        )),
        Record::PersistenceRefresh {
            service,
            client,
            pool,
            server,
            remaining_ms,
        } => StateChange::PersistenceRefresh(entry(
            names,
            service,
            *client,
            pool,
            server,
            *remaining_ms,
        )),
        Record::PersistenceExpire { service, client } => {
            StateChange::PersistenceExpire(PersistenceKey {
                service: names.get(service),
                client: *client,
            })
        }
        Record::ServerHealth {
            pool,
            server,
            health,
        } => StateChange::ServerHealth {
            pool: names.get(pool),
            server: names.get(server),
            health: match health {
                WireHealth::Unchecked => Health::Unchecked,
                WireHealth::Up => Health::Up,
                WireHealth::Down => Health::Down,
            },
        },
        Record::ServerAdmin {
            pool,
            server,
            state,
        } => StateChange::ServerAdmin {
            pool: names.get(pool),
            server: names.get(server),
            state: match state {
                WireAdmin::Enabled => AdminState::Enabled,
                WireAdmin::Drain => AdminState::Drain,
                WireAdmin::Disabled => AdminState::Disabled,
            },
        },
        Record::TicketKeys {
            keys,
            rotation_ms,
            lifetime_ms,
        } => StateChange::TicketKeys(TicketKeysExport {
            keys: keys
                .iter()
                .map(|k| ExportedTicketKey {
                    id: k.id,
                    secret: k.secret,
                    current_for: Duration::from_millis(k.current_for_ms),
                    accepted_for: Duration::from_millis(k.accepted_for_ms),
                })
                .collect(),
            rotation: Duration::from_millis(*rotation_ms),
            lifetime: Duration::from_millis(*lifetime_ms),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_survives_the_trip_at_millisecond_precision() {
        let entry = PersistenceEntry {
            key: PersistenceKey {
                service: "web".into(),
                client: "2001:db8::7".parse().unwrap(),
            },
            pool: "p".into(),
            server: "a".into(),
            remaining: Duration::from_millis(1_800_000),
        };
        let changes = vec![
            StateChange::PersistenceInsert(entry.clone()),
            StateChange::PersistenceRefresh(entry.clone()),
            StateChange::PersistenceExpire(entry.key.clone()),
            StateChange::ServerHealth {
                pool: "p".into(),
                server: "a".into(),
                health: Health::Down,
            },
            StateChange::ServerAdmin {
                pool: "p".into(),
                server: "a".into(),
                state: AdminState::Drain,
            },
            StateChange::TicketKeys(TicketKeysExport {
                keys: vec![ExportedTicketKey {
                    id: [3; 16],
                    secret: [4; 32],
                    current_for: Duration::from_secs(60),
                    accepted_for: Duration::from_secs(3600),
                }],
                rotation: Duration::from_secs(3600),
                lifetime: Duration::from_secs(4 * 3600),
            }),
        ];
        let mut names = Names::default();
        for c in &changes {
            assert_eq!(&to_change(&to_record(c), &mut names), c);
        }
        // Names are shared, not copied per record.
        let a = to_change(&to_record(&changes[0]), &mut names);
        let b = to_change(&to_record(&changes[1]), &mut names);
        match (a, b) {
            (StateChange::PersistenceInsert(a), StateChange::PersistenceRefresh(b)) => {
                assert!(Arc::ptr_eq(&a.server, &b.server))
            }
            other => panic!("{other:?}"),
        }
    }
}
