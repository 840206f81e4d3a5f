//! Which pool a request goes to: the service's routing rules, tried in order, then its
//! default pool.
//!
//! A rule holds when every condition it gives holds:
//! - `host`: the request's host (from an absolute-form target, else `Host`; lowercased,
//!   without port) equals the rule's, case-insensitively, or the rule is `*.domain` and the
//!   host is one more label in front of `domain` (`a.domain`, not `a.b.domain`, not `domain`);
//! - `path_prefix`: the path (without query) starts with it, byte for byte;
//! - `header`: a field of that name (case-insensitive) whose value (without surrounding
//!   whitespace) is exactly the rule's.
//!
//! Matching compares the config's strings in place: no allocation per request.

use crate::pool::PoolRuntime;
use crate::service::ServiceRuntime;
use std::sync::Arc;
use tandem_config::Route;
use tandem_http::RequestHead;

/// The pool for `head`: the first matching rule's, else the default pool. `None` when no
/// rule matches and the service has no default pool (a redirect-only service).
pub(crate) fn pool_for<'a>(
    ctx: &'a ServiceRuntime,
    default: Option<&'a Arc<PoolRuntime>>,
    head: &RequestHead,
) -> Option<&'a Arc<PoolRuntime>> {
    if ctx.config.routes.is_empty() {
        return default;
    }
    let host = head.host();
    let host = host.as_deref();
    for route in &ctx.config.routes {
        if matches(route, host, head.path(), |name| head.header(name)) {
            return ctx.pool(&route.pool);
        }
    }
    default
}

/// Whether `route` holds for a request with this host, path and field lookup.
pub(crate) fn matches<'h>(
    route: &Route,
    host: Option<&str>,
    path: &str,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> bool {
    if let Some(want) = &route.host {
        match host {
            Some(h) if host_matches(want, h) => {}
            _ => return false,
        }
    }
    if let Some(prefix) = &route.path_prefix
        && !path.starts_with(prefix.as_str())
    {
        return false;
    }
    if let Some(m) = &route.header
        && header(&m.name) != Some(m.value.as_bytes())
    {
        return false;
    }
    true
}

/// `rule` is an exact host or `*.domain` (one label); `host` is lowercased already.
pub(crate) fn host_matches(rule: &str, host: &str) -> bool {
    match rule.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                && !host[..host.len() - domain.len() - 1].contains('.')
        }
        None => rule.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::HeaderMatch;

    fn route(host: Option<&str>, prefix: Option<&str>, header: Option<(&str, &str)>) -> Route {
        Route {
            host: host.map(str::to_owned),
            path_prefix: prefix.map(str::to_owned),
            header: header.map(|(n, v)| HeaderMatch {
                name: n.into(),
                value: v.into(),
            }),
            pool: "p".into(),
        }
    }

    #[test]
    fn hosts_exact_and_one_label_wildcards() {
        assert!(host_matches("App.Example.org", "app.example.org"));
        assert!(!host_matches("app.example.org", "www.example.org"));
        assert!(host_matches("*.example.org", "a.example.org"));
        assert!(host_matches("*.Example.org", "a.example.org"));
        assert!(!host_matches("*.example.org", "example.org"));
        assert!(!host_matches("*.example.org", "a.b.example.org"));
        assert!(!host_matches("*.example.org", ".example.org"));
        assert!(!host_matches("*.example.org", "aexample.org"));
    }

    #[test]
    fn every_given_condition_must_hold() {
        let none = |_: &str| None;
        let r = route(
            Some("*.example.org"),
            Some("/api/"),
            Some(("x-tier", "gold")),
        );
        let gold = |n: &str| (n == "x-tier").then_some(&b"gold"[..]);
        assert!(matches(&r, Some("a.example.org"), "/api/v1", gold));
        assert!(!matches(&r, Some("a.example.org"), "/api/v1", none));
        assert!(!matches(&r, Some("a.example.org"), "/web", gold));
        assert!(!matches(&r, None, "/api/v1", gold));
        let silver = |_: &str| Some(&b"silver"[..]);
        assert!(!matches(&r, Some("a.example.org"), "/api/", silver));
        assert!(matches(&route(None, None, None), None, "/", none));
    }
}
