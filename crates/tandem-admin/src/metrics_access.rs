//! Who may scrape `/metrics`: a source address in the allowed networks, or a request carrying
//! the scrape token (its SHA-256 is in the node config, never the token itself).

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

#[derive(Clone, Debug)]
pub struct MetricsAccess {
    allow: Vec<IpNet>,
    token_sha256: Option<[u8; 32]>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No token was offered: ask for one.
    Unauthenticated,
    /// A token was offered and it is wrong.
    Forbidden,
}

impl MetricsAccess {
    pub fn new(cfg: &tandem_config::MetricsAccess) -> Self {
        let token_sha256 = cfg.token_sha256.as_deref().and_then(|h| {
            let bytes = hex::decode(h).ok()?;
            bytes.try_into().ok()
        });
        MetricsAccess {
            allow: cfg.allow.clone(),
            token_sha256,
        }
    }

    /// `authorization` is the raw `Authorization` header value, if any.
    pub fn decide(&self, source: IpAddr, authorization: Option<&[u8]>) -> Decision {
        let source = canonical(source);
        if self.allow.iter().any(|net| net.contains(&source)) {
            return Decision::Allowed;
        }
        let Some(value) = authorization else {
            return Decision::Unauthenticated;
        };
        let token = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "));
        match (token, &self.token_sha256) {
            (Some(token), Some(expected)) => {
                let got: [u8; 32] = Sha256::digest(token.trim_ascii()).into();
                if constant_time_eq(&got, expected) {
                    Decision::Allowed
                } else {
                    Decision::Forbidden
                }
            }
            _ => Decision::Forbidden,
        }
    }
}

/// An IPv4 client seen on an IPv6 socket (`::ffff:a.b.c.d`) is matched as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was
/// right.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(allow: &[&str], token: Option<&str>) -> MetricsAccess {
        MetricsAccess::new(&tandem_config::MetricsAccess {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            token_sha256: token.map(|t| hex::encode(Sha256::digest(t.as_bytes()))),
        })
    }

    #[test]
    fn allowed_networks_need_no_token() {
        let a = access(&["127.0.0.0/8"], None);
        assert_eq!(
            a.decide("127.0.0.1".parse().unwrap(), None),
            Decision::Allowed
        );
        assert_eq!(
            a.decide("::ffff:127.0.0.1".parse().unwrap(), None),
            Decision::Allowed
        );
        assert_eq!(
            a.decide("10.0.0.1".parse().unwrap(), None),
            Decision::Unauthenticated
        );
    }

    #[test]
    fn the_right_token_opens_and_a_wrong_one_is_forbidden() {
        let a = access(&[], Some("s3cret"));
        let ip = "192.0.2.7".parse().unwrap();
        assert_eq!(a.decide(ip, Some(b"Bearer s3cret")), Decision::Allowed);
        assert_eq!(a.decide(ip, Some(b"Bearer s3cre")), Decision::Forbidden);
        assert_eq!(a.decide(ip, Some(b"Basic czNjcmV0")), Decision::Forbidden);
    }

    #[test]
    fn without_a_configured_token_no_token_opens() {
        let a = access(&[], None);
        assert_eq!(
            a.decide("192.0.2.7".parse().unwrap(), Some(b"Bearer anything")),
            Decision::Forbidden
        );
    }
}
