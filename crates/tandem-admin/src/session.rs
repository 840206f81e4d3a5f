//! Server-side sessions: a random 256-bit id in an `HttpOnly; Secure; SameSite=Strict`
//! cookie; the server keeps only the id's SHA-256, the user, a CSRF token and the last use.
//! A session ends at logout, after the idle timeout, when its user is removed or their
//! password or role changes.

use crate::secret;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie. `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-tandem_session";
/// The login form's own CSRF cookie (double submit), before there is a session.
pub const LOGIN_COOKIE: &str = "__Host-tandem_login";

#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    /// The user's password hash when the session began: a changed password ends it.
    pub password_hash_sha256: [u8; 32],
    pub csrf: String,
    pub from: String,
    last_used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<[u8; 32], Session>>,
    /// A message for the next page a session shows (after a redirect).
    flash: Mutex<HashMap<[u8; 32], String>>,
}

/// The most sessions kept; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;

impl Sessions {
    /// Starts a session; returns the cookie value (hex id) and the session.
    pub fn create(&self, user: &str, password_hash: &str, from: &str) -> (String, Session) {
        let id = secret::random_bytes();
        let session = Session {
            user: user.to_owned(),
            password_hash_sha256: secret::sha256(password_hash.as_bytes()),
            csrf: hex::encode(secret::random_bytes()),
            from: from.to_owned(),
            last_used: Instant::now(),
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(secret::sha256(&id), session.clone());
        (hex::encode(id), session)
    }

    /// The live session of a cookie value, touched; an idle one is removed.
    pub fn get(&self, cookie: &str, idle: Duration) -> Option<Session> {
        let id = hex::decode(cookie).ok()?;
        if id.len() != 32 {
            return None;
        }
        let key = secret::sha256(&id);
        let mut map = self.lock();
        let now = Instant::now();
        let s = map.get_mut(&key)?;
        if now.duration_since(s.last_used) > idle {
            map.remove(&key);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Whether the session still exists (not logged out nor revoked), without touching it.
    pub fn exists(&self, cookie: &str) -> bool {
        hex::decode(cookie)
            .ok()
            .is_some_and(|id| self.lock().contains_key(&secret::sha256(&id)))
    }

    pub fn set_flash(&self, cookie: &str, message: String) {
        if let Ok(id) = hex::decode(cookie) {
            let mut f = self.flash.lock().unwrap_or_else(|e| e.into_inner());
            if f.len() < MAX_SESSIONS {
                f.insert(secret::sha256(&id), message);
            }
        }
    }

    pub fn take_flash(&self, cookie: &str) -> Option<String> {
        let id = hex::decode(cookie).ok()?;
        self.flash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&secret::sha256(&id))
    }

    pub fn remove(&self, cookie: &str) {
        if let Ok(id) = hex::decode(cookie) {
            self.lock().remove(&secret::sha256(&id));
        }
    }

    /// Ends every session of `user` (removed, password or role changed).
    pub fn remove_user(&self, user: &str) {
        self.lock().retain(|_, s| s.user != user);
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `Set-Cookie` value that sets the session cookie.
pub fn set_cookie(name: &str, value: &str) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes a cookie.
pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_on_logout_idle_and_user_removal() {
        let s = Sessions::default();
        let (id, session) = s.create("alice", "$argon2id$x", "192.0.2.1");
        assert_eq!(session.csrf.len(), 64);
        assert_eq!(s.get(&id, Duration::from_secs(60)).unwrap().user, "alice");
        s.remove(&id);
        assert!(s.get(&id, Duration::from_secs(60)).is_none());
        let (id, _) = s.create("alice", "$argon2id$x", "192.0.2.1");
        std::thread::sleep(Duration::from_millis(20));
        assert!(s.get(&id, Duration::from_millis(10)).is_none(), "idle");
        let (id, _) = s.create("bob", "$argon2id$x", "192.0.2.1");
        s.remove_user("bob");
        assert!(s.get(&id, Duration::from_secs(60)).is_none());
        assert!(s.get("zz", Duration::from_secs(60)).is_none());
    }
}
