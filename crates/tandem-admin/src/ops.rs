//! What the pages and the API do, once: each operation edits a copy of the running shared
//! config and commits it through the backend (one version, with author and reason), then
//! records it in the audit log. The page and API handlers only translate.

use crate::app::{AppState, Principal};
use crate::backend::{Change, CommitError};
use crate::secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use tandem_config::store::VersionMeta;
use tandem_config::{
    AdminState, ApiToken, Certificate, Diagnostic, Diagnostics, Pool, Role, Service, SharedConfig,
    User,
};
use tandem_sync::NewAuditEntry;

/// Why an operation did nothing.
#[derive(Debug)]
pub enum OpError {
    /// The input or the resulting config is invalid; each problem with its path.
    Invalid(Diagnostics),
    NotFound(String),
    Conflict(String),
    /// This box is passive; the message names the active box.
    Passive(String),
    /// The dataplane cannot run it.
    Refused(String),
    /// Something broke on the box.
    Failed(String),
}

impl OpError {
    pub fn message(&self) -> String {
        match self {
            OpError::Invalid(d) => d
                .items
                .iter()
                .map(|i| {
                    if i.path.is_empty() {
                        format!("{} — {}", i.message, i.hint)
                    } else {
                        format!("`{}`: {} — {}", i.path, i.message, i.hint)
                    }
                })
                .collect::<Vec<_>>()
                .join("\n"),
            OpError::NotFound(m)
            | OpError::Conflict(m)
            | OpError::Passive(m)
            | OpError::Refused(m)
            | OpError::Failed(m) => m.clone(),
        }
    }

    pub fn invalid(path: &str, message: impl Into<String>, hint: &str) -> OpError {
        OpError::Invalid(Diagnostics {
            file: None,
            items: vec![Diagnostic {
                path: path.to_owned(),
                line: 0,
                column: 0,
                message: message.into(),
                hint: hint.to_owned(),
            }],
        })
    }
}

impl From<CommitError> for OpError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Invalid(d) => OpError::Invalid(d),
            CommitError::Passive(m) => OpError::Passive(m),
            CommitError::Refused(m) => OpError::Refused(m),
            CommitError::Failed(m) => OpError::Failed(m),
        }
    }
}

pub type OpResult<T = VersionMeta> = Result<T, OpError>;

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Records an entry in the audit log (replicated to the peer).
pub fn audit(
    state: &AppState,
    who: &Principal,
    action: &str,
    detail: String,
    version: Option<&VersionMeta>,
) {
    state.backend.audit_record(NewAuditEntry {
        at_unix_ms: now_unix_ms(),
        who: who.who(),
        from: who.from.clone(),
        action: action.to_owned(),
        detail,
        config_version: version.map(|v| v.id.to_string()),
    });
}

/// Edits a copy of the running config with `edit` and commits it.
pub async fn edit(
    state: &AppState,
    who: &Principal,
    action: &str,
    reason: String,
    edit: impl FnOnce(&mut SharedConfig) -> Result<(), OpError>,
) -> OpResult {
    let current = state.backend.current().await;
    let mut shared = current.shared.clone();
    edit(&mut shared)?;
    commit(state, who, action, reason, shared).await
}

pub async fn commit(
    state: &AppState,
    who: &Principal,
    action: &str,
    reason: String,
    shared: SharedConfig,
) -> OpResult {
    let change = Change {
        who: who.who(),
        from: who.from.clone(),
        action: action.to_owned(),
        reason: reason.clone(),
    };
    let meta = state.backend.commit(shared, &change).await?;
    audit(state, who, action, reason, Some(&meta));
    Ok(meta)
}

pub async fn service_upsert(
    state: &AppState,
    who: &Principal,
    old_name: Option<&str>,
    service: Service,
) -> OpResult {
    let name = service.name.clone();
    let (action, reason) = match old_name {
        None => ("service.create", format!("add service {name}")),
        Some(old) if old != name => ("service.update", format!("rename service {old} to {name}")),
        Some(_) => ("service.update", format!("edit service {name}")),
    };
    edit(state, who, action, reason, |shared| {
        match old_name {
            None => {
                if shared.service(&name).is_some() {
                    return Err(OpError::invalid(
                        "name",
                        format!("there is already a service named `{name}`"),
                        "choose another name, or edit that service",
                    ));
                }
                shared.services.push(service);
            }
            Some(old) => {
                let slot = shared
                    .services
                    .iter_mut()
                    .find(|s| s.name == old)
                    .ok_or_else(|| OpError::NotFound(format!("no service named `{old}`")))?;
                *slot = service;
            }
        }
        Ok(())
    })
    .await
}

pub async fn service_delete(state: &AppState, who: &Principal, name: &str) -> OpResult {
    edit(
        state,
        who,
        "service.delete",
        format!("delete service {name}"),
        |shared| {
            let before = shared.services.len();
            shared.services.retain(|s| s.name != name);
            if shared.services.len() == before {
                return Err(OpError::NotFound(format!("no service named `{name}`")));
            }
            Ok(())
        },
    )
    .await
}

pub async fn pool_upsert(
    state: &AppState,
    who: &Principal,
    old_name: Option<&str>,
    pool: Pool,
) -> OpResult {
    let name = pool.name.clone();
    let (action, reason) = match old_name {
        None => ("pool.create", format!("add pool {name}")),
        Some(_) => ("pool.update", format!("edit pool {name}")),
    };
    edit(state, who, action, reason, |shared| {
        match old_name {
            None => {
                if shared.pool(&name).is_some() {
                    return Err(OpError::invalid(
                        "name",
                        format!("there is already a pool named `{name}`"),
                        "choose another name, or edit that pool",
                    ));
                }
                shared.pools.push(pool);
            }
            Some(old) => {
                let slot = shared
                    .pools
                    .iter_mut()
                    .find(|p| p.name == old)
                    .ok_or_else(|| OpError::NotFound(format!("no pool named `{old}`")))?;
                *slot = pool;
            }
        }
        Ok(())
    })
    .await
}

pub async fn pool_delete(state: &AppState, who: &Principal, name: &str) -> OpResult {
    edit(
        state,
        who,
        "pool.delete",
        format!("delete pool {name}"),
        |shared| {
            let before = shared.pools.len();
            shared.pools.retain(|p| p.name != name);
            if shared.pools.len() == before {
                return Err(OpError::NotFound(format!("no pool named `{name}`")));
            }
            Ok(())
        },
    )
    .await
}

pub fn parse_admin_state(s: &str) -> Option<AdminState> {
    match s {
        "enabled" | "enable" => Some(AdminState::Enabled),
        "drain" => Some(AdminState::Drain),
        "disabled" | "disable" => Some(AdminState::Disabled),
        _ => None,
    }
}

pub fn admin_state_str(s: AdminState) -> &'static str {
    match s {
        AdminState::Enabled => "enabled",
        AdminState::Drain => "drain",
        AdminState::Disabled => "disabled",
    }
}

/// Enable, drain or disable one server: a config commit ("drain web/web1").
pub async fn server_state(
    state: &AppState,
    who: &Principal,
    pool: &str,
    id: &str,
    wanted: AdminState,
) -> OpResult {
    let verb = match wanted {
        AdminState::Enabled => "enable",
        AdminState::Drain => "drain",
        AdminState::Disabled => "disable",
    };
    edit(
        state,
        who,
        &format!("server.{verb}"),
        format!("{verb} {pool}/{id}"),
        |shared| {
            let p = shared
                .pools
                .iter_mut()
                .find(|p| p.name == pool)
                .ok_or_else(|| OpError::NotFound(format!("no pool named `{pool}`")))?;
            let s =
                p.servers.iter_mut().find(|s| s.id == id).ok_or_else(|| {
                    OpError::NotFound(format!("pool `{pool}` has no server `{id}`"))
                })?;
            s.state = wanted;
            Ok(())
        },
    )
    .await
}

pub async fn certificate_put(
    state: &AppState,
    who: &Principal,
    name: &str,
    cert_pem: &str,
    key_pem: Option<&str>,
) -> OpResult {
    let key = match key_pem.filter(|k| !k.trim().is_empty()) {
        Some(k) => Some(k.to_owned()),
        // A certificate for a CSR made here: its key waits in the state directory.
        None => crate::certs::pending_key(&state.dir, name),
    };
    let had_pending = key_pem.is_none_or(|k| k.trim().is_empty()) && key.is_some();
    let cert = Certificate {
        name: name.to_owned(),
        cert_pem: Some(cert_pem.to_owned()),
        key_pem: key,
        cert_file: None,
        key_file: None,
    };
    let meta = edit(
        state,
        who,
        "certificate.put",
        format!("upload certificate {name}"),
        |shared| {
            match shared.certificates.iter_mut().find(|c| c.name == name) {
                Some(slot) => *slot = cert,
                None => shared.certificates.push(cert),
            }
            Ok(())
        },
    )
    .await?;
    if had_pending {
        crate::certs::remove_pending(&state.dir, name);
    }
    Ok(meta)
}

pub async fn certificate_delete(state: &AppState, who: &Principal, name: &str) -> OpResult {
    edit(
        state,
        who,
        "certificate.delete",
        format!("delete certificate {name}"),
        |shared| {
            let before = shared.certificates.len();
            shared.certificates.retain(|c| c.name != name);
            if shared.certificates.len() == before {
                return Err(OpError::NotFound(format!("no certificate named `{name}`")));
            }
            Ok(())
        },
    )
    .await
}

/// Commits an old version's content as a new version.
pub async fn rollback(state: &AppState, who: &Principal, epoch: u64, n: u64) -> OpResult {
    let old = state
        .backend
        .version(epoch, n)
        .await
        .map_err(OpError::NotFound)?;
    commit(
        state,
        who,
        "config.rollback",
        format!("rollback to {}", old.meta.id),
        old.shared,
    )
    .await
}

/// Restores a backup: the whole text is parsed and validated before anything changes.
pub async fn restore(state: &AppState, who: &Principal, text: &str) -> OpResult {
    let doc = tandem_config::parse_document(text, None).map_err(OpError::Invalid)?;
    let shared = doc.shared().clone();
    if let Err(d) = state.backend.check(&shared).await {
        return Err(OpError::Invalid(d));
    }
    commit(
        state,
        who,
        "config.restore",
        "restore a backup".into(),
        shared,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub password: String,
}

pub async fn user_create(state: &AppState, who: &Principal, u: NewUser) -> OpResult {
    secret::check_password_policy(&u.password)
        .map_err(|e| OpError::invalid("password", e, "choose a longer password"))?;
    let hash = secret::hash_password(&u.password);
    edit(
        state,
        who,
        "user.create",
        format!("add user {} ({})", u.name, u.role),
        |shared| {
            if shared.user(&u.name).is_some() {
                return Err(OpError::invalid(
                    "name",
                    format!("there is already a user named `{}`", u.name),
                    "choose another name",
                ));
            }
            shared.users.push(User {
                name: u.name.clone(),
                role: u.role,
                password_hash: hash,
            });
            Ok(())
        },
    )
    .await
}

/// Changes a user's role and/or password; their sessions end.
pub async fn user_update(
    state: &AppState,
    who: &Principal,
    name: &str,
    role: Option<Role>,
    password: Option<&str>,
) -> OpResult {
    let hash = match password.filter(|p| !p.is_empty()) {
        Some(p) => {
            secret::check_password_policy(p)
                .map_err(|e| OpError::invalid("password", e, "choose a longer password"))?;
            Some(secret::hash_password(p))
        }
        None => None,
    };
    let mut what = Vec::new();
    if let Some(r) = role {
        what.push(format!("role {r}"));
    }
    if hash.is_some() {
        what.push("password".to_owned());
    }
    let meta = edit(
        state,
        who,
        "user.update",
        format!("change user {name}: {}", what.join(", ")),
        |shared| {
            let u = shared
                .users
                .iter_mut()
                .find(|u| u.name == name)
                .ok_or_else(|| OpError::NotFound(format!("no user named `{name}`")))?;
            if let Some(r) = role {
                u.role = r;
            }
            if let Some(h) = hash {
                u.password_hash = h;
            }
            keeps_an_admin(shared)
        },
    )
    .await?;
    if role.is_some() {
        state.sessions.remove_user(name);
    }
    Ok(meta)
}

pub async fn user_delete(state: &AppState, who: &Principal, name: &str) -> OpResult {
    let meta = edit(
        state,
        who,
        "user.delete",
        format!("delete user {name}"),
        |shared| {
            let before = shared.users.len();
            shared.users.retain(|u| u.name != name);
            if shared.users.len() == before {
                return Err(OpError::NotFound(format!("no user named `{name}`")));
            }
            shared.api_tokens.retain(|t| t.user != name);
            keeps_an_admin(shared)
        },
    )
    .await?;
    state.sessions.remove_user(name);
    Ok(meta)
}

/// Creates a token for `user`; the token is returned once and only its hash is kept.
pub async fn token_create(
    state: &AppState,
    who: &Principal,
    name: &str,
    user: &str,
) -> OpResult<(String, VersionMeta)> {
    let token = secret::new_token();
    let digest = secret::sha256_hex(token.as_bytes());
    let meta = edit(
        state,
        who,
        "token.create",
        format!("add API token {name} for {user}"),
        |shared| {
            if shared.api_tokens.iter().any(|t| t.name == name) {
                return Err(OpError::invalid(
                    "name",
                    format!("there is already a token named `{name}`"),
                    "choose another name",
                ));
            }
            shared.api_tokens.push(ApiToken {
                name: name.to_owned(),
                user: user.to_owned(),
                token_sha256: digest,
                created: now_unix_ms() / 1000,
            });
            Ok(())
        },
    )
    .await?;
    Ok((token, meta))
}

pub async fn token_delete(state: &AppState, who: &Principal, name: &str) -> OpResult {
    edit(
        state,
        who,
        "token.delete",
        format!("delete API token {name}"),
        |shared| {
            let before = shared.api_tokens.len();
            shared.api_tokens.retain(|t| t.name != name);
            if shared.api_tokens.len() == before {
                return Err(OpError::NotFound(format!("no token named `{name}`")));
            }
            Ok(())
        },
    )
    .await
}

/// Refuses an edit that leaves no admin (an empty user list would leave only the serial
/// console to recover the box).
fn keeps_an_admin(shared: &SharedConfig) -> Result<(), OpError> {
    if shared.users.iter().any(|u| u.role == Role::Admin) {
        Ok(())
    } else {
        Err(OpError::invalid(
            "",
            "this would leave no user with the role `admin`",
            "make another user admin first",
        ))
    }
}

/// A shared config as people may see it: private keys and password hashes replaced by a
/// short digest, so that a change still shows.
pub fn redacted(shared: &SharedConfig) -> SharedConfig {
    let mut s = shared.clone();
    let mark = |v: &str| {
        format!(
            "<redacted sha256:{}>",
            &secret::sha256_hex(v.as_bytes())[..12]
        )
    };
    for c in &mut s.certificates {
        if let Some(k) = &c.key_pem {
            c.key_pem = Some(mark(k));
        }
    }
    for u in &mut s.users {
        u.password_hash = mark(&u.password_hash);
    }
    s
}

/// The redacted canonical text of a shared config, for the history and the diff.
pub fn redacted_text(shared: &SharedConfig) -> String {
    redacted(shared).to_canonical_yaml()
}

/// Diagnostics grouped by the field they are about, below `prefix` (`shared.services[3]`):
/// `listen` → messages. Those outside the prefix go under the empty key.
pub fn errors_by_field(d: &Diagnostics, prefix: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in &d.items {
        let field = item
            .path
            .strip_prefix(prefix)
            .map(|rest| rest.trim_start_matches('.'))
            .map(|rest| rest.split(['.', '[']).next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| {
                // Errors the handler raised about a form field carry the bare field name.
                if item.path.contains('.') || item.path.contains('[') {
                    String::new()
                } else {
                    item.path.clone()
                }
            });
        let text = if item.hint.is_empty() {
            item.message.clone()
        } else {
            format!("{} — {}", item.message, item.hint)
        };
        out.entry(field).or_default().push(text);
    }
    out
}
