//! The REST API against its OpenAPI document, and page render times.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tandem_admin::routes::table;

/// Every `/api/v1` route of the router is in the document and every operation of the
/// document is a route the router answers.
#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes() {
    let routes: BTreeSet<(String, String)> = table()
        .iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| (r.method.as_str().to_lowercase(), r.path.to_owned()))
        .collect();
    let doc = tandem_admin::openapi::document();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    assert_eq!(routes, documented);
    // And the router really answers each documented operation (not 404/405 after the gate).
    let c = Console::new(shared(1));
    let (cookie, csrf) = c.session("admin").await;
    for (method, path) in &documented {
        if path == "/api/v1/stats/stream" {
            continue;
        }
        let uri = concrete(path);
        let uri = if uri.ends_with("/diff") {
            format!("{uri}?from=1.1&to=1.1")
        } else {
            uri
        };
        let a = c
            .send(
                "192.0.2.10",
                Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header(header::COOKIE, format!("__Host-tandem_session={cookie}"))
                    .header("x-csrf-token", &csrf)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await;
        assert!(
            a.status != StatusCode::METHOD_NOT_ALLOWED
                && !(a.status == StatusCode::NOT_FOUND && a.body.contains("no such")),
            "{method} {uri}: {} {}",
            a.status,
            a.body
        );
        assert!(
            !a.status.is_server_error(),
            "{method} {uri}: {} {}",
            a.status,
            a.body
        );
    }
}

#[tokio::test]
async fn a_bad_service_is_refused_with_the_field_named() {
    let c = Console::new(shared(1));
    let (cookie, csrf) = c.session("admin").await;
    let a = c
        .post_form(
            Some(&cookie),
            "/services",
            &[
                ("name", "shop"),
                ("protocol", "http"),
                ("listen", "127.0.0.1:20000"),
                ("pool", "web"),
                ("extra", ""),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.body.contains("data-field=\"listen\""),
        "the clash is shown next to the listen field:\n{}",
        a.body
    );
    let a = c
        .post_form(
            Some(&cookie),
            "/services",
            &[
                ("name", "shop"),
                ("protocol", "http"),
                ("listen", "127.0.0.1:20100"),
                ("pool", "web"),
                ("extra", "persistence: { cookie: { name: 'bad name' } }"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("data-field=\"extra\""), "{}", a.body);
    let a = c
        .post_form(
            Some(&cookie),
            "/services",
            &[
                ("name", "shop"),
                ("protocol", "http"),
                ("listen", "127.0.0.1:20100"),
                ("pool", "web"),
                ("extra", ""),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(
        c.backend
            .current
            .lock()
            .unwrap()
            .shared
            .service("shop")
            .is_some()
    );
}

#[tokio::test]
async fn rollback_commits_the_old_content_as_a_new_version() {
    let c = Console::new(shared(1));
    let (cookie, csrf) = c.session("admin").await;
    let first = c.backend.current.lock().unwrap().clone();
    c.post_form(Some(&cookie), "/services/svc0/delete", &[("csrf", &csrf)])
        .await;
    assert!(c.backend.current.lock().unwrap().shared.services.is_empty());
    let short = format!("{}.{}", first.meta.id.epoch, first.meta.id.n);
    let a = c
        .post_form(
            Some(&cookie),
            "/history/rollback",
            &[("version", &short), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let now = c.backend.current.lock().unwrap().clone();
    assert_eq!(now.meta.id.hash, first.meta.id.hash);
    assert!(now.meta.id.n > first.meta.id.n + 1);
    let diff = c
        .get(
            Some(&cookie),
            &format!(
                "/history/diff?from={short}&to={}.{}",
                now.meta.id.epoch,
                now.meta.id.n - 1
            ),
        )
        .await;
    assert!(diff.body.contains("class=\"del\""), "{}", diff.body);
    assert!(!diff.body.contains("$argon2id$"), "hashes are redacted");
}

/// Every page renders in well under 50 ms with 100 services (the figure goes to
/// docs/performance.md; asserted with margin).
#[tokio::test]
async fn pages_render_fast_with_a_hundred_services() {
    let c = Console::new(shared(100));
    let (cookie, _) = c.session("admin").await;
    let mut report = Vec::new();
    for path in [
        "/",
        "/services",
        "/services/svc50",
        "/pools",
        "/pools/web",
        "/certificates",
        "/ha",
        "/history",
        "/audit",
        "/users",
        "/api/v1/status",
        "/api/v1/services",
    ] {
        let _ = c.get(Some(&cookie), path).await; // warm
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let a = c.get(Some(&cookie), path).await;
            best = best.min(t.elapsed());
            assert_eq!(a.status, StatusCode::OK, "{path}");
        }
        report.push(format!("{path} {:.2} ms", best.as_secs_f64() * 1e3));
        assert!(best < Duration::from_millis(50), "{path} took {best:?}");
    }
    println!("page render times (best of 5): {}", report.join(", "));
}
