//! The one gate every request of the management plane passes: it finds the route's access
//! rule in [`crate::routes::table`], authenticates (session cookie or API token), authorizes by
//! role, and checks the CSRF token of every write made with a session. No handler does any of
//! this itself, so a new route cannot forget it.
//!
//! Auth depends only on the session cookie and the `Authorization` header as the client sent
//! them, never on the source address (`/metrics`' own rule aside) nor on a header a proxy adds
//! or strips: a `Connection: Authorization` trick (F5 CVE-2022-1388) can only remove a
//! credential, which leaves the request unauthenticated.

use crate::app::{AppState, Principal, Via};
use crate::routes::{Access, find};
use crate::secret;
use crate::session;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;
use tandem_config::Role;

/// The largest form body read (a restore upload or a certificate fits).
pub const MAX_FORM: usize = 16 * 1024 * 1024;

pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    // An unknown route needs a login like any other, so its absence tells nothing.
    let access = matched
        .as_deref()
        .and_then(|p| find(&method, p))
        .map(|r| r.access)
        .unwrap_or(Access::Min(Role::Viewer));
    let Access::Min(min) = access else {
        return next.run(req).await;
    };
    let is_api = req.uri().path().starts_with("/api/");
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical().to_string())
        .unwrap_or_default();
    let principal = match authenticate(&state, req.headers(), from).await {
        Ok(p) => p,
        Err(e) => return unauthenticated(is_api, e, req.uri().path()),
    };
    if principal.role < min {
        return forbidden(
            is_api,
            &format!(
                "{} may not do this: it needs the role `{}` (you are `{}`)",
                principal.user, min, principal.role
            ),
        );
    }
    let mut req = req;
    if let Via::Session { csrf, .. } = &principal.via
        && !matches!(method, Method::GET | Method::OPTIONS)
    {
        let (checked, rebuilt) = check_csrf(req, csrf).await;
        match checked {
            Ok(()) => req = rebuilt,
            Err(why) => return forbidden(is_api, why),
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    from: String,
) -> Result<Principal, &'static str> {
    let current = state.backend.current().await;
    let shared = &current.shared;
    // A bearer token, when given, is the only credential looked at: a wrong token is not
    // rescued by a cookie.
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let value = auth.as_bytes();
        let token = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .ok_or("only `Authorization: Bearer TOKEN` is understood")?
            .trim_ascii();
        let digest = secret::sha256_hex(token);
        let found = shared
            .api_tokens
            .iter()
            .find(|t| {
                secret::constant_time_eq(
                    t.token_sha256.to_ascii_lowercase().as_bytes(),
                    digest.as_bytes(),
                )
            })
            .ok_or("unknown API token")?;
        let user = shared
            .user(&found.user)
            .ok_or("the token's user no longer exists")?;
        return Ok(Principal {
            user: user.name.clone(),
            role: user.role,
            via: Via::Token {
                name: found.name.clone(),
            },
            from,
        });
    }
    let cookie = session::cookie_value(headers, session::COOKIE).ok_or("not logged in")?;
    let idle = shared.console.session_idle_timeout.get();
    let s = state
        .sessions
        .get(cookie, idle)
        .ok_or("the session has ended; log in again")?;
    let user = match shared.user(&s.user) {
        Some(u)
            if secret::constant_time_eq(
                &secret::sha256(u.password_hash.as_bytes()),
                &s.password_hash_sha256,
            ) =>
        {
            u
        }
        _ => {
            // Removed, or the password changed since the login.
            state.sessions.remove(cookie);
            return Err("the session has ended; log in again");
        }
    };
    Ok(Principal {
        user: user.name.clone(),
        role: user.role,
        via: Via::Session {
            csrf: s.csrf,
            cookie: cookie.to_owned(),
        },
        from,
    })
}

/// The token from `X-CSRF-Token`, or from the `csrf` field of a form body. The body is read
/// (bounded) and put back for the handler.
async fn check_csrf(req: Request, expected: &str) -> (Result<(), &'static str>, Request) {
    if let Some(v) = req.headers().get("x-csrf-token") {
        let ok = secret::constant_time_eq(v.as_bytes(), expected.as_bytes());
        return (if ok { Ok(()) } else { Err("wrong CSRF token") }, req);
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (Err("a write with a session needs the CSRF token"), req);
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_FORM).await {
        Ok(b) => b,
        Err(_) => {
            return (
                Err("the form is too large"),
                Request::from_parts(parts, Body::empty()),
            );
        }
    };
    let token = form_urlencoded_field(&bytes, "csrf");
    let ok = token.is_some_and(|t| secret::constant_time_eq(t.as_bytes(), expected.as_bytes()));
    (
        if ok {
            Ok(())
        } else {
            Err("the form's CSRF token is missing or wrong; reload the page")
        },
        Request::from_parts(parts, Body::from(bytes)),
    )
}

fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn unauthenticated(is_api: bool, why: &str, path: &str) -> Response {
    if is_api {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({ "error": why })),
        )
            .into_response()
    } else {
        // Only a local path is carried over, so the login cannot redirect elsewhere.
        let next = if path.starts_with('/') && !path.starts_with("//") && path != "/logout" {
            path
        } else {
            "/"
        };
        let target = format!("/login?next={}", url_encode(next));
        Redirect::to(&target).into_response()
    }
}

pub fn forbidden(is_api: bool, why: &str) -> Response {
    if is_api {
        (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": why })),
        )
            .into_response()
    } else {
        crate::pages::error_page(StatusCode::FORBIDDEN, why)
    }
}

pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Headers on every answer: no framing, no sniffing, no referrer, scripts and styles only
/// from the console's own static files, nothing cached but the static files.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    if !is_static {
        set(h, "cache-control", "no-store");
    }
    resp
}
