//! What an operator sees for a bad config: every problem, with file, line, column, path and a
//! hint.

use std::path::Path;
use tandem_config::{Diagnostics, parse};

const GOOD: &str = "\
schema: 1
node:
  name: lb-a
  management:
    listen: 127.0.0.1:9443
shared:
  services:
    - name: web
      listen: 127.0.0.1:8080
      protocol: http
      pool: web
  pools:
    - name: web
      servers:
        - { id: web1, address: 127.0.0.1:18081 }
";

fn errors(text: &str) -> Diagnostics {
    parse(text, Some(Path::new("lb.yaml"))).expect_err("the config should be refused")
}

#[test]
fn a_good_config_parses_with_defaults_filled_in() {
    let c = parse(GOOD, None).unwrap();
    let pool = c.shared.pool("web").unwrap();
    assert_eq!(pool.servers[0].weight, 1);
    assert_eq!(
        c.shared.services[0].limits.header_timeout.to_string(),
        "10s"
    );
}

#[test]
fn an_unknown_pool_names_file_line_column_path_and_fix() {
    let d = errors(&GOOD.replace("      pool: web\n", "      pool: api\n"));
    assert_eq!(d.items.len(), 1);
    let item = &d.items[0];
    assert_eq!(item.path, "shared.services[0].pool");
    assert_eq!((item.line, item.column), (11, 13));
    let line = d.lines().next().unwrap();
    assert!(line.starts_with("lb.yaml:11:13: "), "{line}");
    assert!(line.contains("no pool named `api`"), "{line}");
    assert!(line.contains(" — "), "{line}");
    assert!(
        line.contains("`web`"),
        "the hint lists the pools that exist: {line}"
    );
}

#[test]
fn unknown_keys_are_errors_not_ignored() {
    let d = errors(&GOOD.replace(
        "      protocol: http\n",
        "      protocol: http\n      pooll: web\n",
    ));
    let item = &d.items[0];
    assert!(item.message.contains("unknown field `pooll`"), "{item:?}");
    assert_eq!(item.line, 11);
    assert_eq!(item.path, "shared.services[0].pooll");
}

#[test]
fn type_errors_point_at_the_value() {
    let d = errors(&GOOD.replace("127.0.0.1:8080", "not-an-address"));
    let item = &d.items[0];
    assert_eq!((item.line, item.column), (9, 15));
    assert_eq!(item.path, "shared.services[0].listen");
}

#[test]
fn every_semantic_problem_is_reported_not_just_the_first() {
    let text = GOOD.replace(
        "      pool: web\n",
        "      pool: nope\n      proxy_protocol: v2\n",
    ) + "    - name: web\n      servers: []\n";
    let d = errors(&text);
    let paths: Vec<&str> = d.items.iter().map(|i| i.path.as_str()).collect();
    assert!(paths.contains(&"shared.services[0].pool"), "{paths:?}");
    assert!(
        paths.contains(&"shared.services[0].proxy_protocol"),
        "{paths:?}"
    );
    assert!(paths.contains(&"shared.pools[1].name"), "{paths:?}");
    assert!(
        d.items.iter().all(|i| i.line > 0 && !i.hint.is_empty()),
        "{d:#?}"
    );
}

#[test]
fn a_missing_schema_or_a_newer_one_is_refused_with_a_fix() {
    let d = errors(&GOOD.replace("schema: 1\n", ""));
    assert!(d.items[0].hint.contains("schema: 1"), "{d}");
    let d = errors(&GOOD.replace("schema: 1", "schema: 2"));
    assert!(d.items[0].message.contains("newer firmware"), "{d}");
    assert_eq!((d.items[0].line, d.items[0].column), (1, 9));
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let d = errors("schema: 1\nnode: [\n");
    assert!(d.items[0].line >= 2, "{d}");
}

#[test]
fn health_check_needs_exactly_one_kind() {
    let text = GOOD.replace(
        "      servers:\n",
        "      health_check: { interval: 2s, tcp: {}, http: { path: / } }\n      servers:\n",
    );
    let d = errors(&text);
    assert_eq!(d.items[0].path, "shared.pools[0].health_check");
    assert_eq!(d.items[0].line, 14);
}

#[test]
fn a_service_on_the_management_address_is_refused() {
    let d = errors(&GOOD.replace("127.0.0.1:8080", "127.0.0.1:9443"));
    assert!(d.items[0].message.contains("management"), "{d}");
}

#[test]
fn certificates_are_checked_and_files_inlined() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app.example.org".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("app.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("app.key"), key.serialize_pem()).unwrap();
    let text = GOOD.replace(
        "protocol: http",
        "protocol: https\n      tls: { certificates: [app] }",
    ) + "  certificates:\n    - { name: app, cert_file: app.crt, key_file: app.key }\n";
    let file = dir.path().join("lb.yaml");
    let c = parse(&text, Some(&file)).unwrap();
    let app = c.shared.certificate("app").unwrap();
    assert!(app.cert_file.is_none() && app.cert_pem.is_some());
    assert_eq!(app.chain().len(), 1);

    // A key that belongs to another certificate is refused.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("app.key"), other.serialize_pem()).unwrap();
    let d = parse(&text, Some(&file)).unwrap_err();
    assert_eq!(d.items[0].path, "shared.certificates[0].key_pem");
}

#[test]
fn the_canonical_form_round_trips_through_the_shared_parser() {
    let c = parse(GOOD, None).unwrap();
    let text = c.shared.to_canonical_yaml();
    let doc = tandem_config::parse_shared_document(&text).unwrap();
    assert_eq!(doc.shared, c.shared);
}

#[test]
fn a_shared_only_document_is_accepted_for_apply() {
    let text = GOOD.replace(
        "node:\n  name: lb-a\n  management:\n    listen: 127.0.0.1:9443\n",
        "",
    );
    let doc = tandem_config::parse_document(&text, None).unwrap();
    assert!(matches!(doc, tandem_config::Document::Shared(_)));
    assert_eq!(doc.shared().services.len(), 1);
    let full = tandem_config::parse_document(GOOD, None).unwrap();
    assert!(matches!(full, tandem_config::Document::Full(_)));
    // Line numbers stay those of the text given.
    let bad = text.replace("pool: web\n  pools", "pool: nope\n  pools");
    let d = tandem_config::parse_document(&bad, None).unwrap_err();
    assert_eq!(d.items[0].line, 7);
}
