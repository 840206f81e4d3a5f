//! The console's security properties, on the real router with an in-memory backend. The route
//! list comes from the router's own table, so a new route is covered the day it is added.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::*;
use tandem_admin::routes::{Access, table};

/// Every route but the public ones refuses a request without a session: 401 for the API,
/// a redirect to the login page for pages — whatever header tricks come with it.
#[tokio::test]
async fn every_route_but_the_public_ones_needs_a_login() {
    let c = Console::new(shared(1));
    let before = c.backend.version();
    let mut checked = 0;
    for r in table() {
        let path = concrete(r.path);
        // The F5 CVE-2022-1388 trick: ask a proxy to strip the credentials. There is no proxy,
        // and no credential is trusted for its absence.
        let tricks: [&[(&str, &str)]; 3] = [
            &[],
            &[(
                "connection",
                "keep-alive, X-F5-Auth-Token, Authorization, Cookie",
            )],
            &[
                ("x-forwarded-for", "127.0.0.1"),
                ("x-real-ip", "127.0.0.1"),
                ("x-csrf-token", "x"),
            ],
        ];
        for headers in tricks {
            let mut b = Request::builder().method(r.method.clone()).uri(&path);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            let a = c.send("127.0.0.1", b.body(Body::empty()).unwrap()).await;
            match r.access {
                Access::Public => {
                    assert_ne!(a.status, StatusCode::NOT_FOUND, "{} {path}", r.method);
                }
                Access::Min(_) if path.starts_with("/api/") => {
                    assert_eq!(
                        a.status,
                        StatusCode::UNAUTHORIZED,
                        "{} {path}: {}",
                        r.method,
                        a.body
                    );
                }
                Access::Min(_) => {
                    assert_eq!(a.status, StatusCode::SEE_OTHER, "{} {path}", r.method);
                    assert!(
                        a.location().starts_with("/login"),
                        "{} {path}: {}",
                        r.method,
                        a.location()
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
    // Unknown paths too, so that an answer does not tell which routes exist.
    assert_eq!(
        c.get(None, "/api/v1/nope").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(c.get(None, "/nope").await.status, StatusCode::SEE_OTHER);
    // A wrong bearer token is not rescued by anything.
    let a = c
        .send(
            "127.0.0.1",
            Request::get("/api/v1/status")
                .header(header::AUTHORIZATION, "Bearer tdm_00")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.backend.version(), before, "nothing changed");
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_is_refused() {
    let c = Console::new(shared(1));
    let (cookie, csrf) = c.session("admin").await;
    let before = c.backend.version();
    let path = "/pools/web/servers/web1/state";
    let a = c
        .post_form(Some(&cookie), path, &[("state", "drain")])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = c
        .post_form(
            Some(&cookie),
            path,
            &[("state", "drain"), ("csrf", "0".repeat(64).as_str())],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // JSON with a session needs the header.
    let json = |token: Option<&str>| {
        let mut b = Request::put("/api/v1/pools/web/servers/web1/state")
            .header(header::COOKIE, format!("__Host-tandem_session={cookie}"))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            b = b.header("x-csrf-token", t);
        }
        b.body(Body::from(r#"{"state":"drain"}"#)).unwrap()
    };
    assert_eq!(
        c.send("192.0.2.10", json(None)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(c.backend.version(), before, "nothing changed");
    // The login form has its own token.
    let a = c
        .send(
            "192.0.2.10",
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "username=admin&password={ADMIN_PASSWORD}"
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.cookie("__Host-tandem_session").is_none());
    // With the token it works, both ways.
    let a = c
        .post_form(Some(&cookie), path, &[("state", "drain"), ("csrf", &csrf)])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_ne!(c.backend.version(), before);
    assert_eq!(
        c.send("192.0.2.10", json(Some(&csrf))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn roles_decide_who_drains_and_who_edits() {
    let c = Console::new(shared(1));
    let path = "/pools/web/servers/web1/state";
    let (viewer, vcsrf) = c.session("vic").await;
    let before = c.backend.version();
    let a = c
        .post_form(Some(&viewer), path, &[("state", "drain"), ("csrf", &vcsrf)])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "a viewer cannot drain");
    assert_eq!(c.backend.version(), before);
    assert_eq!(
        c.get(Some(&viewer), "/users").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(c.get(Some(&viewer), "/pools").await.status, StatusCode::OK);
    let page = c.get(Some(&viewer), "/pools").await;
    assert!(
        !page.body.contains("data-action=\"drain\""),
        "no drain button for a viewer"
    );

    let (op, ocsrf) = c.session("olga").await;
    let a = c
        .post_form(Some(&op), path, &[("state", "drain"), ("csrf", &ocsrf)])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "an operator drains");
    let cur = c.backend.current.lock().unwrap().clone();
    assert_eq!(cur.meta.author, "olga");
    assert_eq!(cur.meta.reason, "drain web/web1");
    let a = c
        .post_form(Some(&op), "/services/svc0/delete", &[("csrf", &ocsrf)])
        .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "an operator does not edit services"
    );
    let audit = c.backend.audit.recent(10);
    let drain = audit.iter().find(|e| e.action == "server.drain").unwrap();
    assert_eq!(
        (drain.who.as_str(), drain.from.as_str()),
        ("olga", "192.0.2.10")
    );
}

#[tokio::test]
async fn a_session_is_dead_after_logout_and_after_a_password_change() {
    let c = Console::new(shared(0));
    let (cookie, csrf) = c.session("admin").await;
    let a = c
        .post_form(Some(&cookie), "/logout", &[("csrf", &csrf)])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.get(Some(&cookie), "/").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        c.get(Some(&cookie), "/api/v1/status").await.status,
        StatusCode::UNAUTHORIZED
    );

    let (vic, _) = c.session("vic").await;
    let (admin, acsrf) = c.session("admin").await;
    let a = c
        .post_form(
            Some(&admin),
            "/users/vic",
            &[
                ("role", "viewer"),
                ("password", "Another-Pass-77"),
                ("csrf", &acsrf),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        c.get(Some(&vic), "/").await.status,
        StatusCode::SEE_OTHER,
        "password changed"
    );
}

#[tokio::test]
async fn failed_logins_slow_the_source_down_but_not_the_admin_elsewhere() {
    let c = Console::new(shared(0));
    let attacker = "198.51.100.66";
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            c.login_from(attacker, "admin", "guess-guess-1")
                .await
                .status,
        );
    }
    assert_eq!(&statuses[..3], &[StatusCode::UNAUTHORIZED; 3]);
    assert!(
        statuses[3..]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Even the right password waits, from that source.
    let a = c.login_from(attacker, "admin", ADMIN_PASSWORD).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.headers.get(header::RETRY_AFTER).is_some());
    // The admin, elsewhere, is not locked out.
    let a = c.login_from("192.0.2.10", "admin", ADMIN_PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(a.cookie("__Host-tandem_session").is_some());
}

#[tokio::test]
async fn no_get_changes_anything() {
    let c = Console::new(shared(2));
    let (cookie, _) = c.session("admin").await;
    let versions = c.backend.store.list().unwrap().len();
    let audit = c.backend.audit.len();
    let failovers = *c.backend.failovers.lock().unwrap();
    for r in table().iter().filter(|r| r.method == Method::GET) {
        let path = concrete(r.path);
        if path == "/api/v1/stats/stream" {
            continue; // an endless stream; it only reads
        }
        let a = c.get(Some(&cookie), &path).await;
        // Missing names (404) or query parameters (400) are fine: only reading matters here.
        assert!(!a.status.is_server_error(), "GET {path}: {}", a.status);
    }
    assert_eq!(c.backend.store.list().unwrap().len(), versions);
    assert_eq!(c.backend.audit.len(), audit);
    assert_eq!(*c.backend.failovers.lock().unwrap(), failovers);
    // And a GET to a write route is not routed to the write.
    let a = c.get(Some(&cookie), "/ha/failover").await;
    assert!(
        a.status == StatusCode::METHOD_NOT_ALLOWED || a.status == StatusCode::NOT_FOUND,
        "{}",
        a.status
    );
    assert_eq!(*c.backend.failovers.lock().unwrap(), failovers);
}

#[tokio::test]
async fn api_tokens_act_as_their_user_without_csrf() {
    let c = Console::new(shared(1));
    let (cookie, csrf) = c.session("admin").await;
    let a = c
        .post_form(
            Some(&cookie),
            "/tokens",
            &[("name", "ci"), ("user", "olga"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let marker = "id=\"token-value\"";
    assert!(a.body.contains(marker));
    let token = a
        .body
        .split("class=\"token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("tdm_"));
    let cur = c.backend.current.lock().unwrap().clone();
    assert!(!cur.text.contains(&token), "only the hash is stored");
    let req = |method: &str, path: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let a = c
        .send(
            "203.0.113.5",
            req(
                "PUT",
                "/api/v1/pools/web/servers/web1/state",
                r#"{"state":"disabled"}"#,
            ),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let cur = c.backend.current.lock().unwrap().clone();
    assert_eq!(cur.meta.author, "olga (token ci)");
    let a = c
        .send("203.0.113.5", req("DELETE", "/api/v1/services/svc0", ""))
        .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "an operator's token cannot delete"
    );
}

#[tokio::test]
async fn answers_carry_the_security_headers() {
    let c = Console::new(shared(0));
    for path in ["/login", "/api/v1/status", "/static/console.js"] {
        let a = c.get(None, path).await;
        let h = |n: &str| {
            a.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert!(
            h("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        assert!(!h("content-security-policy").contains("unsafe-inline"));
        assert_eq!(h("x-frame-options"), "DENY");
        if !path.starts_with("/static/") {
            assert_eq!(h("cache-control"), "no-store", "{path}");
        }
    }
    let a = c.login_from("192.0.2.10", "admin", ADMIN_PASSWORD).await;
    let set = a
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-tandem_session="))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let id = set.split(';').next().unwrap().split('=').nth(1).unwrap();
    assert_eq!(id.len(), 64, "256 random bits");
    // No template has inline script or style.
    for entry in std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../web-ui/templates"
    ))
    .unwrap()
    {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains("<script>")
                && !text.contains("style=")
                && !text.contains("<style")
                && !text.contains("onclick")
        );
    }
}
