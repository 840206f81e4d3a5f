//! The OpenAPI 3 document of `/api/v1`, served at `/api/v1/openapi.json`. Written by hand
//! here, one entry per route of [`crate::routes::table`]; a test checks that the two list the
//! same routes, so neither can drift.

use serde_json::{Value, json};

fn op(summary: &str, tag: &str, role: &str) -> Value {
    json!({
        "summary": summary,
        "tags": [tag],
        "description": format!("Needs the role `{role}` or above."),
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": {} } } },
            "401": { "$ref": "#/components/responses/Unauthenticated" },
            "403": { "$ref": "#/components/responses/Forbidden" }
        }
    })
}

fn with_params(mut v: Value, params: &[(&str, &str, &str)]) -> Value {
    v["parameters"] = params
        .iter()
        .map(|(name, inn, ty)| {
            json!({
                "name": name,
                "in": inn,
                "required": *inn == "path",
                "schema": { "type": ty }
            })
        })
        .collect();
    v
}

fn with_body(mut v: Value, schema: &str) -> Value {
    v["requestBody"] = json!({
        "required": true,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    });
    v
}

/// A change: answers the new version, or why nothing changed.
fn change(v: Value) -> Value {
    let mut v = v;
    v["responses"]["200"] = json!({
        "description": "Committed as a new version",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Committed" } } }
    });
    v["responses"]["404"] = json!({ "$ref": "#/components/responses/Error" });
    v["responses"]["409"] = json!({ "$ref": "#/components/responses/Error" });
    v["responses"]["422"] = json!({ "$ref": "#/components/responses/Invalid" });
    v
}

fn add_error(mut v: Value, code: &str) -> Value {
    v["responses"][code] = json!({ "$ref": "#/components/responses/Error" });
    v
}

/// Every API route as `(method, path, operation)`; paths in OpenAPI form (`{name}`).
pub fn operations() -> Vec<(&'static str, &'static str, Value)> {
    let name = [("name", "path", "string")];
    let server = [("name", "path", "string"), ("id", "path", "string")];
    let version = [("epoch", "path", "integer"), ("n", "path", "integer")];
    vec![
        (
            "get",
            "/api/v1/openapi.json",
            op("This document", "meta", "viewer"),
        ),
        (
            "get",
            "/api/v1/status",
            op(
                "This box: role, health, config version, VIPs and who holds them, peer, last failover",
                "status",
                "viewer",
            ),
        ),
        (
            "get",
            "/api/v1/stats",
            op(
                "The dataplane's counters per service and server",
                "status",
                "viewer",
            ),
        ),
        (
            "get",
            "/api/v1/stats/history",
            with_params(
                op(
                    "The last hour of traffic rates per series, in columns",
                    "status",
                    "viewer",
                ),
                &[
                    ("seconds", "query", "integer"),
                    ("prefix", "query", "string"),
                ],
            ),
        ),
        ("get", "/api/v1/stats/stream", {
            let mut v = op(
                "Server-sent events: the newest second of every series, once a second",
                "status",
                "viewer",
            );
            v["responses"]["200"] = json!({ "description": "An event stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } });
            v
        }),
        (
            "get",
            "/api/v1/services",
            op("Every service", "services", "viewer"),
        ),
        (
            "post",
            "/api/v1/services",
            change(with_body(
                op("Add a service", "services", "admin"),
                "Service",
            )),
        ),
        (
            "get",
            "/api/v1/services/{name}",
            add_error(
                with_params(op("One service", "services", "viewer"), &name),
                "404",
            ),
        ),
        (
            "put",
            "/api/v1/services/{name}",
            change(with_body(
                with_params(op("Replace a service", "services", "admin"), &name),
                "Service",
            )),
        ),
        (
            "delete",
            "/api/v1/services/{name}",
            change(with_params(
                op("Delete a service", "services", "admin"),
                &name,
            )),
        ),
        (
            "get",
            "/api/v1/pools",
            op("Every pool with its servers", "pools", "viewer"),
        ),
        (
            "post",
            "/api/v1/pools",
            change(with_body(op("Add a pool", "pools", "admin"), "Pool")),
        ),
        (
            "get",
            "/api/v1/pools/{name}",
            add_error(with_params(op("One pool", "pools", "viewer"), &name), "404"),
        ),
        (
            "put",
            "/api/v1/pools/{name}",
            change(with_body(
                with_params(op("Replace a pool", "pools", "admin"), &name),
                "Pool",
            )),
        ),
        (
            "delete",
            "/api/v1/pools/{name}",
            change(with_params(op("Delete a pool", "pools", "admin"), &name)),
        ),
        (
            "put",
            "/api/v1/pools/{name}/servers/{id}/state",
            change(with_body(
                with_params(
                    op(
                        "Enable, drain or disable a server (a config commit)",
                        "pools",
                        "operator",
                    ),
                    &server,
                ),
                "ServerState",
            )),
        ),
        (
            "get",
            "/api/v1/certificates",
            op(
                "Certificates with subject, names and expiry; CSRs waiting for their certificate",
                "certificates",
                "viewer",
            ),
        ),
        (
            "post",
            "/api/v1/certificates",
            change(with_body(
                op("Upload a certificate (and key)", "certificates", "admin"),
                "CertificateUpload",
            )),
        ),
        (
            "post",
            "/api/v1/certificates/csr",
            add_error(
                with_body(
                    op(
                        "Generate a key (kept on this box) and a CSR",
                        "certificates",
                        "admin",
                    ),
                    "CsrRequest",
                ),
                "422",
            ),
        ),
        (
            "delete",
            "/api/v1/certificates/{name}",
            change(with_params(
                op("Delete a certificate", "certificates", "admin"),
                &name,
            )),
        ),
        (
            "get",
            "/api/v1/ha",
            op(
                "Virtual routers, priorities, advert intervals, tracking, peer, last failover, last drill",
                "ha",
                "viewer",
            ),
        ),
        (
            "get",
            "/api/v1/ha/readiness",
            op(
                "Can the passive box take over now: each check with its reason",
                "ha",
                "viewer",
            ),
        ),
        (
            "post",
            "/api/v1/ha/failover",
            add_error(
                op(
                    "Graceful handover to the peer (make before break)",
                    "ha",
                    "admin",
                ),
                "409",
            ),
        ),
        (
            "post",
            "/api/v1/ha/drill",
            add_error(
                op(
                    "Failover drill: hand over and back while the box without the VIP probes it; reports the gaps",
                    "ha",
                    "admin",
                ),
                "409",
            ),
        ),
        (
            "get",
            "/api/v1/versions",
            op(
                "Committed config versions, oldest first",
                "history",
                "viewer",
            ),
        ),
        (
            "get",
            "/api/v1/versions/diff",
            add_error(
                add_error(
                    with_params(
                        op(
                            "Unified diff between two versions (EPOCH.N), secrets redacted",
                            "history",
                            "viewer",
                        ),
                        &[("from", "query", "string"), ("to", "query", "string")],
                    ),
                    "400",
                ),
                "404",
            ),
        ),
        (
            "get",
            "/api/v1/versions/{epoch}/{n}",
            add_error(
                with_params(
                    op("One version's text, secrets redacted", "history", "viewer"),
                    &version,
                ),
                "404",
            ),
        ),
        (
            "post",
            "/api/v1/versions/{epoch}/{n}/rollback",
            change(with_params(
                op(
                    "Commit an old version's content as a new version",
                    "history",
                    "admin",
                ),
                &version,
            )),
        ),
        (
            "get",
            "/api/v1/branches",
            op("Branches kept after a partition", "history", "viewer"),
        ),
        ("get", "/api/v1/config/backup", {
            let mut v = op(
                "The running shared config as YAML, secrets included",
                "history",
                "admin",
            );
            v["responses"]["200"] = json!({ "description": "YAML", "content": { "application/yaml": { "schema": { "type": "string" } } } });
            v
        }),
        (
            "post",
            "/api/v1/config/restore",
            change(with_body(
                op(
                    "Restore a backup: validated whole before anything changes",
                    "history",
                    "admin",
                ),
                "Restore",
            )),
        ),
        (
            "get",
            "/api/v1/audit",
            with_params(
                op("The audit log, newest first", "audit", "viewer"),
                &[("limit", "query", "integer")],
            ),
        ),
        (
            "get",
            "/api/v1/users",
            op("Users and roles", "users", "admin"),
        ),
        (
            "post",
            "/api/v1/users",
            change(with_body(op("Add a user", "users", "admin"), "NewUser")),
        ),
        (
            "put",
            "/api/v1/users/{name}",
            change(with_body(
                with_params(
                    op(
                        "Change a user's role or password (their sessions end)",
                        "users",
                        "admin",
                    ),
                    &name,
                ),
                "UserUpdate",
            )),
        ),
        (
            "delete",
            "/api/v1/users/{name}",
            change(with_params(
                op("Delete a user and their tokens", "users", "admin"),
                &name,
            )),
        ),
        (
            "get",
            "/api/v1/tokens",
            op("API tokens (names only)", "users", "admin"),
        ),
        ("post", "/api/v1/tokens", {
            let mut v = change(with_body(
                op(
                    "Create an API token; the token is in this answer only",
                    "users",
                    "admin",
                ),
                "NewToken",
            ));
            v["responses"]["201"] = json!({ "description": "Created", "content": { "application/json": { "schema": {} } } });
            v
        }),
        (
            "delete",
            "/api/v1/tokens/{name}",
            change(with_params(
                op("Revoke an API token", "users", "admin"),
                &name,
            )),
        ),
    ]
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, operation) in operations() {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = operation;
    }
    let name = json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Tandem management API",
            "version": "1",
            "description": "The REST API of a Tandem box (docs/console.md). Authenticate with `Authorization: Bearer TOKEN` (an API token from the Users page); a browser session works too, with the `X-CSRF-Token` header on writes. Config changes are refused on the passive box (409) with a message naming the active one."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Unauthenticated": { "description": "No valid session or token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "Forbidden": { "description": "The role does not allow it, or a CSRF token is missing", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "Error": { "description": "Not found or refused", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "Invalid": { "description": "Invalid: each problem with its path in the config", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Invalid" } } } }
            },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "string" } }, "required": ["error"] },
                "Invalid": { "type": "object", "properties": {
                    "error": { "type": "string" },
                    "diagnostics": { "type": "array", "items": { "type": "object", "properties": {
                        "path": { "type": "string" }, "line": { "type": "integer" }, "column": { "type": "integer" },
                        "message": { "type": "string" }, "hint": { "type": "string" } } } } } },
                "Committed": { "type": "object", "properties": { "version": { "type": "string" }, "meta": { "type": "object" } } },
                "Service": { "type": "object", "description": "As `shared.services[]` in docs/config.md",
                    "required": ["name", "listen", "protocol"],
                    "properties": {
                        "name": name,
                        "listen": { "type": "string", "example": "10.0.0.100:80" },
                        "protocol": { "type": "string", "enum": ["tcp", "udp", "http", "https"] },
                        "pool": { "type": "string" } } },
                "Pool": { "type": "object", "description": "As `shared.pools[]` in docs/config.md",
                    "required": ["name"],
                    "properties": {
                        "name": name,
                        "algorithm": { "type": "string", "enum": ["round_robin", "least_connections", "source_hash", "power_of_two"] },
                        "servers": { "type": "array", "items": { "type": "object", "required": ["id", "address"], "properties": {
                            "id": name, "address": { "type": "string", "example": "10.0.1.11:8080" },
                            "weight": { "type": "integer" }, "state": { "type": "string", "enum": ["enabled", "drain", "disabled"] } } } } } },
                "ServerState": { "type": "object", "required": ["state"], "properties": { "state": { "type": "string", "enum": ["enabled", "drain", "disabled"] } } },
                "CertificateUpload": { "type": "object", "required": ["name", "cert_pem"], "properties": {
                    "name": name, "cert_pem": { "type": "string" }, "key_pem": { "type": "string" } } },
                "CsrRequest": { "type": "object", "required": ["name", "dns_names"], "properties": {
                    "name": name, "dns_names": { "type": "array", "items": { "type": "string" } } } },
                "Restore": { "type": "object", "required": ["yaml"], "properties": { "yaml": { "type": "string" } } },
                "NewUser": { "type": "object", "required": ["name", "role", "password"], "properties": {
                    "name": { "type": "string" }, "role": { "type": "string", "enum": ["admin", "operator", "viewer"] }, "password": { "type": "string" } } },
                "UserUpdate": { "type": "object", "properties": {
                    "role": { "type": "string", "enum": ["admin", "operator", "viewer"] }, "password": { "type": "string" } } },
                "NewToken": { "type": "object", "required": ["name"], "properties": { "name": name, "user": { "type": "string" } } }
            }
        }
    })
}
