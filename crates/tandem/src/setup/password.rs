//! The admin password: the minimum policy the wizard enforces, and its argon2id hash.
//!
//! The config schema has no users yet (issue 5 adds `users`); until then the hash is kept in
//! `/config/admin-password.argon2` as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`),
//! which issue 5 takes over as the first admin user's hash.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 128;

/// Checks the minimum policy: at least [`MIN_LENGTH`] characters from at least two classes
/// (lower case, upper case, digits, others), no control characters, not containing the
/// hostname or a well-known word.
pub fn check_policy(password: &str, hostname: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(format!(
            "too short: at least {MIN_LENGTH} characters (this has {n})"
        ));
    }
    if n > MAX_LENGTH {
        return Err(format!("too long: at most {MAX_LENGTH} characters"));
    }
    if password.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ]
    .iter()
    .filter(|&&x| x)
    .count();
    if classes < 2 {
        return Err(
            "use at least two kinds of characters: lower case, upper case, digits, symbols".into(),
        );
    }
    let lower = password.to_lowercase();
    if !hostname.is_empty() && lower.contains(&hostname.to_lowercase()) {
        return Err("the password must not contain the box's hostname".into());
    }
    for word in ["password", "tandem", "admin", "123456", "qwerty"] {
        if lower.contains(word) {
            return Err(format!("the password must not contain `{word}`"));
        }
    }
    Ok(())
}

/// The argon2id hash (RFC 9106; the argon2 crate's defaults: 19 MiB, 2 passes), as a PHC
/// string with a random 16-byte salt.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    let h = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(h.to_string())
}

pub fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc.trim())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_explains_each_refusal() {
        assert!(
            check_policy("short1", "lb-a")
                .unwrap_err()
                .contains("at least 10")
        );
        assert!(
            check_policy("alllowercaseletters", "lb-a")
                .unwrap_err()
                .contains("two kinds")
        );
        assert!(
            check_policy("my-lb-a-box-2024", "lb-a")
                .unwrap_err()
                .contains("hostname")
        );
        assert!(
            check_policy("Password2024!", "lb-a")
                .unwrap_err()
                .contains("`password`")
        );
        assert!(
            check_policy("tab\there123A", "lb-a")
                .unwrap_err()
                .contains("control")
        );
        check_policy("correct horse 7", "lb-a").unwrap();
        check_policy("Rack-42-Blue", "lb-a").unwrap();
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let h = hash("Rack-42-Blue").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("Rack-42-Blue", &h));
        assert!(!verify("Rack-42-Blud", &h));
        assert_ne!(h, hash("Rack-42-Blue").unwrap(), "a fresh salt each time");
    }
}
