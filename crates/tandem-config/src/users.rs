//! Who may run the pair: `shared.users` (name, role, argon2id hash), `shared.api_tokens` (a
//! SHA-256 per token, never the token) and `shared.console` (sessions and login backoff).
//!
//! They are part of the shared config, so they replicate with it: an admin created on the
//! active box logs in on the other one after a failover, and every change of a user is a
//! committed version with its author and reason (`docs/console.md`).

use crate::SharedConfig;
use crate::diagnostic::Diagnostic;
use crate::load::at_path;
use crate::source_map::{DocPath, SourceMap};
use crate::units::Duration;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A console and API user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name: letters, digits, `-`, `_` and `.` (1 to 64 characters).
    pub name: String,
    pub role: Role,
    /// The password's argon2id hash as a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub password_hash: String,
}

// Hashes stay out of logs even though they are not the password.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What a user may do. Each role includes the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything but the users and tokens.
    Viewer,
    /// A viewer who may also enable, drain and disable servers.
    Operator,
    /// Everything: config, certificates, failover, users and tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token for automation (`Authorization: Bearer …`), acting as its user with the user's role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Unique name, shown in the audit log as `user (token NAME)`.
    pub name: String,
    /// The user it acts as.
    pub user: String,
    /// Hex SHA-256 of the token (`printf %s TOKEN | sha256sum`). Tokens are 256 random bits,
    /// so a fast hash is enough: there is nothing to guess from.
    pub token_sha256: String,
    /// When it was created, seconds since the Unix epoch.
    #[serde(default)]
    pub created: u64,
}

/// `shared.console`: how long sessions live and how failed logins slow down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// A session unused this long is revoked.
    #[serde(default = "default_idle")]
    pub session_idle_timeout: Duration,
    /// The wait after the first failures from a source (per source, and per account and
    /// source); it doubles with each further failure.
    #[serde(default = "default_backoff_base")]
    pub login_backoff: Duration,
    /// The longest wait.
    #[serde(default = "default_backoff_max")]
    pub login_backoff_max: Duration,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            session_idle_timeout: default_idle(),
            login_backoff: default_backoff_base(),
            login_backoff_max: default_backoff_max(),
        }
    }
}

impl ConsoleSettings {
    pub fn is_default(&self) -> bool {
        *self == ConsoleSettings::default()
    }
}

pub(crate) fn console_is_default(c: &ConsoleSettings) -> bool {
    c.is_default()
}

fn default_idle() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_backoff_base() -> Duration {
    Duration::from_secs(1)
}

fn default_backoff_max() -> Duration {
    Duration::from_secs(5 * 60)
}

impl SharedConfig {
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// Whether `hash` has the shape of an argon2id PHC string. The hash itself is checked when a
/// password is verified; this catches a pasted bcrypt hash or a plain password.
pub fn is_argon2id_phc(hash: &str) -> bool {
    let mut parts = hash.split('$');
    parts.next() == Some("")
        && parts.next() == Some("argon2id")
        && parts.next().is_some_and(|v| v.starts_with("v="))
        && parts
            .next()
            .is_some_and(|p| p.contains("m=") && p.contains("t="))
        && parts.next().is_some_and(|s| !s.is_empty())
        && parts.next().is_some_and(|h| !h.is_empty())
        && parts.next().is_none()
}

fn is_user_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub(crate) fn validate_shared(shared: &SharedConfig, map: &SourceMap) -> Vec<Diagnostic> {
    let mut items = Vec::new();
    let mut add = |path: &DocPath, message: String, hint: &str| {
        items.push(at_path(map, path, message, hint));
    };
    let root = DocPath::root().key("shared");
    let users = root.key("users");
    let mut names = HashSet::new();
    for (i, u) in shared.users.iter().enumerate() {
        let at = users.index(i);
        if !is_user_name(&u.name) {
            add(
                &at.key("name"),
                format!("`{}` is not a valid user name", u.name),
                "use letters, digits, `-`, `_` and `.` (1 to 64 characters)",
            );
        } else if !names.insert(u.name.as_str()) {
            add(
                &at.key("name"),
                format!("there is already a user named `{}`", u.name),
                "give each user its own name",
            );
        }
        if !is_argon2id_phc(&u.password_hash) {
            add(
                &at.key("password_hash"),
                "`password_hash` is not an argon2id PHC string".to_owned(),
                "set the password in the console or with `tandemctl user passwd`; never write a plain password here",
            );
        }
    }
    if !shared.users.is_empty() && !shared.users.iter().any(|u| u.role == Role::Admin) {
        add(
            &users,
            "no user has the role `admin`".to_owned(),
            "keep at least one admin, or nobody can manage users and the config",
        );
    }
    let tokens = root.key("api_tokens");
    let mut token_names = HashSet::new();
    let mut digests = HashSet::new();
    for (i, t) in shared.api_tokens.iter().enumerate() {
        let at = tokens.index(i);
        if !crate::validate::is_name(&t.name) {
            add(
                &at.key("name"),
                format!("`{}` is not a valid token name", t.name),
                "use letters, digits, `-` and `_` (1 to 64 characters)",
            );
        } else if !token_names.insert(t.name.as_str()) {
            add(
                &at.key("name"),
                format!("there is already a token named `{}`", t.name),
                "give each token its own name",
            );
        }
        if !names.contains(t.user.as_str()) {
            add(
                &at.key("user"),
                format!("no user named `{}`", t.user),
                "a token acts as one of `shared.users`",
            );
        }
        if t.token_sha256.len() != 64 || !t.token_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            add(
                &at.key("token_sha256"),
                "`token_sha256` is not a hex SHA-256".to_owned(),
                "write the 64 hex digits printed by `printf %s TOKEN | sha256sum`",
            );
        } else if !digests.insert(t.token_sha256.to_ascii_lowercase()) {
            add(
                &at.key("token_sha256"),
                format!("token `{}` has the same hash as another token", t.name),
                "create each token with its own random value",
            );
        }
    }
    let c = &shared.console;
    let at = root.key("console");
    if c.session_idle_timeout.get() < std::time::Duration::from_secs(60)
        || c.session_idle_timeout.get() > std::time::Duration::from_secs(24 * 3600)
    {
        add(
            &at.key("session_idle_timeout"),
            format!("{} is outside 1m..24h", c.session_idle_timeout),
            "e.g. `15m`",
        );
    }
    if c.login_backoff.is_zero() || c.login_backoff.get() > std::time::Duration::from_secs(60) {
        add(
            &at.key("login_backoff"),
            format!("{} is outside 1ms..1m", c.login_backoff),
            "e.g. `1s`: the first wait, doubling with each further failure",
        );
    }
    if c.login_backoff_max < c.login_backoff
        || c.login_backoff_max.get() > std::time::Duration::from_secs(24 * 3600)
    {
        add(
            &at.key("login_backoff_max"),
            format!(
                "{} is below `login_backoff` or above 24h",
                c.login_backoff_max
            ),
            "e.g. `5m`",
        );
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";

    fn user(name: &str, role: Role) -> User {
        User {
            name: name.into(),
            role,
            password_hash: HASH.into(),
        }
    }

    #[test]
    fn phc_shapes() {
        assert!(is_argon2id_phc(HASH));
        assert!(!is_argon2id_phc("$2b$12$abcdefghijklmnopqrstuv"));
        assert!(!is_argon2id_phc("hunter2"));
        assert!(!is_argon2id_phc("$argon2i$v=19$m=1,t=1,p=1$a$b"));
    }

    #[test]
    fn users_and_tokens_are_checked_with_paths() {
        let mut shared = SharedConfig {
            users: vec![user("alice", Role::Operator), user("alice", Role::Viewer)],
            api_tokens: vec![ApiToken {
                name: "ci".into(),
                user: "bob".into(),
                token_sha256: "00".into(),
                created: 0,
            }],
            ..SharedConfig::default()
        };
        shared.users[1].password_hash = "plain".into();
        let d = validate_shared(&shared, &SourceMap::empty());
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "shared.users[1].name",
                "shared.users[1].password_hash",
                "shared.users",
                "shared.api_tokens[0].user",
                "shared.api_tokens[0].token_sha256",
            ]
        );
        shared.users = vec![user("root", Role::Admin)];
        shared.api_tokens.clear();
        assert!(validate_shared(&shared, &SourceMap::empty()).is_empty());
    }
}
