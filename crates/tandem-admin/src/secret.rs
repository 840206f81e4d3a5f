//! Passwords, session ids and API tokens: argon2id (RFC 9106) for passwords, 256 random bits
//! for ids and tokens, SHA-256 to store a token, and comparisons that take the same time
//! whatever matches.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// 32 random bytes from the system's generator.
pub fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random generator works");
    b
}

/// A new API token: `tdm_` and 64 hex digits (256 bits).
pub fn new_token() -> String {
    format!("tdm_{}", hex::encode(random_bytes()))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Compares without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The argon2id hash of `password` with a random salt, as a PHC string (the argon2 crate's
/// default cost: 19 MiB, 2 passes, as the first-boot wizard uses).
pub fn hash_password(password: &str) -> String {
    let salt = random_bytes();
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt[..16])
        .expect("argon2 hashes any password of at most 128 characters")
        .to_string()
}

/// Whether `password` matches the PHC string `hash` (argon2id only).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let hash = hash.trim();
    tandem_config::is_argon2id_phc(hash)
        && Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
}

/// A hash to verify against when the user does not exist, so that an unknown name takes as
/// long as a wrong password and the answer does not tell which names exist.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&hex::encode(random_bytes())))
}

/// The minimum password policy (the same as the first-boot wizard's).
pub fn check_password_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 10 {
        return Err(format!("too short: at least 10 characters (this has {n})"));
    }
    if n > 128 {
        return Err("too long: at most 128 characters".into());
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
    .filter(|x| **x)
    .count();
    if classes < 2 {
        return Err(
            "use at least two kinds of characters: lower case, upper case, digits, symbols".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let h = hash_password("correct horse 1");
        assert!(h.starts_with("$argon2id$"));
        assert!(tandem_config::is_argon2id_phc(&h));
        assert!(verify_password("correct horse 1", &h));
        assert!(!verify_password("correct horse 2", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
    }
}
